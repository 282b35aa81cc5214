//! HTTP/1.1 to an endpoint, written and read by the task of the request it carries.
//!
//! hyper's client gives each connection a task of its own and a queue that holds two blocks of 32 whole
//! requests (~17 KB) for the connection's life, plus 8 KiB read and write buffers, and hands each request,
//! response and body chunk from task to task. A proxy's upstream connection carries one request at a time,
//! for one client's task: here that task writes the request and reads the response itself. A kept
//! connection costs its socket, and one in use the buffer its response is read into.

mod codec;
mod idle;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::outbound::Outbound;
use super::tls::{Connector, Stream};
use crate::body::BoxError;
pub use codec::WireError;
use codec::{Decoded, Decoder, Encoder, Head};
pub use idle::{Idle, Reaper, reaper};

/// A response head is read into this much room at first: most heads, and small bodies, fit.
const HEAD_READ: usize = 4 << 10;
/// The most a body read asks for at once.
const BODY_READ: usize = 16 << 10;

/// A failed exchange: whose fault, and whether anything was sent, the caller tells from the variant.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing was sent: connecting, or the TLS handshake, failed.
    #[error("connecting failed")]
    Connect(#[source] BoxError),
    /// The request body failed while it was sent; its own error (the client's, most often) is the cause.
    #[error("sending the request body failed")]
    Body(#[source] BoxError),
    #[error("the connection failed")]
    Io(#[source] io::Error),
    #[error("the upstream broke HTTP/1.1")]
    Wire(#[source] WireError),
    #[error("the upstream closed the connection before answering")]
    Closed,
}

/// Makes connections to an upstream's endpoints, and sends requests on them.
#[derive(Clone)]
pub struct Client {
    connector: Connector,
}

/// A connection to an endpoint, and the bytes read from it that nothing has taken yet.
pub struct Conn {
    io: TokioIo<Stream>,
    buf: BytesMut,
    /// The buffer grew past [`HEAD_READ`] for a body: the connection gives it up when it is kept.
    grown: bool,
}

impl Conn {
    /// True unless the upstream closed it, or sent something unasked, while it was kept: a look at the
    /// socket that never waits.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Reads what the socket has, into room for at least `want` more bytes when little is left.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < want / 4 {
            self.grown |= want > HEAD_READ;
            // Reuses the allocation in place when the chunks cut from it are gone, as they are by the
            // next response on a kept connection.
            self.buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// One request on one connection: what is left to write of it, and once its head is read, of the response.
struct Exchange {
    conn: Conn,
    /// Request bytes not yet written.
    queue: VecDeque<Bytes>,
    unflushed: bool,
    /// The request body still to send, and its framing.
    body: Option<(Outbound, Encoder)>,
    /// Writing broke (the upstream closed or reset its side): its answer may still be read.
    write_error: Option<io::Error>,
    /// The response body.
    decoder: Decoder,
    keep_alive: bool,
    idle: Arc<Idle>,
}

impl Client {
    pub fn new(connector: Connector) -> Client {
        Client { connector }
    }

    /// Sends `request` on a connection kept in `idle`, or on a new one, and reads the response head. The
    /// connection goes back to `idle` once the response body is read, if both sides may keep it.
    pub async fn send(
        &self,
        idle: &Arc<Idle>,
        request: Request<Outbound>,
    ) -> Result<Response<Body>, SendError> {
        let (parts, body) = request.into_parts();
        let conn = match idle.take() {
            Some(conn) => conn,
            None => self.connect(&parts.uri).await?,
        };
        let upgrade = parts.headers.contains_key(header::UPGRADE);
        let head_request = parts.method == Method::HEAD;
        let mut headers = parts.headers;
        // A body of unknown length on GET, HEAD or CONNECT is not sent, as hyper's client does: it is
        // almost always a body plugin's output for an empty one, and a chunked body the upstream does not
        // read makes it close the connection (with a reset that loses the response's end).
        let size = body.size_hint().exact();
        let bodiless = matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT);
        let framing = (!body.is_end_stream() && (size.is_some() || !bodiless)).then_some(size);
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = parts.uri.authority().map(|a| a.as_str());
        let (head, encoder) =
            codec::encode_head(&parts.method, target, authority, &mut headers, framing);
        let mut exchange = Box::new(Exchange {
            conn,
            queue: VecDeque::from([Bytes::from(head)]),
            unflushed: false,
            body: encoder.map(|encoder| (body, encoder)),
            write_error: None,
            decoder: Decoder::Length(0),
            keep_alive: false,
            idle: idle.clone(),
        });
        let Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        } = std::future::poll_fn(|cx| exchange.poll_head(cx, head_request)).await?;
        let mut response = Response::new(Body(None));
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection is the tunnel's now, or closed if nobody asked for one.
            if upgrade {
                let Exchange { conn, .. } = *exchange;
                response.extensions_mut().insert(Switched::new(conn));
            }
            return Ok(response);
        }
        exchange.decoder = framing;
        exchange.keep_alive = keep_alive;
        let mut body = Body(Some(exchange));
        if body.is_end_stream() {
            body.finish();
        }
        *response.body_mut() = body;
        Ok(response)
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Conn, SendError> {
        use tower_service::Service as _;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(SendError::Connect)?;
        let stream = connector
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        Ok(Conn {
            io: TokioIo::new(stream),
            buf: BytesMut::new(),
            grown: false,
        })
    }
}

impl Exchange {
    /// The request is written whole, and the connection took all of it.
    fn sent(&self) -> bool {
        self.body.is_none()
            && self.queue.is_empty()
            && !self.unflushed
            && self.write_error.is_none()
    }

    /// Writes what it can of the request without waiting. An error is the request body's: a write that
    /// fails stops the writing, and the response is still read.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Result<(), SendError> {
        if self.write_error.is_some() {
            return Ok(());
        }
        loop {
            match self.poll_write_queue(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(e)) => {
                    self.write_error = Some(e);
                    self.body = None;
                    return Ok(());
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some((body, encoder)) = &mut self.body else {
                return Ok(());
            };
            let queue = &mut self.queue;
            let mut push = |bytes: Bytes| queue.push_back(bytes);
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    return Err(SendError::Body(e));
                }
                Poll::Ready(None) => {
                    encoder.finish(None, &mut push).map_err(SendError::Wire)?;
                    self.body = None;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => encoder.data(data, &mut push).map_err(SendError::Wire)?,
                    Err(frame) => {
                        encoder
                            .finish(frame.trailers_ref(), &mut push)
                            .map_err(SendError::Wire)?;
                        self.body = None;
                    }
                },
            }
        }
    }

    /// Writes the queue out, in as few writes as the stream allows, then flushes it (TLS holds records back
    /// until then).
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let mut slices = [io::IoSlice::new(&[]); 8];
            let mut count = 0;
            for (slice, bytes) in slices.iter_mut().zip(&self.queue) {
                *slice = io::IoSlice::new(bytes);
                count += 1;
            }
            let mut written =
                ready!(Pin::new(&mut self.conn.io).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            while written > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.conn.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what it can and reads until the final response head (interim 1xx answers other than 101 are
    /// passed over).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<Head, SendError>> {
        loop {
            self.poll_send(cx)?;
            match codec::parse_head(&mut self.conn.buf, head_request) {
                Err(e) => return Poll::Ready(Err(SendError::Wire(e))),
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue;
                }
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
            }
            match ready!(self.conn.poll_fill(cx, HEAD_READ)) {
                Ok(0) => {
                    return Poll::Ready(Err(self
                        .write_error
                        .take()
                        .map_or(SendError::Closed, SendError::Io)));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(SendError::Io(e))),
            }
        }
    }
}

/// A response body read from its connection, which goes back to its endpoint's kept ones at the end.
pub struct Body(Option<Box<Exchange>>);

/// The upstream closed the connection before the response body's end.
#[derive(Debug, thiserror::Error)]
#[error("the upstream closed the connection before the response body ended")]
pub struct Truncated;

impl Body {
    /// The body is read: the connection is kept if the request went whole, the response allows it, and
    /// nothing unasked followed it.
    fn finish(&mut self) {
        if let Some(exchange) = self.0.take()
            && exchange.keep_alive
            && exchange.sent()
            && exchange.conn.buf.is_empty()
        {
            let Exchange { mut conn, idle, .. } = *exchange;
            // A kept connection keeps a head's room, at most, for the next response: allocating it anew
            // for each one cost a 4 KiB malloc (above glibc's thread cache) and its free per request.
            if conn.grown {
                conn.buf = BytesMut::new();
                conn.grown = false;
            }
            idle.put(conn);
        }
    }

    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0 = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(exchange) = this.0.as_mut() else {
            return Poll::Ready(None);
        };
        // The request body goes on while the response comes: an upstream may answer before reading all of
        // it. If it fails now, the response still goes to the client, and the connection is not kept.
        if let Err(e) = exchange.poll_send(cx) {
            tracing::debug!("the request body failed after the response began: {e}");
            exchange.write_error = Some(io::Error::other("the request body failed"));
        }
        loop {
            match exchange.decoder.decode(&mut exchange.conn.buf) {
                Err(e) => return this.fail(e.into()),
                Ok(Decoded::Frame(frame)) => {
                    if exchange.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
            }
            let want = exchange.decoder.remaining().map_or(BODY_READ, |left| {
                usize::try_from(left).map_or(BODY_READ, |left| left.clamp(HEAD_READ, BODY_READ))
            });
            match ready!(exchange.conn.poll_fill(cx, want)) {
                Ok(0) if matches!(exchange.decoder, Decoder::Close) => {
                    this.0 = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Box::new(Truncated)),
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|e| e.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.as_ref().map(|e| e.decoder.remaining()) {
            None => SizeHint::with_exact(0),
            Some(Some(left)) => SizeHint::with_exact(left),
            Some(None) => SizeHint::default(),
        }
    }
}

/// A connection that switched protocols (a 101 to a request that asked for an upgrade), in the
/// response's extensions for whoever splices it: taken once.
#[derive(Clone)]
pub struct Switched(Arc<Mutex<Option<Conn>>>);

impl Switched {
    fn new(conn: Conn) -> Switched {
        Switched(Arc::new(Mutex::new(Some(conn))))
    }

    pub fn take(&self) -> Option<Upgraded> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(Upgraded)
    }
}

/// The upstream's side of a tunnel: the bytes read past the 101 come first.
pub struct Upgraded(Conn);

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut self.0;
        if !conn.buf.is_empty() {
            let n = conn.buf.len().min(buf.remaining());
            buf.put_slice(&conn.buf.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut conn.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.io).poll_shutdown(cx)
    }
}
