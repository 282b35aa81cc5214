//! Turning the route's `config` table (JSON text from the host) into the plugin's type, and the value types
//! configs share ([`Seconds`]).
//!
//! Every field a plugin does not know is refused, whether or not its type says `deny_unknown_fields`: a typo
//! in a proxy config (`sett` for `set`) must fail at load, not silently do nothing. Errors name the dotted
//! path of the value (`keys.0.secret`).

use core::fmt;

use crate::ConfigError;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

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

/// A span of whole seconds in a config (a token's lifetime): a number (`3600`), or a duration such as
/// `"90s"`, `"30m"`, `"1h"`, `"7d"` or `"1h30m"`, numbers each followed by `s`, `m`, `h` or `d` (digits
/// alone are seconds too). The plugin checks the range it accepts.
///
/// ```
/// # use weir_sdk::config::Seconds;
/// #[derive(serde::Deserialize)]
/// struct Config {
///     ttl: Seconds,
/// }
/// let config: Config = serde_json::from_str(r#"{"ttl": "1h30m"}"#).unwrap();
/// assert_eq!(config.ttl, Seconds(5400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u64);

impl Seconds {
    fn parse(text: &str) -> Result<Seconds, String> {
        let invalid = || {
            format!(
                "`{text}` is not a duration such as \"90s\", \"30m\", \"1h\", \"7d\" or \"1h30m\""
            )
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid());
        }
        if rest.bytes().all(|b| b.is_ascii_digit()) {
            return rest.parse().map(Seconds).map_err(|_| invalid());
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (number, after) = rest.split_at(digits);
            let number: u64 = number.parse().map_err(|_| invalid())?;
            let scale = match after.bytes().next() {
                Some(b's') => 1,
                Some(b'm') => 60,
                Some(b'h') => 3_600,
                Some(b'd') => 86_400,
                _ => return Err(invalid()),
            };
            total = number
                .checked_mul(scale)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(invalid)?;
            rest = &after[1..];
        }
        Ok(Seconds(total))
    }
}

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds (3600) or a duration (\"1h\")")
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Seconds, E> {
                Ok(Seconds(seconds))
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Seconds, E> {
                u64::try_from(seconds)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("`{seconds}` is not a whole number of seconds")))
            }

            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Seconds, E> {
                Err(E::custom(format!(
                    "`{seconds}` is not a whole number of seconds"
                )))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Seconds, E> {
                Seconds::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
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
    fn seconds_are_a_number_or_a_duration() {
        let seconds = |v: serde_json::Value| {
            serde_json::from_value::<Seconds>(v)
                .map(|s| s.0)
                .map_err(|e| e.to_string())
        };
        for (value, expected) in [
            (serde_json::json!(3600), 3600),
            (serde_json::json!(0), 0),
            (serde_json::json!("120"), 120),
            (serde_json::json!("90s"), 90),
            (serde_json::json!("5m"), 300),
            (serde_json::json!("1h"), 3600),
            (serde_json::json!("1h30m"), 5400),
            (serde_json::json!("30d"), 2_592_000),
            (serde_json::json!(" 15m "), 900),
        ] {
            assert_eq!(seconds(value.clone()), Ok(expected), "{value}");
        }
        for value in [
            serde_json::json!("5 m"),
            serde_json::json!("m"),
            serde_json::json!("1w"),
            serde_json::json!("1ms"),
            serde_json::json!("h1"),
            serde_json::json!(""),
            serde_json::json!("99999999999999999999d"),
            serde_json::json!("99999999999999999999"),
        ] {
            let e = seconds(value.clone()).unwrap_err();
            assert!(e.contains("is not a duration"), "{value}: {e}");
        }
        for value in [serde_json::json!(-5), serde_json::json!(1.5)] {
            let e = seconds(value.clone()).unwrap_err();
            assert!(
                e.contains("is not a whole number of seconds"),
                "{value}: {e}"
            );
        }
        assert!(seconds(serde_json::json!(true)).is_err());
    }

    #[test]
    fn seconds_errors_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Ttl {
            ttl: Seconds,
        }
        let e = error::<Ttl>(r#"{"ttl": "forever"}"#);
        assert_eq!(e.field, "ttl");
        assert!(
            e.message.contains("`forever` is not a duration"),
            "{}",
            e.message
        );
    }

    #[test]
    fn trailing_text_is_refused() {
        assert_eq!(
            error::<Config>("{} x"),
            ConfigError::new("", "trailing characters")
        );
    }
}
