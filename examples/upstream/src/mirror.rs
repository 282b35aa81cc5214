//! `mirror` mode: the request body comes back byte for byte and the rest of the request as headers, so a
//! test (or `cmp`) can check that a proxy changed nothing in a binary body, and `curl -i` shows what the
//! upstream received without decoding JSON.
//!
//! | response | from the request |
//! |---|---|
//! | body | the body, byte for byte |
//! | `content-type` | its `Content-Type`; `application/octet-stream` for a body without one |
//! | `x-echo-method`, `x-echo-path`, `x-echo-query` | the request line (`x-echo-query` only with a query) |
//! | `x-echo-body-length` | the body's length in bytes |
//! | `x-echo-header-NAME` | each request header, one response field per value, in the order received |

use super::{Body, full};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

pub async fn answer(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        let mut response = Response::new(full("the request body broke off\n"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let mut response = Response::new(full(body.clone()));
    let headers = response.headers_mut();
    let content_type = match parts.headers.get(header::CONTENT_TYPE) {
        Some(value) => Some(value.clone()),
        None if !body.is_empty() => Some(HeaderValue::from_static("application/octet-stream")),
        None => None,
    };
    if let Some(value) = content_type {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let mut add = |name: &str, value: &[u8]| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    };
    add("x-echo-method", parts.method.as_str().as_bytes());
    add("x-echo-path", parts.uri.path().as_bytes());
    if let Some(query) = parts.uri.query() {
        add("x-echo-query", query.as_bytes());
    }
    add("x-echo-body-length", body.len().to_string().as_bytes());
    for (name, value) in &parts.headers {
        add(&format!("x-echo-header-{name}"), value.as_bytes());
    }
    response
}
