//! JSON Web Signatures in compact form (RFC 7515), and the key entries through which plugins that sign or
//! verify tokens take their keys, so that every such plugin is configured alike.
//!
//! ```no_run
//! use weir_sdk::jws::{self, KeyConfig};
//! # fn keys(configs: &[KeyConfig]) -> Result<(), weir_sdk::ConfigError> {
//! let entry = configs[0].load_signer("keys.0")?;
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

/// A key entry of a config (an item of jwt-auth's and jwt-login's `keys`, upstream-jwt's `key`):
/// `{ kid?, alg, secret | secret_base64 | pem | pem_file | jwk }`.
#[derive(Deserialize)]
pub struct KeyConfig {
    kid: Option<String>,
    /// Required unless the plugin gives a default ([`KeyConfig::default_alg`]).
    alg: Option<String>,
    secret: Option<String>,
    secret_base64: Option<String>,
    pem: Option<String>,
    pem_file: Option<String>,
    jwk: Option<Value>,
}

impl KeyConfig {
    /// Loads a key to verify with into the host. `field` is the entry's dotted path (`keys.0`): errors
    /// name the member under it that is wrong.
    pub fn load(&self, field: &str) -> Result<KeyEntry, ConfigError> {
        self.load_for(field, false)
    }

    /// Loads a key to sign with: an HMAC secret or a private key. A public key would load and then fail
    /// every signature, so it is refused here, naming the member.
    pub fn load_signer(&self, field: &str) -> Result<KeyEntry, ConfigError> {
        self.load_for(field, true)
    }

    /// The algorithm of an entry that names none, for a plugin whose keys have a usual one.
    pub fn default_alg(&mut self, algorithm: Algorithm) {
        self.alg
            .get_or_insert_with(|| algorithm.jws_name().to_owned());
    }

    fn load_for(&self, field: &str, signs: bool) -> Result<KeyEntry, ConfigError> {
        let algorithm = self.algorithm(field)?;
        let (member, source) = self.source(field)?;
        let member = format!("{field}.{member}");
        if signs {
            check_signs(&member, &source)?;
        }
        let key = Key::load(algorithm, &source).map_err(|e| ConfigError::new(member, e))?;
        Ok(KeyEntry {
            kid: self.kid.clone(),
            algorithm,
            key,
        })
    }

    fn algorithm(&self, field: &str) -> Result<Algorithm, ConfigError> {
        let field = format!("{field}.alg");
        let Some(name) = &self.alg else {
            // What serde says of a missing field, at the field, as the SDK reports it.
            return Err(ConfigError::new(field, "missing field `alg`"));
        };
        Algorithm::from_jws_name(name).ok_or_else(|| {
            ConfigError::new(
                field,
                format!(
                    "`{name}` is not a JWS algorithm (one of {})",
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

/// Refuses a source that cannot sign, before the host loads it (and every signature would fail): the host
/// loads a public key's PEM to verify, and a JWK always as a public key.
fn check_signs(member: &str, source: &KeySource) -> Result<(), ConfigError> {
    let refusal = match source {
        KeySource::Secret(_) => return Ok(()),
        KeySource::Pem(text) if text.contains("PRIVATE KEY-----") => return Ok(()),
        KeySource::Pem(_) => {
            "not a private key: a token is signed with the private key (`PRIVATE KEY`, \
             `RSA PRIVATE KEY` or `EC PRIVATE KEY` PEM); its verifiers hold the public one"
        }
        KeySource::Jwk(_) => {
            "not a private key: a JWK is loaded as a public key, to verify; sign with the private \
             key's PEM (`pem`, `pem_file`) or an HMAC secret"
        }
    };
    Err(ConfigError::new(member, refusal))
}

/// `bytes` in base64url without padding, as JWS segments are written.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A base64url segment without padding; `None` if it is not one.
pub fn base64url_decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// The protected header of a token signed with `algorithm`, base64url-encoded: `alg`, `typ` and the key's
/// `kid`. It is the same for every token of a key, so a plugin that signs often encodes it once.
pub fn encoded_header(algorithm: Algorithm, kid: Option<&str>) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), algorithm.jws_name().into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    base64url(Value::Object(header).to_string().as_bytes())
}

/// Appends a compact JWS to `out`: `header` (from [`encoded_header`]), the `payload` (the claims' JSON
/// text) and the signature of the two, which the host makes with `key`, each part base64url-encoded
/// straight into `out`. The error is the host's.
pub fn encode_into(
    out: &mut String,
    header: &str,
    payload: &[u8],
    key: &Key,
) -> Result<(), String> {
    let start = out.len();
    out.push_str(header);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, out);
    let signature = key.sign(&out.as_bytes()[start..])?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, out);
    Ok(())
}

/// A compact JWS of `claims`, signed by the host with `entry`'s key, its `kid` in the header. The error is
/// the host's.
pub fn encode(entry: &KeyEntry, claims: &Map<String, Value>) -> Result<String, String> {
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut token = String::new();
    let header = encoded_header(entry.algorithm, entry.kid.as_deref());
    encode_into(&mut token, &header, &payload, &entry.key)?;
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
    fn the_header_names_the_algorithm_and_the_kid() {
        let header = |encoded: String| -> Value {
            serde_json::from_slice(&base64url_decode(&encoded).unwrap()).unwrap()
        };
        assert_eq!(
            header(encoded_header(Algorithm::Es256, Some("2026-11"))),
            json!({ "alg": "ES256", "typ": "JWT", "kid": "2026-11" })
        );
        assert_eq!(
            header(encoded_header(Algorithm::Hs256, None)),
            json!({ "alg": "HS256", "typ": "JWT" })
        );
    }

    #[test]
    fn a_key_entry_needs_one_known_algorithm_and_one_source() {
        let e = config(json!({ "alg": "HS257", "secret": "s" }))
            .algorithm("keys.1")
            .unwrap_err();
        assert_eq!(e.field, "keys.1.alg");
        assert!(e.message.contains("HS256, HS384"), "{}", e.message);
        let e = config(json!({ "secret": "s" }))
            .algorithm("keys.0")
            .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("keys.0.alg", "missing field `alg`")
        );
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
        let e = config(json!({ "pem_file": "/nowhere/key.pem" }))
            .source("key")
            .unwrap_err();
        assert_eq!(e.field, "key.pem_file");
        assert!(e.message.contains("grants.dirs"), "{}", e.message);
    }

    #[test]
    fn a_default_algorithm_fills_in_only_a_missing_one() {
        let mut unnamed = config(json!({ "secret": "s" }));
        unnamed.default_alg(Algorithm::Rs512);
        assert_eq!(unnamed.algorithm("key").unwrap(), Algorithm::Rs512);
        let mut named = config(json!({ "alg": "HS256", "secret": "s" }));
        named.default_alg(Algorithm::Rs512);
        assert_eq!(named.algorithm("key").unwrap(), Algorithm::Hs256);
        let mut wrong = config(json!({ "alg": "rs512", "secret": "s" }));
        wrong.default_alg(Algorithm::Rs512);
        assert_eq!(wrong.algorithm("key").unwrap_err().field, "key.alg");
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

    #[test]
    fn only_secrets_and_private_keys_sign() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----\n";
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMC4C\n-----END RSA PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n";
        for source in [
            KeySource::Secret(b"s".to_vec()),
            KeySource::Pem(private.into()),
            KeySource::Pem(rsa.into()),
        ] {
            assert!(check_signs("key.pem", &source).is_ok());
        }
        let e = check_signs("keys.0.pem", &KeySource::Pem(public.into())).unwrap_err();
        assert_eq!(e.field, "keys.0.pem");
        assert!(e.message.starts_with("not a private key"), "{}", e.message);
        let e = check_signs("key.jwk", &KeySource::Jwk("{}".into())).unwrap_err();
        assert_eq!(e.field, "key.jwk");
    }
}
