//! WebSocket through the real `weir` binary: a Python `websockets` echo server behind it, a Python
//! `websockets` client in front, text and binary messages both ways; token-auth deciding the handshake; a
//! route with a body-transforming plugin refusing the upgrade with 501.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use hyper::StatusCode;
use support::*;

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
    assert_eq!(client(&weir, None).await, "ok 7");
}
