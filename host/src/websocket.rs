//! WebSocket through the proxy: an HTTP/1.1 `Upgrade: websocket` request is forwarded with its upgrade
//! headers kept, and when the upstream answers `101 Switching Protocols` the client's connection and the
//! upstream's are spliced byte for byte until either side closes or both are idle for the route upstream's
//! `read_timeout`.
//!
//! An HTTP/2 client asks with RFC 8441's extended CONNECT (`:protocol = websocket`) on one stream of its
//! connection: the request becomes the same GET before admission (which takes no CONNECT), goes to the
//! upstream as an HTTP/1.1 upgrade, and the upstream's 101 becomes the client's `200`, after which the
//! stream's DATA frames carry the WebSocket bytes.
//!
//! Only a chain without body hooks can carry one: after the 101 the bytes are WebSocket frames, not a
//! body, so a plugin that transforms bodies could neither see nor change them. Such a route answers 501
//! (RFC 9110 §15.6.2: the server does not support the functionality required), rather than dropping the
//! `Upgrade` (which §7.8 would allow) and handing a WebSocket client an ordinary response it cannot use.
//! Other upgrade tokens (`h2c`, …) are stripped with the other hop-by-hop headers: the request goes on as
//! a plain HTTP/1.1 request, as §7.8 allows.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::client_clocks::{Activity, Ended};
use crate::exchange::has_token;
use crate::plugin::BodyKind;
use crate::proxy::Route;
use crate::server::Held;
use crate::tls::{Peer, Refusal};
use crate::upstream::{Switched, Upgraded};

/// Why a route does not take a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("WebSocket is not available on this route: a plugin of its chain transforms bodies")]
    BodyHooks,
    #[error("WebSocket is not available on this route: its upstream speaks HTTP/2 (http2 = true)")]
    Http2Upstream,
}

/// The request asks for a WebSocket upgrade: HTTP/1.1, `Connection: upgrade` and `Upgrade: websocket`; or
/// an HTTP/2 extended CONNECT that [`from_extended_connect`] rewrote.
pub fn requested(parts: &Parts) -> bool {
    if parts.extensions.get::<ExtendedConnect>().is_some() {
        return true;
    }
    parts.version == Version::HTTP_11
        && has_token(&parts.headers, header::CONNECTION, "upgrade")
        && has_token(&parts.headers, header::UPGRADE, "websocket")
}

/// Marks a request that came as an HTTP/2 extended CONNECT for a WebSocket, with the
/// `Sec-WebSocket-Accept` the upstream must answer the key Weir made up with.
#[derive(Clone)]
struct ExtendedConnect {
    accept: String,
}

/// Rewrites an HTTP/2 extended CONNECT for a WebSocket (RFC 8441 §4) into the GET that HTTP/1.1 would
/// send, so that admission, routing and the plugins see one request whichever way it came; whether it was
/// one. Its stream's upgrade (hyper's, for any CONNECT) stays on it for [`accept`] to take.
pub fn from_extended_connect<B>(request: &mut Request<B>) -> bool {
    let websocket = request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return false;
    }
    *request.method_mut() = Method::GET;
    request.extensions_mut().remove::<Protocol>();
    // RFC 8441 §5 drops the key over HTTP/2, but the upstream is asked over HTTP/1.1, where RFC 6455
    // §4.1 wants a fresh nonce. It guards against caches, not attackers: no secret is needed.
    let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let key = BASE64.encode(nonce);
    let accept = accept_for(&key);
    if let Ok(key) = HeaderValue::try_from(key) {
        request.headers_mut().insert(header::SEC_WEBSOCKET_KEY, key);
    }
    request.extensions_mut().insert(ExtendedConnect { accept });
    true
}

/// RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` that proves a server read `key` as a WebSocket handshake.
fn accept_for(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut hash = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    hash.update(key.as_bytes());
    hash.update(GUID.as_bytes());
    BASE64.encode(hash.finish())
}

/// The client connection's part, put on a request that asks for an upgrade, for the tunnel to hold.
#[derive(Clone)]
pub struct Tunnel {
    /// Held as a request in flight, so that the connection's header and keep-alive clocks
    /// (crate::client_clocks) leave the tunnel's bytes alone; its own idle bound is the upstream's
    /// `read_timeout`.
    pub activity: Arc<Activity>,
    /// hyper is done with an HTTP/1.1 connection once it hands the socket over: without this its
    /// `max_connections` slot would go to the next client and the drain would not wait for the tunnel.
    pub connection: Arc<Held>,
    /// On TLS, the client as its handshake checked it: a later check that refuses it (a reload's, or its
    /// certificate's or CA's expiry) cuts the tunnel, which would otherwise carry the old check's word for as long
    /// as it is open.
    pub peer: Option<Peer>,
}

/// The client's side of an accepted upgrade.
pub struct ClientSide {
    upgrade: OnUpgrade,
    connection: Option<Tunnel>,
    /// An HTTP/2 stream (extended CONNECT), opened by a `200` rather than a 101: Weir made the handshake's
    /// key, so Weir checks the upstream's answer to it, as RFC 6455 §4.1 has a client do.
    h2: Option<ExtendedConnect>,
}

/// Whether `route` can carry the upgrade; the client's side of it is taken from `parts` when it can.
pub fn accept(route: &Route, parts: &mut Parts) -> Result<Option<ClientSide>, Refused> {
    let transforms = route
        .chain
        .iter()
        .any(|slot| slot.wants_body(BodyKind::Request) || slot.wants_body(BodyKind::Response));
    if transforms {
        return Err(Refused::BodyHooks);
    }
    // hyper's HTTP/2 client drops connection-specific headers, so the upgrade could never reach it.
    if route.upstream.is_http2() {
        return Err(Refused::Http2Upstream);
    }
    let connection = parts.extensions.remove::<Tunnel>();
    let h2 = parts.extensions.remove::<ExtendedConnect>();
    Ok(parts
        .extensions
        .remove::<OnUpgrade>()
        .map(|upgrade| ClientSide {
            upgrade,
            connection,
            h2,
        }))
}

/// Puts back the upgrade headers that the hop-by-hop stripping removed.
pub fn keep_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// After the chain: a 101 from the upstream goes to the client with its upgrade headers (as a `200` to an
/// HTTP/2 client), and the two connections are spliced once both have switched. Any other answer passes
/// through as it is.
pub fn splice(
    client: ClientSide,
    mut response: Response<ProxyBody>,
    idle: Duration,
) -> Response<ProxyBody> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        if client.h2.is_some() && response.status().is_success() {
            // To an extended CONNECT a 2xx says the tunnel is open (RFC 8441 §5): the upstream's own
            // 2xx, which declined the upgrade, cannot go on as one.
            return bad_gateway(
                "upstream answered the WebSocket request without switching protocols\n",
            );
        }
        return response;
    }
    let Some(upstream) = response
        .extensions_mut()
        .remove::<Switched>()
        .and_then(|switched| switched.take())
    else {
        // A 101 that is not the upstream connection's switch (one a plugin made): nothing to splice.
        tracing::warn!("a 101 without an upgraded upstream connection");
        return bad_gateway("upstream switched protocols unasked\n");
    };
    let ClientSide {
        upgrade,
        mut connection,
        h2,
    } = client;
    // The upstream's connection is the tunnel's now: its place among the endpoint's `max_requests` too.
    let place = response.body_mut().take_place();
    if let Some(asked) = h2 {
        if let Err(wrong) = answers(response.headers(), &asked.accept) {
            tracing::warn!("upstream's WebSocket handshake refused: {wrong}");
            return bad_gateway("upstream answered the WebSocket handshake wrongly\n");
        }
        // RFC 8441 §5: a 2xx opens the tunnel, without the upgrade's headers or its accept key, which
        // answered the key Weir made up. hyper takes the stream for the tunnel only if the response has
        // no body.
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            headers.remove(name);
        }
        *response.body_mut() = ProxyBody::empty();
    } else {
        keep_headers(response.headers_mut());
    }
    // Begun before the 101 is sent, so the clocks never see the connection between requests.
    let in_flight: Option<Ended> = connection.as_ref().map(|c| c.activity.begin());
    let peer = connection.as_mut().and_then(|c| c.peer.take());
    let tunnelled = async move {
        if let Err(e) = tunnel(upgrade, upstream, idle, peer).await {
            tracing::debug!("websocket tunnel ended: {e}");
        }
        // Only now may the slot go to another client, the drain stop waiting for this connection, and the
        // endpoint take another request in its place.
        drop((in_flight, connection, place));
    };
    // The tunnel is the rest of its request: its lines name the request's ID.
    tokio::spawn(tunnelled.in_current_span());
    response
}

/// RFC 6455 §4.1's check of a server's 101 that an HTTP/1.1 client makes itself and an HTTP/2 client
/// cannot, as Weir made the key: the accept value proves the upstream read the request as a WebSocket
/// handshake. (Its `Upgrade` header went with the other hop-by-hop ones; hyper took the 101 as a switch.)
fn answers(headers: &HeaderMap, accept: &str) -> Result<(), &'static str> {
    match headers.get(header::SEC_WEBSOCKET_ACCEPT) {
        None => Err("its 101 has no Sec-WebSocket-Accept"),
        Some(value) if value.as_bytes() != accept.as_bytes() => {
            Err("its Sec-WebSocket-Accept does not answer Weir's key")
        }
        Some(_) => Ok(()),
    }
}

/// The answer to a request that asked for no upgrade: a 101 would switch the client to a protocol it never
/// asked for (and over HTTP/2 there is no 101 at all), so the upstream's is a 502.
pub fn unasked(response: Response<ProxyBody>) -> Response<ProxyBody> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    tracing::warn!(
        "upstream answered 101 Switching Protocols to a request that asked for no upgrade"
    );
    bad_gateway("upstream switched protocols unasked\n")
}

fn bad_gateway(why: &'static str) -> Response<ProxyBody> {
    let mut bad = Response::new(ProxyBody::full(why));
    *bad.status_mut() = StatusCode::BAD_GATEWAY;
    bad
}

#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("upgrade failed: {0}")]
    Upgrade(#[from] hyper::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("cut: {0}")]
    CheckedAnew(Refusal),
}

async fn tunnel(
    client: OnUpgrade,
    upstream: Upgraded,
    idle: Duration,
    peer: Option<Peer>,
) -> Result<(), TunnelError> {
    let client = client.await?;
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Watched::new(TokioIo::new(client), started, last.clone());
    let mut upstream = Watched::new(upstream, started, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    let mut checked_anew = std::pin::pin!(Peer::refusal(peer));
    loop {
        let seen = last.load(Ordering::Relaxed);
        // The config holds `read_timeout` to a year, which no clock overflows.
        let deadline = started + Duration::from_millis(seen) + idle;
        tokio::select! {
            copied = &mut copy => return copied.map(|_| ()).map_err(TunnelError::from),
            why = &mut checked_anew => return Err(TunnelError::CheckedAnew(why)),
            () = tokio::time::sleep_until(deadline) => {
                if last.load(Ordering::Relaxed) == seen {
                    return Err(TunnelError::Idle(idle));
                }
            }
        }
    }
}

/// One side of the tunnel, marking in `last` (milliseconds from `started`) when bytes last moved either way.
struct Watched<T> {
    io: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(io: T, started: Instant, last: Arc<AtomicU64>) -> Watched<T> {
        Watched { io, started, last }
    }

    fn moved(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_is_rfc_6455s() {
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
