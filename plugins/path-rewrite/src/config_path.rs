//! What a configured prefix must be: an absolute path of visible ASCII without `?` or `#`. The paths the
//! plugin produces on requests are checked and normalised by the host's `set-path`, the same way the
//! client's path was.

use core::fmt;

/// Why a configured path is refused; displayed after the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAbsolute,
    Contains(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAbsolute => f.write_str("does not start with '/'"),
            Refusal::Contains(what) => write!(f, "contains {what}"),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_paths_are_refused_with_the_reason() {
        assert_eq!(check("/a/b%2F"), Ok(()));
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
            assert_eq!(check(path).unwrap_err().to_string(), reason, "{path:?}");
        }
    }
}
