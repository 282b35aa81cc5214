//! Arbitrary bytes from a client, through the path normaliser, a plugin's `set-path` and `set-query`, and
//! the template expansion of `path-rewrite` and `headers`, against the real binary: every request gets an
//! answer, a client's or plugin's bad input is never a 5xx, and the upstream never receives a target that
//! does not parse or is not in the normal form.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use proptest::prelude::*;
use support::*;
use weir::config::EscapedSlashes;
use weir::normalise::{self, PathPolicy};

const CHAIN: &str = r#"
[[routes]]
name = "rewrite"
path_prefix = "/rw"
upstream = "a"
[[routes.plugins]]
plugin = "path-rewrite"
config = { template = "/t/{header.x-t}{path}" }
[[routes.plugins]]
plugin = "headers"
config.request = { set = { "x-h" = "{header.x-t}{path}?{query}" } }
config.response = { set = { "x-r" = "{header.x-t}" } }

[[routes]]
name = "set-target"
upstream = "a"
[[routes.plugins]]
path = "{fixture}"
config = { mode = "set-target" }
"#;

/// One request on its own connection, written byte for byte; the status and body of the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap_or_else(|e| {
        panic!(
            "no whole answer ({e}) to {:?}",
            request.escape_ascii().to_string()
        )
    });
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| answer[end + 4..].to_vec())
        .unwrap_or_default();
    (status, body)
}

/// Bytes a client can put in a request target (visible ASCII), biased towards the tricky ones.
fn target() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"/".to_vec()),
        Just(b"..".to_vec()),
        Just(b"%2e".to_vec()),
        Just(b"%2F".to_vec()),
        Just(b"%".to_vec()),
        Just(b"?".to_vec()),
        (0x21u8..0x7f).prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

/// Bytes a header value can hold (RFC 9110 §5.5: tab, visible ASCII, space and obs-text), with the
/// path's delimiters made likely.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"/".to_vec()),
        Just(b"../".to_vec()),
        Just(b"%2e".to_vec()),
        Just(b"?".to_vec()),
        Just(b"#".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        (0x21u8..0x7f).prop_map(|b| vec![b]),
        (0x80u8..=0xff).prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn request(target: &[u8], headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: weir.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn check_forwarded(status: u16, body: &[u8], sent: &[u8]) -> Result<(), TestCaseError> {
    let sent = sent.escape_ascii().to_string();
    prop_assert!(
        matches!(status, 200 | 400 | 404),
        "{sent}: status {status}: {}",
        String::from_utf8_lossy(body)
    );
    if status != 200 {
        return Ok(());
    }
    let echo: serde_json::Value = serde_json::from_slice(body).expect("the echo's JSON");
    let path = echo["path"].as_str().expect("path");
    let target = match echo["query"].as_str() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    prop_assert!(
        http::uri::PathAndQuery::try_from(target.as_str()).is_ok(),
        "{sent}: the upstream got {target:?}"
    );
    let policy = PathPolicy {
        escaped_slashes: EscapedSlashes::Keep,
        merge_slashes: true,
    };
    let again = normalise::path(path, policy).map(|p| p.into_owned());
    prop_assert_eq!(
        again,
        Ok(path.to_owned()),
        "{}: the upstream's path is not in normal form",
        sent
    );
    Ok(())
}

#[test]
fn no_client_or_plugin_input_panics_or_reaches_the_upstream_unparsable() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = runtime.block_on(upstream("a"));
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n{CHAIN}"
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    let strategy = (target(), header_value(), header_value(), header_value());
    // Both outcomes must occur, or the generator is not reaching what it is meant to test.
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let outcome = runner.run(&strategy, |(path, t, set_path, set_query)| {
        for prefix in [&b"/rw/"[..], b"/"] {
            let mut sent = prefix.to_vec();
            sent.extend_from_slice(&path);
            let req = request(
                &sent,
                &[
                    ("x-t", &t),
                    ("x-set-path", &set_path),
                    ("x-set-query", &set_query),
                ],
            );
            let (status, body) = exchange(weir.addr, &req);
            *statuses.borrow_mut().entry(status).or_default() += 1;
            check_forwarded(status, &body, &req)?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}\n---- weir log ----\n{}", weir.log());
    }
    assert!(!weir.log().contains("panicked"), "{}", weir.log());
    let statuses = statuses.into_inner();
    eprintln!("statuses: {statuses:?}");
    assert!(
        statuses.get(&200) > Some(&100) && statuses.get(&400) > Some(&20),
        "{statuses:?}"
    );
}
