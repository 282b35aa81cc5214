//! Keys and password hashes held by the host: a plugin loads them once (in `init`) and verifies or signs by
//! handle, so that RSA, ECDSA, Ed25519, argon2, bcrypt and scrypt run natively instead of inside Wasm.
//!
//! ```no_run
//! use weir_sdk::crypto::{Algorithm, Key, KeySource};
//! let key = Key::load(Algorithm::Hs256, &KeySource::Secret(b"s3cret".to_vec())).unwrap();
//! assert!(!key.verify(b"message", b"not the signature"));
//! ```

pub use crate::bindings::weir::plugin::crypto::{Algorithm, Key, KeySource, PasswordHash};

impl Algorithm {
    /// Every algorithm, in the contract's order.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Eddsa,
    ];

    /// The JWS name (RFC 7518, RFC 8037): `HS256`, …, `EdDSA`.
    pub fn jws_name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Eddsa => "EdDSA",
        }
    }

    /// The algorithm of a JWS name, exactly as written (JOSE names are case-sensitive); `none` is not one.
    pub fn from_jws_name(name: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.jws_name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_names_round_trip_and_are_case_sensitive() {
        for algorithm in Algorithm::ALL {
            assert_eq!(
                Algorithm::from_jws_name(algorithm.jws_name()),
                Some(algorithm)
            );
        }
        assert_eq!(Algorithm::from_jws_name("hs256"), None);
        assert_eq!(Algorithm::from_jws_name("none"), None);
    }
}
