//! The tutorial's checks of the `Authorization` header, in its order, each with its status and message.

use crate::tokens::TokenSet;
use weir_sdk::{Action, LocalResponse};

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    Malformed,
    WrongScheme,
    UnknownToken,
}

impl Rejection {
    /// 401 only when there are no credentials at all: credentials that were sent and are wrong are 403,
    /// as in the tutorial.
    pub fn status(self) -> u16 {
        match self {
            Rejection::Missing => 401,
            _ => 403,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "Missing authorization header",
            Rejection::Malformed => "Invalid authorization header",
            Rejection::WrongScheme => "Invalid token scheme",
            Rejection::UnknownToken => "Invalid token",
        }
    }

    /// A plain-text answer; a 401 tells the client which scheme to use.
    pub fn response(self, scheme: &str) -> Action {
        let mut response = LocalResponse::new(self.status())
            .header("content-type", "text/plain; charset=utf-8")
            .body(format!("{}\n", self.message()));
        if self == Rejection::Missing {
            response = response.header("www-authenticate", scheme);
        }
        response.into()
    }
}

pub struct Guard {
    pub scheme: String,
    pub tokens: TokenSet,
}

impl Guard {
    /// The identity (the token's name) for the first `Authorization` value, or why it is refused.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<&str, Rejection> {
        let header = header.ok_or(Rejection::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| Rejection::Malformed)?;
        let token = credentials(header, &self.scheme)?;
        self.tokens.identify(token).ok_or(Rejection::UnknownToken)
    }
}

/// The token of `scheme token`. As the tutorial's `header.strip().split(' ')`, the trimmed value must be
/// exactly two parts around one space; the scheme is compared case-insensitively (RFC 9110 11.1).
fn credentials<'a>(header: &'a str, scheme: &str) -> Result<&'a str, Rejection> {
    let mut parts = header.trim().split(' ');
    let (Some(given), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Rejection::Malformed);
    };
    if !given.eq_ignore_ascii_case(scheme) {
        return Err(Rejection::WrongScheme);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn guard() -> Guard {
        let table = BTreeMap::from([("alice".to_string(), "a-secret".to_string())]);
        Guard {
            scheme: "Token".into(),
            tokens: TokenSet::from_table(&table, false).unwrap(),
        }
    }

    #[test]
    fn each_header_gets_the_tutorials_answer() {
        let guard = guard();
        let check = |header: Option<&str>| guard.authenticate(header.map(str::as_bytes));
        assert_eq!(check(None), Err(Rejection::Missing));
        for header in [
            "",
            "Token",
            "Token ",
            "a-secret",
            "Token  a-secret",
            "Token a b",
            "Token\ta-secret",
        ] {
            assert_eq!(check(Some(header)), Err(Rejection::Malformed), "{header:?}");
        }
        assert_eq!(check(Some("Bearer a-secret")), Err(Rejection::WrongScheme));
        assert_eq!(check(Some("Token b-secret")), Err(Rejection::UnknownToken));
        assert_eq!(check(Some("Token a-secret")), Ok("alice"));
        assert_eq!(check(Some("  tOKEN a-secret \t")), Ok("alice"));
        assert_eq!(
            guard.authenticate(Some(b"Token \xff")),
            Err(Rejection::Malformed),
            "not UTF-8"
        );
    }

    #[test]
    fn only_missing_credentials_are_401() {
        assert_eq!(Rejection::Missing.status(), 401);
        for r in [
            Rejection::Malformed,
            Rejection::WrongScheme,
            Rejection::UnknownToken,
        ] {
            assert_eq!(r.status(), 403);
        }
    }
}
