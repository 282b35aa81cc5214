//! Running a route's chain on one request: `on-request` in chain order, the upstream (unless a plugin
//! answered), `on-response` in reverse order, and the body hooks of the plugins that asked for bodies.
//!
//! Each plugin of the chain holds one checked-out instance for the request; it goes back to its pool after
//! the response phase, or after the response body when it transforms bodies.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::body::{BoxError, ProxyBody};
use crate::config::OnError;
use crate::exchange::{self, Exchange, ResponseHead};
use crate::fault::{self, Fault, error_response};
use crate::plugin::bindings::{Action, LocalResponse};
use crate::plugin::{BodyKind, Instance, PluginError, PluginSlot};
use crate::proxy::{Proxy, Route, Trace, from_upstream};
use crate::upstream::Outgoing;

/// A plugin of the chain with the instance serving this request.
struct Stage {
    slot: Arc<PluginSlot>,
    instance: Instance,
    /// Whether its body hook runs on this request's body, and then on this response's body: declared in
    /// its hooks and not skipped by the header hook of that phase.
    request_body: bool,
    response_body: bool,
}

impl Stage {
    fn transforms(&self, kind: BodyKind) -> bool {
        match kind {
            BodyKind::Request => self.request_body,
            BodyKind::Response => self.response_body,
        }
    }
}

/// A plugin that failed, to be reported as the request's fault.
struct Failure {
    slot: Arc<PluginSlot>,
    error: PluginError,
}

impl Failure {
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
    client_ip: IpAddr,
    trace: &mut Trace,
) -> Response<ProxyBody> {
    let mut exchange = Box::new(Exchange {
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        method: parts.method,
        original_uri,
        headers: parts.headers,
        client_ip,
        upstream: route.upstream.clone(),
        upstreams: proxy.upstreams.clone(),
        path_policy: proxy.inbound.path,
        context: Default::default(),
        response: None,
        skip_body: false,
    });

    let mut stages: Vec<Stage> = Vec::with_capacity(route.chain.len());
    // The plugin's answer, and the plugin, to blame if the answer is invalid.
    let mut answer: Option<(LocalResponse, Arc<PluginSlot>)> = None;
    for slot in &route.chain {
        let result = match slot.checkout().await {
            Ok(mut instance) => {
                let (back, result) = instance.on_request(exchange).await;
                exchange = back;
                match result {
                    Ok(action) => {
                        stages.push(Stage {
                            slot: slot.clone(),
                            instance,
                            request_body: slot.wants_body(BodyKind::Request) && !exchange.skip_body,
                            response_body: slot.wants_body(BodyKind::Response),
                        });
                        Ok(action)
                    }
                    Err(error) => {
                        slot.checkin(instance);
                        Err(error)
                    }
                }
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(Action::Continue) => {}
            Ok(Action::Respond(local)) => {
                answer = Some((local, slot.clone()));
                break;
            }
            Err(error) => {
                let failure = Failure {
                    slot: slot.clone(),
                    error,
                };
                if let Some(response) = deny_or_skip(failure, &mut stages) {
                    return response;
                }
            }
        }
    }

    let (status, headers, body) = match answer {
        Some((local, slot)) => match local_answer(local) {
            Ok(head_and_body) => head_and_body,
            Err(error) => {
                let failure = Failure { slot, error };
                return finish_all(stages, failure.response());
            }
        },
        None => {
            trace.upstream = Some(exchange.upstream.name.clone());
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
                client_ip,
            };
            let upstream = exchange.upstream.clone();
            let sent = upstream.send(out, upstream_body).await;
            if let Some(task) = task {
                let Ok((back, failure)) = task.await else {
                    return error_response(&Fault::Internal("the request body task panicked"));
                };
                stages = back;
                if let Some(failure) = failure {
                    return finish_all(stages, failure.response());
                }
            }
            match sent {
                Ok(response) => {
                    let (parts, body) = from_upstream(response).into_parts();
                    (parts.status, parts.headers, body)
                }
                Err(e) => return finish_all(stages, error_response(&Fault::Upstream(&e))),
            }
        }
    };

    exchange.response = Some(ResponseHead { status, headers });
    let mut index = stages.len();
    while index > 0 {
        index -= 1;
        let (back, result) = stages[index].instance.on_response(exchange).await;
        exchange = back;
        stages[index].response_body &= !exchange.skip_body;
        if let Err(error) = result {
            let stage = stages.remove(index);
            let failure = Failure {
                slot: stage.slot.clone(),
                error,
            };
            stage.slot.checkin(stage.instance);
            if let Some(response) = deny_or_skip(failure, &mut stages) {
                return response;
            }
        }
    }

    let Some(ResponseHead {
        status,
        mut headers,
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
    } else {
        // The hooks change the length; the body goes out chunked.
        headers.remove(header::CONTENT_LENGTH);
        let (body, task) = spawn_body_task(BodyKind::Response, body, streaming);
        tokio::spawn(async move {
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
        });
        body
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Applies the failed plugin's `on_error`: `deny` ends the request with the fault's response, `skip` leaves
/// the plugin out and lets the chain go on.
fn deny_or_skip(failure: Failure, stages: &mut Vec<Stage>) -> Option<Response<ProxyBody>> {
    match failure.slot.settings.on_error {
        OnError::Deny => Some(finish_all(std::mem::take(stages), failure.response())),
        OnError::Skip => {
            tracing::warn!(
                route = %failure.slot.label.route,
                plugin = %failure.slot.label.plugin,
                "plugin skipped (on_error = \"skip\"): {}",
                failure.error
            );
            None
        }
    }
}

fn finish(stages: Vec<Stage>) {
    for stage in stages {
        stage.slot.checkin(stage.instance);
    }
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

/// Streams `source` through the body hooks of the stages that want this body, in the order given, and
/// hands the stages back when the body ends. Stages that do not want the body ride along untouched.
fn spawn_body_task(
    kind: BodyKind,
    source: ProxyBody,
    stages: Vec<Stage>,
) -> (ProxyBody, JoinHandle<BodyTaskResult>) {
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
    let task = tokio::spawn(pump(kind, source, stages, tx));
    (ProxyBody::Channel(rx), task)
}

async fn pump(
    kind: BodyKind,
    mut source: ProxyBody,
    mut stages: Vec<Stage>,
    tx: mpsc::Sender<Result<Bytes, BoxError>>,
) -> BodyTaskResult {
    loop {
        let (chunk, end) = match source.frame().await {
            None => (Bytes::new(), true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => (data, false),
                // Trailers cannot follow a transformed body; they are dropped.
                Err(_) => continue,
            },
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return abandon(kind, stages, None);
            }
        };
        let output = match transform(kind, &mut stages, chunk, end).await {
            Ok(output) => output,
            Err(failure) => {
                let _ = tx.send(Err("a body plugin failed".into())).await;
                return abandon(kind, stages, Some(failure));
            }
        };
        if !output.is_empty() && tx.send(Ok(output)).await.is_err() {
            // The reader is gone (client or upstream closed): the plugins saw half a body.
            return abandon(kind, stages, None);
        }
        if end {
            return (stages, None);
        }
    }
}

/// Passes one chunk through every stage that wants this body.
async fn transform(
    kind: BodyKind,
    stages: &mut [Stage],
    chunk: Bytes,
    end: bool,
) -> Result<Bytes, Failure> {
    let mut chunk = chunk;
    for stage in stages.iter_mut().filter(|s| s.transforms(kind)) {
        match stage.instance.on_body(kind, &chunk, end).await {
            Ok(output) => chunk = Bytes::from(output),
            Err(error) => {
                return Err(Failure {
                    slot: stage.slot.clone(),
                    error,
                });
            }
        }
    }
    Ok(chunk)
}

/// A body that did not reach its end leaves the body plugins mid-stream: their instances are not reused.
fn abandon(kind: BodyKind, mut stages: Vec<Stage>, failure: Option<Failure>) -> BodyTaskResult {
    for stage in stages.iter_mut().filter(|s| s.transforms(kind)) {
        stage.instance.retire();
    }
    (stages, failure)
}
