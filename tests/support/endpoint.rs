//! Endpoints for the upstream tests: a hyper server on a loopback port that answers as told (a status, after
//! a delay; or reading the request and hanging up), over HTTP/1.1, h2c or TLS, and counts what reaches it.
//! Its answer's body is the request's, and the request's trailers come back as the answer's.
//! Each runs on a runtime of its own, so that a test can kill it with every connection it holds, as a
//! crashed process would be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::WithTrailers;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// How an endpoint answers.
#[derive(Clone)]
pub struct Behaviour {
    pub status: StatusCode,
    /// Before the response head.
    pub delay: Duration,
    /// The answer to paths under `/health`.
    pub health: StatusCode,
    /// Read the whole request, then close the connection without an answer.
    pub hang_up: bool,
    /// Speak HTTP/2 only (h2c in clear, or whatever TLS negotiated otherwise).
    pub http2: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: StatusCode::OK,
            delay: Duration::ZERO,
            health: StatusCode::OK,
            hang_up: false,
            http2: false,
            tls: None,
        }
    }
}

/// What reached an endpoint.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    paths: Mutex<HashMap<String, u64>>,
    /// Requests being answered now, and the most there were at once.
    in_flight: AtomicU64,
    peak: AtomicU64,
}

/// One request being answered, counted in [`Seen::in_flight`] until dropped.
struct Answering<'a>(&'a Seen);

impl<'a> Answering<'a> {
    fn begin(seen: &'a Seen) -> Answering<'a> {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.peak.fetch_max(now, Ordering::SeqCst);
        Answering(seen)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct Endpoint {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    runtime: Option<Runtime>,
}

impl Endpoint {
    /// Starts an endpoint named `name`: every answer carries `x-endpoint: NAME`, `x-version` (the HTTP
    /// version it was asked in) and, over TLS, `x-sni` (the server name the client sent).
    pub fn start(name: &str, behaviour: Behaviour) -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an endpoint");
        let addr = listener.local_addr().expect("bound");
        listener.set_nonblocking(true).expect("non-blocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("an endpoint's runtime");
        let seen = Arc::new(Seen::default());
        let shared = Arc::new((name.to_owned(), behaviour, seen.clone()));
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Endpoint {
            addr,
            seen,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached it (their head was read).
    pub fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// The most requests it was answering at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.seen.peak.load(Ordering::SeqCst)
    }

    /// Requests for `path` that reached it.
    pub fn hits(&self, path: &str) -> u64 {
        let paths = self.seen.paths.lock().expect("paths");
        paths.get(path).copied().unwrap_or(0)
    }

    /// Stops it at once: the listener and every connection close, as when a process dies.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

type Shared = Arc<(String, Behaviour, Arc<Seen>)>;

async fn serve(stream: tokio::net::TcpStream, shared: Shared) {
    let _ = stream.set_nodelay(true);
    let behaviour = &shared.1;
    match &behaviour.tls {
        None => serve_io(TokioIo::new(stream), shared.clone(), behaviour.http2, None).await,
        Some(config) => {
            let Ok(tls) = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(stream)
                .await
            else {
                return;
            };
            let (_, session) = tls.get_ref();
            let sni = session.server_name().map(str::to_owned);
            let h2 = session.alpn_protocol() == Some(b"h2") || behaviour.http2;
            serve_io(TokioIo::new(tls), shared.clone(), h2, sni).await;
        }
    }
}

async fn serve_io<S>(io: TokioIo<S>, shared: Shared, h2: bool, sni: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| answer(request, shared.clone(), sni.clone()));
    if h2 {
        let _ = http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = http1::Builder::new().serve_connection(io, service).await;
    }
}

/// The error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hanging up")
    }
}

impl std::error::Error for HangUp {}

/// The request's body, with its trailers when it had some.
type Echoed = Either<Full<Bytes>, WithTrailers<Full<Bytes>, Trailers>>;
type Trailers = std::future::Ready<Option<Result<http::HeaderMap, std::convert::Infallible>>>;

async fn answer(
    request: Request<Incoming>,
    shared: Shared,
    sni: Option<String>,
) -> Result<Response<Echoed>, HangUp> {
    let (name, behaviour, seen) = &*shared;
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let _answering = Answering::begin(seen);
    let path = request.uri().path().to_owned();
    *seen
        .paths
        .lock()
        .expect("paths")
        .entry(path.clone())
        .or_default() += 1;
    let version = format!("{:?}", request.version());
    let body = request.into_body().collect().await.map_err(|_| HangUp)?;
    if behaviour.hang_up {
        return Err(HangUp);
    }
    let status = if path.starts_with("/health") {
        behaviour.health
    } else {
        tokio::time::sleep(behaviour.delay).await;
        behaviour.status
    };
    let trailers = body.trailers().cloned();
    let body = Full::new(body.to_bytes());
    let body = match trailers {
        Some(trailers) => Either::Right(body.with_trailers(std::future::ready(Some(Ok(trailers))))),
        None => Either::Left(body),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("x-endpoint", name.parse().expect("a header value"));
    headers.insert("x-version", version.parse().expect("a header value"));
    if let Some(sni) = sni {
        headers.insert("x-sni", sni.parse().expect("a header value"));
    }
    Ok(response)
}
