//! The `http-client` interface: outbound HTTP from a plugin, only to the hosts its route entry grants.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::HttpGrant;
use crate::plugin::bindings::weir::plugin::http_client::{Host, IncomingResponse, OutgoingRequest};
use crate::sandbox::HostState;

/// Responses are read whole into the plugin's memory; a JWKS or a token endpoint answer is a few KiB.
const MAX_RESPONSE_BODY: usize = 1 << 20;
/// Used when the plugin asks for no timeout, and the most it can ask for.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    })
}

impl Host for HostState {
    async fn send(
        &mut self,
        request: OutgoingRequest,
    ) -> wasmtime::Result<Result<IncomingResponse, String>> {
        let result = send(&self.http_grants, request).await;
        self.waited_on_host = true;
        Ok(result)
    }
}

/// True when some grant covers the URL's host and port.
fn granted(grants: &[HttpGrant], uri: &Uri) -> bool {
    grants.iter().any(|grant| grant.allows(uri))
}

async fn send(grants: &[HttpGrant], request: OutgoingRequest) -> Result<IncomingResponse, String> {
    let uri: Uri = request
        .url
        .parse()
        .map_err(|e| format!("bad URL {:?}: {e}", request.url))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return Err(format!(
            "bad URL {:?}: only http:// is supported",
            request.url
        ));
    }
    if !granted(grants, &uri) {
        return Err(format!(
            "{} is not granted to this plugin (add it to the route's `grants.http`)",
            uri.authority().map_or("", |a| a.as_str())
        ));
    }
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("bad method {:?}", request.method))?;
    let mut outgoing = Request::new(Full::new(Bytes::from(request.body)));
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = uri.clone();
    for (name, value) in request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let value =
            HeaderValue::from_bytes(&value).map_err(|_| format!("bad value for header {name}"))?;
        outgoing.headers_mut().append(name, value);
    }
    let timeout = match request.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms.into()).min(MAX_TIMEOUT),
    };
    let exchange = async {
        let response = client()
            .request(outgoing)
            .await
            .map_err(|e| format!("cannot reach {uri}: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the response of {uri}: {e}"))?
            .to_bytes();
        Ok(IncomingResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{uri} timed out after {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_a_host_or_a_host_and_port() {
        let grants: Vec<HttpGrant> = ["auth.example.com", "127.0.0.1:8123", "[::1]:8080"]
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
        let ok = |url: &str| granted(&grants, &url.parse().unwrap());
        assert!(ok("http://auth.example.com/jwks"));
        assert!(ok("http://AUTH.example.com:9000/jwks"));
        assert!(ok("http://127.0.0.1:8123/"));
        assert!(!ok("http://127.0.0.1:8124/"));
        assert!(!ok("http://evil.example.com/"));
        assert!(!ok("http://auth.example.com.evil.com/"));
        assert!(ok("http://[0:0::1]:8080/"));
        assert!(!ok("http://[::1]/"));
        assert!(!ok("http://127.0.0.1/"));
    }
}
