//! The `jwt-login` built-in end to end: password hashes made by argon2-cffi and bcrypt, keys by
//! `cryptography`, and every token jwt-login issues read back by PyJWT (tests/jwt/mint.py); the real `weir`
//! binary with the plugins built by `make plugins`, the echo upstream reporting what it received.

#[path = "jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use support::*;

const ISSUER: &str = "https://erp.example.com";
const AUDIENCE: &str = "erp";
const ALICE_PASSWORD: &str = "correct horse battery staple";
const BOB_PASSWORD: &str = "tr0ub4dor&3";

/// Argon2id at the OWASP minimum (19 MiB, 2 passes), so that the tests stay quick.
fn argon2_params() -> Value {
    json!({ "time_cost": 2, "memory_cost": 19456, "parallelism": 1 })
}

/// What mint.py made: keys, password hashes, PyJWT's verdicts.
struct Minted(Value);

impl Minted {
    fn key(&self, name: &str, member: &str) -> String {
        self.0["keys"][name][member]
            .as_str()
            .unwrap_or_else(|| panic!("no key {name}.{member}"))
            .to_owned()
    }

    fn hash(&self, name: &str) -> String {
        self.0["password_hashes"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no hash {name}"))
            .to_owned()
    }
}

fn mint(request: Value) -> Minted {
    Minted(jwt_mint::run(&request))
}

/// Keys of `keys` (name → kind) and the two users' hashes: alice's argon2id, bob's bcrypt.
fn mint_with_users(keys: Value) -> Minted {
    mint(json!({
        "keys": keys,
        "password_hashes": {
            "alice": { "scheme": "argon2id", "password": ALICE_PASSWORD, "params": argon2_params() },
            "bob": { "scheme": "bcrypt", "password": BOB_PASSWORD, "params": { "rounds": 10 } },
        },
    }))
}

/// PyJWT's reading of `token` with `key`: `{"header", "claims"}` or `{"error"}`.
fn pyjwt_verify(token: &str, key: &str, alg: &str) -> Value {
    let out = jwt_mint::run(&json!({
        "verify": { "t": { "token": token, "key": key, "algorithms": [alg], "audience": AUDIENCE, "issuer": ISSUER } },
    }));
    out["verified"]["t"].clone()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A TOML string: a JSON string is a valid TOML basic string.
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// The `users` table: alice (argon2id) with a user id, a role and a claim of her own, bob (bcrypt).
fn users(minted: &Minted) -> String {
    format!(
        r#"users.alice = {{ password = {}, user_id = 17, role = "admin", claims = {{ shop = "north" }} }}
users.bob = {{ password = {}, user_id = "b-2", role = "clerk" }}"#,
        quoted(&minted.hash("alice")),
        quoted(&minted.hash("bob"))
    )
}

/// A `jwt-login` entry: `keys` (TOML array text), the users, the issuer and audience, then `extra` lines.
fn login_entry(keys: &str, minted: &Minted, extra: &str) -> String {
    login_entry_with("", keys, minted, extra)
}

/// As [`login_entry`], with `entry` lines for the plugin entry itself (`grants`) before its config. The
/// tests' `weir` is a debug build, where a hash check takes far longer than in a release and the checks of
/// tests running at once queue for the cores: the wall-clock bound is raised to match.
fn login_entry_with(entry: &str, keys: &str, minted: &Minted, extra: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"jwt-login\"\nwall_timeout = \"60s\"\n{entry}[routes.plugins.config]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nkeys = {keys}\n{}\n{extra}\n",
        users(minted)
    )
}

fn hs256_key(kid: &str, secret: &str) -> String {
    format!(
        r#"{{ kid = "{kid}", alg = "HS256", secret = {} }}"#,
        quoted(secret)
    )
}

/// One catch-all route to the echo upstream with jwt-login first in its chain.
async fn start(entry: &str) -> Weir {
    Weir::start(&one_route(upstream("a").await, entry))
}

async fn post(weir: &Weir, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    post_with(weir, path, content_type, body, &[]).await
}

async fn post_with(
    weir: &Weir,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::post(weir.url(path));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

async fn login(weir: &Weir, username: &str, password: &str) -> Reply {
    let body = json!({ "username": username, "password": password }).to_string();
    post(weir, "/login", Some("application/json"), &body).await
}

/// Asserts a local refusal: the status, the JSON reason, no upstream call.
fn assert_refused(reply: &Reply, status: u16, reason: &str) {
    assert_eq!(reply.status.as_u16(), status, "{reason}: {}", reply.text());
    assert_eq!(
        reply.header("x-upstream"),
        None,
        "{reason}: the upstream was called"
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["reason"], reason, "{}", reply.text());
    assert!(body["message"].is_string());
}

/// The token of a 200 login answer, after checking the answer's shape and headers.
fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-upstream"), None, "the upstream was called");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json()["token"]
        .as_str()
        .expect("a token in the answer")
        .to_owned()
}

/// PyJWT's claims and header of a token it accepts.
fn verified(token: &str, key: &str, alg: &str) -> (Value, Value) {
    let verdict = pyjwt_verify(token, key, alg);
    assert!(
        verdict.get("error").is_none(),
        "PyJWT refuses the token: {verdict}"
    );
    (verdict["header"].clone(), verdict["claims"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_answers_a_token_pyjwt_verifies() {
    let minted = mint_with_users(json!({ "hmac": "hmac" }));
    let secret = minted.key("hmac", "secret");
    let keys = format!("[{}]", hs256_key("2026-11", &secret));
    let weir = start(&login_entry(&keys, &minted, "")).await;

    let before = now();
    let reply = login(&weir, "alice", ALICE_PASSWORD).await;
    let token = token_of(&reply);
    assert_eq!(
        reply.json()["user"],
        json!({ "username": "alice", "user_id": 17, "role": "admin", "shop": "north" })
    );
    let (header, claims) = verified(&token, &secret, "HS256");
    assert_eq!(
        header,
        json!({ "alg": "HS256", "typ": "JWT", "kid": "2026-11" })
    );
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["user_id"], 17);
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["shop"], "north");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    let iat = claims["iat"].as_u64().expect("iat");
    assert!((before..=now()).contains(&iat), "iat {iat}");
    assert_eq!(
        claims["exp"].as_u64(),
        Some(iat + 3600),
        "a lifetime of 1 h"
    );
    assert!(
        !reply.text().contains("argon2") && !reply.text().contains(ALICE_PASSWORD),
        "the answer shows the hash or the password"
    );

    // bcrypt verifies as well as argon2id, and a string user id stays a string.
    let reply = login(&weir, "bob", BOB_PASSWORD).await;
    let token = token_of(&reply);
    assert_eq!(
        reply.json()["user"],
        json!({ "username": "bob", "user_id": "b-2", "role": "clerk" })
    );
    let (_, claims) = verified(&token, &secret, "HS256");
    assert_eq!(
        (claims["sub"].as_str(), claims["user_id"].as_str()),
        (Some("bob"), Some("b-2"))
    );

    // A login repeated is the same answer (the host remembers the password that matched).
    let again = token_of(&login(&weir, "alice", ALICE_PASSWORD).await);
    verified(&again, &secret, "HS256");

    // Every other path is the upstream's, whatever its method and body.
    let reply = get(&weir.url("/orders")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-upstream"), Some("a"));
    let reply = post(&weir, "/login/more", Some("text/plain"), "hello").await;
    assert_eq!(reply.header("x-upstream"), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_signed_with_rs256_and_es256_private_keys() {
    let minted = mint_with_users(json!({ "rsa": "rsa", "ec": "ec256" }));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rsa.pem"), minted.key("rsa", "private_pem"))
        .expect("write pem");
    let upstream = upstream("a").await;
    // Two routes, one key each: the RSA key from a granted file, the EC key inline.
    let grants = format!(
        "grants.dirs = {{ \"/keys\" = {} }}\n",
        quoted(&dir.path().display().to_string())
    );
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n\
         [[routes]]\npath_prefix = \"/rs\"\nupstream = \"a\"\n{}\
         [[routes]]\npath_prefix = \"/es\"\nupstream = \"a\"\n{}",
        login_entry_with(
            &grants,
            r#"[{ kid = "rs", alg = "RS256", pem_file = "/keys/rsa.pem" }]"#,
            &minted,
            "path = \"/rs/login\"\nttl = \"30m\""
        ),
        login_entry(
            &format!(
                r#"[{{ kid = "es", alg = "ES256", pem = {} }}]"#,
                quoted(&minted.key("ec", "private_pem"))
            ),
            &minted,
            "path = \"/es/login\""
        ),
    );
    let weir = Weir::start(&config);
    for (path, alg, key, lifetime) in [
        ("/rs/login", "RS256", "rsa", 1800),
        ("/es/login", "ES256", "ec", 3600),
    ] {
        let body = json!({ "username": "alice", "password": ALICE_PASSWORD }).to_string();
        let token = token_of(&post(&weir, path, Some("application/json"), &body).await);
        let (header, claims) = verified(&token, &minted.key(key, "public_pem"), alg);
        assert_eq!(header["alg"], alg);
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            lifetime,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_get_the_same_401() {
    let minted = mint_with_users(json!({ "hmac": "hmac" }));
    let keys = format!("[{}]", hs256_key("k", &minted.key("hmac", "secret")));
    let weir = start(&login_entry(&keys, &minted, "")).await;
    let wrong = login(&weir, "alice", "not her password").await;
    assert_refused(&wrong, 401, "bad_credentials");
    let unknown = login(&weir, "mallory", ALICE_PASSWORD).await;
    assert_refused(&unknown, 401, "bad_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.header("set-cookie"), None);
    // Another user's password is a wrong password, and a name differing in case is another name.
    assert_refused(
        &login(&weir, "bob", ALICE_PASSWORD).await,
        401,
        "bad_credentials",
    );
    assert_refused(
        &login(&weir, "Alice", ALICE_PASSWORD).await,
        401,
        "bad_credentials",
    );
    // After a good login the wrong password still fails: what the host remembers is the right one.
    token_of(&login(&weir, "alice", ALICE_PASSWORD).await);
    assert_refused(
        &login(&weir, "alice", "not her password").await,
        401,
        "bad_credentials",
    );
}

/// The shortest of `n` logins, in time.
async fn fastest(weir: &Weir, username: &str, password: &str, n: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let started = Instant::now();
        let reply = login(weir, username, password).await;
        best = best.min(started.elapsed());
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_costs_a_whole_hash_check() {
    // bcrypt at cost 10: a check takes tens of milliseconds (more in a debug build), far above a request's
    // own cost, so a login that skipped it for an unknown name would stand out.
    let minted = mint(json!({
        "keys": { "hmac": "hmac" },
        "password_hashes": { "carol": { "scheme": "bcrypt", "password": "s3cret", "params": { "rounds": 10 } } },
    }));
    let config = format!(
        "[[routes.plugins]]\nplugin = \"jwt-login\"\nwall_timeout = \"60s\"\nconfig = {{ keys = [{}], users = {{ carol = {{ password = {} }} }} }}\n",
        hs256_key("k", &minted.key("hmac", "secret")),
        quoted(&minted.hash("carol"))
    );
    let weir = start(&config).await;
    let wrong = fastest(&weir, "carol", "guess", 3).await;
    let unknown = fastest(&weir, "nobody", "guess", 3).await;
    assert!(
        wrong > Duration::from_millis(20),
        "a cost-10 bcrypt check took only {wrong:?}"
    );
    assert!(
        unknown * 2 > wrong,
        "an unknown user took {unknown:?}, a wrong password {wrong:?}"
    );
}

/// `body` sent chunked, without a length, over a connection of its own; the status of the answer.
fn post_chunked(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: weir\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    // The proxy may answer and close before it has read everything: a failed write is not the test's.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_logins_get_their_status_and_reason() {
    let minted = mint_with_users(json!({ "hmac": "hmac" }));
    let keys = format!("[{}]", hs256_key("k", &minted.key("hmac", "secret")));
    let weir = start(&login_entry(&keys, &minted, "max_body_size = 256")).await;
    let json = Some("application/json");
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (
            json,
            r#"{"username": "alice"}"#.into(),
            400,
            "missing_field",
        ),
        (json, r#"{"password": "pw"}"#.into(), 400, "missing_field"),
        (
            json,
            r#"{"username": "alice", "password": 12345}"#.into(),
            400,
            "wrong_type",
        ),
        (
            json,
            r#"{"username": {"name": "alice"}, "password": "pw"}"#.into(),
            400,
            "wrong_type",
        ),
        (json, r#"["alice", "pw"]"#.into(), 400, "wrong_type"),
        (json, "username=alice&password=pw".into(), 415, "not_json"),
        (
            json,
            r#"{"username": "alice", "password": "#.into(),
            415,
            "not_json",
        ),
        (json, String::new(), 415, "not_json"),
        (
            Some("text/plain"),
            r#"{"username": "alice", "password": "pw"}"#.into(),
            415,
            "wrong_content_type",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "username=alice&password=pw".into(),
            415,
            "wrong_content_type",
        ),
        (
            None,
            r#"{"username": "alice", "password": "pw"}"#.into(),
            415,
            "wrong_content_type",
        ),
        (
            json,
            format!(
                r#"{{"username": "alice", "password": "{}"}}"#,
                "x".repeat(300)
            ),
            413,
            "too_large",
        ),
    ];
    for (content_type, body, status, reason) in &cases {
        let reply = post(&weir, "/login", *content_type, body).await;
        assert_refused(&reply, *status, reason);
    }
    let reply = post(&weir, "/login", json, r#"{"username": "alice"}"#).await;
    assert_eq!(reply.json()["message"], "`password` is missing");

    // JSON with parameters is JSON, and a body just under the limit is read.
    let body = json!({ "username": "alice", "password": ALICE_PASSWORD, "pad": "x".repeat(150) })
        .to_string();
    assert!(body.len() < 256);
    token_of(
        &post(
            &weir,
            "/login",
            Some("application/json; charset=utf-8"),
            &body,
        )
        .await,
    );

    // Without a length the limit holds as the body arrives.
    let over = json!({ "username": "alice", "password": "x".repeat(300) }).to_string();
    assert_eq!(post_chunked(weir.addr, "/login", over.as_bytes()), 413);
    let under = json!({ "username": "alice", "password": ALICE_PASSWORD }).to_string();
    assert_eq!(post_chunked(weir.addr, "/login", under.as_bytes()), 200);

    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let request = Request::builder()
            .method(method)
            .uri(weir.url("/login"))
            .body(Full::default())
            .expect("request");
        let reply = send(request).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"), "{method}");
        assert_eq!(reply.header("x-upstream"), None, "{method}");
    }
}

/// Two routes in one config: `/login` answered by jwt-login (with `login_extra`), `/api` guarded by
/// jwt-auth (with `auth_extra`) and then the `headers` built-in showing the claims to the echo upstream.
async fn login_and_api(
    keys_login: &str,
    keys_auth: &str,
    minted: &Minted,
    login_extra: &str,
    auth_extra: &str,
) -> Weir {
    let upstream = upstream("a").await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n\
         [[routes]]\nname = \"login\"\npath_regex = \"^/log(in|out)$\"\nupstream = \"a\"\n{}\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"a\"\n\
         [[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = {{ issuer = \"{ISSUER}\", audiences = [\"{AUDIENCE}\"], keys = {keys_auth}{auth_extra} }}\n{}{}",
        login_entry(keys_login, minted, login_extra),
        context_to_header("x-sub", "jwt.sub"),
        context_to_header("x-user-id", "jwt.user_id"),
    );
    Weir::start(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_it_issues_passes_jwt_auth_on_another_route() {
    let minted = mint_with_users(json!({ "ec": "ec256" }));
    let keys_login = format!(
        r#"[{{ kid = "ec", alg = "ES256", pem = {} }}]"#,
        quoted(&minted.key("ec", "private_pem"))
    );
    let keys_auth = format!(
        r#"[{{ kid = "ec", alg = "ES256", pem = {} }}]"#,
        quoted(&minted.key("ec", "public_pem"))
    );
    let weir = login_and_api(&keys_login, &keys_auth, &minted, "", "").await;

    assert_eq!(
        get(&weir.url("/api/orders")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let token = token_of(&login(&weir, "alice", ALICE_PASSWORD).await);
    let reply = get_with(
        &weir.url("/api/orders"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-upstream"), Some("a"));
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), "/api/orders");
    assert_eq!(echo.header("x-sub"), ["alice"]);
    assert_eq!(echo.header("x-user-id"), ["17"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_the_first_key_and_jwt_auth_takes_both() {
    let minted = mint(json!({
        "keys": { "new": "hmac", "old": "hmac" },
        "password_hashes": { "alice": { "scheme": "argon2id", "password": ALICE_PASSWORD, "params": argon2_params() },
                             "bob": { "scheme": "bcrypt", "password": BOB_PASSWORD, "params": { "rounds": 10 } } },
        "tokens": { "by_old": { "key": "old", "alg": "HS256", "headers": { "kid": "2026-10" },
                                "claims": { "sub": "old-timer", "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600 } } },
    }));
    let (new, old) = (minted.key("new", "secret"), minted.key("old", "secret"));
    let keys = format!(
        "[{}, {}]",
        hs256_key("2026-11", &new),
        hs256_key("2026-10", &old)
    );
    let weir = login_and_api(&keys, &keys, &minted, "", "").await;

    let token = token_of(&login(&weir, "alice", ALICE_PASSWORD).await);
    let (header, _) = verified(&token, &new, "HS256");
    assert_eq!(header["kid"], "2026-11");
    let with_old = pyjwt_verify(&token, &old, "HS256");
    assert!(
        with_old["error"]
            .as_str()
            .is_some_and(|e| e.contains("Signature")),
        "the old key verifies the new token: {with_old}"
    );
    // jwt-auth listing both keys takes the new token and the ones the old key signed.
    let by_old = minted.0["tokens"]["by_old"]
        .as_str()
        .expect("token")
        .to_owned();
    for (token, sub) in [(token, "alice"), (by_old, "old-timer")] {
        let reply = get_with(
            &weir.url("/api/x"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{sub}: {}", reply.text());
        assert_eq!(Echo(reply.json()).header("x-sub"), [sub]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_carries_the_token_to_jwt_auth_and_logout_clears_it() {
    let minted = mint_with_users(json!({ "hmac": "hmac" }));
    let keys = format!("[{}]", hs256_key("k", &minted.key("hmac", "secret")));
    let weir = login_and_api(
        &keys,
        &keys,
        &minted,
        "ttl = 900\nlogout_path = \"/logout\"\ncookie = { name = \"token\" }",
        ", from_cookies = [\"token\"]",
    )
    .await;

    let reply = login(&weir, "alice", ALICE_PASSWORD).await;
    let token = token_of(&reply);
    assert_eq!(
        reply.header("set-cookie"),
        Some(format!("token={token}; Max-Age=900; Path=/; HttpOnly; SameSite=Lax").as_str()),
        "plain http: no Secure"
    );
    let reply = get_with(
        &weir.url("/api/me"),
        &[("cookie", &format!("theme=dark; token={token}"))],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(Echo(reply.json()).header("x-sub"), ["alice"]);

    let reply = post(&weir, "/logout", None, "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.header("x-upstream"), None);
    assert_eq!(
        reply.header("set-cookie"),
        Some("token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax")
    );
    let reply = get(&weir.url("/logout")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));

    // Behind a proxy that terminates TLS, `secure = true` marks the cookie Secure over plain http.
    let secure = start(&login_entry(
        &keys,
        &minted,
        "logout_path = \"/logout\"\ncookie = { name = \"session\", secure = true }",
    ))
    .await;
    let reply = login(&secure, "bob", BOB_PASSWORD).await;
    let token = token_of(&reply);
    assert_eq!(
        reply.header("set-cookie"),
        Some(
            format!("session={token}; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure")
                .as_str()
        )
    );
    let reply = post(&secure, "/logout", None, "").await;
    assert_eq!(
        reply.header("set-cookie"),
        Some("session=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_without_hashes_or_a_signing_key_are_refused_by_field() {
    let minted = mint_with_users(json!({ "hmac": "hmac", "rsa": "rsa" }));
    let hs = format!("[{}]", hs256_key("k", &minted.key("hmac", "secret")));
    let rs_public = format!(
        r#"[{{ kid = "rs", alg = "RS256", pem = {} }}]"#,
        quoted(&minted.key("rsa", "public_pem"))
    );
    let upstream = closed_port();
    let cases = [
        (
            format!(
                "[[routes.plugins]]\nplugin = \"jwt-login\"\nconfig = {{ keys = {hs}, users = {{ alice = {{ password = \"hunter2-plain\" }} }} }}\n"
            ),
            "users.alice.password",
        ),
        (login_entry(&rs_public, &minted, ""), "keys.0.pem"),
        (login_entry("[]", &minted, ""), "keys"),
        (
            format!(
                "[[routes.plugins]]\nplugin = \"jwt-login\"\nconfig = {{ keys = {hs}, users = {{ alice = {{ password = {}, claims = {{ exp = 1 }} }} }} }}\n",
                quoted(&minted.hash("alice"))
            ),
            "users.alice.claims.exp",
        ),
        (login_entry(&hs, &minted, "ttl = \"forever\""), "ttl"),
        (
            login_entry(&hs, &minted, "logout_path = \"/logout\""),
            "logout_path",
        ),
        (
            login_entry(&hs, &minted, "cookie = { name = \"my token\" }"),
            "cookie.name",
        ),
        (login_entry(&hs, &minted, "pasword = \"x\""), "pasword"),
    ];
    for (entry, field) in cases {
        let checked = check(&one_route(upstream, &entry));
        assert!(!checked.success, "{field}: accepted");
        assert!(
            checked
                .stderr
                .contains(&format!("field \"config.{field}\"")),
            "{field}: {}",
            checked.stderr
        );
        assert!(
            !checked.stderr.contains("hunter2"),
            "the error repeats the password: {}",
            checked.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_log_holds_no_password_or_hash() {
    let minted = mint_with_users(json!({ "hmac": "hmac" }));
    let keys = format!("[{}]", hs256_key("k", &minted.key("hmac", "secret")));
    let config = one_route(upstream("a").await, &login_entry(&keys, &minted, ""))
        .replace("[server]\n", "[server]\nlog_level = \"debug\"\n");
    let weir = Weir::start(&config);
    token_of(&login(&weir, "alice", ALICE_PASSWORD).await);
    assert_refused(
        &login(&weir, "alice", "wrong-horse").await,
        401,
        "bad_credentials",
    );
    assert_refused(
        &login(&weir, "mallory", "mallorys-guess").await,
        401,
        "bad_credentials",
    );
    assert!(
        weir.wait_for_record(&["login refused (bad_credentials)", "mallory"]),
        "no debug line for the refusal:\n{}",
        weir.log()
    );
    let log = weir.log();
    for secret in [ALICE_PASSWORD, "wrong-horse", "mallorys-guess"] {
        assert!(!log.contains(secret), "the log holds a password: {secret}");
    }
    for user in ["alice", "bob"] {
        let hash = minted.hash(user);
        let digest = hash.rsplit('$').next().expect("a PHC string");
        assert!(!log.contains(digest), "the log holds {user}'s hash");
    }
}
