//! JSON Web Signatures in compact form (RFC 7515), and the `keys` entries through which plugins that sign
//! or verify tokens take their keys, so that every such plugin is configured alike.
//!
//! ```no_run
//! use weir_sdk::jws::{self, KeyConfig};
//! # fn keys(configs: &[KeyConfig]) -> Result<(), weir_sdk::ConfigError> {
//! let entry = configs[0].load("keys.0")?;
//! let claims = serde_json::json!({ "sub": "alice" });
//! let token = jws::encode(&entry, claims.as_object().unwrap()).unwrap();
//! # Ok(()) }
//! ```

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ConfigError;
use crate::crypto::{Algorithm, Key, KeySource};

/// A key loaded into the host, with the `kid` and algorithm it was configured with.
pub struct KeyEntry {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: Key,
}

/// One entry of a `keys` config list: `{ kid?, alg, secret | secret_base64 | pem | pem_file | jwk }`.
#[derive(Deserialize)]
pub struct KeyConfig {
    pub kid: Option<String>,
    pub alg: String,
    pub secret: Option<String>,
    pub secret_base64: Option<String>,
    pub pem: Option<String>,
    pub pem_file: Option<String>,
    pub jwk: Option<Value>,
}

impl KeyConfig {
    /// Loads the key into the host. `field` is the entry's dotted path (`keys.0`): errors name the member
    /// under it that is wrong.
    pub fn load(&self, field: &str) -> Result<KeyEntry, ConfigError> {
        let algorithm = self.algorithm(field)?;
        let (member, source) = self.source(field)?;
        let key = Key::load(algorithm, &source)
            .map_err(|e| ConfigError::new(format!("{field}.{member}"), e))?;
        Ok(KeyEntry {
            kid: self.kid.clone(),
            algorithm,
            key,
        })
    }

    fn algorithm(&self, field: &str) -> Result<Algorithm, ConfigError> {
        Algorithm::from_jws_name(&self.alg).ok_or_else(|| {
            ConfigError::new(
                format!("{field}.alg"),
                format!(
                    "`{}` is not a JWS algorithm (one of {})",
                    self.alg,
                    Algorithm::ALL.map(Algorithm::jws_name).join(", ")
                ),
            )
        })
    }

    /// The member that holds the key, and the key as the host takes it.
    fn source(&self, field: &str) -> Result<(&'static str, KeySource), ConfigError> {
        Ok(
            match (
                &self.secret,
                &self.secret_base64,
                &self.pem,
                &self.pem_file,
                &self.jwk,
            ) {
                (Some(secret), None, None, None, None) => {
                    ("secret", KeySource::Secret(secret.as_bytes().to_vec()))
                }
                (None, Some(encoded), None, None, None) => {
                    let encoded = encoded.trim();
                    let secret = STANDARD
                        .decode(encoded)
                        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
                        .map_err(|e| {
                            ConfigError::new(
                                format!("{field}.secret_base64"),
                                format!("not base64: {e}"),
                            )
                        })?;
                    ("secret_base64", KeySource::Secret(secret))
                }
                (None, None, Some(pem), None, None) => ("pem", KeySource::Pem(pem.clone())),
                (None, None, None, Some(path), None) => {
                    let text = crate::read_config_file(&format!("{field}.pem_file"), path)?;
                    ("pem_file", KeySource::Pem(text))
                }
                (None, None, None, None, Some(jwk)) => ("jwk", KeySource::Jwk(jwk.to_string())),
                _ => {
                    return Err(ConfigError::new(
                        field,
                        "give exactly one of `secret`, `secret_base64`, `pem`, `pem_file`, `jwk`",
                    ));
                }
            },
        )
    }
}

/// `bytes` in base64url without padding, as JWS segments are written.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A base64url segment without padding; `None` if it is not one.
pub fn base64url_decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// The protected header a token signed with `algorithm` carries: `alg`, `typ` and the key's `kid`.
pub fn header(algorithm: Algorithm, kid: Option<&str>) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("alg".into(), algorithm.jws_name().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    header
}

/// `BASE64URL(header) "." BASE64URL(payload)`: the bytes a signature covers.
pub fn signing_input(header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
    let mut input = base64url(Value::Object(header.clone()).to_string().as_bytes());
    input.push('.');
    input.push_str(&base64url(
        Value::Object(claims.clone()).to_string().as_bytes(),
    ));
    input
}

/// A compact JWS of `claims`, signed by the host with `entry`'s key, its `kid` in the header. The error is
/// the host's (a public key cannot sign).
pub fn encode(entry: &KeyEntry, claims: &Map<String, Value>) -> Result<String, String> {
    let mut token = signing_input(&header(entry.algorithm, entry.kid.as_deref()), claims);
    let signature = entry.key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&base64url(&signature));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(members: Value) -> KeyConfig {
        serde_json::from_value(members).unwrap()
    }

    #[test]
    fn base64url_has_no_padding_and_round_trips() {
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert_eq!(base64url_decode("+/8="), None);
    }

    #[test]
    fn the_signing_input_is_two_base64url_json_segments() {
        let claims = json!({ "sub": "alice", "exp": 2 });
        let input = signing_input(
            &header(Algorithm::Es256, Some("2026-11")),
            claims.as_object().unwrap(),
        );
        let (header, payload) = input.split_once('.').unwrap();
        let header: Value = serde_json::from_slice(&base64url_decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({ "alg": "ES256", "typ": "JWT", "kid": "2026-11" })
        );
        let payload: Value = serde_json::from_slice(&base64url_decode(payload).unwrap()).unwrap();
        assert_eq!(payload, claims);
        let header = super::header(Algorithm::Hs256, None);
        assert!(!header.contains_key("kid"));
    }

    #[test]
    fn a_key_entry_needs_one_known_algorithm_and_one_source() {
        let e = config(json!({ "alg": "HS257", "secret": "s" }))
            .algorithm("keys.1")
            .unwrap_err();
        assert_eq!(e.field, "keys.1.alg");
        assert!(e.message.contains("HS256, HS384"), "{}", e.message);
        for members in [
            json!({ "alg": "HS256" }),
            json!({ "alg": "HS256", "secret": "s", "pem": "p" }),
        ] {
            let e = config(members).source("keys.0").unwrap_err();
            assert_eq!(e.field, "keys.0");
        }
        let e = config(json!({ "alg": "HS256", "secret_base64": "!!" }))
            .source("keys.2")
            .unwrap_err();
        assert_eq!(e.field, "keys.2.secret_base64");
    }

    #[test]
    fn secrets_in_base64_are_standard_or_url_safe() {
        for encoded in ["+/8=", "-_8"] {
            let (member, source) = config(json!({ "alg": "HS256", "secret_base64": encoded }))
                .source("keys.0")
                .unwrap();
            assert_eq!(member, "secret_base64");
            assert!(matches!(source, KeySource::Secret(s) if s == b"\xfb\xff"));
        }
    }
}
