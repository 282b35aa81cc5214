//! Request IDs: one value naming a request in the upstream's logs, in the client's response, in the access
//! line and in Weir's own log lines about it, so that a report of one is found in the others. This is
//! Envoy's `x-request-id` and nginx's `$request_id`.
//!
//! A client's ID is never taken, as Envoy replaces an external one: a client could give many requests one
//! ID, or another client's. With `keep_from_proxies`, the proxies `[server.real_ip]` names are believed,
//! when their ID is one well-formed value, so that one ID follows a request from the first proxy on; off
//! by default, since a proxy that passes a client's header on lets the client choose.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::request_id::RequestId;

/// The longest ID kept from a proxy in front: a UUID is 36 bytes, an AWS trace ID with its parts about 80.
const MAX_KEPT: usize = 200;

pub struct RequestIds {
    header: HeaderName,
    keep_from_proxies: bool,
}

impl RequestIds {
    pub fn new(config: &RequestId) -> RequestIds {
        RequestIds {
            header: config.header.0.clone(),
            keep_from_proxies: config.keep_from_proxies,
        }
    }

    /// The ID of a request with `headers`: the one a proxy in front gave it, when it came `from_proxy`
    /// with one that is well-formed and such IDs are kept, otherwise a new one.
    pub fn of(&self, headers: &HeaderMap, from_proxy: bool) -> HeaderValue {
        let mut given = headers.get_all(&self.header).iter();
        if self.keep_from_proxies
            && from_proxy
            && let (Some(id), None) = (given.next(), given.next())
            && well_formed(id)
        {
            return id.clone();
        }
        generate()
    }

    /// Makes `id` the header's only value in `headers`.
    pub fn set(&self, headers: &mut HeaderMap, id: &HeaderValue) {
        headers.insert(self.header.clone(), id.clone());
    }
}

/// Printable ASCII without spaces, quotes, backslashes or commas, which every log format and every
/// upstream's can carry as it is, and none reads as a list.
fn well_formed(id: &HeaderValue) -> bool {
    let id = id.as_bytes();
    (1..=MAX_KEPT).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b','))
}

/// A random (version 4) UUID, RFC 9562 §5.4. It names a request, and is no secret: its bits come from the
/// thread's fast generator, not the operating system's.
fn generate() -> HeaderValue {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    // Hex digits and dashes are a valid header value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderNameText;

    fn ids(keep_from_proxies: bool) -> RequestIds {
        RequestIds::new(&RequestId {
            header: HeaderNameText(HeaderName::from_static("x-request-id")),
            keep_from_proxies,
        })
    }

    /// The ID `lines` come to, and what the headers carry once it is set.
    fn assigned(lines: &[&[u8]], from_proxy: bool) -> (String, Vec<String>) {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-request-id", HeaderValue::from_bytes(line).unwrap());
        }
        let ids = ids(true);
        let id = ids.of(&headers, from_proxy);
        ids.set(&mut headers, &id);
        let carried = headers
            .get_all("x-request-id")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (String::from_utf8_lossy(id.as_bytes()).into_owned(), carried)
    }

    fn is_uuid_v4(id: &str) -> bool {
        let parts: Vec<&str> = id.split('-').collect();
        parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts.iter().all(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            && parts[2].starts_with('4')
            && parts[3].starts_with(['8', '9', 'a', 'b'])
    }

    #[test]
    fn a_proxy_s_well_formed_id_is_kept_and_anything_else_replaced() {
        assert_eq!(
            assigned(&[b"abc-123"], true),
            ("abc-123".into(), vec!["abc-123".into()])
        );
        let trace = b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
        assert_eq!(assigned(&[trace], true).0.as_bytes(), trace);
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert!(is_uuid_v4(ids(false).of(&headers, true).to_str().unwrap()));
        let long = [b'a'; MAX_KEPT + 1];
        let cases: [(&[&[u8]], bool); 9] = [
            (&[], true),
            (&[b"abc-123"], false),
            (&[b"abc", b"def"], true),
            (&[b""], true),
            (&[b"a b"], true),
            (&[b"a\"b"], true),
            (&[b"a,b"], true),
            (&[b"caf\xc3\xa9"], true),
            (&[&long[..]], true),
        ];
        for (lines, from_proxy) in cases {
            let (id, carried) = assigned(lines, from_proxy);
            assert!(is_uuid_v4(&id), "{id} for {lines:?}");
            assert_eq!(carried, [id], "for {lines:?}");
        }
    }

    #[test]
    fn generated_ids_are_version_4_uuids_and_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| String::from_utf8_lossy(generate().as_bytes()).into_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_uuid_v4(id)));
    }
}
