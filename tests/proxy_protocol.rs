//! The PROXY protocol through the real binary: HAProxy in front of Weir as a TCP load balancer (as AWS's NLB
//! is), sending version 1 and version 2 headers, over clear text and TLS with h2, and the client it names
//! is the one the upstream, the access log and `X-Forwarded-For` see; a peer the config does not name is
//! never asked for a header, so its claim is never taken; a named one without a header is closed. Hostile
//! headers from the spec (haproxy.org's proxy-protocol.txt) go to Weir and to nginx
//! (`listen … proxy_protocol` with `real_ip_header proxy_protocol`) alike.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pki::Pki;
use support::raw::{Nginx, free_port, read_until_closed, show};
use support::{Echo, Weir, logged_clients, upstream};

/// Where the test's clients connect from: loopback addresses other than HAProxy's own 127.0.0.1, so that
/// an address the upstream sees tells who it came from.
const CLIENT: &str = "127.0.0.3";
const STRANGER: &str = "127.0.0.2";

/// HAProxy in `mode tcp`, one frontend per `(port, server options)`, each passing connections to `to`;
/// stopped by PID on drop.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(to: SocketAddr, frontends: &[(u16, &str)]) -> Haproxy {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("haproxy is not installed: run `make test-deps`");
        let mut config = String::from(
            "global\n    log stderr format raw local0\n\
             defaults\n    mode tcp\n    log global\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
        );
        for (i, (port, options)) in frontends.iter().enumerate() {
            config.push_str(&format!(
                "frontend f{i}\n    bind 127.0.0.1:{port}\n    default_backend b{i}\n\
                 backend b{i}\n    server weir {to} {options}\n"
            ));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, &config).expect("write haproxy.cfg");
        let mut child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        for (port, _) in frontends {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                let exited = child.try_wait().expect("haproxy status");
                assert!(
                    exited.is_none() && Instant::now() < deadline,
                    "haproxy did not start ({exited:?}) with:\n{config}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Haproxy { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[server.proxy_protocol]` naming HAProxy's address, one route to the echo upstream, JSON access lines.
fn config(upstream: SocketAddr, tls: &str) -> String {
    without_balancers(upstream, &format!("{tls}{BALANCERS}"))
}

const BALANCERS: &str = "[server.proxy_protocol]\nfrom = [\"127.0.0.1\", \"::1\"]\n";

fn without_balancers(upstream: SocketAddr, server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"json\"\n{server}\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.e]\nurl = \"http://{upstream}\"\n[[routes]]\nupstream = \"e\"\n"
    )
}

/// curl from `from` to `url`, with `args`.
fn curl(from: &str, url: &str, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", from])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl")
}

/// The echo's JSON and curl's status and version line, from a request that must have succeeded.
fn served(out: &Output) -> (Echo, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, last) = stdout.rsplit_once('\n').expect("the -w line");
    let echo = Echo(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")));
    (echo, last.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_passes_the_client_in_both_versions_and_nobody_else_is_believed() {
    let e = upstream("e").await;
    let weir = Weir::start(&config(e, ""));
    let (v1, v2) = (free_port(), free_port());
    let _haproxy = Haproxy::start(weir.addr, &[(v1, "send-proxy"), (v2, "send-proxy-v2")]);

    for port in [v1, v2] {
        let (echo, status) = served(&curl(CLIENT, &format!("http://127.0.0.1:{port}/"), &[]));
        assert_eq!(status, "200 1.1");
        assert_eq!(
            echo.header("x-forwarded-for"),
            [CLIENT],
            "through port {port}"
        );
    }

    // A client Weir's config does not name connects directly: its own address, and no header is read.
    let (echo, _) = served(&curl(STRANGER, &weir.url("/"), &[]));
    assert_eq!(echo.header("x-forwarded-for"), [STRANGER]);
    // Its header is not read: it is the start of a malformed request, and its claim never travels.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(STRANGER.parse().expect("ip"), 0))
        .expect("bind");
    let stream = socket.connect(weir.addr).await.expect("connect");
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    (&stream)
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let drained = read_until_closed(&stream, Duration::from_secs(5));
    let responses = drained.responses();
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [400],
        "{}",
        show(&drained.bytes, 300)
    );

    // A named peer that sends no header is closed unanswered, and the log says why.
    let out = curl("127.0.0.1", &weir.url("/"), &[]);
    assert!(!out.status.success(), "served without a header");
    assert!(
        weir.wait_for_log("closed a load balancer's connection: not a PROXY protocol header"),
        "{}",
        weir.log()
    );
    assert_eq!(
        weir.metric("weir_proxy_protocol_refused_total", &[]).await,
        Some(1.0)
    );

    // The access log names the client HAProxy spoke for, not HAProxy (the stranger's malformed request was
    // refused by the parser, and is logged as such).
    assert!(weir.wait_for_log(&format!(
        "refused a malformed request: invalid HTTP version parsed client={STRANGER}:"
    )));
    let clients = logged_clients(&weir.log());
    assert_eq!(clients, [CLIENT, CLIENT, STRANGER], "{}", weir.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_h2_pass_through_a_tcp_balancer_with_the_client_named() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    let e = upstream("e").await;
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.path("a.pem"),
        pki.path("a.key")
    );
    let weir = Weir::start(&config(e, &tls));
    let port = free_port();
    let _haproxy = Haproxy::start(weir.addr, &[(port, "send-proxy-v2")]);
    let trust = ["--cacert", &pki.path("ca.pem")];
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/");
    for version in ["--http1.1", "--http2"] {
        let out = curl(
            CLIENT,
            &url,
            &[trust[0], trust[1], "--resolve", &resolve, version],
        );
        let (echo, status) = served(&out);
        let expected = if version == "--http2" {
            "200 2"
        } else {
            "200 1.1"
        };
        assert_eq!(status, expected);
        assert_eq!(echo.header("x-forwarded-for"), [CLIENT]);
        assert_eq!(echo.header("x-forwarded-proto"), ["https"]);
    }
}

/// How a proxy took one header: the request served, with the client its `X-Forwarded-For` names last, or
/// the connection closed without an answer.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    Served(String),
    Closed,
}

/// A hostile-header case: what the spec says of it, and the outcome it allows.
struct Case {
    name: &'static str,
    header: Vec<u8>,
    expected: Taken,
}

fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(command);
    header.push(family);
    let length = u16::try_from(addresses.len() + tlvs.len()).expect("short");
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(addresses);
    header.extend_from_slice(tlvs);
    header
}

/// A NOOP TLV (type 4) of `length` bytes in all.
fn noop(length: usize) -> Vec<u8> {
    let value = length - 3;
    let mut tlv = vec![0x04];
    tlv.extend_from_slice(&u16::try_from(value).expect("short").to_be_bytes());
    tlv.resize(length, 0);
    tlv
}

/// 192.0.2.7:51000 to 10.0.0.2:443.
const V4: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 2, 0xc7, 0x38, 0x01, 0xbb];

fn v6() -> Vec<u8> {
    let mut a = "2001:db8::7"
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets()
        .to_vec();
    a.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets(),
    );
    a.extend_from_slice(&[0xc7, 0x38, 0x01, 0xbb]);
    a
}

fn cases() -> Vec<Case> {
    let served = |client: &str| Taken::Served(client.to_owned());
    let peer = || served("127.0.0.1");
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        // §2.1: the human-readable header.
        Case {
            name: "v1 TCP4",
            header: text("PROXY TCP4 192.0.2.7 10.0.0.2 51000 443\r\n"),
            expected: served("192.0.2.7"),
        },
        Case {
            name: "v1 TCP6",
            header: text("PROXY TCP6 2001:db8::7 2001:db8::2 51000 443\r\n"),
            expected: served("2001:db8::7"),
        },
        Case {
            name: "v1 UNKNOWN: the peer's own address",
            header: text("PROXY UNKNOWN\r\n"),
            expected: peer(),
        },
        Case {
            name: "v1 UNKNOWN with addresses after it, which the receiver ignores",
            header: text("PROXY UNKNOWN 192.0.2.7 10.0.0.2 51000 443\r\n"),
            expected: peer(),
        },
        Case {
            name: "no header from a peer that owes one",
            header: Vec::new(),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 TCP4 naming an IPv6 address",
            header: text("PROXY TCP4 2001:db8::7 10.0.0.2 51000 443\r\n"),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 port past 65535",
            header: text("PROXY TCP4 192.0.2.7 10.0.0.2 70000 443\r\n"),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 an address that is not one",
            header: text("PROXY TCP4 192.0.2.777 10.0.0.2 51000 443\r\n"),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 in lower case",
            header: text("proxy TCP4 192.0.2.7 10.0.0.2 51000 443\r\n"),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 an unknown protocol",
            header: text("PROXY UDP4 192.0.2.7 10.0.0.2 51000 443\r\n"),
            expected: Taken::Closed,
        },
        Case {
            name: "v1 past its 107 bytes",
            header: text(&format!("PROXY UNKNOWN {}\r\n", "x".repeat(100))),
            expected: Taken::Closed,
        },
        // §2.2: the binary header.
        Case {
            name: "v2 PROXY over IPv4",
            header: v2(0x21, 0x11, &V4, &[]),
            expected: served("192.0.2.7"),
        },
        Case {
            name: "v2 PROXY over IPv6",
            header: v2(0x21, 0x21, &v6(), &[]),
            expected: served("2001:db8::7"),
        },
        Case {
            name: "v2 LOCAL (the balancer's own health check): the peer's own address",
            header: v2(0x20, 0x11, &V4, &[]),
            expected: peer(),
        },
        Case {
            name: "v2 PROXY with TLVs after the addresses (NOOP, AUTHORITY)",
            header: v2(
                0x21,
                0x11,
                &V4,
                &[
                    0x04, 0, 2, 0, 0, 0x02, 0, 6, b'a', b'.', b't', b'e', b's', b't',
                ],
            ),
            expected: served("192.0.2.7"),
        },
        Case {
            name: "v2 PROXY with TLVs past a 512-byte read",
            header: v2(0x21, 0x11, &V4, &noop(600)),
            expected: served("192.0.2.7"),
        },
        Case {
            name: "v2 past 4 KiB",
            header: v2(0x21, 0x11, &V4, &noop(5000)),
            expected: Taken::Closed,
        },
        Case {
            name: "v2 IPv4 with an unspecified transport (unassigned)",
            header: v2(0x21, 0x10, &V4, &[]),
            expected: Taken::Closed,
        },
        Case {
            name: "v2 UNSPEC family: the peer's own address",
            header: v2(0x21, 0x00, &[], &[]),
            expected: peer(),
        },
        Case {
            name: "v2 version 1",
            header: v2(0x11, 0x11, &V4, &[]),
            expected: Taken::Closed,
        },
        Case {
            name: "v2 an unknown command",
            header: v2(0x22, 0x11, &V4, &[]),
            expected: Taken::Closed,
        },
        Case {
            name: "v2 a length shorter than its addresses",
            header: v2(0x21, 0x11, &V4[..4], &[]),
            expected: Taken::Closed,
        },
    ]
}

/// Sends `header` and a request on one write, as a balancer does, and reads what comes back.
fn take(proxy: SocketAddr, header: &[u8]) -> Taken {
    let stream = TcpStream::connect(proxy).expect("connect");
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    // The peer may close before it has read all of a refused header; what came back is what counts.
    let _ = (&stream).write_all(&bytes);
    let drained = read_until_closed(&stream, Duration::from_secs(5));
    match drained.responses().first() {
        None if drained.closed => Taken::Closed,
        None => panic!("{proxy}: neither an answer nor a close within 5 s"),
        Some(response) => {
            assert_eq!(response.status, 200, "{}", show(&drained.bytes, 400));
            let echo: serde_json::Value =
                serde_json::from_slice(&response.body).expect("the echo's JSON");
            let forwarded = Echo(echo).header("x-forwarded-for");
            let last = forwarded.last().expect("an X-Forwarded-For");
            Taken::Served(last.rsplit(", ").next().unwrap_or(last).to_owned())
        }
    }
}

fn nginx_config(upstream: SocketAddr, port: u16) -> String {
    support::raw::nginx_http(&format!(
        r#"    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        set_real_ip_from 127.0.0.1;
        real_ip_header proxy_protocol;
        location / {{
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://{upstream};
        }}
    }}
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_are_refused_and_valid_ones_taken_as_nginx_takes_them() {
    let e = upstream("e").await;
    let weir = Weir::start(&config(e, ""));
    let port = free_port();
    let nginx = Nginx::start(&nginx_config(e, port), &[port]);
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut misses = Vec::new();
    let (mut differences, mut lenient) = (Vec::new(), Vec::new());
    for case in cases() {
        let (weir_took, nginx_took) = tokio::task::spawn_blocking({
            let (header, weir) = (case.header.clone(), weir.addr);
            move || (take(weir, &header), take(nginx_addr, &header))
        })
        .await
        .expect("the exchanges");
        if weir_took != case.expected {
            misses.push(format!(
                "{}: {weir_took:?}, wanted {:?}",
                case.name, case.expected
            ));
        }
        match (&case.expected, &nginx_took) {
            (expected, took) if expected == took => {}
            // nginx 1.22 takes some headers the spec has the receiver drop: listed below, not matched.
            (Taken::Closed, _) => lenient.push(case.name),
            // A header the spec allows that nginx takes otherwise means the case is wrong, not nginx.
            (_, took) => differences.push(format!("{}: nginx {took:?}", case.name)),
        }
    }
    assert!(misses.is_empty(), "{misses:#?}\n{}", weir.log());
    assert_eq!(
        lenient,
        [
            "v1 TCP4 naming an IPv6 address",
            "v1 an address that is not one",
            "v1 past its 107 bytes",
            "v2 IPv4 with an unspecified transport (unassigned)",
            "v2 an unknown command",
        ],
        "refused by Weir, taken by nginx"
    );
    assert!(
        differences.is_empty(),
        "{differences:#?}\n{}",
        nginx.error_log()
    );
    assert!(weir.wait_for_log("not a PROXY protocol header"));
    let closed = cases()
        .iter()
        .filter(|c| c.expected == Taken::Closed)
        .count();
    assert_eq!(
        weir.metric("weir_proxy_protocol_refused_total", &[]).await,
        Some(closed as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_names_a_balancer_applies_to_its_next_connections() {
    let e = upstream("e").await;
    let weir = Weir::start(&without_balancers(e, ""));
    // Not counted while no balancer is named.
    assert_eq!(
        weir.metric("weir_proxy_protocol_refused_total", &[]).await,
        None
    );
    let port = free_port();
    let _haproxy = Haproxy::start(weir.addr, &[(port, "send-proxy-v2")]);
    let url = format!("http://127.0.0.1:{port}/");
    // Unnamed, HAProxy's header is the start of a request Weir cannot read.
    let out = curl(CLIENT, &url, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("\n400 1.1"),
        "{out:?}"
    );

    std::fs::write(weir.config_file(), config(e, "")).expect("write the config");
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("generation=2"), "{}", weir.log());
    let (echo, _) = served(&curl(CLIENT, &url, &[]));
    assert_eq!(echo.header("x-forwarded-for"), [CLIENT]);
    assert_eq!(
        weir.metric("weir_proxy_protocol_refused_total", &[]).await,
        Some(0.0)
    );
}

#[test]
fn weir_check_names_the_field_of_a_bad_peer_and_an_empty_list() {
    let mut said = String::new();
    for from in [r#"["10.0.0.1/8"]"#, r#"["lb.internal"]"#, "[]"] {
        let out = support::check(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.proxy_protocol]\nfrom = {from}\n\
             [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n"
        ));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        said.push_str(&support::report(&out));
    }
    support::golden("check-proxy-protocol.txt", &said);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_in_pieces_is_read_whole_and_one_that_stalls_is_closed_in_time() {
    let e = upstream("e").await;
    let weir = Weir::start(&config(e, "").replace(
        "access_log = \"json\"\n",
        "access_log = \"json\"\nheader_read_timeout = \"1s\"\n",
    ));
    let addr = weir.addr;
    let pieces = tokio::task::spawn_blocking(move || {
        let mut v2 = v2(0x21, 0x11, &V4, &[]);
        v2.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
        let v1 =
            b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 443\r\nGET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
        // Cut inside version 2's signature, inside its addresses, and inside version 1's line.
        [(v2.clone(), 5), (v2, 20), (v1.to_vec(), 17)].map(|(bytes, cut)| {
            let stream = TcpStream::connect(addr).expect("connect");
            (&stream).write_all(&bytes[..cut]).expect("write");
            std::thread::sleep(Duration::from_millis(200));
            (&stream).write_all(&bytes[cut..]).expect("write");
            let drained = read_until_closed(&stream, Duration::from_secs(5));
            let response = drained.responses().into_iter().next();
            let body = response.map(|r| r.body).unwrap_or_default();
            let echo = Echo(serde_json::from_slice(&body).expect("the echo's JSON"));
            echo.header("x-forwarded-for")
        })
    });
    for forwarded in pieces.await.expect("the exchanges") {
        assert_eq!(forwarded, ["192.0.2.7"]);
    }

    // A balancer's TCP health check opens and closes without a byte: no broken header, neither logged at
    // `warn` nor counted.
    drop(TcpStream::connect(addr).expect("connect"));
    let stalled = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        (&stream).write_all(b"PROXY TCP4 192.0.2.7").expect("write");
        let started = Instant::now();
        let drained = read_until_closed(&stream, Duration::from_secs(5));
        (drained, started.elapsed())
    });
    let (drained, after) = stalled.await.expect("the exchange");
    assert!(
        drained.closed && drained.bytes.is_empty(),
        "{}",
        show(&drained.bytes, 200)
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert!(weir.wait_for_log(
        "closed a load balancer's connection: no whole PROXY protocol header within header_read_timeout"
    ));
    assert_eq!(
        weir.metric("weir_proxy_protocol_refused_total", &[]).await,
        Some(1.0)
    );
    assert!(!weir.log().contains("closed before it sent anything"));
}
