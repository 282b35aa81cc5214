//! A small, fast upstream for Weir's demo, tests, benchmark and the scenarios under `examples/`.
//!
//! `--mode` chooses what it is (`weir-upstream --mode shard --name a`); each mode is one small module, so
//! an example's upstream is a mode of this binary, not a dependency of its own.
//!
//! | mode | answers |
//! |---|---|
//! | `echo` (default) | the paths below, and a JSON echo of any other request |
//! | `mirror` | the request body byte for byte (with its `Content-Type`), the request line as `x-echo-method`, `x-echo-path`, `x-echo-query`, and each request header as `x-echo-header-NAME`: binary bodies and headers compared as bytes (scenario 2) |
//! | `shard` | `{"shard": NAME, "method", "path", "query"}` (pretty JSON): which backend served (scenario 4) |
//! | `spa` | a small single-page app from files built into the binary (scenario 5): `/` and `/index.html` the app page, `/login.html` the login page, `/app.js`, `/style.css` (element ids in [`spa`]); a path ending in `_api` or under `/api/` answers a JSON echo `{"api", "method", "query", "body"}`; anything else 404 |
//! | `erp-transactions`, `erp-inventory` | an ERP service (scenario 1) with in-memory CRUD under `/shops/{shop_id}/transactions` (or `/inventory`); needs `--api-key`, see [`erp`] |
//!
//! In `echo` mode:
//!
//! | path | answer |
//! |---|---|
//! | `/json` | a fixed 1 KiB JSON document (the benchmark body) |
//! | `/text/N` | N bytes of text, `Content-Length` set |
//! | `/stream/N` | N bytes sent chunked, 64 KiB at a time |
//! | `/trickle/N` | N bytes sent chunked, 100 bytes at a time |
//! | `/sleep/MS` | waits MS milliseconds, then echoes |
//! | `/verify` | with `--jwt-secret`: 200 for a valid HS256 `Authorization: Bearer` token, else 401 |
//! | `/status/CODE` | an empty answer with that status |
//! | `/respond/N?…` | N bytes shaped by the query: `status=CODE`, `body=noise` (incompressible), `chunk=SIZE` (sent chunked, SIZE bytes at a time; without it `Content-Length` is set), and any other `name=value` becomes a response header (`content-type=image/png`, `etag=%22v1%22`) |
//! | anything else | a JSON echo of the request: upstream name, method, path, query, headers, body (lossy UTF-8; `body_len` counts the bytes) |
//!
//! Every answer, in every mode, carries `x-upstream: NAME`, so a test can see which upstream served it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub mod erp;
mod mirror;
pub mod spa;
mod verify;
pub use verify::Verifier;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the upstream is: `--mode`, one per scenario's kind of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Echo,
    Mirror,
    Shard,
    Spa,
    Erp(erp::Service),
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "echo" => Mode::Echo,
            "mirror" => Mode::Mirror,
            "shard" => Mode::Shard,
            "spa" => Mode::Spa,
            "erp-transactions" => Mode::Erp(erp::Service::Transactions),
            "erp-inventory" => Mode::Erp(erp::Service::Inventory),
            _ => {
                return Err(format!(
                    "unknown mode `{s}` (echo, mirror, shard, spa, erp-transactions, erp-inventory)"
                ));
            }
        })
    }
}

/// Everything the command line chooses.
pub struct Options {
    /// Sent back as `x-upstream` (and as `shard` in `shard` mode).
    pub name: String,
    pub mode: Mode,
    /// `GET /verify`'s token check, in `echo` mode.
    pub verifier: Option<Verifier>,
    /// The `X-API-Key` an ERP service requires.
    pub api_key: Option<String>,
}

impl Options {
    pub fn echo(name: &str) -> Options {
        Options {
            name: name.into(),
            mode: Mode::Echo,
            verifier: None,
            api_key: None,
        }
    }
}

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: &str) {
    serve_options(listener, Options::echo(name)).await
}

/// Like [`serve`], and with a verifier `GET /verify` checks bearer tokens (nginx `auth_request` target).
pub async fn serve_with(listener: TcpListener, name: &str, verifier: Option<Verifier>) {
    serve_options(
        listener,
        Options {
            verifier,
            ..Options::echo(name)
        },
    )
    .await
}

/// Serves in the mode `options` chooses until the task is dropped. An ERP mode without an `api_key`
/// refuses every request.
pub async fn serve_options(listener: TcpListener, options: Options) {
    let handler = match options.mode {
        Mode::Echo => Handler::Echo(options.verifier),
        Mode::Mirror => Handler::Mirror,
        Mode::Shard => Handler::Shard,
        Mode::Spa => Handler::Spa,
        Mode::Erp(service) => {
            Handler::Erp(erp::Erp::new(service, options.api_key.unwrap_or_default()))
        }
    };
    let shared = Arc::new(Shared {
        name: options.name.into(),
        handler,
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Shared {
    name: Arc<str>,
    handler: Handler,
}

/// A mode with what it keeps.
enum Handler {
    Echo(Option<Verifier>),
    Mirror,
    Shard,
    Spa,
    Erp(erp::Erp),
}

/// Every mode's answer, with `x-upstream` added.
async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut response = match &shared.handler {
        Handler::Echo(verifier) => echo_mode(&shared.name, verifier.as_ref(), req).await,
        Handler::Mirror => mirror::answer(req).await,
        Handler::Shard => shard(&shared.name, &req),
        Handler::Spa => spa::answer(req).await,
        Handler::Erp(erp) => erp.answer(req).await,
    };
    response.headers_mut().insert(
        "x-upstream",
        HeaderValue::from_str(&shared.name).unwrap_or(HeaderValue::from_static("?")),
    );
    Ok(response)
}

/// `shard` mode: which backend answered, and the request line it saw.
fn shard(name: &str, req: &Request<Incoming>) -> Response<Body> {
    #[derive(serde::Serialize)]
    struct Shard<'a> {
        shard: &'a str,
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
    }
    json_response(
        StatusCode::OK,
        &Shard {
            shard: name,
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
        },
    )
}

/// A pretty-printed JSON answer with a final newline, so that curl's output ends its line.
pub(crate) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `echo` mode: the sized bodies, statuses and the verifier by path, and the echo of anything else.
async fn echo_mode(
    name: &str,
    verifier: Option<&Verifier>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (head, arg) = (
        parts.next().unwrap_or(""),
        parts.next().and_then(|a| a.parse::<u64>().ok()),
    );
    let (status, content_type, body): (StatusCode, &'static str, Body) = match (head, arg) {
        ("json", None) => (StatusCode::OK, "application/json", full(json_document())),
        ("verify", None) if verifier.is_some() => {
            let authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let ok = verifier.is_some_and(|v| v.accepts(authorization));
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            (status, "text/plain", full(Bytes::new()))
        }
        ("text", Some(n)) => (StatusCode::OK, "text/plain", full(text(n as usize))),
        ("stream", Some(n)) => (StatusCode::OK, "text/plain", chunked(n, 64 << 10)),
        ("trickle", Some(n)) => (StatusCode::OK, "text/plain", chunked(n, 100)),
        ("status", Some(code)) => (
            StatusCode::from_u16(code as u16).unwrap_or(StatusCode::BAD_REQUEST),
            "text/plain",
            full(Bytes::new()),
        ),
        ("respond", Some(n)) => return respond(req.uri().query(), n),
        ("sleep", Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (
                StatusCode::OK,
                "application/json",
                full(echo(name, req).await),
            )
        }
        _ => (
            StatusCode::OK,
            "application/json",
            full(echo(name, req).await),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `/respond/N`: a response whose status, body, framing and headers the query chooses.
fn respond(query: Option<&str>, n: u64) -> Response<Body> {
    let mut response = Response::new(Body::default());
    let (mut noisy, mut chunk) = (false, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // `%XX` escapes decoded; `+` stays as it is (this is a URI query, not a form).
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match key {
            "status" => {
                *response.status_mut() = value
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::BAD_REQUEST)
            }
            "body" => noisy = value == "noise",
            "chunk" => chunk = value.parse::<usize>().ok().filter(|&c| c > 0),
            _ => {
                if let (Ok(k), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(key.as_bytes()),
                    hyper::header::HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().append(k, v);
                }
            }
        }
    }
    let bytes = if noisy {
        noise(n as usize)
    } else {
        text(n as usize)
    };
    *response.body_mut() = match chunk {
        Some(size) => chunked_bytes(bytes, size),
        None => full(bytes),
    };
    response
}

/// `n` bytes that do not compress: a fixed xorshift sequence, the same on every call.
pub fn noise(n: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn chunked_bytes(bytes: Bytes, chunk: usize) -> Body {
    let stream = futures_util::stream::unfold(bytes, move |mut left| async move {
        if left.is_empty() {
            return None;
        }
        let piece = left.split_to(left.len().min(chunk));
        Some((Ok(Frame::data(piece)), left))
    });
    StreamBody::new(stream).boxed()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `n` bytes of readable text: a repeating alphabet line.
pub fn text(n: usize) -> Bytes {
    const LINE: &[u8] = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    LINE.iter()
        .copied()
        .cycle()
        .take(n)
        .collect::<Vec<u8>>()
        .into()
}

fn chunked(total: u64, chunk: usize) -> Body {
    let block = text(chunk);
    let stream = futures_util::stream::unfold(total, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(block.len() as u64) as usize;
            Some((Ok(Frame::data(block.slice(..take))), left - take as u64))
        }
    });
    StreamBody::new(stream).boxed()
}

/// The 1 KiB JSON body of the benchmark.
pub fn json_document() -> Bytes {
    let items: Vec<serde_json::Value> = (0..12)
        .map(|i| serde_json::json!({"id": i, "name": format!("item-{i}"), "price": 10 + i, "tags": ["a", "b"]}))
        .collect();
    let mut doc = serde_json::to_vec(&serde_json::json!({"items": items})).expect("serialisable");
    doc.resize(1024, b' ');
    doc.into()
}

async fn echo(name: &str, req: Request<Incoming>) -> Bytes {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    }))
    .expect("serialisable")
    .into()
}
