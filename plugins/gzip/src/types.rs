//! Which media types are worth compressing: the config's ranges matched against `Content-Type`.

/// One configured range, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaRange {
    Any,
    Exact(String),
    /// `text/*`: the type before the slash.
    Type(String),
    /// `application/*+json`: the type, and the structured-syntax suffix with its `+`.
    Suffix(String, String),
}

impl MediaRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let Some((kind, sub)) = lower.split_once('/') else {
            return Err(format!("`{text}` is not a media type such as \"text/*\""));
        };
        let token = |s: &str| !s.is_empty() && !s.contains(['*', '/', ';', ' ']);
        match (kind, sub) {
            ("*", "*") => Ok(MediaRange::Any),
            (k, "*") if token(k) => Ok(MediaRange::Type(k.into())),
            (k, s) if token(k) && s.starts_with("*+") && token(&s[2..]) => {
                Ok(MediaRange::Suffix(k.into(), s[1..].into()))
            }
            (k, s) if token(k) && token(s) => Ok(MediaRange::Exact(lower.clone())),
            _ => Err(format!("`{text}` is not a media type such as \"text/*\"")),
        }
    }

    fn matches(&self, essence: &str) -> bool {
        let (kind, sub) = essence.split_once('/').unwrap_or((essence, ""));
        match self {
            MediaRange::Any => true,
            MediaRange::Exact(e) => e == essence,
            MediaRange::Type(k) => k == kind,
            MediaRange::Suffix(k, suffix) => k == kind && sub.ends_with(suffix.as_str()),
        }
    }
}

/// Whether a `Content-Type` value is in one of `ranges`. Parameters (`; charset=utf-8`) do not count; a
/// response without a type is not compressed, since nothing says it is text.
pub fn compressible(content_type: Option<&[u8]>, ranges: &[MediaRange]) -> bool {
    let Some(value) = content_type.and_then(|v| core::str::from_utf8(v).ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    !essence.is_empty() && ranges.iter().any(|r| r.matches(&essence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<MediaRange> {
        list.iter().map(|t| MediaRange::parse(t).unwrap()).collect()
    }

    #[test]
    fn ranges_match_types_subtypes_and_suffixes() {
        let r = ranges(&["text/*", "application/json", "application/*+xml"]);
        for yes in [
            "text/html",
            "TEXT/Plain; charset=utf-8",
            "application/json",
            "application/json;charset=utf-8",
            "application/atom+xml",
        ] {
            assert!(compressible(Some(yes.as_bytes()), &r), "{yes}");
        }
        for no in [
            "image/png",
            "application/jsonx",
            "application/xml",
            "application/octet-stream",
            "",
            "texty/html",
        ] {
            assert!(!compressible(Some(no.as_bytes()), &r), "{no}");
        }
        assert!(!compressible(None, &r));
        assert!(compressible(Some(b"image/png"), &ranges(&["*/*"])));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in ["text", "*/html", "text/*+", "/json", "text/ html", "a/b/c"] {
            assert!(MediaRange::parse(bad).is_err(), "{bad}");
        }
    }
}
