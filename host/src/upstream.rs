//! Upstreams: each a set of endpoints behind one pooled keep-alive client (HTTP/1.1 or HTTP/2, in clear
//! or TLS), the pick of an endpoint for each attempt, retries, the forwarding headers, and the mapping of
//! failures to "unreachable" and "timed out".
//!
//! One request's way through [`Upstream::send`]: pick an endpoint ([`endpoints`], [`balance`]), send,
//! record the outcome in the endpoint's health ([`health`]), and, when the failure and the method allow
//! it and the body can go again, try once more on another endpoint within the retry budget ([`retry`]).

mod balance;
mod endpoints;
mod h1;
mod health;
mod outbound;
mod probe;
mod queue;
mod retry;
pub mod tls;
mod transport;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::LengthLimitError;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::body::{ClientBodyError, ClientBodyTimeout, ProxyBody};
use crate::config::UpstreamConfig;
use crate::config::upstream::HealthCheck;
use crate::connections::CountingConnector;
use crate::context::Context;
use crate::fault;
use crate::stats::UpstreamStats;
use balance::{Balancer, HashKey};
use endpoints::{Endpoint, Endpoints};
pub use h1::{Switched, Upgraded};
use health::{Ejection, Verdict};
use outbound::{Held, Outbound, Progress};
pub use queue::{Lines, Place};
use retry::{Failure, RetryPolicy};
use tls::{Connector, HandshakeError, TlsSettings};
pub use transport::Received;
use transport::{SendError, Transport};

/// Idle HTTP/2 connections are kept this long: below the 60–75 s keep-alive of common servers, so Weir
/// closes first and never sends on a connection the upstream is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach upstream \"{upstream}\" ({endpoint}): {reason}")]
    Unreachable {
        upstream: String,
        endpoint: String,
        reason: String,
    },
    /// The endpoint's certificate was refused, or the handshake failed otherwise.
    #[error("cannot reach upstream \"{upstream}\" ({endpoint}) over TLS: {reason}")]
    Tls {
        upstream: String,
        endpoint: String,
        reason: String,
    },
    #[error("upstream \"{upstream}\" ({endpoint}) timed out")]
    Timeout { upstream: String, endpoint: String },
    /// Every one of the endpoint's `max_requests` stayed taken for `queue_timeout`.
    #[error(
        "upstream \"{upstream}\" ({endpoint}) busy: no place free among its max_requests within queue_timeout ({waited:?})"
    )]
    Busy {
        upstream: String,
        endpoint: String,
        waited: Duration,
    },
    #[error("the request body is over the route's max_request_body")]
    BodyTooLarge,
    /// The client's body broke off or broke its framing while it was being forwarded.
    #[error("{0}")]
    ClientBody(String),
    /// The client stopped sending its body for longer than `client_body_timeout`.
    #[error("{0}")]
    ClientBodyTimeout(String),
    /// The normalised path and query did not make a URI: a bug, reported instead of a panic.
    #[error("cannot form the upstream target: {0}")]
    Target(String),
    /// The config switched the upstream off (`disabled = true`).
    #[error("upstream \"{upstream}\" is disabled")]
    Disabled { upstream: String },
}

/// An upstream the config describes but that cannot be made: the field at fault, and why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub field: &'static str,
    pub message: String,
}

pub struct Upstream {
    pub name: String,
    /// The name again, shared by every response body that may need to say whose it was.
    shared_name: Arc<str>,
    timeout: Duration,
    read_timeout: Duration,
    queue_timeout: Duration,
    /// It speaks HTTP/2 (`http2 = true`), which carries no HTTP/1.1 upgrade.
    http2: bool,
    /// Requests to it carry `Forwarded` (`[server] forwarded = true`).
    forwarded: bool,
    /// Where requests go; `None` for an upstream the config disabled.
    pool: Option<Pool>,
    /// Its counters, which outlive this generation.
    stats: Arc<UpstreamStats>,
}

/// An enabled upstream's endpoints, its connections and its retry rules.
struct Pool {
    endpoints: Arc<Endpoints>,
    transport: Transport,
    /// Closes the HTTP/1.1 connections kept too long; stopped with the generation.
    _reaper: Option<h1::Reaper>,
    retry: RetryPolicy,
    /// What `balance = "hash"` hashes.
    hash_key: Option<HashKey>,
    /// The active health checks the config asks for, and once started, their task, stopped with the
    /// upstream.
    check: Option<HealthCheck>,
    checks: Option<probe::Checks>,
    /// The earliest `notAfter` of `ca_file`'s certificates, in seconds since the epoch.
    ca_expires: Option<i64>,
}

/// The request line and headers to forward.
pub struct Outgoing<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
    /// The address the request came from: appended to `X-Forwarded-For`.
    pub hop: IpAddr,
    /// The request's context, when a chain ran: `hash_on = { context = "…" }` reads it.
    pub context: Option<&'a Context>,
    /// `https` when the client came over TLS: sent as `X-Forwarded-Proto`.
    pub scheme: &'static str,
}

impl Upstream {
    /// An upstream without endpoints is disabled whatever `disabled` says: the config's validation refuses
    /// one that is not, so such a value is never served. `resolve` finds the config's files (`ca_file`,
    /// `client_cert`, `client_key`) against the config file's directory.
    pub fn new(
        name: &str,
        config: &UpstreamConfig,
        resolve: &dyn Fn(&Path) -> PathBuf,
        stats: Arc<UpstreamStats>,
    ) -> Result<Upstream, BuildError> {
        let pool = match (config.endpoints().is_empty(), config.disabled) {
            (false, false) => Some(Pool::new(config, resolve, stats.clone())?),
            _ => None,
        };
        Ok(Upstream {
            name: name.to_owned(),
            shared_name: name.into(),
            timeout: config.timeout,
            read_timeout: config.read_timeout,
            queue_timeout: config.queue_timeout,
            http2: config.http2,
            forwarded: false,
            pool,
            stats,
        })
    }

    /// Starts the active health checks the config asks for. Only a config that validated starts them: the
    /// task of a generation that fails to load later is stopped when the generation is dropped.
    pub fn start_health_checks(&mut self) {
        let Some(pool) = &mut self.pool else { return };
        let Some(check) = pool.check.clone() else {
            return;
        };
        pool.checks = probe::start(
            self.shared_name.clone(),
            pool.endpoints.clone(),
            pool.transport.clone(),
            check,
        );
    }

    /// Sends `Forwarded` with each request: `[server] forwarded`, which belongs to the proxy, not to one
    /// upstream's config.
    pub fn send_forwarded(&mut self, on: bool) {
        self.forwarded = on;
    }

    /// It speaks HTTP/2 (`http2 = true`).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// Its `read_timeout`, which also bounds how long a WebSocket tunnel to it may sit idle.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The upstream's name, shared rather than copied by whatever outlives the request that names it.
    pub fn shared_name(&self) -> &Arc<str> {
        &self.shared_name
    }

    /// When the earliest of its `ca_file`'s certificates expires (seconds since the Unix epoch), for
    /// `/metrics`: past it, the endpoints whose chains end at that certificate are refused.
    pub fn ca_expires(&self) -> Option<i64> {
        self.pool.as_ref()?.ca_expires
    }

    /// Each endpoint and whether it is in now (not ejected, not failing its health checks).
    pub fn endpoint_states(&self) -> Vec<(String, bool)> {
        self.pool
            .as_ref()
            .map_or_else(Vec::new, |pool| pool.endpoints.states())
    }

    /// Sends the request, retrying as the upstream's rules allow, and waits for the response head within
    /// the upstream's `timeout` for each attempt. The response body comes under the upstream's
    /// `read_timeout`.
    ///
    /// `timeout` is the upstream's time: while the request body waits for the client (whose own limit is
    /// `client_body_timeout`), the upstream is not kept waiting and its clock stops; it starts again, in
    /// full, from the last request bytes it was handed. So a slow upload to a prompt upstream is never a
    /// 504, and an upstream that stops reading the body or answering still is.
    pub async fn send(
        &self,
        out: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let Some(pool) = &self.pool else {
            return Err(UpstreamError::Disabled {
                upstream: self.name.clone(),
            });
        };
        let _active = pool.retry.begin();
        let key = pool.hash_of(&out);
        let Outgoing {
            method,
            path,
            query,
            mut headers,
            hop,
            context: _,
            scheme,
        } = out;
        add_forwarded(&mut headers, hop, scheme, self.forwarded);
        let endpoints = pool.endpoints.list().len();
        // What a retry needs is kept only for a request that could have one.
        let retries = if pool.retry.may_retry(&method, endpoints) {
            pool.retry.retries
        } else {
            0
        };
        let mut bodies = Bodies::new(body, retries > 0);
        let mut headers = Some(headers);
        let mut tried = None;
        let mut attempt = 0;
        let mut retrying = None;
        loop {
            let (index, endpoint) = pool.endpoints.pick(key, tried);
            // The headers go again only if there can be another attempt.
            let head = if attempt < retries {
                headers.clone()
            } else {
                headers.take()
            };
            let (Some(head), Some((body, progress))) = (head, bodies.next()) else {
                return Err(UpstreamError::Target(
                    "no request left for another attempt".into(),
                ));
            };
            let place = match &endpoint.places {
                None => None,
                Some(places) => match places.take(self.queue_timeout, &self.stats).await {
                    Some(place) => Some(place),
                    None => return Err(self.busy(endpoint)),
                },
            };
            let request = request(endpoint, &method, path, query, head, body)?;
            let in_flight = endpoint.begin();
            let result = self
                .exchange(&pool.transport, endpoint, request, progress)
                .await;
            drop(in_flight);
            // The retry's place in the budget is held until its attempt is over.
            drop(retrying.take());
            let (failure, outcome) = match result {
                Ok(response) => {
                    let status = response.status();
                    if status.is_server_error() {
                        self.failed_on(pool, endpoint);
                    } else {
                        pool.endpoints.succeeded(endpoint);
                    }
                    if !pool.retry.retries_status(status) {
                        return Ok(self.response(response, place));
                    }
                    (Some(Failure::Status), Ok(response))
                }
                Err(failed) => {
                    self.stats.failed(&failed.error, failed.connecting);
                    if failed.endpoint_fault {
                        self.failed_on(pool, endpoint);
                    }
                    (failed.retry, Err(failed.error))
                }
            };
            let again = failure.is_some_and(|f| pool.retry.allows(f, &method, endpoints))
                && attempt < retries
                && bodies.can_resend();
            let budget = again.then(|| pool.retry.try_retry());
            match budget {
                Some(Some(retry)) => {
                    self.stats.retried();
                    if let Err(error) = &outcome {
                        tracing::debug!("{error}; trying again");
                    }
                    retrying = Some(retry);
                    tried = Some(index);
                    attempt += 1;
                }
                Some(None) => {
                    self.stats.retry_refused();
                    return outcome.map(|response| self.response(response, place));
                }
                None => return outcome.map(|response| self.response(response, place)),
            }
        }
    }

    /// One attempt: the request sent, and the response head within `timeout`.
    async fn exchange(
        &self,
        transport: &Transport,
        endpoint: &Endpoint,
        request: Request<Outbound>,
        progress: Option<Arc<Progress>>,
    ) -> Result<Response<Received>, Failed> {
        // Pinned here, once: handed by value to the timer, it would be held twice in this future's state.
        let sent = std::pin::pin!(transport.send(&endpoint.idle, request));
        let answered = match progress {
            None => tokio::time::timeout(self.timeout, sent).await.ok(),
            Some(progress) => self.within_timeout(sent, &progress).await,
        };
        match answered {
            Some(Ok(response)) => Ok(response),
            None => Err(Failed {
                error: UpstreamError::Timeout {
                    upstream: self.name.clone(),
                    endpoint: endpoint.label.clone(),
                },
                connecting: false,
                endpoint_fault: true,
                retry: None,
            }),
            Some(Err(e)) => Err(self.classify(&e, &endpoint.label)),
        }
    }

    /// Waits for `sent` until the upstream has had `timeout` of its own time: a wake-up while the request
    /// body is waiting for the client, or sooner than `timeout` after its last progress, waits on.
    async fn within_timeout<F: Future>(
        &self,
        mut sent: Pin<&mut F>,
        progress: &Progress,
    ) -> Option<F::Output> {
        let mut from = progress.start;
        loop {
            // A deadline past `Instant`'s range never comes: the config holds `timeout` to a year.
            let Some(deadline) = from.checked_add(self.timeout) else {
                return Some(sent.await);
            };
            tokio::select! {
                output = &mut sent => return Some(output),
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    from = if progress.waiting_for_client() { now } else { progress.last() };
                    if from.checked_add(self.timeout).is_some_and(|next| next <= now) {
                        return None;
                    }
                }
            }
        }
    }

    fn classify(&self, err: &SendError, endpoint: &str) -> Failed {
        let client_fault = |error| Failed {
            error,
            connecting: false,
            endpoint_fault: false,
            retry: None,
        };
        if fault::caused_by::<LengthLimitError>(err) {
            return client_fault(UpstreamError::BodyTooLarge);
        }
        if fault::caused_by::<ClientBodyTimeout>(err) {
            return client_fault(UpstreamError::ClientBodyTimeout(fault::error_chain(err)));
        }
        if fault::caused_by::<ClientBodyError>(err) {
            return client_fault(UpstreamError::ClientBody(fault::error_chain(err)));
        }
        let connecting = err.is_connect();
        let upstream = self.name.clone();
        let endpoint = endpoint.to_owned();
        let timed_out = fault::causes(err).any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        let error = if timed_out {
            UpstreamError::Timeout { upstream, endpoint }
        } else if fault::caused_by::<HandshakeError>(err) {
            let reason = fault::causes(err)
                .find(|e| e.is::<HandshakeError>())
                .map_or_else(String::new, ToString::to_string);
            UpstreamError::Tls {
                upstream,
                endpoint,
                reason,
            }
        } else {
            UpstreamError::Unreachable {
                upstream,
                endpoint,
                reason: fault::error_chain(err),
            }
        };
        // Nothing was sent when connecting failed, even when it timed out; a response that did not come in
        // time is not retried (see `retry`).
        let retry = match (&error, connecting) {
            (_, true) => Some(Failure::Connect),
            (UpstreamError::Timeout { .. }, false) => None,
            (_, false) => Some(Failure::Reset),
        };
        Failed {
            error,
            connecting,
            endpoint_fault: true,
            retry,
        }
    }

    /// Counts a failure against the endpoint, and says so when it takes the endpoint out.
    fn failed_on(&self, pool: &Pool, endpoint: &Endpoint) {
        if let Verdict::Ejected(length) = pool.endpoints.failed(endpoint) {
            self.stats.ejected();
            tracing::warn!(
                "upstream \"{}\": endpoint {} is out for {length:?} after failing every request of the \
                 last few (eject_after)",
                self.name,
                endpoint.label
            );
        }
    }

    /// The response on its way to the client, holding the endpoint's `place` (if it has `max_requests`)
    /// until its body is done with: over HTTP/1.1 the connection is busy until then.
    fn response(&self, response: Response<Received>, place: Option<Place>) -> Response<ProxyBody> {
        response.map(|body| {
            ProxyBody::upstream(
                body,
                self.read_timeout,
                self.shared_name.clone(),
                place,
                tracing::Span::current(),
            )
        })
    }

    fn busy(&self, endpoint: &Endpoint) -> UpstreamError {
        UpstreamError::Busy {
            upstream: self.name.clone(),
            endpoint: endpoint.label.clone(),
            waited: self.queue_timeout,
        }
    }
}

/// A failed attempt, and what it means for the endpoint and for a retry.
struct Failed {
    error: UpstreamError,
    /// It failed before a connection was made.
    connecting: bool,
    /// The endpoint failed, not the client's body.
    endpoint_fault: bool,
    /// How it may be retried; `None` when it may not.
    retry: Option<Failure>,
}

impl Pool {
    fn new(
        config: &UpstreamConfig,
        resolve: &dyn Fn(&Path) -> PathBuf,
        stats: Arc<UpstreamStats>,
    ) -> Result<Pool, BuildError> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        // `https://` goes through the TLS connector, which needs the TCP one to accept it.
        tcp.enforce_http(false);
        let mut ca_expires = None;
        let tls = if config.is_tls() {
            let client_cert = match (&config.client_cert, &config.client_key) {
                (Some(cert), Some(key)) => Some(
                    crate::tls::certified_key(&resolve(cert), &resolve(key), &tls::provider())
                        .map_err(|(which, e)| BuildError {
                            field: if which == "cert" {
                                "client_cert"
                            } else {
                                "client_key"
                            },
                            message: e.to_string(),
                        })?,
                ),
                // The config's validation refuses one without the other.
                _ => None,
            };
            let settings = TlsSettings {
                ca_file: config.ca_file.as_deref().map(resolve),
                client_cert,
                skip_verify: config.tls_insecure_skip_verify,
                server_name: config.server_name.as_ref().map(|n| n.0.clone()),
                http2: config.http2,
            };
            let client_tls = tls::client_config(&settings).map_err(|e| BuildError {
                field: if settings.ca_file.is_some() {
                    "ca_file"
                } else {
                    "url"
                },
                message: e.to_string(),
            })?;
            ca_expires = client_tls.ca_expires;
            Some((client_tls.config, settings.server_name))
        } else {
            None
        };
        let connector = Connector::new(
            CountingConnector::new(tcp, stats.clone()),
            tls,
            config.connect_timeout,
        );
        let transport = if config.http2 {
            Transport::Http2(Box::new(
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_timer(TokioTimer::new())
                    .http2_only(true)
                    .build(connector),
            ))
        } else {
            Transport::Http1(h1::Client::new(connector))
        };
        let endpoints = config
            .endpoints()
            .iter()
            .map(|url| {
                Endpoint::new(
                    url,
                    config.preserve_host,
                    config.max_requests,
                    stats.lines(),
                )
            })
            .collect();
        let ejection = Ejection {
            after: config.eject_after,
            first: config.eject_for,
            max: config.eject_for_max,
        };
        let endpoints = Arc::new(Endpoints::new(
            endpoints,
            Balancer::new(config.balance),
            ejection,
        ));
        let reaper = match transport {
            Transport::Http1(_) => {
                h1::reaper(endpoints.list().iter().map(|e| e.idle.clone()).collect())
            }
            Transport::Http2(_) => None,
        };
        Ok(Pool {
            endpoints,
            transport,
            _reaper: reaper,
            retry: RetryPolicy::new(config),
            hash_key: config.hash_on.as_ref().and_then(HashKey::new),
            check: config.health_check.clone(),
            checks: None,
            ca_expires,
        })
    }

    /// The hash of the request's `hash_on` value; `None` when hashing is off or the request has none.
    fn hash_of(&self, out: &Outgoing<'_>) -> Option<u64> {
        let bytes = match self.hash_key.as_ref()? {
            HashKey::Header(name) => out.headers.get(name)?.as_bytes(),
            HashKey::Context(key) => out.context?.get(key)?.as_bytes(),
        };
        Some(balance::hash(bytes))
    }
}

/// The request body across the attempts of one request.
enum Bodies {
    /// No body: every attempt sends none.
    Empty(Option<ProxyBody>),
    /// A body for one attempt only: no retries are configured.
    Once(Option<ProxyBody>),
    /// A body that a failed attempt leaves here if it never sent a byte of it.
    Held(Held),
}

impl Bodies {
    fn new(body: ProxyBody, retries: bool) -> Bodies {
        if body.is_end_stream() {
            Bodies::Empty(Some(body))
        } else if retries {
            Bodies::Held(Arc::new(Mutex::new(Some(body))))
        } else {
            Bodies::Once(Some(body))
        }
    }

    /// The body of the next attempt, and its progress; `None` when it is gone.
    fn next(&mut self) -> Option<(Outbound, Option<Arc<Progress>>)> {
        match self {
            Bodies::Empty(body) => {
                Some(Outbound::new(body.take().unwrap_or_else(ProxyBody::empty)))
            }
            Bodies::Once(body) => body.take().map(Outbound::new),
            Bodies::Held(held) => Some(Outbound::held(held.clone())),
        }
    }

    /// True when another attempt could send the whole body again.
    fn can_resend(&self) -> bool {
        match self {
            Bodies::Empty(_) => true,
            Bodies::Once(body) => body.is_some(),
            Bodies::Held(held) => outbound::is_held(held),
        }
    }
}

/// `base` + `path` + `?query`, the target sent to an endpoint.
fn path_and_query(base: &str, path: &str, query: Option<&str>) -> String {
    // Exactly its length: the target's bytes then take this allocation as it is, with no second one.
    let length = base.len() + path.len() + query.map_or(0, |q| q.len() + 1);
    let mut target = String::with_capacity(length);
    target.push_str(base);
    target.push_str(path);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    target
}

/// One attempt's request to `endpoint`.
fn request(
    endpoint: &Endpoint,
    method: &Method,
    path: &str,
    query: Option<&str>,
    mut headers: HeaderMap,
    body: Outbound,
) -> Result<Request<Outbound>, UpstreamError> {
    let uri = Uri::builder()
        .scheme(endpoint.url.scheme.clone())
        .authority(endpoint.url.authority.clone())
        .path_and_query(path_and_query(&endpoint.url.base_path, path, query))
        .build()
        .map_err(|e| UpstreamError::Target(e.to_string()))?;
    if let Some(host) = &endpoint.host {
        headers.insert(header::HOST, host.clone());
    }
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `X-Forwarded-For` gets `hop` appended after every value the client sent (joined into one line), so the
/// last address is the one Weir saw; `X-Forwarded-Proto` and `X-Forwarded-Host` say what the client
/// asked for, so the upstream can build public URLs. With `rfc7239`, `Forwarded` gets an element saying
/// the same, appended as `X-Forwarded-For` is: what the client sent is kept, and only the last element is
/// Weir's word.
fn add_forwarded(headers: &mut HeaderMap, hop: IpAddr, scheme: &'static str, rfc7239: bool) {
    let mut text = [0u8; 48];
    let written = address_text(hop, &mut text);
    append_hop(headers, X_FORWARDED_FOR, &text[..written]);
    if rfc7239 {
        let element = forwarded_element(&text[..written], headers.get(header::HOST), scheme);
        append_hop(headers, header::FORWARDED, &element);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// `ip` as text in `out`; its length is returned. An IPv4 address, as nearly every client's is, is written
/// digit by digit: through the formatting machinery it cost as much as the rest of the headers added here.
fn address_text(ip: IpAddr, out: &mut [u8; 48]) -> usize {
    let IpAddr::V4(v4) = ip else {
        // The longest address text is 45 bytes (an IPv4-mapped IPv6 address); writing it here cannot fail.
        let mut cursor = std::io::Cursor::new(&mut out[..]);
        let _ = write!(cursor, "{ip}");
        return usize::try_from(cursor.position()).unwrap_or(0);
    };
    let mut at = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out[at] = b'.';
            at += 1;
        }
        if octet >= 100 {
            out[at] = b'0' + octet / 100;
            at += 1;
        }
        if octet >= 10 {
            out[at] = b'0' + octet / 10 % 10;
            at += 1;
        }
        out[at] = b'0' + octet % 10;
        at += 1;
    }
    at
}

// Names made once: one spelled as a `&str` at each insert is copied into a new allocation, and copied
// again when the headers are cloned for a retry.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `hop` appended after every value of `name` already there, all on one line, in one allocation of
/// exactly its length, which the header takes as it is.
fn append_hop(headers: &mut HeaderMap, name: HeaderName, hop: &[u8]) {
    let previous = headers.get_all(&name);
    let length = previous.iter().map(|v| v.len() + 2).sum::<usize>() + hop.len();
    let mut joined: Vec<u8> = Vec::with_capacity(length);
    for value in previous {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(hop);
    // Every part is a valid header value, so the join is one; were it not, no client value may pass.
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        Ok(value) => headers.insert(name, value),
        Err(_) => headers.remove(name),
    };
}

/// RFC 7239 §4's `for=…;host=…;proto=…`. The node is the address alone, as in `X-Forwarded-For`: a
/// client's port tells the upstream nothing it can use. `address` is [`address_text`]'s.
fn forwarded_element(address: &[u8], host: Option<&HeaderValue>, scheme: &str) -> Vec<u8> {
    let mut element = b"for=".to_vec();
    if !address.contains(&b':') {
        element.extend_from_slice(address);
    } else {
        // §6: an IPv6 node is bracketed, and brackets and colons are not token characters.
        element.extend_from_slice(b"\"[");
        element.extend_from_slice(address);
        element.extend_from_slice(b"]\"");
    }
    if let Some(host) = host {
        element.extend_from_slice(b";host=");
        push_value(&mut element, host.as_bytes());
    }
    element.extend_from_slice(b";proto=");
    element.extend_from_slice(scheme.as_bytes());
    element
}

/// A `value` of RFC 7239 §4: a token as it is, anything else (a Host with a port, an IPv6 literal) as a
/// quoted-string. A header value's bytes are all qdtext or may follow a backslash, so any value can be sent.
fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    if !value.is_empty() && value.iter().copied().all(is_tchar) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &byte in value {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

/// RFC 9110 §5.6.2.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Every upstream of the config, by name.
pub struct Upstreams(BTreeMap<String, Arc<Upstream>>);

impl Upstreams {
    pub fn new(upstreams: BTreeMap<String, Arc<Upstream>>) -> Self {
        Upstreams(upstreams)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.0.get(name)
    }

    /// Every upstream, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Upstream>)> {
        self.0.iter()
    }

    pub fn names(&self) -> String {
        self.0
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(ip: &str, host: &str) -> String {
        let host = HeaderValue::from_str(host).expect("a header value");
        let mut text = [0u8; 48];
        let written = address_text(ip.parse().expect("an address"), &mut text);
        String::from_utf8(forwarded_element(&text[..written], Some(&host), "https")).expect("ASCII")
    }

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        let addresses = [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "192.168.1.20",
            "::1",
            "::ffff:255.255.255.255",
            "2001:db8::8a2e:370:7334",
        ];
        for address in addresses {
            let ip: IpAddr = address.parse().expect("an address");
            let mut text = [0u8; 48];
            let written = address_text(ip, &mut text);
            assert_eq!(&text[..written], ip.to_string().as_bytes(), "{address}");
        }
    }

    /// Each request's send is made, moved into a box and freed: a layer that holds the request or the
    /// attempt twice shows here first (2.5 KB; it was 3.5 while `exchange` and its timer each held the
    /// attempt).
    #[test]
    fn a_send_is_a_small_future() {
        let config: UpstreamConfig =
            toml::from_str("url = \"http://127.0.0.1:1\"").expect("config");
        let upstream =
            Upstream::new("u", &config, &Path::to_owned, Arc::default()).expect("an upstream");
        let out = Outgoing {
            method: Method::GET,
            path: "/",
            query: None,
            headers: HeaderMap::new(),
            hop: IpAddr::from([127, 0, 0, 1]),
            context: None,
            scheme: "http",
        };
        let sending = upstream.send(out, ProxyBody::empty());
        let size = std::mem::size_of_val(&sending);
        assert!(size <= 2816, "Upstream::send's future is {size} bytes");
    }

    #[test]
    fn forwarded_values_are_tokens_or_quoted_strings() {
        assert_eq!(
            element("192.0.2.7", "a.example"),
            "for=192.0.2.7;host=a.example;proto=https"
        );
        assert_eq!(
            element("2001:db8::7", "a.example:8443"),
            r#"for="[2001:db8::7]";host="a.example:8443";proto=https"#
        );
        assert_eq!(
            element("192.0.2.7", r#"a"b\c"#),
            r#"for=192.0.2.7;host="a\"b\\c";proto=https"#
        );
    }
}
