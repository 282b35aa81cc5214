//! What a rewritten path must be before it goes upstream: a valid absolute path with its dot segments
//! resolved, that stays under the root.
//!
//! Dots are resolved here, not left to the upstream, because a rewrite typically puts a fixed prefix in
//! front of client input (`/shops/42` + `/../43/orders`): resolving first means the result is what the
//! upstream will actually serve, and an escape above the root is refused rather than forwarded.

use core::fmt;

/// Why a path is refused; displayed as the end of "path … {reason}".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAbsolute,
    Contains(&'static str),
    EscapesRoot,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAbsolute => f.write_str("does not start with '/'"),
            Refusal::Contains(what) => write!(f, "contains {what}"),
            Refusal::EscapesRoot => f.write_str("escapes the root"),
        }
    }
}

/// The bytes the host accepts in a path: an absolute path of visible ASCII without `?` or `#`.
pub fn check(path: &str) -> Result<(), Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::NotAbsolute);
    }
    match path
        .bytes()
        .find(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#'))
    {
        None => Ok(()),
        Some(b' ') => Err(Refusal::Contains("a space")),
        Some(b'?') => Err(Refusal::Contains("'?'")),
        Some(b'#') => Err(Refusal::Contains("'#'")),
        Some(b) if b.is_ascii() => Err(Refusal::Contains("a control byte")),
        Some(_) => Err(Refusal::Contains("a non-ASCII character")),
    }
}

/// Checks `path` and resolves its `.` and `..` segments (RFC 3986 section 5.2.4), counting `%2e`/`%2E` as a
/// dot since upstreams decode it. Empty segments (`//`) are kept: they are the upstream's to interpret.
pub fn normalise(path: &str) -> Result<String, Refusal> {
    check(path)?;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(segment) {
            Some(dots) => {
                if dots == 2 && kept.pop().is_none() {
                    return Err(Refusal::EscapesRoot);
                }
                // `/a/b/..` is the directory `/a/`, not the file `/a`.
                if last {
                    kept.push("");
                }
            }
            None => kept.push(segment),
        }
    }
    Ok(format!("/{}", kept.join("/")))
}

/// 1 for a `.` segment, 2 for `..`, with dots possibly percent-encoded.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment;
    let mut count = 0;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').or_else(|| {
            rest.get(..3)
                .filter(|s| s.eq_ignore_ascii_case("%2e"))
                .map(|_| &rest[3..])
        })?;
        count += 1;
    }
    (1..=2).contains(&count).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_unchanged() {
        for path in [
            "/",
            "/a",
            "/a/b/",
            "/a//b",
            "//",
            "/a.b/..c/...",
            "/%2e%2e%2e",
            "/~user/%41",
        ] {
            assert_eq!(normalise(path).as_deref(), Ok(path), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_resolved() {
        for (path, want) in [
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/../b", "/b"),
            ("/a/b/../../c", "/c"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a//../b", "/a/b"),
            ("/..a/b", "/..a/b"),
            ("/a/..", "/"),
        ] {
            assert_eq!(normalise(path).as_deref(), Ok(want), "{path}");
        }
    }

    #[test]
    fn escaping_the_root_is_refused() {
        for path in [
            "/..",
            "/a/../..",
            "/a/%2e%2e/%2e%2e/etc/passwd",
            "/./../x",
            "/%2E%2E",
        ] {
            assert_eq!(normalise(path), Err(Refusal::EscapesRoot), "{path}");
        }
    }

    #[test]
    fn invalid_paths_are_refused_with_the_reason() {
        for (path, reason) in [
            ("a/b", "does not start with '/'"),
            ("", "does not start with '/'"),
            ("/a b", "contains a space"),
            ("/a?b", "contains '?'"),
            ("/a#b", "contains '#'"),
            ("/a\r\nb", "contains a control byte"),
            ("/a\u{7f}", "contains a control byte"),
            ("/caf\u{e9}", "contains a non-ASCII character"),
        ] {
            assert_eq!(normalise(path).unwrap_err().to_string(), reason, "{path:?}");
        }
    }
}
