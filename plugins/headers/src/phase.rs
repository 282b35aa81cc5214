//! One phase's header changes (`request` or `response`), checked at `init` and rendered per request.

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::template::{Missing, Template, Values};
use weir_sdk::{ConfigError, Request, log};

/// A phase as written in the config.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PhaseConfig {
    set: BTreeMap<String, String>,
    append: BTreeMap<String, String>,
    remove: Vec<String>,
}

/// A phase ready to run: names lowercased, values parsed.
#[derive(Default)]
pub struct Phase {
    remove: Vec<String>,
    set: Vec<(String, Template)>,
    append: Vec<(String, Template)>,
}

/// One change, in the order the phase makes them.
pub enum Change<'a> {
    Remove(&'a str),
    Set(&'a str, String),
    Append(&'a str, String),
}

impl Phase {
    /// `field` is the phase's name in the config, for the dotted path of an error (`request.set.x bad`).
    pub fn build(field: &str, config: &PhaseConfig) -> Result<Self, ConfigError> {
        let remove = config
            .remove
            .iter()
            .enumerate()
            .map(|(i, name)| header_name(&format!("{field}.remove.{i}"), name))
            .collect::<Result<_, _>>()?;
        let templates = |kind: &str, values: &BTreeMap<String, String>| {
            values
                .iter()
                .map(|(name, value)| {
                    let at = format!("{field}.{kind}.{name}");
                    Ok((header_name(&at, name)?, header_template(&at, value)?))
                })
                .collect::<Result<Vec<_>, ConfigError>>()
        };
        Ok(Self {
            remove,
            set: templates("set", &config.set)?,
            append: templates("append", &config.append)?,
        })
    }

    /// The changes for the current request: removals, then sets, then appends. A value whose placeholder
    /// has nothing to fill it (an absent header, an unset context key) is left out rather than sent empty.
    pub fn changes(&self, req: &Request) -> Vec<Change<'_>> {
        let remove = self.remove.iter().map(|name| Change::Remove(name));
        let set = self
            .set
            .iter()
            .filter_map(|h| render(req, h))
            .map(|(name, value)| Change::Set(name, value));
        let append = self
            .append
            .iter()
            .filter_map(|h| render(req, h))
            .map(|(name, value)| Change::Append(name, value));
        remove.chain(set).chain(append).collect()
    }
}

/// A header's value for this request, or `None` (logged) when it cannot be had.
fn render<'a>(
    req: &Request,
    (name, template): &'a (String, Template),
) -> Option<(&'a str, String)> {
    match value(req, template) {
        Ok(value) => Some((name, value)),
        Err(Unset::ControlCharacters) => {
            log::warn(&format!(
                "header {name} not set: its value has control characters"
            ));
            None
        }
        Err(Unset::Missing(missing)) => {
            if log::enabled(log::Level::Debug) {
                log::debug(&format!("header {name} not set: {missing}"));
            }
            None
        }
    }
}

/// Why a header is left out on a request.
enum Unset {
    Missing(Missing),
    /// Only a placeholder's value can bring them in: the template's own text was checked at init.
    ControlCharacters,
}

/// [`render`] without the logging, which needs the host: the part that native tests can reach.
fn value(values: &impl Values, template: &Template) -> Result<String, Unset> {
    let value = template.render(values, None).map_err(Unset::Missing)?;
    if valid_value(&value) {
        Ok(value)
    } else {
        Err(Unset::ControlCharacters)
    }
}

/// Headers that describe the connection, and `content-length`: the proxy owns them and refuses a plugin's
/// change on every request, so a config naming them is refused once, at load.
const MANAGED: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A header name (an RFC 9110 token), lowercased as HTTP/2 and the host's lookups expect.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a valid header name"),
        ));
    }
    let name = name.to_ascii_lowercase();
    if MANAGED.contains(&name.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is managed by the proxy"),
        ));
    }
    Ok(name)
}

fn header_template(field: &str, value: &str) -> Result<Template, ConfigError> {
    if !valid_value(value) {
        return Err(ConfigError::new(
            field,
            "control characters (CR, LF, NUL…) are not allowed in a header value",
        ));
    }
    Template::parse(value).map_err(|e| ConfigError::new(field, e))
}

/// What the host accepts in a header value: no control characters but tab (which rules out CR/LF
/// injection).
fn valid_value(value: &str) -> bool {
    !value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<Phase, ConfigError> {
        Phase::build("request", &serde_json::from_str(json).unwrap())
    }

    fn error(json: &str) -> (String, String) {
        let e = build(json).err().expect("refused");
        (e.field, e.message)
    }

    #[test]
    fn names_are_lowercased_and_values_parsed() {
        let phase =
            build(r#"{"set": {"X-Api-Key": "s", "x-up": "{upstream}"}, "remove": ["Cookie"]}"#)
                .unwrap();
        assert_eq!(phase.remove, ["cookie"]);
        let names: Vec<&str> = phase.set.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-api-key", "x-up"]);
    }

    #[test]
    fn bad_names_are_refused_with_their_path() {
        let (field, message) = error(r#"{"set": {"x bad": "v"}}"#);
        assert_eq!(field, "request.set.x bad");
        assert_eq!(message, "`x bad` is not a valid header name");
        assert_eq!(error(r#"{"append": {"": "v"}}"#).0, "request.append.");
        assert_eq!(error(r#"{"remove": ["ok", "n:o"]}"#).0, "request.remove.1");
        assert_eq!(
            error(r#"{"set": {"Transfer-Encoding": "x"}}"#).1,
            "`transfer-encoding` is managed by the proxy"
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_path() {
        let (field, message) = error(r#"{"set": {"x-a": "a\r\nInjected: 1"}}"#);
        assert_eq!(field, "request.set.x-a");
        assert!(message.starts_with("control characters"), "{message}");
        assert!(
            error(r#"{"set": {"x-a": "a\u0000"}}"#)
                .1
                .starts_with("control characters")
        );
        assert!(
            error(r#"{"append": {"x-a": "{nope}"}}"#)
                .1
                .starts_with("unknown placeholder `{nope}`")
        );
        assert!(build(r#"{"set": {"x-a": "tab\tok {{literal}}"}}"#).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use weir_sdk::template::Snapshot;

    /// RFC 9110's `tchar`, spelled differently from [`header_name`]: what it excludes.
    fn is_tchar(b: u8) -> bool {
        b.is_ascii_graphic() && !br#""(),/:;<=>?@[\]{}"#.contains(&b)
    }

    fn has_control(text: &str) -> bool {
        text.bytes().any(|b| b != b'\t' && (b < 0x20 || b == 0x7f))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}",
            1 => prop::sample::select(vec!["Connection", "content-length", "TE"]).prop_map(str::to_owned),
            1 => "[a-z :;\"(),/{}\t]{0,4}",
            1 => any::<String>(),
        ]
    }

    /// Templates, broken ones, and text with the control characters a header value must not have.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a\t ]{0,4}(\\{\\{|\\}\\}|\\{(path|query|ctx\\.a|header\\.x-a)\\})?[a ]{0,4}",
            1 => "[a {}]{0,4}\\{(path|nope)\\}[a {}]{0,4}",
            1 => "[a\t\r\n\u{0}\u{7f}]{0,8}",
            1 => any::<String>(),
        ]
    }

    /// Every request value the same text, often with CR, LF, NUL or DEL in it; the header any bytes.
    fn hostile_request() -> impl Strategy<Value = Snapshot> {
        let text = || prop_oneof!["[a\t\r\n\u{0}\u{7f}é]{0,8}", any::<String>()];
        let header = prop_oneof![
            text().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        (text(), prop::option::of(text()), header).prop_map(|(text, query, header)| Snapshot {
            path: text.clone(),
            query,
            method: text.clone(),
            upstream: text.clone(),
            original_uri: text.clone(),
            client_addr: text.clone(),
            context: [("a".to_owned(), text)].into(),
            headers: vec![("x-a".to_owned(), header)],
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A phase that builds has only lowercase token names the proxy lets plugins change, and values
        /// free of control characters but tab.
        #[test]
        fn a_phase_builds_only_from_valid_names_and_values(
            set in prop::collection::btree_map(name(), value_text(), 0..4),
            append in prop::collection::btree_map(name(), value_text(), 0..4),
            remove in prop::collection::vec(name(), 0..4),
        ) {
            let config = PhaseConfig { set, append, remove };
            let Ok(phase) = Phase::build("request", &config) else {
                return Ok(());
            };
            let names = phase.remove.iter().chain(phase.set.iter().chain(&phase.append).map(|(n, _)| n));
            for name in names {
                prop_assert!(!name.is_empty() && name.bytes().all(is_tchar), "{name:?}");
                prop_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name:?}");
                prop_assert!(!MANAGED.contains(&name.as_str()), "{name:?}");
            }
            for value in config.set.values().chain(config.append.values()) {
                prop_assert!(!has_control(value), "{value:?}");
            }
            prop_assert_eq!(phase.set.len(), config.set.len());
            prop_assert_eq!(phase.append.len(), config.append.len());
            prop_assert_eq!(phase.remove.len(), config.remove.len());
        }

        /// Whatever the request carries, a header's value is its template rendered, and never holds CR,
        /// LF or another control character but tab: a request cannot inject a header line.
        #[test]
        fn request_values_never_bring_control_characters_into_a_header(
            text in prop::sample::select(vec![
                "{path}",
                "x {query} y",
                "{ctx.a}",
                "{header.X-A}",
                "{method}{upstream}{original_uri}{client_addr}",
                "tab\tand {{braces}}",
            ]),
            req in hostile_request(),
        ) {
            let template = header_template("set.x", text).unwrap();
            let rendered = template.render(&req, None);
            match value(&req, &template) {
                Ok(value) => {
                    prop_assert!(!has_control(&value), "{value:?}");
                    prop_assert_eq!(rendered, Ok(value));
                }
                Err(Unset::ControlCharacters) => {
                    prop_assert!(rendered.is_ok_and(|r| has_control(&r)));
                }
                Err(Unset::Missing(missing)) => prop_assert_eq!(rendered, Err(missing)),
            }
        }
    }
}
