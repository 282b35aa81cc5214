//! Whose requests count together: the key is built from the parts the config lists (the client's address,
//! a header, a context value such as `jwt.sub` or `auth.identity`) and hashed, so that it is short, bounded
//! and never stores an address or a token as it was sent. The route is in every key already: each entry's
//! keys live in its own namespace of the store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use weir_sdk::{Request, context};

/// One part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Part {
    /// `"client"`: the client's IP address.
    Client,
    /// `"header:x-api-key"`: the header's first value.
    Header(String),
    /// `"context:jwt.sub"`: a value an earlier plugin put in the context.
    Context(String),
}

impl TryFrom<String> for Part {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let part = match text.split_once(':') {
            None if text == "client" => Part::Client,
            Some(("header", name)) if !name.is_empty() => Part::Header(name.to_ascii_lowercase()),
            Some(("context", key)) if !key.is_empty() => Part::Context(key.to_owned()),
            _ => {
                return Err(format!(
                    "`{text}` is not a key part: \"client\", \"header:NAME\" or \"context:KEY\""
                ));
            }
        };
        Ok(part)
    }
}

/// The request's key: 22 characters of base64url, 128 bits of a SHA-256 over the parts. A part the request
/// lacks (no such header, no such context value) is empty, so all such requests share one key.
pub fn digest(parts: &[Part], req: &Request) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        // Each part tagged and length-prefixed: no two different sets of values hash the same input.
        let (tag, value): (&[u8], Vec<u8>) = match part {
            Part::Client => (b"c", req.client_addr().into_bytes()),
            Part::Header(name) => (b"h", req.header(name).unwrap_or_default()),
            Part::Context(key) => (b"x", context::get(key).unwrap_or_default().into_bytes()),
        };
        hash.update(tag);
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(&value);
    }
    URL_SAFE_NO_PAD.encode(&hash.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_from_text() {
        let part = |t: &str| Part::try_from(t.to_owned());
        assert_eq!(part("client"), Ok(Part::Client));
        assert_eq!(
            part("header:X-Api-Key"),
            Ok(Part::Header("x-api-key".into()))
        );
        assert_eq!(part("context:jwt.sub"), Ok(Part::Context("jwt.sub".into())));
        for bad in ["clients", "header:", "context:", "route", "ip:1"] {
            assert!(part(bad).is_err(), "{bad}");
        }
    }
}
