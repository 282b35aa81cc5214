//! The request body as hyper sends it upstream: it reports its progress, for the upstream's `timeout`,
//! and a body that may be retried can be taken back as long as not a byte of it was sent.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};

/// Where a request body being sent stands, for the upstream's `timeout`: when it last handed bytes on, and
/// whether it is now waiting for the client.
pub struct Progress {
    pub start: Instant,
    /// Milliseconds from `start` to the last progress.
    last: AtomicU64,
    waiting: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    pub fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    pub fn waiting_for_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn wait(&self) {
        self.waiting.store(true, Ordering::Relaxed);
    }

    fn advance(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
    }
}

/// A body held where a failed attempt can take it back: hyper owns the request, and drops it (body and
/// all) when the attempt fails.
pub type Held = Arc<Mutex<Option<ProxyBody>>>;

/// The body lives behind a box: hyper's client queues requests in blocks of 32 held for each upstream
/// connection's life, so every byte of `Outbound` costs 32 per connection.
enum Source {
    /// Nothing to send: most requests, with no allocation.
    Empty,
    Owned(Box<ProxyBody>),
    /// Not polled yet: still in the hands of whoever may retry.
    Held(Held),
}

/// The request body of one attempt, reporting its progress when the request has a body.
pub struct Outbound {
    source: Source,
    progress: Option<Arc<Progress>>,
}

impl Outbound {
    /// A body without a way back: `progress` when it has bytes to send.
    pub fn new(body: ProxyBody) -> (Outbound, Option<Arc<Progress>>) {
        if body.is_end_stream() {
            return (Outbound::empty(), None);
        }
        let progress = Arc::new(Progress::new());
        let outbound = Outbound {
            source: Source::Owned(Box::new(body)),
            progress: Some(progress.clone()),
        };
        (outbound, Some(progress))
    }

    /// A body that the caller can take back from `held` until hyper first polls it.
    pub fn held(held: Held) -> (Outbound, Option<Arc<Progress>>) {
        let progress = Arc::new(Progress::new());
        let outbound = Outbound {
            source: Source::Held(held),
            progress: Some(progress.clone()),
        };
        (outbound, Some(progress))
    }

    pub fn empty() -> Outbound {
        Outbound {
            source: Source::Empty,
            progress: None,
        }
    }

    /// The body, taken out of its holder on the first poll: from then on it is this attempt's alone.
    fn body(&mut self) -> Result<Option<&mut ProxyBody>, BoxError> {
        if let Source::Held(held) = &self.source {
            let taken = lock(held).take();
            match taken {
                Some(body) => self.source = Source::Owned(Box::new(body)),
                // Taken back by a retry: this attempt was given up and nobody reads it.
                None => return Err("the request body went to another attempt".into()),
            }
        }
        match &mut self.source {
            Source::Empty => Ok(None),
            Source::Owned(body) => Ok(Some(body)),
            Source::Held(_) => Err("the request body went to another attempt".into()),
        }
    }
}

/// True while the body is still held: no attempt has sent a byte of it, so another one can send it whole.
pub fn is_held(held: &Held) -> bool {
    lock(held).is_some()
}

/// A body is sound whatever panicked while holding its lock: the lock only moves it.
fn lock(held: &Held) -> std::sync::MutexGuard<'_, Option<ProxyBody>> {
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let body = match this.body() {
            Ok(Some(body)) => body,
            Ok(None) => return Poll::Ready(None),
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Some(progress) = &this.progress {
            match polled {
                Poll::Pending => progress.wait(),
                Poll::Ready(_) => progress.advance(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Owned(body) => body.is_end_stream(),
            Source::Held(held) => lock(held).as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Owned(body) => body.size_hint(),
            Source::Held(held) => lock(held)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}
