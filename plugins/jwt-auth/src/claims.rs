//! The registered claims a verified token must satisfy (RFC 7519 section 4.1).

use serde_json::{Map, Value};

use crate::failure::Failure;

pub struct Policy {
    pub issuer: Option<String>,
    /// Any one of them in the token's `aud` passes; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    pub subject: Option<String>,
    pub clock_skew: u64,
    pub require_exp: bool,
    pub max_lifetime: Option<u64>,
}

impl Policy {
    /// `now` in seconds since the Unix epoch. Time claims are checked before identity claims so that an
    /// expired token is reported as expired whoever it names.
    pub fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<(), Failure> {
        let now = now as f64;
        let skew = self.clock_skew as f64;
        let exp = numeric_date(claims, "exp", "Jwt exp is not a number")?;
        let nbf = numeric_date(claims, "nbf", "Jwt nbf is not a number")?;
        let iat = numeric_date(claims, "iat", "Jwt iat is not a number")?;
        match exp {
            Some(exp) if now >= exp + skew => return Err(Failure::Expired),
            None if self.require_exp || self.max_lifetime.is_some() => {
                return Err(Failure::MissingExp);
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| now + skew < nbf) {
            return Err(Failure::NotYetValid);
        }
        // As PyJWT: a token from an issuer whose clock runs ahead (beyond the skew) is not trusted yet.
        if iat.is_some_and(|iat| now + skew < iat) {
            return Err(Failure::IssuedInFuture);
        }
        if let (Some(max), Some(exp)) = (self.max_lifetime, exp) {
            // Without `iat` the lifetime left is what counts.
            if exp - iat.unwrap_or(now) > max as f64 {
                return Err(Failure::LifetimeTooLong(max));
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer)
        {
            return Err(Failure::WrongIssuer);
        }
        if !self.audiences.is_empty() && !audience_allowed(claims.get("aud"), &self.audiences) {
            return Err(Failure::WrongAudience);
        }
        if let Some(subject) = &self.subject
            && claims.get("sub").and_then(Value::as_str) != Some(subject)
        {
            return Err(Failure::WrongSubject);
        }
        Ok(())
    }
}

/// A NumericDate: a JSON number of seconds, possibly fractional.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    malformed: &'static str,
) -> Result<Option<f64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(Failure::Malformed(malformed)),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 4.1.3).
fn audience_allowed(aud: Option<&Value>, allowed: &[String]) -> bool {
    let is_allowed = |v: &Value| v.as_str().is_some_and(|a| allowed.iter().any(|x| x == a));
    match aud {
        Some(Value::Array(values)) => values.iter().any(is_allowed),
        Some(value) => is_allowed(value),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into(), "web".into()],
            subject: None,
            clock_skew: 60,
            require_exp: true,
            max_lifetime: None,
        }
    }

    fn check(policy: &Policy, claims: Value) -> Result<(), Failure> {
        policy.check(claims.as_object().unwrap(), NOW)
    }

    #[test]
    fn time_claims_allow_the_clock_skew_and_no_more() {
        let p = policy();
        let base = |extra: Value| {
            let mut claims = json!({ "iss": "https://issuer", "aud": "api" });
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            claims
        };
        let now = NOW as f64;
        assert_eq!(check(&p, base(json!({ "exp": now - 59.0 }))), Ok(()));
        assert_eq!(
            check(&p, base(json!({ "exp": now - 60.0 }))),
            Err(Failure::Expired)
        );
        assert_eq!(
            check(&p, base(json!({ "exp": now + 100.0, "nbf": now + 61.0 }))),
            Err(Failure::NotYetValid)
        );
        assert_eq!(
            check(&p, base(json!({ "exp": now + 100.0, "nbf": now + 60.0 }))),
            Ok(())
        );
        assert_eq!(check(&p, base(json!({}))), Err(Failure::MissingExp));
        assert_eq!(
            check(&p, base(json!({ "exp": "soon" }))),
            Err(Failure::Malformed("Jwt exp is not a number"))
        );
        let lenient = Policy {
            require_exp: false,
            ..policy()
        };
        assert_eq!(check(&lenient, base(json!({}))), Ok(()));
    }

    #[test]
    fn iat_may_be_in_the_future_by_the_clock_skew_and_no_more() {
        let now = NOW as f64;
        let claims = |iat: Value| json!({ "iss": "https://issuer", "aud": "api", "exp": now + 7200.0, "iat": iat });
        assert_eq!(check(&policy(), claims(json!(now + 60.0))), Ok(()));
        assert_eq!(
            check(&policy(), claims(json!(now + 60.5))),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(
            check(&policy(), claims(json!(now + 3600.0))),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(check(&policy(), claims(json!(now - 86400.0))), Ok(()));
        let strict = Policy {
            clock_skew: 0,
            ..policy()
        };
        assert_eq!(check(&strict, claims(json!(now))), Ok(()));
        assert_eq!(
            check(&strict, claims(json!(now + 1.0))),
            Err(Failure::IssuedInFuture)
        );
        // PyJWT's `int(iat)` takes "1800000000" too; a NumericDate is a JSON number (RFC 7519 section 2).
        for not_a_number in [json!("1800000000"), json!(null), json!(true), json!([now])] {
            assert_eq!(
                check(&policy(), claims(not_a_number.clone())),
                Err(Failure::Malformed("Jwt iat is not a number")),
                "{not_a_number}"
            );
        }
    }

    #[test]
    fn max_lifetime_counts_from_iat_or_now() {
        let p = Policy {
            max_lifetime: Some(3600),
            ..policy()
        };
        let now = NOW as f64;
        let claims = |c: Value| {
            let mut v = json!({ "iss": "https://issuer", "aud": "api" });
            v.as_object_mut()
                .unwrap()
                .extend(c.as_object().unwrap().clone());
            v
        };
        assert_eq!(
            check(&p, claims(json!({ "iat": now, "exp": now + 3600.0 }))),
            Ok(())
        );
        assert_eq!(
            check(&p, claims(json!({ "iat": now, "exp": now + 3601.0 }))),
            Err(Failure::LifetimeTooLong(3600))
        );
        assert_eq!(
            check(&p, claims(json!({ "exp": now + 7200.0 }))),
            Err(Failure::LifetimeTooLong(3600))
        );
    }

    #[test]
    fn issuer_audience_and_subject_must_match() {
        let exp = NOW as f64 + 100.0;
        let p = Policy {
            subject: Some("alice".into()),
            ..policy()
        };
        let ok =
            json!({ "iss": "https://issuer", "aud": ["other", "web"], "sub": "alice", "exp": exp });
        assert_eq!(check(&p, ok), Ok(()));
        let wrong_iss = json!({ "iss": "https://evil", "aud": "api", "sub": "alice", "exp": exp });
        assert_eq!(check(&p, wrong_iss), Err(Failure::WrongIssuer));
        let wrong_aud =
            json!({ "iss": "https://issuer", "aud": ["other"], "sub": "alice", "exp": exp });
        assert_eq!(check(&p, wrong_aud), Err(Failure::WrongAudience));
        let no_aud = json!({ "iss": "https://issuer", "sub": "alice", "exp": exp });
        assert_eq!(check(&p, no_aud), Err(Failure::WrongAudience));
        let wrong_sub = json!({ "iss": "https://issuer", "aud": "api", "sub": "bob", "exp": exp });
        assert_eq!(check(&p, wrong_sub), Err(Failure::WrongSubject));
    }
}
