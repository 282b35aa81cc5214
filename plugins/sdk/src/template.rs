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

    /// Fills the placeholders from `values` (in a plugin, the current [`Request`]), and the capture groups
    /// from `captures`.
    pub fn render(
        &self,
        values: &impl Values,
        captures: Option<&Captures<'_>>,
    ) -> Result<String, Missing> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(placeholder) => match placeholder.value(values, captures) {
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

/// The request values a template reads. [`Request`] asks the host for each; `Snapshot` (feature `testing`)
/// holds them, so that a plugin's templates can be tested natively, where there is no host.
pub trait Values {
    fn path(&self) -> String;
    fn query(&self) -> Option<String>;
    fn method(&self) -> String;
    fn upstream(&self) -> String;
    fn original_uri(&self) -> String;
    fn client_addr(&self) -> String;
    fn context(&self, key: &str) -> Option<String>;
    /// The first value of header `name` (lowercase), as the bytes the client sent: they may not be text.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
}

impl Values for Request {
    fn path(&self) -> String {
        Request::path(self)
    }

    fn query(&self) -> Option<String> {
        Request::query(self)
    }

    fn method(&self) -> String {
        Request::method(self)
    }

    fn upstream(&self) -> String {
        Request::upstream(self)
    }

    fn original_uri(&self) -> String {
        Request::original_uri(self)
    }

    fn client_addr(&self) -> String {
        Request::client_addr(self)
    }

    fn context(&self, key: &str) -> Option<String> {
        crate::context::get(key)
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        Request::header(self, name)
    }
}

/// Request values held in memory.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub path: String,
    pub query: Option<String>,
    pub method: String,
    pub upstream: String,
    pub original_uri: String,
    pub client_addr: String,
    pub context: std::collections::BTreeMap<String, String>,
    /// In order, names in any case: the first of a name is its value, as in a request.
    pub headers: Vec<(String, Vec<u8>)>,
}

#[cfg(any(test, feature = "testing"))]
impl Values for Snapshot {
    fn path(&self) -> String {
        self.path.clone()
    }

    fn query(&self) -> Option<String> {
        self.query.clone()
    }

    fn method(&self) -> String {
        self.method.clone()
    }

    fn upstream(&self) -> String {
        self.upstream.clone()
    }

    fn original_uri(&self) -> String {
        self.original_uri.clone()
    }

    fn client_addr(&self) -> String {
        self.client_addr.clone()
    }

    fn context(&self, key: &str) -> Option<String> {
        self.context.get(key).cloned()
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

/// A group that took no part in the match is empty, as in the regex crate's own replacements: an optional
/// group (`(/.*)?`) is meant to be allowed to be absent.
fn group(found: Option<regex::Match<'_>>) -> Option<String> {
    Some(found.map_or("", |m| m.as_str()).to_owned())
}

impl Placeholder {
    /// `None` when the request has no such value; a header that is not UTF-8 has none as text.
    fn value(&self, values: &impl Values, captures: Option<&Captures<'_>>) -> Option<String> {
        match self {
            Self::Path => Some(values.path()),
            Self::Query => values.query(),
            Self::Method => Some(values.method()),
            Self::Upstream => Some(values.upstream()),
            Self::OriginalUri => Some(values.original_uri()),
            Self::ClientAddr => Some(values.client_addr()),
            Self::Context(key) => values.context(key),
            Self::Header(name) => String::from_utf8(values.header(name)?).ok(),
            Self::Group(index) => group(captures?.get(*index)),
            Self::NamedGroup(name) => group(captures?.name(name)),
        }
    }

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

    /// `/p` with no query, context `jwt.user_id` = 42, header `x-a` = `b`, header `x-bin` not UTF-8.
    fn request() -> Snapshot {
        Snapshot {
            path: "/p".into(),
            query: None,
            method: "GET".into(),
            upstream: "a".into(),
            original_uri: "/orig?x=1".into(),
            client_addr: "::1".into(),
            context: [("jwt.user_id".into(), "42".into())].into(),
            headers: vec![("X-A".into(), b"b".into()), ("x-bin".into(), vec![0xff])],
        }
    }

    fn render(template: &Template, captures: Option<&Captures<'_>>) -> Result<String, Missing> {
        template.render(&request(), captures)
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
        assert_eq!(
            plain("{header.x-bin}").unwrap_err().placeholder(),
            "{header.x-bin}",
            "a header that is not UTF-8 has no value as text"
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Regexes whose groups templates name: numbered, named, optional, repeated, alternatives, none.
    const REGEXES: [&str; 5] = [
        r"^/users/(?<id>[0-9]+)(/.*)?$",
        r"(a)|(?<b>b)",
        r"(?<each>.)*",
        r"[a-z]+",
        r"^(?<all>(?s).*)$",
    ];

    fn regex() -> impl Strategy<Value = Regex> {
        prop::sample::select(&REGEXES[..]).prop_map(|pattern| Regex::new(pattern).unwrap())
    }

    /// Subjects some of the regexes match, and anything.
    fn subject() -> impl Strategy<Value = String> {
        prop_oneof![
            "/users/[0-9]{1,3}(/[a-z]{0,3})?",
            "[ab]{0,3}",
            any::<String>()
        ]
    }

    /// Any text, but often of what the parser looks at: braces, placeholder names and their prefixes,
    /// group numbers.
    fn template_text() -> impl Strategy<Value = String> {
        let words: Vec<&str> =
            "{ } {{ }} path query ctx. header. id each 0 1 +1 {1} {id} {b} {path} {ctx.a} {header.x}"
                .split(' ')
                .collect();
        let piece = prop_oneof![
            4 => prop::sample::select(words).prop_map(str::to_owned),
            1 => "[0-9]{1,3}",
            1 => ".{0,3}",
        ];
        prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    /// Text with braces in it, and anything.
    fn braced_text() -> impl Strategy<Value = String> {
        prop_oneof!["[{}a ]{0,12}", any::<String>()]
    }

    /// `text` written so that a template reads it back as literal text.
    fn escape(text: &str) -> String {
        text.replace('{', "{{").replace('}', "}}")
    }

    /// A template that parses for `regex`: escaped text and placeholders, among them every group of
    /// `regex` and context keys and header names of any characters.
    fn valid_template(regex: &Regex) -> impl Strategy<Value = String> + use<> {
        let mut names: Vec<String> = [
            "path",
            "query",
            "method",
            "upstream",
            "original_uri",
            "client_addr",
            "ctx.jwt.sub",
            "header.x-a",
            "header.X-B",
        ]
        .map(String::from)
        .into();
        names.extend((0..regex.captures_len()).map(|i| i.to_string()));
        names.extend(regex.capture_names().flatten().map(str::to_owned));
        let placeholder = prop_oneof![
            8 => prop::sample::select(names),
            1 => "ctx\\.[^}]{1,6}",
            1 => "header\\.[^}]{1,6}",
        ]
        .prop_map(|name| format!("{{{name}}}"));
        let literal = braced_text().prop_map(|text| escape(&text));
        prop::collection::vec(prop_oneof![literal, placeholder], 0..6)
            .prop_map(|parts| parts.concat())
    }

    /// Request values of any text, and headers of any bytes (often not UTF-8), under names the templates
    /// use and others.
    fn request() -> impl Strategy<Value = Snapshot> {
        let key = prop_oneof![3 => Just("jwt.sub".to_owned()), 1 => "[^}]{1,6}"];
        let name = prop_oneof![
            3 => prop::sample::select(vec!["x-a", "X-A", "x-b", "X-B"]).prop_map(str::to_owned),
            1 => "[^}]{1,6}",
        ];
        let value = prop_oneof![
            3 => any::<String>().prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..16),
        ];
        let text = any::<String>;
        (
            (
                text(),
                prop::option::weighted(0.8, text()),
                text(),
                text(),
                text(),
                text(),
            ),
            prop::collection::btree_map(key, text(), 0..4),
            prop::collection::vec((name, value), 0..6),
        )
            .prop_map(
                |((path, query, method, upstream, original_uri, client_addr), context, headers)| {
                    Snapshot {
                        path,
                        query,
                        method,
                        upstream,
                        original_uri,
                        client_addr,
                        context,
                        headers,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the text, parsing answers with a template or an error. A regex only adds
        /// placeholders, so what parses without one parses the same with one.
        #[test]
        fn any_text_parses_or_is_refused(
            text in prop_oneof![template_text(), any::<String>()],
            regex in regex(),
        ) {
            let with_groups = Template::parse_for(&text, &regex);
            if let Ok(template) = Template::parse(&text) {
                prop_assert_eq!(with_groups, Ok(template));
            }
        }

        #[test]
        fn text_without_braces_renders_verbatim(text in "[^{}]*", req in request()) {
            let template = Template::parse(&text).unwrap();
            prop_assert_eq!(template.render(&req, None), Ok(text));
        }

        /// `{{` and `}}` read back as `{` and `}`, so any text survives being escaped into a template.
        #[test]
        fn doubled_braces_round_trip(text in braced_text(), regex in regex(), req in request()) {
            let escaped = escape(&text);
            prop_assert_eq!(Template::parse(&escaped).unwrap().render(&req, None), Ok(text.clone()));
            let with_groups = Template::parse_for(&escaped, &regex).unwrap();
            prop_assert_eq!(with_groups.render(&req, None), Ok(text));
        }

        /// Whatever the request holds (any text, headers of any bytes, groups that took no part in the
        /// match, no match at all), a template renders as its halves do one after the other, and the
        /// first placeholder without a value is the one reported missing.
        #[test]
        fn a_template_renders_as_its_parts_in_order(
            (regex, first, second) in regex().prop_flat_map(|regex| {
                (valid_template(&regex), valid_template(&regex), Just(regex))
                    .prop_map(|(first, second, regex)| (regex, first, second))
            }),
            subject in subject(),
            req in request(),
        ) {
            let captures = regex.captures(&subject);
            let render = |text: &str| {
                Template::parse_for(text, &regex).unwrap().render(&req, captures.as_ref())
            };
            let expected = match (render(&first), render(&second)) {
                (Ok(first), Ok(second)) => Ok(first + &second),
                (Err(missing), _) | (Ok(_), Err(missing)) => Err(missing),
            };
            prop_assert_eq!(render(&format!("{first}{second}")), expected);
        }

        /// Each value reaches the output as the request holds it, however odd.
        #[test]
        fn placeholders_render_request_values_unchanged(req in request()) {
            let one = |text: &str| Template::parse(text).unwrap().render(&req, None).ok();
            prop_assert_eq!(one("{path}"), Some(req.path.clone()));
            prop_assert_eq!(one("{query}"), req.query.clone());
            prop_assert_eq!(one("{method}"), Some(req.method.clone()));
            prop_assert_eq!(one("{upstream}"), Some(req.upstream.clone()));
            prop_assert_eq!(one("{original_uri}"), Some(req.original_uri.clone()));
            prop_assert_eq!(one("{client_addr}"), Some(req.client_addr.clone()));
            prop_assert_eq!(one("{ctx.jwt.sub}"), req.context.get("jwt.sub").cloned());
        }

        #[test]
        fn a_header_renders_only_when_it_is_utf8(value in prop::collection::vec(any::<u8>(), 0..16)) {
            let req = Snapshot {
                headers: vec![("X-A".into(), value.clone())],
                ..Snapshot::default()
            };
            let rendered = Template::parse("{header.x-a}").unwrap().render(&req, None);
            prop_assert_eq!(rendered.ok(), String::from_utf8(value).ok());
        }
    }
}
