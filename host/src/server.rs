//! Accepting connections and serving HTTP/1.1 with keep-alive, and HTTP/2 in clear text to a client that
//! opens with its preface (h2c with prior knowledge), on the same port, against whatever configuration the
//! atomic pointer holds when each request arrives: at most `max_connections` at once, each under its
//! clocks ([`crate::client_clocks`]), and all of them drained when the server stops. With `[server.tls]`,
//! each connection is a TLS one ([`crate::tls`]), the handshake before the clocks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::client_cert;
use crate::client_clocks::{Activity, Clocked, Clocks, Expired, Tracked};
use crate::config::ServerConfig;
use crate::config::limits::MAX_CONNECTIONS;
use crate::head_bytes;
use crate::outcome::ServedBody;
use crate::proxy::Proxy;
use crate::proxy_protocol;
use crate::sniff::Sniffed;
use crate::stats::RouteStats;
use crate::tls::{self, Https, Peer};
use crate::websocket::{self, Tunnel};

/// Files the process needs besides its connections' sockets: the standard streams, the runtime's, the
/// compile cache's, an admin connection or two.
const OTHER_FILES: u64 = 64;

/// What makes the server count a client connection as open: its `max_connections` slot, and its part in
/// the drain, which waits until every receiver is gone. The connection's task holds it, and so does a
/// WebSocket tunnel made on the connection ([`crate::websocket`]), which outlives the connection hyper
/// served: nginx counts upgraded connections against `worker_connections` as well.
pub struct Held {
    _slot: OwnedSemaphorePermit,
    _draining: watch::Receiver<bool>,
}

/// Connections served at once: `max_connections`, or by default as many as the open-file limit has room
/// for, two sockets each (the client's and an upstream's). Past the default, an accept or an upstream
/// connect would fail for want of a file instead.
pub fn connection_limit(configured: Option<u32>, open_files: Option<u64>) -> usize {
    let limit = configured.unwrap_or_else(|| {
        let room = open_files.map_or(u64::from(MAX_CONNECTIONS.max), |files| {
            files.saturating_sub(OTHER_FILES) / 2
        });
        u32::try_from(room)
            .unwrap_or(MAX_CONNECTIONS.max)
            .clamp(MAX_CONNECTIONS.min, MAX_CONNECTIONS.max)
    });
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Serves until `stop` resolves, then stops accepting and waits up to `shutdown_timeout` for the
/// connections it has: busy ones close after their response, those waiting for a request after a moment
/// for one already on its way ([`crate::client_clocks::DRAIN_GRACE`]), HTTP/2 ones after `GOAWAY` and
/// their last stream, WebSocket tunnels when they end.
///
/// With certificates in `tls` the listener speaks TLS: each connection shakes hands with the certificates
/// the channel holds when it is accepted (a reload sends new ones), within `header_read_timeout`; one whose
/// client a later check refuses ([`Peer`]: a reload's, or its certificate's or CA's expiry) drains as at
/// shutdown, and is cut after `shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<ArcSwap<Proxy>>,
    mut tls: watch::Receiver<Option<Arc<tls::Listener>>>,
    stop: impl Future<Output = ()>,
    settings: &ServerConfig,
    max_connections: usize,
) {
    let grace = settings.shutdown_timeout;
    let http = Arc::new(builder(settings));
    let clocks = Clocks {
        header_read: settings.header_read_timeout,
        keepalive: settings.keepalive_timeout,
        send: settings.send_timeout,
    };
    let slots = Arc::new(Semaphore::new(max_connections));
    // Each connection holds a receiver: the sender says when to drain, and learns when the last is gone.
    let (drain, draining) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        // At the limit nothing is accepted: new connections wait in the listen backlog until one closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut stop => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Nagle would hold back small responses waiting for an ACK: latency with nothing gained.
        let _ = stream.set_nodelay(true);
        let generation = proxy.load();
        // A load balancer's connection opens with the client's address (crate::proxy_protocol).
        let proxied = generation
            .proxy_protocol
            .as_ref()
            .is_some_and(|balancers| balancers.contains(client.ip()));
        // Requests hyper's parser refuses never reach a route: they are counted with the unrouted ones.
        let unrouted = generation.unrouted.clone();
        drop(generation);
        let held = Arc::new(Held {
            _slot: slot,
            _draining: draining.clone(),
        });
        let activity = Arc::new(Activity::default());
        // Marked seen: a reload from here on reaches the connection's Peer as a change.
        let listener_tls = tls.borrow_and_update().clone();
        // The connection's service, made once it is known who the client is (a load balancer's header
        // may say), whether the connection is TLS and which certificate, if any, its client showed.
        let service = {
            let (proxy, activity, held) = (proxy.clone(), activity.clone(), held.clone());
            // In an Arc: each request takes the connection's facts for a pointer's count.
            move |client: SocketAddr, https: Option<Arc<Https>>, peer: Option<Peer>| {
                service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                    // Here, not in the handler's future: hyper reads ahead on the connection before it
                    // polls that future, and a head still in the read buffer then makes that read
                    // allocate another.
                    head_bytes::detach(&mut request);
                    let h2_websocket = websocket::from_extended_connect(&mut request);
                    if h2_websocket || request.headers().contains_key(header::UPGRADE) {
                        // A WebSocket tunnel counts as a request in flight for the clocks, and keeps the
                        // connection counted by the server (crate::websocket).
                        request.extensions_mut().insert(Tunnel {
                            activity: activity.clone(),
                            connection: held.clone(),
                            peer: peer.clone(),
                        });
                    }
                    let proxy = proxy.load_full();
                    let ended = activity.begin();
                    // HTTP/2 has no `Connection`; a drained h2 connection ends once idle
                    // (crate::client_clocks).
                    let http1 = request.version() < http::Version::HTTP_2;
                    let https = https.clone();
                    async move {
                        let mut response = proxy.handle(request, client, https.as_deref()).await;
                        if http1 && ended.draining() {
                            // The client is to take its next request elsewhere (after an upgrade, to the
                            // new process).
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, Infallible>(response.map(|body| Tracked::new(body, ended)))
                    }
                })
            }
        };
        let (http, draining) = (http.clone(), draining.clone());
        // A task apiece, not one with a branch: a task's memory is its largest state, and a connection in
        // clear would otherwise carry room for a TLS handshake and session it never has.
        let Some(listener_tls) = listener_tls else {
            let serve = move |stream, client| {
                let io = Clocked::new(stream, activity.clone(), clocks);
                let service = service(client, None, None);
                let client = (client, unrouted, grace);
                serve_connection(http, io, service, activity, (draining, None), client, held)
            };
            if proxied {
                tokio::spawn(async move {
                    let mut stream = stream;
                    let deadline = Instant::now() + clocks.header_read;
                    if let Some(client) = proxied_client(&mut stream, client, deadline).await {
                        serve(stream, client).await;
                    }
                });
            } else {
                // The connection's future is the task: an async block around it would keep room for what
                // it captured beside the future it awaits (300 bytes a connection).
                tokio::spawn(serve(stream, client));
            }
            continue;
        };
        let channel = tls.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // The header and the handshake come before the clocks: they time requests, which start once
            // both are done. Both are bounded by the head's timeout, so a client that never finishes them
            // holds a slot no longer than one that never finishes a head.
            let deadline = Instant::now() + clocks.header_read;
            let client = if proxied {
                let Some(client) = proxied_client(&mut stream, client, deadline).await else {
                    return;
                };
                client
            } else {
                client
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(listener_tls.config.clone());
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let (_, session) = stream.get_ref();
                    let client_cert = match session.peer_certificates().and_then(|c| c.first()) {
                        None => None,
                        Some(leaf) => match client_cert::forwarded(leaf) {
                            Some(value) => Some(value),
                            // Served without the identity it proved, the client would pass for one
                            // that showed none: it is not served at all.
                            None => {
                                tracing::warn!(
                                    %client,
                                    "closed: a verified client certificate that cannot be read \
                                     for X-Forwarded-Client-Cert"
                                );
                                return;
                            }
                        },
                    };
                    let peer = Peer::new(channel, &listener_tls, session.peer_certificates());
                    let verdict = peer.verdict();
                    let https = Arc::new(Https {
                        client_cert,
                        verdict,
                    });
                    let service = service(client, Some(https), Some(peer.clone()));
                    // A 408 written in clear into the TLS stream would be garbage to the client: a timeout
                    // only closes, as on HTTP/2.
                    // Boxed: each layer that takes the 1.2 KB TLS stream by value (the sniffer, hyper's
                    // connection, the drain around it) keeps room for it in the task, 16.5 KB unboxed
                    // against 6.9 KB and the box.
                    let io = Clocked::new(Box::new(stream), activity.clone(), clocks).without_408();
                    let client = (client, unrouted, grace);
                    let peer = (draining, Some(peer));
                    serve_connection(http, io, service, activity, peer, client, held).await;
                    return;
                }
                Ok(Err(e)) => tracing::debug!(%client, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%client, "no TLS handshake within header_read_timeout"),
            }
            drop(held);
        });
    }
    // Closed here, so that new connections are refused (or, after an upgrade, go to the new process).
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {grace:?} for requests in flight and WebSocket tunnels"
    );
    drop(draining);
    let _ = drain.send(true);
    tokio::select! {
        () = drain.closed() => {}
        // What is still open closes with the process: a tunnel's peers see their TCP connections end.
        () = tokio::time::sleep(grace) => tracing::warn!("requests or WebSocket tunnels still open at the end of the grace period"),
    }
}

/// The client a load balancer's connection is for, from the PROXY protocol header it opens with; `None`,
/// logged, when the header does not come whole and well-formed by `deadline`, and the connection is to be
/// closed.
async fn proxied_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<SocketAddr> {
    match proxy_protocol::read(stream, peer, deadline).await {
        Ok(client) => Some(client),
        // A balancer's TCP health check: nginx logs it at `info`.
        Err(refused @ proxy_protocol::Refused::Empty) => {
            tracing::debug!(%peer, "a load balancer's connection: {refused}");
            None
        }
        Err(refused) => {
            // nginx logs these at `error` ("broken header"): a balancer that sends none is misconfigured.
            tracing::warn!(%peer, "closed a load balancer's connection: {refused}");
            None
        }
    }
}

/// Serves one connection until it ends, closing it after what it is busy with once the server drains or a
/// later check refuses its TLS client (`peer`); in the second case what is still busy `grace` later
/// (`shutdown_timeout`) is cut, as a shutdown cuts it, so that no long request or stream goes on under a
/// refused identity.
async fn serve_connection<I, S>(
    http: Arc<Http>,
    io: Clocked<I>,
    service: S,
    activity: Arc<Activity>,
    (mut draining, peer): (watch::Receiver<bool>, Option<Peer>),
    (client, unrouted, grace): (SocketAddr, Arc<RouteStats>, Duration),
    _held: Arc<Held>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Tracked<ServedBody>>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let refused = Notify::new();
    let checked_anew = async {
        let why = Peer::refusal(peer).await;
        tracing::info!(%client, "draining: {why}");
        refused.notify_one();
    };
    let mut drained = std::pin::pin!(async {
        tokio::select! {
            // The guard it returns is not to be held across the connection's end.
            _ = draining.wait_for(|drain| *drain) => {}
            () = checked_anew => {}
        }
    });
    let cut = async {
        refused.notified().await;
        tokio::time::sleep(grace).await;
    };
    let serving = async {
        // A drain while the first bytes are awaited leaves them to the clocks, as it does a wait between
        // requests (crate::client_clocks).
        let mut sniffing = std::pin::pin!(Sniffed::read(io));
        let (sniffed, drain_seen) = tokio::select! {
            sniffed = sniffing.as_mut() => (sniffed, false),
            () = drained.as_mut() => {
                activity.drain();
                (sniffing.await, true)
            }
        };
        let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = match sniffed {
            Ok(io) if io.is_h2() => {
                // hyper spawns each stream's future as a task, and spawning moves it five times over: boxed,
                // a move is of a pointer, not of the handler's ~2.7 KB. HTTP/1.1 moves its future once, into
                // the connection's own room, and is left unboxed.
                let service = service_fn(move |request| Box::pin(service.call(request)));
                let connection = http.h2.serve_connection(TokioIo::new(io), service);
                // HTTP/2 can tell the client: GOAWAY, after which it opens no more streams here and hyper
                // closes the connection once those it has are done. Boxed, so that each HTTP/1.1
                // connection's task does not keep room for an HTTP/2 connection it never has (7.1 KB a
                // task in clear, 5.4 boxed).
                Box::pin(until_drained(
                    connection,
                    drained,
                    drain_seen,
                    &activity,
                    |c| {
                        c.graceful_shutdown();
                    },
                ))
                .await
                .map_err(Into::into)
            }
            Ok(io) => {
                // With upgrades: after a WebSocket's 101 the socket goes on to crate::websocket's tunnel.
                let connection = http
                    .h1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades();
                // HTTP/1.1 has no GOAWAY, and hyper's graceful shutdown would close a connection between
                // requests at once, a request on its way unanswered: the clocks' grace does that instead.
                until_drained(connection, drained, drain_seen, &activity, |_| {})
                    .await
                    .map_err(Into::into)
            }
            // A clock that ran out before the bytes told the protocol: a head begun and not finished is a 408.
            Err(e) => Err(e.into()),
        };
        result
    };
    let result = tokio::select! {
        result = serving => result,
        () = cut => {
            tracing::info!(
                %client,
                "closed: still busy {grace:?} after a check refused its client certificate"
            );
            return;
        }
    };
    let Err(e) = result else { return };
    if let Some(status) = refused_by_parser(&*e) {
        // hyper has answered it; nginx logs these too ("client sent invalid request").
        unrouted.refused(status);
        tracing::info!(%client, status, "refused a malformed request: {e}");
    } else if let Some(expired) = activity.expired() {
        if matches!(expired, Expired::Head | Expired::HeadUnanswered) {
            // A request begun and never finished: nginx logs it as 408 whether or not it answered.
            unrouted.refused(408);
            tracing::info!(%client, status = 408, "{expired}");
        } else {
            // nginx logs these too ("client timed out ... while sending response to client").
            tracing::info!(%client, "{expired}");
        }
    } else {
        tracing::debug!(%client, "connection ended with an error: {e}");
    }
}

/// Drives `connection` to its end; once the server drains, the connection closes after what it is busy
/// with, or once it has waited for a request for a moment (crate::client_clocks), and `shutdown` may say so
/// to the client. `drain_seen` when the drain came before the connection.
async fn until_drained<C>(
    connection: C,
    drained: Pin<&mut impl Future<Output = ()>>,
    drain_seen: bool,
    activity: &Activity,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut connection = std::pin::pin!(connection);
    if drain_seen {
        shutdown(connection.as_mut());
        return connection.await;
    }
    tokio::select! {
        result = connection.as_mut() => result,
        () = drained => {
            activity.drain();
            shutdown(connection.as_mut());
            connection.await
        }
    }
}

/// The status hyper's HTTP/1.1 parser answered a request it could not read with (its `on_error`), or none
/// when the connection ended for another reason.
fn refused_by_parser(error: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let error = error.downcast_ref::<hyper::Error>()?;
    if error.is_parse_too_large() {
        // hyper tells a target past its own limit from a head past the buffer only in its text.
        Some(if error.to_string().contains("URI too long") {
            414
        } else {
            431
        })
    } else if error.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// Concurrent streams one HTTP/2 connection may have open: nginx's `http2_max_concurrent_streams`. Each is a
/// request in flight, so one connection cannot hold more of the proxy than this many HTTP/1.1 connections.
const H2_MAX_STREAMS: u32 = 128;

/// Streams a client may open and reset before the server has taken them, at once: past this the connection
/// is closed with `ENHANCE_YOUR_CALM`, the guard against the "rapid reset" flood (CVE-2023-44487), in which
/// a client opens and cancels streams faster than any limit on concurrent ones can see. hyper's default.
const H2_MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for a client's errors on one connection before closing it: the guard
/// against a client provoking the resets instead (CVE-2025-8671, "MadeYouReset"). hyper's default.
const H2_MAX_LOCAL_RESETS: usize = 1024;

/// hyper's servers for the two protocols, set up alike; [`Sniffed`] tells which a connection speaks.
struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

fn builder(settings: &ServerConfig) -> Http {
    let mut h1 = http1::Builder::new();
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    // The parser caps the whole head, line included, and checks that before the target's length: its cap
    // leaves room for the longest target allowed, so a long target gets 414 from admission, not 431; the
    // header fields alone are held to `max_request_head` by admission too.
    let head = settings
        .max_request_head
        .0
        .saturating_add(settings.max_request_target.0);
    let head = usize::try_from(head).unwrap_or(usize::MAX);
    let fields = usize::try_from(settings.max_request_headers).unwrap_or(usize::MAX);
    // hyper's HTTP/1.1 server has no `max_header_size`: the read buffer below bounds the head as it
    // arrives, and admission holds the fields and the target to their limits (431, 414).
    h1
        // Weir's own clocks time the head and the wait between requests (crate::client_clocks).
        .header_read_timeout(None)
        .keep_alive(!settings.keepalive_timeout.is_zero())
        // More fields get 431 from the parser.
        .max_headers(fields)
        // A head still arriving is buffered up to this, so the limit holds for slow clients too (hyper
        // refuses a buffer under 8 KiB).
        .max_buf_size(head.max(8 << 10));
    h2.max_concurrent_streams(H2_MAX_STREAMS)
        // HPACK's decoded size (each field's name and value plus 32 bytes): the same allowance as HTTP/1.1's
        // head, with the pseudo-header fields in the place of the request line.
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // RFC 8441: WebSocket on an HTTP/2 stream (crate::websocket).
        .enable_connect_protocol();
    Http { h1, h2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_leaves_two_files_a_connection() {
        assert_eq!(connection_limit(None, Some(20_000)), 9_968);
        assert_eq!(connection_limit(None, Some(1024)), 480);
        // Too few files for any: one all the same, which waits rather than fails.
        assert_eq!(connection_limit(None, Some(10)), 1);
        assert_eq!(connection_limit(None, Some(u64::MAX)), 1 << 20);
        assert_eq!(connection_limit(None, None), 1 << 20);
        assert_eq!(connection_limit(Some(2), Some(20_000)), 2);
    }
}
