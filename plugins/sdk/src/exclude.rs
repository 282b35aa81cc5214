//! Requests a guard lets through untouched: the `exclude_paths` (regexes) and `exclude_methods` config
//! fields that the auth plugins share.

use crate::{ConfigError, Request};
use regex::Regex;

pub struct Exclusions {
    /// Anchored at both ends: a pattern must match the whole path (as Python's `re.fullmatch`), so
    /// that `/health` does not also open `/admin/health`.
    paths: Vec<Regex>,
    /// Upper-cased.
    methods: Vec<String>,
}

impl Exclusions {
    /// `paths` and `methods` as configured; an error names `exclude_paths.N` or `exclude_methods.N`.
    pub fn build(paths: &[String], methods: &[String]) -> Result<Self, ConfigError> {
        let paths = paths
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                // The user's pattern first, so that an error quotes it as written.
                Regex::new(pattern)
                    .and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
                    .map_err(|e| ConfigError::new(format!("exclude_paths.{i}"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
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
        !has_dot_segment(path) && self.paths.iter().any(|r| r.is_match(path))
    }
}

/// A `.` or `..` segment, with dots possibly written `%2e`, and `\` counted as a separator since some
/// upstreams treat it as one.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
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
