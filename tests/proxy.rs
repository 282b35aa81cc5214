//! The proxy path end to end: the real `weir` binary, real plugins built from `plugins/` and `tests/fixture`,
//! real upstreams on loopback.

mod support;

use http_body_util::Full;
use hyper::{Request, StatusCode};
use support::*;

fn upstream_table(name: &str, addr: std::net::SocketAddr) -> String {
    format!("[upstreams.{name}]\nurl = \"http://{addr}\"\n")
}

const LISTEN: &str = "[server]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_on_path_methods_and_host_first_match_wins() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}{}
[[routes]]
name = "exact"
path = "/exact"
upstream = "a"

[[routes]]
name = "posts-only"
path_prefix = "/api"
methods = ["POST"]
upstream = "b"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "a"

[[routes]]
name = "versioned"
path_regex = "^/v[0-9]+/"
upstream = "b"

[[routes]]
name = "by-host"
host = "*.example.com"
upstream = "b"
"#,
        upstream_table("a", a),
        upstream_table("b", b)
    ));
    let served_by = |reply: &Reply| reply.header("x-upstream").unwrap_or("none").to_owned();

    assert_eq!(served_by(&get(&weir.url("/exact")).await), "a");
    assert_eq!(
        get(&weir.url("/exact/more")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(served_by(&get(&weir.url("/api/x")).await), "a");
    let post = send(
        Request::post(weir.url("/api/x"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(served_by(&post), "b", "the first matching route wins");
    assert_eq!(
        get(&weir.url("/apix")).await.status,
        StatusCode::NOT_FOUND,
        "prefixes match whole segments"
    );
    assert_eq!(served_by(&get(&weir.url("/v2/users")).await), "b");
    assert_eq!(
        served_by(&get_with(&weir.url("/other"), &[("host", "shop.example.com")]).await),
        "b"
    );

    let missing = get(&weir.url("/nowhere")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.text(), "no route for this request\n");
    assert!(
        weir.wait_for_log("GET /api/x 200"),
        "one access-log line per request:\n{}",
        weir.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_strips_hop_by_hop_and_adds_x_forwarded() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        "{LISTEN}{}\n[[routes]]\nupstream = \"a\"\n",
        upstream_table("a", a)
    ));
    let reply = get_with(
        &weir.url("/echo?x=1&y=two"),
        &[
            ("host", "public.example"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-kept", "yes"),
        ],
    )
    .await;
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), "/echo");
    assert_eq!(echo.0["query"], "x=1&y=two");
    assert!(
        echo.header("x-private").is_empty(),
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(echo.header("x-kept"), ["yes"]);
    assert_eq!(echo.header("x-forwarded-for"), ["10.1.1.1, 127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto"), ["http"]);
    assert_eq!(echo.header("x-forwarded-host"), ["public.example"]);
    assert_eq!(
        echo.header("host"),
        [a.to_string()],
        "the upstream's own authority, like nginx"
    );
}

/// RFC 7239 §4's `Forwarded`, strictly: elements of `token=value` pairs, a value a token or a quoted-string,
/// elements separated by commas with optional whitespace.
fn rfc7239() -> regex::Regex {
    let token = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+";
    let quoted = r#""(?:[\t !\x23-\x5B\x5D-\x7E]|\\[\t \x21-\x7E])*""#;
    let pair = format!("{token}=(?:{token}|{quoted})");
    let element = format!("{pair}(?:;{pair})*");
    regex::Regex::new(&format!("^{element}(?:[ \t]*,[ \t]*{element})*$")).expect("regex")
}

/// The pairs of the last element, Weir's own, with quotes taken off (Weir's values need no escapes).
fn last_element(forwarded: &str) -> Vec<(String, String)> {
    let last = forwarded.rsplit(',').next().expect("an element");
    last.trim()
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| {
            let unquoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            (
                name.to_ascii_lowercase(),
                unquoted.unwrap_or(value).to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_is_appended_when_turned_on_live_and_parses_as_rfc_7239() {
    let a = upstream("a").await;
    let config = |listen: &str, forwarded: bool| {
        format!(
            "[server]\nlisten = \"{listen}:0\"\nforwarded = {forwarded}\n{}\n[[routes]]\nupstream = \"a\"\n",
            upstream_table("a", a)
        )
    };
    let headers = [
        ("host", "public.example:8443"),
        ("forwarded", "for=10.1.1.1;proto=https"),
        ("x-forwarded-for", "10.1.1.1"),
    ];
    let weir = Weir::start(&config("127.0.0.1", false));
    let echo = Echo(get_with(&weir.url("/"), &headers).await.json());
    assert_eq!(
        echo.header("forwarded"),
        ["for=10.1.1.1;proto=https"],
        "off by default: the client's passes untouched, as X-Forwarded-For's would without Weir's hop"
    );

    std::fs::write(weir.config_file(), config("127.0.0.1", true)).expect("rewrite the config");
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    let echo = Echo(get_with(&weir.url("/"), &headers).await.json());
    assert_eq!(
        echo.header("forwarded"),
        [r#"for=10.1.1.1;proto=https, for=127.0.0.1;host="public.example:8443";proto=http"#],
        "appended after the client's, as X-Forwarded-For is"
    );
    assert_eq!(echo.header("x-forwarded-for"), ["10.1.1.1, 127.0.0.1"]);
    let forwarded = &echo.header("forwarded")[0];
    assert!(rfc7239().is_match(forwarded), "{forwarded}");
    assert_eq!(
        last_element(forwarded),
        [
            ("for".into(), "127.0.0.1".into()),
            ("host".into(), "public.example:8443".into()),
            ("proto".into(), "http".into()),
        ]
    );

    let weir = Weir::start(&config("[::1]", true));
    let echo = Echo(
        get_with(&weir.url("/"), &[("host", "plain.example")])
            .await
            .json(),
    );
    let forwarded = &echo.header("forwarded")[0];
    assert_eq!(forwarded, r#"for="[::1]";host=plain.example;proto=http"#);
    assert!(rfc7239().is_match(forwarded), "{forwarded}");
    let node = &last_element(forwarded)[0].1;
    let ip = node.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
    assert_eq!(
        ip.and_then(|ip| ip.parse::<std::net::Ipv6Addr>().ok()),
        Some(std::net::Ipv6Addr::LOCALHOST),
        "§6: a bracketed IPv6 address, {node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_in_order_and_back_in_reverse_with_context() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}
[[routes]]
upstream = "a"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "tag", name = "first" }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "write-context", key = "user", value = "alice" }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "read-context", key = "user", header = "x-user" }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "tag", name = "last" }}
"#,
        upstream_table("a", a)
    ));
    for _ in 0..3 {
        let reply = get(&weir.url("/")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let echo = Echo(reply.json());
        assert_eq!(
            echo.header("x-chain"),
            ["first", "last"],
            "request phase in chain order"
        );
        assert_eq!(
            echo.header("x-user"),
            ["alice"],
            "context set by one plugin is read by a later one"
        );
        assert_eq!(
            reply.header_all("x-chain-back"),
            ["last", "first"],
            "response phase in reverse order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_answer_stops_the_chain_and_no_upstream_is_called() {
    // The upstream does not exist: reaching it would give 502.
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}
[[routes]]
upstream = "gone"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "tag", name = "before" }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "respond", status = 418, body = "short and stout", headers = {{ "x-teapot" = "yes" }} }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "tag", name = "after" }}
"#,
        upstream_table("gone", closed_port())
    ));
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.text(), "short and stout");
    assert_eq!(reply.header("x-teapot"), Some("yes"));
    assert_eq!(
        reply.header_all("x-chain-back"),
        ["before"],
        "plugins after the answer never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_chooses_the_upstream() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}{}
[[routes]]
upstream = "a"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "pick-upstream", header = "x-pick" }}
"#,
        upstream_table("a", a),
        upstream_table("b", b)
    ));
    assert_eq!(Echo(get(&weir.url("/")).await.json()).upstream(), "a");
    assert_eq!(
        Echo(get_with(&weir.url("/"), &[("x-pick", "b")]).await.json()).upstream(),
        "b"
    );
    let unknown = get_with(&weir.url("/"), &[("x-pick", "nope")]).await;
    assert_eq!(
        unknown.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "an unknown upstream is a plugin fault"
    );
    assert!(
        weir.wait_for_log("no upstream named \"nope\""),
        "the log names the plugin's mistake:\n{}",
        weir.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_path_rewrite_built_ins() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}
[[routes]]
name = "api"
path_prefix = "/backend"
upstream = "a"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "write-context", key = "jwt.user_id", value = "42" }}
[[routes.plugins]]
plugin = "path-rewrite"
config = {{ template = "/shops/{{ctx.jwt.user_id}}{{path}}" }}
[[routes.plugins]]
plugin = "headers"
config.request = {{ set = {{ "x-api-key" = "s3cret" }}, remove = ["cookie"] }}
config.response = {{ set = {{ "x-upstream-name" = "{{upstream}}", "x-original-uri" = "{{original_uri}}", "x-rewritten-uri" = "{{path}}" }}, remove = ["x-upstream"] }}

[[routes]]
name = "strip"
path_prefix = "/strip"
upstream = "a"
[[routes.plugins]]
plugin = "path-rewrite"
config = {{ strip_prefix = "/strip" }}

[[routes]]
name = "from-header"
path_prefix = "/t"
upstream = "a"
[[routes.plugins]]
plugin = "path-rewrite"
config = {{ template = "/t/{{header.x-t}}{{path}}" }}
"#,
        upstream_table("a", a)
    ));
    let reply = get_with(
        &weir.url("/backend/orders?page=2"),
        &[("cookie", "session=1"), ("x-api-key", "forged")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), "/shops/42/backend/orders");
    assert_eq!(echo.0["query"], "page=2");
    assert_eq!(
        echo.header("x-api-key"),
        ["s3cret"],
        "the client's value is replaced"
    );
    assert!(echo.header("cookie").is_empty());
    assert_eq!(reply.header("x-upstream-name"), Some("a"));
    assert_eq!(
        reply.header("x-original-uri"),
        Some("/backend/orders?page=2")
    );
    assert_eq!(
        reply.header("x-rewritten-uri"),
        Some("/shops/42/backend/orders")
    );
    assert_eq!(reply.header("x-upstream"), None, "response header removed");

    assert_eq!(
        Echo(get(&weir.url("/strip/a/b")).await.json()).path(),
        "/a/b"
    );
    assert_eq!(Echo(get(&weir.url("/strip")).await.json()).path(), "/");
    // The client's path is normalised before routing: this one is `/etc/passwd`, which no route serves.
    let dots = get(&weir.url("/strip/a/%2e%2e/%2e%2e/etc/passwd")).await;
    assert_eq!(dots.status, StatusCode::NOT_FOUND, "{}", dots.text());
    let climb = get(&weir.url("/strip/%2e%2e/%2e%2e/etc/passwd")).await;
    assert_eq!(climb.status, StatusCode::BAD_REQUEST, "{}", climb.text());
    assert_eq!(climb.text(), "the path climbs above the root\n");

    // A rewrite from a client's header goes through the host's normaliser too: bytes a path cannot hold
    // are escaped (this once panicked the connection), a climb above the root is the client's 400.
    let odd = get_with(&weir.url("/t/x"), &[("x-t", "a<b>\"")]).await;
    assert_eq!(odd.status, StatusCode::OK, "{}", odd.text());
    assert_eq!(Echo(odd.json()).path(), "/t/a%3Cb%3E%22/t/x");
    let up = get_with(&weir.url("/t/x"), &[("x-t", "../../..")]).await;
    assert_eq!(up.status, StatusCode::BAD_REQUEST, "{}", up.text());
    assert_eq!(
        up.text(),
        "path-rewrite: path \"/t/../../../t/x\" refused: the path climbs above the root\n"
    );
    let sideways = get_with(&weir.url("/t/x"), &[("x-t", "../u")]).await;
    assert_eq!(Echo(sideways.json()).path(), "/u/t/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_from_a_plugin_is_refused_by_the_host() {
    let a = upstream("a").await;
    let weir = Weir::start(&one_route(a, &fixture(r#"mode = "bad-header""#)));
    let echo = Echo(get(&weir.url("/")).await.json());
    assert_eq!(echo.header("x-header-refused"), ["yes"]);
    assert!(echo.header("x-evil").is_empty() && echo.header("injected").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_hooks_transform_both_bodies_chunk_by_chunk() {
    let a = upstream("a").await;
    let weir = Weir::start(&one_route(a, &fixture(r#"mode = "body-upper""#)));
    let reply = send(
        Request::post(weir.url("/echo"))
            .body(Full::from("hello body"))
            .unwrap(),
    )
    .await;
    // The request body reached the upstream upper-cased, and the echo came back upper-cased again.
    let text = reply.text();
    assert!(text.contains("\"BODY\":\"HELLO BODY\""), "{text}");
    let streamed = get(&weir.url("/trickle/100000")).await;
    assert_eq!(streamed.body.len(), 100_000);
    assert!(streamed.body.iter().all(|b| !b.is_ascii_lowercase()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_plugin_that_skips_the_body_leaves_it_streaming_with_its_length() {
    let a = upstream("a").await;
    let weir = Weir::start(&one_route(
        a,
        &fixture(r#"mode = "body-upper", skip = true"#),
    ));
    let reply = send(
        Request::post(weir.url("/echo"))
            .body(Full::from("hello body"))
            .unwrap(),
    )
    .await;
    assert!(
        reply.text().contains("\"body\":\"hello body\""),
        "{}",
        reply.text()
    );
    let text = get(&weir.url("/text/5000")).await;
    assert_eq!(text.header("content-length"), Some("5000"));
    assert!(text.body.iter().any(u8::is_ascii_lowercase));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_body_streams_through_an_empty_chain_in_bounded_memory() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        "{LISTEN}{}\n[[routes]]\nupstream = \"a\"\n",
        upstream_table("a", a)
    ));
    let before = weir.peak_rss();
    let reply = get(&weir.url("/stream/52428800")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 52_428_800);
    let grown = weir.peak_rss().saturating_sub(before);
    // Streaming keeps a few 64 KiB chunks in flight; 16 MiB leaves room for allocator noise, and is far
    // below the 50 MiB a buffered body would need.
    assert!(grown < 16 << 20, "peak RSS grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        r#"{LISTEN}{}
[upstreams.slow]
url = "http://{a}"
timeout = "300ms"
[[routes]]
path_prefix = "/gone"
upstream = "gone"
[[routes]]
upstream = "slow"
"#,
        upstream_table("gone", closed_port())
    ));
    let gone = get(&weir.url("/gone")).await;
    assert_eq!(gone.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gone.text(), "upstream unreachable\n");
    let started = std::time::Instant::now();
    let slow = get(&weir.url("/sleep/3000")).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.text(), "upstream timed out\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(
        get(&weir.url("/sleep/10")).await.status,
        StatusCode::OK,
        "the proxy keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_route_limit_get_413() {
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        "{LISTEN}{}\n[[routes]]\nupstream = \"a\"\nmax_request_body = \"1KiB\"\n",
        upstream_table("a", a)
    ));
    let small = send(
        Request::post(weir.url("/"))
            .body(Full::from(vec![b'x'; 1000]))
            .unwrap(),
    )
    .await;
    assert_eq!(small.status, StatusCode::OK);
    let big = send(
        Request::post(weir.url("/"))
            .body(Full::from(vec![b'x'; 2000]))
            .unwrap(),
    )
    .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_plugin_adds_its_configured_header() {
    let a = upstream("a").await;
    let plugin = wasm("add_header");
    let weir = Weir::start(&one_route(
        a,
        &format!(
            "[[routes.plugins]]\npath = \"{}\"\nconfig = {{ name = \"x-hello\", value = \"world\" }}\n",
            plugin.display()
        ),
    ));
    assert_eq!(
        Echo(get(&weir.url("/")).await.json()).header("x-hello"),
        ["world"]
    );
}
