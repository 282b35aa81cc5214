//! HTTP/2 in clear text beside HTTP/1.1 on one port, driven by curl: the plugins see the same request
//! whichever the client spoke, and body hooks stream an h2 request body under its route's limit. And, with
//! hyper's h2 client, trailers pass body hooks both ways, and a SIGTERM drain sends GOAWAY: no new stream,
//! the one in flight answered, the connection closed right after it.

mod support;

use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::endpoint::{Behaviour, Endpoint};
use support::{Weir, fixture, upstream};

/// Three routes to the echo upstream: one whose `headers` plugin copies what it sees into request headers,
/// one whose body hooks upper-case both bodies, one that takes no body over 1 KiB.
fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[upstreams.a]
url = "http://{upstream}"

[[routes]]
path_prefix = "/seen"
upstream = "a"
[[routes.plugins]]
plugin = "headers"
config.request = {{ set = {{ "x-seen-uri" = "{{original_uri}}", "x-seen-path" = "{{path}}", "x-seen-method" = "{{method}}", "x-seen-host" = "{{header.host}}", "x-seen-query" = "{{query}}" }} }}

[[routes]]
path_prefix = "/upper"
upstream = "a"
max_request_body = "1MiB"
{upper}
[[routes]]
path_prefix = "/small"
upstream = "a"
max_request_body = "1KiB"
{upper}"#,
        upper = fixture(r#"mode = "body-upper""#),
    )
}

/// curl's output and the HTTP version it spoke, `1.1` or `2`.
async fn curl(args: &[&str]) -> (String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_version}"])
            .args(&args)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let (body, version) = text.rsplit_once('\n').expect("the version line");
        (body.to_owned(), version.to_owned())
    })
    .await
    .expect("curl task")
}

/// The echo's request headers, sorted.
fn headers(echo: &str) -> Vec<(String, String)> {
    let echo: serde_json::Value = serde_json::from_str(echo).expect("the echo's JSON");
    let mut headers: Vec<(String, String)> =
        serde_json::from_value(echo["headers"].clone()).expect("header pairs");
    headers.sort();
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_the_same_request_over_h2c_and_http_11() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a));
    let url = weir.url("/seen/x?q=1");
    let ask = ["-A", "curl", "-H", "x-client: 1"];
    let (h1, v1) = curl(&[&["--http1.1", &url], &ask[..]].concat()).await;
    let (h2, v2) = curl(&[&["--http2-prior-knowledge", &url], &ask[..]].concat()).await;
    assert_eq!((v1.as_str(), v2.as_str()), ("1.1", "2"));
    let (h1, h2) = (headers(&h1), headers(&h2));
    assert_eq!(h1, h2, "the upstream saw different requests");
    let host = weir.addr.to_string();
    for (name, value) in [
        ("x-seen-uri", "/seen/x?q=1"),
        ("x-seen-path", "/seen/x"),
        ("x-seen-method", "GET"),
        ("x-seen-host", host.as_str()),
        ("x-seen-query", "q=1"),
    ] {
        assert!(
            h2.contains(&(name.to_owned(), value.to_owned())),
            "{name}: {value} not in {h2:?}"
        );
    }
    // The access log shows the target as sent, not hyper's URI joined from `:scheme` and `:authority`.
    let lines = || weir.log().matches("GET /seen/x?q=1 200").count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(lines(), 2, "{}", weir.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_request_body_streams_through_body_hooks_within_its_limit() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a));
    let dir = tempfile::tempdir().expect("tempdir");
    // Past HTTP/2's initial 64 KiB window several times over: the body moves only as the hooks take it.
    let body = "abcdefghij".repeat(30_000);
    let file = dir.path().join("body");
    std::fs::write(&file, &body).expect("write the body");
    let data = format!("@{}", file.display());
    let (echo, version) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &data,
        &weir.url("/upper"),
    ])
    .await;
    assert_eq!(version, "2");
    // The response body passed the hooks too: the echo's own JSON is upper-cased (`NULL` no longer JSON).
    assert!(echo.contains("\"BODY_LEN\":300000"), "{}", &echo[..200]);
    let seen = format!("\"BODY\":\"{}\"", body.to_ascii_uppercase());
    assert!(echo.contains(&seen), "the body differs");

    let url = weir.url("/small");
    let (status, verbose) = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sSv", "--http2-prior-knowledge", "-o", "/dev/null"])
            .args(["-w", "%{response_code}", "--data-binary", &data, &url])
            .output()
            .expect("run curl");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("curl task");
    // Answered before the body is read, which is dropped: the stream is sometimes reset before curl has
    // read the answer (README, "HTTP/2", the known gap). Either way the body went nowhere.
    assert!(
        status == "413" || verbose.contains("Stream error"),
        "{status}: {verbose}"
    );
    assert!(weir.wait_for_log("POST /small 413"), "no 413 logged");
}

/// Weir in front of an h2c endpoint that answers with the request's body and its trailers, `plugin` on the
/// route.
fn trailers_echo(plugin: &str) -> (Endpoint, Weir) {
    let endpoint = Endpoint::start(
        "t",
        Behaviour {
            http2: true,
            ..Behaviour::default()
        },
    );
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.t]\nurl = \"{}\"\nhttp2 = true\n\
         [[routes]]\nupstream = \"t\"\n{}",
        endpoint.url(),
        fixture(plugin)
    ));
    (endpoint, weir)
}

/// POSTs `hello` with an `x-checksum` trailer over h2c: the answer's body, and its `x-checksum` trailer.
async fn post_with_a_trailer(weir: &Weir) -> (Bytes, Option<HeaderValue>) {
    let tcp = tokio::net::TcpStream::connect(weir.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("an h2c handshake");
    tokio::spawn(connection);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("sha256-abc"));
    let body = Full::new(Bytes::from_static(b"hello"))
        .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailers))));
    let request = Request::post(weir.url("/t")).body(body).expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200, "{}", weir.log());
    let got = response
        .into_body()
        .collect()
        .await
        .expect("the body and its trailers");
    let checksum = got.trailers().and_then(|t| t.get("x-checksum")).cloned();
    (got.to_bytes(), checksum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_follow_what_body_hooks_made_of_the_data_both_ways() {
    let (_endpoint, weir) = trailers_echo(r#"mode = "body-upper""#);
    // Up through the request's hook, back through the response's: the data upper-cased, the trailers
    // never seen by the plugin.
    let (body, checksum) = post_with_a_trailer(&weir).await;
    assert_eq!(
        checksum,
        Some(HeaderValue::from_static("sha256-abc")),
        "{}",
        weir.log()
    );
    assert_eq!(body, "HELLO");
}

/// A plugin that reads the request body whole (`read-body`) sees its data; the trailers still go upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_a_plugin_reads_whole_keeps_its_trailers() {
    let (_endpoint, weir) = trailers_echo(r#"mode = "read-body""#);
    let (body, checksum) = post_with_a_trailer(&weir).await;
    assert_eq!(
        checksum,
        Some(HeaderValue::from_static("sha256-abc")),
        "{}",
        weir.log()
    );
    assert_eq!(body, "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_tells_an_h2_client_to_go_away_and_answers_its_stream_in_flight() {
    let endpoint = Endpoint::start(
        "slow",
        Behaviour {
            delay: Duration::from_secs(2),
            ..Behaviour::default()
        },
    );
    let mut weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.s]\nurl = \"{}\"\n[[routes]]\nupstream = \"s\"\n",
        endpoint.url()
    ));
    let tcp = tokio::net::TcpStream::connect(weir.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("an h2c handshake");
    let closed = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    let get = |path: &str| {
        Request::get(weir.url(path))
            .body(Empty::<Bytes>::new())
            .expect("a request")
    };
    let in_flight = tokio::spawn(sender.send_request(get("/in-flight")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while endpoint.requests() < 1 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    weir.signal(libc::SIGTERM);
    // GOAWAY and the PING that confirms it are one round trip on loopback.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = sender.send_request(get("/after")).await;
    assert!(
        refused.is_err(),
        "a new stream was served after the drain began: {refused:?}"
    );

    let response = in_flight
        .await
        .expect("the request's task")
        .expect("the stream in flight is answered");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("its body");
    let answered = Instant::now();
    // Closed once its last stream is done, not after a wait between requests (one second) or the
    // keep-alive timeout.
    let closed = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the connection closed")
        .expect("the connection's task");
    assert!(
        closed.saturating_duration_since(answered) < Duration::from_millis(500),
        "closed {:?} after its last answer",
        closed.saturating_duration_since(answered)
    );
    assert_eq!(
        endpoint.requests(),
        1,
        "the stream after GOAWAY reached the upstream"
    );
    assert_eq!(weir.wait_exit(Duration::from_secs(3)).code(), Some(0));
}

/// What a proxy did with one raw HTTP/2 request: the status it answered (or the stream's or connection's
/// error code), and the requests its upstream received for it.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    forwarded: Vec<support::raw::Seen>,
}

/// Sends each header list as one request on a connection of its own, with Python's `h2` library and its
/// own checks turned off (tests/h2/raw_request.py), and reads what the recorder got for each.
fn send_raw(
    port: u16,
    recorder: &support::raw::Recorder,
    cases: &[Vec<(&str, &str)>],
) -> Vec<Answer> {
    cases
        .iter()
        .map(|headers| {
            let mark = recorder.mark();
            let script = support::workspace().join("tests/h2/raw_request.py");
            let out = Command::new("python3")
                .arg(&script)
                .arg(port.to_string())
                .arg(serde_json::to_string(&[headers]).expect("JSON"))
                .output()
                .expect("run python3 (h2 is installed by `make test-deps`)");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: serde_json::Value =
                serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
            Answer {
                status: got["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
                error: got["reset"]
                    .as_str()
                    .or(got["goaway"].as_str())
                    .map(str::to_owned),
                forwarded: recorder.settle(mark),
            }
        })
        .collect()
}

/// RFC 9113's rules for a request's fields that the h2 crate leaves to the server, checked with raw frames
/// against Weir and nginx 1.22 (`listen … http2`, h2c) in front of one recording upstream.
#[test]
fn malformed_h2_requests_never_reach_the_upstream_and_split_cookies_go_on_joined() {
    let recorder = support::raw::Recorder::start();
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.r]\nurl = \"http://{}\"\npreserve_host = true\n\
         [[routes]]\nupstream = \"r\"\n",
        recorder.addr
    ));
    let port = support::raw::free_port();
    let nginx = support::raw::Nginx::start(
        &support::raw::nginx_http(&format!(
            "    proxy_http_version 1.1;\n    proxy_set_header Host $host;\n    server {{\n        \
             listen 127.0.0.1:{port} http2;\n        location / {{ proxy_pass http://{}; }}\n    }}",
            recorder.addr
        )),
        &[port],
    );
    let request = |method,
                   path: Option<&'static str>,
                   authority: bool,
                   extra: &[(&'static str, &'static str)]| {
        let mut headers = vec![(":method", method)];
        if let Some(path) = path {
            headers.extend([(":scheme", "http"), (":path", path)]);
        }
        if authority {
            headers.push((":authority", "a.test"));
        }
        headers.extend_from_slice(extra);
        headers
    };
    let cases = [
        // 0: valid, the harness's check.
        request("GET", Some("/ok"), true, &[]),
        // 1: §8.2.3, split for compression.
        request(
            "GET",
            Some("/c"),
            true,
            &[("cookie", "a=1"), ("cookie", "b=2")],
        ),
        // 2-3: §8.3.1, `*` is for OPTIONS only.
        request("GET", Some("*"), true, &[]),
        request("OPTIONS", Some("*"), true, &[]),
        // 4: §8.3.1, neither `:authority` nor Host.
        request("GET", Some("/x"), false, &[]),
        // 5: §8.3.1, a `:path` that is not `/…`.
        request("GET", Some("?a=1"), true, &[]),
        // 6: §8.2.1, whitespace around a value.
        request("GET", Some("/w"), true, &[("x-a", " lead")]),
        // 7: §8.5, CONNECT names its authority.
        request("CONNECT", None, false, &[]),
    ];
    let weir_said = send_raw(weir.addr.port(), &recorder, &cases);
    let nginx_said = send_raw(port, &recorder, &cases);
    let show = |said: &[Answer]| {
        let lines = said.iter().enumerate().map(|(i, a)| {
            let seen: Vec<_> = a
                .forwarded
                .iter()
                .map(support::raw::Seen::summary)
                .collect();
            format!("  {i}: {:?} {:?} forwarded {seen:?}", a.status, a.error)
        });
        lines.collect::<Vec<_>>().join("\n")
    };
    let report = format!(
        "weir:\n{}\nnginx:\n{}\n{}",
        show(&weir_said),
        show(&nginx_said),
        nginx.error_log()
    );

    for said in [&weir_said, &nginx_said] {
        assert_eq!(said[0].status, Some(200), "{report}");
        assert_eq!(said[0].forwarded.len(), 1, "{report}");
        let cookies = said[1].forwarded.first().map(|seen| seen.values("cookie"));
        assert_eq!(cookies, Some(vec![&b"a=1; b=2"[..]]), "{report}");
        // Malformed requests are answered 400, and never forwarded (§8.1.1).
        for case in [2, 4, 5, 7] {
            assert_eq!(said[case].status, Some(400), "case {case}: {report}");
            assert!(said[case].forwarded.is_empty(), "case {case}: {report}");
        }
    }
    // Weir answers `OPTIONS *` itself, as over HTTP/1.1 (nginx refuses it), and refuses the whitespace
    // that nginx forwards.
    assert_eq!(weir_said[3].status, Some(200), "{report}");
    assert!(weir_said[3].forwarded.is_empty(), "{report}");
    assert_eq!(weir_said[6].status, Some(400), "{report}");
    assert!(weir_said[6].forwarded.is_empty(), "{report}");
    assert!(
        weir_said.iter().all(|said| said.error.is_none()),
        "{report}"
    );
}
