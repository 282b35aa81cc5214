//! `/metrics` through the real binary: a known mix of requests (answered, refused by a plugin, matched by
//! no route, sent to a closed port, timed out, trapped in every way a plugin can), scraped and read by
//! Python's `prometheus_client` (its strict OpenMetrics parser and its Prometheus text parser, which must
//! agree), every count equal to what was sent; then a reload, which carries the counts on.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::raw::read_until_closed;
use support::*;

/// Parses the exposition with both of `prometheus_client`'s parsers, fails unless they read the same
/// samples, and prints them as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus
text = sys.stdin.read()
def samples(families):
    return sorted(
        json.dumps([s.name, s.labels, float(s.value)], sort_keys=True)
        for family in families for s in family.samples)
strict = samples(openmetrics(text))
loose = samples(prometheus(text))
assert strict == loose, f"the parsers disagree:\n{strict}\n{loose}"
print("[" + ",".join(strict) + "]")
"#;

/// One sample: its name, its labels and its value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the one sample `name` whose labels include `labels`; `None` if there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .0
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} names {} series",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    fn requests(&self, route: &str, class: &str) -> f64 {
        self.value(
            "weir_requests_total",
            &[("route", route), ("status", class)],
        )
    }

    fn total_requests(&self) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == "weir_requests_total")
            .map(|s| s.value)
            .sum()
    }
}

async fn scrape(weir: &Weir) -> Scrape {
    let admin = weir.admin.expect("an admin listener");
    let reply = get(&format!("http://{admin}/metrics")).await;
    assert_eq!(reply.status, 200);
    let mut python = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (make test-deps installs prometheus-client)");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(&reply.body)
        .expect("write the exposition");
    let out = python.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        reply.text()
    );
    let parsed: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    Scrape(
        parsed
            .into_iter()
            .map(|(name, labels, value)| Sample {
                name,
                labels,
                value,
            })
            .collect(),
    )
}

/// Scrapes until every request sent has been counted (a request is counted when its response body has been
/// handed to the connection, which may be a moment after the client has read it), at most 5 s.
async fn scrape_after(weir: &Weir, requests: usize) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let scraped = scrape(weir).await;
        if scraped.total_requests() >= requests as f64 || Instant::now() > deadline {
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(a: std::net::SocketAddr, closed: std::net::SocketAddr, tag: &str, fails: bool) -> String {
    let entry = |route: &str, prefix: &str, upstream: &str, plugin: &str| {
        format!(
            "[[routes]]\nname = \"{route}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{plugin}"
        )
    };
    let mut routes = vec![
        entry(
            "open",
            "/open",
            "a",
            &fixture(&format!(r#"mode = "tag", name = "{tag}""#)),
        ),
        entry(
            "guarded",
            "/guarded",
            "a",
            "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = { tokens = { alice = \"s3cret\" } }\n",
        ),
        entry("closed", "/closed", "closed", ""),
        entry("slow", "/sleep", "slow", ""),
        entry("panics", "/panic", "a", &fixture(r#"mode = "panic""#)),
        entry("loops", "/loop", "a", &fixture(r#"mode = "loop""#)),
        entry(
            "hoards",
            "/alloc",
            "a",
            &format!("{}memory = \"8MiB\"\n", fixture(r#"mode = "alloc""#)),
        ),
        entry(
            "naps",
            "/nap",
            "a",
            &format!(
                "{}wall_timeout = \"100ms\"\n",
                fixture(r#"mode = "sleep", ms = 2000"#)
            ),
        ),
        entry(
            "skips",
            "/skip",
            "a",
            &format!("{}on_error = \"skip\"\n", fixture(r#"mode = "fail""#)),
        ),
        entry("upper", "/upper", "a", &fixture(r#"mode = "body-upper""#)),
    ];
    if fails {
        routes.push(entry("fails", "/fail", "a", &fixture(r#"mode = "fail""#)));
    }
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.a]\nurl = \"http://{a}\"\n[upstreams.closed]\nurl = \"http://{closed}\"\n\
         [upstreams.slow]\nurl = \"http://{a}\"\ntimeout = \"200ms\"\n{}",
        routes.concat()
    )
}

/// The fixture's entry label, as the metrics name it.
fn fixture_label() -> String {
    format!("plugin #1 ({})", wasm("fixture").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_equal_the_requests_sent_and_survive_a_reload() {
    let a = upstream("a").await;
    let closed = closed_port();
    let weir = Weir::start(&config(a, closed, "one", true));

    // (path, status, times)
    let sends: &[(&str, u16, usize)] = &[
        ("/open/x", 200, 3),
        ("/guarded/x", 401, 2),
        ("/nowhere", 404, 2),
        ("/closed/x", 502, 2),
        ("/sleep/1000", 504, 1),
        ("/panic", 500, 2),
        ("/loop", 500, 1),
        ("/alloc", 500, 1),
        ("/nap", 500, 1),
        ("/fail", 500, 2),
        ("/skip", 200, 2),
    ];
    let mut sent = 0;
    for &(path, status, times) in sends {
        for _ in 0..times {
            let reply = get(&weir.url(path)).await;
            assert_eq!(reply.status, status, "{path}: {}", reply.text());
            sent += 1;
        }
    }
    let authorized = get_with(
        &weir.url("/guarded/x"),
        &[("authorization", "Token s3cret")],
    )
    .await;
    assert_eq!(authorized.status, 200);
    let upper = post(&weir.url("/upper"), "shout").await;
    assert_eq!(upper.status, 200, "{}", upper.text());
    sent += 2;

    let m = scrape_after(&weir, sent).await;
    let fixture = fixture_label();
    let plugin = |route: &'static str| [("route", route), ("plugin", fixture.as_str())];

    // Requests by route and class, exactly as sent; nothing else counted.
    let expected: &[(&str, &str, f64)] = &[
        ("open", "2xx", 3.0),
        ("guarded", "4xx", 2.0),
        ("guarded", "2xx", 1.0),
        ("", "4xx", 2.0),
        ("closed", "5xx", 2.0),
        ("slow", "5xx", 1.0),
        ("panics", "5xx", 2.0),
        ("loops", "5xx", 1.0),
        ("hoards", "5xx", 1.0),
        ("naps", "5xx", 1.0),
        ("fails", "5xx", 2.0),
        ("skips", "2xx", 2.0),
        ("upper", "2xx", 1.0),
    ];
    for &(route, class, n) in expected {
        assert_eq!(m.requests(route, class), n, "route {route:?}, {class}");
    }
    assert_eq!(m.total_requests(), sent as f64, "no request counted twice");
    for route in ["open", "guarded", "", "closed", "slow", "skips", "upper"] {
        let answered: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .map(|class| m.requests(route, class))
            .sum();
        assert_eq!(
            m.value("weir_request_duration_seconds_count", &[("route", route)]),
            answered,
            "the latency histogram of {route:?} counts its requests"
        );
    }
    // The slow upstream's request waited its 200 ms `timeout` before its 504.
    assert!(m.value("weir_request_duration_seconds_sum", &[("route", "slow")]) >= 0.2);
    assert_eq!(
        m.value(
            "weir_request_duration_seconds_bucket",
            &[("route", "slow"), ("le", "0.1")]
        ),
        0.0
    );

    // Plugin calls, per hook.
    assert_eq!(calls(&m, plugin("open"), "on-request"), Some(3.0));
    // The fixture's `on_response` delegates to another type's default one first: it is still called on
    // every response, not taken for a plugin without a response hook.
    assert_eq!(calls(&m, plugin("open"), "on-response"), Some(3.0));
    assert_eq!(
        calls(&m, plugin("open"), "on-request-body"),
        None,
        "no body hooks"
    );
    assert_eq!(calls(&m, plugin("skips"), "on-request"), Some(2.0));
    for hook in ["on-request-body", "on-response-body"] {
        assert!(calls(&m, plugin("upper"), hook).is_some_and(|n| n >= 1.0));
    }
    let token_auth = [("route", "guarded"), ("plugin", "plugin #1 (token-auth)")];
    assert_eq!(calls(&m, token_auth, "on-request"), Some(3.0));
    // The refusals are the plugin's answers, not its failures.
    assert_eq!(m.value("weir_plugin_errors_total", &token_auth), 0.0);

    // Failures by kind, each on its own entry.
    let failures: &[(&str, &str, &str, f64)] = &[
        ("panics", "weir_plugin_traps_total", "trap", 2.0),
        ("loops", "weir_plugin_traps_total", "cpu_limit", 1.0),
        ("hoards", "weir_plugin_traps_total", "memory_limit", 1.0),
        ("naps", "weir_plugin_traps_total", "wall_limit", 1.0),
    ];
    for &(route, name, kind, n) in failures {
        let [r, p] = plugin(route);
        assert_eq!(m.value(name, &[r, p, ("kind", kind)]), n, "{route} {kind}");
        for (other, _, _, _) in failures.iter().filter(|f| f.2 != kind) {
            let [r, p] = plugin(other);
            assert_eq!(
                m.value(name, &[r, p, ("kind", kind)]),
                0.0,
                "{other} has no {kind}"
            );
        }
    }
    assert_eq!(m.value("weir_plugin_errors_total", &plugin("fails")), 2.0);
    assert_eq!(m.value("weir_plugin_skips_total", &plugin("fails")), 0.0);
    assert_eq!(m.value("weir_plugin_errors_total", &plugin("skips")), 2.0);
    assert_eq!(m.value("weir_plugin_skips_total", &plugin("skips")), 2.0);
    assert_eq!(
        m.value("weir_plugin_overloads_total", &plugin("skips")),
        0.0
    );
    // A trap ends its instance: the second panic needed a new one, beside the one `init` made.
    assert_eq!(
        m.value("weir_plugin_instances_created_total", &plugin("panics")),
        2.0
    );

    // Upstreams.
    let upstream = |name| [("upstream", name)];
    assert_eq!(
        m.value("weir_upstream_connect_errors_total", &upstream("closed")),
        2.0
    );
    assert_eq!(
        m.value("weir_upstream_connect_errors_total", &upstream("a")),
        0.0
    );
    assert_eq!(
        m.value(
            "weir_upstream_timeouts_total",
            &[("upstream", "slow"), ("phase", "response")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "weir_upstream_timeouts_total",
            &[("upstream", "slow"), ("phase", "connect")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "weir_upstream_connections_opened_total",
            &upstream("closed")
        ),
        0.0
    );
    let opened = m.value("weir_upstream_connections_opened_total", &upstream("a"));
    let open = m.value("weir_upstream_connections_open", &upstream("a"));
    assert!(
        opened >= 1.0 && (1.0..=opened).contains(&open),
        "upstream a: {opened} connections made, {open} open"
    );

    // A reload that changes the open route's plugin config and drops the failing route.
    let created_before = m.value("weir_plugin_instances_created_total", &plugin("open"));
    let dir = weir.config_file().parent().expect("a directory").to_owned();
    write_config(&dir, &config(a, closed, "two", false));
    let admin = weir.admin.expect("admin");
    let reloaded = post(&format!("http://{admin}/reload"), "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let reply = get(&weir.url("/open/x")).await;
    assert_eq!(
        reply.header("x-chain-back"),
        Some("two"),
        "the new generation"
    );

    let m = scrape_after(&weir, sent + 1).await;
    assert_eq!(m.value("weir_config_generation", &[]), 2.0);
    assert_eq!(m.requests("open", "2xx"), 4.0, "counted on, not reset");
    assert_eq!(
        m.value("weir_request_duration_seconds_count", &[("route", "open")]),
        4.0
    );
    assert_eq!(calls(&m, plugin("open"), "on-request"), Some(4.0));
    assert_eq!(m.requests("", "4xx"), 2.0);
    assert_eq!(
        m.value("weir_upstream_connect_errors_total", &upstream("closed")),
        2.0
    );
    assert_eq!(
        m.value("weir_plugin_instances_created_total", &plugin("open")),
        created_before + 1.0,
        "the new generation's first instance is added to the count"
    );
    assert_eq!(
        m.get(
            "weir_requests_total",
            &[("route", "fails"), ("status", "5xx")]
        ),
        None,
        "a route the config no longer has is dropped"
    );
}

/// Calls of `hook` of the entry `[route, plugin]`, if it had any.
fn calls(m: &Scrape, [route, plugin]: [(&str, &str); 2], hook: &str) -> Option<f64> {
    m.get(
        "weir_plugin_call_duration_seconds_count",
        &[route, plugin, ("hook", hook)],
    )
}

/// Sends `request` on a connection of its own: the status of the answer, read until the server closes.
fn raw_status(weir: &Weir, request: &[u8]) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(weir.addr).expect("connect");
    stream.write_all(request).expect("the request");
    let seen = read_until_closed(&stream, Duration::from_secs(5));
    assert!(seen.closed, "the connection is still open");
    seen.responses().first().map(|r| r.status)
}

/// Requests hyper's parser refuses (RFC 9112 syntax: a field line without a colon; a head past the read
/// buffer) never reach the proxy's code, yet are answered, counted with the unrouted requests and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_parser_refuses_are_counted_and_logged() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, closed_port(), "one", false));
    let no_colon = b"GET /open/x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n";
    assert_eq!(raw_status(&weir, no_colon), Some(400));
    let mut huge = b"GET /open/x HTTP/1.1\r\nHost: a\r\nx-big: ".to_vec();
    huge.resize(huge.len() + (200 << 10), b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw_status(&weir, &huge), Some(431));
    let good = get(&weir.url("/open/x")).await;
    assert_eq!(good.status, 200);

    let m = scrape_after(&weir, 3).await;
    assert_eq!(m.requests("", "4xx"), 2.0);
    assert_eq!(m.requests("open", "2xx"), 1.0);
    assert_eq!(m.total_requests(), 3.0);
    assert!(
        weir.wait_for_record(&["refused a malformed request", "status=400"])
            && weir.wait_for_record(&["refused a malformed request", "status=431"]),
        "{}",
        weir.log()
    );
}
