//! The native JWT verifier behind nginx's `auth_request` in the benchmark (scenario 4's design): `GET
//! /verify` answers 200 for a valid HS256 bearer token, 401 otherwise.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn hs256(secret: &str) -> Verifier {
        Verifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation: Validation::new(Algorithm::HS256),
        }
    }

    /// True when `authorization` is `Bearer <a valid token>`.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|token| {
                decode::<serde_json::Value>(token, &self.key, &self.validation).is_ok()
            })
    }
}
