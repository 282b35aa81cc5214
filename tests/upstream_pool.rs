//! Upstreams of several endpoints through the real binary: round robin and a consistent hash, ejection of
//! an endpoint killed under load, the retry budget when every endpoint fails, POST never sent twice, least
//! requests around a slow endpoint, h2c, and active health checks that stop with their generation.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::endpoint::{Behaviour, Endpoint};
use support::{Weir, get, post};

/// A config with upstream `a` over `urls` (and `extra` lines in its table), a catch-all route, and the
/// admin listener.
fn config(urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.a]\nurls = [{}]\n{extra}\n[[routes]]\nupstream = \"a\"\n",
        urls.join(", ")
    )
}

fn urls(endpoints: &[&Endpoint]) -> Vec<String> {
    endpoints.iter().map(|e| e.url()).collect()
}

/// Polls until `done` holds, for at most 10 s.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_the_endpoints_in_turn() {
    let names = ["one", "two", "three"];
    let mut addrs = Vec::new();
    for name in names {
        addrs.push(format!("http://{}", support::upstream(name).await));
    }
    let weir = Weir::start(&config(&addrs, ""));
    let mut served = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let reply = get(&weir.url("/x")).await;
        assert_eq!(reply.status, StatusCode::OK);
        let name = reply.header("x-upstream").expect("x-upstream").to_owned();
        *served.entry(name).or_insert(0) += 1;
    }
    let expected: std::collections::BTreeMap<String, i32> =
        names.iter().map(|n| (n.to_string(), 10)).collect();
    assert_eq!(served, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_on_a_header_keeps_each_tenant_on_one_endpoint() {
    let mut addrs = Vec::new();
    for name in ["one", "two", "three"] {
        addrs.push(format!("http://{}", support::upstream(name).await));
    }
    let weir = Weir::start(&config(
        &addrs,
        "balance = \"hash\"\nhash_on = { header = \"x-tenant\" }\n",
    ));
    let mut used = std::collections::BTreeSet::new();
    // The endpoints' ports, which their scores depend on, change from run to run: with 20 tenants one of
    // three endpoints got none about once in a thousand runs, with 60 about once in ten billion.
    for tenant in 0..60 {
        let tenant = format!("tenant-{tenant}");
        let mut served = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let reply = support::get_with(&weir.url("/x"), &[("x-tenant", &tenant)]).await;
            served.insert(reply.header("x-upstream").expect("x-upstream").to_owned());
        }
        assert_eq!(served.len(), 1, "{tenant} went to {served:?}");
        used.extend(served);
    }
    assert_eq!(used.len(), 3, "60 tenants on {used:?}");
    // Without the header a request is balanced round robin.
    assert_eq!(get(&weir.url("/x")).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_under_load_is_ejected_and_no_idempotent_request_fails() {
    let stable = [
        Endpoint::start("one", Behaviour::default()),
        Endpoint::start("two", Behaviour::default()),
    ];
    let mut victim = Endpoint::start("victim", Behaviour::default());
    let victim_url = victim.url();
    // Each of the 8 clients may be in the middle of a request to the victim when it dies, and each of
    // those requests is retried at once: the budget's floor lets all of them through.
    let weir = Weir::start(&config(
        &urls(&[&stable[0], &stable[1], &victim]),
        "eject_after = 3\neject_for = \"1m\"\nretry_min_concurrency = 8\n",
    ));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (url, sent, stop) = (weir.url("/load"), sent.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let reply = get(&url).await;
                if reply.status != StatusCode::OK {
                    failed.push((reply.status, reply.text()));
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failed
        }));
    }
    until("200 requests before the kill", async || {
        sent.load(Ordering::SeqCst) >= 200
    })
    .await;
    let before = victim.requests();
    victim.kill();
    let killed_at = sent.load(Ordering::SeqCst);
    until("400 requests after the kill", async || {
        sent.load(Ordering::SeqCst) >= killed_at + 400
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut failed = Vec::new();
    for client in clients {
        failed.extend(client.await.expect("a client"));
    }
    let total = sent.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {total} failed: {failed:?}",
        failed.len()
    );
    assert!(
        before > 30,
        "the victim served {before} requests before it died"
    );
    let up = weir
        .metric(
            "weir_upstream_endpoint_up",
            &[("upstream", "a"), ("endpoint", &victim_url)],
        )
        .await;
    assert_eq!(up, Some(0.0), "the victim is still in");
    let ejections = weir
        .metric("weir_upstream_ejections_total", &[("upstream", "a")])
        .await;
    assert_eq!(ejections, Some(1.0));
    let retries = weir
        .metric("weir_upstream_retries_total", &[("upstream", "a")])
        .await
        .expect("retries counted");
    // Only the requests that met the dead endpoint before its ejection were retried: a few, not a third.
    assert!(
        (1.0..50.0).contains(&retries),
        "{retries} retries for {total} requests"
    );
    eprintln!("{total} requests, {retries} retried; the victim served {before} before it died");
    let served: u64 = stable.iter().map(Endpoint::requests).sum();
    assert!(served + before >= total, "{served} + {before} < {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_holds_when_every_endpoint_fails() {
    // Each attempt takes the endpoint's 20 ms, so the budget's limit on retries in flight is a limit on
    // their share of the attempts.
    let failing = Behaviour {
        status: StatusCode::SERVICE_UNAVAILABLE,
        delay: Duration::from_millis(20),
        ..Behaviour::default()
    };
    let endpoints: Vec<Endpoint> = ["one", "two", "three"]
        .iter()
        .map(|name| Endpoint::start(name, failing.clone()))
        .collect();
    let refs: Vec<&Endpoint> = endpoints.iter().collect();
    let weir = Weir::start(&config(
        &urls(&refs),
        "retries = 2\nretry_on = [503]\neject_after = 0\n",
    ));
    const CLIENTS: u64 = 20;
    const EACH: u64 = 15;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let url = weir.url("/x");
        clients.push(tokio::spawn(async move {
            for _ in 0..EACH {
                // The last attempt's answer is the client's.
                assert_eq!(get(&url).await.status, StatusCode::SERVICE_UNAVAILABLE);
            }
        }));
    }
    for client in clients {
        client.await.expect("a client");
    }
    let requests = CLIENTS * EACH;
    let attempts: u64 = endpoints.iter().map(Endpoint::requests).sum();
    eprintln!("{attempts} attempts for {requests} requests");
    // 20 requests in flight allow max(3, 20 % of 20) = 4 retries in flight, so about one attempt in five
    // is a retry (1.25 attempts per request); without a budget, every request would make 3.
    assert!(
        attempts > requests && attempts <= requests * 14 / 10,
        "{attempts} attempts for {requests} requests"
    );
    let refused = weir
        .metric("weir_upstream_retries_refused_total", &[("upstream", "a")])
        .await
        .expect("refusals counted");
    let retries = weir
        .metric("weir_upstream_retries_total", &[("upstream", "a")])
        .await
        .expect("retries counted");
    assert_eq!(retries as u64, attempts - requests);
    assert!(refused > retries, "{refused} refused, {retries} retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_the_upstream_read_is_never_sent_again() {
    let hang_up = Behaviour {
        hang_up: true,
        ..Behaviour::default()
    };
    let endpoints = [
        Endpoint::start("one", hang_up.clone()),
        Endpoint::start("two", hang_up),
    ];
    let weir = Weir::start(&config(
        &urls(&[&endpoints[0], &endpoints[1]]),
        "retries = 2\n",
    ));
    let arrivals = || endpoints.iter().map(Endpoint::requests).sum::<u64>();

    let reply = post(&weir.url("/order"), "one order").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(arrivals(), 1, "the POST was sent again");

    // The same failure on a GET is retried, on the other endpoint first: the rules, not an absence of
    // retries, kept the POST from going twice.
    let reply = get(&weir.url("/order")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(arrivals(), 1 + 3);
    assert!(endpoints.iter().all(|e| e.requests() >= 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_when_nothing_was_sent() {
    let closed = format!("http://{}", support::closed_port());
    let open = Endpoint::start("open", Behaviour::default());
    let weir = Weir::start(&config(&[closed, open.url()], ""));
    // Round robin meets the closed port on one of two requests: a failed connect sent nothing, so even a
    // POST goes again, to the other endpoint.
    for body in ["first", "second"] {
        let reply = post(&weir.url("/order"), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), body);
    }
    assert_eq!(open.requests(), 2);
    let retries = weir
        .metric("weir_upstream_retries_total", &[("upstream", "a")])
        .await
        .expect("retries counted");
    assert!(retries >= 1.0, "{retries} retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_keeps_away_from_a_slow_endpoint() {
    let slow = Endpoint::start(
        "slow",
        Behaviour {
            delay: Duration::from_millis(300),
            ..Behaviour::default()
        },
    );
    let fast = [
        Endpoint::start("one", Behaviour::default()),
        Endpoint::start("two", Behaviour::default()),
    ];
    let weir = Weir::start(&config(
        &urls(&[&slow, &fast[0], &fast[1]]),
        "balance = \"least_requests\"\n",
    ));
    let mut clients = Vec::new();
    for _ in 0..12 {
        let url = weir.url("/x");
        clients.push(tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(get(&url).await.status, StatusCode::OK);
            }
        }));
    }
    for client in clients {
        client.await.expect("a client");
    }
    let total: u64 = slow.requests() + fast.iter().map(Endpoint::requests).sum::<u64>();
    eprintln!("the slow endpoint served {} of {total}", slow.requests());
    assert_eq!(total, 240);
    // Round robin would give it a third (80); two random choices give it what it can take.
    assert!(
        slow.requests() < total / 6,
        "the slow endpoint served {} of {total}",
        slow.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_to_an_h2c_endpoint() {
    let h2 = Endpoint::start(
        "h2",
        Behaviour {
            http2: true,
            ..Behaviour::default()
        },
    );
    let weir = Weir::start(&config(&[h2.url()], "http2 = true\n"));
    let reply = post(&weir.url("/grpc-ish"), "framed").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-version"), Some("HTTP/2.0"));
    assert_eq!(reply.text(), "framed");
    // Without the option the same endpoint is not spoken to in its protocol.
    let plain = Weir::start(&config(&[h2.url()], ""));
    assert_eq!(get(&plain.url("/")).await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_failing_endpoint_out_and_stop_with_their_generation() {
    let sick = Endpoint::start(
        "sick",
        Behaviour {
            health: StatusCode::SERVICE_UNAVAILABLE,
            ..Behaviour::default()
        },
    );
    let well = Endpoint::start("well", Behaviour::default());
    let checks = |path: &str| {
        format!(
            "[upstreams.a.health_check]\npath = \"{path}\"\ninterval = \"20ms\"\nunhealthy = 2\nhealthy = 1\n"
        )
    };
    let text = config(&urls(&[&sick, &well]), &checks("/health"));
    let weir = Weir::start(&text);
    until("the sick endpoint out", async || {
        let labels = [("upstream", "a"), ("endpoint", &*sick.url())];
        weir.metric("weir_upstream_endpoint_up", &labels).await == Some(0.0)
    })
    .await;
    for _ in 0..10 {
        let reply = get(&weir.url("/x")).await;
        assert_eq!(reply.header("x-endpoint"), Some("well"));
    }
    assert_eq!(sick.hits("/x"), 0);

    // A reload that changes the check's path: the old generation's task stops with it.
    std::fs::write(
        weir.config_file(),
        config(&urls(&[&sick, &well]), &checks("/health2")),
    )
    .expect("rewrite the config");
    weir.signal(libc::SIGHUP);
    until("checks of the new path", async || {
        sick.hits("/health2") >= 5
    })
    .await;
    let old = sick.hits("/health");
    until("more checks of the new path", async || {
        sick.hits("/health2") >= 15
    })
    .await;
    assert_eq!(sick.hits("/health"), old, "the old generation still checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_holds_an_endpoint_to_its_cap_and_the_rest_wait_their_turn() {
    let slow = Endpoint::start(
        "slow",
        Behaviour {
            delay: Duration::from_millis(150),
            ..Behaviour::default()
        },
    );
    let weir = Weir::start(&config(
        &urls(&[&slow]),
        "max_requests = 2\nqueue_timeout = \"30s\"\n",
    ));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = weir.url("/x");
        clients.push(tokio::spawn(async move { get(&url).await.status }));
    }
    for client in clients {
        assert_eq!(client.await.expect("a client"), StatusCode::OK);
    }
    let took = started.elapsed();
    assert_eq!(slow.requests(), 8);
    assert_eq!(slow.peak_in_flight(), 2, "the endpoint's most at once");
    // Eight requests of 150 ms, two at a time: four rounds.
    assert!(took >= Duration::from_millis(590), "all eight in {took:?}");
    let queued = weir
        .metric("weir_upstream_queued", &[("upstream", "a")])
        .await;
    assert_eq!(queued, Some(0.0), "nobody is left in line");
}

/// An endpoint that answers after 1.5 s behind `max_requests = 1` and `queue_timeout`, and its one place
/// taken by a request to `/first`, which has reached it.
async fn one_place_held(
    queue_timeout: &str,
) -> (Endpoint, Weir, tokio::task::JoinHandle<StatusCode>) {
    let slow = Endpoint::start(
        "slow",
        Behaviour {
            delay: Duration::from_millis(1500),
            ..Behaviour::default()
        },
    );
    let weir = Weir::start(&config(
        &urls(&[&slow]),
        &format!("max_requests = 1\nqueue_timeout = \"{queue_timeout}\"\n"),
    ));
    let url = weir.url("/first");
    let first = tokio::spawn(async move { get(&url).await.status });
    until("the first request reaches the endpoint", async || {
        slow.requests() == 1
    })
    .await;
    (slow, weir, first)
}

/// A reload builds new upstreams; an endpoint that keeps its URL and its cap keeps its places, so a request
/// the old generation has in flight still counts: the next one waits for it instead of making two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_places_taken_by_requests_in_flight() {
    let (slow, weir, first) = one_place_held("30s").await;
    // Another queue_timeout: a new generation, the same endpoint and cap.
    std::fs::write(
        weir.config_file(),
        config(
            &urls(&[&slow]),
            "max_requests = 1\nqueue_timeout = \"20s\"\n",
        ),
    )
    .expect("rewrite the config");
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    let second = get(&weir.url("/second")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.await.expect("the first"), StatusCode::OK);
    assert_eq!(
        slow.peak_in_flight(),
        1,
        "the new generation's request went beside the old one's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_past_queue_timeout_gets_503_and_the_one_in_flight_is_served() {
    let (slow, weir, first) = one_place_held("200ms").await;
    let started = Instant::now();
    let second = get(&weir.url("/second")).await;
    let waited = started.elapsed();
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.text(), "upstream busy, try again\n");
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1400),
        "answered after {waited:?}"
    );
    assert_eq!(first.await.expect("the first"), StatusCode::OK);
    assert_eq!(slow.hits("/second"), 0, "the refused request never went");
    let timeouts = weir
        .metric("weir_upstream_queue_timeouts_total", &[("upstream", "a")])
        .await;
    assert_eq!(timeouts, Some(1.0));
    assert!(weir.wait_for_log("busy: no place free among its max_requests"));
}
