//! Upstreams: one pooled keep-alive client each, the forwarding headers, and the mapping of failures to
//! "unreachable" and "timed out".

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use http_body_util::LengthLimitError;

use crate::body::{BoxError, ClientBodyError, ClientBodyTimeout, ProxyBody};
use crate::config::{UpstreamConfig, UpstreamUrl};
use crate::fault;

/// Idle upstream connections are kept this long: below the 60–75 s keep-alive of common servers, so Weir
/// closes first and never sends on a connection the upstream is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach upstream \"{upstream}\": {reason}")]
    Unreachable { upstream: String, reason: String },
    #[error("upstream \"{upstream}\" timed out")]
    Timeout { upstream: String },
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

pub struct Upstream {
    pub name: String,
    /// The name again, shared by every response body that may need to say whose it was.
    shared_name: Arc<str>,
    timeout: Duration,
    read_timeout: Duration,
    /// Where requests go; `None` for an upstream the config disabled.
    target: Option<Target>,
}

/// An enabled upstream's address and its connection pool.
struct Target {
    url: UpstreamUrl,
    /// The `Host` sent upstream, unless `preserve_host` keeps the client's.
    host: Option<HeaderValue>,
    client: Client<HttpConnector, Outbound>,
}

/// The request line and headers to forward.
pub struct Outgoing<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
    pub client_ip: IpAddr,
}

impl Upstream {
    /// An upstream without a URL is disabled whatever `disabled` says: the config's validation refuses one
    /// that is not, so such a value is never served.
    pub fn new(name: &str, config: &UpstreamConfig) -> Upstream {
        let target = match (&config.url, config.disabled) {
            (Some(url), false) => Some(Target::new(url, config)),
            _ => None,
        };
        Upstream {
            name: name.to_owned(),
            shared_name: name.into(),
            timeout: config.timeout,
            read_timeout: config.read_timeout,
            target,
        }
    }

    /// Sends the request and waits for the response head, within the upstream's `timeout`. The response
    /// body comes under the upstream's `read_timeout`.
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
        let Some(target) = &self.target else {
            return Err(UpstreamError::Disabled {
                upstream: self.name.clone(),
            });
        };
        // A request without a body has nothing to wait for but the upstream: no tracking, no allocation.
        let progress = (!body.is_end_stream()).then(|| Arc::new(Progress::new()));
        let request = target.request(
            out,
            Outbound {
                body,
                progress: progress.clone(),
            },
        )?;
        let sent = target.client.request(request);
        let answered = match progress {
            None => tokio::time::timeout(self.timeout, sent).await.ok(),
            Some(progress) => self.within_timeout(sent, &progress).await,
        };
        match answered {
            None => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
            }),
            Some(Ok(response)) => Ok(response.map(|body| {
                ProxyBody::upstream(body, self.read_timeout, self.shared_name.clone())
            })),
            Some(Err(e)) => Err(self.classify(&e)),
        }
    }

    /// Waits for `sent` until the upstream has had `timeout` of its own time: a wake-up while the request
    /// body is waiting for the client, or sooner than `timeout` after its last progress, waits on.
    async fn within_timeout<F: Future>(&self, sent: F, progress: &Progress) -> Option<F::Output> {
        let mut sent = std::pin::pin!(sent);
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

    fn classify(&self, err: &hyper_util::client::legacy::Error) -> UpstreamError {
        if fault::caused_by::<LengthLimitError>(err) {
            return UpstreamError::BodyTooLarge;
        }
        if fault::caused_by::<ClientBodyTimeout>(err) {
            return UpstreamError::ClientBodyTimeout(fault::error_chain(err));
        }
        if fault::caused_by::<ClientBodyError>(err) {
            return UpstreamError::ClientBody(fault::error_chain(err));
        }
        let timed_out = fault::causes(err).any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        if timed_out {
            return UpstreamError::Timeout {
                upstream: self.name.clone(),
            };
        }
        UpstreamError::Unreachable {
            upstream: self.name.clone(),
            reason: fault::error_chain(err),
        }
    }
}

impl Target {
    fn new(url: &UpstreamUrl, config: &UpstreamConfig) -> Target {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Target {
            url: url.clone(),
            host: (!config.preserve_host).then(|| {
                HeaderValue::from_str(url.authority.as_str())
                    .expect("an authority's characters are valid in a header value")
            }),
            client,
        }
    }

    fn request(
        &self,
        out: Outgoing<'_>,
        body: Outbound,
    ) -> Result<Request<Outbound>, UpstreamError> {
        let mut path_and_query =
            String::with_capacity(self.url.base_path.len() + out.path.len() + 32);
        path_and_query.push_str(&self.url.base_path);
        path_and_query.push_str(out.path);
        if let Some(q) = out.query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let uri = Uri::builder()
            .scheme(self.url.scheme.clone())
            .authority(self.url.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| UpstreamError::Target(e.to_string()))?;

        let mut headers = out.headers;
        add_forwarded(&mut headers, out.client_ip);
        if let Some(host) = &self.host {
            headers.insert(header::HOST, host.clone());
        }
        let mut request = Request::new(body);
        *request.method_mut() = out.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

/// Where a request body being sent stands, for the upstream's `timeout`: when it last handed bytes on, and
/// whether it is now waiting for the client.
struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last progress.
    last: AtomicU64,
    waiting: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    fn waiting_for_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn wait(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }

    fn advance(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }
}

/// The request body as hyper sends it, reporting its progress when the request has a body.
struct Outbound {
    body: ProxyBody,
    progress: Option<Arc<Progress>>,
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(progress) = &this.progress {
            match polled {
                Poll::Pending => progress.wait(),
                Poll::Ready(_) => progress.advance(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `X-Forwarded-For` gets the client appended after every value the client sent (joined into one line),
/// so the last address is the one Weir saw; `X-Forwarded-Proto` and `X-Forwarded-Host` say what the client
/// asked for, so the upstream can build public URLs.
fn add_forwarded(headers: &mut HeaderMap, client_ip: IpAddr) {
    const XFF: &str = "x-forwarded-for";
    let ip = client_ip.to_string();
    let mut forwarded_for: Vec<u8> = Vec::with_capacity(ip.len());
    for previous in headers.get_all(XFF) {
        forwarded_for.extend_from_slice(previous.as_bytes());
        forwarded_for.extend_from_slice(b", ");
    }
    forwarded_for.extend_from_slice(ip.as_bytes());
    // Every part is a valid header value, so the join is one; were it not, no client value may pass.
    match HeaderValue::from_bytes(&forwarded_for) {
        Ok(value) => headers.insert(XFF, value),
        Err(_) => headers.remove(XFF),
    };
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert("x-forwarded-host", host);
    }
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

    pub fn names(&self) -> String {
        self.0
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
