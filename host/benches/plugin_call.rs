//! The cost of one plugin call through the host, without the network: the fixture's empty hook and a hook
//! that reads and writes headers, a fresh instance per request, each with wasmtime's concurrency support
//! off (Weir's default) and on; then each built-in's `on_request` on a browser-like request. Plugins are
//! built by `make plugins`; the RS256 token and key are made by PyJWT (tests/jwt/mint.py), basic-auth's hash
//! by argon2-cffi.

#[path = "../../tests/jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use weir::config::Isolation;
use weir::plugin::PluginSlot;
use weir::upstream::Upstreams;

/// Context keys and values, as earlier plugins of a chain would have left them.
type ContextValues = [(&'static str, &'static str)];

/// No earlier plugin wrote the context.
const NO_CONTEXT: &ContextValues = &[];

/// What jwt-auth with `on_failure = "record"` leaves for spa-router after a valid token.
const VALID_TOKEN: &ContextValues = &[("jwt.verdict", "valid")];

/// `bench-password` hashed by Python's argon2-cffi with OWASP's minimum (19 MiB, 2 passes): the first check
/// costs milliseconds, and the host remembers the match for the rows' whole run.
const ARGON2ID: &str = "$argon2id$v=19$m=19456,t=2,p=1$jL8bpbiR9Pa2K8pe9yE96w$NR7WQvNurH8KCYbmYge+n8TAOAQF+rWEmfLk95hmGPg";

/// The headers of a browser's API call, `authorization` last.
fn browser_headers(authorization: &str) -> Vec<(&'static str, String)> {
    [
        ("host", "shop.example"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        ),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "session=abc"),
        ("x-request-id", "8d2f1c"),
        ("referer", "https://shop.example/"),
        ("connection", "keep-alive"),
        ("authorization", authorization),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// `headers` and one more.
fn with_header(
    headers: &[(&'static str, String)],
    (name, value): (&'static str, &str),
) -> Vec<(&'static str, String)> {
    let mut headers = headers.to_vec();
    headers.push((name, value.to_owned()));
    headers
}

/// Runs `slot`'s `on_request` once per iteration, on a fresh copy of the request: `headers`, and `context`
/// as earlier plugins of a chain would have left it. The instance is leased once, or per iteration when the
/// slot's isolation is `request` (so the iteration includes making it).
fn bench_on_request(
    c: &mut Criterion,
    rt: &Runtime,
    upstreams: &Arc<Upstreams>,
    name: &str,
    (slot, isolation): (&Arc<PluginSlot>, Isolation),
    (headers, context): (&[(&str, String)], &ContextValues),
) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut pooled = match isolation {
        Isolation::Pooled => Some(rt.block_on(slot.lease()).expect("instance")),
        Isolation::Request => None,
    };
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                let mut ex = support::exchange(upstreams, &headers);
                for (key, value) in context {
                    ex.context
                        .set((*key).to_owned(), (*value).to_owned())
                        .expect("within the context's bounds");
                }
                ex
            },
            |ex| {
                let mut fresh = None;
                let lease = match &mut pooled {
                    Some(lease) => lease,
                    None => fresh.insert(rt.block_on(slot.lease()).expect("instance")),
                };
                let (ex, result) = rt.block_on(lease.instance.on_request(ex));
                black_box(result.expect("hook runs"));
                ex
            },
            BatchSize::SmallInput,
        )
    });
}

/// HS256 and RS256 tokens and their keys, made by PyJWT.
fn minted() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = json!({ "sub": "bench", "user_id": 7, "exp": now + 3600 });
    let request = json!({
        "keys": { "hmac": "hmac", "rsa": "rsa" },
        "tokens": {
            "hs": { "key": "hmac", "alg": "HS256", "claims": claims },
            "rs": { "key": "rsa", "alg": "RS256", "claims": claims },
        },
    });
    jwt_mint::run(&request)
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let upstreams = support::upstreams();
    let plain = browser_headers("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig");

    for concurrency_support in [false, true] {
        let sandbox = support::sandbox(concurrency_support);
        let suffix = format!("concurrency_support={concurrency_support}");
        for (name, config) in [
            ("empty hook", r#"{"mode":"noop"}"#),
            ("header read+write", r#"{"mode":"tag","name":"x"}"#),
        ] {
            let slot = support::slot(&rt, &sandbox, "fixture", config, Isolation::Pooled);
            let label = format!("on_request: {name}, {suffix}");
            bench_on_request(
                c,
                &rt,
                &upstreams,
                &label,
                (&slot, Isolation::Pooled),
                (&plain, NO_CONTEXT),
            );
        }
        let fresh = support::slot(
            &rt,
            &sandbox,
            "fixture",
            r#"{"mode":"noop"}"#,
            Isolation::Request,
        );
        let label = format!("fresh instance + init + empty hook, {suffix}");
        bench_on_request(
            c,
            &rt,
            &upstreams,
            &label,
            (&fresh, Isolation::Request),
            (&plain, NO_CONTEXT),
        );
    }

    let sandbox = support::sandbox(false);
    let minted = minted();
    let bearer = |name: &str| format!("Bearer {}", minted["tokens"][name].as_str().expect("token"));
    let secret = minted["keys"]["hmac"]["secret"].as_str().expect("secret");
    let pem = minted["keys"]["rsa"]["public_pem"].as_str().expect("pem");
    let builtins = [
        (
            "headers: set one request header",
            "headers",
            json!({ "request": { "set": { "x-api-key": "secret" } } }),
            plain.clone(),
            NO_CONTEXT,
        ),
        (
            "path-rewrite: strip_prefix",
            "path_rewrite",
            json!({ "strip_prefix": "/api" }),
            plain.clone(),
            NO_CONTEXT,
        ),
        (
            "token-auth",
            "token_auth",
            json!({ "tokens": { "bench": "bench-token" } }),
            browser_headers("Token bench-token"),
            NO_CONTEXT,
        ),
        (
            "claim-router: user id modulo 2 from a header",
            "claim_router",
            json!({
                "from": "header.x-user-id",
                "modulo": { "divisor": 2, "upstreams": ["a", "a"] },
            }),
            with_header(&plain, ("x-user-id", "1234567")),
            NO_CONTEXT,
        ),
        (
            "jwt-auth HS256, verified-token cache off",
            "jwt_auth",
            json!({ "keys": [{ "alg": "HS256", "secret": secret }], "cache_size": 0 }),
            browser_headers(&bearer("hs")),
            NO_CONTEXT,
        ),
        (
            "jwt-auth RS256, verified-token cache off",
            "jwt_auth",
            json!({ "keys": [{ "alg": "RS256", "pem": pem }], "cache_size": 0 }),
            browser_headers(&bearer("rs")),
            NO_CONTEXT,
        ),
        (
            "jwt-auth RS256, the same token again (cache hit)",
            "jwt_auth",
            json!({ "keys": [{ "alg": "RS256", "pem": pem }] }),
            browser_headers(&bearer("rs")),
            NO_CONTEXT,
        ),
        (
            "spa-router: a protected API with a valid token (rewrite mode)",
            "spa_router",
            json!({
                "whitelist": ["/login_api"],
                "protected": ["/setattr_api", "/api/.*"],
                "assets": ["/static/.*", "/favicon\\.ico"],
                "mode": "rewrite",
            }),
            plain.clone(),
            VALID_TOKEN,
        ),
        (
            "basic-auth: argon2id, a password checked before (remembered)",
            "basic_auth",
            json!({ "users": { "bench": { "hash": ARGON2ID, "roles": ["ROLE_USER"] } } }),
            browser_headers(&format!(
                "Basic {}",
                STANDARD.encode("bench:bench-password")
            )),
            NO_CONTEXT,
        ),
    ];
    for (name, plugin, config, headers, context) in builtins {
        for isolation in [Isolation::Pooled, Isolation::Request] {
            let slot = support::slot(&rt, &sandbox, plugin, &config.to_string(), isolation);
            let label = match isolation {
                Isolation::Pooled => format!("built-in on_request: {name}"),
                Isolation::Request => {
                    format!("built-in fresh instance + init + on_request: {name}")
                }
            };
            bench_on_request(
                c,
                &rt,
                &upstreams,
                &label,
                (&slot, isolation),
                (&headers, context),
            );
        }
    }

    // Pooled only: a fresh instance would sign on every call, which the cache exists to avoid.
    let private_pem = minted["keys"]["rsa"]["private_pem"]
        .as_str()
        .expect("private pem");
    let config = json!({ "key": { "pem": private_pem } });
    let slot = support::slot(
        &rt,
        &sandbox,
        "upstream_jwt",
        &config.to_string(),
        Isolation::Pooled,
    );
    bench_on_request(
        c,
        &rt,
        &upstreams,
        "built-in on_request: upstream-jwt RS512, the identity's token minted before (cache hit)",
        (&slot, Isolation::Pooled),
        (&plain, NO_CONTEXT),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
