//! The signing key of the config: its algorithm and exactly one source, loaded by the host (which signs).

use serde::Deserialize;
use weir_sdk::ConfigError;
use weir_sdk::crypto::{Algorithm, KeySource};

#[derive(Deserialize)]
pub struct KeyConfig {
    #[serde(default = "default_alg")]
    pub alg: String,
    /// Sent in the token's header, so that the upstream can pick the key to verify with.
    pub kid: Option<String>,
    pem: Option<String>,
    pem_file: Option<String>,
    /// An HMAC secret (HS256/384/512), for an upstream that shares it.
    secret: Option<String>,
}

/// RS512: what the analytics upstreams of scenario 2 verify (Spring Security's default for RSA keys there).
fn default_alg() -> String {
    "RS512".into()
}

impl KeyConfig {
    pub fn algorithm(&self) -> Result<Algorithm, ConfigError> {
        Algorithm::from_jws_name(&self.alg).ok_or_else(|| {
            ConfigError::new(
                "key.alg",
                format!(
                    "`{}` is not a JWS algorithm (one of {})",
                    self.alg,
                    Algorithm::ALL.map(Algorithm::jws_name).join(", ")
                ),
            )
        })
    }

    /// The key's source and the field it came from, for the host's refusal to name.
    pub fn source(&self) -> Result<(&'static str, KeySource), ConfigError> {
        let (field, source) = match (&self.pem, &self.pem_file, &self.secret) {
            (Some(pem), None, None) => ("key.pem", KeySource::Pem(pem.clone())),
            (None, Some(path), None) => (
                "key.pem_file",
                KeySource::Pem(weir_sdk::read_config_file("key.pem_file", path)?),
            ),
            (None, None, Some(secret)) => {
                ("key.secret", KeySource::Secret(secret.as_bytes().to_vec()))
            }
            _ => {
                return Err(ConfigError::new(
                    "key",
                    "give exactly one of `pem`, `pem_file` (a private key) and `secret`",
                ));
            }
        };
        // The host would load a public key too, and every request would then fail to sign: say so now.
        if let KeySource::Pem(text) = &source
            && !text.contains("PRIVATE KEY-----")
        {
            return Err(ConfigError::new(
                field,
                "not a private key: a token is signed with the private key (`PRIVATE KEY` or \
                 `RSA PRIVATE KEY` PEM); the upstream verifies with the public one",
            ));
        }
        Ok((field, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> KeyConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn exactly_one_private_source() {
        let private = "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n";
        let key = config(&serde_json::json!({ "pem": private }).to_string());
        assert_eq!(key.algorithm().unwrap(), Algorithm::Rs512);
        assert!(matches!(key.source(), Ok(("key.pem", KeySource::Pem(_)))));
        let key = config(&serde_json::json!({ "pem": public }).to_string());
        assert_eq!(key.source().err().unwrap().field, "key.pem");
        let key = config(r#"{ "secret": "s", "pem": "p" }"#);
        assert_eq!(key.source().err().unwrap().field, "key");
        assert_eq!(config("{}").source().err().unwrap().field, "key");
        let key = config(r#"{ "alg": "HS256", "secret": "s" }"#);
        assert_eq!(key.algorithm().unwrap(), Algorithm::Hs256);
        assert!(matches!(
            key.source(),
            Ok(("key.secret", KeySource::Secret(_)))
        ));
        let key = config(r#"{ "alg": "rs512", "secret": "s" }"#);
        assert_eq!(key.algorithm().err().unwrap().field, "key.alg");
        let key = config(r#"{ "pem_file": "/nowhere/key.pem" }"#);
        assert!(key.source().err().unwrap().message.contains("grants.dirs"));
    }
}
