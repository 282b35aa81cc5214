//! The `[store]` table: where the state plugins share lives (rate-limit counters, small values), and the
//! bounds on every call to it; and `grants.store`, which plugin entries may use it and under what name.

use std::time::Duration;

use serde::Deserialize;

use super::{ByteSize, Findings, Step::Key, limits};
use crate::redact::url_without_password;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    /// `redis://[user:password@]host[:port][/db]`; required with `backend = "redis"`.
    pub url: Option<RedisUrl>,
    /// One attempt to connect to Redis. Range: [`super::limits::STORE_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a connection waits for Redis to answer a command before it counts as broken. Range:
    /// [`super::limits::STORE_TIMEOUT`].
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// The hard bound on one store call as the plugin sees it, connecting included: past it the call is
    /// `unavailable` and the plugin's fallback decides. Range: [`super::limits::STORE_DEADLINE`].
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Calls failing in a row that open the circuit breaker. Range: [`super::limits::BREAKER_FAILURES`].
    pub breaker_failures: u32,
    /// How long an open breaker fails calls at once before one call probes Redis again. Range:
    /// [`super::limits::BREAKER_OPEN`].
    #[serde(with = "humantime_serde")]
    pub breaker_open: Duration,
    /// Put before every key, so that several deployments can share one Redis. At most 64 bytes.
    pub key_prefix: String,
    /// Memory the in-process store may hold: the `local` backend, and the fallback limits of a plugin
    /// whose Redis is down. Range: [`super::limits::STORE_MEMORY`].
    pub local_max_bytes: ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Local,
            url: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            // Redis answers the rate-limit script in a fraction of a millisecond, but the deadline is wall
            // time, and a busy worker may poll an answer already in its socket only milliseconds later. 5 ms
            // opened the breaker of a healthy Redis on a two-core machine (wrk, 8 and 64 connections, one
            // worker); 20 ms never did, and still bounds what a hung Redis adds to a request.
            deadline: Duration::from_millis(20),
            // One slow answer is noise; five in a row is an outage.
            breaker_failures: 5,
            breaker_open: Duration::from_secs(1),
            key_prefix: "weir:".into(),
            // About 400,000 rate-limit keys of ~160 bytes.
            local_max_bytes: ByteSize(64 << 20),
        }
    }
}

impl StoreConfig {
    /// The ranges, and a URL exactly when the backend needs one.
    pub(super) fn validate(&self, found: &mut Findings) {
        let field = |name| [Key("store"), Key(name)];
        match (self.backend, &self.url) {
            (Backend::Redis, None) => found.refuse(
                &field("url"),
                "missing: backend = \"redis\" needs the server's url (redis://host:port)",
            ),
            (Backend::Local, Some(_)) => found.refuse(
                &field("url"),
                "only for backend = \"redis\": the local backend keeps its state in this process",
            ),
            _ => {}
        }
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ];
        for (name, value) in timeouts {
            found.bound(&field(name), &limits::STORE_TIMEOUT, value);
        }
        found.bound(&field("deadline"), &limits::STORE_DEADLINE, self.deadline);
        found.bound(
            &field("breaker_failures"),
            &limits::BREAKER_FAILURES,
            self.breaker_failures,
        );
        found.bound(
            &field("breaker_open"),
            &limits::BREAKER_OPEN,
            self.breaker_open,
        );
        found.bound(
            &field("local_max_bytes"),
            &limits::STORE_MEMORY,
            self.local_max_bytes,
        );
        if self.key_prefix.len() > 64 {
            found.refuse(&field("key_prefix"), "at most 64 bytes");
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, shared by its workers and instances but not by replicas.
    #[default]
    Local,
    /// A Redis server every replica reaches.
    Redis,
}

/// A Redis URL, checked by the client that will use it (so `rediss://`, which this build does not
/// support, is refused at load).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RedisUrl(pub String);

/// Without the password, as every other way the URL is shown.
impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl TryFrom<String> for RedisUrl {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        if !(v.starts_with("redis://")
            || v.starts_with("redis+unix://")
            || v.starts_with("unix://"))
        {
            return Err(format!(
                "\"{}\" is not a Redis URL: write redis://host:port (or redis+unix:///path)",
                url_without_password(&v)
            ));
        }
        redis::Client::open(v.as_str())
            .map(|_| RedisUrl(v.clone()))
            .map_err(|e| format!("\"{}\" is not a Redis URL: {e}", url_without_password(&v)))
    }
}

impl RedisUrl {
    /// The URL for logs and errors: a password in it is replaced.
    pub fn shown(&self) -> String {
        url_without_password(&self.0)
    }
}

/// `grants.store`: `true` gives the entry a namespace of its own; a name gives it that namespace, which
/// entries naming the same one share (one limit across two routes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "GrantText")]
pub enum StoreGrant {
    #[default]
    None,
    Own,
    Named(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GrantText {
    Flag(bool),
    Name(String),
}

impl TryFrom<GrantText> for StoreGrant {
    type Error = String;
    fn try_from(v: GrantText) -> Result<Self, String> {
        match v {
            GrantText::Flag(false) => Ok(StoreGrant::None),
            GrantText::Flag(true) => Ok(StoreGrant::Own),
            GrantText::Name(name) => {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if valid {
                    Ok(StoreGrant::Named(name))
                } else {
                    Err(format!(
                        "\"{name}\" is not a store namespace: 1 to 64 letters, digits, `-`, `_` or `.`"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_by_the_client() {
        assert!(RedisUrl::try_from("redis://127.0.0.1:6379".to_owned()).is_ok());
        let e = RedisUrl::try_from("http://127.0.0.1:6379".to_owned()).unwrap_err();
        assert!(e.contains("is not a Redis URL"), "{e}");
        let e = RedisUrl::try_from("redis://:pw@[::1:6379".to_owned()).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}
