//! The one normal form of a request path and query. A client's path is brought to it before any route is
//! matched, and a plugin's `set-path` / `set-query` go through the same functions, so the router, every
//! plugin and the upstream see the same path: no spelling of a dot segment can match one route and reach
//! another.
//!
//! The form is RFC 3986 §6.2.2: percent-encoded unreserved characters decoded (`%2e` is `.`, `%7E` is `~`),
//! every other escape's hex upper-cased, dot segments removed (§5.2.4). Bytes a request line may carry but a
//! URI may not (`"`, `{`, `\`…) are percent-encoded, so the upstream always gets a strict RFC 3986 path.

use std::borrow::Cow;

use crate::config::EscapedSlashes;

/// What the server's config says about the parts of normalisation that are a choice.
#[derive(Debug, Clone, Copy)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub merge_slashes: bool,
}

/// Why a path or query is refused. A client gets 400 for it, a plugin gets the text as its error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("invalid percent-escape at byte {0}")]
    BadEscape(usize),
    #[error("an escaped NUL (%00) in the path")]
    Nul,
    #[error("an escaped slash (%2F or %5C) or a backslash in the path")]
    EscapedSlash,
    #[error("the byte 0x{0:02x} is not allowed in a request target")]
    InvalidByte(u8),
}

/// Brings `path` to the normal form, or says why it cannot be. Most paths are already normal and come back
/// borrowed, after one scan.
pub fn path<'a>(path: &'a str, policy: PathPolicy) -> Result<Cow<'a, str>, TargetError> {
    if !path.starts_with('/') {
        return Err(TargetError::NotAbsolute);
    }
    if is_normal(path, policy) {
        return Ok(Cow::Borrowed(path));
    }
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let bytes = path.as_bytes();
    let mut i = 1;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'/' => {
                end_segment(&mut segments, std::mem::take(&mut current), policy)?;
                i += 1;
                continue;
            }
            b'%' => {
                let value = escape_at(bytes, i)?;
                i += 3;
                match value {
                    0 => return Err(TargetError::Nul),
                    b'/' | b'\\' => match policy.escaped_slashes {
                        EscapedSlashes::Keep => push_escaped(&mut current, value),
                        EscapedSlashes::Reject => return Err(TargetError::EscapedSlash),
                        EscapedSlashes::Decode => {
                            end_segment(&mut segments, std::mem::take(&mut current), policy)?;
                        }
                    },
                    v if is_unreserved(v) => current.push(char::from(v)),
                    v => push_escaped(&mut current, v),
                }
                continue;
            }
            b'\\' => match policy.escaped_slashes {
                EscapedSlashes::Keep => push_escaped(&mut current, byte),
                EscapedSlashes::Reject => return Err(TargetError::EscapedSlash),
                EscapedSlashes::Decode => {
                    end_segment(&mut segments, std::mem::take(&mut current), policy)?;
                }
            },
            b'?' | b'#' => return Err(TargetError::InvalidByte(byte)),
            b if is_pchar(b) => current.push(char::from(b)),
            b if b.is_ascii_graphic() => push_escaped(&mut current, b),
            b => return Err(TargetError::InvalidByte(b)),
        }
        i += 1;
    }
    // The last segment: a dot segment here leaves the directory it names, with its trailing slash.
    match dots(&current) {
        Some(count) => {
            if count == 2 && segments.pop().is_none() {
                return Err(TargetError::AboveRoot);
            }
            segments.push(String::new());
        }
        None => segments.push(current),
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    Ok(Cow::Owned(out))
}

/// Closes a segment that a `/` ended: dot segments are resolved, and empty ones dropped where slashes merge.
/// A leading empty segment is always dropped: `//host/x` must never reach an upstream, which could read it
/// as a network-path reference.
fn end_segment(
    segments: &mut Vec<String>,
    segment: String,
    policy: PathPolicy,
) -> Result<(), TargetError> {
    match dots(&segment) {
        Some(1) => {}
        Some(_) => {
            if segments.pop().is_none() {
                return Err(TargetError::AboveRoot);
            }
        }
        None if segment.is_empty() && (policy.merge_slashes || segments.is_empty()) => {}
        None => segments.push(segment),
    }
    Ok(())
}

/// 1 for `.`, 2 for `..` (escapes are already decoded).
fn dots(segment: &str) -> Option<usize> {
    match segment {
        "." => Some(1),
        ".." => Some(2),
        _ => None,
    }
}

/// True when `path` is already in normal form: the common case, checked without allocating.
fn is_normal(path: &str, policy: PathPolicy) -> bool {
    let bytes = path.as_bytes();
    let mut previous = b'/';
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let plain = match b {
            b'/' => previous != b'/' || (!policy.merge_slashes && i > 1),
            // A dot right after a slash may start a dot segment: leave it to the full pass.
            b'.' => previous != b'/',
            _ => is_pchar(b),
        };
        if !plain {
            return false;
        }
        previous = b;
    }
    true
}

/// The byte a `%XX` at `at` stands for.
fn escape_at(bytes: &[u8], at: usize) -> Result<u8, TargetError> {
    let hex = |offset: usize| {
        bytes
            .get(at + offset)
            .and_then(|&b| char::from(b).to_digit(16))
            .ok_or(TargetError::BadEscape(at))
    };
    let value = hex(1)? * 16 + hex(2)?;
    u8::try_from(value).map_err(|_| TargetError::BadEscape(at))
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

/// RFC 3986 §2.3.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 `sub-delims`.
pub fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 3986 §3.3 `pchar`, without `%` (escapes are handled on their own).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
}

/// Brings a query to the form the upstream gets: bytes a URI query may not hold are percent-encoded, and
/// escapes are kept as sent (servers differ on what a query's escapes mean, so they are not decoded).
/// Control bytes, spaces, non-ASCII and `#` are refused.
pub fn query(query: &str) -> Result<Cow<'_, str>, TargetError> {
    let is_plain = |b: u8| is_pchar(b) || matches!(b, b'/' | b'?' | b'%');
    if query.bytes().all(is_plain) {
        return Ok(Cow::Borrowed(query));
    }
    let mut out = String::with_capacity(query.len() + 8);
    for b in query.bytes() {
        match b {
            b'#' => return Err(TargetError::InvalidByte(b)),
            b if is_plain(b) => out.push(char::from(b)),
            b if b.is_ascii_graphic() => push_escaped(&mut out, b),
            b => return Err(TargetError::InvalidByte(b)),
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: PathPolicy = PathPolicy {
        escaped_slashes: EscapedSlashes::Keep,
        merge_slashes: true,
    };

    fn norm(p: &str) -> Result<String, TargetError> {
        path(p, KEEP).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_come_back_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d",
            "/~user/x-y_z",
            "/a:b@c!$&'()*+,;=",
        ] {
            assert!(matches!(path(p, KEEP), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn every_spelling_of_a_dot_segment_is_one() {
        for (p, want) in [
            ("/a/../b", "/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/.%2E/b", "/b"),
            ("/a/%2E./b", "/b"),
            ("/a/./b", "/a/b"),
            ("/a/%2e/b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/%2E%2e", "/a/"),
            ("/a/./../b", "/b"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/..a/b", "/..a/b"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(norm(p).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../x",
            "/a/../../x",
            "/%2e%2e",
            "/.%2E/x",
            "/a/./../..",
        ] {
            assert_eq!(norm(p), Err(TargetError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn escapes_are_decoded_only_when_unreserved() {
        assert_eq!(norm("/%7Euser/%41%62").as_deref(), Ok("/~user/Ab"));
        assert_eq!(norm("/a%2fb%5cc").as_deref(), Ok("/a%2Fb%5Cc"));
        assert_eq!(norm("/100%25/%3f").as_deref(), Ok("/100%25/%3F"));
        assert_eq!(norm("/a\"b{c}|\\").as_deref(), Ok("/a%22b%7Bc%7D%7C%5C"));
        assert_eq!(norm("/a%00"), Err(TargetError::Nul));
        assert_eq!(norm("/a%zz"), Err(TargetError::BadEscape(2)));
        assert_eq!(norm("/a%4"), Err(TargetError::BadEscape(2)));
        assert_eq!(norm("/a%"), Err(TargetError::BadEscape(2)));
    }

    #[test]
    fn escaped_slashes_follow_the_policy() {
        let reject = PathPolicy {
            escaped_slashes: EscapedSlashes::Reject,
            ..KEEP
        };
        let decode = PathPolicy {
            escaped_slashes: EscapedSlashes::Decode,
            ..KEEP
        };
        assert_eq!(path("/a%2Fb", reject), Err(TargetError::EscapedSlash));
        assert_eq!(path("/a\\b", reject), Err(TargetError::EscapedSlash));
        assert_eq!(path("/a/..%2F..%2Fb", decode), Err(TargetError::AboveRoot));
        assert_eq!(path("/p/x/..%2F..%5Cq", decode).as_deref(), Ok("/q"));
        assert_eq!(norm("/p/..%2Fq").as_deref(), Ok("/p/..%2Fq"));
    }

    #[test]
    fn slashes_merge_by_policy_but_never_lead_double() {
        let keep_slashes = PathPolicy {
            merge_slashes: false,
            ..KEEP
        };
        assert_eq!(norm("/a//b///c//").as_deref(), Ok("/a/b/c/"));
        assert_eq!(norm("//evil.example/x").as_deref(), Ok("/evil.example/x"));
        assert_eq!(path("/a//b", keep_slashes).as_deref(), Ok("/a//b"));
        assert_eq!(
            path("//evil.example/x", keep_slashes).as_deref(),
            Ok("/evil.example/x")
        );
        assert_eq!(path("/a//../b", keep_slashes).as_deref(), Ok("/a/b"));
        assert_eq!(norm("///").as_deref(), Ok("/"));
    }

    #[test]
    fn what_cannot_be_a_target_is_refused() {
        assert_eq!(norm("a/b"), Err(TargetError::NotAbsolute));
        assert_eq!(norm(""), Err(TargetError::NotAbsolute));
        assert_eq!(norm("/a b"), Err(TargetError::InvalidByte(b' ')));
        assert_eq!(norm("/a?b"), Err(TargetError::InvalidByte(b'?')));
        assert_eq!(norm("/a#b"), Err(TargetError::InvalidByte(b'#')));
        assert_eq!(norm("/a\r\nb"), Err(TargetError::InvalidByte(b'\r')));
        assert_eq!(norm("/caf\u{e9}"), Err(TargetError::InvalidByte(0xc3)));
        assert_eq!(norm("/t/a<b").as_deref(), Ok("/t/a%3Cb"));
    }

    #[test]
    fn queries_keep_their_escapes() {
        assert!(matches!(query("a=1&b=%zz/?"), Ok(Cow::Borrowed(_))));
        assert_eq!(
            query("q=\"x\" ").unwrap_err(),
            TargetError::InvalidByte(b' ')
        );
        assert_eq!(query("q={x}").as_deref(), Ok("q=%7Bx%7D"));
        assert_eq!(query("a#b"), Err(TargetError::InvalidByte(b'#')));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Visible ASCII with the path's own delimiters and escapes made likely, plus any other byte.
        fn path_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2F".to_owned()),
                Just("%5c".to_owned()),
                Just("%".to_owned()),
                Just("\\".to_owned()),
                "[a-zA-Z0-9~_-]{1,3}",
                "%[0-9a-fA-F]{2}",
                any::<char>().prop_map(String::from),
            ];
            proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
        }

        fn policies() -> impl Strategy<Value = PathPolicy> {
            (
                prop_oneof![
                    Just(EscapedSlashes::Keep),
                    Just(EscapedSlashes::Reject),
                    Just(EscapedSlashes::Decode)
                ],
                any::<bool>(),
            )
                .prop_map(|(escaped_slashes, merge_slashes)| PathPolicy {
                    escaped_slashes,
                    merge_slashes,
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever comes in, what comes out is a request target, already in normal form, with no dot
            /// segment and no leading `//`; nothing panics.
            #[test]
            fn a_normal_path_is_a_target_and_a_fixed_point(
                tail in path_text(),
                policy in policies(),
            ) {
                let input = format!("/{tail}");
                if let Ok(normal) = path(&input, policy) {
                    let normal = normal.into_owned();
                    prop_assert!(http::uri::PathAndQuery::try_from(normal.as_str()).is_ok(), "{normal:?}");
                    let again = path(&normal, policy).map(Cow::into_owned);
                    prop_assert_eq!(again, Ok(normal.clone()));
                    prop_assert!(!normal.starts_with("//"), "{normal:?}");
                    for segment in normal.split('/') {
                        prop_assert!(segment != "." && segment != "..", "{normal:?}");
                    }
                    if policy.merge_slashes {
                        prop_assert!(!normal.contains("//"), "{normal:?}");
                    }
                }
            }

            #[test]
            fn a_normal_query_is_a_target(query_text in any::<String>()) {
                if let Ok(normal) = query(&query_text) {
                    let target = format!("/?{normal}");
                    let parsed = http::uri::PathAndQuery::try_from(target.as_str());
                    prop_assert!(parsed.is_ok(), "{target:?}");
                    prop_assert_eq!(parsed.ok().and_then(|p| p.query().map(str::to_owned)), Some(normal.into_owned()));
                }
            }
        }
    }
}
