//! What one request came to, recorded once, when it is over: its route's status class and latency
//! ([`crate::stats`]) and its access line ([`crate::access_log`]).
//!
//! A request is over when its response body has been handed to the connection, or dropped because the
//! client went away. One whose handler is dropped before it has a response (the client left while the
//! upstream or a plugin was still working) is recorded then, as 499, nginx's "client closed request".

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{self, Line, Tally};
use crate::body::{BoxError, ProxyBody};
use crate::config::AccessLog;
use crate::proxy::Route;
use crate::redact;
use crate::stats::RouteStats;
use crate::upstream::Upstream;

/// nginx's status for a request whose client closed the connection before the answer.
const CLIENT_CLOSED: u16 = 499;

/// One request being handled, recorded when dropped.
pub struct Trace {
    started: Instant,
    /// The matched route's counters; until a route matches, those of requests that matched none.
    stats: Arc<RouteStats>,
    /// The response's status, once there is one.
    answered: Option<StatusCode>,
    bytes_out: u64,
    /// Only when the access log is on: the rest is gathered for it alone.
    access: Option<Access>,
}

struct Access {
    format: AccessLog,
    client: IpAddr,
    /// The request's ID, when requests get one.
    id: Option<HeaderValue>,
    method: Method,
    target: Uri,
    path: Option<Uri>,
    route: Option<Arc<str>>,
    upstream: Option<Arc<str>>,
    tally: Arc<Tally>,
    /// The time to the response's head, which only the access line shows.
    head: Option<Duration>,
}

/// The target as the client wrote it: on HTTP/2, `:path` alone, which hyper has joined with `:scheme` and
/// `:authority` into one URI (see [`crate::inbound`]).
fn sent_target<B>(request: &Request<B>) -> Uri {
    match request.uri().path_and_query() {
        Some(path) if request.version() == Version::HTTP_2 => Uri::from(path.clone()),
        _ => request.uri().clone(),
    }
}

impl Trace {
    /// Starts the clock on a request that has just arrived.
    pub fn begin<B>(
        format: AccessLog,
        unrouted: &Arc<RouteStats>,
        request: &Request<B>,
        client: IpAddr,
        id: Option<HeaderValue>,
    ) -> Trace {
        let access = (format != AccessLog::Off).then(|| Access {
            format,
            client,
            id,
            method: request.method().clone(),
            target: sent_target(request),
            path: None,
            route: None,
            upstream: None,
            tally: Arc::default(),
            head: None,
        });
        Trace {
            started: Instant::now(),
            stats: unrouted.clone(),
            answered: None,
            bytes_out: 0,
            access,
        }
    }

    /// The request was admitted with `uri`, its path in the normal form.
    pub fn admitted(&mut self, uri: &Uri) {
        if let Some(access) = &mut self.access {
            access.path = Some(uri.clone());
        }
    }

    pub fn routed(&mut self, route: &Route) {
        self.stats = route.stats.clone();
        if let Some(access) = &mut self.access {
            access.route = Some(route.name.clone());
        }
    }

    /// The request is being sent to `upstream`.
    pub fn sent_to(&mut self, upstream: &Upstream) {
        if let Some(access) = &mut self.access {
            access.upstream = Some(upstream.shared_name().clone());
        }
    }

    /// Where the request's body bytes and plugin time are added up, when the access log wants them.
    pub fn tally(&self) -> Option<&Arc<Tally>> {
        self.access.as_ref().map(|a| &a.tally)
    }

    /// The response the client gets, which records the request when its body is done with.
    pub fn respond(mut self, response: Response<ProxyBody>) -> Response<ServedBody> {
        self.answered = Some(response.status());
        if let Some(access) = &mut self.access {
            access.head = Some(self.started.elapsed());
        }
        response.map(|body| ServedBody { body, trace: self })
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let status = self.answered.map_or(CLIENT_CLOSED, |s| s.as_u16());
        self.stats.served(status, took);
        let Some(access) = &self.access else {
            return;
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let line = Line {
            time: SystemTime::now(),
            client: access.client,
            method: access.method.as_str(),
            target: &redact::target(&access.target),
            path: access.path.as_ref().map(Uri::path),
            route: access.route.as_deref(),
            upstream: access.upstream.as_deref(),
            status,
            head_us: access.head.map(micros),
            duration_us: micros(took),
            plugins_us: micros(access.tally.plugins()),
            bytes_in: access.tally.bytes_in(),
            bytes_out: self.bytes_out,
            request_id: access.id.as_ref().and_then(|id| id.to_str().ok()),
        };
        access_log::write(access.format, &line);
    }
}

/// The response body as the client's connection takes it: counts what it hands on, and records the
/// request when dropped, which hyper does once the body has ended or the connection has failed.
pub struct ServedBody {
    body: ProxyBody,
    trace: Trace,
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.trace.bytes_out += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
