//! gRPC through the real `weir` binary: a Python grpcio server (generic handlers, bytes in and out, no
//! protoc) behind an `http2 = true` upstream, a grpcio client speaking h2c to the listener: the status in
//! the response's trailers reaches the client, also after body hooks that transform both bodies. And
//! `te: trailers` reaches an upstream, the other `te` values not.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::*;

/// `weir.Test`: `Unary` echoes, `Stream` sends five messages, `Missing` aborts with NOT_FOUND. Prints its
/// port first.
const SERVER: &str = r#"
import grpc
from concurrent import futures

def unary(request, context):
    return b"echo:" + request

def stream(request, context):
    for i in range(5):
        yield request + b"-" + str(i).encode()

def missing(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())

handler = grpc.method_handlers_generic_handler("weir.Test", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Missing": grpc.unary_unary_rpc_method_handler(missing),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"#;

/// Calls each method through `argv[1]` and prints what came back as one JSON object.
const CLIENT: &str = r#"
import grpc, json, sys

channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.enable_http_proxy", 0)])
out = {}
out["unary"] = channel.unary_unary("/weir.Test/Unary")(b"hi", timeout=10).decode()
out["stream"] = [m.decode() for m in channel.unary_stream("/weir.Test/Stream")(b"n", timeout=10)]
try:
    channel.unary_unary("/weir.Test/Missing")(b"x", timeout=10)
    out["missing"] = "no error"
except grpc.RpcError as e:
    out["missing"] = [e.code().name, e.details()]
print(json.dumps(out))
"#;

/// The gRPC server, killed on drop.
struct GrpcServer(Child);

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn grpc_server() -> (GrpcServer, u16) {
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3 (grpcio is installed by `make test-deps`)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the gRPC server's port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no port from the gRPC server: {line:?}"));
    (GrpcServer(child), port)
}

/// Weir in front of the gRPC server on `port`, one route to it with `chain` (plugin entries).
fn weir_for(port: u16, chain: &str) -> Weir {
    Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://127.0.0.1:{port}\"\nhttp2 = true\n\
         [[routes]]\nupstream = \"a\"\n{chain}"
    ))
}

/// The client's calls through `weir`, as its JSON line.
async fn calls_through(weir: &Weir) -> serde_json::Value {
    let target = weir.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &target])
            .stderr(Stdio::inherit())
            .output()
            .expect("run python3")
    })
    .await
    .expect("client task");
    assert!(
        out.status.success(),
        "the gRPC client failed\n{}",
        weir.log()
    );
    serde_json::from_slice(&out.stdout).expect("the client's JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_streaming_and_error_status_through_weir() {
    let (_server, port) = grpc_server();
    let weir = weir_for(port, "");
    assert_eq!(
        calls_through(&weir).await,
        serde_json::json!({
            "unary": "echo:hi",
            "stream": ["n-0", "n-1", "n-2", "n-3", "n-4"],
            "missing": ["NOT_FOUND", "no such thing: x"],
        }),
        "{}",
        weir.log()
    );
    assert!(
        weir.wait_for_log("POST /weir.Test/Stream 200"),
        "{}",
        weir.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_follow_body_hooks_that_transform_both_bodies() {
    let (_server, port) = grpc_server();
    let weir = weir_for(port, &fixture(r#"mode = "body-upper""#));
    // A message's 5-byte prefix (a flag and a length under 97) holds no letter, so upper-cased messages
    // are still gRPC; the status is in the trailers, which reach the client as the upstream sent them.
    assert_eq!(
        calls_through(&weir).await,
        serde_json::json!({
            "unary": "ECHO:HI",
            "stream": ["N-0", "N-1", "N-2", "N-3", "N-4"],
            "missing": ["NOT_FOUND", "no such thing: X"],
        }),
        "{}",
        weir.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_te_trailers_is_forwarded() {
    let weir = Weir::start(&one_route(upstream("a").await, ""));
    let reply = get_with(&weir.url("/te"), &[("te", "trailers, deflate")]).await;
    assert_eq!(Echo(reply.json()).header("te"), ["trailers"]);
    let reply = get_with(&weir.url("/te"), &[("te", "deflate")]).await;
    assert!(Echo(reply.json()).header("te").is_empty());
}
