//! A JWS in compact serialisation (RFC 7515 section 7.1), taken apart before anything is trusted.

use serde_json::{Map, Value};
use weir_sdk::crypto::Algorithm;
use weir_sdk::jws::base64url_decode;

use crate::failure::Failure;

/// The parts of a token, decoded; nothing here is verified yet.
pub struct Jws<'a> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    pub payload: Vec<u8>,
}

impl<'a> Jws<'a> {
    pub fn parse(token: &'a str) -> Result<Self, Failure> {
        let mut parts = token.split('.');
        let (Some(encoded_header), Some(encoded_payload), Some(encoded_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::Malformed(
                "Jwt is not three dot-separated segments",
            ));
        };
        let header = decode_json(encoded_header).ok_or(Failure::Malformed(
            "Jwt header is not base64url-encoded JSON object",
        ))?;
        let algorithm = match header.get("alg").and_then(Value::as_str) {
            None => return Err(Failure::Malformed("Jwt header has no alg")),
            Some(name) => Algorithm::from_jws_name(name)
                .ok_or_else(|| Failure::UnsupportedAlgorithm(printable(name)))?,
        };
        // RFC 7515 4.1.11: an extension the recipient does not understand must fail the token.
        if header.contains_key("crit") {
            return Err(Failure::Malformed(
                "Jwt header has critical extensions (crit)",
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Failure::Malformed("Jwt header kid is not a string")),
        };
        let payload = base64url_decode(encoded_payload)
            .ok_or(Failure::Malformed("Jwt payload is not base64url"))?;
        let signature = base64url_decode(encoded_signature)
            .ok_or(Failure::Malformed("Jwt signature is not base64url"))?;
        Ok(Jws {
            algorithm,
            kid,
            signing_input: &token.as_bytes()[..encoded_header.len() + 1 + encoded_payload.len()],
            signature,
            payload,
        })
    }
}

fn decode_json(segment: &str) -> Option<Map<String, Value>> {
    let bytes = base64url_decode(segment)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The client's text made safe to quote in a header and a log line.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c))
        .take(32)
        .collect()
}
