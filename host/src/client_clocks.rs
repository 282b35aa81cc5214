//! One client connection's two clocks, nginx's `client_header_timeout` and `keepalive_timeout`: how long a
//! request head may take to arrive, and how long the connection may sit idle between requests.
//!
//! hyper's own `header_read_timeout` cannot be both: its clock starts as soon as it waits for a head, so the
//! idle time between keep-alive requests counts against it (one number for two waits), and when it fires
//! hyper closes the connection without an answer. Here the socket is wrapped instead: the wrapper sees bytes
//! arrive, the service marks where a request begins and its response ends, and the connection's one timer is
//! set for whichever wait the connection is in.
//!
//! | waiting for | timed from | past its timeout |
//! |---|---|---|
//! | the first request's head | the accept | `header_read_timeout`: closed, after a 408 if part of a head came |
//! | the next request | the end of the last response | `keepalive_timeout`: closed, nothing sent |
//! | the rest of a later head | its first byte | `header_read_timeout`: 408, closed |
//! | the client to take response bytes | a write that cannot go | `send_timeout`: closed |
//! | an HTTP/2 client to open its flow-control window | a response body that hyper has stopped taking, with no write since | `send_timeout`: closed |
//!
//! The last row is the HTTP/2 client that reads its socket but grants no window: hyper then writes nothing,
//! so no write stalls, and takes no more of the response body; the upstream connection behind the stream
//! would be held for as long as the client likes ("slow read"). The clock counts any write on the
//! connection as the client's progress, as `send_timeout` does on HTTP/1.1: a client reading slowly is
//! never cut, one that reads nothing at all is. nginx times each stream; here a client must keep reading
//! some stream to keep the others waiting.
//!
//! A request being served is not timed here: its body by `client_body_timeout`, the upstream by its own.
//! nginx sends no 408 at all (it closes and logs 408); a client that has begun a request is told why it
//! ends here (RFC 9110 §15.5.9), while one that sent nothing, such as a browser's preconnect, is not
//! answered a request it never made.
//!
//! The drain on shutdown or upgrade is a third clock. hyper's graceful shutdown closes at once a connection
//! between requests, though the client's next request may already be in the socket, or on its way: that
//! client would see its request go unanswered. Here a connection waiting for a request when the drain
//! begins (or once it has answered the one it was serving) is given [`DRAIN_GRACE`] for one to come; each
//! response from then on says `Connection: close`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a connection waiting for a request is kept open once a drain has begun, for a request already
/// sent: it is in the socket or a round trip behind. A connection that stays silent (an idle keep-alive, a
/// browser's preconnect) holds the drain no longer than this.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Why a clock ended its connection, kept in its [`Activity`] (the error hyper ends an HTTP/2 connection with
/// keeps only the text of an I/O error's cause), so the server can log it, and count a request that never
/// came whole as nginx logs one, 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Expired {
    /// A 408 was written before the close.
    #[error("no whole request head within header_read_timeout")]
    Head,
    #[error("no whole request within header_read_timeout (HTTP/2 or TLS: closed, no 408)")]
    HeadUnanswered,
    #[error("the client took nothing of the response within send_timeout")]
    Send,
    #[error("the HTTP/2 client opened no flow-control window for a response within send_timeout")]
    Window,
}

impl From<Expired> for io::Error {
    fn from(expired: Expired) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, expired)
    }
}

/// The connection's timeouts, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub header_read: Duration,
    /// Zero turns keep-alive off; hyper then closes each connection after its first response.
    pub keepalive: Duration,
    /// How long a write to the client may make no progress.
    pub send: Duration,
}

/// Requests begun and responses ended on one connection: the service counts, the socket reads.
#[derive(Default)]
pub struct Activity {
    begun: AtomicU64,
    ended: AtomicU64,
    /// A read left waiting while a request was served: when its response ends, the read must look again
    /// and start the idle clock, which nothing on the socket would make it do.
    reader: Mutex<Option<Waker>>,
    /// The server is draining: responses close the connection, and a request has [`DRAIN_GRACE`] to come.
    draining: AtomicBool,
    /// The client opened with HTTP/2's preface: its frames are no head, and a 408 in HTTP/1.1 would be
    /// garbage to it, so a timeout only closes; and a drain can tell it to go away (`GOAWAY`).
    h2: AtomicBool,
    /// HTTP/2 responses waiting for the client's window (see the module's table).
    windows: Mutex<WindowWaits>,
    /// The clock that ended the connection, if one did.
    expired: Mutex<Option<Expired>>,
}

/// HTTP/2 responses that have handed hyper a frame with more to come, and that hyper has not come back to:
/// it comes back once the client's flow-control windows have room.
#[derive(Default)]
struct WindowWaits {
    waiting: usize,
    /// The socket's read side has its clock set, so a new wait need not wake it.
    clock_set: bool,
}

impl Activity {
    /// A request head has been read. Its response ends when the returned mark is dropped.
    pub fn begin(self: &Arc<Self>) -> Ended {
        self.begun.fetch_add(1, Ordering::Release);
        Ended(self.clone())
    }

    /// The server drains: the connection is to close after what it is serving, or after [`DRAIN_GRACE`]
    /// if it is waiting for a request. The socket sees it on its next poll.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// A response made now must close the connection.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The client speaks HTTP/2 (it opened with the preface).
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Acquire)
    }

    /// The clock that ended the connection, if one did.
    pub fn expired(&self) -> Option<Expired> {
        *self.expired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the connection for `why`, which is kept for [`Activity::expired`].
    fn expire(&self, why: Expired) -> io::Error {
        *self.expired.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        why.into()
    }

    /// A response begins to wait for the client's window.
    fn wait_for_window(&self) {
        let wake = {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            windows.waiting += 1;
            !windows.clock_set
        };
        // The read side sets its clock when it looks: it must look now, nothing on the socket would make
        // it. Once set, the clock finds later waits itself.
        if wake
            && let Some(reader) = self
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            reader.wake_by_ref();
        }
    }

    fn window_came(&self) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.waiting = windows.waiting.saturating_sub(1);
    }

    /// Whether a response waits for the client's window; the caller's clock is set from here on if so.
    fn window_clock_needed(&self) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.clock_set = windows.waiting > 0;
        windows.clock_set
    }
}

/// Held by a response body: dropped when hyper has written the body, or gives it up with the connection.
pub struct Ended(Arc<Activity>);

impl Ended {
    /// The connection is draining: the response must close it.
    pub fn draining(&self) -> bool {
        self.0.is_draining()
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::Release);
        let reader = self
            .0
            .reader
            .lock()
            .ok()
            .and_then(|mut reader| reader.take());
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// A response body that marks its request's end when dropped, and, on HTTP/2, each wait for the client's
/// window.
pub struct Tracked<B> {
    body: B,
    ended: Ended,
    waits_for_window: bool,
}

impl<B> Tracked<B> {
    pub fn new(body: B, ended: Ended) -> Tracked<B> {
        Tracked {
            body,
            ended,
            waits_for_window: false,
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if self.waits_for_window {
            self.ended.0.window_came();
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if std::mem::take(&mut this.waits_for_window) {
            this.ended.0.window_came();
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        // hyper's HTTP/2 server asks for the next frame only when the stream has window to send it in.
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
            && !this.body.is_end_stream()
            && this.ended.0.is_h2()
        {
            this.waits_for_window = true;
            this.ended.0.wait_for_window();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What the connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The first request; `partial` once any byte of it has come.
    First { partial: bool },
    /// The next request, no byte of it yet.
    Idle,
    /// The rest of a request head whose first bytes have come.
    Head,
    /// Nothing: a request is being served.
    Busy,
}

/// A client socket under the two clocks.
pub struct Clocked<S> {
    stream: S,
    activity: Arc<Activity>,
    clocks: Clocks,
    wait: Wait,
    /// `activity.ended` when last looked at: a change means a response has ended.
    seen_ended: u64,
    deadline: Pin<Box<Sleep>>,
    /// `deadline` is set for the wait under way. It is set when a read first finds nothing to take, not
    /// when the wait begins: most requests come whole in the read that ends the wait for them, and are
    /// served before a deadline of theirs could matter, so they cost no clock read and no timer reset.
    armed: bool,
    /// The wait for a request has had its deadline brought forward for a drain.
    hurried: bool,
    /// The socket carries TLS: bytes written here go through it, but a 408 there, half a record behind
    /// hyper's, is not worth the risk, so a timeout only closes.
    no_408: bool,
    /// Armed while a write waits for the client to take bytes; made at the first such wait.
    send_stall: Option<Pin<Box<Sleep>>>,
    /// The armed deadline is for the wait under way (a write that goes through ends it).
    stalled: bool,
    /// Set while an HTTP/2 response waits for the client's window; made at the first such wait.
    window_stall: Option<Pin<Box<Sleep>>>,
    window_clock_set: bool,
    /// Writes that took bytes, and their count when the window clock was last set.
    writes: u64,
    writes_at_set: u64,
}

impl<S> Clocked<S> {
    /// `stream` was accepted just now.
    pub fn new(stream: S, activity: Arc<Activity>, clocks: Clocks) -> Clocked<S> {
        Clocked {
            stream,
            activity,
            clocks,
            wait: Wait::First { partial: false },
            seen_ended: 0,
            deadline: Box::pin(tokio::time::sleep_until(after(clocks.header_read))),
            armed: true,
            hurried: false,
            no_408: false,
            send_stall: None,
            stalled: false,
            window_stall: None,
            window_clock_set: false,
            writes: 0,
            writes_at_set: 0,
        }
    }

    /// A timeout closes the connection without a 408 (TLS).
    pub fn without_408(mut self) -> Clocked<S> {
        self.no_408 = true;
        self
    }

    /// Catches up with what the service marked since the last read.
    fn observe(&mut self) {
        let begun = self.activity.begun.load(Ordering::Acquire);
        let ended = self.activity.ended.load(Ordering::Acquire);
        if begun != ended {
            self.wait = Wait::Busy;
        } else if ended != self.seen_ended {
            self.seen_ended = ended;
            self.wait = Wait::Idle;
            self.armed = false;
            self.hurried = false;
        }
        let waiting = matches!(self.wait, Wait::First { partial: false } | Wait::Idle);
        if waiting && !self.hurried && self.activity.is_draining() {
            self.hurried = true;
            self.arm();
            let grace = after(DRAIN_GRACE).min(self.deadline.deadline());
            self.deadline.as_mut().reset(grace);
        }
    }

    /// Bytes came from the client.
    fn arrived(&mut self) {
        match self.wait {
            Wait::First { .. } => self.wait = Wait::First { partial: true },
            Wait::Idle => {
                self.wait = Wait::Head;
                self.armed = false;
            }
            Wait::Head | Wait::Busy => {}
        }
    }

    /// Sets the deadline of the wait under way, unless it is set.
    fn arm(&mut self) {
        if self.armed {
            return;
        }
        let limit = match self.wait {
            Wait::Idle => self.clocks.keepalive,
            Wait::First { .. } | Wait::Head | Wait::Busy => self.clocks.header_read,
        };
        self.deadline.as_mut().reset(after(limit));
        self.armed = true;
    }
}

impl<S> Clocked<S> {
    /// What a write to the client comes to: a write that went anywhere ends the wait; one that cannot go
    /// starts it, or fails once it has lasted `send_timeout`, so that a client that reads nothing frees its
    /// connection, its upstream connection and its plugins' instances.
    fn sent<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = false;
            return poll;
        }
        let deadline = after(self.clocks.send);
        let stall = match &mut self.send_stall {
            Some(stall) if self.stalled => stall,
            Some(stall) => {
                stall.as_mut().reset(deadline);
                stall
            }
            None => self
                .send_stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.stalled = true;
        match stall.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(self.activity.expire(Expired::Send))),
        }
    }
}

impl<S> Clocked<S> {
    /// While an HTTP/2 response waits for the client's window, a connection that writes nothing for
    /// `send_timeout` fails: its streams end, and with them their upstream connections and plugins'
    /// instances.
    fn window_clock<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        // HTTP/1.1 has no window: a client that reads nothing stalls a write.
        if !self.activity.is_h2() || !self.activity.window_clock_needed() {
            self.window_clock_set = false;
            return Poll::Pending;
        }
        let restart = !self.window_clock_set;
        self.window_clock_set = true;
        let clock = self
            .window_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(after(self.clocks.send))));
        if restart {
            clock.as_mut().reset(after(self.clocks.send));
            self.writes_at_set = self.writes;
        }
        loop {
            if clock.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.writes == self.writes_at_set {
                return Poll::Ready(Err(self.activity.expire(Expired::Window)));
            }
            // The client took bytes within the time: it is reading, only slowly.
            clock.as_mut().reset(after(self.clocks.send));
            self.writes_at_set = self.writes;
        }
    }
}

/// Every request begun has its response ended.
fn all_ended(activity: &Activity) -> bool {
    activity.begun.load(Ordering::Acquire) == activity.ended.load(Ordering::Acquire)
}

/// `now + limit`: the config holds each limit to a year, which no clock overflows.
fn after(limit: Duration) -> Instant {
    Instant::now() + limit
}

/// What a client whose head did not come in time is sent before the connection closes.
fn request_timeout() -> String {
    const BODY: &str = "request head timed out\n";
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {}\r\n\r\n{BODY}",
        BODY.len(),
        httpdate::fmt_http_date(SystemTime::now())
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Clocked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.observe();
        let before = buf.filled().len();
        if let Poll::Ready(result) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            if buf.filled().len() > before {
                if this.wait == (Wait::First { partial: false })
                    && buf.filled()[before..].starts_with(b"PRI ")
                {
                    this.activity.h2.store(true, Ordering::Release);
                }
                this.arrived();
            }
            return Poll::Ready(result);
        }
        if this.wait == Wait::Busy {
            if let Ok(mut reader) = this.activity.reader.lock()
                && !reader
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                *reader = Some(cx.waker().clone());
            }
            // A response that ended between the look and the waker's storing would wake no one.
            if all_ended(&this.activity) {
                cx.waker().wake_by_ref();
            }
            return this.window_clock(cx);
        }
        this.arm();
        if this.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.wait {
            Wait::First { partial: true } | Wait::Head
                if !this.activity.is_h2() && !this.no_408 =>
            {
                // hyper is reading a head, so it has nothing of its own written or waiting to be: these
                // bytes cannot interleave with its. A socket that cannot take them at once belongs to a
                // client that reads nothing, and is closed without them.
                let answer = request_timeout();
                let _ = Pin::new(&mut this.stream).poll_write(cx, answer.as_bytes());
                Poll::Ready(Err(this.activity.expire(Expired::Head)))
            }
            Wait::First { partial: true } | Wait::Head => {
                Poll::Ready(Err(this.activity.expire(Expired::HeadUnanswered)))
            }
            // The end of the stream between requests: hyper closes the connection as if the client had.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Clocked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.writes = this.writes.wrapping_add(1);
        }
        this.sent(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.writes = this.writes.wrapping_add(1);
        }
        this.sent(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // TLS flushes its records here: a client that reads nothing stalls it as it stalls a write.
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.sent(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
