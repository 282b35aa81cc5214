//! The `jwt-auth` built-in end to end: keys and tokens made by PyJWT and `cryptography` (tests/jwt/mint.py),
//! the real `weir` binary with the plugin built by `make plugins`, the echo upstream reporting what it
//! received. The `headers` built-in after `jwt-auth` copies `jwt.sub` from the context into `x-sub`.

#[path = "jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use serde_json::{Value, json};
use support::*;

const ISSUER: &str = "https://auth.example.com";

/// What mint.py made: keys by name, tokens by name.
struct Minted(Value);

impl Minted {
    fn token(&self, name: &str) -> String {
        self.0["tokens"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no token {name}"))
            .to_owned()
    }

    fn key(&self, name: &str) -> &Value {
        &self.0["keys"][name]
    }

    /// A string member of a key, quoted for TOML.
    fn key_str(&self, name: &str, member: &str) -> String {
        toml(&self.key(name)[member])
    }
}

fn mint(request: Value) -> Minted {
    Minted(jwt_mint::run(&request))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims that pass the policy of `base_config`, with `extra` merged over them (`null` removes one).
fn claims(extra: Value) -> Value {
    let mut claims =
        json!({ "sub": "alice", "iss": ISSUER, "aud": "api", "iat": now(), "exp": now() + 600 });
    for (name, value) in extra.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// JSON as TOML: a JSON string is a valid TOML basic string; objects become inline tables.
fn toml(value: &Value) -> String {
    match value {
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), toml(v)))
                .collect();
            format!("{{ {} }}", members.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `jwt-auth` with `config` (inline-table members), then `headers` setting `x-sub` from the context after
/// removing any the client sent.
fn chain(config: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = {{ {config} }}\n{}",
        context_to_header("x-sub", "jwt.sub")
    )
}

/// The policy every test route shares, plus `keys`.
fn base_config(keys: &str) -> String {
    format!(r#"issuer = "{ISSUER}", audiences = ["api", "web"], {keys}"#)
}

async fn start(config: &str) -> Weir {
    Weir::start(&one_route(upstream("a").await, &chain(config)))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET /` with `token` as the bearer.
async fn call(weir: &Weir, token: &str) -> Reply {
    get_with(&weir.url("/"), &[("authorization", &bearer(token))]).await
}

/// Asserts the request reached the upstream as `sub` and the token did not.
fn assert_passed(reply: &Reply, sub: &str, token: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.header("x-sub"), [sub]);
    assert!(echo.header("authorization").is_empty());
    assert!(
        !reply.text().contains(token),
        "the token reached the upstream"
    );
}

/// Asserts a 401 for `reason`: the RFC 6750 challenge, the JSON body, no upstream call.
fn assert_refused(reply: &Reply, reason: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{reason}: {}",
        reply.text()
    );
    assert_eq!(
        reply.header("x-upstream"),
        None,
        "{reason}: the upstream was called"
    );
    let body = reply.json();
    assert_eq!(body["reason"], reason, "{}", reply.text());
    assert_eq!(body["error"], "invalid_token");
    let challenge = reply.header("www-authenticate").expect("a challenge");
    let message = body["message"].as_str().expect("message");
    assert_eq!(
        challenge,
        format!(r#"Bearer error="invalid_token", error_description="{message}""#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_pyjwt_verify_with_every_algorithm_and_key_form() {
    let mut tokens = serde_json::Map::new();
    let signed = [
        ("HS256", "hmac", "hs256"),
        ("HS384", "hmac", "hs384"),
        ("HS512", "hmac", "hs512"),
        ("RS256", "rsa", "rs256-pem"),
        ("PS512", "rsa", "ps512-pkcs1"),
        ("ES256", "ec256", "es256"),
        ("ES384", "ec384", "es384"),
        ("EdDSA", "ed25519", "eddsa"),
        ("RS256", "rsa", "rsa-jwks"),
        ("RS384", "rsa", "rsa-jwks"),
        ("RS512", "rsa", "rsa-jwks"),
        ("PS256", "rsa", "rsa-jwks"),
        ("PS384", "rsa", "rsa-jwks"),
        ("PS512", "rsa", "rsa-jwks"),
    ];
    for (alg, key, kid) in signed {
        tokens.insert(
            format!("{alg}/{kid}"),
            json!({ "key": key, "alg": alg, "headers": { "kid": kid }, "claims": claims(json!({ "sub": format!("{alg}-{kid}") })) }),
        );
    }
    let minted = mint(json!({
        "keys": { "hmac": "hmac", "rsa": "rsa", "ec256": "ec256", "ec384": "ec384", "ed25519": "ed25519" },
        "tokens": tokens,
    }));
    let secret = minted.key("hmac")["secret"].as_str().unwrap().to_owned();
    let mut oct = minted.key("hmac")["jwk"].clone();
    oct["alg"] = "HS512".into();
    let mut rsa_jwk = minted.key("rsa")["jwk"].clone();
    rsa_jwk["kid"] = "rsa-jwks".into();
    let keys = format!(
        "keys = [{}], jwks = {}",
        [
            format!(
                r#"{{ kid = "hs256", alg = "HS256", secret = {} }}"#,
                Value::from(secret.as_str())
            ),
            format!(
                r#"{{ kid = "hs384", alg = "HS384", secret_base64 = "{}" }}"#,
                STANDARD.encode(&secret)
            ),
            format!(
                r#"{{ kid = "hs512", alg = "HS512", jwk = {} }}"#,
                toml(&oct)
            ),
            format!(
                r#"{{ kid = "rs256-pem", alg = "RS256", pem = {} }}"#,
                minted.key_str("rsa", "public_pem")
            ),
            format!(
                r#"{{ kid = "ps512-pkcs1", alg = "PS512", pem = {} }}"#,
                minted.key_str("rsa", "public_pkcs1_pem")
            ),
            format!(
                r#"{{ kid = "es256", alg = "ES256", pem = {} }}"#,
                minted.key_str("ec256", "public_pem")
            ),
            format!(
                r#"{{ kid = "es384", alg = "ES384", jwk = {} }}"#,
                toml(&minted.key("ec384")["jwk"])
            ),
            // A private key verifies too (the same PEM can later sign).
            format!(
                r#"{{ kid = "eddsa", alg = "EdDSA", pem = {} }}"#,
                minted.key_str("ed25519", "private_pem")
            ),
        ]
        .join(", "),
        // An RSA JWK without `alg`: its type allows RS* and PS*, never HS*.
        toml(&json!({ "keys": [rsa_jwk] })),
    );
    let weir = start(&base_config(&keys)).await;
    for (alg, _, kid) in signed {
        let token = minted.token(&format!("{alg}/{kid}"));
        let reply = get_with(&weir.url("/orders"), &[("authorization", &bearer(&token))]).await;
        assert_passed(&reply, &format!("{alg}-{kid}"), &token);
    }
}

/// Replaces one segment of a compact token.
fn with_segment(token: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = segment;
    parts.join(".")
}

/// The token with one bit of its signature flipped.
fn flip_signature_bit(token: &str) -> String {
    let signature = token.rsplit('.').next().unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    bytes[10] ^= 0x01;
    with_segment(token, 2, &URL_SAFE_NO_PAD.encode(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let rs = |extra: Value| json!({ "key": "rsa", "alg": "RS256", "headers": { "kid": "rsa" }, "claims": claims(extra) });
    let minted = mint(json!({
        "keys": { "rsa": "rsa", "other": "rsa", "hmac": "hmac" },
        "tokens": {
            "good": rs(json!({})),
            "none": { "key": "rsa", "alg": "none", "headers": { "kid": "rsa" }, "claims": claims(json!({})) },
            "confusion": { "key": "rsa", "alg": "HS256", "headers": { "kid": "rsa" }, "claims": claims(json!({})), "forge_hmac_with_public_pem": true },
            "other_key": { "key": "other", "alg": "RS256", "headers": { "kid": "rsa" }, "claims": claims(json!({})) },
            "expired": rs(json!({ "exp": now() - 120, "iat": now() - 720 })),
            "not_yet": rs(json!({ "nbf": now() + 300 })),
            "wrong_iss": rs(json!({ "iss": "https://evil.example.com" })),
            "wrong_aud": rs(json!({ "aud": ["billing"] })),
            "no_exp": rs(json!({ "exp": null })),
            "not_object": { "key": "rsa", "alg": "RS256", "headers": { "kid": "rsa" }, "raw_payload": "[1, 2]" },
            "huge": rs(json!({ "padding": "x".repeat(9000) })),
            "unknown_kid": { "key": "other", "alg": "RS256", "headers": { "kid": "gone" }, "claims": claims(json!({})) },
            "hs_to_rsa_kid": { "key": "hmac", "alg": "HS256", "headers": { "kid": "rsa" }, "claims": claims(json!({})) },
        },
    }));
    let keys = format!(
        r#"keys = [{{ kid = "rsa", alg = "RS256", pem = {} }}]"#,
        minted.key_str("rsa", "public_pem")
    );
    let weir = start(&base_config(&keys)).await;
    let good = minted.token("good");
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", minted.token("none"), "unsupported_algorithm"),
        (
            "HS256 keyed with the RSA public key",
            minted.token("confusion"),
            "algorithm_not_allowed",
        ),
        (
            "HS256 with the RSA key's kid",
            minted.token("hs_to_rsa_kid"),
            "algorithm_not_allowed",
        ),
        (
            "signed by another key",
            minted.token("other_key"),
            "bad_signature",
        ),
        (
            "one bit of the signature flipped",
            flip_signature_bit(&good),
            "bad_signature",
        ),
        ("expired", minted.token("expired"), "expired"),
        ("not yet valid", minted.token("not_yet"), "not_yet_valid"),
        ("wrong iss", minted.token("wrong_iss"), "wrong_issuer"),
        ("wrong aud", minted.token("wrong_aud"), "wrong_audience"),
        (
            "no exp while required",
            minted.token("no_exp"),
            "missing_exp",
        ),
        (
            "payload not base64url",
            with_segment(&good, 1, "eyJzdWIi@@"),
            "malformed",
        ),
        (
            "header not JSON",
            with_segment(&good, 0, "bm90IGpzb24"),
            "malformed",
        ),
        (
            "two segments",
            good.rsplit_once('.').unwrap().0.to_owned(),
            "malformed",
        ),
        ("four segments", format!("{good}.x"), "malformed"),
        (
            "a JSON array as payload",
            minted.token("not_object"),
            "malformed",
        ),
        ("over 8 KiB", minted.token("huge"), "too_large"),
        (
            "kid not in the key set",
            minted.token("unknown_kid"),
            "unknown_kid",
        ),
    ];
    for (case, token, reason) in &cases {
        let reply = get_with(&weir.url("/orders"), &[("authorization", &bearer(token))]).await;
        assert_refused(&reply, reason);
        assert!(
            !reply.text().contains("alice"),
            "{case}: the answer leaks claims"
        );
    }
    // The same proxy lets the good token through: the refusals above are the tokens', not the setup's.
    assert_passed(
        &get_with(&weir.url("/orders"), &[("authorization", &bearer(&good))]).await,
        "alice",
        &good,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_in_the_future_passes_only_within_the_clock_skew() {
    let issued = |iat: Value| json!({ "key": "hmac", "alg": "HS256", "claims": claims(json!({ "iat": iat, "exp": now() + 7200 })) });
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "tokens": {
            "hour_ahead": issued(json!(now() + 3600)),
            "within_skew": issued(json!(now() + 30)),
            "not_a_number": issued(json!("tomorrow")),
        },
    }));
    let keys = format!(
        r#"keys = [{{ alg = "HS256", secret = {} }}]"#,
        minted.key_str("hmac", "secret")
    );
    let weir = start(&base_config(&keys)).await;
    let hour_ahead = minted.token("hour_ahead");
    let reply = call(&weir, &hour_ahead).await;
    assert_refused(&reply, "issued_in_future");
    assert_eq!(reply.json()["message"], "Jwt iat is in the future");
    assert_refused(
        &call(&weir, &minted.token("not_a_number")).await,
        "malformed",
    );
    let within_skew = minted.token("within_skew");
    // The second request is a verified-token cache hit, which checks the time claims again.
    for _ in 0..2 {
        assert_passed(&call(&weir, &within_skew).await, "alice", &within_skew);
    }

    // The skew shown wide rather than zero: on a loaded machine `within_skew` may have come of age by now.
    let lenient = start(&base_config(&format!("{keys}, clock_skew_seconds = 7200"))).await;
    assert_passed(&call(&lenient, &hour_ahead).await, "alice", &hour_ahead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tokens_get_a_bare_challenge_and_details_can_be_hidden() {
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "tokens": { "expired": { "key": "hmac", "alg": "HS256", "claims": claims(json!({ "exp": now() - 3600, "iat": now() - 7200 })) } },
    }));
    let secret = minted.key_str("hmac", "secret");
    let keys = format!(r#"keys = [{{ alg = "HS256", secret = {secret} }}]"#);
    let open = start(&base_config(&keys)).await;
    for headers in [vec![], vec![("authorization", "Basic dXNlcjpwdw==")]] {
        let reply = get_with(&open.url("/"), &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            reply.json(),
            json!({ "error": "missing_token", "reason": "missing", "message": "Jwt is missing" })
        );
    }

    let hidden = start(&base_config(&format!("{keys}, hide_details = true"))).await;
    let reply = get_with(
        &hidden.url("/"),
        &[("authorization", &bearer(&minted.token("expired")))],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(reply.json(), json!({ "error": "invalid_token" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_by_kid_without_downtime() {
    let minted = mint(json!({
        "keys": { "old": "hmac", "new": "ec256" },
        "tokens": {
            "old": { "key": "old", "alg": "HS256", "headers": { "kid": "2026-10" }, "claims": claims(json!({ "sub": "old" })) },
            "new": { "key": "new", "alg": "ES256", "headers": { "kid": "2026-11" }, "claims": claims(json!({ "sub": "new" })) },
        },
    }));
    let old = format!(
        r#"{{ kid = "2026-10", alg = "HS256", secret = {} }}"#,
        minted.key_str("old", "secret")
    );
    let new = format!(
        r#"{{ kid = "2026-11", alg = "ES256", pem = {} }}"#,
        minted.key_str("new", "public_pem")
    );
    let upstream = upstream("a").await;
    let (old_token, new_token) = (minted.token("old"), minted.token("new"));

    let rollover = Weir::start(&one_route(
        upstream,
        &chain(&base_config(&format!("keys = [{old}, {new}]"))),
    ));
    assert_passed(&call(&rollover, &old_token).await, "old", &old_token);
    assert_passed(&call(&rollover, &new_token).await, "new", &new_token);
    drop(rollover);

    let after = Weir::start(&one_route(
        upstream,
        &chain(&base_config(&format!("keys = [{new}]"))),
    ));
    assert_refused(&call(&after, &old_token).await, "unknown_kid");
    assert_passed(&call(&after, &new_token).await, "new", &new_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_secret_verifies_its_tokens_until_they_expire() {
    // As a signer that rotates its HS256 secret on an interval: the newest key first, the previous one
    // kept for the tokens it signed. The short-lived token is minted last, so that the proxy's start
    // eats little of its life.
    let short_exp = now() + 6;
    let minted = mint(json!({
        "keys": { "new": "hmac", "old": "hmac", "stranger": "hmac" },
        "tokens": {
            "new": { "key": "new", "alg": "HS256", "headers": { "kid": "new" }, "claims": claims(json!({ "sub": "by-new" })) },
            "unknown_kid": { "key": "stranger", "alg": "HS256", "headers": { "kid": "older" }, "claims": claims(json!({})) },
            "old_as_new": { "key": "old", "alg": "HS256", "headers": { "kid": "new" }, "claims": claims(json!({})) },
            "old": { "key": "old", "alg": "HS256", "headers": { "kid": "old" }, "claims": claims(json!({ "sub": "by-old", "exp": short_exp })) },
        },
    }));
    let keys = format!(
        r#"keys = [{{ kid = "new", alg = "HS256", secret = {} }}, {{ kid = "old", alg = "HS256", secret = {} }}], clock_skew_seconds = 0"#,
        minted.key_str("new", "secret"),
        minted.key_str("old", "secret")
    );
    let weir = start(&base_config(&keys)).await;
    let (old, new) = (minted.token("old"), minted.token("new"));
    assert!(
        now() < short_exp,
        "the proxy took the token's whole life to start"
    );
    assert_passed(&call(&weir, &old).await, "by-old", &old);
    assert_passed(&call(&weir, &new).await, "by-new", &new);
    assert_refused(
        &call(&weir, &minted.token("unknown_kid")).await,
        "unknown_kid",
    );
    assert_refused(
        &call(&weir, &minted.token("old_as_new")).await,
        "bad_signature",
    );

    let wait = (short_exp + 1).saturating_sub(now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    // Remembered as verified a moment ago, and refused all the same: a cache hit checks the time again.
    assert_refused(&call(&weir, &old).await, "expired");
    assert_passed(&call(&weir, &new).await, "by-new", &new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_mode_leaves_the_verdict_to_a_later_plugin() {
    let minted = mint(json!({
        "keys": { "hmac": "hmac", "other": "hmac" },
        "tokens": {
            "good": { "key": "hmac", "alg": "HS256", "claims": claims(json!({})) },
            "expired": { "key": "hmac", "alg": "HS256", "claims": claims(json!({ "exp": now() - 3600, "iat": now() - 7200 })) },
            "forged": { "key": "other", "alg": "HS256", "claims": claims(json!({})) },
        },
    }));
    let keys = format!(
        r#"keys = [{{ alg = "HS256", secret = {} }}], claim_to_headers = [{{ header = "x-user", claim = "sub" }}]"#,
        minted.key_str("hmac", "secret")
    );
    // What jwt-auth left in the context, as headers the echo upstream shows; any the client sent removed.
    let start_with = |config: String| async move {
        let chain = format!(
            "[[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = {{ {config} }}\n{}{}{}",
            context_to_header("x-verdict", "jwt.verdict"),
            context_to_header("x-reason", "jwt.reason"),
            context_to_header("x-sub", "jwt.sub"),
        );
        Weir::start(&one_route(upstream("a").await, &chain))
    };
    let seen = |reply: &Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let echo = Echo(reply.json());
        assert!(
            echo.header("authorization").is_empty(),
            "the token reached the upstream"
        );
        let one = |name: &str| echo.header(name).first().cloned();
        (
            one("x-verdict"),
            one("x-reason"),
            one("x-sub"),
            one("x-user"),
        )
    };
    let spoofed = [
        ("x-verdict", "valid"),
        ("x-user", "mallory"),
        ("x-sub", "mallory"),
    ];
    let with = |token: Option<String>| {
        let mut headers: Vec<(&str, String)> =
            spoofed.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(token) = token {
            headers.push(("authorization", bearer(&token)));
        }
        headers
    };
    let get = |weir: &Weir, token: Option<String>| {
        let url = weir.url("/orders");
        let headers = with(token);
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get_with(&url, &headers).await
        }
    };
    let some = |s: &str| Some(s.to_owned());

    let recording = start_with(base_config(&format!(r#"{keys}, on_failure = "record""#))).await;
    assert_eq!(
        seen(&get(&recording, Some(minted.token("good"))).await),
        (some("valid"), None, some("alice"), some("alice"))
    );
    assert_eq!(
        seen(&get(&recording, None).await),
        (some("missing"), some("missing"), None, None)
    );
    assert_eq!(
        seen(&get(&recording, Some(minted.token("expired"))).await),
        (some("bad"), some("expired"), None, None),
        "a bad token's claims reach neither the context nor the headers"
    );
    assert_eq!(
        seen(&get(&recording, Some(minted.token("forged"))).await),
        (some("bad"), some("bad_signature"), None, None)
    );

    let hiding = start_with(base_config(&format!(
        r#"{keys}, on_failure = "record", hide_details = true"#
    )))
    .await;
    assert_eq!(
        seen(&get(&hiding, Some(minted.token("expired"))).await),
        (some("bad"), None, None, None),
        "hidden details are not recorded either"
    );

    // The default still refuses, and still records a valid token's verdict.
    let refusing = start_with(base_config(&keys)).await;
    assert_refused(
        &get_with(
            &refusing.url("/orders"),
            &[("authorization", &bearer(&minted.token("expired")))],
        )
        .await,
        "expired",
    );
    assert_eq!(
        get_with(&refusing.url("/orders"), &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        seen(&get(&refusing, Some(minted.token("good"))).await).0,
        some("valid")
    );
    let anonymous = start_with(base_config(&format!("{keys}, allow_missing = true"))).await;
    assert_eq!(
        seen(&get(&anonymous, None).await),
        (some("missing"), some("missing"), None, None)
    );
}

/// A JWKS server on loopback: serves whatever `jwks` holds and counts the fetches.
struct JwksServer {
    addr: SocketAddr,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(jwks: Value) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let jwks = Arc::new(Mutex::new(jwks));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (jwks.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let body = served.lock().unwrap().to_string();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            jwks,
            fetches,
        }
    }

    fn publish(&self, jwks: Value) {
        *self.jwks.lock().unwrap() = jwks;
    }
}

fn remote_config(url: &str, grant: Option<SocketAddr>) -> String {
    let grants = grant.map_or(String::new(), |addr| {
        format!("\ngrants.http = [\"{addr}\"]")
    });
    format!(
        r#"[[routes.plugins]]
plugin = "jwt-auth"
config = {{ issuer = "{ISSUER}", audiences = ["api"], remote_jwks = {{ url = "{url}", cache_duration_seconds = 1 }} }}{grants}
{}"#,
        context_to_header("x-sub", "jwt.sub")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_jwks_is_fetched_cached_and_rotated() {
    let minted = mint(json!({
        "keys": { "a": "rsa", "b": "ed25519" },
        "tokens": {
            "a": { "key": "a", "alg": "RS256", "headers": { "kid": "a" }, "claims": claims(json!({ "sub": "by-a" })) },
            "b": { "key": "b", "alg": "EdDSA", "headers": { "kid": "b" }, "claims": claims(json!({ "sub": "by-b" })) },
        },
    }));
    let jwk = |name: &str| {
        let mut jwk = minted.key(name)["jwk"].clone();
        jwk["kid"] = name.into();
        jwk
    };
    let server = JwksServer::start(json!({ "keys": [jwk("a")] })).await;
    let url = format!("http://{}/.well-known/jwks.json", server.addr);
    let weir = Weir::start(&one_route(
        upstream("a").await,
        &remote_config(&url, Some(server.addr)),
    ));
    let call = |token: String| {
        let url = weir.url("/");
        async move { get_with(&url, &[("authorization", &bearer(&token))]).await }
    };
    let (a, b) = (minted.token("a"), minted.token("b"));

    assert_passed(&call(a.clone()).await, "by-a", &a);
    assert_passed(&call(a.clone()).await, "by-a", &a);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "the second request used the cached keys"
    );
    assert_refused(&call(b.clone()).await, "unknown_kid");

    // Rollover: both published; once the cache expires, both pass.
    server.publish(json!({ "keys": [jwk("a"), jwk("b")] }));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_passed(&call(b.clone()).await, "by-b", &b);
    assert_passed(&call(a.clone()).await, "by-a", &a);

    // The old key withdrawn: refused once the cache expires.
    server.publish(json!({ "keys": [jwk("b")] }));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_refused(&call(a.clone()).await, "unknown_kid");
    assert_passed(&call(b.clone()).await, "by-b", &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_ungranted_jwks_fails_closed() {
    let minted = mint(json!({
        "keys": { "a": "ec256" },
        "tokens": { "a": { "key": "a", "alg": "ES256", "claims": claims(json!({})) } },
    }));
    let token = minted.token("a");
    let server = JwksServer::start(json!({ "keys": [minted.key("a")["jwk"]] })).await;
    let down = closed_port();
    for (url, grant, logged) in [
        (
            format!("http://{}/jwks", server.addr),
            None,
            "is not granted to this plugin",
        ),
        (format!("http://{down}/jwks"), Some(down), "no keys cached"),
    ] {
        let weir = Weir::start(&one_route(upstream("a").await, &remote_config(&url, grant)));
        let reply = get_with(&weir.url("/"), &[("authorization", &bearer(&token))]).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert_eq!(reply.json()["reason"], "keys_unavailable");
        assert_eq!(reply.header("x-upstream"), None);
        // The plugin's own record of the failed fetch, naming the URL and why.
        let fetch = format!("fetching the JWKS {url} failed");
        assert!(
            weir.wait_for_record(&[&fetch, logged]),
            "log lacks {fetch:?} with {logged:?}:\n{}",
            weir.log()
        );
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        0,
        "an ungranted host was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_headers_params_or_cookies_and_are_stripped_or_forwarded() {
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "tokens": { "t": { "key": "hmac", "alg": "HS256", "claims": claims(json!({})) } },
    }));
    let token = minted.token("t");
    let keys = format!(
        r#"keys = [{{ alg = "HS256", secret = {} }}]"#,
        minted.key_str("hmac", "secret")
    );
    let sources = r#"from_headers = [{ name = "x-jwt", prefix = "JWT " }], from_params = ["access_token"], from_cookies = ["session"]"#;
    let weir = start(&base_config(&format!("{keys}, {sources}"))).await;

    let by_header = get_with(&weir.url("/a"), &[("x-jwt", &format!("jwt {token}"))]).await;
    assert_passed(&by_header, "alice", &token);
    assert!(Echo(by_header.json()).header("x-jwt").is_empty());

    let by_param = get(&weir.url(&format!("/a?x=1&access_token={token}&y=2"))).await;
    assert_passed(&by_param, "alice", &token);
    assert_eq!(by_param.json()["query"], "x=1&y=2");

    let by_cookie = get_with(
        &weir.url("/a"),
        &[("cookie", &format!("theme=dark; session={token}; lang=en"))],
    )
    .await;
    assert_passed(&by_cookie, "alice", &token);
    assert_eq!(
        Echo(by_cookie.json()).header("cookie"),
        ["theme=dark; lang=en"]
    );

    // Bearer is not among this route's sources.
    let reply = get_with(&weir.url("/a"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let forwarding = start(&base_config(&format!("{keys}, forward = true"))).await;
    let reply = get_with(&forwarding.url("/a"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(Echo(reply.json()).header("authorization"), [bearer(&token)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_reach_the_context_and_the_headers_the_config_names() {
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "tokens": { "t": { "key": "hmac", "alg": "HS256", "claims": claims(json!({
            "realm": { "roles": ["admin", "ops"], "tier": 2 },
            "email": "alice@example.com",
        })) } },
    }));
    let token = minted.token("t");
    let keys = format!(
        r#"keys = [{{ alg = "HS256", secret = {} }}]"#,
        minted.key_str("hmac", "secret")
    );
    let mappings = r#"claim_to_headers = [{ header = "x-email", claim = "email" }, { header = "x-roles", claim = "realm.roles" }, { header = "x-team", claim = "team" }], exclude_paths = ["/public/.*"], allow_missing = false"#;
    let config = format!(
        r#"[[routes.plugins]]
plugin = "jwt-auth"
config = {{ {} }}
[[routes.plugins]]
plugin = "headers"
config.request = {{ set = {{ "x-tier" = "{{ctx.jwt.realm.tier}}", "x-realm" = "{{ctx.jwt.realm}}" }} }}
"#,
        base_config(&format!("{keys}, {mappings}"))
    );
    let weir = Weir::start(&one_route(upstream("a").await, &config));
    let spoofed = [("x-email", "mallory@example.com"), ("x-team", "root")];

    let mut headers = vec![("authorization", bearer(&token))];
    headers.extend(spoofed.iter().map(|(k, v)| (*k, v.to_string())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = get_with(&weir.url("/orders"), &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.header("x-email"), ["alice@example.com"]);
    assert_eq!(echo.header("x-roles"), ["admin,ops"]);
    assert!(
        echo.header("x-team").is_empty(),
        "a claim the token lacks left the client's header"
    );
    assert_eq!(echo.header("x-tier"), ["2"]);
    assert_eq!(
        serde_json::from_str::<Value>(&echo.header("x-realm")[0]).unwrap(),
        json!({ "roles": ["admin", "ops"], "tier": 2 })
    );

    // An excluded path passes without a token, and without the client's claim headers.
    let reply = get_with(&weir.url("/public/logo.png"), &spoofed).await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = Echo(reply.json());
    assert!(echo.header("x-email").is_empty() && echo.header("x-team").is_empty());
    assert!(echo.header("x-tier").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusions_allow_missing_and_cors_preflights() {
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "tokens": { "expired": { "key": "hmac", "alg": "HS256", "claims": claims(json!({ "exp": now() - 3600 })) } },
    }));
    let keys = format!(
        r#"keys = [{{ alg = "HS256", secret = {} }}]"#,
        minted.key_str("hmac", "secret")
    );
    let weir = start(&base_config(&format!(
        r#"{keys}, exclude_methods = ["HEAD"], allow_missing = true"#
    )))
    .await;

    let anonymous = get(&weir.url("/orders")).await;
    assert_eq!(
        anonymous.status,
        StatusCode::OK,
        "allow_missing lets a request without a token pass"
    );
    assert!(Echo(anonymous.json()).header("x-sub").is_empty());
    let bad = get_with(
        &weir.url("/orders"),
        &[("authorization", &bearer(&minted.token("expired")))],
    )
    .await;
    assert_refused(&bad, "expired");

    let strict = start(&base_config(&keys)).await;
    let preflight = |method: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(strict.url("/orders"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(preflight("OPTIONS")).await.status, StatusCode::OK);
    assert_eq!(
        send(preflight("GET")).await.status,
        StatusCode::UNAUTHORIZED,
        "only OPTIONS is a preflight"
    );
    let head = hyper::Request::head(weir.url("/orders"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(head).await.status, StatusCode::OK, "HEAD is excluded");
}

#[test]
fn bad_key_configs_name_the_field_and_say_why() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----";
    let cases = [
        (
            String::from(r#"keys = [{ alg = "RS256", secret = "s3cret" }]"#),
            "keys.0.secret",
            "an RSA key",
        ),
        (
            format!(
                r#"keys = [{{ alg = "HS256", secret = {} }}]"#,
                Value::from(pem)
            ),
            "keys.0.secret",
            "algorithm-confusion",
        ),
        (
            format!(
                r#"keys = [{{ alg = "ES256", pem = {} }}]"#,
                Value::from(pem)
            ),
            "keys.0.pem",
            "Ed25519",
        ),
        (
            String::from(r#"keys = [{ alg = "EdDSA", pem = "garbage" }]"#),
            "keys.0.pem",
            "not a PEM key",
        ),
        (
            String::from(r#"keys = [{ alg = "none", secret = "x" }]"#),
            "keys.0.alg",
            "not a JWS algorithm",
        ),
        (
            String::from(r#"keys = [{ alg = "HS256" }]"#),
            "keys.0",
            "exactly one of",
        ),
        (String::from(r#"issuer = "x""#), "keys", "give the keys"),
        (
            String::from(r#"jwks = { keys = [{ kty = "RSA", n = "AQAB", e = "AQAB" }] }"#),
            "jwks",
            "2048",
        ),
        (
            String::from(r#"remote_jwks = { url = "https://idp/jwks" }"#),
            "remote_jwks.url",
            "http://",
        ),
        (
            String::from(r#"on_failure = "allow", keys = [{ alg = "HS256", secret = "x" }]"#),
            "on_failure",
            "`refuse` or `record`",
        ),
    ];
    for (config, field, why) in cases {
        let checked = check(&format!(
            "[upstreams.a]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nname = \"api\"\nupstream = \"a\"\n[[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = {{ {config} }}\n"
        ));
        assert!(!checked.success, "{config} was accepted");
        let expected = format!("field \"config.{field}\"");
        assert!(
            checked.stderr.contains(&expected) && checked.stderr.contains(why),
            "{config}: expected {expected} and {why:?} in:\n{}",
            checked.stderr
        );
        assert!(
            checked.stderr.contains("route \"api\""),
            "{}",
            checked.stderr
        );
    }
}
