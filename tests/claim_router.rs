//! The `claim-router` built-in end to end, as the sharded backend's nginx `map` routed: jwt-auth verifies
//! tokens made by PyJWT (tests/jwt/mint.py), claim-router sends odd `user_id`s to one echo upstream and even
//! ones to another, and each echo says which answered. A header source with exact values and a default
//! covers the other half; `headers` names the chosen upstream in a debug response header.

#[path = "jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{Value, json};
use support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The user ids tokens are made for, by token name: numbers, a number past u64, a string, none.
fn user_ids() -> Vec<(&'static str, Value)> {
    vec![
        ("u1", json!(1)),
        ("u2", json!(2)),
        ("u7", json!(7)),
        ("u10", json!(10)),
        ("big", json!("184467440737095516170")),
        ("text", json!("seven")),
        ("none", Value::Null),
    ]
}

/// An HS256 secret and a token per user id.
fn mint() -> Value {
    let tokens: serde_json::Map<String, Value> = user_ids()
        .into_iter()
        .map(|(name, id)| {
            let mut claims = json!({ "sub": name, "exp": now() + 600 });
            if !id.is_null() {
                claims["user_id"] = id;
            }
            (
                name.to_owned(),
                json!({ "key": "k", "alg": "HS256", "claims": claims }),
            )
        })
        .collect();
    jwt_mint::run(&json!({ "keys": { "k": "hmac" }, "tokens": tokens }))
}

async fn start(secret: &str) -> Weir {
    let mut upstreams = String::new();
    for name in ["fallback", "api-a", "api-b", "gold"] {
        let addr = upstream(name).await;
        upstreams.push_str(&format!("[upstreams.{name}]\nurl = \"http://{addr}\"\n"));
    }
    let secret = Value::from(secret);
    let debug_header = "[[routes.plugins]]\nplugin = \"headers\"\nconfig.response = { set = { \"x-backend\" = \"{upstream}\" } }\n";
    Weir::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"
access_log = false
{upstreams}
[[routes]]
name = "shard"
path_prefix = "/shard"
upstream = "fallback"
[[routes.plugins]]
plugin = "jwt-auth"
config = {{ keys = [{{ alg = "HS256", secret = {secret} }}] }}
[[routes.plugins]]
plugin = "claim-router"
config = {{ from = "ctx.jwt.user_id", modulo = {{ divisor = 2, upstreams = ["api-a", "api-b"] }} }}
{debug_header}
[[routes]]
name = "tenant"
path_prefix = "/tenant"
upstream = "fallback"
[[routes.plugins]]
plugin = "claim-router"
config = {{ from = "header.x-tenant", map = {{ gold = "gold", typo = "no-such-upstream" }}, default = "api-a" }}
{debug_header}
[[routes]]
name = "own"
upstream = "fallback"
[[routes.plugins]]
plugin = "claim-router"
config = {{ from = "header.x-tenant", map = {{ gold = "gold" }} }}
"#
    ))
}

/// The upstream that answered, checked three ways: the echo's own name, its `x-upstream` header, and the
/// debug header the route sets from `{upstream}` (when `debug` says it has one).
fn answered_by(reply: &Reply, debug: bool) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let name = Echo(reply.json()).upstream().to_owned();
    assert_eq!(reply.header("x-upstream"), Some(name.as_str()));
    if debug {
        assert_eq!(reply.header("x-backend"), Some(name.as_str()));
    }
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_users_go_to_one_backend_and_even_users_to_the_other() {
    let minted = mint();
    let weir = start(minted["keys"]["k"]["secret"].as_str().expect("secret")).await;
    for (token, expected) in [
        ("u1", "api-b"),
        ("u2", "api-a"),
        ("u7", "api-b"),
        ("u10", "api-a"),
        // 2^64 × 10 + 10 as a string claim: even, and past what a u64 holds.
        ("big", "api-a"),
        // Not a number, or no claim: the route's own upstream, as there is no `default`.
        ("text", "fallback"),
        ("none", "fallback"),
    ] {
        let bearer = format!(
            "Bearer {}",
            minted["tokens"][token].as_str().expect("token")
        );
        let reply = get_with(&weir.url("/shard/orders"), &[("authorization", &bearer)]).await;
        assert_eq!(answered_by(&reply, true), expected, "{token}");
    }
    // Routing comes after authentication: no token, no upstream.
    let refused = get(&weir.url("/shard/orders")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_picks_by_exact_value_with_a_default_or_the_routes_own() {
    let weir = start("not-used-by-these-routes").await;
    let tenant = |value| with_tenant(&weir, "/tenant/x", value);
    assert_eq!(answered_by(&tenant(Some("gold")).await, true), "gold");
    assert_eq!(
        answered_by(&tenant(Some("Gold")).await, true),
        "api-a",
        "exact values"
    );
    assert_eq!(answered_by(&tenant(Some("silver")).await, true), "api-a");
    assert_eq!(answered_by(&tenant(None).await, true), "api-a");
    // The host checks upstream names: a map entry naming none fails the requests it picks.
    let typo = tenant(Some("typo")).await;
    assert_eq!(typo.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(weir.wait_for_log("no-such-upstream"), "{}", weir.log());

    let own = |value| with_tenant(&weir, "/elsewhere", Some(value));
    assert_eq!(answered_by(&own("gold").await, false), "gold");
    assert_eq!(answered_by(&own("silver").await, false), "fallback");
}

async fn with_tenant(weir: &Weir, path: &str, tenant: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
    get_with(&weir.url(path), &headers).await
}

#[test]
fn rules_that_cannot_route_are_config_errors() {
    let route = |config: &str| {
        format!(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"a\"\n[[routes.plugins]]\nplugin = \"claim-router\"\nconfig = {{ {config} }}\n"
        )
    };
    for (config, field, message) in [
        (
            r#"from = "ctx.jwt.user_id", modulo = { divisor = 0, upstreams = [] }"#,
            "config.modulo.divisor",
            "at least 1",
        ),
        (
            r#"from = "ctx.jwt.user_id", modulo = { divisor = 3, upstreams = ["a", "a"] }"#,
            "config.modulo.upstreams",
            "2 upstreams for divisor 3",
        ),
        (
            r#"from = "jwt.user_id", map = { x = "a" }"#,
            "config.from",
            "ctx.KEY",
        ),
        (r#"from = "header.x-tenant""#, "config.map", "give `map`"),
    ] {
        let checked = check(&route(config));
        assert!(!checked.success, "{config}");
        assert!(
            checked.stderr.contains(&format!("field \"{field}\""))
                && checked.stderr.contains(message),
            "{config}: {}",
            checked.stderr
        );
    }
}
