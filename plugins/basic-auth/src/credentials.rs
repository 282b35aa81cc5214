//! The `Authorization: Basic <base64>` header of RFC 7617, and the answers to a request without good
//! credentials.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use weir_sdk::{Action, LocalResponse};

/// Some clients leave the padding off; RFC 7617 does not say what to do then, and refusing it would lock
/// out a client whose credentials are otherwise good.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longer credentials are refused before decoding: no user name and password a person types come near,
/// and it bounds what a hostile client makes the plugin copy and the host hash.
pub const MAX_ENCODED: usize = 4096;

/// What the header says: the user-id as bytes (it may not be UTF-8, and then matches no configured user)
/// and the password as bytes, exactly as the client's base64 held them.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

/// Why a request gets 401. Every refusal is 401 with the challenge, malformed credentials included: a
/// browser re-prompts on 401, and a 400 would leave its user with an error page and no way to type the
/// credentials again (RFC 9110 11.6.1: 401 is for credentials that are missing or not accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    /// Not `Basic`: another scheme's credentials are not for this route.
    WrongScheme,
    /// `Basic` with something that is not base64 of `user:password`, or several `Authorization` headers.
    Malformed,
    /// An unknown user or a wrong password: the answer never says which, so that it does not tell who has
    /// an account.
    Invalid,
}

impl Rejection {
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "Missing credentials",
            Rejection::WrongScheme => "Unsupported authorization scheme",
            Rejection::Malformed => "Malformed credentials",
            Rejection::Invalid => "Invalid credentials",
        }
    }

    /// `challenge` is the whole `WWW-Authenticate` value, built once by `init`.
    pub fn response(self, challenge: &str) -> Action {
        LocalResponse::new(401)
            .header("www-authenticate", challenge)
            .header("content-type", "text/plain; charset=utf-8")
            .body(format!("{}\n", self.message()))
            .into()
    }
}

/// The credentials of one `Authorization` value. The scheme is compared ignoring case (RFC 9110 11.1); the
/// user-id ends at the first colon, so a password may hold colons and a user-id never does (RFC 7617 2).
pub fn parse(value: &[u8]) -> Result<Credentials, Rejection> {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(space) => (&value[..space], value[space..].trim_ascii_start()),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(Rejection::WrongScheme);
    }
    if rest.is_empty() || rest.len() > MAX_ENCODED {
        return Err(Rejection::Malformed);
    }
    let decoded = BASE64.decode(rest).map_err(|_| Rejection::Malformed)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(Rejection::Malformed)?;
    Ok(Credentials {
        user: decoded[..colon].to_vec(),
        password: decoded[colon + 1..].to_vec(),
    })
}

/// The `WWW-Authenticate` value: the realm as a quoted-string (`init` refuses one that would need
/// escaping), and `charset="UTF-8"` so that browsers send non-ASCII credentials as UTF-8 (RFC 7617 2.1).
pub fn challenge(realm: &str) -> String {
    format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    fn creds(user: &str, password: &str) -> Result<Credentials, Rejection> {
        Ok(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn the_user_id_ends_at_the_first_colon() {
        assert_eq!(parse(&basic("alice:s3cret")), creds("alice", "s3cret"));
        assert_eq!(parse(&basic("alice:a:b:c")), creds("alice", "a:b:c"));
        assert_eq!(parse(&basic("alice:")), creds("alice", ""));
        assert_eq!(parse(&basic(":pw")), creds("", "pw"));
        assert_eq!(parse(&basic("zoë:pässword")), creds("zoë", "pässword"));
    }

    #[test]
    fn the_scheme_ignores_case_and_the_value_surrounding_space() {
        // `alice:s3cret`, with and without its padding.
        for value in [
            "basic YWxpY2U6czNjcmV0",
            "  BASIC   YWxpY2U6czNjcmV0 \t",
            "Basic YWxpY2U6czNjcmV0",
        ] {
            assert_eq!(parse(value.as_bytes()), creds("alice", "s3cret"), "{value}");
        }
        assert_eq!(parse(b"Basic YWxpY2U6cHc="), creds("alice", "pw"));
        assert_eq!(parse(b"Basic YWxpY2U6cHc"), creds("alice", "pw"));
    }

    #[test]
    fn other_schemes_and_broken_values_are_refused() {
        assert_eq!(parse(b"Bearer abc"), Err(Rejection::WrongScheme));
        assert_eq!(
            parse(b"Basically YWxpY2U6cHc="),
            Err(Rejection::WrongScheme)
        );
        assert_eq!(parse(b""), Err(Rejection::WrongScheme));
        for value in [
            &b"Basic"[..],
            b"Basic ",
            b"Basic !!!!",
            b"Basic YWxpY2U6 cHc=",
            // `alice` without a colon.
            b"Basic YWxpY2U=",
        ] {
            assert_eq!(
                parse(value),
                Err(Rejection::Malformed),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        let long = format!("Basic {}", "A".repeat(MAX_ENCODED + 4));
        assert_eq!(parse(long.as_bytes()), Err(Rejection::Malformed));
    }

    #[test]
    fn non_utf8_credentials_are_kept_as_bytes() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"\xffuser:\xfe");
        assert_eq!(
            parse(format!("Basic {encoded}").as_bytes()),
            Ok(Credentials {
                user: b"\xffuser".to_vec(),
                password: b"\xfe".to_vec()
            })
        );
    }

    #[test]
    fn refusals_challenge_for_basic_with_utf8() {
        let Action::Respond(response) = Rejection::Invalid.response(&challenge("weir")) else {
            panic!("a refusal answers");
        };
        assert_eq!(response.status, 401);
        assert_eq!(response.body, b"Invalid credentials\n");
        assert!(response.headers.contains(&(
            "www-authenticate".into(),
            b"Basic realm=\"weir\", charset=\"UTF-8\"".to_vec()
        )));
    }
}
