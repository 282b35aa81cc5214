//! The one template language of the built-in plugins: text with placeholders filled from the request.
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{path}` | the request path as it is now (after earlier plugins' rewrites), without the query |
//! | `{query}` | the query without `?`; missing when the request has none |
//! | `{method}`, `{upstream}`, `{client_addr}` | as the [`Request`] methods of the same name |
//! | `{original_uri}` | the path and query as the client sent them |
//! | `{ctx.KEY}` | the context value `KEY` (which may contain dots: `{ctx.jwt.user_id}`) |
//! | `{header.NAME}` | the first value of request header `NAME`; missing when absent or not UTF-8 |
//! | `{1}`, `{name}` | a capture group of a regex, for templates parsed with [`Template::parse_for`] |
//!
//! `{{` and `}}` stand for literal braces. Placeholders are checked when the template is parsed (at `init`),
//! so a typo is a config error rather than a surprise on the first request.

use crate::Request;
use core::fmt;
use regex::{Captures, Regex};

/// A parsed template; see the [module docs](self) for the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Placeholder {
    Path,
    Query,
    Method,
    Upstream,
    OriginalUri,
    ClientAddr,
    Context(String),
    Header(String),
    Group(usize),
    NamedGroup(String),
}

/// A placeholder that had no value when rendering (a context key nobody set, an absent header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    placeholder: String,
}

impl Missing {
    /// The placeholder as written in the template, braces included: `{ctx.jwt.user_id}`.
    pub fn placeholder(&self) -> &str {
        &self.placeholder
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing value for {}", self.placeholder)
    }
}

impl std::error::Error for Missing {}

impl Template {
    /// Parses a template without capture groups: `{1}` or `{name}` is an unknown placeholder.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_with(text, None)
    }

    /// Parses a template that may also name the capture groups of `regex`, by number (`{1}`, where `{0}` is
    /// the whole match) or by name. A group the regex does not have is an error. The request placeholders
    /// win over a group of the same name.
    pub fn parse_for(text: &str, regex: &Regex) -> Result<Self, String> {
        Self::parse_with(text, Some(regex))
    }

    fn parse_with(text: &str, regex: Option<&Regex>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
                literal.push_str(&tail[..1]);
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err("unmatched `}` (write `}}` for a literal brace)".into());
            }
            let end = tail
                .find('}')
                .ok_or("unclosed `{` (write `{{` for a literal brace)")?;
            let name = &tail[1..end];
            if !literal.is_empty() {
                parts.push(Part::Text(core::mem::take(&mut literal)));
            }
            parts.push(Part::Value(Placeholder::parse(name, regex)?));
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// Fills the placeholders from the current request, and the capture groups from `captures`.
    pub fn render(
        &self,
        req: &Request,
        captures: Option<&Captures<'_>>,
    ) -> Result<String, Missing> {
        self.render_with(|placeholder| match placeholder {
            Placeholder::Path => Some(req.path()),
            Placeholder::Query => req.query(),
            Placeholder::Method => Some(req.method()),
            Placeholder::Upstream => Some(req.upstream()),
            Placeholder::OriginalUri => Some(req.original_uri()),
            Placeholder::ClientAddr => Some(req.client_addr()),
            Placeholder::Context(key) => crate::context::get(key),
            Placeholder::Header(name) => req.header_str(name),
            Placeholder::Group(index) => group(captures?.get(*index)),
            Placeholder::NamedGroup(name) => group(captures?.name(name)),
        })
    }

    /// Rendering apart from where the values come from, so that it is testable without a host.
    fn render_with(
        &self,
        mut value: impl FnMut(&Placeholder) -> Option<String>,
    ) -> Result<String, Missing> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(placeholder) => match value(placeholder) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(Missing {
                            placeholder: placeholder.to_string(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }
}

/// A group that took no part in the match is empty, as in the regex crate's own replacements: an optional
/// group (`(/.*)?`) is meant to be allowed to be absent.
fn group(found: Option<regex::Match<'_>>) -> Option<String> {
    Some(found.map_or("", |m| m.as_str()).to_owned())
}

impl Placeholder {
    fn parse(name: &str, regex: Option<&Regex>) -> Result<Self, String> {
        let named = |prefix: &str| name.strip_prefix(prefix).map(str::to_owned);
        let placeholder = match name {
            "path" => Self::Path,
            "query" => Self::Query,
            "method" => Self::Method,
            "upstream" => Self::Upstream,
            "original_uri" => Self::OriginalUri,
            "client_addr" => Self::ClientAddr,
            _ => match (named("ctx."), named("header."), regex) {
                (Some(key), ..) if !key.is_empty() => Self::Context(key),
                (_, Some(header), _) if !header.is_empty() => {
                    Self::Header(header.to_ascii_lowercase())
                }
                (.., Some(regex)) => Self::group(name, regex)?,
                _ => return Err(unknown(name)),
            },
        };
        Ok(placeholder)
    }

    fn group(name: &str, regex: &Regex) -> Result<Self, String> {
        match name.parse::<usize>() {
            Ok(index) if index < regex.captures_len() => Ok(Self::Group(index)),
            Ok(index) => Err(format!(
                "`{{{index}}}`: the regex has no capture group {index}"
            )),
            Err(_) if regex.capture_names().any(|n| n == Some(name)) => {
                Ok(Self::NamedGroup(name.to_owned()))
            }
            Err(_) => Err(format!(
                "{}, nor a capture group of the regex",
                unknown(name)
            )),
        }
    }
}

fn unknown(name: &str) -> String {
    format!(
        "unknown placeholder `{{{name}}}` (known: {{path}}, {{query}}, {{method}}, {{upstream}}, \
         {{original_uri}}, {{client_addr}}, {{ctx.KEY}}, {{header.NAME}})"
    )
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path => f.write_str("{path}"),
            Self::Query => f.write_str("{query}"),
            Self::Method => f.write_str("{method}"),
            Self::Upstream => f.write_str("{upstream}"),
            Self::OriginalUri => f.write_str("{original_uri}"),
            Self::ClientAddr => f.write_str("{client_addr}"),
            Self::Context(key) => write!(f, "{{ctx.{key}}}"),
            Self::Header(name) => write!(f, "{{header.{name}}}"),
            Self::Group(index) => write!(f, "{{{index}}}"),
            Self::NamedGroup(name) => write!(f, "{{{name}}}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders against a fake request: `/p` with no query, context `jwt.user_id` = 42, header `x-a` = `b`.
    fn render(template: &Template, captures: Option<&Captures<'_>>) -> Result<String, Missing> {
        template.render_with(|placeholder| match placeholder {
            Placeholder::Path => Some("/p".into()),
            Placeholder::Query => None,
            Placeholder::Method => Some("GET".into()),
            Placeholder::Upstream => Some("a".into()),
            Placeholder::OriginalUri => Some("/orig?x=1".into()),
            Placeholder::ClientAddr => Some("::1".into()),
            Placeholder::Context(key) => (key == "jwt.user_id").then(|| "42".into()),
            Placeholder::Header(name) => (name == "x-a").then(|| "b".into()),
            Placeholder::Group(i) => group(captures?.get(*i)),
            Placeholder::NamedGroup(n) => group(captures?.name(n)),
        })
    }

    fn plain(text: &str) -> Result<String, Missing> {
        render(&Template::parse(text).unwrap(), None)
    }

    #[test]
    fn fills_request_placeholders() {
        assert_eq!(
            plain("/shops/{ctx.jwt.user_id}{path}").unwrap(),
            "/shops/42/p"
        );
        assert_eq!(
            plain("{method} {upstream} {original_uri} {client_addr}").unwrap(),
            "GET a /orig?x=1 ::1"
        );
        assert_eq!(
            plain("{header.X-A}").unwrap(),
            "b",
            "header names are case-insensitive"
        );
        assert_eq!(plain("no placeholders").unwrap(), "no placeholders");
        assert_eq!(plain("").unwrap(), "");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(plain("{{path}} }}{path}{{").unwrap(), "{path} }/p{");
    }

    #[test]
    fn a_missing_value_names_its_placeholder() {
        let missing = plain("/x/{ctx.nobody}").unwrap_err();
        assert_eq!(missing.placeholder(), "{ctx.nobody}");
        assert_eq!(missing.to_string(), "missing value for {ctx.nobody}");
        assert_eq!(plain("{query}").unwrap_err().placeholder(), "{query}");
        assert_eq!(
            plain("{header.x-none}").unwrap_err().placeholder(),
            "{header.x-none}"
        );
    }

    #[test]
    fn bad_templates_are_refused_at_parse() {
        for (text, error) in [
            ("{pth}", "unknown placeholder `{pth}`"),
            ("{}", "unknown placeholder `{}`"),
            ("{ctx.}", "unknown placeholder `{ctx.}`"),
            ("{header.}", "unknown placeholder `{header.}`"),
            ("{1}", "unknown placeholder `{1}`"),
            ("/a/{path", "unclosed `{`"),
            ("/a}", "unmatched `}`"),
        ] {
            let got = Template::parse(text).unwrap_err();
            assert!(got.starts_with(error), "{text}: {got}");
        }
    }

    #[test]
    fn capture_groups_by_number_and_name() {
        let regex = Regex::new(r"^/users/(?<id>[0-9]+)(/.*)?$").unwrap();
        let template = Template::parse_for("/u/{1}/{id}{2}|{0}|{path}", &regex).unwrap();
        let caps = regex.captures("/users/7").unwrap();
        assert_eq!(
            render(&template, Some(&caps)).unwrap(),
            "/u/7/7|/users/7|/p",
            "an unmatched group is empty"
        );
        let caps = regex.captures("/users/7/x").unwrap();
        assert_eq!(
            render(&template, Some(&caps)).unwrap(),
            "/u/7/7/x|/users/7/x|/p"
        );
        assert_eq!(render(&template, None).unwrap_err().placeholder(), "{1}");
    }

    #[test]
    fn groups_the_regex_lacks_are_refused() {
        let regex = Regex::new(r"^/users/([0-9]+)$").unwrap();
        assert!(
            Template::parse_for("{2}", &regex)
                .unwrap_err()
                .contains("no capture group 2")
        );
        assert!(
            Template::parse_for("{id}", &regex)
                .unwrap_err()
                .contains("nor a capture group")
        );
    }
}
