//! Accepting connections and serving HTTP/1.1 with keep-alive, against whatever configuration the atomic
//! pointer holds when each request arrives.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::proxy::Proxy;

/// A client that has not sent a full request head within this time is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    proxy: Arc<ArcSwap<Proxy>>,
    shutdown: impl Future<Output = ()>,
    settings: &ServerConfig,
) {
    let grace = settings.shutdown_timeout;
    let mut http1 = http1::Builder::new();
    // The parser caps the whole head, line included, and checks that before the target's length: its cap
    // leaves room for the longest target allowed, so a long target gets 414 from admission, not 431.
    let head = settings
        .max_request_head
        .0
        .saturating_add(settings.max_request_target.0);
    let head = usize::try_from(head).unwrap_or(usize::MAX);
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(head)
        // A head still arriving is buffered up to this, so the limit holds for slow clients too (hyper
        // refuses a buffer under 8 KiB).
        .max_buf_size(head.max(8 << 10));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Nagle would hold back small responses waiting for an ACK: latency with nothing gained.
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let service = service_fn(move |request| {
            let proxy = proxy.load_full();
            async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
        });
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%client, "connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting up to {grace:?} for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("requests still in flight at the end of the grace period"),
    }
}
