//! One phase's header changes (`request` or `response`), checked at `init` and rendered per request.

use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::template::Template;
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
    match template.render(req, None) {
        Ok(value) if valid_value(&value) => Some((name, value)),
        // Only a placeholder's value can bring them in: the template's own text was checked at init.
        Ok(_) => {
            log::warn(&format!(
                "header {name} not set: its value has control characters"
            ));
            None
        }
        Err(missing) => {
            if log::enabled(log::Level::Debug) {
                log::debug(&format!("header {name} not set: {missing}"));
            }
            None
        }
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
