//! Running a route's chain on one request: `on-request` in chain order, the upstream (unless a plugin
//! answered), `on-response` in reverse order, and the body hooks of the plugins that transform bodies.
//!
//! A plugin leases an instance for each header hook call and gives it back as soon as the call returns,
//! so `on-request` and `on-response` may run on different instances. It keeps one only while it transforms a
//! body (from the header hook that started the body to the body's end), or for the whole request under
//! `isolation = "request"`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode, Uri, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::access_log::Tally;
use crate::body::{BoxError, ProxyBody};
use crate::config::{Isolation, OnError};
use crate::exchange::{self, Exchange, ResponseHead};
use crate::fault::{self, Fault, error_response};
use crate::outcome::Trace;
use crate::plugin::bindings::{Action, LocalResponse, ResponseHook};
use crate::plugin::{BodyKind, Lease, PluginError, PluginSlot};
use crate::proxy::{Client, Proxy, Route, from_upstream};
use crate::stats::{Hook, PluginStats};
use crate::upstream::Outgoing;

/// A plugin of the chain, for one request.
struct Stage {
    slot: Arc<PluginSlot>,
    /// The instance it keeps between calls: for the body it transforms, or for the whole request under
    /// `isolation = "request"`.
    held: Option<Lease>,
    /// Whether it transforms this request's body, and then this response's body.
    request_body: bool,
    response_body: bool,
    /// The request's plugin time, when its access line wants it.
    tally: Option<Arc<Tally>>,
}

impl Stage {
    fn new(slot: &Arc<PluginSlot>, tally: Option<&Arc<Tally>>) -> Stage {
        Stage {
            slot: slot.clone(),
            held: None,
            request_body: false,
            response_body: false,
            tally: tally.cloned(),
        }
    }

    fn transforms(&self, kind: BodyKind) -> bool {
        match kind {
            BodyKind::Request => self.request_body,
            BodyKind::Response => self.response_body,
        }
    }

    /// The instance for the next call: the one kept, or a new lease. Takes the stage's fields, not the
    /// stage, so that a [`CallTimer`] may borrow the others meanwhile.
    async fn lease(held: &mut Option<Lease>, slot: &PluginSlot) -> Result<Lease, PluginError> {
        match held.take() {
            Some(lease) => Ok(lease),
            None => slot.lease().await,
        }
    }

    /// After a call: keeps the instance while this request still needs it, gives it back otherwise.
    fn settle(&mut self, lease: Lease, for_body: bool) {
        if for_body || self.slot.settings.isolation == Isolation::Request {
            self.held = Some(lease);
        } else {
            self.slot.release(lease);
        }
    }

    /// The body of `kind` is over (streamed, skipped or abandoned): its instance is free.
    fn end_body(&mut self, kind: BodyKind) {
        match kind {
            BodyKind::Request => self.request_body = false,
            BodyKind::Response => self.response_body = false,
        }
        if self.slot.settings.isolation == Isolation::Pooled
            && let Some(lease) = self.held.take()
        {
            self.slot.release(lease);
        }
    }

    async fn on_request(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<Action, PluginError>) {
        let timer = CallTimer::start(Hook::OnRequest, &self.slot, self.tally.as_deref());
        let mut lease = match Stage::lease(&mut self.held, &self.slot).await {
            Ok(lease) => lease,
            Err(error) => return (exchange, Err(error)),
        };
        let (exchange, result) = lease.instance.on_request(exchange).await;
        drop(timer);
        self.request_body = matches!(result, Ok(Action::Continue))
            && self.slot.wants_body(BodyKind::Request)
            && !exchange.skip_body;
        self.settle(lease, self.request_body);
        (exchange, result)
    }

    async fn on_response(
        &mut self,
        exchange: Box<Exchange>,
    ) -> (Box<Exchange>, Result<(), PluginError>) {
        let timer = CallTimer::start(Hook::OnResponse, &self.slot, self.tally.as_deref());
        let mut lease = match Stage::lease(&mut self.held, &self.slot).await {
            Ok(lease) => lease,
            Err(error) => return (exchange, Err(error)),
        };
        let (exchange, result) = lease.instance.on_response(exchange).await;
        drop(timer);
        // A plugin without a response hook set no transform either, whatever body hooks it declared.
        let ran = matches!(result, Ok(ResponseHook::Ran));
        let result = result.map(|hook| self.slot.response_hook_is(hook));
        self.response_body = ran && self.slot.wants_body(BodyKind::Response) && !exchange.skip_body;
        self.settle(lease, self.response_body);
        (exchange, result)
    }

    fn finish(mut self) {
        if let Some(lease) = self.held.take() {
            self.slot.release(lease);
        }
    }
}

/// Times one call (its wait for an instance included) into the entry's histogram and the request's plugin
/// time when dropped, so that a call abandoned half-way, its client gone, counts too.
struct CallTimer<'a> {
    stats: &'a PluginStats,
    tally: Option<&'a Tally>,
    hook: Hook,
    started: Instant,
}

impl CallTimer<'_> {
    fn start<'a>(hook: Hook, slot: &'a PluginSlot, tally: Option<&'a Tally>) -> CallTimer<'a> {
        CallTimer {
            stats: &slot.stats,
            tally,
            hook,
            started: Instant::now(),
        }
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.stats.called(self.hook, took);
        if let Some(tally) = self.tally {
            tally.plugin_time(took);
        }
    }
}

/// A plugin that failed, to be reported as the request's fault.
struct Failure {
    slot: Arc<PluginSlot>,
    error: PluginError,
}

impl Failure {
    /// A plugin's failed call, counted for its entry.
    fn new(slot: Arc<PluginSlot>, error: PluginError) -> Failure {
        slot.stats.failed(&error);
        Failure { slot, error }
    }

    fn fault(&self) -> Fault<'_> {
        Fault::Plugin {
            label: &self.slot.label,
            error: &self.error,
        }
    }

    fn response(&self) -> Response<ProxyBody> {
        error_response(&self.fault())
    }
}

/// Chunks in flight between a body-hook task and its reader: enough to overlap the plugin's work with I/O,
/// small enough that memory stays flat whatever the body size.
const BODY_CHANNEL_CHUNKS: usize = 4;

/// Runs the chain on a request admitted by [`crate::inbound`]: `parts.uri` is the normalised origin-form
/// target, `original_uri` what the client sent.
pub async fn run(
    proxy: &Proxy,
    route: &Route,
    parts: Parts,
    original_uri: Uri,
    body: ProxyBody,
    client: Client,
    trace: &mut Trace,
) -> Response<ProxyBody> {
    let mut exchange = Box::new(Exchange {
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        method: parts.method,
        original_uri,
        headers: parts.headers,
        header_budget: proxy.plugin_bounds.headers(),
        client_ip: client.ip,
        upstream: route.upstream.clone(),
        upstreams: proxy.upstreams.clone(),
        path_policy: proxy.inbound.path,
        context: proxy.plugin_bounds.context(),
        response: None,
        skip_body: false,
        body: Some(body),
        scheme: client.scheme,
    });

    let mut stages: Vec<Stage> = Vec::with_capacity(route.chain.len());
    // The plugin's answer, and the plugin, to blame if the answer is invalid.
    let mut answer: Option<(LocalResponse, Arc<PluginSlot>)> = None;
    for slot in &route.chain {
        let mut stage = Stage::new(slot, trace.tally());
        let snapshot = rolls_back(slot).then(|| exchange.snapshot());
        let (back, result) = stage.on_request(exchange).await;
        exchange = back;
        match result {
            Ok(Action::Continue) => stages.push(stage),
            Ok(Action::Respond(local)) => {
                stages.push(stage);
                answer = Some((local, slot.clone()));
                break;
            }
            Err(error) => {
                if let Some(snapshot) = snapshot {
                    exchange.restore(snapshot);
                }
                stage.finish();
                let failure = Failure::new(slot.clone(), error);
                if let Some(response) = deny_or_skip(failure, &mut stages) {
                    return response;
                }
            }
        }
    }

    // The body as the request phase left it: read whole by a plugin, or still streaming.
    let body = exchange.body.take().unwrap_or_else(ProxyBody::empty);
    // The upstream response's extensions go on to the client's: a 101's upgraded connection is there.
    let mut extensions = http::Extensions::new();
    let (status, headers, body) = match answer {
        Some((local, slot)) => {
            // The request body goes nowhere: a transform a plugin set for it is over.
            stages
                .iter_mut()
                .for_each(|s| s.end_body(BodyKind::Request));
            match local_answer(local) {
                Ok(head_and_body) => head_and_body,
                Err(error) => {
                    let failure = Failure::new(slot, error);
                    return finish_all(stages, failure.response());
                }
            }
        }
        None => {
            trace.sent_to(&exchange.upstream);
            let (upstream_body, task) = if stages.iter().any(|s| s.request_body) {
                let (body, task) =
                    spawn_body_task(BodyKind::Request, body, std::mem::take(&mut stages));
                (body, Some(task))
            } else {
                (body, None)
            };
            let out = Outgoing {
                method: exchange.method.clone(),
                path: &exchange.path,
                query: exchange.query.as_deref(),
                headers: exchange.headers.clone(),
                hop: client.hop,
                context: Some(&exchange.context),
                scheme: exchange.scheme,
            };
            let upstream = exchange.upstream.clone();
            let sent = upstream.send(out, upstream_body).await;
            if let Some(task) = task {
                if sent.is_err() {
                    // The upstream failed: its answer must not wait for the rest of the client's body. The
                    // task's instances are dropped with it, half-way through a body.
                    task.abort();
                }
                match task.await {
                    Ok((back, failure)) => {
                        stages = back;
                        if let Some(failure) = failure {
                            return finish_all(stages, failure.response());
                        }
                    }
                    Err(join) if join.is_cancelled() => {}
                    Err(_) => {
                        return error_response(&Fault::Internal("the request body task panicked"));
                    }
                }
            }
            match sent {
                Ok(response) => {
                    let (parts, body) = from_upstream(response).into_parts();
                    extensions = parts.extensions;
                    (parts.status, parts.headers, body)
                }
                Err(e) => return finish_all(stages, error_response(&Fault::Upstream(&e))),
            }
        }
    };

    exchange.response = Some(ResponseHead {
        status,
        headers,
        header_budget: proxy.plugin_bounds.headers(),
    });
    let mut index = stages.len();
    while index > 0 {
        index -= 1;
        let Some(stage) = stages.get_mut(index) else {
            break;
        };
        // An earlier response showed the plugin has no `on-response`: no call, and nothing to roll back.
        if !stage.slot.has_response_hook() {
            continue;
        }
        let snapshot = rolls_back(&stage.slot).then(|| exchange.snapshot());
        let (back, result) = stage.on_response(exchange).await;
        exchange = back;
        if let Err(error) = result {
            if let Some(snapshot) = snapshot {
                exchange.restore(snapshot);
            }
            let stage = stages.remove(index);
            let failure = Failure::new(stage.slot.clone(), error);
            stage.finish();
            if let Some(response) = deny_or_skip(failure, &mut stages) {
                return response;
            }
        }
    }

    let Some(ResponseHead {
        status,
        mut headers,
        ..
    }) = exchange.response.take()
    else {
        return finish_all(
            stages,
            error_response(&Fault::Internal("the response head went missing")),
        );
    };
    stages.reverse();
    let (streaming, done): (Vec<Stage>, Vec<Stage>) =
        stages.into_iter().partition(|s| s.response_body);
    finish(done);
    let body = if streaming.is_empty() {
        body
    } else if body.is_end_stream() {
        // Nothing more will come, so the plugins' last call is made before the head goes: an answer that
        // stays empty then ends with its head. gRPC sends an error as a head alone (trailers-only), and a
        // client reads a head not marked as the end as one whose status is still to come.
        let mut streaming = streaming;
        let ended = transform(BodyKind::Response, &mut streaming, Bytes::new(), true).await;
        finish(streaming);
        match ended {
            Ok(output) => {
                headers.remove(header::CONTENT_LENGTH);
                ProxyBody::full(output)
            }
            Err(failure) => return failure.response(),
        }
    } else {
        // The hooks change the length; the body goes out chunked.
        headers.remove(header::CONTENT_LENGTH);
        let (body, task) = spawn_body_task(BodyKind::Response, body, streaming);
        let reaping = async move {
            match task.await {
                Ok((stages, failure)) => {
                    if let Some(failure) = failure {
                        // The head is already sent: the client sees the body cut short, the log says why.
                        fault::report(&failure.fault());
                    }
                    finish(stages);
                }
                Err(_) => {
                    fault::report(&Fault::Internal("the response body task panicked"));
                }
            }
        };
        tokio::spawn(reaping.in_current_span());
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    *response.extensions_mut() = extensions;
    response
}

/// Whether a failed call of this plugin must leave no trace: with `skip`, the request goes on as if the
/// plugin were not in the chain.
fn rolls_back(slot: &PluginSlot) -> bool {
    slot.settings.on_error == OnError::Skip
}

/// Applies the failed plugin's `on_error`: `deny` ends the request with the fault's response, `skip` leaves
/// the plugin out and lets the chain go on.
fn deny_or_skip(failure: Failure, stages: &mut Vec<Stage>) -> Option<Response<ProxyBody>> {
    match failure.slot.settings.on_error {
        OnError::Deny => Some(finish_all(std::mem::take(stages), failure.response())),
        OnError::Skip => {
            failure.slot.stats.skipped();
            fault::report_skipped(&failure.slot.label, &failure.error);
            None
        }
    }
}

fn finish(stages: Vec<Stage>) {
    stages.into_iter().for_each(Stage::finish);
}

fn finish_all(stages: Vec<Stage>, response: Response<ProxyBody>) -> Response<ProxyBody> {
    finish(stages);
    response
}

/// A plugin's own answer, checked like any header a plugin sets.
fn local_answer(local: LocalResponse) -> Result<(StatusCode, HeaderMap, ProxyBody), PluginError> {
    let status = exchange::settable_status(local.status).map_err(PluginError::InvalidAnswer)?;
    let mut headers = HeaderMap::with_capacity(local.headers.len());
    for (name, value) in &local.headers {
        let name = exchange::settable_name(name).map_err(PluginError::InvalidAnswer)?;
        let value = exchange::settable_value(value).map_err(PluginError::InvalidAnswer)?;
        headers.append(name, value);
    }
    Ok((status, headers, ProxyBody::full(local.body)))
}

type BodyTaskResult = (Vec<Stage>, Option<Failure>);

/// Streams `source` through the body hooks of the stages that transform this body, in the order given, and
/// hands the stages back when the body ends, their body instances given back. Stages that do not transform
/// the body ride along untouched.
fn spawn_body_task(
    kind: BodyKind,
    source: ProxyBody,
    stages: Vec<Stage>,
) -> (ProxyBody, JoinHandle<BodyTaskResult>) {
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    let task = tokio::spawn(pump(kind, source, stages, tx).in_current_span());
    (ProxyBody::Channel(rx), task)
}

async fn pump(
    kind: BodyKind,
    mut source: ProxyBody,
    mut stages: Vec<Stage>,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) -> BodyTaskResult {
    let failure = 'pump: loop {
        // A reader gone while the source is silent (the client left during a stalled upstream body) frees
        // the plugins' instances at once, not when the source's idle timeout ends it.
        let next = tokio::select! {
            next = source.frame() => next,
            () = tx.closed() => break None,
        };
        // Trailers come last, so they end the body for the plugins, which see data only; they follow the
        // plugins' last output as they came (gRPC's status is in them).
        let (chunk, trailers) = match next {
            None => (None, None),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => (Some(data), None),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => (None, Some(trailers)),
                    // A kind of frame a later http-body may add: not the body's end.
                    Err(_) => continue,
                },
            },
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                break None;
            }
        };
        let end = chunk.is_none();
        let output = match transform(kind, &mut stages, chunk.unwrap_or_default(), end).await {
            Ok(output) => output,
            Err(failure) => {
                let _ = tx.send(Err("a body plugin failed".into())).await;
                break Some(failure);
            }
        };
        let data = (!output.is_empty()).then(|| Frame::data(output));
        for frame in [data, trailers.map(Frame::trailers)].into_iter().flatten() {
            // A gone reader (client or upstream closed) leaves the plugins half a body.
            if tx.send(Ok(frame)).await.is_err() {
                break 'pump None;
            }
        }
        if end {
            break None;
        }
    };
    for stage in &mut stages {
        stage.end_body(kind);
    }
    (stages, failure)
}

/// Passes one chunk through every stage that transforms this body.
async fn transform(
    kind: BodyKind,
    stages: &mut [Stage],
    chunk: Bytes,
    end: bool,
) -> Result<Bytes, Failure> {
    let mut chunk = chunk;
    for stage in stages.iter_mut().filter(|s| s.transforms(kind)) {
        let timer = CallTimer::start(Hook::body(kind), &stage.slot, stage.tally.as_deref());
        let result = match stage.held.as_mut() {
            Some(lease) => lease.instance.on_body(kind, &chunk, end).await,
            None => Err(PluginError::Trap("no instance held for its body".into())),
        };
        drop(timer);
        match result {
            Ok(output) => chunk = Bytes::from(output),
            Err(error) => return Err(Failure::new(stage.slot.clone(), error)),
        }
    }
    Ok(chunk)
}
