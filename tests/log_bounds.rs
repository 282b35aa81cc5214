//! What Weir logs is bounded, and logging never holds up a request: a plugin that fails on every request
//! logs its failure once per period, and a stderr nobody reads costs dropped lines, not stalled requests.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;

fn panicking_route(upstream: std::net::SocketAddr) -> String {
    one_route(upstream, &fixture(r#"mode = "panic""#))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_on_every_request_logs_its_failure_once_per_period() {
    let a = upstream("a").await;
    let weir = Weir::start(&panicking_route(a));
    for _ in 0..40 {
        let reply = get(&weir.url("/")).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert!(weir.wait_for_log("plugin failed: "), "{}", weir.log());
    let logged = weir.log().matches("plugin failed").count();
    assert_eq!(
        logged,
        1,
        "one failure in full per 10 s:\n{}",
        tail(&weir.log())
    );

    // The next period's first failure is logged in full, with the count of those held back.
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        weir.wait_for_log(
            "plugin failed (and 39 more times in the 10 s after the last one logged): trapped"
        ),
        "{}",
        tail(&weir.log())
    );
}

/// The end of a log, for a failure message that must stay readable when the log is what went wrong.
fn tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(3000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// The SDK's panic hook logs each panic through the `log` interface: a plugin panicking on every request
/// logs at most the entry's 100 lines per 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_panicking_on_every_request_logs_at_most_its_lines_per_period() {
    let a = upstream("a").await;
    let weir = Weir::start(&panicking_route(a));
    for _ in 0..150 {
        get(&weir.url("/")).await;
    }
    assert!(weir.wait_for_log("plugin failed"), "{}", tail(&weir.log()));
    std::thread::sleep(Duration::from_millis(200));
    let panics = weir.log().matches("plugin panicked at").count();
    assert_eq!(
        panics,
        100,
        "panic lines logged of 150; the log ends:\n{}",
        tail(&weir.log())
    );
}

/// `weir run` with a stderr pipe nobody reads; killed on drop.
struct Unread {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Unread {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_unread(config: &str) -> Unread {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), config);
    let mut child = weir_command()
        .args(["run", "-c"])
        .arg(&file)
        .env("XDG_CACHE_HOME", workspace().join("target/weir-test-cache"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read weir's first line");
    let addr = first
        .trim()
        .strip_prefix("weir listening on http://")
        .unwrap_or_else(|| panic!("weir did not start: {first:?}"))
        .parse()
        .expect("address");
    Unread {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_drops_log_lines_and_never_stalls_a_request() {
    let a = upstream("a").await;
    let mut weir = start_unread(&one_route(a, ""));
    // One access line a request: the pipe (64 KiB) and the writer's queue (8192 lines) fill long before
    // the last request, and a writer that blocked would hold every request from there on.
    const TASKS: usize = 4;
    const EACH: usize = 3000;
    let url = format!("http://{}/x", weir.addr);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client();
                for i in 0..EACH {
                    let request = Request::get(&url).body(Full::default()).expect("request");
                    let response =
                        tokio::time::timeout(Duration::from_secs(5), client.request(request))
                            .await
                            .unwrap_or_else(|_| panic!("request {i} stalled"))
                            .expect("a response");
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("requests");
    }
    let took = started.elapsed();

    // Reading stderr now lets the stalled writer and the drop report through.
    let stderr = weir.child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        let text = log.lock().expect("log").clone();
        if let Some(line) = text.lines().find(|l| l.contains("log lines dropped")) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no drop report within 10 s; stderr ends:\n{}",
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let dropped: u64 = report
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {report:?}"));
    assert!(dropped > 0, "{report}");
    eprintln!(
        "{} requests in {took:?} with stderr unread; {report}",
        TASKS * EACH
    );
}
