//! Misbehaving plugins cost only their own request: each hostile fixture gets its bounded 5xx, the process
//! keeps serving, and the next request through the same route succeeds.

mod support;

use std::time::{Duration, Instant};

use hyper::StatusCode;
use support::*;

/// One route per hostile mode, each at `/MODE`, plus a healthy route at `/ok` that uses the same plugin file.
fn hostile_config(upstream: std::net::SocketAddr, extra: &str) -> String {
    let mut config =
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n");
    for mode in ["loop", "alloc", "panic", "panic-response"] {
        config.push_str(&format!(
            "[[routes]]\nname = \"{mode}\"\npath = \"/{mode}\"\nupstream = \"a\"\n[[routes.plugins]]\npath = \"{{fixture}}\"\nconfig = {{ mode = \"{mode}\" }}\ntimeout = \"50ms\"\nmemory = \"8MiB\"\n{extra}\n"
        ));
    }
    config.push_str(
        "[[routes]]\nname = \"ok\"\npath = \"/ok\"\nupstream = \"a\"\n[[routes.plugins]]\npath = \"{fixture}\"\nconfig = { mode = \"tag\", name = \"ok\" }\n",
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_their_request_only() {
    let a = upstream("a").await;
    let weir = Weir::start(&hostile_config(a, ""));
    for mode in ["loop", "alloc", "panic", "panic-response"] {
        for round in 0..2 {
            let started = Instant::now();
            let reply = get(&weir.url(&format!("/{mode}"))).await;
            assert_eq!(
                reply.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{mode}, round {round}"
            );
            assert_eq!(
                reply.text(),
                "plugin error\n",
                "no guest internals reach the client"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{mode} took {:?}",
                started.elapsed()
            );
            let healthy = get(&weir.url("/ok")).await;
            assert_eq!(healthy.status, StatusCode::OK, "after {mode}");
        }
    }
    // Each fault's own record, naming its route: the access line names the route too.
    for (route, cause) in [
        ("loop", "exceeded its CPU time limit"),
        ("alloc", "forcing trap when growing memory"),
    ] {
        assert!(
            weir.wait_for_record(&["plugin failed", cause, &format!("route={route}")]),
            "the fault of {route} names its cause and route:\n{}",
            weir.log()
        );
    }
    assert!(
        weir.wait_for_record(&["fixture panic", "route=\"panic\""]),
        "the panic message reaches the log:\n{}",
        weir.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_skip_leaves_the_failing_plugin_out() {
    let a = upstream("a").await;
    let weir = Weir::start(&hostile_config(a, "on_error = \"skip\""));
    for mode in ["loop", "alloc", "panic", "panic-response"] {
        let reply = get(&weir.url(&format!("/{mode}"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{mode}: {}", reply.text());
        assert_eq!(Echo(reply.json()).path(), format!("/{mode}"));
        assert!(
            weir.wait_for_record(&["plugin skipped", &format!("route={mode} ")]),
            "{mode}:\n{}",
            weir.log()
        );
    }
}

/// The epoch ticker runs only while plugin calls are made (it parks after a tick without one): an idle proxy
/// uses no CPU (it used ~2-4 % of a core when the epoch ticked every millisecond regardless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_proxy_uses_no_cpu() {
    let a = upstream("a").await;
    let chain =
        fixture(r#"mode = "tag", name = "one""#) + &fixture(r#"mode = "tag", name = "two""#);
    let weir = Weir::start(&one_route(a, &chain));
    for _ in 0..20 {
        let reply = get(&weir.url("/")).await;
        assert_eq!(reply.header_all("x-chain-back"), ["two", "one"]);
    }
    // Lets the last request's tail (the access line, instances going back) finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = Duration::from_secs(3);
    let before = weir.cpu_time();
    tokio::time::sleep(idle).await;
    let used = weir.cpu_time() - before;
    // 1 % of a core; /proc counts in 10 ms ticks, so this allows two ticks of noise over 3 s.
    assert!(used < idle / 100, "{used:?} of CPU in {idle:?} of idleness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instance_per_request_isolation() {
    let a = upstream("a").await;
    let weir = Weir::start(&one_route(
        a,
        &(fixture(r#"mode = "tag", name = "fresh""#) + "isolation = \"request\"\n"),
    ));
    for _ in 0..5 {
        let reply = get(&weir.url("/")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header_all("x-chain-back"), ["fresh"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_instance() {
    let a = upstream("a").await;
    let chain = fixture(r#"mode = "write-context", key = "k", value = "v""#)
        + &fixture(r#"mode = "read-context", key = "k", header = "x-k""#);
    let weir = Weir::start(&one_route(a, &chain));
    let url = weir.url("/sleep/50");
    let replies = join_all((0..32).map(|_| {
        let url = url.clone();
        async move { get(&url).await }
    }))
    .await;
    for reply in replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(Echo(reply.json()).header("x-k"), ["v"]);
    }
}

async fn join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
