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

use crate::body::{self, ProxyBody};
use crate::config::{UpstreamConfig, UpstreamUrl};

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
}

pub struct Upstream {
    pub name: String,
    url: UpstreamUrl,
    timeout: Duration,
    preserve_host: bool,
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
            preserve_host: config.preserve_host,
            client,
        }
    }

    /// Sends the request and waits for the response head, within the upstream's `timeout`.
    pub async fn send(
        &self,
        out: Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let request = self.request(out, body);
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
            }),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn request(&self, out: Outgoing<'_>, body: ProxyBody) -> Request<ProxyBody> {
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
            .expect("the path and query were validated when they were set");

        let mut headers = out.headers;
        add_forwarded(&mut headers, out.client_ip);
        if !self.preserve_host {
            let authority = HeaderValue::from_str(self.url.authority.as_str())
                .expect("an authority is a valid value");
            headers.insert(header::HOST, authority);
        }
        let mut request = Request::new(body);
        *request.method_mut() = out.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    }

    fn classify(&self, err: &hyper_util::client::legacy::Error) -> UpstreamError {
        if body::is_too_large(err) {
            return UpstreamError::BodyTooLarge;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut reason = String::new();
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return UpstreamError::Timeout {
                    upstream: self.name.clone(),
                };
            }
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&e.to_string());
            cause = e.source();
        }
        UpstreamError::Unreachable {
            upstream: self.name.clone(),
            reason,
        }
    }
}

/// `X-Forwarded-For` gets the client appended; `X-Forwarded-Proto` and `X-Forwarded-Host` say what the
/// client asked for, so the upstream can build public URLs.
fn add_forwarded(headers: &mut HeaderMap, client_ip: IpAddr) {
    const XFF: &str = "x-forwarded-for";
    let ip = client_ip.to_string();
    let forwarded_for = match headers.get(XFF).and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {ip}"),
        None => ip,
    };
    headers.insert(
        XFF,
        HeaderValue::from_str(&forwarded_for).expect("IP addresses are valid values"),
    );
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
