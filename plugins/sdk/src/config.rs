//! Turning the route's `config` table (JSON text from the host) into the plugin's type.
//!
//! Every field a plugin does not know is refused, whether or not its type says `deny_unknown_fields`: a typo
//! in a proxy config (`sett` for `set`) must fail at load, not silently do nothing. Errors name the dotted
//! path of the value (`keys.0.secret`).

use crate::ConfigError;
use serde::de::DeserializeOwned;

/// Reads a file the config names (`field`), for `init`. A plugin sees only the directories its route entry
/// grants (`grants.dirs`), so the error says so.
pub fn read_config_file(field: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            field,
            format!("cannot read {path}: {e} (is its directory granted with `grants.dirs`?)"),
        )
    })
}

pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    if !matches!(text.trim(), "" | "null" | "{}") {
        return parse_strict(text);
    }
    // No config: a struct whose fields have defaults deserialises from `{}`, a unit struct or an `Option`
    // only from `null`.
    parse_strict("{}").or_else(|first| parse_strict("null").map_err(|_| first))
}

fn parse_strict<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let mut unknown = None;
    let tracked = serde_path_to_error::Deserializer::new(&mut json, &mut track);
    let result = serde_ignored::deserialize(tracked, |path| {
        unknown.get_or_insert_with(|| ignored_path(&path));
    });
    // The first problem in document order wins: a misspelt key is reported as such, not as the
    // "missing field" it causes further on.
    if let Some(field) = unknown {
        return Err(ConfigError::new(field, "unknown field"));
    }
    let value = result.map_err(|e| {
        let message = without_position(&e);
        ConfigError::new(error_field(&tracked_path(&track.path()), &message), message)
    })?;
    json.end()
        .map_err(|e| ConfigError::new("", without_position(&e)))?;
    Ok(value)
}

/// The line and column point into JSON the host generated from the user's TOML: noise to the user.
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    message
        .strip_suffix(&position)
        .unwrap_or(&message)
        .to_owned()
}

/// `a.0.b` for serde_ignored's path (whose own display shows `?` for every `Option` it passed through).
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(ignored_path(parent), &index.to_string()),
        Path::Map { parent, key } => join(ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `a.0.b` for serde_path_to_error's path (whose own display is `a[0].b`, and `.` for the root).
fn tracked_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .fold(String::new(), |dotted, segment| match segment {
            Segment::Seq { index } => join(dotted, &index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => join(dotted, key),
            Segment::Unknown => dotted,
        })
}

fn join(mut parent: String, segment: &str) -> String {
    if !parent.is_empty() {
        parent.push('.');
    }
    parent.push_str(segment);
    parent
}

/// serde reports a missing field at its parent; naming the field itself points the user at what to add.
fn error_field(path: &str, message: &str) -> String {
    match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(missing) => join(path.to_owned(), missing),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Config {
        request: Phase,
        keys: Vec<Key>,
        limit: Option<Limit>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Phase {
        set: BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Key {
        secret: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Limit {
        rate: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct NoSettings;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Required {
        name: String,
    }

    fn error<T: DeserializeOwned + core::fmt::Debug>(text: &str) -> ConfigError {
        parse::<T>(text).unwrap_err()
    }

    #[test]
    fn empty_configs_give_defaults() {
        assert_eq!(parse::<Config>("{}").unwrap(), Config::default());
        assert_eq!(parse::<Config>("null").unwrap(), Config::default());
        assert_eq!(parse::<NoSettings>("{}").unwrap(), NoSettings);
        assert_eq!(parse::<Option<Limit>>("null").unwrap(), None);
    }

    #[test]
    fn unknown_fields_are_refused_by_path() {
        let e = error::<Config>(r#"{"request": {"sett": {}}}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("request.sett", "unknown field")
        );
        assert_eq!(
            error::<Config>(r#"{"keys": [{"secret": "s", "x": 1}]}"#).field,
            "keys.0.x"
        );
        assert_eq!(
            error::<Config>(r#"{"limit": {"rate": 1, "burst": 2}}"#).field,
            "limit.burst"
        );
        assert_eq!(error::<Config>(r#"{"other": true}"#).field, "other");
        let e = error::<NoSettings>(r#"{"x": 1}"#);
        assert_eq!(
            e.message,
            "invalid type: map, expected unit struct NoSettings"
        );
    }

    #[test]
    fn a_misspelt_key_is_reported_before_the_missing_field_it_causes() {
        let e = error::<Required>(r#"{"nmae": "x"}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("nmae", "unknown field")
        );
    }

    #[test]
    fn type_errors_name_the_path_and_keep_serdes_message() {
        let e = error::<Config>(r#"{"keys": [{"secret": 7}]}"#);
        assert_eq!(e.field, "keys.0.secret");
        assert!(
            e.message
                .starts_with("invalid type: integer `7`, expected a string"),
            "{}",
            e.message
        );
        assert_eq!(
            error::<Config>(r#"{"request": {"set": {"a": 1}}}"#).field,
            "request.set.a"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = error::<Config>(r#"{"keys": [{}]}"#);
        assert_eq!(e.field, "keys.0.secret");
        assert_eq!(e.message, "missing field `secret`");
        assert_eq!(error::<Required>("{}").field, "name");
    }

    #[test]
    fn trailing_text_is_refused() {
        assert_eq!(
            error::<Config>("{} x"),
            ConfigError::new("", "trailing characters")
        );
    }
}
