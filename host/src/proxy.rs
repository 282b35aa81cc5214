//! The running configuration, one immutable value (routes, upstreams, plugin pools) that the server reads
//! through an atomic pointer, and the handling of one request against it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::chain;
use crate::exchange::{PluginBounds, strip_hop_by_hop};
use crate::fault::{Fault, error_response};
use crate::inbound::{self, Admitted};
use crate::plugin::PluginSlot;
use crate::routes::RouteMatch;
use crate::upstream::{Outgoing, Upstream, Upstreams};

pub struct Proxy {
    pub routes: Vec<Route>,
    pub upstreams: Arc<Upstreams>,
    pub access_log: bool,
    pub inbound: inbound::Rules,
    /// How long a client may send nothing of a request body it has begun.
    pub client_body_timeout: Duration,
    /// What plugins may make one exchange hold.
    pub plugin_bounds: PluginBounds,
}

pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub upstream: Arc<Upstream>,
    pub chain: Vec<Arc<PluginSlot>>,
    pub max_request_body: Option<u64>,
}

/// What the access log says of a request besides its request line and status.
#[derive(Default)]
pub struct Trace {
    pub route: Option<String>,
    pub upstream: Option<String>,
}

impl Proxy {
    /// Handles one request and writes its access-log line.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = self.access_log.then(Instant::now);
        let line = started.map(|_| (request.method().clone(), request.uri().clone()));
        let mut trace = Trace::default();
        let response = self.dispatch(request, client.ip(), &mut trace).await;
        if let (Some(started), Some((method, uri))) = (started, line) {
            tracing::info!(
                target: "weir::access",
                client = %client.ip(),
                route = trace.route.as_deref().unwrap_or("-"),
                upstream = trace.upstream.as_deref().unwrap_or("-"),
                // Time to the response head: the body may stream long after.
                head_us = started.elapsed().as_micros() as u64,
                "{method} {uri} {}",
                response.status().as_u16()
            );
        }
        response
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        client_ip: IpAddr,
        trace: &mut Trace,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let original_uri = match inbound::admit(&mut parts, self.inbound) {
            Ok(Admitted::Forward { original }) => original,
            Ok(Admitted::ServerOptions) => return server_options(),
            Err(refusal) => return error_response(&Fault::Client(&refusal)),
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let Some(route) = self
            .routes
            .iter()
            .find(|r| r.matcher.matches(&parts.method, host, parts.uri.path()))
        else {
            return error_response(&Fault::NoRoute);
        };
        trace.route = Some(route.name.clone());
        if let Some(limit) = route.max_request_body
            && declared_length(&parts.headers).is_some_and(|len| len > limit)
        {
            return error_response(&Fault::BodyTooLarge);
        }

        strip_hop_by_hop(&mut parts.headers);
        let body = ProxyBody::request(body, route.max_request_body, self.client_body_timeout);
        if !route.chain.is_empty() {
            let original_uri = original_uri.unwrap_or_else(|| parts.uri.clone());
            return chain::run(self, route, parts, original_uri, body, client_ip, trace).await;
        }

        // An empty chain: no exchange, no copies, the body streams straight through.
        trace.upstream = Some(route.upstream.name.clone());
        let out = Outgoing {
            method: parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: parts.headers,
            client_ip,
        };
        match route.upstream.send(out, body).await {
            Ok(response) => from_upstream(response),
            Err(e) => error_response(&Fault::Upstream(&e)),
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The answer to `OPTIONS *`: what Weir forwards.
fn server_options() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(inbound::ALLOW));
    response
}

/// The upstream's response as it goes back to the client: its hop-by-hop headers removed.
pub fn from_upstream(response: Response<ProxyBody>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body)
}
