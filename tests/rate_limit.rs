//! The `rate-limit` built-in over the shared store, end to end: real `weir` replicas, a real
//! `redis-server` started and killed by the test, answers checked as a client reads them, and the
//! `RateLimit` fields parsed by Python's `http_sfv` (RFC 9651).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::redis_server::Redis;
use support::*;

/// A `rate-limit` entry on the route before it, granted its own namespace of the store.
fn rate_limit(config: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"rate-limit\"\ngrants.store = true\nconfig = {{ {config} }}\n"
    )
}

/// A route `name` on `/name` to upstream `a`, limited by `config`.
fn limited_route(name: &str, config: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"a\"\n{}",
        rate_limit(config)
    )
}

fn config(upstream: std::net::SocketAddr, store: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{store}\n[upstreams.a]\nurl = \"http://{upstream}\"\n{routes}"
    )
}

/// The deadline of the tests that stop Redis: 5 times the default, since these are debug builds, several
/// at once on two cores with the test's own clients, where a burst can keep a worker from polling Redis's
/// answer for longer than the default's 20 ms; and short, so that waiting it out stays cheap.
const OUTAGE_DEADLINE: &str = "100ms";

/// A store on `redis` whose calls give up after `deadline`, each then answered by the route's
/// `on_store_error`. Probes every 200 ms, so that a recovery takes a fraction of a second.
fn redis_store(redis: &Redis, deadline: &str) -> String {
    format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\ndeadline = \"{deadline}\"\nbreaker_open = \"200ms\"\n",
        redis.url()
    )
}

/// Each field value parsed as an RFC 9651 List by `http_sfv`: per item, its string and its parameters.
fn structured_lists(values: &[String]) -> Vec<Vec<(String, serde_json::Value)>> {
    const PARSE: &str = "import json, sys, http_sfv\n\
        out = []\n\
        for value in json.load(sys.stdin):\n\
        \x20   parsed = http_sfv.List()\n\
        \x20   parsed.parse(value.encode())\n\
        \x20   out.append([[item.value, dict(item.params)] for item in parsed])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let input = serde_json::to_vec(values).expect("json");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write");
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "http_sfv refused a field (run `make test-deps`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Vec<(String, serde_json::Value)>> =
        serde_json::from_slice(&out.stdout).expect("json from python");
    parsed
}

/// The parameter `name` of the item `item` of a parsed list.
fn param(list: &[(String, serde_json::Value)], item: &str, name: &str) -> Option<i64> {
    list.iter()
        .find(|(value, _)| value == item)
        .and_then(|(_, params)| params[name].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_admit_exactly_rate_plus_burst() {
    let redis = Redis::start();
    let upstream = upstream("a").await;
    let limits = r#"limits = [{ rate = "10/m", burst = 5 }, { rate = "1000/h" }]"#;
    let text = config(
        upstream,
        // The longest deadline: a call that outlived a short one (CI's first, loading the script on a busy
        // machine) was answered by the local fallback while Redis counted it too, and 16 passed.
        &redis_store(&redis, "1s"),
        &limited_route("api", limits),
    );
    let replicas = [Weir::start(&text), Weir::start(&text)];

    // A burst of 40 at once, alternating between the replicas: 10 + 5 pass, wherever they land.
    let started = Instant::now();
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let url = replicas[i % 2].url("/api/orders");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let mut replies = Vec::new();
    for request in requests {
        replies.push(request.await.expect("request task"));
    }
    let burst = started.elapsed();
    // Each replica counts its own decisions; together they are the burst's. A call that outlives the
    // store's deadline is answered by the fallback while Redis may count it too: the exact counts need none.
    let mut by_outcome = [0.0; 3];
    for weir in &replicas {
        for (i, outcome) in ["allowed", "refused", "store_error"]
            .into_iter()
            .enumerate()
        {
            let labels = [("route", "api"), ("limit", "10/m"), ("outcome", outcome)];
            by_outcome[i] += decisions(weir, &labels).await;
        }
    }
    let passed: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        (passed.len(), refused.len()),
        (15, 25),
        "burst took {burst:?}; decisions allowed, refused, store_error: {by_outcome:?}"
    );
    assert_eq!(by_outcome, [15.0, 25.0, 0.0]);
    let policies: Vec<String> = replies
        .iter()
        .map(|r| {
            r.header("ratelimit-policy")
                .expect("RateLimit-Policy")
                .to_owned()
        })
        .collect();
    let states: Vec<String> = replies
        .iter()
        .map(|r| r.header("ratelimit").expect("RateLimit").to_owned())
        .collect();
    for policy in structured_lists(&policies) {
        assert_eq!(param(&policy, "10/m", "q"), Some(10));
        assert_eq!(param(&policy, "10/m", "w"), Some(60));
        assert_eq!(param(&policy, "10/m", "weir-burst"), Some(5));
        assert_eq!(param(&policy, "1000/h", "q"), Some(1000));
        assert_eq!(param(&policy, "1000/h", "w"), Some(3600));
    }
    let states = structured_lists(&states);
    // Each admission spent one unit of one shared count: the remainders are 14 down to 0, once each.
    let mut remaining: Vec<i64> = replies
        .iter()
        .zip(&states)
        .filter(|(reply, _)| reply.status == 200)
        .map(|(_, state)| param(state, "10/m", "r").expect("r"))
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..15).collect::<Vec<i64>>());

    // One unit comes free every 6 s, counted from the first admission: a refusal in a burst that took
    // under a second is told 6 s (5 if the burst took longer), and `t` says the same.
    for (reply, state) in replies.iter().zip(&states) {
        if reply.status != 429 {
            continue;
        }
        let retry: i64 = reply
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("delay-seconds");
        let earliest = 6 - i64::try_from(burst.as_secs()).expect("seconds") - 1;
        assert!(
            (earliest..=6).contains(&retry),
            "Retry-After {retry} after {burst:?}"
        );
        assert_eq!(param(state, "10/m", "t"), Some(retry));
        assert_eq!(param(state, "10/m", "r"), Some(0));
        // A refusal spends nothing: the hourly limit kept its 985.
        assert_eq!(param(state, "1000/h", "r"), Some(985));
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
        let problem = reply.json();
        assert_eq!(
            problem["type"],
            "https://iana.org/assignments/http-problem-types#quota-exceeded"
        );
        assert_eq!(problem["status"], 429);
        assert_eq!(problem["violated-policies"], serde_json::json!(["10/m"]));
    }
    // The state is in Redis, under the namespace of the route's entry.
    let keys = redis.command("KEYS weir:e:api:1:*");
    assert_eq!(keys.matches("weir:e:api:1:{").count(), 2, "{keys}");
}

/// `weir_rate_limit_decisions_total` for `labels`, 0 when the series is not there yet.
async fn decisions(weir: &Weir, labels: &[(&str, &str)]) -> f64 {
    weir.metric("weir_rate_limit_decisions_total", labels)
        .await
        .unwrap_or(0.0)
}

/// Latency percentile `p` (0–100) of `samples`.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// Sends `n` requests to `url` one after another, each timed.
async fn timed(url: &str, n: usize) -> (Vec<Duration>, Vec<u16>) {
    let mut latencies = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        let reply = get(url).await;
        latencies.push(sent.elapsed());
        statuses.push(reply.status.as_u16());
    }
    (latencies, statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_as_configured_and_recovers_without_a_restart() {
    let mut redis = Redis::start();
    let port = redis.port;
    let upstream = upstream("a").await;
    let routes = [
        limited_route(
            "allow",
            r#"limits = [{ rate = "100000/m" }], on_store_error = "allow""#,
        ),
        limited_route(
            "local",
            r#"limits = [{ rate = "20/m" }], on_store_error = "local", replicas = 2"#,
        ),
        limited_route(
            "deny",
            r#"limits = [{ rate = "5/m" }], on_store_error = "deny""#,
        ),
    ]
    .concat();
    let weir = Weir::start(&config(
        upstream,
        &redis_store(&redis, OUTAGE_DEADLINE),
        &routes,
    ));
    for route in ["/allow", "/local", "/deny"] {
        let reply = get(&weir.url(route)).await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.text());
        assert!(reply.header("ratelimit").is_some(), "{route}");
    }

    // Load on the `allow` route while Redis is killed half-way.
    let load = {
        let url = weir.url("/allow");
        tokio::spawn(async move { timed(&url, 400).await })
    };
    let (mut before, _) = timed(&weir.url("/allow"), 100).await;
    redis.kill();
    let (mut during, statuses) = timed(&weir.url("/allow"), 300).await;
    let (_, concurrent) = load.await.expect("load task");
    assert!(statuses.iter().chain(&concurrent).all(|s| *s == 200));
    let (p99_before, p99_during) = (percentile(&mut before, 99), percentile(&mut during, 99));
    println!(
        "allow route p99: {p99_before:?} with Redis up, {p99_during:?} with Redis down (max {:?})",
        during.last().copied().unwrap_or_default()
    );
    // No request waits out a connect or response timeout (1 s each): at most the deadline, while the
    // breaker is still closed, then none.
    assert!(
        during.iter().all(|d| *d < Duration::from_millis(500)),
        "a request stalled: {:?}",
        during.last()
    );
    assert!(weir.wait_for_log("calls now fail at once"));
    assert_eq!(weir.metric("weir_store_breaker_open", &[]).await, Some(1.0));
    let errors = [
        ("route", "allow"),
        ("limit", "100000/m"),
        ("outcome", "store_error"),
    ];
    assert!(decisions(&weir, &errors).await > 0.0);

    let denied = get(&weir.url("/deny")).await;
    assert_eq!(denied.status, 503);
    assert_eq!(denied.header("retry-after"), Some("1"));
    assert_eq!(
        denied.json()["type"],
        "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
    );

    // `local`: this process alone keeps 20/m ÷ 2 replicas, and says so in its policy.
    let (_, statuses) = timed(&weir.url("/local"), 11).await;
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10], 429);
    let local = get(&weir.url("/local")).await;
    assert_eq!(
        local.header("ratelimit-policy"),
        Some(r#""20/m";q=10;w=60"#)
    );

    // Redis back on the same port: the breaker's probe finds it, and limits are shared again.
    let redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(&weir.url("/deny")).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(Instant::now() < deadline, "the limits never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(weir.wait_for_log("Redis answers again"));
    assert_eq!(weir.metric("weir_store_breaker_open", &[]).await, Some(0.0));
    // A fresh Redis: the first 200 above was 1 of 5.
    let (_, statuses) = timed(&weir.url("/deny"), 5).await;
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    assert!(
        redis.command("DBSIZE").starts_with(":1"),
        "the count is in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_a_request_at_most_the_deadline_and_then_nothing() {
    let redis = Redis::start();
    let upstream = upstream("a").await;
    let route = limited_route(
        "api",
        r#"limits = [{ rate = "100000/m" }], on_store_error = "allow""#,
    );
    let weir = Weir::start(&config(
        upstream,
        &redis_store(&redis, OUTAGE_DEADLINE),
        &route,
    ));
    let url = weir.url("/api");
    assert!(get(&url).await.header("ratelimit").is_some());

    // Stopped, not killed: its connection stays open and nothing answers, so only the deadline ends a call.
    redis.signal(libc::SIGSTOP);
    let hung = Instant::now();
    let (latencies, statuses) = timed(&url, 40).await;
    let probes = hung.elapsed().as_millis() / 200 + 1;
    redis.signal(libc::SIGCONT);
    assert_eq!(statuses, [200; 40]);
    assert!(weir.wait_for_log("did not answer within the store's deadline"));
    // Five calls wait out the deadline (100 ms here) and open the breaker; after that only a probe every
    // 200 ms does, and no request waits for the crate's 1 s response timeout.
    let waited = latencies
        .iter()
        .filter(|d| **d >= Duration::from_millis(100))
        .count();
    let longest = latencies.iter().max().copied().unwrap_or_default();
    println!("hung Redis: {waited} of 40 requests waited the deadline, the longest {longest:?}");
    let most = 5 + usize::try_from(probes).expect("a count");
    assert!(
        (5..=most).contains(&waited),
        "{waited} waited: {latencies:?}"
    );
    assert!(longest < Duration::from_millis(600), "{latencies:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&url).await.header("ratelimit").is_none() {
        assert!(
            Instant::now() < deadline,
            "the shared limits never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_backend_limits_per_key_with_the_legacy_fields_and_shadow_mode_only_logs() {
    let upstream = upstream("a").await;
    let routes = [
        limited_route(
            "api",
            r#"limits = [{ rate = "3/m" }], key = ["header:x-api-key"], legacy_headers = true"#,
        ),
        limited_route("shadow", r#"limits = [{ rate = "1/m" }], shadow = true"#),
    ]
    .concat();
    let weir = Weir::start(&config(upstream, "", &routes));
    let url = weir.url("/api");

    let mut left = Vec::new();
    for _ in 0..3 {
        let reply = get_with(&url, &[("x-api-key", "alice")]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        left.push(reply.header("x-ratelimit-remaining").map(str::to_owned));
    }
    assert_eq!(left, [Some("2".into()), Some("1".into()), Some("0".into())]);
    let refused = get_with(&url, &[("x-api-key", "alice")]).await;
    assert_eq!(refused.status, 429);
    let retry = refused.header("retry-after").expect("Retry-After");
    assert!(["19", "20"].contains(&retry), "one unit per 20 s: {retry}");
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    // A reload that leaves `[store]` as it was keeps the store, and with it the count.
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"));
    let still = get_with(&url, &[("x-api-key", "alice")]).await;
    assert_eq!(still.status, 429, "the reload forgot the count");
    // Another key has its own count.
    let bob = get_with(&url, &[("x-api-key", "bob")]).await;
    assert_eq!(bob.status, 200);
    assert_eq!(bob.header("ratelimit"), Some(r#""3/m";r=2;t=20"#));

    for _ in 0..3 {
        let reply = get(&weir.url("/shadow")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("ratelimit"),
            None,
            "shadow mode tells the client nothing"
        );
    }
    assert!(weir.wait_for_log("shadow mode: would refuse with 429 (over 1/m)"));
    let refused = |route| [("route", route), ("outcome", "refused")];
    // The refusals before and after the reload: the counts carry on with the store.
    assert_eq!(decisions(&weir, &refused("api")).await, 2.0);
    assert_eq!(decisions(&weir, &refused("shadow")).await, 2.0);
    // The local backend has no breaker to report.
    assert_eq!(weir.metric("weir_store_breaker_open", &[]).await, None);
}

#[test]
fn check_refuses_what_cannot_work_naming_each_field() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
        [store]\nbackend = \"redis\"\ndeadline = \"0ms\"\n\
        [upstreams.a]\nurl = \"http://127.0.0.1:1\"\n\
        [[routes]]\nname = \"api\"\nupstream = \"a\"\n\
        [[routes.plugins]]\nplugin = \"rate-limit\"\nconfig = { limits = [{ rate = \"10/s\" }] }\n\
        [[routes.plugins]]\nplugin = \"rate-limit\"\ngrants.store = true\nconfig = { limits = [{ rate = \"10/w\" }] }\n";
    let out = check(text);
    assert!(!out.success);
    golden("check-rate-limit-errors.txt", &report(&out));
}
