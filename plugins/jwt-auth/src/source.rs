//! Where a token is looked for (Envoy's `from_headers`, `from_params`, `from_cookies`), and how it is
//! removed before the request goes upstream.

use serde::Deserialize;
use weir_sdk::{Request, Result};

#[derive(Deserialize, Clone)]
pub struct HeaderSource {
    pub name: String,
    /// What precedes the token in the value (`Bearer `), compared case-insensitively as auth schemes are.
    #[serde(default)]
    pub prefix: String,
}

pub struct Sources {
    pub headers: Vec<HeaderSource>,
    pub params: Vec<String>,
    pub cookies: Vec<String>,
}

/// A token, and where it was found.
pub struct Found {
    pub token: String,
    origin: Origin,
}

enum Origin {
    Header(String),
    Param(String),
    Cookie(String),
}

impl Sources {
    /// With no source configured, `Authorization: Bearer <token>`.
    pub fn or_default(self) -> Self {
        if self.headers.is_empty() && self.params.is_empty() && self.cookies.is_empty() {
            return Sources {
                headers: vec![HeaderSource {
                    name: "authorization".into(),
                    prefix: "Bearer ".into(),
                }],
                ..self
            };
        }
        self
    }

    /// The first token found: headers, then query parameters, then cookies, each in configured order.
    pub fn find(&self, req: &Request) -> Option<Found> {
        let found = |token: String, origin| Found { token, origin };
        for source in &self.headers {
            for value in req.header_all(&source.name) {
                let Ok(value) = String::from_utf8(value) else {
                    continue;
                };
                if let Some(token) = strip_prefix_ignore_case(&value, &source.prefix) {
                    let token = token.trim();
                    if !token.is_empty() {
                        return Some(found(token.into(), Origin::Header(source.name.clone())));
                    }
                }
            }
        }
        if let Some(query) = req.query() {
            for name in &self.params {
                if let Some(token) = query_param(&query, name) {
                    return Some(found(token, Origin::Param(name.clone())));
                }
            }
        }
        let cookie_headers = req.header_all("cookie");
        for name in &self.cookies {
            for header in &cookie_headers {
                if let Some(token) = cookies(header).find(|(n, _)| n == name).map(|(_, v)| v) {
                    return Some(found(token.into(), Origin::Cookie(name.clone())));
                }
            }
        }
        None
    }
}

impl Found {
    /// Takes the token out of the request, so that the upstream never sees it.
    pub fn strip(&self, req: &mut Request) -> Result<()> {
        match &self.origin {
            Origin::Header(name) => req.remove_header(name),
            Origin::Param(name) => {
                let query = req.query().unwrap_or_default();
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| pair.split('=').next() != Some(name.as_str()))
                    .collect();
                let kept = kept.join("&");
                req.set_query((!kept.is_empty()).then_some(kept.as_str()))
            }
            Origin::Cookie(name) => {
                let headers = req.header_all("cookie");
                let kept: Vec<String> = headers
                    .iter()
                    .flat_map(|h| cookies(h).filter(|(n, _)| n != name))
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                if kept.is_empty() {
                    req.remove_header("cookie")
                } else {
                    req.set_header("cookie", kept.join("; "))
                }
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The decoded value of the first `name=value` pair (RFC 6750 2.3: form-encoded, so `+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name && !v.is_empty()).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The `name=value` pairs of one `Cookie` header (RFC 6265 section 4.2.1), quotes around a value removed.
fn cookies(header: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(header)
        .unwrap_or_default()
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name.trim(), value))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_whole_and_decoded() {
        assert_eq!(
            query_param("a=1&access_token=x.y%2Dz", "access_token").as_deref(),
            Some("x.y-z")
        );
        assert_eq!(query_param("xaccess_token=1", "access_token"), None);
        assert_eq!(query_param("access_token=", "access_token"), None);
    }

    #[test]
    fn cookies_split_on_semicolons_and_drop_quotes() {
        let found: Vec<_> = cookies(b"a=1; jwt=\"t.o.k\" ;b=2").collect();
        assert_eq!(found, [("a", "1"), ("jwt", "t.o.k"), ("b", "2")]);
    }

    #[test]
    fn prefixes_compare_ignoring_case() {
        assert_eq!(
            strip_prefix_ignore_case("bearer abc", "Bearer "),
            Some("abc")
        );
        assert_eq!(strip_prefix_ignore_case("Basic abc", "Bearer "), None);
        assert_eq!(strip_prefix_ignore_case("Be", "Bearer "), None);
        assert_eq!(strip_prefix_ignore_case("abc", ""), Some("abc"));
    }
}
