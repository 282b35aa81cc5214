//! A small, fast upstream for Weir's demo, tests and benchmark.
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
//! | anything else | a JSON echo of the request: upstream name, method, path, query, headers, body |
//!
//! Every answer carries `x-upstream: NAME`, so a test can see which upstream served it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

mod verify;
pub use verify::Verifier;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, name: &str) {
    serve_with(listener, name, None).await
}

/// Like [`serve`], and with a verifier `GET /verify` checks bearer tokens (nginx `auth_request` target).
pub async fn serve_with(listener: TcpListener, name: &str, verifier: Option<Verifier>) {
    let shared = Arc::new(Shared {
        name: name.into(),
        verifier,
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
    verifier: Option<Verifier>,
}

async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let name = &shared.name;
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (head, arg) = (
        parts.next().unwrap_or(""),
        parts.next().and_then(|a| a.parse::<u64>().ok()),
    );
    let (status, content_type, body): (StatusCode, &str, Body) = match (head, arg) {
        ("json", None) => (StatusCode::OK, "application/json", full(json_document())),
        ("verify", None) if shared.verifier.is_some() => {
            let authorization = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let ok = shared
                .verifier
                .as_ref()
                .is_some_and(|v| v.accepts(authorization));
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
        ("respond", Some(n)) => return Ok(respond(name, req.uri().query(), n)),
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
    headers.insert("content-type", content_type.parse().expect("valid"));
    headers.insert(
        "x-upstream",
        name.parse().unwrap_or_else(|_| "?".parse().expect("valid")),
    );
    Ok(response)
}

/// `/respond/N`: a response whose status, body, framing and headers the query chooses.
fn respond(name: &str, query: Option<&str>, n: u64) -> Response<Body> {
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
    response.headers_mut().insert(
        "x-upstream",
        name.parse().unwrap_or_else(|_| "?".parse().expect("valid")),
    );
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

fn full(bytes: impl Into<Bytes>) -> Body {
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
