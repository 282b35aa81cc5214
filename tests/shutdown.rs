//! SIGTERM and SIGINT drain: Weir stops accepting (new connections are refused), `/readyz` answers 503,
//! requests in flight finish and their clients are told to go (`Connection: close`), idle connections are
//! closed after a moment for a request on its way, and the process exits 0; a request still running at the
//! end of `shutdown_timeout` is cut and the process exits 0 all the same.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::raw::{Plan, When, exchange, read_response, read_until_closed};
use support::*;

/// An upstream that holds every request until the test releases it, and says when one has arrived.
struct Held {
    addr: SocketAddr,
    arrived: mpsc::Receiver<()>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Held {
    fn start() -> Held {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("bound");
        let (tell, arrived) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let shared = gate.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (tell, gate) = (tell.clone(), shared.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = tell.send(());
                    let (open, released) = &*gate;
                    let mut open = open.lock().expect("gate");
                    while !*open {
                        open = released.wait(open).expect("gate");
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n");
                });
            }
        });
        Held {
            addr,
            arrived,
            gate,
        }
    }

    fn wait_arrived(&self) {
        self.arrived
            .recv_timeout(Duration::from_secs(10))
            .expect("the request reached the upstream");
    }

    fn release(&self) {
        let (open, released) = &*self.gate;
        *open.lock().expect("gate") = true;
        released.notify_all();
    }
}

fn config(upstream: SocketAddr, server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.a]\nurl = \"http://{upstream}\"\n[[routes]]\nupstream = \"a\"\n"
    )
}

/// A request sent on a new connection, its answer still to come.
fn send(addr: SocketAddr, path: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    (&stream)
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .expect("write");
    stream
}

/// The status of one GET, on a connection of its own.
fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let plan = Plan {
        finals: 1,
        wait_close: false,
        idle: Duration::from_secs(5),
    };
    let seen = exchange(addr, &[(When::Now, request.into_bytes())], &plan);
    seen.finals().first().map(|r| r.status)
}

/// Polls `done` until it holds, for at most `within`.
fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_accepting_and_finishes_what_is_in_flight() {
    let upstream = Held::start();
    let mut weir = Weir::start(&config(upstream.addr, "shutdown_timeout = \"1h\""));
    let admin = weir.admin.expect("admin");
    assert_eq!(status(admin, "/readyz"), Some(200));
    let in_flight = send(weir.addr, "/slow");
    upstream.wait_arrived();

    weir.signal(libc::SIGTERM);
    eventually(Duration::from_secs(10), "/readyz says 503", || {
        status(admin, "/readyz") == Some(503)
    });
    eventually(Duration::from_secs(10), "new connections refused", || {
        TcpStream::connect(weir.addr).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
    });
    assert!(
        weir.wait_for_log("shutting down"),
        "no drain logged:\n{}",
        weir.log()
    );

    upstream.release();
    let response = read_response(&in_flight, Duration::from_secs(10)).expect("the answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"slow\n");
    let head = String::from_utf8_lossy(&response.head).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    let exit = weir.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{exit}");
}

#[test]
fn a_request_past_shutdown_timeout_is_cut_and_the_process_exits_0() {
    let upstream = Held::start();
    let mut weir = Weir::start(&config(upstream.addr, "shutdown_timeout = \"1s\""));
    let in_flight = send(weir.addr, "/never");
    upstream.wait_arrived();

    weir.signal(libc::SIGTERM);
    let exit = weir.wait_exit(Duration::from_secs(15));
    assert_eq!(exit.code(), Some(0), "{exit}");
    let seen = read_until_closed(&in_flight, Duration::from_secs(5));
    assert!(seen.closed, "the cut connection is still open");
    assert!(
        seen.bytes.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
    assert!(
        weir.log()
            .contains("requests or WebSocket tunnels still open at the end of the grace period"),
        "{}",
        weir.log()
    );
}

/// Connections waiting between requests do not hold the drain, though both the idle timeout and the grace
/// period are an hour: each has a moment for a request already on its way, which is answered with
/// `Connection: close`, and is closed after it; one that stays silent is closed without a word. SIGINT
/// (Ctrl-C) drains as SIGTERM does.
#[test]
fn sigint_answers_a_request_on_its_way_and_closes_idle_connections() {
    let upstream = Held::start();
    upstream.release();
    let mut weir = Weir::start(&config(
        upstream.addr,
        "shutdown_timeout = \"1h\"\nkeepalive_timeout = \"1h\"",
    ));
    let admin = weir.admin.expect("admin");
    let [late, silent] = ["/late", "/silent"].map(|path| {
        let stream = send(weir.addr, path);
        let answer = read_response(&stream, Duration::from_secs(10)).expect("an answer");
        assert_eq!(answer.status, 200);
        stream
    });

    weir.signal(libc::SIGINT);
    eventually(Duration::from_secs(10), "/readyz says 503", || {
        status(admin, "/readyz") == Some(503)
    });
    (&late)
        .write_all(b"GET /late-again HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let seen = read_until_closed(&late, Duration::from_secs(10));
    assert!(seen.closed, "still open after its answer");
    let answers = seen.responses();
    assert_eq!(
        answers.len(),
        1,
        "{:?}",
        String::from_utf8_lossy(&seen.bytes)
    );
    assert_eq!(answers[0].status, 200);
    let head = String::from_utf8_lossy(&answers[0].head).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");

    let seen = read_until_closed(&silent, Duration::from_secs(10));
    assert!(seen.closed, "the idle connection is still open");
    assert!(seen.bytes.is_empty());
    let exit = weir.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "{exit}");
}
