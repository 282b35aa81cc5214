//! The `basic-auth` built-in end to end: hashes made by Python's `argon2-cffi`, `bcrypt` and `hashlib.scrypt`
//! (libraries nobody here wrote), the real `weir` binary with the plugin built by `make plugins`, the echo
//! upstream reporting what it received. `headers` entries after `basic-auth` copy the user and roles from
//! the context into `x-user` and `x-roles`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::*;

/// Makes one hash per request: `{"scheme": "argon2id" | "argon2i", "password", "m", "t", "p"}`,
/// `{"scheme": "bcrypt", "password", "cost"}` or `{"scheme": "scrypt", "password", "ln", "r", "p"}`.
const HASH_PY: &str = r#"
import base64, hashlib, json, os, sys
import argon2, bcrypt
from argon2.low_level import Type, hash_secret

def b64(data):
    return base64.b64encode(data).decode().rstrip("=")

out = []
for req in json.loads(sys.stdin.read()):
    password = req["password"].encode()
    scheme = req["scheme"]
    if scheme == "argon2id":
        hasher = argon2.PasswordHasher(time_cost=req["t"], memory_cost=req["m"], parallelism=req["p"])
        out.append(hasher.hash(password))
    elif scheme == "argon2i":
        out.append(hash_secret(password, os.urandom(16), time_cost=req["t"], memory_cost=req["m"],
                               parallelism=req["p"], hash_len=32, type=Type.I).decode())
    elif scheme == "bcrypt":
        out.append(bcrypt.hashpw(password, bcrypt.gensalt(rounds=req["cost"])).decode())
    elif scheme == "scrypt":
        salt = os.urandom(16)
        derived = hashlib.scrypt(password, salt=salt, n=2 ** req["ln"], r=req["r"], p=req["p"],
                                 maxmem=256 * 1024 * 1024, dklen=32)
        out.append("$scrypt$ln=%d,r=%d,p=%d$%s$%s" % (req["ln"], req["r"], req["p"], b64(salt), b64(derived)))
    else:
        raise SystemExit("unknown scheme " + scheme)
print(json.dumps(out))
"#;

/// The hashes Python made for `requests`, in order.
fn python_hashes(requests: Value) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", HASH_PY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (argon2-cffi and bcrypt: `make test-deps`)");
    serde_json::to_writer(child.stdin.take().expect("stdin"), &requests).expect("write requests");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "hashing failed (are argon2-cffi and bcrypt installed? `make test-deps`)"
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list of hashes")
}

/// argon2id as argon2-cffi makes it, at parameters that make one check take tens of milliseconds here
/// (16 MiB, 3 passes): slow enough that remembering a match shows, fast enough for a test.
fn argon2id(password: &str) -> String {
    python_hashes(
        json!([{ "scheme": "argon2id", "password": password, "m": 16384, "t": 3, "p": 1 }]),
    )
    .remove(0)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `basic-auth` with `config` (the inside of an inline table), then `headers` copying the user and roles
/// into `x-user` and `x-roles` (a client's own are removed first).
fn chain(config: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"basic-auth\"\nconfig = {{ {config} }}\n{}{}",
        context_to_header("x-user", "auth.user"),
        context_to_header("x-roles", "auth.roles"),
    )
}

async fn start(config: &str) -> Weir {
    Weir::start(&one_route(upstream("a").await, &chain(config)))
}

/// A refusal: 401, the Basic challenge, the plain-text message, and no upstream.
fn assert_refused(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(reply.text(), format!("{message}\n"));
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"weir\", charset=\"UTF-8\"")
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-upstream"), None, "the upstream was called");
}

/// The request reached the upstream as `user` with `roles`, with no `Authorization` and no password.
fn assert_passed_as(reply: &Reply, user: &str, roles: &str, password: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.header("x-user"), [user]);
    assert_eq!(echo.header("x-roles"), [roles]);
    assert!(
        echo.header("authorization").is_empty(),
        "Authorization reached the upstream"
    );
    assert!(
        !reply.text().contains(password),
        "the password reached the upstream: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_made_by_python_verify_in_every_scheme() {
    let hashes = python_hashes(json!([
        { "scheme": "argon2id", "password": "a-pass", "m": 8192, "t": 2, "p": 2 },
        { "scheme": "argon2i", "password": "i-pass", "m": 8192, "t": 2, "p": 1 },
        { "scheme": "bcrypt", "password": "b-pass", "cost": 6 },
        { "scheme": "scrypt", "password": "s-pass", "ln": 12, "r": 8, "p": 1 },
    ]));
    let users: Vec<String> = ["alice", "irene", "bob", "sam"]
        .iter()
        .zip(&hashes)
        .map(|(user, hash)| format!("{user} = {{ hash = \"{hash}\", roles = [\"r-{user}\"] }}"))
        .collect();
    let weir = start(&format!("users = {{ {} }}", users.join(", "))).await;
    let url = weir.url("/orders");
    for (user, password) in [
        ("alice", "a-pass"),
        ("irene", "i-pass"),
        ("bob", "b-pass"),
        ("sam", "s-pass"),
    ] {
        let reply = get_with(&url, &[("authorization", &basic(user, password))]).await;
        assert_passed_as(&reply, user, &format!("r-{user}"), password);
        let wrong = get_with(
            &url,
            &[("authorization", &basic(user, &format!("{password}x")))],
        )
        .await;
        assert_refused(&wrong, "Invalid credentials");
        let swapped = get_with(&url, &[("authorization", &basic("alice", password))]).await;
        if user != "alice" {
            assert_refused(&swapped, "Invalid credentials");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_401_with_the_basic_challenge() {
    let hash = argon2id("s3cret:with:colons");
    let weir = start(&format!("users = {{ alice = \"{hash}\" }}")).await;
    let url = weir.url("/orders");

    let good = get_with(
        &url,
        &[("authorization", &basic("alice", "s3cret:with:colons"))],
    )
    .await;
    assert_passed_as(&good, "alice", "", "s3cret");
    assert_refused(&get(&url).await, "Missing credentials");
    for (header, message) in [
        (basic("alice", "s3cret"), "Invalid credentials"),
        (
            basic("mallory", "s3cret:with:colons"),
            "Invalid credentials",
        ),
        (basic("Alice", "s3cret:with:colons"), "Invalid credentials"),
        ("Basic !!!not-base64".into(), "Malformed credentials"),
        // `alice` alone: no colon.
        (
            format!("Basic {}", STANDARD.encode("alice")),
            "Malformed credentials",
        ),
        ("Basic".into(), "Malformed credentials"),
        (
            "Bearer abc.def.ghi".into(),
            "Unsupported authorization scheme",
        ),
    ] {
        let reply = get_with(&url, &[("authorization", &header)]).await;
        assert_refused(&reply, message);
    }
    // Two headers: which one counts would be up to each reader.
    let two = send(
        Request::get(&url)
            .header("authorization", basic("alice", "s3cret:with:colons"))
            .header("authorization", basic("mallory", "x"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_refused(&two, "Malformed credentials");
    // And the good credentials still pass after all that.
    let again = get_with(
        &url,
        &[("authorization", &basic("alice", "s3cret:with:colons"))],
    )
    .await;
    assert_passed_as(&again, "alice", "", "s3cret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_learns_who_never_the_credentials() {
    let hash = argon2id("pw-alice");
    let weir = start(&format!(
        "users = {{ alice = {{ hash = \"{hash}\", roles = [\"ROLE_ADMIN\", \"ROLE_USER\"] }} }}"
    ))
    .await;
    let credentials = basic("alice", "pw-alice");
    let reply = get_with(
        &weir.url("/report?x=1"),
        &[
            ("authorization", &credentials),
            ("x-user", "root"),
            ("x-roles", "ROLE_GOD"),
        ],
    )
    .await;
    assert_passed_as(&reply, "alice", "ROLE_ADMIN,ROLE_USER", "pw-alice");
    let body = reply.text();
    assert!(
        !body.contains(&credentials[6..]),
        "the base64 credentials reached the upstream"
    );
    assert!(!body.contains(&hash), "the hash reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_for_requests_without_credentials() {
    let hash = argon2id("pw-alice");
    let weir = start(&format!(
        "users = {{ alice = \"{hash}\" }}, anonymous = {{}}"
    ))
    .await;
    let url = weir.url("/");
    let anonymous = get(&url).await;
    assert_passed_as(&anonymous, "anonymousUser", "ROLE_ANONYMOUS", "pw-alice");
    let alice = get_with(&url, &[("authorization", &basic("alice", "pw-alice"))]).await;
    assert_passed_as(&alice, "alice", "", "pw-alice");
    // Bad credentials never fall back to anonymous.
    for header in [
        basic("alice", "nope"),
        basic("nobody", "x"),
        "Basic ???".into(),
    ] {
        let reply = get_with(&url, &[("authorization", &header)]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header}");
    }

    let custom = start(&format!(
        "users = {{ alice = \"{hash}\" }}, anonymous = {{ user = \"guest\", roles = [\"viewer\", \"public\"] }}"
    ))
    .await;
    assert_passed_as(
        &get(&custom.url("/")).await,
        "guest",
        "viewer,public",
        "pw-alice",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_and_methods_pass_without_credentials() {
    let hash = argon2id("pw");
    let weir = start(&format!(
        "users = {{ alice = \"{hash}\" }}, exclude_paths = [\"/health\", \"/public/.*\"], exclude_methods = [\"OPTIONS\"]"
    ))
    .await;
    for path in ["/health", "/public/app.js"] {
        let reply = get(&weir.url(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert!(
            Echo(reply.json()).header("x-user").is_empty(),
            "{path} has no user"
        );
    }
    let options = send(
        Request::options(weir.url("/orders"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(options.status, StatusCode::OK);
    for path in ["/healthz", "/admin/health", "/public/../admin"] {
        assert_refused(&get(&weir.url(path)).await, "Missing credentials");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_come_from_an_htpasswd_file_in_a_granted_directory() {
    let hashes = python_hashes(json!([
        { "scheme": "bcrypt", "password": "b-pass", "cost": 5 },
        { "scheme": "argon2id", "password": "a-pass", "m": 8192, "t": 1, "p": 1 },
        { "scheme": "bcrypt", "password": "old-pass", "cost": 5 },
    ]));
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("htpasswd"),
        format!(
            "# user:hash[:roles]\nbob:{}\n\n  alice : {} : admin, ops \n# old:{}\n",
            hashes[0], hashes[1], hashes[2]
        ),
    )
    .unwrap();
    let weir = Weir::start(&one_route(
        upstream("a").await,
        &format!(
            "[[routes.plugins]]\nplugin = \"basic-auth\"\nconfig = {{ users_file = \"/secrets/htpasswd\", realm = \"Analytics\" }}\n\
             grants.dirs = {{ \"/secrets\" = \"{}\" }}\n{}{}",
            secrets.path().display(),
            context_to_header("x-user", "auth.user"),
            context_to_header("x-roles", "auth.roles"),
        ),
    ));
    let url = weir.url("/");
    let bob = get_with(&url, &[("authorization", &basic("bob", "b-pass"))]).await;
    assert_passed_as(&bob, "bob", "", "b-pass");
    let alice = get_with(&url, &[("authorization", &basic("alice", "a-pass"))]).await;
    assert_passed_as(&alice, "alice", "admin,ops", "a-pass");
    let old = get_with(&url, &[("authorization", &basic("old", "old-pass"))]).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "a commented-out user");
    assert_eq!(
        old.header("www-authenticate"),
        Some("Basic realm=\"Analytics\", charset=\"UTF-8\"")
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One request on `client`, whose kept-alive connection leaves the check as the main cost.
async fn timed(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    authorization: &str,
) -> (Duration, StatusCode) {
    let request = Request::get(url)
        .header("authorization", authorization)
        .body(Full::default())
        .unwrap();
    let start = Instant::now();
    let response = client.request(request).await.expect("a response");
    let status = response.status();
    response.into_body().collect().await.expect("the body");
    (start.elapsed(), status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_password_is_fast_and_a_wrong_one_never_is() {
    // basic-auth alone: what is timed is its check, not the rest of a chain.
    let weir = Weir::start(&one_route(
        upstream("a").await,
        &format!(
            "[[routes.plugins]]\nplugin = \"basic-auth\"\nconfig = {{ users = {{ alice = \"{}\" }} }}\n",
            argon2id("pw-alice")
        ),
    ));
    let url = weir.url("/");
    let http = client();
    let (good, wrong) = (basic("alice", "pw-alice"), basic("alice", "pw-alicf"));
    // Warms the connection pool and the instance; the first good request pays the check.
    let (first, status) = timed(&http, &url, &good).await;
    assert_eq!(status, StatusCode::OK);
    eprintln!("basic-auth through weir: first good request {first:?}");
    // Medians of interleaved requests, and up to three rounds: a busy 2-core machine can slow any one
    // round, but a wrong password that cost no more than a remembered one would fail all three.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut remembered, mut refused, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..7 {
            let (time, status) = timed(&http, &url, &good).await;
            assert_eq!(status, StatusCode::OK);
            remembered.push(time);
            let (time, status) = timed(&http, &url, &wrong).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            refused.push(time);
            // An unknown user costs a check too, so the time does not tell who exists.
            let (time, status) = timed(&http, &url, &basic("mallory", "pw-alice")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            unknown.push(time);
        }
        let (remembered, refused, unknown) = (median(remembered), median(refused), median(unknown));
        eprintln!(
            "remembered median {remembered:?}, wrong password median {refused:?}, unknown user median \
             {unknown:?}"
        );
        if refused >= remembered * 10 && unknown >= remembered * 10 {
            return;
        }
        rounds.push((remembered, refused, unknown));
    }
    panic!(
        "a wrong password and an unknown user should each cost at least 10x a remembered password; \
         (remembered, wrong, unknown) medians per round: {rounds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_password_nor_hash_reaches_a_debug_log() {
    let password = "Pa55-word-for-the-log";
    let hash = argon2id(password);
    let a = upstream("a").await;
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlog_level = \"debug\"\naccess_log = true\n\
         [upstreams.a]\nurl = \"http://{a}\"\n[[routes]]\nupstream = \"a\"\n{}",
        chain(&format!("users = {{ alice = \"{hash}\" }}"))
    ));
    let url = weir.url("/");
    for header in [
        basic("alice", password),
        basic("alice", password),
        basic("alice", "wrong"),
        basic(password, password),
        format!("Basic {password}"),
        password.to_string(),
    ] {
        get_with(&url, &[("authorization", &header)]).await;
    }
    assert!(weir.wait_for_log("GET"), "no access line:\n{}", weir.log());
    let log = weir.log();
    let salt_and_output = hash.rsplitn(3, '$').take(2).collect::<Vec<_>>();
    for secret in [password, &STANDARD.encode(format!("alice:{password}"))]
        .into_iter()
        .chain(salt_and_output)
    {
        assert!(!log.contains(secret), "the log holds {secret}:\n{log}");
    }
}

#[test]
fn plain_text_and_weak_hashes_are_refused_naming_the_field_never_the_text() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("plain"), "alice:hunter2-plain\n").unwrap();
    // One hash past the host's bound of 4096 per instance, the decoy for unknown users counted. Loading
    // that many takes the unoptimised host longer than the default 20 ms `timeout`: the entries get 10 s.
    let many: String = (1..=4096)
        .map(|i| format!("user{i}:$2b$12$ZEq6z.e3Llt.q2FnUo1Y7urJmCK/EEbBLh4WSyL8dcgGgPFuM6V6e\n"))
        .collect();
    std::fs::write(secrets.path().join("many"), many).unwrap();
    std::fs::write(
        secrets.path().join("apr1"),
        "bob:$apr1$abcdefgh$0123456789abcdefghijkl\n",
    )
    .unwrap();
    // `secret`: what the error must not repeat (empty where the config holds none).
    for (config, field, message, secret) in [
        (
            r#"users = { alice = "hunter2-plain" }"#,
            "config.users.alice.hash",
            "not a password hash",
            "hunter2-plain",
        ),
        (
            r#"users = { alice = { hash = "hunter2-plain", roles = ["a"] } }"#,
            "config.users.alice.hash",
            "plain-text passwords are refused",
            "hunter2-plain",
        ),
        (
            r#"users_file = "/secrets/plain""#,
            "config.users_file",
            "/secrets/plain line 1: not a password hash",
            "hunter2-plain",
        ),
        (
            r#"users_file = "/secrets/apr1""#,
            "config.users_file",
            "Apache MD5 ($apr1$) hashes are not supported",
            "0123456789abcdefghijkl",
        ),
        (
            r#"users = { alice = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=" }"#,
            "config.users.alice.hash",
            "SHA-1 ({SHA}) hashes are not supported",
            "W6ph5Mm5Pz8GgiULbPgzG37mj9g",
        ),
        (
            r#"users_file = "/secrets/many""#,
            "config.users_file",
            "/secrets/many line 4096: too many password hashes: a plugin instance holds at most 4096",
            "ZEq6z.e3Llt",
        ),
        ("", "config.users", "set `users`", ""),
        (r#"users = {}"#, "config.users", "the table is empty", ""),
        (
            r#"users = { "a:b" = "x" }"#,
            "config.users.a:b",
            "colon",
            "",
        ),
        (
            r#"users = { alice = { hash = "x", role = ["a"] } }"#,
            "config.users.alice.role",
            "unknown field",
            "",
        ),
        (
            r#"users = { alice = { hash = "x", roles = ["a,b"] } }"#,
            "config.users.alice.roles.0",
            "no comma",
            "",
        ),
        (
            r#"users = { alice = "x" }, realm = "a\"b""#,
            "config.realm",
            "printable ASCII",
            "",
        ),
        (
            r#"users = { alice = "x" }, users_file = "/secrets/plain""#,
            "config.users_file",
            "set only one",
            "",
        ),
        (
            r#"users = { alice = "x" }, anonymous = { roles = [""] }"#,
            "config.anonymous.roles.0",
            "a role is empty",
            "",
        ),
        (
            r#"users = { alice = "x" }, roles_key = "auth.user""#,
            "config.roles_key",
            "must differ",
            "",
        ),
    ] {
        let out = check(&one_route(
            closed_port(),
            &format!(
                "[[routes.plugins]]\nplugin = \"basic-auth\"\ntimeout = \"10s\"\nconfig = {{ {config} }}\ngrants.dirs = {{ \"/secrets\" = \"{}\" }}\n",
                secrets.path().display()
            ),
        ));
        assert_eq!(out.code, Some(1), "{config}: {}", out.stderr);
        let wanted = format!("plugin #1 (basic-auth), field \"{field}\": ");
        assert!(
            out.stderr
                .lines()
                .any(|line| line.contains(&wanted) && line.contains(message)),
            "{config}: wanted {wanted:?} and {message:?} in\n{}",
            out.stderr
        );
        let errors: String = out.stderr.lines().filter(|l| l.contains("error")).collect();
        assert!(
            secret.is_empty() || !errors.contains(secret),
            "{config}: the error repeats {secret}:\n{}",
            out.stderr
        );
    }
}
