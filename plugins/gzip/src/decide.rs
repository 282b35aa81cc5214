//! Whether a response is compressed, and the header values that change when it is.

use crate::config::Encoding;
use crate::types::{self, MediaRange};

/// What the decision reads from the response head.
#[derive(Debug, Default)]
pub struct Head<'a> {
    pub status: u16,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: bool,
    pub content_range: bool,
    pub content_length: Option<u64>,
    pub cache_control: &'a [Vec<u8>],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Sent as it is, whatever the client accepts: no `Vary` either, since no other answer exists.
    Never,
    /// Compressible, but this client gets it as it is; `Vary` still tells caches that others may not.
    NotForThisClient,
    Compress(Encoding),
}

/// `choice` is the negotiated coding; `head_request` is true for HEAD, whose answer has no body to
/// compress (and whose headers nginx leaves alone too).
pub fn decide(
    head: &Head<'_>,
    head_request: bool,
    choice: Option<Encoding>,
    ranges: &[MediaRange],
    min_length: u64,
) -> Decision {
    let bodyless = matches!(head.status, 100..=199 | 204 | 205 | 304);
    let never = head_request
        || bodyless
        // A range of the identity body: compressing it would give a client a piece of nothing it asked for.
        || head.status == 206
        || head.content_range
        || head.content_encoding
        || no_transform(head.cache_control)
        || head.content_length.is_some_and(|n| n < min_length)
        || !types::compressible(head.content_type, ranges);
    match choice {
        _ if never => Decision::Never,
        None => Decision::NotForThisClient,
        Some(e) => Decision::Compress(e),
    }
}

/// RFC 9111 section 5.2.2.6: an intermediary must not change the content of such a response.
fn no_transform(cache_control: &[Vec<u8>]) -> bool {
    cache_control.iter().any(|value| {
        value
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
    })
}

/// The `Vary` value with `Accept-Encoding` merged in, or `None` when it is there already (or `*`).
pub fn vary(existing: &[Vec<u8>]) -> Option<Vec<u8>> {
    let listed = existing
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    if listed
        .clone()
        .any(|t| t == b"*" || t.eq_ignore_ascii_case(b"accept-encoding"))
    {
        return None;
    }
    let mut value: Vec<u8> = listed.flat_map(|t| [t, b", "]).flatten().copied().collect();
    value.extend_from_slice(b"Accept-Encoding");
    Some(value)
}

/// A strong `ETag` made weak: the compressed bytes differ from the ones it names, but they are
/// semantically the same (this is what nginx does). Weak ones are left alone.
pub fn weak_etag(etag: &[u8]) -> Option<Vec<u8>> {
    (!etag.starts_with(b"W/")).then(|| [b"W/", etag].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use Encoding::Gzip;

    fn head<'a>(content_type: &'a str, cache_control: &'a [Vec<u8>]) -> Head<'a> {
        Head {
            status: 200,
            content_type: Some(content_type.as_bytes()),
            content_length: Some(5000),
            cache_control,
            ..Head::default()
        }
    }

    fn run(head: &Head<'_>, head_request: bool, choice: Option<Encoding>) -> Decision {
        let ranges = [MediaRange::parse("text/*").unwrap()];
        decide(head, head_request, choice, &ranges, 1024)
    }

    #[test]
    fn compressible_responses_follow_the_client() {
        let h = head("text/html", &[]);
        assert_eq!(run(&h, false, Some(Gzip)), Compress(Gzip));
        assert_eq!(run(&h, false, None), NotForThisClient);
        let unknown_length = Head {
            content_length: None,
            ..head("text/html", &[])
        };
        assert_eq!(run(&unknown_length, false, Some(Gzip)), Compress(Gzip));
        for status in [200, 201, 404, 500] {
            let h = Head {
                status,
                ..head("text/html", &[])
            };
            assert_eq!(run(&h, false, Some(Gzip)), Compress(Gzip), "{status}");
        }
    }

    #[test]
    fn every_skip_case_is_never() {
        let base = || head("text/html", &[]);
        let cc = [b"max-age=60, No-Transform".to_vec()];
        let cases = [
            (
                "204",
                Head {
                    status: 204,
                    ..base()
                },
            ),
            (
                "304",
                Head {
                    status: 304,
                    ..base()
                },
            ),
            (
                "206",
                Head {
                    status: 206,
                    ..base()
                },
            ),
            (
                "range",
                Head {
                    content_range: true,
                    ..base()
                },
            ),
            (
                "encoded",
                Head {
                    content_encoding: true,
                    ..base()
                },
            ),
            (
                "small",
                Head {
                    content_length: Some(1023),
                    ..base()
                },
            ),
            ("type", head("image/png", &[])),
            (
                "no type",
                Head {
                    content_type: None,
                    ..base()
                },
            ),
            ("no-transform", head("text/html", &cc)),
        ];
        for (name, h) in cases {
            assert_eq!(run(&h, false, Some(Gzip)), Never, "{name}");
        }
        assert_eq!(run(&base(), true, Some(Gzip)), Never, "HEAD");
        let exactly_min = Head {
            content_length: Some(1024),
            ..base()
        };
        assert_eq!(run(&exactly_min, false, Some(Gzip)), Compress(Gzip));
        let other_cc = [b"no-store, max-age=0".to_vec()];
        assert_eq!(
            run(&head("text/html", &other_cc), false, Some(Gzip)),
            Compress(Gzip)
        );
    }

    #[test]
    fn vary_is_merged_once() {
        assert_eq!(vary(&[]).unwrap(), b"Accept-Encoding");
        assert_eq!(
            vary(&[b"Origin".to_vec()]).unwrap(),
            b"Origin, Accept-Encoding"
        );
        assert_eq!(
            vary(&[b"Origin, Cookie".to_vec(), b"X-A".to_vec()]).unwrap(),
            b"Origin, Cookie, X-A, Accept-Encoding"
        );
        assert_eq!(vary(&[b"origin, accept-encoding".to_vec()]), None);
        assert_eq!(vary(&[b"*".to_vec()]), None);
    }

    #[test]
    fn strong_etags_become_weak() {
        assert_eq!(weak_etag(b"\"abc\"").unwrap(), b"W/\"abc\"");
        assert_eq!(weak_etag(b"W/\"abc\""), None);
    }
}
