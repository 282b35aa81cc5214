//! The instance model through the real binary: instances follow the calls in flight, not the connections;
//! a plugin's error is a value that costs no instance; `on_error = "skip"` leaves no trace; every host
//! resource a plugin can spend has a bound. Instance counts come from the admin listener's `/metrics`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use support::*;
use tokio::net::TcpStream;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// A config with the admin listener, upstreams `a` and `b`, and `routes`.
fn config_ab(a: SocketAddr, b: SocketAddr, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = false\n{ADMIN}\n[upstreams.a]\nurl = \"http://{a}\"\n[upstreams.b]\nurl = \"http://{b}\"\n{routes}"
    )
}

fn config(upstream: SocketAddr, routes: &str) -> String {
    config_ab(upstream, upstream, routes)
}

/// `n` GETs of `url`, `concurrency` at a time; the statuses, counted.
async fn load(url: &str, n: usize, concurrency: usize) -> std::collections::BTreeMap<u16, usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, url) = (next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                seen.push(get(&url).await.status.as_u16());
            }
            seen
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        for status in task.await.expect("task") {
            *counts.entry(status).or_default() += 1;
        }
    }
    counts
}

async fn created(weir: &Weir, route: &str) -> f64 {
    weir.metric("weir_plugin_instances_created_total", &[("route", route)])
        .await
        .expect("the instance counter of the route")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_error_is_a_value_and_costs_no_instance() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(
        a,
        &format!(
            "[[routes]]\nname = \"fails\"\nupstream = \"a\"\n{}",
            fixture(r#"mode = "fail""#)
        ),
    ));
    // Concurrent calls may need a second instance: made here, before counting.
    load(&weir.url("/"), 200, 8).await;
    let before = created(&weir, "fails").await;
    let statuses = load(&weir.url("/"), 10_000, 8).await;
    assert_eq!(statuses.get(&500), Some(&10_000), "{statuses:?}");
    let after = created(&weir, "fails").await;
    assert_eq!(
        after,
        before,
        "10,000 failed requests made {} instances",
        after - before
    );
    assert!(weir.wait_for_log("returned an error: fixture failure"));
    // A trap, by contrast, discards its instance: after the first (on the instance `init` made), each
    // request needs a new one.
    let panics = Weir::start(&config(
        a,
        &format!(
            "[[routes]]\nname = \"panics\"\nupstream = \"a\"\n{}",
            fixture(r#"mode = "panic""#)
        ),
    ));
    let before = created(&panics, "panics").await;
    assert_eq!(load(&panics.url("/"), 3, 1).await.get(&500), Some(&3));
    assert_eq!(created(&panics, "panics").await, before + 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_follow_calls_in_flight_not_connections() {
    let a = upstream("a").await;
    let chain = [
        "[[routes.plugins]]\nplugin = \"headers\"\nconfig.request = { set = { \"x-a\" = \"1\" } }\nconfig.response = { set = { \"x-b\" = \"{ctx.none}\" } }\non_error = \"skip\"\n",
        &fixture(r#"mode = "tag", name = "t""#),
    ]
    .concat();
    let weir = Weir::start(&config(
        a,
        &format!("[[routes]]\nname = \"busy\"\nupstream = \"a\"\n{chain}"),
    ));
    let statuses = load(&weir.url("/"), 2_000, 256).await;
    assert_eq!(statuses.get(&200), Some(&2_000), "{statuses:?}");
    // 256 requests in flight at a time, but a call holds an instance for microseconds: a handful serve
    // them all (the weir process has one worker per core).
    let made = created(&weir, "busy").await;
    assert!(made <= 2.0 * 16.0, "{made} instances for 256 connections");
    let leased = weir
        .metric("weir_plugin_instances_leased", &[("route", "busy")])
        .await;
    assert_eq!(
        leased,
        Some(0.0),
        "no instance stays leased after the requests"
    );
}

/// A burst's instances serve the next burst, instead of being made again for every call past one per
/// worker (the gzip row of `make bench` spent 60 % of its CPU making them, and paging in their state);
/// once `idle_timeout` passes without a call, the pool shrinks back to one per worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_s_instances_serve_the_next_one_and_go_after_idle_timeout() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = false\nworkers = 2\n{ADMIN}\n[upstreams.a]\nurl = \"http://{a}\"\n[[routes]]\nname = \"burst\"\nupstream = \"a\"\n{}idle_timeout = \"1s\"\n",
        fixture(r#"mode = "sleep", ms = 300"#)
    ));
    let idle = async || {
        weir.metric("weir_plugin_instances_idle", &[("route", "burst")])
            .await
            .expect("the idle gauge of the route")
    };
    // Eight calls at once, each holding its instance for 300 ms: eight instances.
    assert_eq!(load(&weir.url("/"), 8, 8).await.get(&200), Some(&8));
    let made = created(&weir, "burst").await;
    assert_eq!(made, 8.0, "eight calls in flight at once");
    assert_eq!(idle().await, 8.0);
    assert_eq!(load(&weir.url("/"), 8, 8).await.get(&200), Some(&8));
    assert_eq!(
        created(&weir, "burst").await,
        made,
        "the second burst found the first one's instances"
    );
    // Unused for a second, all but one per worker go (the reaper looks every half second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while idle().await > 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(idle().await, 2.0, "one idle instance per worker is kept");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(idle().await, 2.0, "and kept past idle_timeout");
}

/// A plugin without a response hook is called in the response phase once, which tells the host it has
/// none, and is left out of it from then on; a plugin with one is called on every response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_on_response_is_called_for_it_once() {
    let a = upstream("a").await;
    let chain = "[[routes.plugins]]\nplugin = \"path-rewrite\"\nconfig = { strip_prefix = \"/api\" }\n\
        [[routes.plugins]]\nplugin = \"headers\"\nconfig.response = { set = { \"x-back\" = \"{path}\" } }\n";
    let weir = Weir::start(&config(
        a,
        &format!("[[routes]]\nname = \"r\"\nupstream = \"a\"\n{chain}"),
    ));
    for n in 0..5 {
        let reply = get(&weir.url(&format!("/api/{n}"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("x-back"), Some(format!("/{n}").as_str()));
        assert_eq!(Echo(reply.json()).path(), format!("/{n}"));
    }
    let calls = async |plugin: &str, hook: &str| {
        weir.metric(
            "weir_plugin_call_duration_seconds_count",
            &[("route", "r"), ("plugin", plugin), ("hook", hook)],
        )
        .await
    };
    let rewrite = "plugin #1 (path-rewrite)";
    assert_eq!(calls(rewrite, "on-request").await, Some(5.0));
    assert_eq!(
        calls(rewrite, "on-response").await,
        Some(1.0),
        "path-rewrite has no response hook: asked once"
    );
    assert_eq!(calls("plugin #2 (headers)", "on-response").await, Some(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_undoes_everything_the_failed_call_changed() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let routes = format!(
        "[[routes]]\nname = \"skips\"\nupstream = \"a\"\n{}on_error = \"skip\"\n{}",
        fixture(r#"mode = "mutate-then-fail", value = "b""#),
        fixture(r#"mode = "read-context", key = "mutated", header = "x-context""#),
    );
    let weir = Weir::start(&config_ab(a, b, &routes));
    let reply = get(&weir.url("/original?q=1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.upstream(), "a", "the upstream change is undone");
    assert_eq!(echo.path(), "/original");
    assert_eq!(echo.0["query"], "q=1");
    assert!(echo.header("x-mutated").is_empty(), "the header is undone");
    assert_eq!(
        echo.header("x-context"),
        ["<none>"],
        "the context is undone"
    );
    assert!(weir.wait_for_log("plugin skipped (on_error = \"skip\"), its changes undone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_plugin_is_cut_at_its_wall_clock_bound() {
    let a = upstream("a").await;
    let routes = format!(
        "[[routes]]\nname = \"sleeps\"\nupstream = \"a\"\n{}wall_timeout = \"300ms\"\n",
        fixture(r#"mode = "sleep", ms = 30000"#),
    );
    let weir = Weir::start(&config(a, &routes));
    let started = Instant::now();
    let reply = get(&weir.url("/")).await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        took < Duration::from_secs(5),
        "the 30 s sleep was not cut: {took:?}"
    );
    assert!(weir.wait_for_log("did not return within its wall-clock bound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_plugins_add_to_headers_and_context_is_bounded() {
    let a = upstream("a").await;
    let routes = [
        (
            "many-headers",
            r#"mode = "flood-headers", count = 1000, size = 10"#,
        ),
        (
            "big-headers",
            r#"mode = "flood-headers", count = 100, size = 100000"#,
        ),
        (
            "many-keys",
            r#"mode = "flood-context", count = 100000, size = 1"#,
        ),
        (
            "big-context",
            r#"mode = "flood-context", count = 1000, size = 10000"#,
        ),
    ]
    .iter()
    .map(|(name, mode)| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"a\"\n{}",
            fixture(mode)
        )
    })
    .collect::<String>();
    let server = "plugin_headers = 64\nplugin_header_bytes = \"16KiB\"\ncontext_keys = 256\ncontext_bytes = \"64KiB\"\n";
    let weir = Weir::start(&config(a, &routes).replace(
        "access_log = false\n",
        &format!("access_log = false\n{server}"),
    ));
    for (path, taken, why) in [
        ("/many-headers", "64 taken", "plugin_headers"),
        ("/big-headers", "0 taken", "plugin_header_bytes"),
        ("/many-keys", "256 taken", "context_keys"),
        ("/big-context", "6 taken", "context_bytes"),
    ] {
        let reply = get(&weir.url(path)).await;
        let text = reply.text();
        assert!(
            text.starts_with(&format!("{taken}; refused: ")) && text.contains(why),
            "{path}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_on_one_route_is_503_there_and_nowhere_else() {
    let a = upstream("a").await;
    let routes = format!(
        "[[routes]]\nname = \"slow\"\npath = \"/slow\"\nupstream = \"a\"\n{}max_instances = 1\nwall_timeout = \"1s\"\n[[routes]]\nname = \"quick\"\nupstream = \"a\"\n{}max_instances = 1\n",
        fixture(r#"mode = "sleep", ms = 300"#),
        fixture(r#"mode = "noop""#),
    );
    let weir = Weir::start(&config(a, &routes));
    // Eight at once on one instance of 300 ms: the later ones wait past the 1 s bound.
    let slow = tokio::spawn({
        let url = weir.url("/slow");
        async move { load(&url, 8, 8).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = load(&weir.url("/quick"), 50, 4).await;
    let slow = slow.await.expect("slow requests");
    assert_eq!(
        quick.get(&200),
        Some(&50),
        "the other route is untouched: {quick:?}"
    );
    assert!(slow.get(&503).is_some_and(|n| *n >= 2), "{slow:?}");
    assert!(slow.get(&200).is_some_and(|n| *n >= 3), "{slow:?}");
    assert!(weir.wait_for_log("no instance came free"));
}

/// Opens one connection and sends `requests` GETs on it, one after another; the statuses.
async fn connection(
    addr: SocketAddr,
    requests: usize,
    headers: &'static [(&str, &str)],
) -> Vec<u16> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    for _ in 0..requests {
        let mut request = hyper::Request::get("/text/4096").header("host", "weir.test");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("response");
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.expect("body");
    }
    statuses
}

/// Lets this process hold a few thousand sockets: the default soft limit is often 1024.
fn raise_open_files() {
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_plugins_at_1024_connections_answer_without_a_503() {
    raise_open_files();
    let a = upstream("a").await;
    let chain = concat!(
        "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = { tokens = { load = \"t1\" } }\n",
        "[[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = { allow_missing = true, keys = [{ alg = \"HS256\", secret = \"0123456789abcdef0123456789abcdef\" }] }\n",
        "[[routes.plugins]]\nplugin = \"path-rewrite\"\nconfig = { replace_prefix = { from = \"/text\", to = \"/text\" } }\n",
        "[[routes.plugins]]\nplugin = \"headers\"\nconfig.response = { set = { \"x-chain\" = \"5\" } }\n",
        "[[routes.plugins]]\nplugin = \"gzip\"\n",
    );
    let weir = Weir::start(&config(
        a,
        &format!("[[routes]]\nname = \"five\"\nupstream = \"a\"\n{chain}"),
    ));
    const HEADERS: &[(&str, &str)] = &[("authorization", "Token t1"), ("accept-encoding", "gzip")];
    let tasks: Vec<_> = (0..1024)
        .map(|_| tokio::spawn(connection(weir.addr, 1, HEADERS)))
        .collect();
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        for status in task.await.expect("connection") {
            *counts.entry(status).or_default() += 1;
        }
    }
    assert_eq!(counts.get(&200), Some(&1024), "{counts:?}");
    let rss = weir.peak_rss() >> 20;
    eprintln!("1024 connections, five plugins: peak RSS {rss} MiB, {counts:?}");
}
