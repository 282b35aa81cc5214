//! One request/response exchange as plugins see it, and the host's rules for what a plugin may set.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::body::ProxyBody;
use crate::context::Context;
use crate::normalise::PathPolicy;
use crate::upstream::{Upstream, Upstreams};

/// The request head being proxied, the per-request context, and, in the response phase, the response head.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub original_uri: Uri,
    pub headers: HeaderMap,
    /// What plugins may still add to the request's headers.
    pub header_budget: HeaderBudget,
    pub client_ip: IpAddr,
    pub upstream: Arc<Upstream>,
    pub upstreams: Arc<Upstreams>,
    /// The server's normalisation rules, which a path a plugin sets goes through too.
    pub path_policy: PathPolicy,
    pub context: Context,
    /// Set once the response head is known; from then on the request is read-only.
    pub response: Option<ResponseHead>,
    /// Set by the hook running now when it leaves the body of this phase to others.
    pub skip_body: bool,
    /// The request body, during the request phase: a plugin may read it whole (`read-body`).
    pub body: Option<ProxyBody>,
    /// How the client reached Weir: `http` or `https`.
    pub scheme: &'static str,
}

#[derive(Clone)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// What plugins may still add to the response's headers.
    pub header_budget: HeaderBudget,
}

/// What plugins may make one exchange hold, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct PluginBounds {
    pub headers: usize,
    pub header_bytes: usize,
    pub context_keys: usize,
    pub context_bytes: usize,
}

impl PluginBounds {
    /// A fresh budget for one message's headers.
    pub fn headers(&self) -> HeaderBudget {
        HeaderBudget {
            headers: self.headers,
            bytes: self.header_bytes,
        }
    }

    /// An empty context for one request.
    pub fn context(&self) -> Context {
        Context::new(self.context_bytes, self.context_keys)
    }
}

/// What plugins together may add to one message's headers, from `[server]`'s `plugin_headers` and
/// `plugin_header_bytes`. Whatever a plugin sets counts, replaced values included: a bound on the host
/// memory plugins can make one message take, not an exact size.
#[derive(Debug, Clone, Copy)]
pub struct HeaderBudget {
    pub headers: usize,
    pub bytes: usize,
}

impl HeaderBudget {
    /// Takes one header of `name` and `value` out of the budget, or says why not.
    pub fn spend(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), String> {
        let bytes = name.as_str().len() + value.len();
        if self.headers == 0 {
            return Err(
                "plugins have added as many headers to this message as the server allows \
                        (plugin_headers)"
                    .into(),
            );
        }
        if bytes > self.bytes {
            return Err(format!(
                "header {name} ({bytes} bytes) is over what plugins may still add to this message \
                 ({} bytes, plugin_header_bytes)",
                self.bytes
            ));
        }
        self.headers -= 1;
        self.bytes -= bytes;
        Ok(())
    }
}

/// What a hook call could change in an exchange, kept before a call whose failure must leave no trace
/// (`on_error = "skip"`).
pub struct Snapshot {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    header_budget: HeaderBudget,
    upstream: Arc<Upstream>,
    context: Context,
    response: Option<ResponseHead>,
}

impl Exchange {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            header_budget: self.header_budget,
            upstream: self.upstream.clone(),
            context: self.context.clone(),
            response: self.response.clone(),
        }
    }

    /// Undoes everything since `snapshot`.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.path = snapshot.path;
        self.query = snapshot.query;
        self.headers = snapshot.headers;
        self.header_budget = snapshot.header_budget;
        self.upstream = snapshot.upstream;
        self.context = snapshot.context;
        self.response = snapshot.response;
    }
}

/// Headers that describe one connection (RFC 9110 §7.6.1): never forwarded, never set by a plugin.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Credentials for a proxy on the way: stripped from what the client and the upstream send; a plugin may
/// still set them.
static PROXY_CREDENTIALS: [HeaderName; 2] =
    [header::PROXY_AUTHENTICATE, header::PROXY_AUTHORIZATION];

/// Parses a header name a plugin wants to set, refusing invalid and host-owned names.
pub fn settable_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name {name:?}"))?;
    // `content-length` must match the body the host sends, so the host owns it too.
    if HOP_BY_HOP.contains(&parsed) || parsed == header::CONTENT_LENGTH {
        return Err(format!("header {parsed} is managed by the proxy"));
    }
    Ok(parsed)
}

/// Parses a header value a plugin wants to set: no CR, LF or NUL (no header injection).
pub fn settable_value(value: &[u8]) -> Result<HeaderValue, String> {
    HeaderValue::from_bytes(value).map_err(|_| {
        format!(
            "invalid header value {:?}: control characters are not allowed",
            String::from_utf8_lossy(value)
        )
    })
}

/// A status a plugin may give: a final status (200–599).
pub fn settable_status(status: u16) -> Result<StatusCode, String> {
    match StatusCode::from_u16(status) {
        Ok(s) if (200..600).contains(&status) => Ok(s),
        _ => Err(format!("invalid status {status}: use 200 to 599")),
    }
}

/// Parses a header name to look up; lookups of invalid names simply find nothing.
pub fn lookup_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).ok()
}

/// True if a comma-separated header (`Connection`, `Upgrade`, `TE`) lists `token`, in any case.
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers of a message, including those its `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each name, which compares without hashing, instead of a
    // hashed removal of each of nine names from every message.
    let stripped = || HOP_BY_HOP.iter().chain(&PROXY_CREDENTIALS);
    if !headers.keys().any(|name| stripped().any(|s| s == name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in stripped() {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_injection_and_host_owned_names() {
        assert!(settable_value(b"a\r\nInjected: 1").is_err());
        assert!(settable_value(b"ok \xff bytes").is_ok());
        assert!(settable_name("bad name").is_err());
        assert!(settable_name("Transfer-Encoding").is_err());
        assert_eq!(settable_name("X-Api-Key").unwrap().as_str(), "x-api-key");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-length", "x-keep"]);
        // Without a `Connection` header, each kind of name alone is still found.
        for name in [
            "keep-alive",
            "te",
            "proxy-authorization",
            "proxy-authenticate",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("1"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["x-keep"], "{name}");
        }
    }
}
