//! The running configuration, one immutable value (routes, upstreams, plugin pools) that the server reads
//! through an atomic pointer, and the handling of one request against it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::chain;
use crate::client_cert;
use crate::config::AccessLog;
use crate::exchange::{PluginBounds, has_token, strip_hop_by_hop};
use crate::fault::{Fault, error_response};
use crate::inbound::{self, Admitted};
use crate::outcome::{ServedBody, Trace};
use crate::peers::PeerSet;
use crate::plugin::PluginSlot;
use crate::real_ip::RealIp;
use crate::request_id::RequestIds;
use crate::routes::RouteMatch;
use crate::stats::RouteStats;
use crate::tls::Https;
use crate::upstream::{Outgoing, Upstream, Upstreams};
use crate::websocket;

pub struct Proxy {
    pub routes: Vec<Route>,
    pub upstreams: Arc<Upstreams>,
    pub access_log: AccessLog,
    /// The counters of requests that matched no route.
    pub unrouted: Arc<RouteStats>,
    pub inbound: inbound::Rules,
    /// How long a client may send nothing of a request body it has begun.
    pub client_body_timeout: Duration,
    /// What plugins may make one exchange hold.
    pub plugin_bounds: PluginBounds,
    /// The load balancers whose connections open with a PROXY protocol header.
    pub proxy_protocol: Option<PeerSet>,
    /// The proxies in front whose `X-Forwarded-For` names the client.
    pub real_ip: Option<RealIp>,
    /// The header each request's ID goes in, when requests get one.
    pub request_id: Option<RequestIds>,
}

/// The client a request came from, as the upstream and the plugins are told of it.
#[derive(Clone, Copy)]
pub struct Client {
    /// The peer, or the client the proxies in front name ([`crate::real_ip`]).
    pub ip: IpAddr,
    /// The address the request came from (after a PROXY protocol header), which `X-Forwarded-For` gets:
    /// the upstream hears of every hop, not of the client twice.
    pub hop: IpAddr,
    /// `https` when the connection is TLS.
    pub scheme: &'static str,
}

pub struct Route {
    pub name: Arc<str>,
    pub matcher: RouteMatch,
    pub upstream: Arc<Upstream>,
    pub chain: Vec<Arc<PluginSlot>>,
    pub max_request_body: Option<u64>,
    /// Only a client that showed a verified certificate is served.
    pub require_client_cert: bool,
    /// Its counters, which outlive this generation.
    pub stats: Arc<RouteStats>,
}

impl Proxy {
    /// Handles one request from `peer`, over TLS if `tls` says so; it is counted, and its access line
    /// written, when its response body is done with (see [`crate::outcome`]).
    ///
    /// The connection's facts come as arguments rather than in the request's extensions: an insert there
    /// allocates a map and a box for every request.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: Option<&Https>,
    ) -> Response<ServedBody> {
        let hop = peer.ip();
        // Set on the request once its hop-by-hop headers are gone (`dispatch`), which a `Connection` naming
        // the header would otherwise take.
        let id = self.request_id.as_ref().map(|ids| {
            let from_proxy = self.real_ip.as_ref().is_some_and(|r| r.trusts(hop));
            (ids, ids.of(request.headers(), from_proxy))
        });
        let ip = match &self.real_ip {
            Some(real_ip) => real_ip.client(hop, request.headers()),
            None => hop,
        };
        let client = Client {
            ip,
            hop,
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        let mut trace = Trace::begin(
            self.access_log,
            &self.unrouted,
            &request,
            client.ip,
            id.as_ref().map(|(_, id)| id.clone()),
        );
        let response = match id {
            Some((ids, id)) => {
                // Weir's log lines about the request name its ID, those of its body tasks too (`chain`).
                // Boxed, as the chain is (see `dispatch`): the handler keeps no room for a second copy
                // of the dispatch future, and one without IDs is polled as it was.
                let span = tracing::error_span!("request", id = %id.to_str().unwrap_or_default());
                let identified = Box::pin(
                    self.dispatch(request, client, Some((ids, &id)), tls, &mut trace)
                        .instrument(span),
                );
                let mut response = identified.await;
                ids.set(response.headers_mut(), &id);
                response
            }
            None => self.dispatch(request, client, None, tls, &mut trace).await,
        };
        trace.respond(response)
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        client: Client,
        id: Option<(&RequestIds, &HeaderValue)>,
        tls: Option<&Https>,
        trace: &mut Trace,
    ) -> Response<ProxyBody> {
        if tls.is_some_and(|https| https.verdict.refused()) {
            return error_response(&Fault::CheckedAnew);
        }
        let (mut parts, body) = request.into_parts();
        let original_uri = match inbound::admit(&mut parts, self.inbound) {
            Ok(Admitted::Forward { original }) => original,
            Ok(Admitted::ServerOptions) => return server_options(),
            Err(refusal) => return error_response(&Fault::Client(&refusal)),
        };
        trace.admitted(&parts.uri);
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
        trace.routed(route);
        let verified = tls.and_then(|https| https.client_cert.as_ref());
        if route.require_client_cert && verified.is_none() {
            return error_response(&Fault::NoClientCert);
        }
        if let Some(limit) = route.max_request_body
            && declared_length(&parts.headers).is_some_and(|len| len > limit)
        {
            return error_response(&Fault::BodyTooLarge);
        }

        // The client's side of a WebSocket upgrade, taken before the request goes anywhere.
        let upgrade = if websocket::requested(&parts) {
            match websocket::accept(route, &mut parts) {
                Ok(upgrade) => upgrade,
                Err(refused) => return error_response(&Fault::Upgrade(&refused)),
            }
        } else {
            None
        };
        // `te: trailers` among the client's `te` values (the others stay hop-by-hop and go).
        let te_trailers = has_token(&parts.headers, header::TE, "trailers");
        strip_hop_by_hop(&mut parts.headers);
        client_cert::apply(&mut parts.headers, verified);
        if let Some((ids, id)) = id {
            ids.set(&mut parts.headers, id);
        }
        if te_trailers {
            // The one `te` HTTP/2 allows (RFC 9113 §8.2.2), which gRPC requires: the client takes trailers.
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if upgrade.is_some() {
            websocket::keep_headers(&mut parts.headers);
        }
        let body = ProxyBody::request(
            body,
            route.max_request_body,
            self.client_body_timeout,
            trace.tally().cloned(),
        );
        // hyper keeps room for this future for each connection's whole life, sized to its largest state;
        // the chain's and the upstream's states are boxed so that room is only taken while they run. Each is
        // boxed in a statement of its own: a temporary lives to the end of its statement, and one awaited
        // in the same statement kept room for the unboxed future as well (6.0 KB a connection, now 2.5).
        let response = if route.chain.is_empty() {
            forward(route, parts, body, client, trace).await
        } else {
            let original_uri = original_uri.unwrap_or_else(|| parts.uri.clone());
            let running = Box::pin(chain::run(
                self,
                route,
                parts,
                original_uri,
                body,
                client,
                trace,
            ));
            running.await
        };
        match upgrade {
            Some(tunnel) => websocket::splice(tunnel, response, route.upstream.read_timeout()),
            None => websocket::unasked(response),
        }
    }
}

/// An empty chain: no exchange, no copies, the body streams straight through.
async fn forward(
    route: &Route,
    parts: http::request::Parts,
    body: ProxyBody,
    client: Client,
    trace: &mut Trace,
) -> Response<ProxyBody> {
    trace.sent_to(&route.upstream);
    let out = Outgoing {
        method: parts.method,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: parts.headers,
        hop: client.hop,
        context: None,
        scheme: client.scheme,
    };
    let sending = Box::pin(route.upstream.send(out, body));
    match sending.await {
        Ok(response) => from_upstream(response),
        Err(e) => error_response(&Fault::Upstream(&e)),
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
pub fn from_upstream(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    strip_hop_by_hop(response.headers_mut());
    response
}
