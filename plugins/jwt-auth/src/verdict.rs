//! The verdict on a request's token, written to the context for the plugins after this one:
//! `jwt.verdict` is `valid`, `missing` or `bad`, and `jwt.reason` the reason code of a refusal.
//!
//! Only plugins write the context (the host starts each request with an empty one, and nothing a client
//! sends reaches it), so a later plugin that reads the verdict reads this plugin's word or nothing. A
//! request this plugin lets through unchecked (an excluded path, a CORS preflight) has both keys removed,
//! so that no value an earlier plugin left can pass for a verdict.

use serde::Deserialize;
use weir_sdk::{Result, context};

use crate::failure::Failure;

/// What happens to a request whose token is missing or bad.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Answer 401 (auth stays closed unless the config says otherwise).
    #[default]
    Refuse,
    /// Record the verdict and go on, for a later plugin (spa-router) to decide.
    Record,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Missing,
    Bad,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Missing => "missing",
            Verdict::Bad => "bad",
        }
    }
}

/// What a failure leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Refuse,
    /// Continue, with this verdict recorded.
    Record(Verdict),
}

pub fn outcome(failure: &Failure, on_failure: OnFailure, allow_missing: bool) -> Outcome {
    match (failure, on_failure) {
        // The key set is unreachable: the token may well be good, and a later plugin that took it for a
        // bad one would send a signed-in user to the login page.
        (Failure::KeysUnavailable, _) => Outcome::Refuse,
        (Failure::Missing, OnFailure::Record) => Outcome::Record(Verdict::Missing),
        (Failure::Missing, OnFailure::Refuse) if allow_missing => Outcome::Record(Verdict::Missing),
        (_, OnFailure::Record) => Outcome::Record(Verdict::Bad),
        (_, OnFailure::Refuse) => Outcome::Refuse,
    }
}

/// The two context keys, under the configured `context_prefix`.
pub struct Keys {
    verdict: String,
    reason: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            verdict: format!("{prefix}.verdict"),
            reason: format!("{prefix}.reason"),
        }
    }

    /// Written after the claims, so that a token's own `verdict` claim can never stand in for it.
    pub fn valid(&self) -> Result<()> {
        context::set(&self.verdict, Verdict::Valid.as_str())
    }

    /// `reason` is `None` when the config hides details: a later plugin's answer would show it.
    pub fn failed(&self, verdict: Verdict, reason: Option<&str>) -> Result<()> {
        context::set(&self.verdict, verdict.as_str())?;
        match reason {
            Some(reason) => context::set(&self.reason, reason),
            None => {
                context::remove(&self.reason);
                Ok(())
            }
        }
    }

    pub fn forget(&self) {
        context::remove(&self.verdict);
        context::remove(&self.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_mode_refuses_all_but_an_allowed_missing_token() {
        let refuse = |f: &Failure, allow| outcome(f, OnFailure::Refuse, allow);
        assert_eq!(refuse(&Failure::Missing, false), Outcome::Refuse);
        assert_eq!(
            refuse(&Failure::Missing, true),
            Outcome::Record(Verdict::Missing)
        );
        for failure in [Failure::Expired, Failure::BadSignature, Failure::UnknownKid] {
            assert_eq!(refuse(&failure, true), Outcome::Refuse, "{failure:?}");
        }
    }

    #[test]
    fn record_mode_records_missing_and_bad_tokens() {
        let record = |f: &Failure| outcome(f, OnFailure::Record, false);
        assert_eq!(record(&Failure::Missing), Outcome::Record(Verdict::Missing));
        for failure in [
            Failure::Expired,
            Failure::BadSignature,
            Failure::UnknownKid,
            Failure::TooLarge(8192),
            Failure::Malformed("x"),
            Failure::WrongAudience,
        ] {
            assert_eq!(
                record(&failure),
                Outcome::Record(Verdict::Bad),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn unavailable_keys_are_answered_in_every_mode() {
        for mode in [OnFailure::Refuse, OnFailure::Record] {
            assert_eq!(
                outcome(&Failure::KeysUnavailable, mode, true),
                Outcome::Refuse
            );
        }
    }

    #[test]
    fn the_mode_is_refuse_unless_configured() {
        assert_eq!(OnFailure::default(), OnFailure::Refuse);
        let parsed: OnFailure = serde_json::from_str(r#""record""#).unwrap();
        assert_eq!(parsed, OnFailure::Record);
        assert!(serde_json::from_str::<OnFailure>(r#""Record""#).is_err());
        assert!(serde_json::from_str::<OnFailure>(r#""allow""#).is_err());
    }

    #[test]
    fn keys_follow_the_context_prefix() {
        let keys = Keys::new("auth");
        assert_eq!(keys.verdict, "auth.verdict");
        assert_eq!(keys.reason, "auth.reason");
    }
}
