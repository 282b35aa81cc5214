//! Upstreams: one pooled keep-alive client each, the forwarding headers, and the mapping of failures to
//! "unreachable" and "timed out".

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use http_body_util::LengthLimitError;

use crate::body::{ClientBodyError, ProxyBody};
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
    /// The normalised path and query did not make a URI: a bug, reported instead of a panic.
    #[error("cannot form the upstream target: {0}")]
    Target(String),
}

pub struct Upstream {
    pub name: String,
    url: UpstreamUrl,
    timeout: Duration,
    /// The `Host` sent upstream, unless `preserve_host` keeps the client's.
    host: Option<HeaderValue>,
    client: Client<HttpConnector, ProxyBody>,
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
    pub fn new(name: &str, config: &UpstreamConfig) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Upstream {
            name: name.to_owned(),
            url: config.url.clone(),
            timeout: config.timeout,
            host: (!config.preserve_host).then(|| {
                HeaderValue::from_str(config.url.authority.as_str())
                    .expect("an authority's characters are valid in a header value")
            }),
            client,
        }
    }

    /// Sends the request and waits for the response head, within the upstream's `timeout`.
    pub async fn send(
        &self,
        out: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let request = self.request(out, body)?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
            }),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn request(
        &self,
        out: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, UpstreamError> {
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

    fn classify(&self, err: &hyper_util::client::legacy::Error) -> UpstreamError {
        if fault::caused_by::<LengthLimitError>(err) {
            return UpstreamError::BodyTooLarge;
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
