//! Which route a request takes: path (exact, prefix or regex), methods and host; the first match wins.

use http::Method;
use regex::Regex;

use crate::config::{HostPattern, RouteConfig};

pub struct RouteMatch {
    path: PathMatch,
    methods: Option<Vec<Method>>,
    host: Option<HostPattern>,
}

enum PathMatch {
    Any,
    Exact(String),
    /// Without a trailing slash, so that `/api/` and `/api` behave the same.
    Prefix(String),
    Regex(Regex),
}

impl RouteMatch {
    pub fn new(config: &RouteConfig) -> RouteMatch {
        let path = match (&config.path, &config.path_prefix, &config.path_regex) {
            (Some(p), _, _) => PathMatch::Exact(p.clone()),
            (_, Some(p), _) => PathMatch::Prefix(p.trim_end_matches('/').to_owned()),
            (_, _, Some(r)) => PathMatch::Regex(r.0.clone()),
            _ => PathMatch::Any,
        };
        RouteMatch {
            path,
            methods: config
                .methods
                .as_ref()
                .map(|m| m.iter().map(|m| m.0.clone()).collect()),
            host: config.host.clone(),
        }
    }

    pub fn matches(&self, method: &Method, host: Option<&str>, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            // Segment-aware: `/api` matches `/api` and `/api/x`, never `/apix`.
            PathMatch::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatch::Regex(r) => r.is_match(path),
        };
        path_ok
            && self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self
                .host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|host| h.matches(host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(toml_text: &str) -> RouteMatch {
        let config: RouteConfig =
            toml::from_str(&format!("upstream = \"u\"\n{toml_text}")).unwrap();
        RouteMatch::new(&config)
    }

    #[test]
    fn prefix_is_segment_aware() {
        let r = route("path_prefix = \"/api/\"");
        assert!(r.matches(&Method::GET, None, "/api"));
        assert!(r.matches(&Method::GET, None, "/api/x"));
        assert!(!r.matches(&Method::GET, None, "/apix"));
        let root = route("path_prefix = \"/\"");
        assert!(root.matches(&Method::GET, None, "/anything"));
    }

    #[test]
    fn methods_and_host() {
        let r = route("methods = [\"post\"]\nhost = \"*.example.com\"");
        assert!(r.matches(&Method::POST, Some("a.example.com:8080"), "/"));
        assert!(!r.matches(&Method::GET, Some("a.example.com"), "/"));
        assert!(!r.matches(&Method::POST, None, "/"));
    }

    #[test]
    fn regex_and_exact() {
        assert!(route("path_regex = \"^/v[0-9]+/\"").matches(&Method::GET, None, "/v2/x"));
        assert!(!route("path = \"/a\"").matches(&Method::GET, None, "/a/b"));
    }
}
