//! The `upstream-jwt` built-in end to end: the proxy signs a JWT for its user with a key made by
//! `cryptography` (tests/jwt/mint.py), the echo upstream reports the `Authorization` it received, and PyJWT
//! verifies that token with the public key (mint.py's `verify`), as an upstream in Python would. token-auth
//! finds the user (`auth.user`) and the fixture adds roles (`auth.roles`), as basic-auth would put them.

#[path = "jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{Value, json};
use support::*;

/// An RSA key pair from `cryptography`: `private_pem` (PKCS#8) and `public_pem`.
fn proxy_key() -> Value {
    jwt_mint::run(&json!({ "keys": { "proxy": "rsa" } }))["keys"]["proxy"].clone()
}

/// Text as a TOML basic string: JSON's escapes are TOML's.
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// The routes: `/strict` refuses the anonymous; everything else goes through token-auth (which lets
/// `/public` pass without a token), the fixture's roles and upstream-jwt with the key in `/keys/proxy.pem`.
fn config(upstream: SocketAddr, keys: &std::path::Path, private_pem: &str) -> String {
    let keys = keys.display();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
access_log = false
[admin]
listen = "127.0.0.1:0"
[upstreams.analytics]
url = "http://{upstream}"

[[routes]]
name = "strict"
path_prefix = "/strict"
upstream = "analytics"
[[routes.plugins]]
plugin = "upstream-jwt"
config = {{ key = {{ pem = {pem} }}, anonymous = false }}

[[routes]]
name = "proxy"
upstream = "analytics"
[[routes.plugins]]
plugin = "token-auth"
config = {{ tokens = {{ alice = "a-secret", bob = "b-secret" }}, context_key = "auth.user", exclude_paths = ["/public(/.*)?"] }}
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "write-context", key = "auth.roles", value = "ROLE_USER, ROLE_ADMIN" }}
[[routes.plugins]]
plugin = "upstream-jwt"
config = {{ key = {{ pem_file = "/keys/proxy.pem", kid = "proxy-1" }}, issuer = "weir", audience = "analytics", ttl = "5m" }}
grants.dirs = {{ "/keys" = "{keys}" }}
"#,
        pem = quoted(private_pem),
    )
}

struct Setup {
    weir: Weir,
    public_pem: String,
    _keys: tempfile::TempDir,
}

async fn start() -> Setup {
    let key = proxy_key();
    let private_pem = key["private_pem"].as_str().expect("private pem");
    let keys = tempfile::tempdir().expect("tempdir");
    std::fs::write(keys.path().join("proxy.pem"), private_pem).expect("write the key");
    let weir = Weir::start(&config(
        upstream("analytics").await,
        keys.path(),
        private_pem,
    ));
    Setup {
        weir,
        public_pem: key["public_pem"].as_str().expect("public pem").to_owned(),
        _keys: keys,
    }
}

/// PyJWT's verdict on `token`: `{header, claims}` when it verifies (RS512, the audience and issuer given,
/// `exp`, `iat` and `sub` required), `{error}` when it does not.
fn verify(token: &str, public_pem: &str, audience: Option<&str>, issuer: Option<&str>) -> Value {
    let request = json!({ "verify": { "t": {
        "token": token, "key": public_pem, "algorithms": ["RS512"],
        "audience": audience, "issuer": issuer,
    } } });
    jwt_mint::run(&request)["verified"]["t"].clone()
}

/// The one token the upstream received, without its `Bearer `.
fn received_token(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let authorization = Echo(reply.json()).header("authorization");
    assert_eq!(authorization.len(), 1, "{authorization:?}");
    authorization[0]
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer token: {}", authorization[0]))
        .to_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn signatures(weir: &Weir) -> f64 {
    weir.metric("weir_crypto_signatures_total", &[])
        .await
        .expect("the signature counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_a_token_for_the_user_that_pyjwt_verifies() {
    let setup = start().await;
    let reply = get_with(
        &setup.weir.url("/reports/7?week=48"),
        &[("authorization", "Token a-secret")],
    )
    .await;
    let token = received_token(&reply);
    let verified = verify(&token, &setup.public_pem, Some("analytics"), Some("weir"));
    assert!(verified.get("error").is_none(), "{verified}");
    assert_eq!(
        verified["header"],
        json!({ "alg": "RS512", "typ": "JWT", "kid": "proxy-1" })
    );
    let claims = &verified["claims"];
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["authorities"], json!(["ROLE_USER", "ROLE_ADMIN"]));
    let (iat, exp) = (
        claims["iat"].as_u64().expect("iat"),
        claims["exp"].as_u64().expect("exp"),
    );
    assert_eq!(exp - iat, 300, "ttl = \"5m\"");
    assert!(iat.abs_diff(now()) <= 5, "iat {iat} is not now");

    // Signed by another key, the token is worthless: PyJWT checks the signature, not just the shape.
    let other = proxy_key();
    let refused = verify(
        &token,
        other["public_pem"].as_str().expect("pem"),
        Some("analytics"),
        Some("weir"),
    );
    assert_eq!(
        refused["error"],
        "InvalidSignatureError: Signature verification failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anonymous_get_anonymous_user_and_a_clients_own_authorization_is_replaced() {
    let setup = start().await;
    let forged = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let reply = get_with(
        &setup.weir.url("/public/dashboard"),
        &[("authorization", forged)],
    )
    .await;
    let token = received_token(&reply);
    assert!(
        !reply.text().contains("eyJzdWIiOiJhZG1pbiJ9"),
        "{}",
        reply.text()
    );
    let verified = verify(&token, &setup.public_pem, Some("analytics"), Some("weir"));
    // The fixture set roles, but roles without a user are nobody's: the anonymous roles win.
    assert_eq!(verified["claims"]["sub"], "anonymousUser", "{verified}");
    assert_eq!(verified["claims"]["authorities"], json!(["ROLE_ANONYMOUS"]));

    let refused = get(&setup.weir.url("/strict/x")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Basic realm=\"weir\"")
    );
    assert_eq!(refused.text(), "Authentication required\n");
    assert_eq!(
        refused.header("x-upstream"),
        None,
        "the upstream was called"
    );
    // No auth plugin runs on /strict: a token another route would take makes nobody known here.
    let reply = get_with(
        &setup.weir.url("/strict/x"),
        &[("authorization", "Token a-secret")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_is_signed_for_once_and_each_identity_once() {
    let setup = start().await;
    let weir = &setup.weir;
    let url = weir.url("/orders");
    assert_eq!(signatures(weir).await, 0.0, "nothing signs at start");
    let mut tokens = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let reply = get_with(&url, &[("authorization", "Token a-secret")]).await;
        tokens.insert(received_token(&reply));
    }
    assert_eq!(tokens.len(), 1, "one token reused");
    assert_eq!(signatures(weir).await, 1.0, "50 requests of one identity");

    for i in 0..20 {
        let token = if i % 2 == 0 {
            "Token a-secret"
        } else {
            "Token b-secret"
        };
        let reply = get_with(&url, &[("authorization", token)]).await;
        tokens.insert(received_token(&reply));
    }
    assert_eq!(tokens.len(), 2);
    assert_eq!(signatures(weir).await, 2.0, "a second identity, once");
    for token in &tokens {
        let verified = verify(token, &setup.public_pem, Some("analytics"), Some("weir"));
        assert!(verified.get("error").is_none(), "{verified}");
    }
}

#[test]
fn a_public_key_or_a_claim_set_twice_is_a_config_error() {
    let key = proxy_key();
    let public = quoted(key["public_pem"].as_str().expect("pem"));
    let private = quoted(key["private_pem"].as_str().expect("pem"));
    let route = |config: &str| {
        format!(
            "[upstreams.a]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"a\"\n[[routes.plugins]]\nplugin = \"upstream-jwt\"\nconfig = {{ {config} }}\n"
        )
    };
    for (config, field, message) in [
        (
            format!("key = {{ pem = {public} }}"),
            "config.key.pem",
            "not a private key",
        ),
        (
            format!("key = {{ pem = {private} }}, claims = {{ sub = \"root\" }}"),
            "config.claims.sub",
            "sets this claim itself",
        ),
        (
            format!("key = {{ pem = {private}, alg = \"ES256\" }}"),
            "config.key.pem",
            "",
        ),
        (
            format!("key = {{ pem = {private} }}, ttl = \"2d\""),
            "config.ttl",
            "is outside 1 s to 86400 s",
        ),
        (
            format!("key = {{ pem = {private} }}, ttl = \"forever\""),
            "config.ttl",
            "not a duration",
        ),
        (
            format!("key = {{ pem = {private} }}, anonymous = {{ user = \"guest\", role = [] }}"),
            "config.anonymous.role",
            "unknown field",
        ),
    ] {
        let checked = check(&route(&config));
        assert!(!checked.success, "{config}");
        assert!(
            checked.stderr.contains(&format!("field \"{field}\""))
                && checked.stderr.contains(message),
            "{config}: {}",
            checked.stderr
        );
    }
}
