//! Peers that stop half-way: a client that stalls in its request body gets 408 and its connection closed; an
//! upstream that stalls in its response body has the response cut after its `read_timeout`; an upstream
//! that fails while the client is still sending is answered with 502 at once, not after the client's body; a
//! client that reads nothing of its response is cut after `send_timeout`, and its upstream connection with it.
//! The misbehaving side is a raw socket, so that it can stop exactly where the test says.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::raw::{parse_responses, read_until_closed};
use support::*;

/// Routes over one upstream: `/plain` with no plugin (the body streams straight through), `/noop` with a
/// header-only plugin, and `/body` with a plugin that transforms both bodies (a task pumps them).
fn routes(server: &str, upstream: SocketAddr, upstream_extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
{server}
[upstreams.peer]
url = "http://{upstream}"
{upstream_extra}
[[routes]]
name = "plain"
path_prefix = "/plain"
upstream = "peer"

[[routes]]
name = "noop"
path_prefix = "/noop"
upstream = "peer"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "noop" }}

[[routes]]
name = "body"
path_prefix = "/body"
upstream = "peer"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "body-upper" }}
"#
    )
}

/// The echo upstream, on a runtime of its own that lives as long as the test.
fn echo_upstream() -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr = runtime.block_on(upstream("echo"));
    (runtime, addr)
}

/// A raw upstream: each connection is handed to `serve` on a thread of its own.
fn raw_upstream(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Reads until the end of a request head.
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// What a client saw: every byte until the connection closed or `limit` passed, and when it closed.
struct Seen {
    bytes: Vec<u8>,
    closed_after: Option<Duration>,
    /// When the first byte of the answer arrived.
    first_byte_after: Option<Duration>,
}

impl Seen {
    fn response(&self) -> Option<support::raw::Response> {
        parse_responses(&self.bytes, self.closed_after.is_some())
            .0
            .into_iter()
            .next()
    }

    fn status(&self) -> Option<u16> {
        self.response().map(|r| r.status)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Connects, writes `request`, and then writes each of `later` after its delay, reading all along.
fn converse(
    addr: SocketAddr,
    request: &[u8],
    later: &[(Duration, &[u8])],
    limit: Duration,
) -> Seen {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("read timeout");
    let started = Instant::now();
    stream.write_all(request).expect("write the request");
    let mut due: Vec<(Instant, &[u8])> = Vec::new();
    let mut at = started;
    for (delay, bytes) in later {
        at += *delay;
        due.push((at, bytes));
    }
    let mut seen = Seen {
        bytes: Vec::new(),
        closed_after: None,
        first_byte_after: None,
    };
    let mut buf = [0u8; 65536];
    while started.elapsed() < limit {
        if let Some((when, bytes)) = due.first()
            && Instant::now() >= *when
        {
            // The proxy may have answered and closed already: a failed write is part of what is seen.
            let _ = stream.write_all(bytes);
            due.remove(0);
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                seen.closed_after = Some(started.elapsed());
                break;
            }
            Ok(n) => {
                seen.first_byte_after.get_or_insert(started.elapsed());
                seen.bytes.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                seen.closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    seen
}

fn post_head(path: &str, length: usize) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: weir.test\r\nContent-Length: {length}\r\n\r\n")
        .into_bytes()
}

#[test]
fn a_client_that_stalls_in_its_body_gets_408_and_its_connection_closed() {
    let (_runtime, echo) = echo_upstream();
    let weir = Weir::start(&routes("client_body_timeout = \"300ms\"", echo, ""));
    for path in ["/plain", "/noop", "/body"] {
        let mut request = post_head(path, 100);
        request.extend_from_slice(&[b'a'; 10]);
        let seen = converse(weir.addr, &request, &[], Duration::from_secs(5));
        assert_eq!(seen.status(), Some(408), "{path}: {}", seen.text());
        assert!(
            seen.text().ends_with("request body timed out\n"),
            "{path}: {}",
            seen.text()
        );
        let answered = seen.first_byte_after.expect("an answer");
        assert!(
            answered >= Duration::from_millis(300) && answered < Duration::from_secs(2),
            "{path}: answered after {answered:?}"
        );
        let closed = seen.closed_after.expect("the connection is closed");
        assert!(
            closed < answered + Duration::from_millis(500),
            "{path}: closed {closed:?}"
        );
        let response = seen.response().expect("a response");
        assert!(
            String::from_utf8_lossy(&response.head)
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{path}: {}",
            seen.text()
        );
    }
}

#[test]
fn a_slow_but_steady_client_body_is_not_cut() {
    let (_runtime, echo) = echo_upstream();
    let weir = Weir::start(&routes("client_body_timeout = \"300ms\"", echo, ""));
    for path in ["/plain", "/body"] {
        // Ten bytes over two seconds, never 300 ms apart: the timer is idle time, not the body's total.
        let pieces: Vec<(Duration, &[u8])> = (0..10)
            .map(|_| (Duration::from_millis(200), b"x".as_slice()))
            .collect();
        let seen = converse(
            weir.addr,
            &post_head(path, 10),
            &pieces,
            Duration::from_secs(6),
        );
        assert_eq!(seen.status(), Some(200), "{path}: {}", seen.text());
        // The echo of what the upstream got; through `/body` both bodies are upper-cased.
        let echo = String::from_utf8_lossy(&seen.response().expect("a response").body).into_owned();
        let sent = if path == "/body" {
            "\"XXXXXXXXXX\""
        } else {
            "\"xxxxxxxxxx\""
        };
        assert!(echo.contains(sent), "{path}: {echo}");
    }
}

/// Answers the head and 10 of 100 body bytes, then says nothing more for 10 s.
fn stall_in_the_body(mut stream: TcpStream) {
    read_head(&mut stream);
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn an_upstream_that_stalls_in_its_body_is_cut_after_read_timeout() {
    let stalling = raw_upstream(stall_in_the_body);
    // With request IDs, so that the cut's warning can be seen to name its request: on `/plain` hyper polls
    // the body outside the request's handler, on `/body` a task of the chain does.
    let weir = Weir::start(&routes(
        "[server.request_id]",
        stalling,
        "read_timeout = \"300ms\"",
    ));
    for path in ["/plain", "/body"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: weir.test\r\n\r\n");
        let seen = converse(weir.addr, request.as_bytes(), &[], Duration::from_secs(5));
        let text = seen.text();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {text}");
        let (head, body_so_far) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let id = head
            .lines()
            .find_map(|line| line.strip_prefix("x-request-id: "))
            .unwrap_or_else(|| panic!("{path}: no ID: {head}"));
        assert!(
            weir.wait_for_record(&[
                &format!("request{{id={id}}}"),
                "upstream \"peer\" sent no response body bytes for 300ms"
            ]),
            "{path}: the cut's warning names the request: {}",
            weir.log()
        );
        assert!(body_so_far.contains("0123456789"), "{path}: {text}");
        let closed = seen.closed_after.expect("the response is cut");
        assert!(
            closed >= Duration::from_millis(300) && closed < Duration::from_secs(2),
            "{path}: cut after {closed:?}"
        );
        assert!(
            parse_responses(&seen.bytes, true).1.is_some(),
            "{path}: the client must see the body cut short: {text}"
        );
    }
}

/// More body than the sockets between the upstream and a client that reads nothing can hold.
const FLOOD: usize = 256 << 20;

/// Upstream connections whose flood ended because Weir closed them.
static FLOODS_CUT: AtomicUsize = AtomicUsize::new(0);

/// Upstream connections of the HTTP/2 tests whose flood ended because Weir closed them.
static H2_FLOODS_CUT: AtomicUsize = AtomicUsize::new(0);

/// Answers [`FLOOD`] bytes as fast as they are taken, counting a connection closed before the end.
fn flood(stream: TcpStream) {
    flood_counted(stream, &FLOODS_CUT);
}

fn flood_h2(stream: TcpStream) {
    flood_counted(stream, &H2_FLOODS_CUT);
}

fn flood_counted(mut stream: TcpStream, cut: &AtomicUsize) {
    read_head(&mut stream);
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {FLOOD}\r\n\r\n");
    let chunk = [b'f'; 64 << 10];
    let whole = stream.write_all(head.as_bytes()).is_ok()
        && (0..FLOOD / chunk.len()).all(|_| stream.write_all(&chunk).is_ok());
    if !whole {
        cut.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_client_that_reads_nothing_is_cut_after_send_timeout() {
    let flooding = raw_upstream(flood);
    let weir = Weir::start(&routes("send_timeout = \"500ms\"", flooding, ""));
    for path in ["/plain", "/body"] {
        let mut stream = TcpStream::connect(weir.addr).expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: weir.test\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("the request");
        // The response fills the socket buffers, and Weir's writes find no room for 2 s.
        std::thread::sleep(Duration::from_secs(2));
        let seen = read_until_closed(&stream, Duration::from_secs(10));
        let taken = seen.bytes.len();
        assert!(
            seen.closed,
            "{path}: the connection is still open after {taken} bytes"
        );
        assert!(
            taken < FLOOD,
            "{path}: the whole response came ({taken} bytes): the stalled writes were not cut"
        );
    }
    // Each client's upstream connection was closed too, not left to finish its body into nothing.
    let until = Instant::now() + Duration::from_secs(5);
    while FLOODS_CUT.load(Ordering::SeqCst) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(FLOODS_CUT.load(Ordering::SeqCst), 2, "{}", weir.log());
}

/// An HTTP/2 stream whose client grants a 16 KiB window and reads nothing: the client reads its socket, so
/// no write of Weir's ever stalls, but hyper takes no more of the response body. The stream must not hold
/// its upstream connection past `send_timeout`. And one that reads slowly, a frame at a time, is not cut.
#[test]
fn an_h2_client_that_opens_no_window_is_cut_after_send_timeout() {
    let flooding = raw_upstream(flood_h2);
    let weir = Weir::start(&routes("send_timeout = \"500ms\"", flooding, ""));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(weir.addr)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(16 << 10)
                .handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .expect("an h2c handshake");
        let connection = tokio::spawn(connection);

        // A GET of `/plain` on the connection, its body not yet read.
        let mut flood = async || {
            let request = http::Request::get(weir.url("/plain"))
                .body(http_body_util::Empty::<bytes::Bytes>::new());
            let response = sender
                .send_request(request.expect("a request"))
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200, "{}", weir.log());
            response.into_body()
        };

        // Read slowly: a frame every 100 ms, each granting more window, for twice send_timeout.
        let mut slow = flood().await;
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(1) {
            let frame = http_body_util::BodyExt::frame(&mut slow).await;
            assert!(
                matches!(frame, Some(Ok(_))),
                "a slow but steady reader was cut after {:?}: {frame:?}\n{}",
                began.elapsed(),
                weir.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(slow);

        // Now read nothing.
        let held = flood().await;
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(
            ended.is_ok(),
            "the connection is still open 10 s after its window closed\n{}",
            weir.log()
        );
        drop(held);
    });
    // Both streams' upstream connections were closed, not left to finish their bodies into nothing.
    let until = Instant::now() + Duration::from_secs(5);
    while H2_FLOODS_CUT.load(Ordering::SeqCst) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(H2_FLOODS_CUT.load(Ordering::SeqCst), 2, "{}", weir.log());
    assert!(
        weir.wait_for_log("opened no flow-control window"),
        "the cut is logged\n{}",
        weir.log()
    );
}

/// Sends 100 body bytes one every 100 ms.
fn trickle_the_body(mut stream: TcpStream) {
    read_head(&mut stream);
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        if stream.write_all(b"z").is_err() {
            return;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
}

#[test]
fn a_slow_but_steady_upstream_body_is_not_cut() {
    let trickling = raw_upstream(trickle_the_body);
    let weir = Weir::start(&routes("", trickling, "read_timeout = \"300ms\""));
    let seen = converse(
        weir.addr,
        b"GET /plain HTTP/1.1\r\nHost: weir.test\r\n\r\n",
        &[],
        Duration::from_secs(3),
    );
    let response = seen.response().expect("a whole response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"zzzzzzzzzz");
}

/// Reads the request head, then closes.
fn close_after_the_head(mut stream: TcpStream) {
    read_head(&mut stream);
}

/// Reads the request head, then resets the connection.
fn reset_after_the_head(mut stream: TcpStream) {
    read_head(&mut stream);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given; with a zero linger, close sends RST.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn assert_502_at_once(weir: &Weir, path: &str) {
    let mut request = post_head(path, 1000);
    request.extend_from_slice(&[b'a'; 500]);
    let seen = converse(weir.addr, &request, &[], Duration::from_secs(5));
    assert_eq!(seen.status(), Some(502), "{path}: {}", seen.text());
    let answered = seen.first_byte_after.expect("an answer");
    assert!(
        answered < Duration::from_secs(1),
        "{path}: answered after {answered:?}, not at once"
    );
}

#[test]
fn an_upstream_that_closes_mid_request_gets_502_at_once() {
    for serve in [close_after_the_head, reset_after_the_head] {
        let failing = raw_upstream(serve);
        // The client never finishes its body: only the upstream's failure can end the exchange early.
        let weir = Weir::start(&routes("client_body_timeout = \"10s\"", failing, ""));
        // `/body` reads the client's body in a task of its own, which must not hold back the answer.
        for path in ["/plain", "/noop", "/body"] {
            assert_502_at_once(&weir, path);
        }
    }
}

/// Reads the request head and its 10-byte body, then never answers.
fn take_the_body_and_never_answer(mut stream: TcpStream) {
    read_head(&mut stream);
    let mut body = [0u8; 10];
    let _ = stream.read_exact(&mut body);
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn an_upstream_that_never_answers_an_upload_times_out_after_the_upload() {
    let silent = raw_upstream(take_the_body_and_never_answer);
    let weir = Weir::start(&routes("", silent, "timeout = \"500ms\""));
    // The body takes a second to arrive; the upstream's 500 ms start when it has all of it.
    let pieces: Vec<(Duration, &[u8])> = (0..5)
        .map(|_| (Duration::from_millis(200), b"xx".as_slice()))
        .collect();
    let seen = converse(
        weir.addr,
        &post_head("/plain", 10),
        &pieces,
        Duration::from_secs(5),
    );
    assert_eq!(seen.status(), Some(504), "{}", seen.text());
    let answered = seen.first_byte_after.expect("an answer");
    assert!(
        answered >= Duration::from_millis(1400) && answered < Duration::from_secs(3),
        "answered after {answered:?}"
    );
}

/// `timeout` is the upstream's time to answer: it is not spent while the client is still uploading.
#[test]
fn a_slow_upload_to_a_prompt_upstream_is_not_a_gateway_timeout() {
    let (_runtime, echo) = echo_upstream();
    let weir = Weir::start(&routes("", echo, "timeout = \"500ms\""));
    for path in ["/plain", "/body"] {
        // Ten bytes over two seconds: four times the upstream's `timeout`, but the upstream waits for them.
        let pieces: Vec<(Duration, &[u8])> = (0..10)
            .map(|_| (Duration::from_millis(200), b"x".as_slice()))
            .collect();
        let seen = converse(
            weir.addr,
            &post_head(path, 10),
            &pieces,
            Duration::from_secs(6),
        );
        assert_eq!(seen.status(), Some(200), "{path}: {}", seen.text());
    }
}
