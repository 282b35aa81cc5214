//! Weir's built-in `rate-limit` plugin: GCRA limits kept in the host's shared store, so that every replica
//! behind a balancer counts against the same limits.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "rate-limit"
//! grants.store = true
//! config = { limits = [{ rate = "10/s", burst = 20 }, { rate = "1000/h" }], key = ["context:jwt.sub"] }
//! ```
//!
//! All of a request's limits are checked and spent in one store call: the request passes only if every
//! limit has room, and a refused one spends none. A refusal is `429` with `Retry-After` and an
//! `application/problem+json` body; allowed and refused answers carry `RateLimit-Policy` and `RateLimit`.

mod fields;
mod key;
mod rate;

use fields::Policy;
use key::Part;
use rate::Rate;
use serde::Deserialize;
use weir_sdk::store::{self, Limit, StoreError, Verdict};
use weir_sdk::{Action, ConfigError, Hooks, LocalResponse, Plugin, Request, Response, Result};
use weir_sdk::{context, log};

#[derive(Deserialize)]
struct RateLimit {
    limits: Vec<LimitConfig>,
    #[serde(default = "default_key")]
    key: Vec<Part>,
    #[serde(default)]
    on_store_error: OnStoreError,
    /// Replicas sharing the store: with `on_store_error = "local"` each keeps limit ÷ replicas.
    #[serde(default = "default_replicas")]
    replicas: u32,
    /// Count and log what would be refused, refuse nothing, and send no fields.
    #[serde(default)]
    shadow: bool,
    /// `RateLimit-Policy` and `RateLimit` on every answer.
    #[serde(default = "default_true")]
    headers: bool,
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` too.
    #[serde(default)]
    legacy_headers: bool,
    /// Where the fields wait in the context for the response phase.
    #[serde(default = "default_context_prefix")]
    context_prefix: String,
    #[serde(skip)]
    ready: Option<Ready>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    rate: Rate,
    #[serde(default)]
    burst: u32,
    /// The name in the fields and in `/metrics`; the rate as written by default (`"10/s"`).
    name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnStoreError {
    /// Let the request through, unlimited, while the store is down.
    Allow,
    /// Answer 503.
    Deny,
    /// Limit in this process alone, each limit divided by `replicas`.
    #[default]
    Local,
}

fn default_key() -> Vec<Part> {
    vec![Part::Client]
}

fn default_replicas() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

fn default_context_prefix() -> String {
    "ratelimit".into()
}

/// The limits, as sent to the store and as named in the fields.
struct Limits {
    policies: Vec<Policy>,
    /// Per limit, what follows the request's key in the store: the limit itself, so that a changed limit
    /// starts afresh instead of reading a state made under other numbers.
    suffixes: Vec<String>,
    /// The `RateLimit-Policy` value.
    policy_field: String,
}

impl Limits {
    fn new(policies: Vec<Policy>) -> Limits {
        let suffixes = policies
            .iter()
            .map(|p| format!("{}/{}s+{}", p.quota, p.window_s, p.burst))
            .collect();
        let policy_field = fields::policy(&policies);
        Limits {
            policies,
            suffixes,
            policy_field,
        }
    }

    /// The store's limits for the request keyed `key`. The key goes in braces, a Redis hash tag, so that
    /// the limits of one request would share a slot on a cluster.
    fn for_key(&self, key: &str) -> Vec<Limit> {
        self.policies
            .iter()
            .zip(&self.suffixes)
            .map(|(p, suffix)| Limit {
                name: p.name.clone(),
                key: format!("{{{key}}}:{suffix}"),
                rate: p.quota,
                period_ms: p.window_s * 1000,
                burst: p.burst,
            })
            .collect()
    }
}

struct Ready {
    shared: Limits,
    /// `shared` divided by `replicas`, for `on_store_error = "local"`.
    local: Limits,
    policy_key: String,
    state_key: String,
    legacy_key: String,
}

/// `10/s`, `1000/h`, `300/15m`: the rate in the largest unit that divides its period.
fn rate_name(rate: Rate) -> String {
    let period = match rate.period_s {
        s if s % 86_400 == 0 => (s / 86_400, "d"),
        s if s % 3_600 == 0 => (s / 3_600, "h"),
        s if s % 60 == 0 => (s / 60, "m"),
        s => (s, "s"),
    };
    match period {
        (1, unit) => format!("{}/{unit}", rate.units),
        (n, unit) => format!("{}/{n}{unit}", rate.units),
    }
}

impl RateLimit {
    fn policies(&self) -> core::result::Result<Vec<Policy>, ConfigError> {
        if self.limits.is_empty() || self.limits.len() > 16 {
            return Err(ConfigError::new("limits", "list 1 to 16 limits"));
        }
        let mut policies: Vec<Policy> = Vec::new();
        for (i, limit) in self.limits.iter().enumerate() {
            let name = limit.name.clone().unwrap_or_else(|| rate_name(limit.rate));
            // An sf-string holds printable ASCII only; the name is also a label in `/metrics`.
            let printable = name.bytes().all(|b| (0x20..=0x7e).contains(&b));
            if name.is_empty() || name.len() > 64 || !printable {
                return Err(ConfigError::new(
                    format!("limits.{i}.name"),
                    "1 to 64 printable ASCII characters",
                ));
            }
            if policies.iter().any(|p| p.name == name) {
                return Err(ConfigError::new(
                    format!("limits.{i}.name"),
                    format!("two limits are named \"{name}\": give one a `name`"),
                ));
            }
            policies.push(Policy {
                name,
                quota: limit.rate.units,
                window_s: limit.rate.period_s,
                burst: limit.burst,
            });
        }
        Ok(policies)
    }
}

impl Plugin for RateLimit {
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        let policies = self.policies()?;
        if self.key.is_empty() {
            return Err(ConfigError::new(
                "key",
                "list at least one part: \"client\", \"header:NAME\" or \"context:KEY\"",
            ));
        }
        if self.replicas == 0 {
            return Err(ConfigError::new("replicas", "at least 1"));
        }
        if self.context_prefix.is_empty() {
            return Err(ConfigError::new("context_prefix", "must not be empty"));
        }
        // Each replica's share, rounded down so that together they never admit more than the limit; at
        // least one unit, or the fallback would refuse everything.
        let local = policies
            .iter()
            .map(|p| Policy {
                quota: (p.quota / self.replicas).max(1),
                burst: p.burst / self.replicas,
                ..p.clone()
            })
            .collect();
        let prefix = &self.context_prefix;
        self.ready = Some(Ready {
            shared: Limits::new(policies),
            local: Limits::new(local),
            policy_key: format!("{prefix}.policy"),
            state_key: format!("{prefix}.state"),
            legacy_key: format!("{prefix}.legacy"),
        });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let ready = self.ready.as_ref().expect("init prepares the limits");
        let key = key::digest(&self.key, req);
        let (limits, verdicts) = match store::throttle(&ready.shared.for_key(&key), 1) {
            Ok(verdicts) => (&ready.shared, verdicts),
            Err(StoreError::Unavailable(reason)) => match self.on_store_error {
                OnStoreError::Allow => {
                    log::debug(&format!("store unavailable, request let through: {reason}"));
                    return Ok(Action::Continue);
                }
                OnStoreError::Deny => return Ok(store_unavailable()),
                OnStoreError::Local => match store::throttle_local(&ready.local.for_key(&key), 1) {
                    Ok(verdicts) => (&ready.local, verdicts),
                    // Even this process's memory for limits is full: no limit can be kept.
                    Err(_) => return Ok(store_unavailable()),
                },
            },
            Err(invalid) => return Err(invalid.into()),
        };
        let violated: Vec<&Policy> = limits
            .policies
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| !v.allowed)
            .map(|(p, _)| p)
            .collect();
        if self.shadow {
            if !violated.is_empty() {
                let names: Vec<&str> = violated.iter().map(|p| p.name.as_str()).collect();
                log::info(&format!(
                    "shadow mode: would refuse with 429 (over {})",
                    names.join(", ")
                ));
            }
            return Ok(Action::Continue);
        }
        self.keep_fields(ready, limits, &verdicts)?;
        if violated.is_empty() {
            return Ok(Action::Continue);
        }
        let retry_after = verdicts
            .iter()
            .map(|v| fields::seconds(v.retry_after_ms))
            .max()
            .unwrap_or(1)
            .max(1);
        let names: Vec<&str> = violated.iter().map(|p| p.name.as_str()).collect();
        Ok(LocalResponse::new(429)
            .header("retry-after", retry_after.to_string())
            .header("content-type", "application/problem+json")
            .body(fields::quota_exceeded(&names, retry_after))
            .into())
    }

    fn on_response(&self, _req: &Request, resp: &mut Response) -> Result<()> {
        let ready = self.ready.as_ref().expect("init prepares the limits");
        // Appended, not set: the fields are lists, and another limiter (or the upstream) may have its own.
        if let Some(policy) = context::get(&ready.policy_key) {
            resp.append_header("ratelimit-policy", policy)?;
        }
        if let Some(state) = context::get(&ready.state_key) {
            resp.append_header("ratelimit", state)?;
        }
        if let Some(legacy) = context::get(&ready.legacy_key) {
            let mut values = legacy.split(' ');
            for name in [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ] {
                if let Some(value) = values.next() {
                    resp.set_header(name, value)?;
                }
            }
        }
        Ok(())
    }
}

impl RateLimit {
    /// Leaves the fields in the context for `on_response`, which may run on another instance.
    fn keep_fields(&self, ready: &Ready, limits: &Limits, verdicts: &[Verdict]) -> Result<()> {
        if self.headers {
            context::set(&ready.policy_key, &limits.policy_field)?;
            context::set(&ready.state_key, &fields::state(&limits.policies, verdicts))?;
        }
        if self.legacy_headers
            && let Some((limit, remaining, reset)) = fields::legacy(&limits.policies, verdicts)
        {
            context::set(&ready.legacy_key, &format!("{limit} {remaining} {reset}"))?;
        }
        Ok(())
    }
}

fn store_unavailable() -> Action {
    LocalResponse::new(503)
        .header("retry-after", "1")
        .header("content-type", "application/problem+json")
        .body(fields::reduced_capacity())
        .into()
}

weir_sdk::export!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_the_rate_in_its_largest_unit() {
        let name = |units, period_s| rate_name(Rate { units, period_s });
        assert_eq!(name(10, 1), "10/s");
        assert_eq!(name(1000, 3600), "1000/h");
        assert_eq!(name(300, 900), "300/15m");
        assert_eq!(name(5, 90), "5/90s");
        assert_eq!(name(7, 172_800), "7/2d");
    }
}
