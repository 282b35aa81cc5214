//! PEM keys: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1), `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY`.

use pkcs1::der::Decode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use spki::ObjectIdentifier;

use super::key::{Curve, Family, PrivateKey, PublicKey, check_rsa_modulus, needs};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

pub enum Parsed {
    Public(PublicKey),
    Private(PrivateKey),
}

pub fn parse(family: Family, text: &str) -> Result<Parsed, String> {
    if let Family::Hmac(_) = family {
        return Err("a PEM key was given where an HMAC secret is needed".into());
    }
    let (label, der) = pem_rfc7468::decode_vec(text.trim().as_bytes())
        .map_err(|e| format!("not a PEM key: {e}"))?;
    match label {
        "PUBLIC KEY" => spki_key(family, &der).map(Parsed::Public),
        "RSA PUBLIC KEY" => rsa_public(family, der).map(Parsed::Public),
        "PRIVATE KEY" => pkcs8_key(family, &der).map(Parsed::Private),
        "RSA PRIVATE KEY" => match family {
            Family::Rsa { .. } => RsaKeyPair::from_der(&der)
                .map(PrivateKey::Rsa)
                .map(Parsed::Private)
                .map_err(|e| rejected(family, e)),
            _ => Err(mismatch(family, "an RSA key")),
        },
        "EC PRIVATE KEY" => Err(
            "SEC1 `EC PRIVATE KEY` PEMs are not supported: convert it to PKCS#8 \
             with `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        ),
        "ENCRYPTED PRIVATE KEY" => Err("encrypted private keys are not supported".into()),
        "CERTIFICATE" => Err("a certificate was given: extract its public key with \
             `openssl x509 -pubkey -noout`"
            .into()),
        other => Err(format!("unsupported PEM label `{other}`")),
    }
}

fn spki_key(family: Family, der: &[u8]) -> Result<PublicKey, String> {
    let info = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("bad SubjectPublicKeyInfo: {e}"))?;
    let key = info
        .subject_public_key
        .as_bytes()
        .ok_or("bad SubjectPublicKeyInfo: the key is not whole bytes")?
        .to_vec();
    let oid = info.algorithm.oid;
    match family {
        Family::Rsa { .. } if oid == RSA_ENCRYPTION || oid == RSASSA_PSS => rsa_public(family, key),
        Family::Ec { curve, .. } if oid == EC_PUBLIC_KEY => {
            let named = info
                .algorithm
                .parameters
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            let found = match named {
                Some(c) if c == P256 => Curve::P256,
                Some(c) if c == P384 => Curve::P384,
                _ => return Err(mismatch(family, "an EC key on another curve")),
            };
            if found != curve {
                return Err(mismatch(family, &format!("an EC {} key", found.name())));
            }
            Ok(PublicKey::encoded(family, key))
        }
        Family::Ed25519 if oid == ED25519 => Ok(PublicKey::encoded(family, key)),
        _ => Err(mismatch(family, &describe(oid))),
    }
}

fn rsa_public(family: Family, der: Vec<u8>) -> Result<PublicKey, String> {
    if !matches!(family, Family::Rsa { .. }) {
        return Err(mismatch(family, "an RSA key"));
    }
    let key =
        pkcs1::RsaPublicKey::from_der(&der).map_err(|e| format!("bad RSA public key: {e}"))?;
    check_rsa_modulus(key.modulus.as_bytes())?;
    Ok(PublicKey::encoded(family, der))
}

fn pkcs8_key(family: Family, der: &[u8]) -> Result<PrivateKey, String> {
    let rng = SystemRandom::new();
    match family {
        Family::Rsa { .. } => RsaKeyPair::from_pkcs8(der).map(PrivateKey::Rsa),
        Family::Ec { sign, .. } => EcdsaKeyPair::from_pkcs8(sign, der, &rng).map(PrivateKey::Ecdsa),
        // Many tools write Ed25519 PKCS#8 v1, without the public key.
        Family::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(PrivateKey::Ed25519),
        Family::Hmac(_) => unreachable!("checked by parse"),
    }
    .map_err(|e| rejected(family, e))
}

fn rejected(family: Family, error: ring::error::KeyRejected) -> String {
    let reason = match error.to_string().as_str() {
        "WrongAlgorithm" => "it is another kind of key".to_string(),
        "TooSmall" => "it is too small (RSA needs at least 2048 bits)".to_string(),
        "InvalidEncoding" => "it is not a valid encoding".to_string(),
        other => other.to_string(),
    };
    format!("the private key is not {}: {reason}", needs(family))
}

fn mismatch(family: Family, found: &str) -> String {
    format!("the PEM holds {found}, but {} is needed", needs(family))
}

fn describe(oid: ObjectIdentifier) -> String {
    match oid {
        o if o == RSA_ENCRYPTION || o == RSASSA_PSS => "an RSA key".into(),
        o if o == EC_PUBLIC_KEY => "an EC key".into(),
        o if o == ED25519 => "an Ed25519 key".into(),
        o => format!("a key of algorithm {o}"),
    }
}
