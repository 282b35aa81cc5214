//! Key material bound to one JWS algorithm, verified and signed with `ring`.
//!
//! The algorithm is chosen when the key is loaded and checked against the key's type then: an RSA key can
//! never be loaded for HS256 (the "HMAC with the public key as secret" confusion), a P-256 key never for
//! ES384, and a PEM text is refused as an HMAC secret.

use std::sync::atomic::{AtomicU64, Ordering};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use ring::{hmac, rsa};

use super::{jwk, pem};
use crate::plugin::bindings::weir::plugin::crypto::{Algorithm, KeySource};

/// RFC 7518 3.3: RSA keys for JWS are at least 2048 bits; ring refuses smaller ones at verify time, and a
/// load error says why sooner.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Signatures made by every plugin's keys since the process started, for `/metrics`: signing is the one
/// crypto operation that costs a millisecond (RSA), so an operator should see how often it happens.
static SIGNATURES: AtomicU64 = AtomicU64::new(0);

pub struct Key {
    algorithm: Algorithm,
    material: Material,
}

enum Material {
    Secret(hmac::Key),
    Public(PublicKey),
    /// The public half is derived once, at load.
    Private(PrivateKey, PublicKey),
}

/// A public key in the form ring verifies from.
pub(super) enum PublicKey {
    /// A DER `RSAPublicKey`, an uncompressed EC point, or the 32 bytes of an Ed25519 key.
    Encoded(signature::UnparsedPublicKey<Vec<u8>>),
    Rsa(rsa::PublicKeyComponents<Vec<u8>>),
}

pub(super) enum PrivateKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// What an algorithm needs from a key, and ring's primitives for it.
#[derive(Clone, Copy)]
pub(super) enum Family {
    Hmac(hmac::Algorithm),
    Rsa {
        verify: &'static signature::RsaParameters,
        sign: &'static dyn signature::RsaEncoding,
    },
    Ec {
        curve: Curve,
        verify: &'static signature::EcdsaVerificationAlgorithm,
        sign: &'static signature::EcdsaSigningAlgorithm,
    },
    Ed25519,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The length of one coordinate, in bytes.
    pub(super) fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

pub(super) fn family(algorithm: Algorithm) -> Family {
    use signature::*;
    let rsa = |verify, sign| Family::Rsa { verify, sign };
    let ec = |curve, verify, sign| Family::Ec {
        curve,
        verify,
        sign,
    };
    match algorithm {
        Algorithm::Hs256 => Family::Hmac(hmac::HMAC_SHA256),
        Algorithm::Hs384 => Family::Hmac(hmac::HMAC_SHA384),
        Algorithm::Hs512 => Family::Hmac(hmac::HMAC_SHA512),
        Algorithm::Rs256 => rsa(&RSA_PKCS1_2048_8192_SHA256, &RSA_PKCS1_SHA256),
        Algorithm::Rs384 => rsa(&RSA_PKCS1_2048_8192_SHA384, &RSA_PKCS1_SHA384),
        Algorithm::Rs512 => rsa(&RSA_PKCS1_2048_8192_SHA512, &RSA_PKCS1_SHA512),
        Algorithm::Ps256 => rsa(&RSA_PSS_2048_8192_SHA256, &RSA_PSS_SHA256),
        Algorithm::Ps384 => rsa(&RSA_PSS_2048_8192_SHA384, &RSA_PSS_SHA384),
        Algorithm::Ps512 => rsa(&RSA_PSS_2048_8192_SHA512, &RSA_PSS_SHA512),
        Algorithm::Es256 => ec(
            Curve::P256,
            &ECDSA_P256_SHA256_FIXED,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
        ),
        Algorithm::Es384 => ec(
            Curve::P384,
            &ECDSA_P384_SHA384_FIXED,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
        ),
        Algorithm::Eddsa => Family::Ed25519,
    }
}

/// The JWS name (`RS256`), for messages.
pub(super) fn name(algorithm: Algorithm) -> &'static str {
    match algorithm {
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

/// The kind of key an algorithm needs, for messages.
pub(super) fn needs(family: Family) -> String {
    match family {
        Family::Hmac(_) => "a secret".into(),
        Family::Rsa { .. } => "an RSA key".into(),
        Family::Ec { curve, .. } => format!("an EC {} key", curve.name()),
        Family::Ed25519 => "an Ed25519 key".into(),
    }
}

impl Key {
    /// Loads `source` for `algorithm`; the error says what does not fit.
    pub fn load(algorithm: Algorithm, source: KeySource) -> Result<Key, String> {
        let family = family(algorithm);
        let material = match source {
            KeySource::Secret(secret) => Material::Secret(secret_key(family, &secret)?),
            KeySource::Pem(text) => match pem::parse(family, &text)? {
                pem::Parsed::Public(key) => Material::Public(key),
                pem::Parsed::Private(key) => {
                    let public = key.public(family);
                    Material::Private(key, public)
                }
            },
            KeySource::Jwk(text) => match jwk::parse(algorithm, family, &text)? {
                jwk::Parsed::Secret(secret) => Material::Secret(secret_key(family, &secret)?),
                jwk::Parsed::Public(key) => Material::Public(key),
            },
        };
        Ok(Key {
            algorithm,
            material,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether `signature` is `message`'s: HMAC compared in constant time, ES* in the JWS r‖s form.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let family = family(self.algorithm);
        match &self.material {
            Material::Secret(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Public(key) | Material::Private(_, key) => {
                key.verify(family, message, signature)
            }
        }
    }

    /// Signatures made so far, by every key of the process.
    pub fn signatures() -> u64 {
        SIGNATURES.load(Ordering::Relaxed)
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signature = self.sign_uncounted(message)?;
        SIGNATURES.fetch_add(1, Ordering::Relaxed);
        Ok(signature)
    }

    fn sign_uncounted(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        let failed = |_| format!("signing with {} failed", name(self.algorithm));
        match (&self.material, family(self.algorithm)) {
            (Material::Secret(key), _) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            (Material::Private(PrivateKey::Rsa(pair), _), Family::Rsa { sign, .. }) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(sign, &rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
            (Material::Private(PrivateKey::Ecdsa(pair), _), _) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            (Material::Private(PrivateKey::Ed25519(pair), _), _) => {
                Ok(pair.sign(message).as_ref().to_vec())
            }
            (Material::Public(_), _) => Err(format!(
                "a public key cannot sign: load the private key's PEM to sign with {}",
                name(self.algorithm)
            )),
            (Material::Private(..), _) => unreachable!("private keys are loaded for their family"),
        }
    }
}

impl PublicKey {
    pub(super) fn encoded(family: Family, bytes: Vec<u8>) -> PublicKey {
        let algorithm: &'static dyn signature::VerificationAlgorithm = match family {
            Family::Rsa { verify, .. } => verify,
            Family::Ec { verify, .. } => verify,
            Family::Ed25519 => &signature::ED25519,
            Family::Hmac(_) => unreachable!("HMAC keys are secrets"),
        };
        PublicKey::Encoded(signature::UnparsedPublicKey::new(algorithm, bytes))
    }

    fn verify(&self, family: Family, message: &[u8], signature: &[u8]) -> bool {
        match (self, family) {
            (PublicKey::Encoded(key), _) => key.verify(message, signature).is_ok(),
            (PublicKey::Rsa(key), Family::Rsa { verify, .. }) => {
                key.verify(verify, message, signature).is_ok()
            }
            (PublicKey::Rsa(_), _) => false,
        }
    }
}

impl PrivateKey {
    fn public(&self, family: Family) -> PublicKey {
        let bytes = match self {
            PrivateKey::Rsa(pair) => pair.public().as_ref().to_vec(),
            PrivateKey::Ecdsa(pair) => pair.public_key().as_ref().to_vec(),
            PrivateKey::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        };
        PublicKey::encoded(family, bytes)
    }
}

/// Refuses a modulus under 2048 bits with a message, instead of every signature failing later.
pub(super) fn check_rsa_modulus(modulus: &[u8]) -> Result<(), String> {
    let significant = modulus.iter().skip_while(|b| **b == 0).count();
    if significant < MIN_RSA_MODULUS_BYTES {
        return Err(format!(
            "the RSA key has {} bits; JWS needs at least 2048",
            significant * 8
        ));
    }
    Ok(())
}

fn secret_key(family: Family, secret: &[u8]) -> Result<hmac::Key, String> {
    let Family::Hmac(algorithm) = family else {
        return Err(format!(
            "a secret was given where {} is needed",
            needs(family)
        ));
    };
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    // A public key used as an HMAC secret lets anyone who has the public key forge tokens.
    if secret.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(
            "the secret is a PEM key: HMAC with a public key as its secret is the algorithm-confusion \
             attack; give the key to an RS/PS/ES/EdDSA algorithm instead"
                .into(),
        );
    }
    Ok(hmac::Key::new(algorithm, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};

    fn pem(label: &str, der: &[u8]) -> String {
        pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap()
    }

    fn ed25519_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn private_keys_sign_what_their_public_half_verifies() {
        let rng = SystemRandom::new();
        let es256 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        for (algorithm, der) in [
            (Algorithm::Es256, es256.as_ref().to_vec()),
            (Algorithm::Eddsa, ed25519_pkcs8()),
        ] {
            let key = Key::load(algorithm, KeySource::Pem(pem("PRIVATE KEY", &der))).unwrap();
            let signature = key.sign(b"header.payload").unwrap();
            assert!(key.verify(b"header.payload", &signature));
            assert!(!key.verify(b"header.payload!", &signature));
        }
        let hmac = Key::load(Algorithm::Hs512, KeySource::Secret(b"k".repeat(64))).unwrap();
        let mac = hmac.sign(b"m").unwrap();
        assert_eq!(mac.len(), 64);
        assert!(hmac.verify(b"m", &mac));
    }

    #[test]
    fn a_key_is_refused_for_an_algorithm_of_another_family() {
        let ed = pem("PRIVATE KEY", &ed25519_pkcs8());
        let refused = |algorithm, source| Key::load(algorithm, source).err().unwrap();
        assert!(refused(Algorithm::Hs256, KeySource::Pem(ed.clone())).contains("HMAC secret"));
        assert!(
            refused(Algorithm::Hs256, KeySource::Secret(ed.clone().into())).contains("confusion")
        );
        assert!(refused(Algorithm::Es256, KeySource::Pem(ed.clone())).contains("EC P-256"));
        assert!(refused(Algorithm::Rs256, KeySource::Secret(b"s".to_vec())).contains("RSA key"));
        assert!(refused(Algorithm::Hs256, KeySource::Secret(Vec::new())).contains("empty"));
    }

    #[test]
    fn a_public_key_cannot_sign() {
        let pair = Ed25519KeyPair::from_pkcs8(&ed25519_pkcs8()).unwrap();
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                pair.public_key()
            )
        );
        let key = Key::load(Algorithm::Eddsa, KeySource::Jwk(jwk)).unwrap();
        assert!(key.verify(b"m", pair.sign(b"m").as_ref()));
        assert!(
            key.sign(b"m")
                .unwrap_err()
                .contains("public key cannot sign")
        );
    }
}
