//! Why a request is refused, and the answer the client gets (RFC 6750 section 3).

use serde_json::json;
use weir_sdk::crypto::Algorithm;
use weir_sdk::{Action, LocalResponse};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Missing,
    TooLarge(usize),
    Malformed(&'static str),
    /// `none`, or a name that is no JWS algorithm; the name is already made printable.
    UnsupportedAlgorithm(String),
    /// No key of the set (or of the token's `kid`) is bound to the token's algorithm.
    AlgorithmNotAllowed(Algorithm),
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingExp,
    LifetimeTooLong(u64),
    WrongIssuer,
    WrongAudience,
    WrongSubject,
    /// The remote JWKS could not be fetched and no earlier copy is cached: not the client's fault.
    KeysUnavailable,
}

impl Failure {
    /// The machine-readable reason in the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::TooLarge(_) => "too_large",
            Failure::Malformed(_) => "malformed",
            Failure::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Failure::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Failure::UnknownKid => "unknown_kid",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::IssuedInFuture => "issued_in_future",
            Failure::MissingExp => "missing_exp",
            Failure::LifetimeTooLong(_) => "lifetime_too_long",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::WrongSubject => "wrong_subject",
            Failure::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Envoy's wording where Envoy has one.
    pub fn message(&self) -> String {
        match self {
            Failure::Missing => "Jwt is missing".into(),
            Failure::TooLarge(limit) => format!("Jwt is larger than {limit} bytes"),
            Failure::Malformed(what) => (*what).into(),
            Failure::UnsupportedAlgorithm(name) => {
                format!("Jwt algorithm `{name}` is not supported")
            }
            Failure::AlgorithmNotAllowed(algorithm) => format!(
                "Jwt algorithm {} is not accepted by its key",
                algorithm.jws_name()
            ),
            Failure::UnknownKid => "Jwt kid matches no key".into(),
            Failure::BadSignature => "Jwt verification fails".into(),
            Failure::Expired => "Jwt is expired".into(),
            Failure::NotYetValid => "Jwt not yet valid".into(),
            Failure::IssuedInFuture => "Jwt iat is in the future".into(),
            Failure::MissingExp => "Jwt has no exp claim".into(),
            Failure::LifetimeTooLong(max) => format!("Jwt lifetime is longer than {max} s"),
            Failure::WrongIssuer => "Jwt issuer is not allowed".into(),
            Failure::WrongAudience => "Audiences in Jwt are not allowed".into(),
            Failure::WrongSubject => "Jwt subject is not allowed".into(),
            Failure::KeysUnavailable => "Jwks remote fetch is failed".into(),
        }
    }

    /// 401 with a `WWW-Authenticate` challenge, or 503 when the keys are unavailable (a client that
    /// takes a 401 drops its token, and this token may well be good). `hide_details` keeps the reason
    /// out of the answer; it is logged either way.
    pub fn response(&self, hide_details: bool) -> Action {
        let error = match self {
            Failure::Missing => "missing_token",
            Failure::KeysUnavailable => "temporarily_unavailable",
            _ => "invalid_token",
        };
        let (status, challenge) = match self {
            // RFC 6750 3.1: a request without credentials gets no error code.
            Failure::Missing => (401, Some("Bearer".to_string())),
            Failure::KeysUnavailable => (503, None),
            _ if hide_details => (401, Some(format!("Bearer error=\"{error}\""))),
            _ => (
                401,
                Some(format!(
                    "Bearer error=\"{error}\", error_description=\"{}\"",
                    self.message()
                )),
            ),
        };
        let body = if hide_details {
            json!({ "error": error })
        } else {
            json!({ "error": error, "reason": self.reason(), "message": self.message() })
        };
        let mut response = LocalResponse::new(status)
            .header("content-type", "application/json")
            .body(format!("{body}\n"));
        if let Some(challenge) = challenge {
            response = response.header("www-authenticate", challenge);
        }
        response.into()
    }
}
