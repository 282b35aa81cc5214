//! The keys a token may be signed with: configured keys (the SDK's `keys` entries) and JWKS entries, each
//! bound by the host to one algorithm, found by the token's `kid` and `alg`.

use serde_json::{Map, Value};
use weir_sdk::crypto::{Algorithm, Key, KeySource};
use weir_sdk::jws::KeyEntry;

use crate::failure::Failure;

/// A JWKS document (RFC 7517 section 5), as JSON text or already parsed.
pub struct Jwks(pub Value);

impl Jwks {
    pub fn parse(text: &str) -> Result<Jwks, String> {
        serde_json::from_str(text)
            .map(Jwks)
            .map_err(|e| format!("not JSON: {e}"))
    }

    /// The entries of the signing keys (encryption keys are skipped). A key without `alg` is loaded for
    /// each algorithm of its type, so that its type, never the token, decides the family. Errors name the
    /// key's index.
    pub fn load(&self) -> Result<Vec<KeyEntry>, String> {
        let value = match &self.0 {
            // A JWKS given inline as JSON text in the TOML.
            Value::String(text) => {
                &serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}"))?
            }
            other => other,
        };
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("a JWKS is an object with a `keys` array")?;
        let mut entries = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            let jwk = jwk
                .as_object()
                .ok_or_else(|| format!("keys[{i}]: not an object"))?;
            if jwk.get("use").and_then(Value::as_str) == Some("enc") {
                continue;
            }
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
            let text = Value::Object(jwk.clone()).to_string();
            for algorithm in algorithms(jwk).map_err(|e| format!("keys[{i}]: {e}"))? {
                let key = Key::load(algorithm, &KeySource::Jwk(text.clone()))
                    .map_err(|e| format!("keys[{i}]: {e}"))?;
                entries.push(KeyEntry {
                    kid: kid.clone(),
                    algorithm,
                    key,
                });
            }
        }
        if entries.is_empty() {
            return Err("the JWKS has no signing key".into());
        }
        Ok(entries)
    }
}

fn algorithms(jwk: &Map<String, Value>) -> Result<Vec<Algorithm>, String> {
    use Algorithm::*;
    if let Some(alg) = jwk.get("alg").and_then(Value::as_str) {
        return Algorithm::from_jws_name(alg)
            .map(|a| vec![a])
            .ok_or_else(|| format!("unsupported `alg` \"{alg}\""));
    }
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    Ok(match (kty, crv) {
        ("RSA", _) => vec![Rs256, Rs384, Rs512, Ps256, Ps384, Ps512],
        ("EC", "P-256") => vec![Es256],
        ("EC", "P-384") => vec![Es384],
        ("OKP", "Ed25519") => vec![Eddsa],
        ("oct", _) => vec![Hs256, Hs384, Hs512],
        _ => return Err(format!("unsupported key type kty \"{kty}\" crv \"{crv}\"")),
    })
}

/// The keys a token with this `kid` and algorithm may be signed with. A token's `kid` selects the keys
/// with that `kid` and the keys that have none; a token without `kid` is tried against every key of its
/// algorithm.
pub fn candidates<'a>(
    entries: impl Iterator<Item = &'a KeyEntry> + Clone,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<Vec<&'a Key>, Failure> {
    let by_kid = entries.filter(|e| match (kid, &e.kid) {
        (Some(wanted), Some(has)) => wanted == has,
        _ => true,
    });
    if by_kid.clone().next().is_none() {
        return Err(Failure::UnknownKid);
    }
    let keys: Vec<&Key> = by_kid
        .filter(|e| e.algorithm == algorithm)
        .map(|e| &e.key)
        .collect();
    if keys.is_empty() {
        return Err(Failure::AlgorithmNotAllowed(algorithm));
    }
    Ok(keys)
}
