//! The admin listener: health, readiness, metrics, the running config and reload, on an address of their
//! own, off by default, so that the proxy's own port answers only what routes say.
//!
//! | path | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the config is loaded and the listeners are bound; 503 while draining |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) |
//! | `GET /config` | the running config file, secrets redacted ([`crate::redact`]) |
//! | `POST /reload` | reloads the config file: 200 with the new generation, or 400 with `weir check`'s errors |

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::redact;
use crate::reload::Control;

/// The content type of the OpenMetrics text the registry writes, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics::new(control.clone())));
    let registry = Arc::new(registry);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (registry, control) = (registry.clone(), control.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (registry, control) = (registry.clone(), control.clone());
                async move { Ok::<_, Infallible>(answer(&registry, &control, &request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    registry: &Registry,
    control: &Control,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/readyz") if control.is_ready() => text(StatusCode::OK, "ready\n".into()),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        (&Method::GET, "/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => with_type(StatusCode::OK, body, OPENMETRICS),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n".into()),
            }
        }
        (&Method::GET, "/config") => with_type(
            StatusCode::OK,
            redact::config(&control.running_text().await),
            "application/toml; charset=utf-8",
        ),
        (&Method::POST, "/reload") => match control.reload().await {
            Ok(generation) => text(
                StatusCode::OK,
                format!(
                    "reloaded {}: generation {generation}\n",
                    control.file().display()
                ),
            ),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/config") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into())
        }
        (_, "/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".into()),
        _ => text(
            StatusCode::NOT_FOUND,
            "/healthz, /readyz, /metrics, /config or POST /reload\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Asks the admin listener at `address` to reload, as `weir reload` does: its status and what it said.
pub async fn post_reload(address: std::net::SocketAddr) -> anyhow::Result<(StatusCode, String)> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::post("/reload")
        .header(header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
