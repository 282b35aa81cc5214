//! Each limit on what one client may send or hold, at a configured value, through the real binary and raw
//! sockets: header fields by count and by bytes (431), the target (414), the time a head may take (408), the
//! idle time between requests, the connections served at once, and a route's body size (413) by
//! `Content-Length` and counted as a chunked body streams.
//!
//! Elsewhere: the defaults against hostile bytes in `tests/edge.rs` (431 and 414 among them), a client that
//! stalls in its body (408) in `tests/slow_peers.rs`, every setting's range in `tests/config_bounds.rs`.

mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::raw::{
    Exchange, Plan, When, exchange, parse_responses, read_response, read_until_closed,
};
use support::*;

/// One echo upstream `a` behind a catch-all route, with `server` lines in `[server]` and `route` lines in
/// the route.
fn config(upstream: SocketAddr, server: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[upstreams.a]\nurl = \"http://{upstream}\"\n\
         [[routes]]\nupstream = \"a\"\n{route}\n"
    )
}

fn echo_upstream() -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr = runtime.block_on(upstream("a"));
    (runtime, addr)
}

/// One request on a new connection; waits for the answer and, after it, for a close.
fn ask(weir: &Weir, request: impl Into<Vec<u8>>) -> Exchange {
    let plan = Plan {
        finals: 1,
        wait_close: true,
        idle: Duration::from_secs(5),
    };
    exchange(weir.addr, &[(When::Now, request.into())], &plan)
}

fn status(seen: &Exchange) -> Option<u16> {
    seen.finals().first().map(|r| r.status)
}

fn connect(weir: &Weir) -> TcpStream {
    let stream = TcpStream::connect(weir.addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn header_fields_past_max_request_headers_get_431() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "max_request_headers = 8", ""));
    let request = |fields: usize| {
        let mut head = String::from("GET /fields HTTP/1.1\r\nHost: a\r\n");
        for i in 1..fields {
            head.push_str(&format!("x-field-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };
    let fits = ask(&weir, request(8));
    assert_eq!(status(&fits), Some(200), "{}", fits.summary());
    let over = ask(&weir, request(9));
    assert_eq!(status(&over), Some(431), "{}", over.summary());
    assert!(over.closed, "{}", over.summary());
}

#[test]
fn header_fields_past_max_request_head_get_431() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "max_request_head = \"1KiB\"", ""));
    // Each field counts as `name: value\r\n`: `host: a` is 9 bytes, `x-fill: ` and its line end 10 more
    // than the value. The parser alone would let 16 KiB more through, the room it keeps for a long target.
    let request = |value: usize| {
        format!(
            "GET /head HTTP/1.1\r\nHost: a\r\nx-fill: {}\r\n\r\n",
            "f".repeat(value)
        )
    };
    let fits = ask(&weir, request(1024 - 9 - 10));
    assert_eq!(status(&fits), Some(200), "{}", fits.summary());
    let over = ask(&weir, request(1024 - 9 - 10 + 1));
    assert_eq!(status(&over), Some(431), "{}", over.summary());
    assert_eq!(
        over.finals()[0].body,
        b"the header fields are larger than 1024 bytes\n"
    );
    assert!(over.closed, "{}", over.summary());
}

#[test]
fn a_target_past_max_request_target_gets_414() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "max_request_target = \"1KiB\"", ""));
    let request = |len: usize| format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "t".repeat(len - 1));
    let fits = ask(&weir, request(1024));
    assert_eq!(status(&fits), Some(200), "{}", fits.summary());
    let over = ask(&weir, request(1025));
    assert_eq!(status(&over), Some(414), "{}", over.summary());
}

/// A head begun and not finished within `header_read_timeout` gets 408 and the connection closed, whether
/// the client stops or keeps dripping bytes; a connection that sends nothing is closed without a word.
#[test]
fn a_head_that_does_not_come_in_time_gets_408() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "header_read_timeout = \"1s\"", ""));

    let stopped = connect(&weir);
    (&stopped)
        .write_all(b"GET /stopped HTTP/1.1\r\nHost: a\r\n")
        .expect("write");
    let seen = read_until_closed(&stopped, Duration::from_secs(10));
    assert!(seen.closed, "still open after 10 s");
    let responses = seen.responses();
    assert_eq!(
        responses.len(),
        1,
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
    assert_eq!(responses[0].status, 408);
    assert_eq!(responses[0].body, b"request head timed out\n");

    // One byte every 50 ms: each byte is progress, but the head as a whole is late.
    let dripping = connect(&weir);
    (&dripping)
        .write_all(b"GET /dripping HTTP/1.1\r\nHost: a\r\nx-drip: ")
        .expect("write");
    let started = Instant::now();
    let answered = loop {
        if (&dripping).write_all(b"d").is_err() {
            break read_until_closed(&dripping, Duration::from_secs(1));
        }
        let seen = read_until_closed(&dripping, Duration::from_millis(50));
        if seen.closed || !seen.bytes.is_empty() {
            break seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a head dripping for 10 s was not cut"
        );
    };
    let responses = parse_responses(&answered.bytes, true).0;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&answered.bytes)
    );

    // Half of HTTP/2's preface: cut while the server still reads to tell the protocol, without a 408,
    // which an HTTP/2 client could not read.
    let half_preface = connect(&weir);
    (&half_preface)
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("write");
    let seen = read_until_closed(&half_preface, Duration::from_secs(10));
    assert!(seen.closed, "a half preface still open after 10 s");
    assert!(
        seen.bytes.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );

    let silent = connect(&weir);
    let seen = read_until_closed(&silent, Duration::from_secs(10));
    assert!(seen.closed, "a silent connection still open after 10 s");
    assert!(
        seen.bytes.is_empty(),
        "a client that sent nothing got {:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
    // The three late heads are logged as nginx logs them, 408; the silent connection made no request.
    let late = "no whole request";
    assert!(
        weir.wait_for_record(&[late, "HTTP/2", "status=408"]),
        "{}",
        weir.log()
    );
    assert_eq!(
        weir.log()
            .lines()
            .filter(|l| l.contains(late) && l.contains("status=408"))
            .count(),
        3,
        "{}",
        weir.log()
    );

    // A head in pieces that comes within the timeout is served.
    let pieces = connect(&weir);
    for piece in [&b"GET /pieces HTT"[..], b"P/1.1\r\nHost:", b" a\r\n\r\n"] {
        (&pieces).write_all(piece).expect("write");
        std::thread::sleep(Duration::from_millis(50));
    }
    let response = read_response(&pieces, Duration::from_secs(5)).expect("an answer");
    assert_eq!(response.status, 200);
}

/// On a keep-alive connection the head's clock starts at its first byte: the idle time before it is
/// `keepalive_timeout`'s, however much longer than `header_read_timeout` it is.
#[test]
fn the_wait_between_requests_is_not_the_heads_time() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(
        upstream,
        "header_read_timeout = \"1s\"\nkeepalive_timeout = \"1h\"",
        "",
    ));
    let stream = connect(&weir);
    (&stream).write_all(GET).expect("write");
    assert_eq!(
        read_response(&stream, Duration::from_secs(5)).map(|r| r.status),
        Some(200)
    );
    // Idle for longer than a head may take.
    let idle = read_until_closed(&stream, Duration::from_millis(1500));
    assert!(!idle.closed && idle.bytes.is_empty(), "closed while idle");
    (&stream).write_all(GET).expect("write");
    assert_eq!(
        read_response(&stream, Duration::from_secs(5)).map(|r| r.status),
        Some(200)
    );
    // The next head is timed from its first byte.
    (&stream)
        .write_all(b"GET /late HTTP/1.1\r\n")
        .expect("write");
    let seen = read_until_closed(&stream, Duration::from_secs(10));
    assert!(seen.closed);
    assert_eq!(
        seen.responses().first().map(|r| r.status),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
}

#[test]
fn an_idle_connection_is_closed_after_keepalive_timeout() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(
        upstream,
        "keepalive_timeout = \"1s\"\nheader_read_timeout = \"1h\"",
        "",
    ));
    let stream = connect(&weir);
    (&stream).write_all(GET).expect("write");
    let first = read_response(&stream, Duration::from_secs(5)).expect("an answer");
    assert_eq!(first.status, 200);
    // A request that takes longer than the idle timeout is not idle.
    (&stream)
        .write_all(b"GET /sleep/1500 HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let slow = read_response(&stream, Duration::from_secs(10)).expect("the slow answer");
    assert_eq!(slow.status, 200);
    // Then nothing: closed by the idle timeout, the head's being an hour, and nothing sent.
    let seen = read_until_closed(&stream, Duration::from_secs(10));
    assert!(seen.closed, "an idle connection still open after 10 s");
    assert!(
        seen.bytes.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
}

#[test]
fn keepalive_timeout_0_closes_after_each_response() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "keepalive_timeout = \"0s\"", ""));
    let seen = ask(&weir, GET);
    assert_eq!(status(&seen), Some(200), "{}", seen.summary());
    assert!(seen.closed, "{}", seen.summary());
    let head = String::from_utf8_lossy(&seen.finals()[0].head).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
}

/// At `max_connections` nothing more is accepted: a new connection waits in the listen backlog, and is
/// served as soon as one closes. No error, no 5xx.
#[test]
fn past_max_connections_new_connections_wait_for_a_free_one() {
    let (runtime, upstream) = echo_upstream();
    let weir = Weir::start(&format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\n",
        config(upstream, "max_connections = 2", "")
    ));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let stream = connect(&weir);
            (&stream).write_all(GET).expect("write");
            let response = read_response(&stream, Duration::from_secs(5)).expect("an answer");
            assert_eq!(response.status, 200);
            stream
        })
        .collect();
    // The kernel completes the handshake; Weir does not take the connection yet.
    let waiting = connect(&weir);
    (&waiting).write_all(GET).expect("write");
    assert!(
        read_response(&waiting, Duration::from_millis(500)).is_none(),
        "a third connection was served at max_connections = 2"
    );
    // The admin listener is not counted.
    let admin = format!("http://{}/healthz", weir.admin.expect("admin"));
    assert_eq!(runtime.block_on(get(&admin)).status, 200);
    held[0].shutdown(Shutdown::Both).expect("close");
    let served = read_response(&waiting, Duration::from_secs(10)).expect("served once one closed");
    assert_eq!(served.status, 200);
    // The one still held is served as before.
    (&held[1]).write_all(GET).expect("write");
    assert_eq!(
        read_response(&held[1], Duration::from_secs(5)).map(|r| r.status),
        Some(200)
    );
}

/// A route's `max_request_body`: a declared length over it gets 413 before any of the body is read, and a
/// chunked body gets 413 as soon as what has come is over, its end never sent.
#[test]
fn bodies_past_max_request_body_get_413_by_length_and_as_they_stream() {
    let (_runtime, upstream) = echo_upstream();
    let weir = Weir::start(&config(upstream, "", "max_request_body = \"1KiB\""));
    let declared = |length: usize| {
        format!("POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n").into_bytes()
    };

    let mut whole = declared(1024);
    whole.extend_from_slice(&[b'b'; 1024]);
    let seen = ask(&weir, whole);
    assert_eq!(status(&seen), Some(200), "{}", seen.summary());

    // The head alone: the answer cannot wait for a body that is never sent.
    let seen = ask(&weir, declared(1025));
    assert_eq!(status(&seen), Some(413), "{}", seen.summary());
    assert_eq!(seen.finals()[0].body, b"request body too large\n");

    let chunked = |chunks: usize| {
        let mut bytes =
            b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..chunks {
            bytes.extend_from_slice(b"100\r\n");
            bytes.extend_from_slice(&[b'c'; 0x100]);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes
    };
    let mut fits = chunked(4);
    fits.extend_from_slice(b"0\r\n\r\n");
    let seen = ask(&weir, fits);
    assert_eq!(status(&seen), Some(200), "{}", seen.summary());
    let echoed: serde_json::Value =
        serde_json::from_slice(&seen.finals()[0].body).expect("the echo");
    assert_eq!(echoed["body_len"], 1024);

    // 1280 bytes and no last chunk: only counting as it streams can answer.
    let seen = ask(&weir, chunked(5));
    assert_eq!(status(&seen), Some(413), "{}", seen.summary());
    assert_eq!(seen.finals()[0].body, b"request body too large\n");
}
