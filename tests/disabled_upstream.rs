//! An upstream switched off in the config (`disabled = true`): its routes answer `501 The proxy is
//! disabled.` once their chain has run, so authentication still answers first; a plugin may send a request
//! to it too, with the same answer. The echo upstream says when anything got through.

mod support;

use hyper::StatusCode;
use support::*;

async fn start() -> Weir {
    let live = upstream("live").await;
    let closed = closed_port();
    Weir::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"
access_log = false
[upstreams.analytics]
disabled = true
[upstreams.kept]
disabled = true
url = "http://{closed}"
[upstreams.live]
url = "http://{live}"

[[routes]]
name = "proxy"
path_prefix = "/proxy"
upstream = "analytics"
[[routes.plugins]]
plugin = "token-auth"
config = {{ tokens = {{ alice = "a-secret" }} }}

[[routes]]
name = "bare"
path_prefix = "/bare"
upstream = "kept"

[[routes]]
name = "switch"
upstream = "live"
{}"#,
        fixture(r#"mode = "pick-upstream""#)
    ))
}

fn assert_disabled(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::NOT_IMPLEMENTED,
        "{}",
        reply.text()
    );
    assert_eq!(reply.text(), "The proxy is disabled.");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-upstream"), None, "an upstream answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_answers_first_then_a_disabled_upstream_is_501() {
    let weir = start().await;
    let url = weir.url("/proxy/some/path?foo=bar");

    let missing = get(&url).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.text(), "Missing authorization header\n");
    let wrong = get_with(&url, &[("authorization", "Token nope")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    assert_disabled(&get_with(&url, &[("authorization", "Token a-secret")]).await);
    let post = hyper::Request::post(&url)
        .header("authorization", "Token a-secret")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"\x00\x01binary",
        )))
        .expect("request");
    assert_disabled(&send(post).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_upstream_keeps_its_url_unused_and_a_plugin_can_pick_one() {
    let weir = start().await;
    // Its URL points where nothing listens: a 502 would mean Weir tried it.
    assert_disabled(&get(&weir.url("/bare/x")).await);

    let live = get(&weir.url("/x")).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.header("x-upstream"), Some("live"));
    assert_disabled(&get_with(&weir.url("/x"), &[("x-upstream", "analytics")]).await);
}

#[test]
fn an_upstream_without_a_url_must_say_it_is_disabled() {
    let checked =
        check("[upstreams.analytics]\ntimeout = \"5s\"\n[[routes]]\nupstream = \"analytics\"\n");
    assert!(!checked.success);
    assert!(
        checked.stderr.contains(
            "upstream \"analytics\", field \"url\": missing: give the upstream's url, or `disabled = true`"
        ),
        "{}",
        checked.stderr
    );
    let checked =
        check("[upstreams.analytics]\ndisabled = true\n[[routes]]\nupstream = \"analytics\"\n");
    assert!(checked.success, "{}", checked.stderr);
}
