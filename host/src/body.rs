//! The one body type Weir sends both ways: a byte buffer, a body streamed straight from the other side, or
//! the output of a body-transforming chain. One enum instead of a boxed trait object keeps the common path
//! free of an allocation per request.
//!
//! A body streamed from a peer is guarded by an idle timer, so that a peer that stops sending mid-body
//! cannot hold a connection, a task and its buffers for ever: the client's body by `client_body_timeout`,
//! the upstream's by its `read_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tracing::Span;

use crate::access_log::Tally;
use crate::client_cert;
use crate::plugin::bindings::weir::plugin::request::BodyError;
use crate::upstream::{Place, Received};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Full(Option<Bytes>),
    /// A response body streamed from the upstream.
    Upstream(UpstreamBody),
    /// The client's request body.
    Request(RequestBody),
    /// Frames produced by a task running body hooks: the plugins' output, then the trailers they never see.
    Channel(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>),
    /// What a plugin read of a body, then the rest of it: a body read past a plugin's limit still goes
    /// upstream whole.
    Prefixed(Option<Bytes>, Box<ProxyBody>),
    /// A body that failed while a plugin read it: it fails again for whoever reads on, so the request
    /// fails as the client's fault and no upstream gets a body cut short as if it were whole.
    Failed(Option<BoxError>),
    /// The trailers of a body a plugin read whole, after its data.
    Trailers(Option<HeaderMap>),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// The endpoint's place among its `max_requests` that an upstream's body holds, taken for whatever
    /// outlives the body: a WebSocket tunnel holds the connection, and so its place, after the 101.
    pub fn take_place(&mut self) -> Option<Place> {
        match self {
            ProxyBody::Upstream(body) => body.place.take(),
            _ => None,
        }
    }

    /// A body read whole, to go on as it came: its data, then its trailers if it had any.
    pub fn whole(Whole { data, trailers }: Whole) -> Self {
        match trailers {
            None => ProxyBody::full(data),
            Some(trailers) => ProxyBody::Prefixed(
                (!data.is_empty()).then_some(data),
                Box::new(ProxyBody::Trailers(Some(trailers))),
            ),
        }
    }

    /// The client's request body, bounded when the route sets a limit, and ended with
    /// [`ClientBodyTimeout`] when the client sends nothing for `idle`; the bytes read are added to
    /// `tally` when there is one.
    pub fn request(
        body: Incoming,
        limit: Option<u64>,
        idle: Duration,
        tally: Option<Arc<Tally>>,
    ) -> Self {
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        ProxyBody::Request(RequestBody {
            inner: Limited::new(body, limit),
            limit,
            idle: IdleTimer::new(idle),
            tally,
        })
    }

    /// The route's `max_request_body` over what is left of the client's body, counted from its first
    /// byte; `usize::MAX` when there is none, or when the body is no longer the client's stream.
    fn route_limit(&self) -> usize {
        match self {
            ProxyBody::Request(body) => body.limit,
            ProxyBody::Prefixed(_, rest) => rest.route_limit(),
            _ => usize::MAX,
        }
    }

    /// The response body of upstream `upstream`, cut with [`UpstreamBodyTimeout`] when the upstream sends
    /// nothing for `idle`; what it logs is in `span`, the request's.
    pub fn upstream(
        body: Received,
        idle: Duration,
        upstream: Arc<str>,
        place: Option<Place>,
        span: Span,
    ) -> Self {
        ProxyBody::Upstream(UpstreamBody {
            inner: body,
            idle: IdleTimer::new(idle),
            upstream,
            place,
            span,
        })
    }
}

/// A request body that could not be read: broken chunked framing, or the client went away mid-body. The
/// client's fault, which an upstream send must not report as the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body: {0}")]
pub struct ClientBodyError(#[source] BoxError);

/// The client sent nothing of its request body for this long: the client's fault, answered with 408.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body bytes for {0:?} (client_body_timeout)")]
pub struct ClientBodyTimeout(pub Duration);

/// The upstream sent nothing of its response body for this long; the response is cut short.
#[derive(Debug, thiserror::Error)]
#[error("upstream \"{upstream}\" sent no response body bytes for {after:?} (read_timeout)")]
pub struct UpstreamBodyTimeout {
    pub upstream: Arc<str>,
    pub after: Duration,
}

/// Measures how long a peer has been silent: armed when the body it guards has nothing ready, disarmed
/// when it yields. A body whose data is ready whenever it is polled never arms it, and a body nobody polls
/// (the reader on the other side is slow) is not the peer's silence and is not timed either. The sleep is
/// allocated on the first wait and reused after.
struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        IdleTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Called when the body had nothing ready: `Ready` once the peer has been silent for the limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            // A deadline past `Instant`'s range never comes: the config holds the limit to a year.
            let Some(deadline) = Instant::now().checked_add(self.limit) else {
                return Poll::Pending;
            };
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The client's request body, under the route's `max_request_body` (`usize::MAX` when it has none) and the
/// server's `client_body_timeout`.
pub struct RequestBody {
    inner: Limited<Incoming>,
    /// The limit `inner` holds the body to.
    limit: usize,
    idle: IdleTimer,
    tally: Option<Arc<Tally>>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.disarm();
                if let (Some(tally), Some(Ok(frame))) = (&this.tally, &frame)
                    && let Some(data) = frame.data_ref()
                {
                    tally.received(data.len());
                }
                Poll::Ready(frame.map(|f| {
                    f.map(|mut frame| {
                        // A trailer may not claim the identity a header may not (crate::client_cert).
                        if let Some(trailers) = frame.trailers_mut() {
                            client_cert::strip(trailers);
                        }
                        frame
                    })
                    .map_err(|e| {
                        if e.is::<LengthLimitError>() {
                            e
                        } else {
                            Box::new(ClientBodyError(e)) as BoxError
                        }
                    })
                }))
            }
            Poll::Pending => this
                .idle
                .poll_expired(cx)
                .map(|()| Some(Err(Box::new(ClientBodyTimeout(this.idle.limit)) as BoxError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream's response body, under the upstream's `read_timeout`.
pub struct UpstreamBody {
    inner: Received,
    idle: IdleTimer,
    upstream: Arc<str>,
    /// The endpoint's place among its `max_requests`, given back when the body is dropped.
    place: Option<Place>,
    /// hyper polls the body in the connection's task, outside the handler and its request span: entered
    /// here, the span names the request in what the body logs (a cut, a request body that failed late).
    span: Span,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.disarm();
                Poll::Ready(frame)
            }
            Poll::Pending => this.idle.poll_expired(cx).map(|()| {
                let timeout = UpstreamBodyTimeout {
                    upstream: this.upstream.clone(),
                    after: this.idle.limit,
                };
                // The head is already sent: the client sees the body cut short, the log says why.
                tracing::warn!("{timeout}: the response was cut short");
                Some(Err(Box::new(timeout) as BoxError))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body read whole: what a plugin sees, and the trailers that follow it upstream.
pub struct Whole {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// Reads `body` whole for a plugin (`read-body`) when it holds at most `limit` bytes and the route allows
/// it. Otherwise says why, and gives back the body to go on with: prefixed with what was read when it is
/// only over the plugin's limit (it still goes upstream whole), failing again for whoever reads on when
/// the client was at fault.
pub async fn read_whole(
    mut body: ProxyBody,
    limit: usize,
) -> Result<Whole, (BodyError, ProxyBody)> {
    use http_body_util::BodyExt;
    let limit = limit.min(body.route_limit());
    let mut read = bytes::BytesMut::new();
    let mut trailers = None;
    loop {
        match body.frame().await {
            None => {
                return Ok(Whole {
                    data: read.freeze(),
                    trailers,
                });
            }
            Some(Ok(frame)) => {
                match frame.into_data() {
                    Ok(data) => read.extend_from_slice(&data),
                    // Trailers come last: kept for the upstream, as a streamed body would carry them.
                    Err(frame) => trailers = frame.into_trailers().ok(),
                }
                if read.len() > limit {
                    let kept = ProxyBody::Prefixed(Some(read.freeze()), Box::new(body));
                    return Err((BodyError::TooLarge(limit as u64), kept));
                }
            }
            Some(Err(e)) => {
                let error = if e.is::<LengthLimitError>() {
                    // Over the route's `max_request_body`, which is then the lower limit.
                    BodyError::TooLarge(limit as u64)
                } else if e.is::<ClientBodyTimeout>() {
                    BodyError::TimedOut
                } else {
                    BodyError::Broken(format!("the request body could not be read: {e}"))
                };
                return Err((error, ProxyBody::Failed(Some(e))));
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Request(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Channel(rx) => rx.poll_recv(cx),
            ProxyBody::Prefixed(head, rest) => match head.take() {
                Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
                None => Pin::new(rest.as_mut()).poll_frame(cx),
            },
            ProxyBody::Failed(error) => Poll::Ready(error.take().map(Err)),
            ProxyBody::Trailers(trailers) => {
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Request(body) => body.is_end_stream(),
            ProxyBody::Channel(_) => false,
            ProxyBody::Prefixed(head, rest) => head.is_none() && rest.is_end_stream(),
            ProxyBody::Failed(error) => error.is_none(),
            ProxyBody::Trailers(trailers) => trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Request(body) => body.size_hint(),
            ProxyBody::Channel(_) | ProxyBody::Failed(_) => SizeHint::default(),
            ProxyBody::Trailers(_) => SizeHint::with_exact(0),
            ProxyBody::Prefixed(head, rest) => {
                let head = head.as_ref().map_or(0, |b| b.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_idle_timer_fires_only_after_a_silence_of_its_limit() {
        let mut timer = IdleTimer::new(Duration::from_millis(50));
        let started = Instant::now();
        // Waits shorter than the limit, each ended by data, never fire.
        for _ in 0..3 {
            let waited =
                std::future::poll_fn(|cx| Poll::Ready(timer.poll_expired(cx).is_ready())).await;
            assert!(!waited);
            tokio::time::sleep(Duration::from_millis(30)).await;
            timer.disarm();
        }
        assert!(started.elapsed() >= Duration::from_millis(90));
        std::future::poll_fn(|cx| timer.poll_expired(cx)).await;
        assert!(started.elapsed() >= Duration::from_millis(140));
    }
}
