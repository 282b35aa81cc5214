//! WebSocket through the real `weir` binary: a Python `websockets` echo server behind it, a Python
//! `websockets` client in front, text and binary messages both ways; token-auth deciding the handshake; a
//! route with a body-transforming plugin refusing the upgrade with 501; a tunnel holding its connection's
//! `max_connections` slot, and holding the SIGTERM drain until it closes or `shutdown_timeout` ends; over
//! TLS, a tunnel cut by a reload that revokes its client's certificate, over HTTP/1.1 and HTTP/2. And
//! over HTTP/2: hyper's h2 client opening a WebSocket with extended CONNECT (RFC 8441), frames by hand.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Greets each connection with `hello` (a message the server starts), then echoes every message as it came,
/// text as text and bytes as bytes. Prints its port first.
const ECHO_SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    await ws.send("hello " + ws.request.path)
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

asyncio.run(main())
"#;

/// Connects to `argv[1]` (with `Authorization: argv[2]` when given), reads the greeting, sends text and
/// binary messages (one of 256 KiB) and checks each echo. Prints `ok <messages>` or `refused <status>`.
const CLIENT: &str = r#"
import asyncio, os, sys
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

async def main():
    headers = {"Authorization": sys.argv[2]} if len(sys.argv) > 2 else {}
    try:
        async with connect(sys.argv[1], additional_headers=headers, max_size=None) as ws:
            greeting = await ws.recv()
            assert greeting == "hello /chat", greeting
            messages = ["one", "twø", "x" * 10000, b"\x00\x01\xff", os.urandom(256 * 1024), b""]
            for message in messages:
                await ws.send(message)
                echo = await ws.recv()
                assert type(echo) is type(message) and echo == message, (type(echo), len(echo))
            print("ok", len(messages) + 1)
    except InvalidStatus as e:
        print("refused", e.response.status_code)

asyncio.run(main())
"#;

/// Connects to `argv[1]`, exchanges a message, stays quiet for `argv[2]` seconds and exchanges another
/// (past the server's `header_read_timeout`: the tunnel is no request head), then stays quiet until the
/// proxy closes the tunnel. Prints `ok <seconds to the close>`.
const CLIENT_IDLE: &str = r#"
import asyncio, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main():
    async with connect(sys.argv[1]) as ws:
        await ws.recv()
        for pause in [0, float(sys.argv[2])]:
            await asyncio.sleep(pause)
            await ws.send("ping")
            assert await ws.recv() == "ping"
        quiet = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed:
            print("ok", round(time.monotonic() - quiet, 1))

asyncio.run(main())
"#;

/// Opens a tunnel to `argv[1]`, then a second connection while it is open (`max_connections = 1`): the
/// second handshake must not complete while the first tunnel carries messages, and must once it closes.
/// Prints `ok <seconds the second waited after the close>`.
const CLIENT_SECOND_WAITS: &str = r#"
import asyncio, sys, time
from websockets.asyncio.client import connect

async def main():
    url = sys.argv[1]
    async def second():
        ws = await connect(url, open_timeout=None)
        return ws, time.monotonic()
    async with connect(url) as first:
        assert await first.recv() == "hello /chat"
        waiting = asyncio.create_task(second())
        for i in range(15):
            await asyncio.sleep(0.1)
            await first.send(f"m{i}")
            assert await first.recv() == f"m{i}"
        assert not waiting.done(), "a second handshake completed while the tunnel held the one slot"
    closed = time.monotonic()
    ws, opened = await asyncio.wait_for(waiting, 10)
    assert await ws.recv() == "hello /chat"
    await ws.send("second")
    assert await ws.recv() == "second"
    await ws.close()
    print("ok", round(opened - closed, 1))

asyncio.run(main())
"#;

/// Opens a tunnel to `argv[1]`, prints `open` and waits for a line on stdin (the test sends SIGTERM first),
/// then exchanges ten messages over a second. With `argv[2]` = `close` it then closes and prints `ok
/// closed`; otherwise it waits for the proxy to end the tunnel and prints `ok cut <seconds since the line>`.
const CLIENT_DRAINED: &str = r#"
import asyncio, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main():
    async with connect(sys.argv[1]) as ws:
        await ws.recv()
        print("open", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        signalled = time.monotonic()
        for i in range(10):
            await asyncio.sleep(0.1)
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
        if sys.argv[2] != "close":
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed:
                print("ok cut", round(time.monotonic() - signalled, 1))
            return
    print("ok closed")

asyncio.run(main())
"#;

/// The echo server, killed on drop.
struct EchoServer {
    child: Child,
    addr: SocketAddr,
}

impl EchoServer {
    fn start() -> EchoServer {
        let mut child = Command::new("python3")
            .args(["-c", ECHO_SERVER])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 (websockets is installed by `make test-deps`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the echo server's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port from the echo server: {line:?}"));
        EchoServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the client against `weir`'s `/chat`, with an `Authorization` value when given; its one line.
async fn client(weir: &Weir, authorization: Option<&str>) -> String {
    python(CLIENT, weir, authorization).await
}

/// Runs `script` with the `/chat` URL and `arg`; its one line.
async fn python(script: &'static str, weir: &Weir, arg: Option<&str>) -> String {
    let url = format!("ws://{}/chat", weir.addr);
    let arg = arg.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script, &url]);
        if let Some(value) = arg {
            cmd.arg(value);
        }
        let out = cmd.stderr(Stdio::inherit()).output().expect("run python3");
        assert!(out.status.success(), "the websocket client failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .expect("client task")
}

/// The upgrade headers a WebSocket handshake sends, for requests made without a WebSocket client.
const HANDSHAKE: [(&str, &str); 4] = [
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_both_ways_through_an_empty_chain() {
    let echo = EchoServer::start();
    let weir = Weir::start(&one_route(echo.addr, ""));

    assert_eq!(client(&weir, None).await, "ok 7");
    // One request in the access log, with the status the client saw.
    assert!(weir.wait_for_log("GET /chat 101"), "{}", weir.log());
    // The tunnel's end leaves the proxy serving: a second connection upgrades as well.
    assert_eq!(client(&weir, None).await, "ok 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_decides_the_handshake() {
    let echo = EchoServer::start();
    let chain = "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = { tokens = { alice = \"a-secret\" } }\n";
    let weir = Weir::start(&one_route(echo.addr, chain));

    assert_eq!(client(&weir, None).await, "refused 401");
    assert_eq!(client(&weir, Some("Token wrong")).await, "refused 403");
    assert_eq!(client(&weir, Some("Token a-secret")).await, "ok 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_transforms_bodies_refuses_the_upgrade() {
    let echo = EchoServer::start();
    let weir = Weir::start(&one_route(
        echo.addr,
        "[[routes.plugins]]\nplugin = \"gzip\"\n",
    ));

    assert_eq!(client(&weir, None).await, "refused 501");
    let reply = get_with(&weir.url("/chat"), &HANDSHAKE).await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        reply.text(),
        "WebSocket is not available on this route: a plugin of its chain transforms bodies\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_declines_is_answered_as_usual() {
    // The echo upstream of the other tests speaks plain HTTP: it answers the handshake with a 200 of its
    // own, which goes to the client as any response.
    let weir = Weir::start(&one_route(upstream("a").await, ""));
    let reply = get_with(&weir.url("/chat"), &HANDSHAKE).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-upstream"), Some("a"));
    // It saw the upgrade asked for, and the next request on Weir is served.
    assert_eq!(Echo(reply.json()).header("upgrade"), ["websocket"]);
    assert_eq!(get(&weir.url("/next")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_outlives_the_head_clock_and_ends_when_idle() {
    let echo = EchoServer::start();
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"1s\"\n\
         log_level = \"debug\"\n[server.request_id]\n\
         [upstreams.a]\nurl = \"http://{}\"\nread_timeout = \"3s\"\n[[routes]]\nupstream = \"a\"\n",
        echo.addr
    ));
    let line = python(CLIENT_IDLE, &weir, Some("2")).await;
    let waited: f64 = line
        .strip_prefix("ok ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}\n{}", weir.log()));
    // Closed by the upstream's read_timeout of quiet, not sooner, and not much later.
    assert!((2.9..5.0).contains(&waited), "closed after {waited}s");
    // The tunnel's task logs as part of its request.
    assert!(
        weir.wait_for_record(&["request{id=", "websocket tunnel ended: idle for 3s"]),
        "{}",
        weir.log()
    );
    assert_eq!(client(&weir, None).await, "ok 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_holds_its_connection_slot_until_it_closes() {
    let echo = EchoServer::start();
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\n\
         [upstreams.a]\nurl = \"http://{}\"\n[[routes]]\nupstream = \"a\"\n",
        echo.addr
    ));
    let line = python(CLIENT_SECOND_WAITS, &weir, None).await;
    let waited: f64 = line
        .strip_prefix("ok ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}\n{}", weir.log()));
    // Taken from the backlog as soon as the tunnel let the slot go.
    assert!(
        waited < 1.0,
        "the second connection waited {waited}s after the close"
    );
}

/// Runs [`CLIENT_DRAINED`] in `mode`, sends `weir` SIGTERM once the tunnel is open, and returns the
/// client's line.
async fn drained_tunnel(weir: &Weir, mode: &'static str) -> String {
    let url = format!("ws://{}/chat", weir.addr);
    let mut child = Command::new("python3")
        .args(["-c", CLIENT_DRAINED, &url, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = tokio::task::spawn_blocking(move || {
        let mut stdout = stdout;
        let mut open = String::new();
        stdout.read_line(&mut open).expect("read the client");
        assert_eq!(open.trim(), "open");
        stdout
    })
    .await
    .expect("client task");
    weir.signal(libc::SIGTERM);
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        assert!(
            child.wait().expect("wait").success(),
            "the websocket client failed"
        );
        line.trim().to_owned()
    })
    .await
    .expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_an_open_tunnel_until_it_closes() {
    let echo = EchoServer::start();
    let mut weir = Weir::start(&one_route(echo.addr, ""));
    // Messages still flow through the draining process, and the client's close ends the drain.
    assert_eq!(drained_tunnel(&weir, "close").await, "ok closed");
    // Long before the default shutdown_timeout of 10s.
    let status = weir.wait_exit(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{}", weir.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_an_open_tunnel_at_shutdown_timeout() {
    let echo = EchoServer::start();
    let mut weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"3s\"\n\
         [upstreams.a]\nurl = \"http://{}\"\n[[routes]]\nupstream = \"a\"\n",
        echo.addr
    ));
    let line = drained_tunnel(&weir, "wait").await;
    let cut: f64 = line
        .strip_prefix("ok cut ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}\n{}", weir.log()));
    // Messages flowed for a second after SIGTERM; the tunnel was closed by the process ending at the
    // shutdown_timeout, not before.
    assert!((2.8..5.0).contains(&cut), "cut {cut}s after SIGTERM");
    let status = weir.wait_exit(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{}", weir.log());
    assert!(
        weir.log()
            .contains("WebSocket tunnels still open at the end of the grace period")
    );
}

/// A final WebSocket frame as a client sends it (RFC 6455 §5.2): masked, of `opcode`, under 64 KiB.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match u8::try_from(payload.len()) {
        Ok(len) if len < 126 => frame.push(0x80 | len),
        _ => {
            frame.push(0x80 | 126);
            let len = u16::try_from(payload.len()).expect("a payload under 64 KiB");
            frame.extend(len.to_be_bytes());
        }
    }
    let mask = [0x5a, 0x17, 0xc3, 0x08];
    frame.extend(mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// The next frame from the server (unmasked, under 64 KiB): its opcode and payload.
async fn server_frame(io: &mut (impl AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.expect("a frame's head");
    assert_eq!(head[1] & 0x80, 0, "a server's frame is not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            io.read_exact(&mut len).await.expect("a frame's length");
            usize::from(u16::from_be_bytes(len))
        }
        127 => panic!("a frame over 64 KiB"),
        len => usize::from(len),
    };
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload)
        .await
        .expect("a frame's payload");
    (head[0] & 0x0f, payload)
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An h2c connection to `weir` with hyper's client, once the server's SETTINGS, which allow extended
/// CONNECT, have come: they precede its first answer, and the client sends no extended CONNECT before.
async fn h2_client(weir: &Weir) -> H2Sender {
    let tcp = tokio::net::TcpStream::connect(weir.addr)
        .await
        .expect("connect");
    h2_over(tcp, h2_get(weir, "/first")).await
}

/// hyper's h2 client over `io`, once `first` is answered.
async fn h2_over<T>(io: T, first: Request<Empty<Bytes>>) -> H2Sender
where
    T: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("an h2 handshake");
    tokio::spawn(connection);
    let first = sender.send_request(first).await.expect("an answer");
    first.into_body().collect().await.expect("its body");
    sender
}

fn h2_get(weir: &Weir, path: &str) -> Request<Empty<Bytes>> {
    Request::get(weir.url(path))
        .body(Empty::new())
        .expect("a request")
}

/// RFC 8441's request for a WebSocket on a stream.
fn extended_connect(weir: &Weir) -> Request<Empty<Bytes>> {
    Request::connect(weir.url("/chat"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .expect("an extended CONNECT")
}

/// A WebSocket opened on a stream of `sender`'s connection, and the head of the `200` that opened it.
async fn h2_tunnel(
    sender: &mut H2Sender,
    weir: &Weir,
) -> (http::HeaderMap, TokioIo<hyper::upgrade::Upgraded>) {
    let response = sender
        .send_request(extended_connect(weir))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK, "{}", weir.log());
    let headers = response.headers().clone();
    let tunnel = hyper::upgrade::on(response)
        .await
        .expect("the stream's tunnel");
    (headers, TokioIo::new(tunnel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_opens_a_websocket_with_extended_connect() {
    let echo = EchoServer::start();
    let weir = Weir::start(&one_route(echo.addr, ""));
    let mut sender = h2_client(&weir).await;
    let (headers, mut ws) = h2_tunnel(&mut sender, &weir).await;
    assert!(headers.get("sec-websocket-accept").is_none());
    assert!(headers.get("upgrade").is_none());
    assert_eq!(server_frame(&mut ws).await, (1, b"hello /chat".to_vec()));
    let long = "x".repeat(10_000);
    for (opcode, message) in [
        (1, "one".as_bytes()),
        (1, "twø".as_bytes()),
        (2, b"\x00\x01\xff".as_slice()),
        (1, long.as_bytes()),
    ] {
        ws.write_all(&client_frame(opcode, message))
            .await
            .expect("send");
        assert_eq!(server_frame(&mut ws).await, (opcode, message.to_vec()));
    }
    // The connection's other streams go on beside the tunnel's.
    let beside = sender
        .send_request(h2_get(&weir, "/beside"))
        .await
        .expect("an answer");
    // The echo server wants an upgrade.
    assert_eq!(beside.status(), StatusCode::UPGRADE_REQUIRED);
    beside.into_body().collect().await.expect("its body");
    // A close (1000, normal): the echo server answers with its own and ends the tunnel.
    ws.write_all(&client_frame(8, &1000u16.to_be_bytes()))
        .await
        .expect("send the close");
    assert_eq!(
        server_frame(&mut ws).await,
        (8, 1000u16.to_be_bytes().to_vec())
    );
    let mut rest = Vec::new();
    ws.read_to_end(&mut rest).await.expect("the stream's end");
    assert!(rest.is_empty(), "{rest:?}");
    // Logged as the request the plugins saw, with the status the client saw.
    assert!(weir.wait_for_log("GET /chat 200"), "{}", weir.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_websocket_declined_with_a_2xx_is_a_502_and_refusals_hold() {
    // The plain echo upstream answers the upgrade with a 200 of its own: to an extended CONNECT a 2xx
    // would say the tunnel is open.
    let weir = Weir::start(&one_route(upstream("a").await, ""));
    let mut sender = h2_client(&weir).await;
    let declined = sender
        .send_request(extended_connect(&weir))
        .await
        .expect("an answer");
    assert_eq!(declined.status(), StatusCode::BAD_GATEWAY);
    let body = declined.into_body().collect().await.expect("its body");
    assert_eq!(
        body.to_bytes(),
        "upstream answered the WebSocket request without switching protocols\n"
    );

    // A route whose plugins transform bodies refuses it as it does an HTTP/1.1 upgrade.
    let echo = EchoServer::start();
    let weir = Weir::start(&one_route(
        echo.addr,
        "[[routes.plugins]]\nplugin = \"gzip\"\n",
    ));
    let mut sender = h2_client(&weir).await;
    let refused = sender
        .send_request(extended_connect(&weir))
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::NOT_IMPLEMENTED);
}

/// An upstream that answers any request with a 101 whose handshake headers are `headers`, then holds the
/// connection; the requests it read are sent on `heads`.
async fn switching_upstream(
    headers: &'static str,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (sent, heads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = sent.send(String::from_utf8_lossy(&head).into_owned());
                let answer = format!("HTTP/1.1 101 Switching Protocols\r\n{headers}\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_websocket_whose_upstream_does_not_answer_weirs_key_is_a_502() {
    for (headers, why) in [
        (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
            "does not answer Weir's key",
        ),
        (
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
            "has no Sec-WebSocket-Accept",
        ),
    ] {
        let (upstream, mut heads) = switching_upstream(headers).await;
        let weir = Weir::start(&one_route(upstream, ""));
        let mut sender = h2_client(&weir).await;
        let response = sender
            .send_request(extended_connect(&weir))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{why}");
        let body = response.into_body().collect().await.expect("its body");
        assert_eq!(
            body.to_bytes(),
            "upstream answered the WebSocket handshake wrongly\n"
        );
        // The handshake Weir made, after h2_client's plain first request.
        let mut asked = Vec::new();
        while let Ok(head) = heads.try_recv() {
            asked.push(head.to_ascii_lowercase());
        }
        assert!(
            asked.iter().any(|h| h.contains("sec-websocket-key: ")),
            "{asked:?}"
        );
        assert!(weir.wait_for_log(why), "{why}: {}", weir.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_101_to_a_request_that_asked_for_no_upgrade_is_a_502() {
    let (upstream, _heads) =
        switching_upstream("Upgrade: websocket\r\nConnection: Upgrade\r\n").await;
    let weir = Weir::start(&one_route(upstream, ""));
    let reply = get(&weir.url("/plain")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.text(), "upstream switched protocols unasked\n");
    // Over HTTP/2, where a 101 cannot be sent at all.
    let mut sender = h2_client(&weir).await;
    let response = sender
        .send_request(h2_get(&weir, "/plain"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(weir.wait_for_log("to a request that asked for no upgrade"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_keeps_its_place_among_the_upstreams_max_requests() {
    let echo = EchoServer::start();
    let config = one_route(echo.addr, "").replace(
        "[[routes]]",
        "max_requests = 1\nqueue_timeout = \"300ms\"\n[[routes]]",
    );
    let weir = Weir::start(&config);
    let mut sender = h2_client(&weir).await;
    let (_, mut ws) = h2_tunnel(&mut sender, &weir).await;
    assert_eq!(server_frame(&mut ws).await, (1, b"hello /chat".to_vec()));
    // The tunnel holds the endpoint's one place: another request waits its queue_timeout out.
    let waiting = get(&weir.url("/plain")).await;
    assert_eq!(waiting.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(waiting.text(), "upstream busy, try again\n");
    // Closed, the tunnel gives it back: the echo server answers a plain request itself (426).
    ws.write_all(&client_frame(8, &1000u16.to_be_bytes()))
        .await
        .expect("send the close");
    let mut rest = Vec::new();
    let _ = ws.read_to_end(&mut rest).await;
    // The stream's end on our side too, or the tunnel waits for the rest of the client's bytes.
    ws.shutdown().await.expect("end the stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(&weir.url("/plain")).await;
        if reply.status == StatusCode::UPGRADE_REQUIRED {
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
    }
}

/// Opens a WebSocket over TLS to `argv[1]` (an `https` address) as `a.test`, trusting CA `argv[2]` and
/// showing certificate `argv[3]` with key `argv[4]`; prints `open` after the greeting, then for each line
/// on stdin sends a message and prints `echoed`, or `closed` once the tunnel is gone.
const CLIENT_TLS: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main():
    addr, ca, cert, key = sys.argv[1:5]
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    async with connect(f"wss://{addr}/chat", ssl=context, server_hostname="a.test") as ws:
        await ws.recv()
        print("open", flush=True)
        for _ in sys.stdin:
            try:
                await ws.send("again")
                await asyncio.wait_for(ws.recv(), 5)
                print("echoed", flush=True)
            except ConnectionClosed:
                print("closed", flush=True)
                return

asyncio.run(main())
"#;

/// Weir over TLS in front of `echo`, asking for a client certificate from `clients`' CA, with their
/// revocation list (nothing revoked yet); `ws`'s certificate, serial number `serial`, is one of them.
struct Revocable {
    pki: pki::Pki,
    clients: pki::Pki,
    serial: u64,
    weir: Weir,
}

impl Revocable {
    fn start(echo: &EchoServer) -> Revocable {
        let pki = pki::Pki::new();
        pki.leaf("a.test", "a");
        let clients = pki::Pki::new();
        let serial = clients.client("ws", "spiffe://weir.test/ws", "ws.test");
        clients.crl(&[], (2099, 1, 1));
        let weir = Weir::start(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             client_ca = \"{}\"\nclient_crl = \"{}\"\n\
             [upstreams.a]\nurl = \"http://{}\"\n[[routes]]\nupstream = \"a\"\n",
            pki.path("a.pem"),
            pki.path("a.key"),
            clients.path("ca.pem"),
            clients.path("crl.pem"),
            echo.addr
        ));
        Revocable {
            pki,
            clients,
            serial,
            weir,
        }
    }
}

/// hyper's h2 client over TLS to `a.test` at `weir`, trusting `pki`'s CA and showing `clients`' certificate
/// `cn`, as `h2_over` makes it.
async fn h2_over_mtls(weir: &Weir, pki: &pki::Pki, clients: &pki::Pki, cn: &str) -> H2Sender {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.pem")).expect("the CA"))
        .expect("a root");
    let chain = CertificateDer::pem_file_iter(clients.path(&format!("{cn}.pem")))
        .expect("the chain")
        .collect::<Result<Vec<_>, _>>()
        .expect("its certificates");
    let key = PrivateKeyDer::from_pem_file(clients.path(&format!("{cn}.key"))).expect("the key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("a client config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(weir.addr)
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("a.test").expect("a name"), tcp)
        .await
        .expect("a TLS handshake");
    h2_over(tls, https(weir, "GET", "/first")).await
}

/// A request to `path` at `weir` under the name `a.test`, over TLS: an extended CONNECT for a WebSocket
/// when `method` is `CONNECT`.
fn https(weir: &Weir, method: &str, path: &str) -> Request<Empty<Bytes>> {
    let uri = format!("https://a.test:{}{path}", weir.addr.port());
    let request = Request::builder().method(method).uri(uri);
    let request = if method == "CONNECT" {
        request
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .header("sec-websocket-version", "13")
    } else {
        request
    };
    request.body(Empty::new()).expect("a request")
}

/// A WebSocket on a stream of an mTLS HTTP/2 connection (RFC 8441) is cut at once when a reload revokes
/// the certificate its connection showed, as over HTTP/1.1 (below), and the connection takes no further
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_the_client_certificate_cuts_its_h2_tunnel() {
    let echo = EchoServer::start();
    let Revocable {
        pki,
        clients,
        serial,
        weir,
    } = Revocable::start(&echo);
    let mut sender = h2_over_mtls(&weir, &pki, &clients, "ws").await;
    let response = sender
        .send_request(https(&weir, "CONNECT", "/chat"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK, "{}", weir.log());
    let mut ws = TokioIo::new(hyper::upgrade::on(response).await.expect("the tunnel"));
    assert_eq!(server_frame(&mut ws).await, (1, b"hello /chat".to_vec()));
    ws.write_all(&client_frame(1, b"before"))
        .await
        .expect("send");
    assert_eq!(server_frame(&mut ws).await, (1, b"before".to_vec()));

    clients.crl(&[serial], (2099, 1, 1));
    weir.signal(libc::SIGHUP);
    let revoked = std::time::Instant::now();
    // The stream ends, reset or closed, without any message of the upstream's.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), ws.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the tunnel outlived the revocation: {}",
        weir.log()
    );
    assert!(rest.is_empty(), "{rest:?}");
    let cut = revoked.elapsed();
    // At once, not at the drain's shutdown_timeout (10 s by default).
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    // The connection drains: a request on it is answered 421, or it is gone.
    if let Ok(answer) = sender.send_request(https(&weir, "GET", "/after")).await {
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
    }
}

/// A tunnel made over TLS carries its client's certificate check: a reload that leaves the check as it
/// was leaves the tunnel open, and one that revokes the certificate cuts it, as it drains the connections
/// the old check let in (tests/tls.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_the_client_certificate_cuts_its_tunnel() {
    let echo = EchoServer::start();
    let Revocable {
        pki,
        clients,
        serial,
        weir,
    } = Revocable::start(&echo);
    let mut child = Command::new("python3")
        .args([
            "-c",
            CLIENT_TLS,
            &weir.addr.to_string(),
            &pki.path("ca.pem"),
        ])
        .args([clients.path("ws.pem"), clients.path("ws.key")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut next = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the client");
        line.trim().to_owned()
    };
    tokio::task::block_in_place(|| {
        assert_eq!(next(), "open", "{}", weir.log());
        weir.signal(libc::SIGHUP);
        assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
        stdin.write_all(b"send\n").expect("write to the client");
        assert_eq!(next(), "echoed", "{}", weir.log());

        clients.crl(&[serial], (2099, 1, 1));
        weir.signal(libc::SIGHUP);
        assert!(
            weir.wait_for_log("clients' certificates are checked anew"),
            "{}",
            weir.log()
        );
        stdin.write_all(b"send\n").expect("write to the client");
        assert_eq!(next(), "closed", "{}", weir.log());
    });
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "the client failed");
}
