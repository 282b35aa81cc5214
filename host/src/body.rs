//! The one body type Weir sends both ways: a byte buffer, a body streamed straight from the other side, or
//! the output of a body-transforming chain. One enum instead of a boxed trait object keeps the common path
//! free of an allocation per request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Full(Option<Bytes>),
    /// A response body streamed from the upstream.
    Incoming(Incoming),
    /// The client's request body, under the route's `max_request_body` (`usize::MAX` when it has none).
    Request(Limited<Incoming>),
    /// Chunks produced by a task running body hooks.
    Channel(mpsc::Receiver<Result<Bytes, BoxError>>),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// The client's request body, bounded when the route sets a limit.
    pub fn request(body: Incoming, limit: Option<u64>) -> Self {
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        ProxyBody::Request(Limited::new(body, limit))
    }
}

/// A request body that could not be read: broken chunked framing, or the client went away mid-body. The
/// client's fault, which an upstream send must not report as the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body: {0}")]
pub struct ClientBodyError(#[source] BoxError);

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Request(body) => Pin::new(body).poll_frame(cx).map_err(|e| {
                if e.is::<LengthLimitError>() {
                    e
                } else {
                    Box::new(ClientBodyError(e)) as BoxError
                }
            }),
            ProxyBody::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Request(body) => body.is_end_stream(),
            ProxyBody::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Request(body) => body.size_hint(),
            ProxyBody::Channel(_) => SizeHint::default(),
        }
    }
}
