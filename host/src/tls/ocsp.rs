//! A stapled OCSP response (`ocsp` beside a certificate of `[server.tls]`): the responder's signed word that
//! the certificate is not revoked, sent in the handshake to a client that asks for it (RFC 6066 §8), so that
//! the client need not ask the responder itself, a round trip that also tells the CA which site it visits.
//! Weir does not fetch responses: a job (`openssl ocsp`, a certificate manager's hook) writes the file and
//! reloads, as for nginx's `ssl_stapling_file` and HAProxy's `.ocsp` files.
//!
//! The file is checked at load: a DER OCSPResponse (RFC 6960 §4.2.1) that is `successful` and basic,
//! holding a status for this certificate (its serial number, and its issuer's name and, when the chain
//! holds the issuer, key, hashed as the response says), that status `good`, and its thisUpdate not ahead of
//! this host's clock. A response for another certificate, one saying this one is revoked, or one from the
//! future would only make clients refuse the handshake. The signature is the client's to check, as nginx
//! leaves it for its file: a response that does not verify costs the client its staple, not the proxy its
//! config.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ring::digest;
use rustls::pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::prelude::X509Certificate;
use x509_parser::time::ASN1Time;

use crate::anchors::wall_clock;

/// How far ahead of this host's clock a response's thisUpdate may be: OpenSSL's clients allow five minutes
/// (`OCSP_check_validity`'s usual leeway), and refuse a response from further in the future.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// An OCSP response to staple, as it came, and its `nextUpdate` (seconds since the Unix epoch), after which it
/// is no longer stapled: a client that requires a staple (must-staple) refuses a stale one as it refuses none.
#[derive(Debug)]
pub struct Staple {
    pub der: Vec<u8>,
    pub next_update: Option<i64>,
}

/// Why `ocsp` cannot be stapled; each names the file, and the certificate when it is about that.
#[derive(Debug, thiserror::Error)]
pub enum StapleError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an OCSP response in DER: {why}", file.display())]
    Malformed { file: PathBuf, why: &'static str },
    #[error("{} is an OCSP responder's refusal ({status}), not a response", file.display())]
    Unsuccessful { file: PathBuf, status: &'static str },
    #[error(
        "{} holds no status for the certificate in {} (serial {serial}, from its issuer)",
        file.display(),
        cert.display()
    )]
    NotForCert {
        file: PathBuf,
        cert: PathBuf,
        serial: String,
    },
    #[error(
        "{} is valid only from {from}: clients refuse it until then (is this host's clock or the \
         responder's wrong?)",
        file.display()
    )]
    NotYetValid {
        file: PathBuf,
        from: humantime::Rfc3339Timestamp,
    },
    #[error("the certificate in {} cannot be read to match it with {}", cert.display(), file.display())]
    Unreadable { file: PathBuf, cert: PathBuf },
    #[error("{} says the certificate in {} is {status}: stapled, it would make clients refuse it", file.display(), cert.display())]
    NotGood {
        file: PathBuf,
        cert: PathBuf,
        status: &'static str,
    },
}

impl Staple {
    /// The response in `file` for the leaf of `chain`, which came from `cert`.
    pub fn load(
        file: &Path,
        chain: &[CertificateDer<'_>],
        cert: &Path,
    ) -> Result<Staple, StapleError> {
        let der = std::fs::read(file).map_err(|source| StapleError::Read {
            file: file.to_owned(),
            source,
        })?;
        let malformed = |why| StapleError::Malformed {
            file: file.to_owned(),
            why,
        };
        if der.starts_with(b"-----BEGIN") {
            return Err(malformed(
                "it is PEM, and the response is read as DER, as `openssl ocsp -respout` writes it",
            ));
        }
        let singles = match single_responses(&der) {
            Ok(singles) => singles,
            Err(Refused::Malformed(why)) => return Err(malformed(why)),
            Err(Refused::Unsuccessful(status)) => {
                return Err(StapleError::Unsuccessful {
                    file: file.to_owned(),
                    status,
                });
            }
        };
        let Some(leaf) = chain.first().and_then(|c| parsed(c)) else {
            return Err(StapleError::Unreadable {
                file: file.to_owned(),
                cert: cert.to_owned(),
            });
        };
        // The certificate after the leaf is its issuer in a chain in order; one that is not (a chain out of
        // order, a cross-signature) cannot tell the issuer's key.
        let issuer = (chain.get(1).and_then(|c| parsed(c)))
            .filter(|issuer| issuer.subject().as_raw() == leaf.issuer().as_raw());
        let serial = leaf.tbs_certificate.raw_serial();
        let issuer_key = issuer
            .as_ref()
            .map(|i| &*i.public_key().subject_public_key.data);
        let mine = singles.iter().find(|single| {
            single.serial == serial
                && single.hashes(leaf.issuer().as_raw(), single.name_hash)
                && issuer_key.is_none_or(|key| single.hashes(key, single.key_hash))
        });
        let Some(mine) = mine else {
            return Err(StapleError::NotForCert {
                file: file.to_owned(),
                cert: cert.to_owned(),
                serial: leaf.tbs_certificate.raw_serial_as_string(),
            });
        };
        if mine.status != CertStatus::Good {
            return Err(StapleError::NotGood {
                file: file.to_owned(),
                cert: cert.to_owned(),
                status: mine.status.name(),
            });
        }
        let now = SystemTime::now();
        if wall_clock(mine.this_update) > now + CLOCK_SKEW {
            return Err(StapleError::NotYetValid {
                file: file.to_owned(),
                from: humantime::format_rfc3339_seconds(wall_clock(mine.this_update)),
            });
        }
        let next_update = mine.next_update;
        Ok(Staple { der, next_update })
    }
}

fn parsed<'a>(cert: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    X509Certificate::from_der(cert).ok().map(|(_, cert)| cert)
}

enum Refused {
    Malformed(&'static str),
    Unsuccessful(&'static str),
}

impl From<&'static str> for Refused {
    fn from(why: &'static str) -> Refused {
        Refused::Malformed(why)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum CertStatus {
    Good,
    Revoked,
    Unknown,
}

impl CertStatus {
    fn name(&self) -> &'static str {
        match self {
            CertStatus::Good => "good",
            CertStatus::Revoked => "revoked",
            CertStatus::Unknown => "unknown to its responder",
        }
    }
}

/// One SingleResponse: the CertID it is about, its status, and its `nextUpdate`.
struct Single<'a> {
    hash_algorithm: &'a [u8],
    name_hash: &'a [u8],
    key_hash: &'a [u8],
    serial: &'a [u8],
    status: CertStatus,
    this_update: i64,
    next_update: Option<i64>,
}

/// The contents of the OIDs the CertID's hash may have: SHA-1 (1.3.14.3.2.26), which responders use by
/// default, and SHA-256, SHA-384 and SHA-512 (2.16.840.1.101.3.4.2.1 to .3).
const SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), the one response type RFC 6960 defines.
const BASIC: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

impl Single<'_> {
    /// Whether `bytes` hashed as this CertID's were is `hash`; never for a hash algorithm it cannot tell.
    fn hashes(&self, bytes: &[u8], hash: &[u8]) -> bool {
        let algorithm = match self.hash_algorithm {
            SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            SHA256 => &digest::SHA256,
            SHA384 => &digest::SHA384,
            SHA512 => &digest::SHA512,
            _ => return false,
        };
        digest::digest(algorithm, bytes).as_ref() == hash
    }
}

/// The SingleResponses of an OCSPResponse, once it is known to be successful and basic.
fn single_responses(der: &[u8]) -> Result<Vec<Single<'_>>, Refused> {
    let (response, rest) = universal(der, Tag::Sequence)?;
    if !rest.is_empty() {
        return Err("bytes after the response".into());
    }
    let (status, rest) = universal(response.data, Tag::Enumerated)?;
    match status.data {
        [0] => {}
        [1] => return Err(Refused::Unsuccessful("malformedRequest")),
        [2] => return Err(Refused::Unsuccessful("internalError")),
        [3] => return Err(Refused::Unsuccessful("tryLater")),
        [5] => return Err(Refused::Unsuccessful("sigRequired")),
        [6] => return Err(Refused::Unsuccessful("unauthorized")),
        _ => return Err("an unknown responseStatus".into()),
    }
    let (bytes, _) = context(rest, 0).ok_or("no responseBytes")?;
    let (bytes, _) = universal(bytes.data, Tag::Sequence)?;
    let (kind, rest) = universal(bytes.data, Tag::Oid)?;
    if kind.data != BASIC {
        return Err("a responseType other than id-pkix-ocsp-basic".into());
    }
    let (basic, _) = universal(rest, Tag::OctetString)?;
    let (basic, _) = universal(basic.data, Tag::Sequence)?;
    let (data, _) = universal(basic.data, Tag::Sequence)?;
    let mut fields = data.data;
    if let Some((_, rest)) = context(fields, 0) {
        fields = rest; // version
    }
    let (_, rest) = context(fields, 1)
        .or_else(|| context(fields, 2))
        .ok_or("no responderID")?;
    let (_, rest) = universal(rest, Tag::GeneralizedTime)?; // producedAt
    let (responses, _) = universal(rest, Tag::Sequence)?;
    let mut singles = Vec::new();
    let mut rest = responses.data;
    while !rest.is_empty() {
        let (single, after) = universal(rest, Tag::Sequence)?;
        singles.push(single_response(single.data)?);
        rest = after;
    }
    Ok(singles)
}

fn single_response(fields: &[u8]) -> Result<Single<'_>, Refused> {
    let (cert_id, rest) = universal(fields, Tag::Sequence)?;
    let (algorithm, id) = universal(cert_id.data, Tag::Sequence)?;
    let (hash_algorithm, _) = universal(algorithm.data, Tag::Oid)?;
    let (name_hash, id) = universal(id, Tag::OctetString)?;
    let (key_hash, id) = universal(id, Tag::OctetString)?;
    let (serial, _) = universal(id, Tag::Integer)?;
    let (status, rest) = element(rest).ok_or("no certStatus")?;
    let status = match (status.class(), status.header.tag()) {
        (Class::ContextSpecific, Tag(0)) => CertStatus::Good,
        (Class::ContextSpecific, Tag(1)) => CertStatus::Revoked,
        (Class::ContextSpecific, Tag(2)) => CertStatus::Unknown,
        _ => return Err("a certStatus that is none of good, revoked and unknown".into()),
    };
    let (rest, this_update) = ASN1Time::from_der(rest).map_err(|_| "no thisUpdate")?;
    let next_update = match context(rest, 0) {
        Some((next, _)) => Some(
            ASN1Time::from_der(next.data)
                .map_err(|_| "a nextUpdate that is no time")?
                .1
                .timestamp(),
        ),
        None => None,
    };
    Ok(Single {
        hash_algorithm: hash_algorithm.data,
        name_hash: name_hash.data,
        key_hash: key_hash.data,
        serial: serial.data,
        status,
        this_update: this_update.timestamp(),
        next_update,
    })
}

/// The element at the front of `input`, and what follows it.
fn element(input: &[u8]) -> Option<(Any<'_>, &[u8])> {
    let (rest, any) = Any::from_der(input).ok()?;
    Some((any, rest))
}

/// The element at the front of `input`, of universal type `tag`.
fn universal(input: &[u8], tag: Tag) -> Result<(Any<'_>, &[u8]), &'static str> {
    match element(input) {
        Some((any, rest)) if any.class() == Class::Universal && any.header.tag() == tag => {
            Ok((any, rest))
        }
        _ => Err("its structure is not RFC 6960's"),
    }
}

/// The element at the front of `input` when it is context-specific `[number]`.
fn context(input: &[u8], number: u32) -> Option<(Any<'_>, &[u8])> {
    element(input)
        .filter(|(any, _)| any.class() == Class::ContextSpecific && any.header.tag() == Tag(number))
}
