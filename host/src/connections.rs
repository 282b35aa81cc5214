//! An upstream's connections, counted as they open and close.
//!
//! The connector counts for both clients (Weir's HTTP/1.1 one and hyper's HTTP/2 one, whose pool shows
//! nothing): each connection it makes adds one to the upstream's open connections, and taking it away
//! (closed by either side, dropped when idle too long) takes one off. Open connections are the kept ones
//! plus those carrying a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::UpstreamStats;

/// An [`HttpConnector`] whose connections count themselves in `stats`.
#[derive(Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    stats: Arc<UpstreamStats>,
}

impl CountingConnector {
    pub fn new(inner: HttpConnector, stats: Arc<UpstreamStats>) -> CountingConnector {
        CountingConnector { inner, stats }
    }
}

/// The connector's own error, passed on as it is: [`crate::upstream`] reads its causes to tell a timeout.
type ConnectError = <HttpConnector as tower_service::Service<Uri>>::Error;

type Connecting = Pin<Box<dyn Future<Output = Result<CountedStream, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for CountingConnector {
    type Response = CountedStream;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let connecting = self.inner.call(dst);
        let stats = self.stats.clone();
        // A box per connection made, not per request: connections are pooled.
        Box::pin(async move {
            let stream = connecting.await?;
            stats.connection_opened();
            Ok(CountedStream { stream, stats })
        })
    }
}

/// A connection to an upstream, counted open until dropped.
pub struct CountedStream {
    stream: TokioIo<TcpStream>,
    stats: Arc<UpstreamStats>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.stats.connection_closed();
    }
}

impl Connection for CountedStream {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

impl Read for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// Every method passes through, the vectored ones included: hyper writes a head and a body chunk in one
/// call when the stream says it can.
impl Write for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
}
