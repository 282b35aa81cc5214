//! Requests a guard lets through untouched: the `exclude_paths` (regexes) and `exclude_methods` config
//! fields that the auth plugins share, and the whole-path patterns they are made of ([`PathPatterns`]).

use crate::{ConfigError, Request};
use regex::Regex;
use regex_syntax::hir::{Dot, Hir, HirKind, Literal, Repetition};

pub struct Exclusions {
    paths: PathPatterns,
    /// Upper-cased.
    methods: Vec<String>,
}

impl Exclusions {
    /// `paths` and `methods` as configured; an error names `exclude_paths.N` or `exclude_methods.N`.
    pub fn build(paths: &[String], methods: &[String]) -> Result<Self, ConfigError> {
        let paths = PathPatterns::build(&[("exclude_paths", paths)])?;
        let methods = methods
            .iter()
            .enumerate()
            .map(|(i, method)| {
                if method.is_empty() || !method.bytes().all(is_token_byte) {
                    return Err(ConfigError::new(
                        format!("exclude_methods.{i}"),
                        format!("`{method}` is not an HTTP method"),
                    ));
                }
                Ok(method.to_ascii_uppercase())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { paths, methods })
    }

    /// Whether `req` passes unchecked. The method and the path are asked of the host only when a rule of
    /// their kind is configured, so a guard with no exclusions costs no host call here.
    pub fn excludes(&self, req: &Request) -> bool {
        (!self.methods.is_empty() && self.method_excluded(&req.method()))
            || (!self.paths.is_empty() && self.path_excluded(&req.path()))
    }

    fn method_excluded(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// `path` is percent-encoded as received. A path with a dot segment is never excluded: the upstream may
    /// resolve `/public/../admin` to `/admin`, which the pattern for `/public/.*` was not meant to open.
    fn path_excluded(&self, path: &str) -> bool {
        !has_dot_segment(path) && self.paths.matches(path)
    }
}

/// Regexes that must match the whole path (as Python's `re.fullmatch`), so that `/health` does not also
/// open `/admin/health`: `exclude_paths`, and spa-router's lists.
///
/// Most patterns are text, perhaps with `.*` before or after it (`/login_api`, `/static/.*`,
/// `/favicon\.ico`, `.*\.js`): those are compared as text, which costs nanoseconds where the regex
/// engine plugins are built with (no `perf` features, to stay small) walks the path byte by byte. The
/// others go to the engine.
#[derive(Default)]
pub struct PathPatterns {
    texts: Vec<TextPattern>,
    regexes: Vec<Regex>,
}

impl PathPatterns {
    /// The patterns of one or more config lists, each named by its field; an error names the entry
    /// (`exclude_paths.1`) and quotes the pattern as written.
    pub fn build(lists: &[(&str, &[String])]) -> Result<Self, ConfigError> {
        let mut patterns = PathPatterns::default();
        for (field, list) in lists {
            for (i, pattern) in list.iter().enumerate() {
                if let Some(text) = TextPattern::of(pattern) {
                    patterns.texts.push(text);
                    continue;
                }
                // The user's pattern first, so that an error quotes it as written.
                let regex = Regex::new(pattern)
                    .and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
                    .map_err(|e| ConfigError::new(format!("{field}.{i}"), e.to_string()))?;
                patterns.regexes.push(regex);
            }
        }
        Ok(patterns)
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.regexes.is_empty()
    }

    /// Whether one of the patterns matches the whole of `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.texts.iter().any(|t| t.matches(path)) || self.regexes.iter().any(|r| r.is_match(path))
    }
}

/// A pattern that is text, with `.*` (any characters but a newline) before it, after it, or both.
#[derive(Debug, PartialEq, Eq)]
struct TextPattern {
    text: String,
    any_before: bool,
    any_after: bool,
}

impl TextPattern {
    /// `None` for a pattern of any other shape (classes, alternations, flags, anchors…), or not a regex.
    fn of(pattern: &str) -> Option<TextPattern> {
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let any = Hir::repetition(Repetition {
            min: 0,
            max: None,
            greedy: true,
            sub: Box::new(Hir::dot(Dot::AnyCharExceptLF)),
        });
        let parts = match hir.kind() {
            HirKind::Concat(parts) => parts.as_slice(),
            _ => core::slice::from_ref(&hir),
        };
        let (any_before, parts) = match parts.split_first() {
            Some((first, rest)) if *first == any => (true, rest),
            _ => (false, parts),
        };
        let (any_after, parts) = match parts.split_last() {
            Some((last, rest)) if *last == any => (true, rest),
            _ => (false, parts),
        };
        let mut text = Vec::new();
        for part in parts {
            match part.kind() {
                HirKind::Literal(Literal(bytes)) => text.extend_from_slice(bytes),
                HirKind::Empty => {}
                _ => return None,
            }
        }
        Some(TextPattern {
            text: String::from_utf8(text).ok()?,
            any_before,
            any_after,
        })
    }

    /// What the anchored regex would say: the text at its place, and no newline where `.*` stands.
    fn matches(&self, path: &str) -> bool {
        let text = self.text.as_str();
        let any = |s: &str| !s.contains('\n');
        match (self.any_before, self.any_after) {
            (false, false) => path == text,
            (false, true) => path.strip_prefix(text).is_some_and(any),
            (true, false) => path.strip_suffix(text).is_some_and(any),
            (true, true) => any(path) && path.contains(text),
        }
    }
}

/// A `.` or `..` segment, with dots possibly written `%2e` (any case), and `\` counted as a separator since
/// some upstreams treat it as one. A path with one is never opened by a pattern: an upstream that
/// resolves it itself would reach a path the pattern was not meant to open.
pub fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let mut rest = segment.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() && dots < 3 {
            rest = match rest {
                [b'.', after @ ..] => after,
                [b'%', b'2', e, after @ ..] if e.eq_ignore_ascii_case(&b'e') => after,
                _ => return false,
            };
            dots += 1;
        }
        rest.is_empty() && (dots == 1 || dots == 2)
    })
}

/// RFC 9110 `tchar`: what a method (and an auth scheme) is made of.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exclusions(paths: &[&str], methods: &[&str]) -> Exclusions {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Exclusions::build(&owned(paths), &owned(methods)).unwrap()
    }

    #[test]
    fn path_patterns_match_the_whole_path() {
        let ex = exclusions(&["/health", "/public/.*"], &[]);
        assert!(ex.path_excluded("/health"));
        assert!(ex.path_excluded("/public/a/b"));
        assert!(!ex.path_excluded("/admin/health"));
        assert!(!ex.path_excluded("/healthz"));
        assert!(!ex.path_excluded("/"));
    }

    #[test]
    fn dot_segments_are_never_excluded() {
        let ex = exclusions(&["/public/.*"], &[]);
        for path in [
            "/public/../admin",
            "/public/%2e%2E/admin",
            "/public/..\\admin",
            "/public/./x",
        ] {
            assert!(!ex.path_excluded(path), "{path}");
        }
        assert!(ex.path_excluded("/public/..x/.y"));
    }

    #[test]
    fn text_patterns_are_told_from_regexes() {
        let text = |text: &str, any_before, any_after| {
            Some(TextPattern {
                text: text.into(),
                any_before,
                any_after,
            })
        };
        assert_eq!(
            TextPattern::of("/login_api"),
            text("/login_api", false, false)
        );
        assert_eq!(
            TextPattern::of(r"/favicon\.ico"),
            text("/favicon.ico", false, false)
        );
        assert_eq!(TextPattern::of("/static/.*"), text("/static/", false, true));
        assert_eq!(TextPattern::of(r".*\.js"), text(".js", true, false));
        assert_eq!(TextPattern::of(".*/x/.*"), text("/x/", true, true));
        assert_eq!(TextPattern::of(".*"), text("", true, false));
        assert_eq!(
            TextPattern::of("/caf\u{e9}"),
            text("/caf\u{e9}", false, false)
        );
        for regex in [
            r".*\.(css|js)",
            "/a.",
            "/a.+",
            "/a.*?",
            "(?i)/admin",
            "(?s)/a.*",
            "^/a",
            "/a$",
            r"/\w+",
            "/(x)",
            "/(unclosed",
        ] {
            assert_eq!(TextPattern::of(regex), None, "{regex}");
        }
    }

    #[test]
    fn text_patterns_match_as_their_regexes_do() {
        let paths = [
            "/",
            "/static/",
            "/static/app.js",
            "/static/a\nb",
            "/x/static/",
            "/favicon.ico",
            "/faviconxico",
            "/a.js",
            ".js",
            "/a.js/b",
            "/a\n.js",
            "/x/y/x/",
            "",
        ];
        for pattern in [
            "/static/",
            "/static/.*",
            r".*\.js",
            ".*/x/.*",
            ".*",
            r"/favicon\.ico",
        ] {
            let text = TextPattern::of(pattern).unwrap();
            let regex = Regex::new(&format!("^(?:{pattern})$")).unwrap();
            for path in paths {
                assert_eq!(
                    text.matches(path),
                    regex.is_match(path),
                    "{pattern} {path:?}"
                );
            }
        }
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        for path in [
            "/a/./b",
            "/a/../b",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/a\\..\\b",
            "/..",
            ".",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/a/b",
            "/a/.../b",
            "/a/..x/.y",
            "/a/%2e%2e%2e",
            "/a/%2f",
            "/%2",
            "/",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn methods_compare_upper_cased() {
        let ex = exclusions(&[], &["options", "HEAD"]);
        assert!(ex.method_excluded("OPTIONS"));
        assert!(ex.method_excluded("HEAD"));
        assert!(!ex.method_excluded("GET"));
    }

    #[test]
    fn bad_entries_name_their_index() {
        let field = |paths: &[&str], methods: &[&str]| {
            let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            Exclusions::build(&owned(paths), &owned(methods))
                .err()
                .unwrap()
                .field
        };
        assert_eq!(field(&["/ok", "/(unclosed"], &[]), "exclude_paths.1");
        assert_eq!(field(&[], &["GET", "BAD METHOD"]), "exclude_methods.1");
        assert_eq!(field(&[], &[""]), "exclude_methods.0");
    }
}
