//! `[server] access_log`: whether each request gets a line, and in which format.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// `true` or `"text"` (the default), `"json"`, or `false`. The booleans are what the setting was before it
/// had formats, and keep meaning what they meant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    #[default]
    Text,
    Json,
}

impl<'de> Deserialize<'de> for AccessLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AccessLog, D::Error> {
        deserializer.deserialize_any(AccessLogVisitor)
    }
}

struct AccessLogVisitor;

impl Visitor<'_> for AccessLogVisitor {
    type Value = AccessLog;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#""text", "json", true (text) or false (off)"#)
    }

    fn visit_bool<E: de::Error>(self, on: bool) -> Result<AccessLog, E> {
        Ok(if on { AccessLog::Text } else { AccessLog::Off })
    }

    fn visit_str<E: de::Error>(self, format: &str) -> Result<AccessLog, E> {
        match format {
            "text" => Ok(AccessLog::Text),
            "json" => Ok(AccessLog::Json),
            _ => Err(E::invalid_value(de::Unexpected::Str(format), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Server {
        access_log: AccessLog,
    }

    fn parse(value: &str) -> Result<AccessLog, String> {
        toml::from_str::<Server>(&format!("access_log = {value}"))
            .map(|s| s.access_log)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn booleans_and_formats() {
        assert_eq!(parse("true"), Ok(AccessLog::Text));
        assert_eq!(parse("false"), Ok(AccessLog::Off));
        assert_eq!(parse("\"text\""), Ok(AccessLog::Text));
        assert_eq!(parse("\"json\""), Ok(AccessLog::Json));
        assert_eq!(
            parse("\"xml\""),
            Err(r#"invalid value: string "xml", expected "text", "json", true (text) or false (off)"#
                .into())
        );
        assert!(parse("1").is_err());
    }
}
