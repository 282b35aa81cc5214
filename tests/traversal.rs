//! A public prefix in front of an auth-protected catch-all, attacked with every spelling of a dot segment:
//! none may reach the protected side without a token, and what the public route forwards never normalises
//! outside its prefix. The check of the upstream's path is Python's (`urllib.parse.unquote` and
//! `posixpath.normpath`), not Weir's own normaliser.

mod support;

#[path = "jwt/mint.rs"]
mod jwt_mint;

use std::io::Write;
use std::process::{Command, Stdio};

use hyper::StatusCode;
use serde_json::json;
use support::*;

/// Every way to write `.` and `..` in a path segment: raw, escaped, half escaped, mixed case.
const DOUBLE: [&str; 7] = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", ".%2E", "%2E."];
const SINGLE: [&str; 3] = [".", "%2e", "%2E"];
/// What stands between segments: `/` and its doubles, and the escaped slashes and backslash that some
/// upstreams take for `/`.
const SEPARATORS: [&str; 5] = ["/", "//", "%2F", "%5c", "\\"];

/// Paths that start under `/public` and try to end on `/admin`.
fn attacks() -> Vec<String> {
    let mut paths = Vec::new();
    for sep in SEPARATORS {
        for dd in DOUBLE {
            paths.push(format!("/public{sep}{dd}{sep}admin"));
            paths.push(format!("/public{sep}x{sep}{dd}{sep}{dd}{sep}admin"));
            paths.push(format!("/public{sep}{dd}{sep}{dd}{sep}admin"));
            paths.push(format!("/public/x{sep}{dd}{sep}..{sep}admin"));
            // Climbs that stay under the prefix, and are served.
            paths.push(format!("/public{sep}x{sep}{dd}{sep}y"));
            paths.push(format!("/public/x/{dd}{sep}y"));
            paths.push(format!("/public{sep}{dd}"));
            paths.push(format!("/public{sep}{dd}{sep}"));
            for d in SINGLE {
                paths.push(format!("/public{sep}{d}{sep}{dd}{sep}admin"));
                paths.push(format!("/public{sep}{dd}{sep}{d}{sep}admin"));
                paths.push(format!("/{d}{sep}public{sep}{dd}{sep}admin"));
            }
        }
    }
    paths
}

/// A route table for `escaped_slashes`: a public prefix first, then jwt-auth on everything else.
fn config(upstream: std::net::SocketAddr, secret: &str, escaped_slashes: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
escaped_slashes = "{escaped_slashes}"

[upstreams.app]
url = "http://{upstream}"

[[routes]]
name = "public"
path_prefix = "/public"
upstream = "app"

[[routes]]
name = "protected"
upstream = "app"
[[routes.plugins]]
plugin = "jwt-auth"
config = {{ keys = [{{ alg = "HS256", secret = "{secret}" }}] }}
"#
    )
}

/// Python's view of each path: unreserved escapes decoded (RFC 3986 §6.2.2.2) and dot segments removed, or,
/// with `decode_all`, every escape decoded and `\` taken for `/` first, as the most credulous upstream would.
fn python_normalise(paths: &[String], decode_all: bool) -> Vec<String> {
    let script = r#"
import json, posixpath, re, sys
from urllib.parse import unquote
paths, decode_all = json.load(sys.stdin)
UNRESERVED = re.compile(r"%(2[dDeE]|5[fF]|7[eE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA])")
def norm(p):
    if decode_all:
        p = unquote(p).replace("\\", "/")
    else:
        p = UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), p)
    out = posixpath.normpath(p)
    return "/" + out.lstrip("/")
json.dump([norm(p) for p in paths], sys.stdout)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!([paths, decode_all]).to_string().as_bytes())
        .expect("write paths");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "the Python normaliser failed");
    serde_json::from_slice(&out.stdout).expect("JSON from Python")
}

fn under_public(path: &str) -> bool {
    path == "/public" || path.starts_with("/public/")
}

async fn attack(escaped_slashes: &str, decode_all: bool) {
    let minted = jwt_mint::run(&json!({
        "keys": { "k": "hmac" },
        "tokens": { "ok": { "key": "k", "alg": "HS256", "claims": { "sub": "u", "exp": 4102444800u64 } } }
    }));
    let secret = minted["keys"]["k"]["secret"].as_str().expect("secret");
    let upstream = upstream("app").await;
    let weir = Weir::start(&config(upstream, secret, escaped_slashes));

    // The test can fail: with a token the protected side answers, without one it refuses.
    let token = format!("Bearer {}", minted["tokens"]["ok"].as_str().expect("token"));
    let admin = get_with(&weir.url("/admin"), &[("authorization", &token)]).await;
    assert_eq!(Echo(admin.json()).path(), "/admin");
    assert_eq!(
        get(&weir.url("/admin")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let paths = attacks();
    let mut forwarded = Vec::new();
    for path in &paths {
        let reply = get(&weir.url(path)).await;
        match reply.status {
            StatusCode::OK => {
                let echo = Echo(reply.json());
                forwarded.push((path.clone(), echo.path().to_owned()));
            }
            // The protected side refused it, or the path itself was refused.
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => {}
            other => panic!("{path}: unexpected {other}: {}", reply.text()),
        }
    }
    assert!(
        !forwarded.is_empty(),
        "some spellings stay under /public and are served"
    );
    let received: Vec<String> = forwarded.iter().map(|(_, got)| got.clone()).collect();
    for ((sent, got), normal) in forwarded
        .iter()
        .zip(python_normalise(&received, decode_all))
    {
        assert!(
            under_public(&normal),
            "{sent} reached the upstream as {got}, which normalises to {normal}, outside /public"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_pass_the_public_prefix_with_escaped_slashes_kept() {
    attack("keep", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_escaped_slashes_decoded_not_even_a_credulous_upstream_is_walked_past() {
    attack("decode", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_escaped_slashes_rejected_not_even_a_credulous_upstream_is_walked_past() {
    attack("reject", true).await;
}
