//! An `[upstreams.NAME]` table: where its endpoints are, how requests are spread over them, how their health
//! is judged, what is retried, and TLS to `https://` endpoints. The ranges are in [`super::limits`]; the
//! defaults, and why each is what it is, are in README's "Upstreams".

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use rustls::pki_types::ServerName;
use serde::Deserialize;

use super::Step::{Index, Key};
use super::{Findings, HeaderNameText, MethodName, UpstreamUrl, limits};

/// The option that turns certificate checks off, named so that nobody sets it by accident and every review
/// of a config sees it.
pub const SKIP_VERIFY: &str = "tls_insecure_skip_verify_DANGEROUS";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// One endpoint. Required (or `urls`) unless `disabled`; a disabled upstream may keep its URL, to be
    /// switched back on by one line.
    pub url: Option<UpstreamUrl>,
    /// Several endpoints of one service, which requests are spread over.
    pub urls: Option<Vec<UpstreamUrl>>,
    /// Switched off: a request routed to it (or sent to it by a plugin) gets `501 The proxy is disabled.`
    /// once its chain has run, so the chain's auth still answers first.
    #[serde(default)]
    pub disabled: bool,
    /// Connecting (and the TLS handshake) longer than this gives 504. Range: [`limits::UPSTREAM_TIMEOUT`].
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Waiting longer than this for the response head gives 504. Range: [`limits::UPSTREAM_TIMEOUT`].
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Send the client's `Host` instead of the upstream's own authority (nginx's default is the latter).
    #[serde(default)]
    pub preserve_host: bool,
    /// An upstream that sends nothing of a response body it has begun for this long has the response cut
    /// short (nginx's `proxy_read_timeout`, between two reads). Range: [`limits::UPSTREAM_TIMEOUT`].
    #[serde(default = "default_read_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Requests in flight to each endpoint at once (over HTTP/1.1, its busy connections); the next ones wait
    /// in line, first come first served, for up to `queue_timeout`. Unset, there is no cap. Range:
    /// [`limits::UPSTREAM_MAX_REQUESTS`].
    pub max_requests: Option<u32>,
    /// How long a request waits in line for one of `max_requests` before it gets 503. Range:
    /// [`limits::UPSTREAM_TIMEOUT`].
    #[serde(default = "default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Every request over HTTP/2: negotiated by ALPN on `https://`, with prior knowledge (h2c) on `http://`.
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub balance: Balance,
    /// What `balance = "hash"` hashes.
    pub hash_on: Option<HashOn>,
    /// Further attempts one request may make. Range: [`limits::RETRIES`].
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Answers that are retried (for `retry_methods` only), as a failed connection is.
    #[serde(default)]
    pub retry_on: Vec<u16>,
    /// Methods retried after the upstream may have received the request.
    #[serde(default = "default_retry_methods")]
    pub retry_methods: Vec<MethodName>,
    /// Retries in flight as a share of the upstream's requests in flight, in percent. Range:
    /// [`limits::RETRY_BUDGET_PERCENT`].
    #[serde(default = "default_retry_budget_percent")]
    pub retry_budget_percent: u32,
    /// Retries in flight the budget always allows, however few requests there are.
    #[serde(default = "default_retry_min_concurrency")]
    pub retry_min_concurrency: u32,
    /// Failures in a row that take an endpoint out; 0 never does. Range: [`limits::EJECT_AFTER`].
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// How long an endpoint is out the first time; each ejection in a row doubles it. Range:
    /// [`limits::HEALTH_TIME`].
    #[serde(default = "default_eject_for", with = "humantime_serde")]
    pub eject_for: Duration,
    /// The most an ejection lasts. Range: [`limits::HEALTH_TIME`].
    #[serde(default = "default_eject_for_max", with = "humantime_serde")]
    pub eject_for_max: Duration,
    /// Active health checks; none unless the table is there.
    pub health_check: Option<HealthCheck>,
    /// The name sent as SNI and checked against the certificate; by default the endpoint's host.
    pub server_name: Option<TlsServerName>,
    /// PEM certificates trusted besides the built-in roots (a private CA). Relative to the config file.
    pub ca_file: Option<PathBuf>,
    /// The certificate chain (PEM, leaf first) shown to an endpoint that asks for one (mutual TLS), with
    /// `client_key`: both or neither. Relative to the config file.
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert` (PKCS#8, PKCS#1 or SEC1, PEM).
    pub client_key: Option<PathBuf>,
    #[serde(default, rename = "tls_insecure_skip_verify_DANGEROUS")]
    pub tls_insecure_skip_verify: bool,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// HAProxy's `timeout queue`, which defaults to its connect timeout: a request that waits longer for a free
/// place than it would for a connection is better answered, so the client may try elsewhere.
fn default_queue_timeout() -> Duration {
    default_connect_timeout()
}

/// nginx's `proxy_read_timeout`.
fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Envoy's `num_retries`: one more try hides an endpoint that just died or a pooled connection it just
/// closed, and cannot more than double any load.
fn default_retries() -> u32 {
    1
}

/// The safe methods (RFC 9110 §9.2.1), which change nothing however often they are sent. PUT and DELETE are
/// idempotent too (§9.2.2), but an application that implements one as "create another" or "delete and
/// report 404 the second time" is common enough that retrying them is the operator's choice.
fn default_retry_methods() -> Vec<MethodName> {
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE]
        .into_iter()
        .map(MethodName)
        .collect()
}

/// Envoy's retry budget defaults.
fn default_retry_budget_percent() -> u32 {
    20
}

fn default_retry_min_concurrency() -> u32 {
    3
}

/// Envoy's `consecutive_5xx`.
fn default_eject_after() -> u32 {
    5
}

fn default_eject_for() -> Duration {
    Duration::from_secs(10)
}

/// Envoy's `max_ejection_time`.
fn default_eject_for_max() -> Duration {
    Duration::from_secs(300)
}

/// How requests are spread over an upstream's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Of two endpoints picked at random, the one with fewer requests in flight.
    LeastRequests,
    /// The same endpoint for the same `hash_on` value, as long as it is in.
    Hash,
}

/// A request header or a context value, for `balance = "hash"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashOn {
    pub header: Option<HeaderNameText>,
    pub context: Option<String>,
}

/// A DNS name or an IP address, as TLS names a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct TlsServerName(pub ServerName<'static>);

impl TryFrom<String> for TlsServerName {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        ServerName::try_from(v.clone())
            .map(TlsServerName)
            .map_err(|_| format!("\"{v}\" is not a DNS name or an IP address"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Asked with GET on every endpoint; a 2xx answer passes.
    pub path: String,
    /// From the end of one round of checks to the start of the next. Range: [`limits::HEALTH_TIME`].
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// One check's answer, body included. Range: [`limits::HEALTH_TIME`].
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Passing checks in a row that bring an endpoint back. Range: [`limits::HEALTH_THRESHOLD`].
    #[serde(default = "default_healthy")]
    pub healthy: u32,
    /// Failing checks in a row that take an endpoint out. Range: [`limits::HEALTH_THRESHOLD`].
    #[serde(default = "default_unhealthy")]
    pub unhealthy: u32,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}

/// HAProxy's `rise` and `fall`: one lost probe is noise, three in a row are an outage.
fn default_healthy() -> u32 {
    2
}

fn default_unhealthy() -> u32 {
    3
}

impl UpstreamConfig {
    /// The endpoints as written, `url` or `urls`; none for a disabled upstream that names none.
    pub fn endpoints(&self) -> &[UpstreamUrl] {
        match (&self.urls, &self.url) {
            (Some(urls), _) => urls,
            (None, Some(url)) => std::slice::from_ref(url),
            (None, None) => &[],
        }
    }

    /// True when the endpoints are `https://`.
    pub fn is_tls(&self) -> bool {
        self.endpoints()
            .first()
            .is_some_and(|u| u.scheme == http::uri::Scheme::HTTPS)
    }

    /// The ranges, and the rules between fields.
    pub(super) fn validate(&self, name: &str, found: &mut Findings) {
        let field = |f| [Key("upstreams"), Key(name), Key(f)];
        match (&self.url, &self.urls) {
            (Some(_), Some(_)) => found.refuse(
                &field("urls"),
                "set one of \"url\" (one endpoint) and \"urls\" (several), not both",
            ),
            (None, None) if !self.disabled => found.refuse(
                &field("url"),
                "missing: give the upstream's url, or `disabled = true` to answer its routes with 501",
            ),
            _ => {}
        }
        if let Some(urls) = &self.urls {
            found.bound(&field("urls"), &limits::UPSTREAM_ENDPOINTS, urls.len());
        }
        self.validate_endpoints(name, found);
        for (f, value) in [
            ("connect_timeout", self.connect_timeout),
            ("timeout", self.timeout),
            ("read_timeout", self.read_timeout),
            ("queue_timeout", self.queue_timeout),
        ] {
            found.bound(&field(f), &limits::UPSTREAM_TIMEOUT, value);
        }
        if let Some(max) = self.max_requests {
            found.bound(&field("max_requests"), &limits::UPSTREAM_MAX_REQUESTS, max);
        }
        self.validate_balance(name, found);
        self.validate_retries(name, found);
        found.bound(
            &field("eject_after"),
            &limits::EJECT_AFTER,
            self.eject_after,
        );
        found.bound(&field("eject_for"), &limits::HEALTH_TIME, self.eject_for);
        found.bound(
            &field("eject_for_max"),
            &limits::HEALTH_TIME,
            self.eject_for_max,
        );
        if self.eject_for_max < self.eject_for {
            found.refuse(
                &field("eject_for_max"),
                "is below eject_for, the first ejection's length",
            );
        }
        if let Some(check) = &self.health_check {
            check.validate(name, found);
        }
        self.validate_tls(name, found);
    }

    /// No endpoint twice, and one scheme for all: they share one connection pool and its TLS settings.
    fn validate_endpoints(&self, name: &str, found: &mut Findings) {
        let endpoints = self.endpoints();
        let Some(first) = endpoints.first() else {
            return;
        };
        let mut seen = HashMap::new();
        for (index, url) in endpoints.iter().enumerate() {
            let at = [Key("upstreams"), Key(name), Key("urls"), Index(index)];
            if url.scheme != first.scheme {
                found.refuse(
                    &at,
                    format!(
                        "\"{}\" where urls.0 is \"{}\": an upstream's endpoints share one scheme",
                        url.scheme, first.scheme
                    ),
                );
            }
            let key = (url.authority.as_str(), url.base_path.as_str());
            if let Some(earlier) = seen.insert(key, index) {
                found.refuse(&at, format!("the same endpoint as urls.{earlier}"));
            }
        }
    }

    fn validate_balance(&self, name: &str, found: &mut Findings) {
        let field = |f| [Key("upstreams"), Key(name), Key(f)];
        match (&self.hash_on, self.balance) {
            (None, Balance::Hash) => found.refuse(
                &field("balance"),
                "\"hash\" needs hash_on = { header = \"...\" } or hash_on = { context = \"...\" }",
            ),
            (Some(_), Balance::RoundRobin | Balance::LeastRequests) => {
                found.refuse(&field("hash_on"), "only with balance = \"hash\"")
            }
            (Some(on), Balance::Hash) if on.header.is_some() == on.context.is_some() => found
                .refuse(
                    &field("hash_on"),
                    "set exactly one of \"header\" and \"context\"",
                ),
            _ => {}
        }
    }

    fn validate_retries(&self, name: &str, found: &mut Findings) {
        let field = |f| [Key("upstreams"), Key(name), Key(f)];
        found.bound(&field("retries"), &limits::RETRIES, self.retries);
        found.bound(
            &field("retry_budget_percent"),
            &limits::RETRY_BUDGET_PERCENT,
            self.retry_budget_percent,
        );
        for (index, status) in self.retry_on.iter().enumerate() {
            if !(400..=599).contains(status) {
                found.refuse(
                    &[Key("upstreams"), Key(name), Key("retry_on"), Index(index)],
                    format!("{status} is not an error status (400-599)"),
                );
            }
        }
        for (index, method) in self.retry_methods.iter().enumerate() {
            if !is_idempotent(&method.0) {
                found.refuse(
                    &[Key("upstreams"), Key(name), Key("retry_methods"), Index(index)],
                    format!(
                        "{} is not idempotent (RFC 9110 section 9.2.2): sent twice, it may be applied \
                         twice",
                        method.0
                    ),
                );
            }
        }
    }

    fn validate_tls(&self, name: &str, found: &mut Findings) {
        let field = |f| [Key("upstreams"), Key(name), Key(f)];
        if !self.is_tls() {
            let set = [
                ("server_name", self.server_name.is_some()),
                ("ca_file", self.ca_file.is_some()),
                ("client_cert", self.client_cert.is_some()),
                ("client_key", self.client_key.is_some()),
                (SKIP_VERIFY, self.tls_insecure_skip_verify),
            ];
            for (f, _) in set.iter().filter(|(_, set)| *set) {
                found.refuse(&field(f), "only for https:// endpoints");
            }
            return;
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => found.refuse(&field("client_cert"), "needs `client_key`, its key"),
            (None, Some(_)) => {
                found.refuse(&field("client_key"), "needs `client_cert`, its certificate")
            }
            _ => {}
        }
        if self.tls_insecure_skip_verify && self.ca_file.is_some() {
            found.refuse(
                &field("ca_file"),
                format!("never read: {SKIP_VERIFY} checks no certificate"),
            );
        }
    }
}

/// RFC 9110 §9.2.2: the methods whose effect is the same sent once or many times.
pub fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

impl HealthCheck {
    fn validate(&self, name: &str, found: &mut Findings) {
        let field = |f| [Key("upstreams"), Key(name), Key("health_check"), Key(f)];
        let is_path = self.path.starts_with('/')
            && http::uri::PathAndQuery::try_from(self.path.as_str()).is_ok();
        if !is_path {
            found.refuse(
                &field("path"),
                format!("\"{}\" is not a request path (\"/healthz\")", self.path),
            );
        }
        found.bound(&field("interval"), &limits::HEALTH_TIME, self.interval);
        found.bound(&field("timeout"), &limits::HEALTH_TIME, self.timeout);
        found.bound(&field("healthy"), &limits::HEALTH_THRESHOLD, self.healthy);
        found.bound(
            &field("unhealthy"),
            &limits::HEALTH_THRESHOLD,
            self.unhealthy,
        );
    }
}
