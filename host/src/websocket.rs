//! WebSocket through the proxy: an HTTP/1.1 `Upgrade: websocket` request is forwarded with its upgrade
//! headers kept, and when the upstream answers `101 Switching Protocols` the client's connection and the
//! upstream's are spliced byte for byte until either side closes or both are idle for the route upstream's
//! `read_timeout`.
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

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::client_clocks::{Activity, Ended};
use crate::plugin::BodyKind;
use crate::proxy::Route;

/// Why a route does not take a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("WebSocket is not available on this route: a plugin of its chain transforms bodies")]
    BodyHooks,
    #[error("WebSocket is not available on this route: its upstream speaks HTTP/2 (http2 = true)")]
    Http2Upstream,
}

/// The request asks for a WebSocket upgrade: HTTP/1.1, `Connection: upgrade` and `Upgrade: websocket`.
pub fn requested(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && has_token(&parts.headers, header::CONNECTION, "upgrade")
        && has_token(&parts.headers, header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client connection's activity, put on a request that asks for an upgrade: the tunnel holds it as a
/// request in flight, so the connection's header and keep-alive clocks (crate::client_clocks) leave the
/// tunnel's bytes alone; its own idle bound is the upstream's `read_timeout`.
#[derive(Clone)]
pub struct Tunnel(pub Arc<Activity>);

/// The client's side of an accepted upgrade.
pub struct ClientSide {
    upgrade: OnUpgrade,
    activity: Option<Arc<Activity>>,
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
    let activity = parts.extensions.remove::<Tunnel>().map(|t| t.0);
    Ok(parts
        .extensions
        .remove::<OnUpgrade>()
        .map(|upgrade| ClientSide { upgrade, activity }))
}

/// Puts back the upgrade headers that the hop-by-hop stripping removed.
pub fn keep_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// After the chain: a 101 from the upstream goes to the client with its upgrade headers, and the two
/// connections are spliced once both have switched. Any other answer passes through as it is.
pub fn splice(
    client: ClientSide,
    mut response: Response<ProxyBody>,
    idle: Duration,
) -> Response<ProxyBody> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>() else {
        // A 101 that hyper did not take as an upgrade (not the upstream's own): nothing to splice.
        tracing::warn!("a 101 without an upgraded upstream connection");
        let mut bad = Response::new(ProxyBody::full("upstream switched protocols unasked\n"));
        *bad.status_mut() = StatusCode::BAD_GATEWAY;
        return bad;
    };
    keep_headers(response.headers_mut());
    // Begun before the 101 is sent, so the clocks never see the connection between requests.
    let in_flight: Option<Ended> = client.activity.as_ref().map(Activity::begin);
    tokio::spawn(async move {
        if let Err(e) = tunnel(client.upgrade, upstream, idle).await {
            tracing::debug!("websocket tunnel ended: {e}");
        }
        drop(in_flight);
    });
    response
}

#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("upgrade failed: {0}")]
    Upgrade(#[from] hyper::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("idle for {0:?}")]
    Idle(Duration),
}

async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) -> Result<(), TunnelError> {
    let (client, upstream) = tokio::try_join!(client, upstream)?;
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Watched::new(TokioIo::new(client), started, last.clone());
    let mut upstream = Watched::new(TokioIo::new(upstream), started, last.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    loop {
        let seen = last.load(Ordering::Relaxed);
        // The config holds `read_timeout` to a year, which no clock overflows.
        let deadline = started + Duration::from_millis(seen) + idle;
        tokio::select! {
            copied = &mut copy => return copied.map(|_| ()).map_err(TunnelError::from),
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
