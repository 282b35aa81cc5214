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
    Incoming(Incoming),
    /// A request body under the route's `max_request_body`.
    Limited(Limited<Incoming>),
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

    /// The incoming request body, bounded when the route sets a limit.
    pub fn incoming(body: Incoming, limit: Option<u64>) -> Self {
        match limit {
            Some(limit) => ProxyBody::Limited(Limited::new(
                body,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            None => ProxyBody::Incoming(body),
        }
    }
}

/// True if the error came from a request body over its limit.
pub fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
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
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Limited(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Channel(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Limited(body) => body.is_end_stream(),
            ProxyBody::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Limited(body) => body.size_hint(),
            ProxyBody::Channel(_) => SizeHint::default(),
        }
    }
}
