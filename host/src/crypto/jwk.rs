//! One JSON Web Key (RFC 7517, 7518 section 6, RFC 8037): `kty` RSA, EC, OKP (Ed25519) or oct.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::rsa;
use serde_json::{Map, Value};

use super::key::{Curve, Family, PublicKey, check_rsa_modulus, name, needs};
use crate::plugin::bindings::weir::plugin::crypto::Algorithm;

/// base64url; some JWKS publishers pad it, which RFC 7515 does not, so padding is accepted either way.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub enum Parsed {
    Secret(Vec<u8>),
    Public(PublicKey),
}

pub fn parse(algorithm: Algorithm, family: Family, text: &str) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not a JWK: {e}"))?;
    let jwk = value.as_object().ok_or("not a JWK: not a JSON object")?;
    if let Some(alg) = jwk.get("alg")
        && alg.as_str() != Some(name(algorithm))
    {
        return Err(format!("the JWK's `alg` is {alg}, not {}", name(algorithm)));
    }
    if let Some(usage) = jwk.get("use")
        && usage.as_str() != Some("sig")
    {
        return Err(format!("the JWK's `use` is {usage}, not \"sig\""));
    }
    let kty = string(jwk, "kty")?;
    match (kty, family) {
        ("oct", Family::Hmac(_)) => Ok(Parsed::Secret(bytes(jwk, "k")?)),
        ("RSA", Family::Rsa { .. }) => {
            let n = bytes(jwk, "n")?;
            check_rsa_modulus(&n)?;
            let e = bytes(jwk, "e")?;
            Ok(Parsed::Public(PublicKey::Rsa(rsa::PublicKeyComponents {
                n,
                e,
            })))
        }
        ("EC", Family::Ec { curve, .. }) => {
            let crv = string(jwk, "crv")?;
            if crv != curve.name() {
                return Err(format!(
                    "the JWK is on curve {crv}, but {} is needed",
                    needs(family)
                ));
            }
            let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
            check_coordinate(curve, "x", &x)?;
            check_coordinate(curve, "y", &y)?;
            // The uncompressed SEC1 point ring verifies with.
            let point = [&[4u8][..], &x, &y].concat();
            Ok(Parsed::Public(PublicKey::encoded(family, point)))
        }
        ("OKP", Family::Ed25519) => {
            let crv = string(jwk, "crv")?;
            if crv != "Ed25519" {
                return Err(format!("OKP curve `{crv}` is not supported (only Ed25519)"));
            }
            let x = bytes(jwk, "x")?;
            if x.len() != 32 {
                return Err(format!("`x` is {} bytes; an Ed25519 key is 32", x.len()));
            }
            Ok(Parsed::Public(PublicKey::encoded(family, x)))
        }
        ("oct" | "RSA" | "EC" | "OKP", _) => Err(format!(
            "the JWK is a `{kty}` key, but {} is needed",
            needs(family)
        )),
        _ => Err(format!("unsupported JWK `kty` \"{kty}\"")),
    }
}

fn check_coordinate(curve: Curve, member: &str, value: &[u8]) -> Result<(), String> {
    if value.len() != curve.coordinate_len() {
        return Err(format!(
            "`{member}` is {} bytes; a {} coordinate is {}",
            value.len(),
            curve.name(),
            curve.coordinate_len()
        ));
    }
    Ok(())
}

fn string<'a>(jwk: &'a Map<String, Value>, member: &str) -> Result<&'a str, String> {
    jwk.get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the JWK has no string `{member}`"))
}

fn bytes(jwk: &Map<String, Value>, member: &str) -> Result<Vec<u8>, String> {
    BASE64URL
        .decode(string(jwk, member)?)
        .map_err(|e| format!("the JWK's `{member}` is not base64url: {e}"))
}
