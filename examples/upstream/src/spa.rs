//! `spa` mode: the single-page app behind scenario 5's proxy, from files built into the binary
//! (`examples/upstream/spa/`), so the example needs no web server and no directory of its own.
//!
//! | path | answer |
//! |---|---|
//! | `/`, `/index.html` | the app page: `<main id="app">`, a `#call-api` button that POSTs `/setattr_api` and shows the answer in `#api-result`, a `#logout` button that POSTs `/logout`, then goes to `/` |
//! | `/login.html` | the login page: a form `#login-form` with `#username`, `#password` and the submit button `#login` (only on this page, so also its marker); it POSTs `{"username", "password"}` as JSON to `/login_api` and goes to `/` on success, or shows the answer's `message` in `#error` |
//! | `/app.js`, `/style.css` | the pages' one script and style sheet |
//! | a path ending in `_api`, or under `/api/` | the app's API: `{"api": path, "method", "query", "body"}` (pretty JSON) |
//! | anything else | `404 not found` |
//!
//! Pages and assets answer `GET` and `HEAD` (else `405`). Pages are `Cache-Control: private, no-cache`:
//! behind spa-router in `rewrite` mode one URL serves the app or the login page by token, so no shared
//! cache may keep either.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, full, json_response};

const INDEX: &str = include_str!("../spa/index.html");
const LOGIN: &str = include_str!("../spa/login.html");
const SCRIPT: &str = include_str!("../spa/app.js");
const STYLE: &str = include_str!("../spa/style.css");

pub async fn answer(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let file = match path {
        "/" | "/index.html" => Some((INDEX, "text/html; charset=utf-8", "private, no-cache")),
        "/login.html" => Some((LOGIN, "text/html; charset=utf-8", "private, no-cache")),
        "/app.js" => Some((SCRIPT, "text/javascript; charset=utf-8", "no-cache")),
        "/style.css" => Some((STYLE, "text/css; charset=utf-8", "no-cache")),
        _ => None,
    };
    if let Some((text, content_type, cache)) = file {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let mut response = Response::new(full(text));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return response;
    }
    if path.ends_with("_api") || path.starts_with("/api/") {
        return api(req).await;
    }
    plain(StatusCode::NOT_FOUND, "not found\n")
}

/// The app's API: what it was asked.
async fn api(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return plain(StatusCode::BAD_REQUEST, "the request body broke off\n");
    };
    #[derive(serde::Serialize)]
    struct Api<'a> {
        api: &'a str,
        method: &'a str,
        query: Option<&'a str>,
        body: std::borrow::Cow<'a, str>,
    }
    json_response(
        StatusCode::OK,
        &Api {
            api: parts.uri.path(),
            method: parts.method.as_str(),
            query: parts.uri.query(),
            body: String::from_utf8_lossy(&body),
        },
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
