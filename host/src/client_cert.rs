//! A verified client certificate, as the upstream and plugins are told of it: the
//! `X-Forwarded-Client-Cert` header of Envoy (`Hash=…;Subject="…";URI=…;DNS=…`), made once per TLS
//! connection. A client's own `X-Forwarded-Client-Cert` is always removed: it would claim an identity
//! nobody checked.

use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::hex;

pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The header's value for the client's leaf certificate, which rustls has verified against `client_ca`.
/// `None` for one x509-parser cannot read, though webpki could: the connection is then refused.
pub fn forwarded(leaf: &CertificateDer<'_>) -> Option<HeaderValue> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    let mut value = String::from("Hash=");
    hex::push(&mut value, digest.as_ref());
    value.push_str(";Subject=\"");
    rfc4514(cert.subject(), &mut value);
    value.push('"');
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        // Every URI, then every DNS name, as Envoy writes them.
        let names = &names.value.general_names;
        let uris = names.iter().filter_map(|name| match name {
            GeneralName::URI(uri) => Some(("URI", *uri)),
            _ => None,
        });
        let dns = names.iter().filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(("DNS", *dns)),
            _ => None,
        });
        for (key, name) in uris.chain(dns) {
            // A name with a byte no header value may hold is left out rather than mangled; one holding a
            // separator of the header's syntax is quoted, as Envoy's format says.
            if !name.bytes().all(|b| b.is_ascii_graphic()) {
                continue;
            }
            if name.bytes().any(|b| b",;=\"\\".contains(&b)) {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(value, ";{key}=\"{quoted}\"");
            } else {
                let _ = write!(value, ";{key}={name}");
            }
        }
    }
    HeaderValue::from_str(&value).ok()
}

/// Sets the header from the connection's verified certificate, if it has one, after removing any the
/// client sent.
pub fn apply(headers: &mut HeaderMap, verified: Option<&HeaderValue>) {
    strip(headers);
    if let Some(value) = verified {
        headers.insert(X_FORWARDED_CLIENT_CERT, value.clone());
    }
}

/// Removes the header from what a client sent: its request head, and its request trailers.
pub fn strip(fields: &mut HeaderMap) {
    fields.remove(X_FORWARDED_CLIENT_CERT);
}

/// `name` as RFC 4514 writes it: the last RDN first, `,` between RDNs and `+` within one, each value
/// escaped. Attribute types go by the registry's short names (`CN`, `O`, …), else by their dotted OID.
/// Every byte outside printable ASCII is escaped as `\XX` as well, so the result is a header value.
fn rfc4514(name: &X509Name<'_>, out: &mut String) {
    for (i, rdn) in name
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok(short) => out.push_str(short),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            match value_text(attr.attr_value()) {
                Some(text) => escape_value(text.as_bytes(), out),
                // §2.4: a value of no string type is `#` and the hex of its whole encoding.
                None => {
                    out.push('#');
                    hex::push(out, &attr.attr_value().to_der_vec().unwrap_or_default());
                }
            }
        }
    }
}

/// A value of one of X.520's string types as text: BMPString as UTF-16, UniversalString as UTF-32,
/// TeletexString as Latin-1 (as openssl shows it), the others as the UTF-8 or ASCII they are. `None` for
/// any other type, or a string that does not decode.
fn value_text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|unit| u16::from_be_bytes([unit[0], unit[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// RFC 4514 §2.4: `"+,;<>\` escaped by a backslash, and a leading space or `#` and a trailing space;
/// any other byte outside printable ASCII as a `\XX` pair.
fn escape_value(bytes: &[u8], out: &mut String) {
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        let special = b"\"+,;<>\\".contains(&b)
            || (i == 0 && (b == b' ' || b == b'#'))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> String {
        let mut out = String::new();
        escape_value(value.as_bytes(), &mut out);
        out
    }

    /// The subject as openssl's `-nameopt RFC2253` prints it: the last RDN first. No SAN, no names.
    #[test]
    fn a_certificate_is_told_by_its_hash_and_its_subject_last_rdn_first() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "NL");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Org, Inc.");
        params.distinguished_name.push(DnType::CommonName, "client");
        let cert = params.self_signed(&key).expect("a certificate");
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
        let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let value = forwarded(cert.der()).expect("a value");
        let want = format!(r#"Hash={hash};Subject="CN=client,O=Org\, Inc.,C=NL""#);
        assert_eq!(value, want.as_str());
    }

    #[test]
    fn values_are_escaped_as_rfc_4514_says_and_fit_a_header() {
        assert_eq!(escaped("plain name"), "plain name");
        assert_eq!(escaped("a,b+c\"d\\e;f<g>"), r#"a\,b\+c\"d\\e\;f\<g\>"#);
        assert_eq!(escaped("#lead and trail "), r"\#lead and trail\ ");
        assert_eq!(escaped(" "), r"\ ");
        assert_eq!(escaped("tab\there é"), r"tab\09here \C3\A9");
        assert!(HeaderValue::from_str(&escaped("\r\n\0\x7f")).is_ok());
    }

    #[test]
    fn string_types_decode_and_others_are_left_to_hex() {
        let text = |tag, data: &[u8]| value_text(&Any::from_tag_and_data(tag, data));
        assert_eq!(
            text(Tag::BmpString, b"\0c\0l\0\xe9").as_deref(),
            Some("cl\u{e9}")
        );
        assert_eq!(text(Tag::BmpString, b"\0c\0"), None);
        assert_eq!(text(Tag::UniversalString, b"\0\0\0x").as_deref(), Some("x"));
        assert_eq!(
            text(Tag::T61String, b"caf\xe9").as_deref(),
            Some("caf\u{e9}")
        );
        assert_eq!(text(Tag::VisibleString, b"v").as_deref(), Some("v"));
        assert_eq!(text(Tag::Integer, b"\x01"), None);
    }

    #[test]
    fn a_client_s_own_header_goes_and_the_verified_one_is_set() {
        let mut headers = HeaderMap::new();
        headers.append(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("Hash=forged"),
        );
        headers.append(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("Hash=again"),
        );
        apply(&mut headers, None);
        assert!(headers.get(X_FORWARDED_CLIENT_CERT).is_none());
        headers.append(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("Hash=forged"),
        );
        let verified = HeaderValue::from_static("Hash=00");
        apply(&mut headers, Some(&verified));
        let values: Vec<_> = headers.get_all(X_FORWARDED_CLIENT_CERT).iter().collect();
        assert_eq!(values, [&verified]);
    }
}
