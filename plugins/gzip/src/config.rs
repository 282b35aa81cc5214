//! The route's `config` table, with nginx-like defaults, checked at `init`.

use crate::types::MediaRange;
use serde::Deserialize;
use weir_sdk::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Encoding {
    #[serde(rename = "br")]
    Brotli,
    #[serde(rename = "gzip")]
    Gzip,
}

impl Encoding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    pub fn from_token(token: &str) -> Option<Self> {
        [Encoding::Brotli, Encoding::Gzip]
            .into_iter()
            .find(|e| e.token() == token)
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// gzip level, 1 (fastest) to 9 (smallest): the same scale as nginx's `gzip_comp_level`.
    pub level: u32,
    /// Brotli quality, 0 to 11. 4 is what on-the-fly brotli commonly uses: near gzip 6's speed, smaller.
    pub br_level: u32,
    /// The codings offered, most preferred first; the client's q-values decide before this order does.
    pub encodings: Vec<Encoding>,
    /// Media ranges whose responses are compressed: `type/subtype`, `type/*`, `type/*+suffix`, `*/*`.
    pub types: Vec<String>,
    /// Responses whose `Content-Length` is below this are sent as they are (gzip's header and trailer
    /// alone are 18 bytes). A body of unknown length is compressed.
    pub min_length: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            level: 6,
            br_level: 4,
            encodings: vec![Encoding::Brotli, Encoding::Gzip],
            types: [
                "text/*",
                "application/json",
                "application/*+json",
                "application/javascript",
                "application/x-javascript",
                "application/xml",
                "application/*+xml",
                "image/svg+xml",
                "application/wasm",
            ]
            .map(String::from)
            .to_vec(),
            min_length: 1024,
        }
    }
}

impl Config {
    /// The parsed media ranges; errors name the field.
    pub fn check(&self) -> Result<Vec<MediaRange>, ConfigError> {
        if !(1..=9).contains(&self.level) {
            return Err(ConfigError::new("level", "must be from 1 to 9"));
        }
        if self.br_level > 11 {
            return Err(ConfigError::new("br_level", "must be from 0 to 11"));
        }
        if self.encodings.is_empty() {
            return Err(ConfigError::new(
                "encodings",
                "list at least one of \"br\", \"gzip\"",
            ));
        }
        for (i, e) in self.encodings.iter().enumerate() {
            if self.encodings[..i].contains(e) {
                return Err(ConfigError::new(
                    format!("encodings.{i}"),
                    format!("\"{}\" is listed twice", e.token()),
                ));
            }
        }
        self.types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                MediaRange::parse(t).map_err(|e| ConfigError::new(format!("types.{i}"), e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Vec<MediaRange>, ConfigError> {
        serde_json::from_str::<Config>(json).unwrap().check()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(check("{}").unwrap().len(), 9);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, field) in [
            (r#"{"level": 0}"#, "level"),
            (r#"{"level": 10}"#, "level"),
            (r#"{"br_level": 12}"#, "br_level"),
            (r#"{"encodings": []}"#, "encodings"),
            (r#"{"encodings": ["gzip", "gzip"]}"#, "encodings.1"),
            (r#"{"types": ["text/*", "html"]}"#, "types.1"),
        ] {
            assert_eq!(check(json).unwrap_err().field, field, "{json}");
        }
        assert!(serde_json::from_str::<Config>(r#"{"encodings": ["zstd"]}"#).is_err());
    }
}
