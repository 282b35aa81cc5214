//! The hostile-input suite for HTTP/1.1: exact bytes on a raw socket, against the real `weir` binary and,
//! for comparison, against nginx in its usual production setup; both in front of a strict recording
//! upstream (`support::raw::Recorder`).
//!
//! Every case names the RFC section it checks and lists every outcome that section allows: the statuses
//! of the final responses, whether the connection must close, and what the upstream must have received.
//! On top of that, whatever the outcome, the upstream must never receive a malformed message (the
//! recorder is strict about framing, line endings, Host and the target), and every request it does
//! receive carries the real client address last in X-Forwarded-For.
//!
//! Paths run against two configs: a catch-all route, where the upstream must get a target equivalent
//! (RFC 3986 §6.2.2) to the client's, and a route for `/public` only, where no request whose normalised
//! path leaves `/public` may reach the upstream at all.
//!
//! `cargo test -p weir --test edge -- --nocapture` prints both scores and every miss.

mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use support::Weir;
use support::raw::{Exchange, Nginx, Plan, Recorder, Seen, When, exchange, free_port, show};

/// The route a case is sent to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `path_prefix = "/"`: everything goes to the upstream.
    All,
    /// Only `/public` and below go to the upstream; anything else is 404.
    Public,
}

struct Case {
    name: &'static str,
    rfc: &'static str,
    sends: Vec<(When, Vec<u8>)>,
    scope: Scope,
    allow: Vec<Outcome>,
    /// Silence this long means the proxy is waiting for bytes that will never come.
    idle: Duration,
    /// A valid request any HTTP/1.1 proxy serves: if nginx misses one, the harness is broken, not nginx.
    baseline: bool,
}

fn case(name: &'static str, rfc: &'static str, bytes: impl AsRef<[u8]>) -> Case {
    Case {
        name,
        rfc,
        sends: vec![(When::Now, bytes.as_ref().to_vec())],
        scope: Scope::All,
        allow: Vec::new(),
        idle: Duration::from_millis(1000),
        baseline: false,
    }
}

impl Case {
    fn allow(mut self, outcome: Outcome) -> Case {
        self.allow.push(outcome);
        self
    }

    fn then(mut self, when: When, bytes: impl AsRef<[u8]>) -> Case {
        self.sends.push((when, bytes.as_ref().to_vec()));
        self
    }

    fn public(mut self) -> Case {
        self.scope = Scope::Public;
        self
    }

    /// The request is incomplete on purpose: waiting for the rest is a correct answer.
    fn waits(mut self) -> Case {
        self.idle = Duration::from_millis(400);
        self
    }

    fn baseline(mut self) -> Case {
        self.baseline = true;
        self
    }

    fn http10(&self) -> bool {
        let first = &self.sends[0].1;
        let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
        line.trim_ascii_end().ends_with(b"HTTP/1.0")
    }

    fn plan(&self) -> Plan {
        Plan {
            finals: self.allow.iter().map(|o| o.finals.len()).max().unwrap_or(0),
            wait_close: self.allow.iter().any(|o| o.close),
            idle: self.idle,
        }
    }
}

/// One allowed result of a case.
#[derive(Clone, Default)]
struct Outcome {
    /// The allowed statuses of each final response, in order.
    finals: Vec<Vec<u16>>,
    /// No response at all (the proxy still waits, or closed) is this outcome.
    silence: bool,
    /// The complete requests the upstream must have received, in order; nothing else.
    forwarded: Vec<Fwd>,
    /// A request the proxy started forwarding and then abandoned is fine (a client framing error).
    aborted_ok: bool,
    /// The proxy must close the connection after its last response.
    close: bool,
    /// A `100 Continue` must come before the final response.
    continue_first: bool,
}

/// Forwarded once, answered with the upstream's own `200 ok`.
fn ok(fwd: Fwd) -> Outcome {
    oks(vec![fwd])
}

fn oks(fwds: Vec<Fwd>) -> Outcome {
    Outcome {
        finals: vec![vec![200]; fwds.len()],
        forwarded: fwds,
        ..Outcome::default()
    }
}

/// Answered by the proxy with one of `statuses`; at most an abandoned request reached the upstream.
fn reject(statuses: &[u16]) -> Outcome {
    Outcome {
        finals: vec![statuses.to_vec()],
        aborted_ok: true,
        ..Outcome::default()
    }
}

/// Refused with any 4xx or 501: how a method the proxy does not serve may be turned away.
fn refused() -> Outcome {
    reject(&(400..500).chain([501]).collect::<Vec<u16>>())
}

fn silence() -> Outcome {
    Outcome {
        silence: true,
        aborted_ok: true,
        ..Outcome::default()
    }
}

impl Outcome {
    fn close(mut self) -> Outcome {
        self.close = true;
        self
    }

    /// The upstream may also have received the request the client meant, complete.
    fn with(mut self, fwd: Fwd) -> Outcome {
        self.forwarded.push(fwd);
        self
    }

    /// A further request on the same connection, forwarded and answered with 200.
    fn then_ok(mut self, fwd: Fwd) -> Outcome {
        self.finals.push(vec![200]);
        self.forwarded.push(fwd);
        self
    }

    fn after_continue(mut self) -> Outcome {
        self.continue_first = true;
        self
    }
}

/// What one request must look like at the upstream.
#[derive(Clone)]
struct Fwd {
    method: &'static str,
    /// Allowed targets, compared after RFC 3986 normalisation unless `exact`.
    targets: Vec<String>,
    exact: bool,
    body: Vec<u8>,
    /// The host part of the Host the upstream gets (port ignored: nginx's `$host` drops it).
    host: Option<&'static str>,
    rules: Vec<Rule>,
}

#[derive(Clone)]
enum Rule {
    Absent(&'static str),
    /// Exactly one line, with exactly this value.
    Value(&'static str, Vec<u8>),
    /// No value of the header contains this (case-insensitive).
    Lacks(&'static str, &'static str),
    /// All X-Forwarded-For lines together, split on commas.
    Xff(Vec<&'static str>),
    /// This many headers whose name starts with the prefix.
    Count(&'static str, usize),
    Check(&'static str, fn(&Seen) -> bool),
}

fn fwd(method: &'static str, target: &str) -> Fwd {
    Fwd {
        method,
        targets: vec![target.to_owned()],
        exact: false,
        body: Vec::new(),
        host: Some("edge.test"),
        rules: Vec::new(),
    }
}

fn get(target: &str) -> Fwd {
    fwd("GET", target)
}

fn post(target: &str) -> Fwd {
    fwd("POST", target)
}

impl Fwd {
    fn body(mut self, body: impl AsRef<[u8]>) -> Fwd {
        self.body = body.as_ref().to_vec();
        self
    }

    fn host(mut self, host: &'static str) -> Fwd {
        self.host = Some(host);
        self
    }

    fn any_host(mut self) -> Fwd {
        self.host = None;
        self
    }

    /// The target must arrive as written, not just equivalent.
    fn exact(mut self) -> Fwd {
        self.exact = true;
        self
    }

    fn or(mut self, target: &str) -> Fwd {
        self.targets.push(target.to_owned());
        self
    }

    fn absent(mut self, name: &'static str) -> Fwd {
        self.rules.push(Rule::Absent(name));
        self
    }

    fn value(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Fwd {
        self.rules.push(Rule::Value(name, value.as_ref().to_vec()));
        self
    }

    fn lacks(mut self, name: &'static str, needle: &'static str) -> Fwd {
        self.rules.push(Rule::Lacks(name, needle));
        self
    }

    fn xff(mut self, hops: &[&'static str]) -> Fwd {
        self.rules.push(Rule::Xff(hops.to_vec()));
        self
    }

    fn count(mut self, prefix: &'static str, n: usize) -> Fwd {
        self.rules.push(Rule::Count(prefix, n));
        self
    }

    fn check(mut self, what: &'static str, test: fn(&Seen) -> bool) -> Fwd {
        self.rules.push(Rule::Check(what, test));
        self
    }

    fn verify(&self, seen: &Seen) -> Result<(), String> {
        if seen.method != self.method {
            return Err(format!("method {:?}, not {:?}", seen.method, self.method));
        }
        let target_ok = if self.exact {
            self.targets.contains(&seen.target)
        } else {
            let got = normal(&seen.target);
            self.targets.iter().any(|t| normal(t) == got)
        };
        if !target_ok {
            let how = if self.exact {
                "exactly"
            } else {
                "equivalent to"
            };
            return Err(format!(
                "target {:?}, not {how} one of {:?}",
                seen.target, self.targets
            ));
        }
        if seen.body != self.body {
            return Err(format!(
                "body {}, not {}",
                show(&seen.body, 80),
                show(&self.body, 80)
            ));
        }
        if let Some(host) = self.host {
            let values = seen.values("host");
            let got = values
                .first()
                .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase());
            let name = got.as_deref().map(host_part);
            if values.len() != 1 || name != Some(host) {
                return Err(format!("Host {got:?}, not {host:?}"));
            }
        }
        for rule in &self.rules {
            rule.verify(seen)?;
        }
        Ok(())
    }
}

impl Rule {
    fn verify(&self, seen: &Seen) -> Result<(), String> {
        match self {
            Rule::Absent(name) => match seen.values(name).first() {
                Some(v) => Err(format!("{name} forwarded: {}", show(v, 60))),
                None => Ok(()),
            },
            Rule::Value(name, want) => {
                let got = seen.values(name);
                if got.len() == 1 && got[0] == want.as_slice() {
                    Ok(())
                } else {
                    Err(format!(
                        "{name} is {:?}, not {}",
                        got.iter().map(|v| show(v, 60)).collect::<Vec<_>>(),
                        show(want, 60)
                    ))
                }
            }
            Rule::Lacks(name, needle) => {
                let bad = seen.values(name).into_iter().find(|v| {
                    String::from_utf8_lossy(v)
                        .to_ascii_lowercase()
                        .contains(needle)
                });
                match bad {
                    Some(v) => Err(format!("{name} forwarded with {needle}: {}", show(v, 60))),
                    None => Ok(()),
                }
            }
            Rule::Xff(want) => {
                let got = forwarded_for(seen);
                if got == *want {
                    Ok(())
                } else {
                    Err(format!("X-Forwarded-For hops {got:?}, not {want:?}"))
                }
            }
            Rule::Count(prefix, n) => {
                let got = seen
                    .headers
                    .iter()
                    .filter(|(name, _)| name.to_ascii_lowercase().starts_with(prefix))
                    .count();
                if got == *n {
                    Ok(())
                } else {
                    Err(format!("{got} {prefix}* headers, not {n}"))
                }
            }
            Rule::Check(what, test) => {
                if test(seen) {
                    Ok(())
                } else {
                    Err(format!("not the case: {what}"))
                }
            }
        }
    }
}

fn host_part(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn forwarded_for(seen: &Seen) -> Vec<String> {
    seen.values("x-forwarded-for")
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|h| h.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RFC 3986 §6.2.2 syntax-based normalisation of an origin-form target: escapes' hex upper-cased,
/// escaped unreserved characters decoded, then dot segments removed from the path (§5.2.4).
fn normal(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = remove_dot_segments(&percent_normal(path));
    match query {
        Some(q) => format!("{path}?{}", percent_normal(q)),
        None => path,
    }
}

fn percent_normal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if b[i] == b'%' && hex(i + 1) && hex(i + 2) {
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("two hex digits");
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_owned();
    let mut output = String::new();
    let pop = |output: &mut String| match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".into();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            pop(&mut output);
        } else if input == "/.." {
            input = "/".into();
            pop(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
}

/// A request whose `{len}` is replaced by the length of `body`, which follows the head.
fn framed(head: &str, body: &str) -> Vec<u8> {
    let mut bytes = head.replace("{len}", &body.len().to_string()).into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn with_header(name: &str, value: &[u8]) -> Vec<u8> {
    let mut bytes = b"GET /big-header HTTP/1.1\r\nHost: edge.test\r\n".to_vec();
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(b": ");
    bytes.extend_from_slice(value);
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes
}

fn many_headers(n: usize) -> Vec<u8> {
    let mut text = String::from("GET /many-headers HTTP/1.1\r\nHost: edge.test\r\n");
    for i in 0..n {
        text.push_str(&format!("X-Many-{i}: {i}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A target of exactly `len` bytes.
fn long_target(len: usize) -> String {
    format!("/long/{}", "a".repeat(len - 6))
}

/// A body that is a request of its own, for the cases where only one framing may win.
const SMUGGLE: &str = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n";
const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";

// A table, one case per paragraph: rustfmt would spread each over a screen.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let long_8000 = long_target(8000 - "GET  HTTP/1.1".len());
    let long_64k = long_target(64 * 1024);
    vec![
        // ---- Message framing and request smuggling: RFC 9112 §6 ----
        // Both framings present: reject, or go by Transfer-Encoding alone; either way close the
        // connection, so the bytes one side took for a body can never be taken for a request.
        case("cl-te", "RFC 9112 §6.1, §6.3 ¶3",
            framed("POST /cl-te HTTP/1.1\r\nHost: edge.test\r\nContent-Length: {len}\r\nTransfer-Encoding: chunked\r\n\r\n", SMUGGLE))
            .allow(reject(&[400]).close())
            .allow(ok(post("/cl-te")).close()),
        case("te-cl", "RFC 9112 §6.1, §6.3 ¶3",
            framed("POST /te-cl HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nContent-Length: {len}\r\n\r\n", SMUGGLE))
            .allow(reject(&[400]).close())
            .allow(ok(post("/te-cl")).close()),
        case("cl-te-short-cl", "RFC 9112 §6.1, §6.3 ¶3",
            "POST /cl-te-short HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400]).close())
            .allow(ok(post("/cl-te-short").body("hello")).close()),
        // Repeated identical lengths may be merged (RFC 9110 §8.6); anything else is invalid framing.
        case("cl-duplicate-same", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-dup HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
            .allow(reject(&[400]).close())
            .allow(ok(post("/cl-dup").body("hello"))),
        case("cl-duplicate-different", "RFC 9112 §6.3 ¶5",
            "POST /cl-dup-diff HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
            .allow(reject(&[400]).close()),
        case("cl-list-1,1", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-list HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1,1\r\n\r\nx")
            .allow(reject(&[400]).close())
            .allow(ok(post("/cl-list").body("x"))),
        case("cl-list-different", "RFC 9112 §6.3 ¶5",
            "POST /cl-list-diff HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1, 2\r\n\r\nxy")
            .allow(reject(&[400]).close()),
        case("cl-negative", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-neg HTTP/1.1\r\nHost: edge.test\r\nContent-Length: -1\r\n\r\nx")
            .allow(reject(&[400]).close()),
        case("cl-not-a-number", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-nan HTTP/1.1\r\nHost: edge.test\r\nContent-Length: abc\r\n\r\nx")
            .allow(reject(&[400]).close()),
        case("cl-plus-sign", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-plus HTTP/1.1\r\nHost: edge.test\r\nContent-Length: +5\r\n\r\nhello")
            .allow(reject(&[400]).close()),
        case("cl-hex", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-hex HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0x5\r\n\r\nhello")
            .allow(reject(&[400]).close()),
        case("cl-empty", "RFC 9110 §8.6, RFC 9112 §6.3 ¶5",
            "POST /cl-empty HTTP/1.1\r\nHost: edge.test\r\nContent-Length: \r\n\r\n")
            .allow(reject(&[400]).close()),
        // Past 2^64: a parser that wraps around would read a small length and the rest as requests.
        case("cl-huge", "RFC 9110 §8.6 (overflow), RFC 9112 §6.3 ¶5",
            "POST /cl-huge HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 18446744073709551621\r\n\r\nhello")
            .allow(reject(&[400, 413]).close()),
        case("te-chunked-identity", "RFC 9112 §6.3 ¶4 (chunked not last)",
            framed("POST /te-ci HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400, 501]).close()),
        case("te-identity", "RFC 9112 §6.3 ¶4, §6.1 (unknown coding)",
            "POST /te-identity HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: identity\r\n\r\nhello")
            .allow(reject(&[400, 501]).close()),
        case("te-gzip-alone", "RFC 9112 §6.3 ¶4 (chunked not last)",
            "POST /te-gzip HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: gzip\r\n\r\nhello")
            .allow(reject(&[400, 501]).close()),
        case("te-xchunked", "RFC 9112 §6.1, §6.3 ¶4",
            framed("POST /te-x HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: xchunked\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400, 501]).close()),
        // Applying chunked twice is forbidden; the body the client meant cannot be known.
        case("te-two-lines", "RFC 9112 §6.1 (chunked at most once), §6.3 ¶4",
            framed("POST /te-twice HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400, 501]).close()),
        // Whitespace around a field value is OWS, and coding names are case-insensitive: plain chunked.
        case("te-ows", "RFC 9110 §5.5 (OWS), RFC 9112 §7",
            framed("POST /te-ows HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding:   chunked  \r\n\r\n", CHUNKED_HELLO))
            .allow(ok(post("/te-ows").body("hello")))
            .baseline(),
        case("te-mixed-case", "RFC 9112 §7 (coding names case-insensitive)",
            framed("POST /te-case HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: Chunked\r\n\r\n", CHUNKED_HELLO))
            .allow(ok(post("/te-case").body("hello")))
            .baseline(),
        case("te-in-http-1.0", "RFC 9112 §6.1 (faulty framing, then close)",
            framed("POST /te10 HTTP/1.0\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400]).close())
            .allow(ok(post("/te10").body("hello")).close()),
        case("te-obs-fold", "RFC 9112 §5.2",
            framed("POST /te-fold HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400]))
            .allow(ok(post("/te-fold").body("hello"))),
        // A line starting with whitespace right after the request line is rejected or skipped unread:
        // never taken as the framing. Skipped, the 15 bytes are a Content-Length body.
        case("te-after-request-line-space", "RFC 9112 §2.2",
            framed("POST /te-ws HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: edge.test\r\nContent-Length: {len}\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400]))
            .allow(ok(post("/te-ws").body(CHUNKED_HELLO))),
        case("obs-fold-header", "RFC 9112 §5.2",
            "GET /fold HTTP/1.1\r\nHost: edge.test\r\nX-Folded: a\r\n b\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/fold").check("X-Folded is a, spaces, b", |s| {
                let v = s.values("x-folded");
                v.len() == 1 && v[0].starts_with(b"a ") && v[0].ends_with(b" b")
                    && v[0][1..v[0].len() - 1].iter().all(|&b| b == b' ')
            }))),
        case("te-body-shorter", "RFC 9112 §7.1, §8 (incomplete)",
            "POST /te-short HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello")
            .waits()
            .allow(silence())
            .allow(reject(&[400, 408])),
        case("cl-body-shorter", "RFC 9112 §6.2, §8 (incomplete)",
            "POST /cl-short HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 10\r\n\r\nhello")
            .waits()
            .allow(silence())
            .allow(reject(&[400, 408])),

        // ---- Chunked transfer coding: RFC 9112 §7.1 ----
        case("chunk-valid", "RFC 9112 §7.1",
            "POST /chunk HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")
            .allow(ok(post("/chunk").body("hello")))
            .baseline(),
        case("chunk-uppercase-hex-leading-zeros", "RFC 9112 §7.1 (1*HEXDIG)",
            "POST /chunk-hex HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n000A\r\n0123456789\r\n0000\r\n\r\n")
            .allow(ok(post("/chunk-hex").body("0123456789")))
            .baseline(),
        case("chunk-size-not-hex", "RFC 9112 §7.1",
            "POST /chunk-g HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\ng\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400])),
        case("chunk-size-0x", "RFC 9112 §7.1",
            "POST /chunk-0x HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400])),
        // 2^64 + 5: wrapping to 5 would accept "hello" and lose track of the framing.
        case("chunk-size-overflow", "RFC 9112 §7.1 (overflow, cf. RFC 9110 §8.6)",
            "POST /chunk-big HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400, 413])),
        case("chunk-data-longer", "RFC 9112 §7.1",
            "POST /chunk-long HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400])),
        case("chunk-data-shorter", "RFC 9112 §7.1",
            "POST /chunk-short HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400])),
        case("chunk-bare-lf-after-size", "RFC 9112 §7.1 (CRLF), §2.2 (bare LF only in start-line and fields)",
            "POST /chunk-lf HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n")
            .allow(reject(&[400])),
        case("chunk-bare-lf-after-data", "RFC 9112 §7.1 (CRLF)",
            "POST /chunk-lf2 HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n")
            .allow(reject(&[400])),
        // Without the final CRLF the next line is a trailer field, and this one is not a valid one.
        case("chunk-no-final-crlf-then-request", "RFC 9112 §7.1, §7.1.2",
            "POST /chunk-nofinal HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(reject(&[400]).with(post("/chunk-nofinal").body("hello"))),
        case("chunk-no-final-crlf", "RFC 9112 §7.1, §8 (incomplete)",
            "POST /chunk-open HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
            .waits()
            .allow(silence())
            .allow(silence().with(post("/chunk-open").body("hello")))
            .allow(reject(&[400, 408])),
        case("chunk-extension", "RFC 9112 §7.1.1 (unrecognised extensions ignored)",
            "POST /chunk-ext HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0;last\r\n\r\n")
            .allow(ok(post("/chunk-ext").body("hello")))
            .baseline(),
        case("chunk-extension-quoted", "RFC 9112 §7.1.1",
            "POST /chunk-extq HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b c\";d\r\nhello\r\n0\r\n\r\n")
            .allow(ok(post("/chunk-extq").body("hello"))),
        // BWS: a recipient must parse it (RFC 9110 §5.6.3).
        case("chunk-extension-bws", "RFC 9112 §7.1.1, RFC 9110 §5.6.3 (BWS)",
            "POST /chunk-bws HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a = b\r\nhello\r\n0\r\n\r\n")
            .allow(ok(post("/chunk-bws").body("hello"))),
        // A trailer is kept apart from the header section or dropped, never merged into it.
        case("chunk-trailer", "RFC 9112 §7.1.2, RFC 9110 §6.5.1",
            "POST /chunk-trailer HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n")
            .allow(ok(post("/chunk-trailer").body("hello").absent("x-trailer")))
            .baseline(),
        // Only a certificate the listener verified may say who the client is (README, "Client
        // certificates"): a client's own claim goes, from the header section and from the trailers.
        case("forged-client-cert", "RFC 9110 §6.5.2 (trailers are not trusted as headers)",
            "POST /forged-client-cert HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-Client-Cert: Hash=forged\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Forwarded-Client-Cert: Hash=forged\r\n\r\n")
            .allow(ok(post("/forged-client-cert").body("hello").absent("x-forwarded-client-cert")
                .check("no X-Forwarded-Client-Cert trailer", |seen| {
                    !seen.trailers.iter().any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-client-cert"))
                }))),
        case("chunk-trailer-framing-fields", "RFC 9110 §6.5.1 (framing fields never from trailers)",
            "POST /chunk-trailer-cl HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 50\r\nHost: evil.example\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(post("/chunk-trailer-cl").body("hello"))),

        // ---- Field syntax: RFC 9112 §5, RFC 9110 §5.5 ----
        case("header-nul", "RFC 9110 §5.5 (reject, or NUL → SP)",
            b"GET /nul HTTP/1.1\r\nHost: edge.test\r\nX-Nul: a\0b\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/nul").value("x-nul", "a b"))),
        case("header-bare-cr", "RFC 9112 §2.2, RFC 9110 §5.5 (reject, or CR → SP)",
            "GET /cr HTTP/1.1\r\nHost: edge.test\r\nX-Cr: a\rb\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/cr").value("x-cr", "a b"))),
        case("header-bare-lf-lines", "RFC 9112 §2.2 (LF may end a line)",
            "GET /lf HTTP/1.1\nHost: edge.test\nX-Lf: 1\n\n")
            .allow(reject(&[400]))
            .allow(ok(get("/lf").value("x-lf", "1"))),
        case("header-bare-lf-one-line", "RFC 9112 §2.2",
            "GET /lf1 HTTP/1.1\r\nHost: edge.test\nX-Lf: 1\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/lf1").value("x-lf", "1"))),
        case("header-space-before-colon", "RFC 9112 §5.1 (MUST 400)",
            "GET /sp-colon HTTP/1.1\r\nHost: edge.test\r\nX-Sp : 1\r\n\r\n")
            .allow(reject(&[400])),
        case("te-space-before-colon", "RFC 9112 §5.1 (MUST 400)",
            framed("POST /te-sp HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding : chunked\r\nContent-Length: {len}\r\n\r\n", CHUNKED_HELLO))
            .allow(reject(&[400])),
        case("header-tab-before-colon", "RFC 9112 §5.1 (MUST 400)",
            "GET /tab-colon HTTP/1.1\r\nHost: edge.test\r\nX-Tab\t: 1\r\n\r\n")
            .allow(reject(&[400])),
        case("header-name-delimiter", "RFC 9110 §5.1 (name is a token), RFC 9112 §2.2",
            "GET /name-paren HTTP/1.1\r\nHost: edge.test\r\nX(A): 1\r\n\r\n")
            .allow(reject(&[400])),
        case("header-name-space", "RFC 9110 §5.1, RFC 9112 §2.2",
            "GET /name-space HTTP/1.1\r\nHost: edge.test\r\nX A: 1\r\n\r\n")
            .allow(reject(&[400])),
        case("header-empty-name", "RFC 9110 §5.1, RFC 9112 §2.2",
            "GET /empty-name HTTP/1.1\r\nHost: edge.test\r\n: value\r\n\r\n")
            .allow(reject(&[400])),
        case("header-no-colon", "RFC 9112 §5, §2.2",
            "GET /no-colon HTTP/1.1\r\nHost: edge.test\r\nX-No-Colon\r\n\r\n")
            .allow(reject(&[400])),
        case("header-space-after-request-line", "RFC 9112 §2.2 (reject, or skip the line)",
            "GET /ws-line HTTP/1.1\r\n X-Ws: 1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/ws-line").absent("x-ws"))),
        case("header-obs-text", "RFC 9110 §5.5 (obs-text is a valid field-vchar)",
            b"GET /obs-text HTTP/1.1\r\nHost: edge.test\r\nX-Latin: caf\xe9\r\n\r\n")
            .allow(ok(get("/obs-text").value("x-latin", b"caf\xe9"))),
        // Sizes: forwarded intact, or refused with a 4xx; never cut.
        case("header-4k", "RFC 9110 §5.4",
            with_header("X-Big", &[b'a'; 4096]))
            .allow(ok(get("/big-header").value("x-big", [b'a'; 4096])))
            .allow(reject(&[400, 431])),
        case("header-64k", "RFC 9110 §5.4",
            with_header("X-Big", &[b'a'; 65536]))
            .allow(ok(get("/big-header").value("x-big", vec![b'a'; 65536])))
            .allow(reject(&[400, 431])),
        case("headers-120", "RFC 9110 §5.4",
            many_headers(120))
            .allow(ok(get("/many-headers").count("x-many-", 120)))
            .allow(reject(&[400, 431])),
        case("headers-1000", "RFC 9110 §5.4",
            many_headers(1000))
            .allow(ok(get("/many-headers").count("x-many-", 1000)))
            .allow(reject(&[400, 431])),

        // ---- Request line: RFC 9112 §3 ----
        // Methods are case-sensitive: `get` is some other method, never GET.
        case("method-lowercase", "RFC 9110 §9.1 (case-sensitive)",
            "get /lower HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(fwd("get", "/lower")))
            .allow(reject(&[400, 405, 501])),
        case("method-invalid-char", "RFC 9112 §3 (method is a token), §2.2",
            "G(T /paren HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 501])),
        case("version-missing", "RFC 9112 §3, §2.2",
            "GET /no-version\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 505])),
        case("version-2.0", "RFC 9110 §6.2, §15.6.6",
            "GET /v2 HTTP/2.0\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 505])),
        // A higher minor version is served as the highest one known, and sent on as the proxy's own.
        case("version-1.2", "RFC 9110 §2.5, §6.2",
            "GET /v12 HTTP/1.2\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/v12")))
            .allow(reject(&[505])),
        case("version-9.9", "RFC 9110 §2.5, §15.6.6",
            "GET /v99 HTTP/9.9\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 505])),
        case("version-lowercase", "RFC 9112 §2.3 (HTTP-name is case-sensitive)",
            "GET /vlower http/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("request-line-double-space", "RFC 9112 §3 (400, 301, or whitespace-delimited parsing)",
            "GET  /double-space HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/double-space").exact())),
        case("request-line-trailing-space", "RFC 9112 §3",
            "GET /trailing-space HTTP/1.1 \r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/trailing-space").exact())),
        case("request-line-tabs", "RFC 9112 §3",
            "GET\t/tabs\tHTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/tabs").exact())),
        case("target-with-space", "RFC 9112 §3, §3.2",
            "GET /a b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/a%20b").exact())),
        case("target-relative", "RFC 9112 §3.2 (origin-form starts with /)",
            "GET relative HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("target-with-nul", "RFC 9112 §3.2, §2.2",
            b"GET /a\0b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("target-with-fragment", "RFC 9112 §3.2 (no fragment in a request-target)",
            "GET /frag#x HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/frag").exact())),
        // Asterisk-form is for OPTIONS only; it is never turned into a path.
        case("options-asterisk", "RFC 9112 §3.2.4, RFC 9110 §9.3.7",
            "OPTIONS * HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(fwd("OPTIONS", "*").exact()))
            .allow(reject(&[200, 204, 400, 404, 405, 501])),
        case("get-asterisk", "RFC 9112 §3.2.4 (OPTIONS only)",
            "GET * HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("request-line-8000", "RFC 9112 §3 (8000 octets RECOMMENDED)",
            format!("GET {long_8000} HTTP/1.1\r\nHost: edge.test\r\n\r\n"))
            .allow(ok(get(&long_8000).exact()))
            .baseline(),
        case("target-64k", "RFC 9112 §3 (414 for a longer target than it wishes to parse)",
            format!("GET {long_64k} HTTP/1.1\r\nHost: edge.test\r\n\r\n"))
            .allow(ok(get(&long_64k).exact()))
            .allow(reject(&[414])),
        case("empty-line-before-request", "RFC 9112 §2.2 (SHOULD ignore one)",
            "\r\nGET /after-empty-line HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/after-empty-line"))),

        // ---- Absolute-form: RFC 9112 §3.2.2 ----
        // The target's authority wins over Host, and the upstream never sees the client's Host.
        case("absolute-form-other-host", "RFC 9112 §3.2.2",
            "GET http://other.example/abs HTTP/1.1\r\nHost: wrong.example\r\n\r\n")
            .allow(ok(get("/abs").host("other.example"))),
        case("absolute-form-with-port", "RFC 9112 §3.2.2",
            "GET http://other.example:8080/abs-port?q=1 HTTP/1.1\r\nHost: wrong.example\r\n\r\n")
            .allow(ok(get("/abs-port?q=1").host("other.example"))),
        case("absolute-form-empty-path", "RFC 9112 §3.2.1, RFC 9110 §7.1 (empty path is /)",
            "GET http://other.example HTTP/1.1\r\nHost: other.example\r\n\r\n")
            .allow(ok(get("/").exact().host("other.example"))),
        case("absolute-form-no-host", "RFC 9112 §3.2 (MUST 400 without Host)",
            "GET http://edge.test/abs-nohost HTTP/1.1\r\n\r\n")
            .allow(reject(&[400])),
        case("absolute-form-https", "RFC 9112 §3.2.2, RFC 9110 §15.5.20",
            "GET https://other.example/abs-https HTTP/1.1\r\nHost: other.example\r\n\r\n")
            .allow(ok(get("/abs-https").host("other.example")))
            .allow(reject(&[400, 421])),
        case("absolute-form-ftp", "RFC 9112 §3.2.2 (not an http URI)",
            "GET ftp://other.example/abs-ftp HTTP/1.1\r\nHost: other.example\r\n\r\n")
            .allow(reject(&[400, 421, 501])),
        case("absolute-form-userinfo", "RFC 9110 §4.2.4 (userinfo is an error)",
            "GET http://user:pw@other.example/abs-user HTTP/1.1\r\nHost: other.example\r\n\r\n")
            .allow(reject(&[400])),

        // ---- CONNECT and TRACE: refused, never forwarded, the connection still in step ----
        case("connect", "RFC 9110 §9.3.6",
            "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n")
            .then(When::AfterFinal, "GET /after-connect HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(refused().close())
            .allow(refused().then_ok(get("/after-connect"))),
        case("connect-origin-form", "RFC 9110 §9.3.6, RFC 9112 §3.2.3 (authority-form only)",
            "CONNECT /x HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .then(When::AfterFinal, "GET /after-connect HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(refused().close())
            .allow(refused().then_ok(get("/after-connect"))),
        case("trace", "RFC 9110 §9.3.8",
            "TRACE /trace HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .then(When::AfterFinal, "GET /after-trace HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(refused().close())
            .allow(refused().then_ok(get("/after-trace"))),

        // ---- Paths, catch-all route: the upstream gets an equivalent target (RFC 3986 §6.2.2) ----
        case("path-dot-dot", "RFC 3986 §5.2.4, §6.2.2.3", "GET /a/../b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/b"))),
        case("path-encoded-dot-dot", "RFC 3986 §2.3, §6.2.2.3", "GET /a/%2e%2e/b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/b"))),
        case("path-dot-encoded-dot", "RFC 3986 §2.3, §6.2.2.3", "GET /a/.%2E/b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/b"))),
        case("path-encoded-dots-mixed-case", "RFC 3986 §2.3, §6.2.2.3", "GET /a/%2E%2e/b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/b"))),
        case("path-dot", "RFC 3986 §5.2.4", "GET /a/./b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a/b"))),
        case("path-leading-dot-slash", "RFC 3986 §5.2.4", "GET /./c HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/c"))),
        case("path-trailing-dot-dot", "RFC 3986 §5.2.4", "GET /a/b/.. HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a/"))),
        // Above the root: rejected, or resolved at the root; never passed on for the upstream to climb.
        case("path-climb-root", "RFC 3986 §5.2.4", "GET /.. HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/").exact())),
        case("path-climb", "RFC 3986 §5.2.4", "GET /../x HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/x").exact())),
        case("path-climb-deep", "RFC 3986 §5.2.4", "GET /a/../../x HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/x").exact())),
        case("path-climb-encoded", "RFC 3986 §2.3, §5.2.4", "GET /%2e%2e/x HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/x").exact())),
        // Reserved characters escaped are data, not structure: %2F is not a slash (RFC 3986 §2.2).
        case("path-escaped-slash", "RFC 3986 §2.2, §6.2.2.2", "GET /a%2Fb HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a%2Fb"))),
        case("path-escaped-backslash", "RFC 3986 §2.2, §6.2.2.2", "GET /a%5Cb HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a%5Cb"))),
        case("path-escaped-percent", "RFC 3986 §2.4 (never decode twice)", "GET /a%2541 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a%2541"))),
        case("path-escaped-nul", "RFC 3986 §2.1", "GET /a%00b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400]))
            .allow(ok(get("/a%00b"))),
        case("path-invalid-escape", "RFC 3986 §2.1 (pct-encoded is % HEXDIG HEXDIG)", "GET /a%zzb HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("path-truncated-escape", "RFC 3986 §2.1", "GET /a%a HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("path-escaped-tilde", "RFC 3986 §2.3, §6.2.2.2", "GET /%7Euser HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/~user"))),
        case("path-escaped-letter", "RFC 3986 §2.3, §6.2.2.2", "GET /%41bc HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/Abc"))),
        case("path-lowercase-hex", "RFC 3986 §6.2.2.1", "GET /a%3ab HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a%3Ab"))),
        // Not equivalent under RFC 3986, but merging is a common gateway policy (nginx, Weir): both ways.
        case("path-double-slashes", "RFC 3986 §3.3", "GET //a//b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("//a//b").or("/a/b"))),
        case("path-backslash", "RFC 3986 §2 (not a URI character), RFC 9112 §3", "GET /a\\b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400, 301]))
            .allow(ok(get("/a%5Cb").exact())),
        case("query-untouched", "RFC 3986 §5.2.4 (paths only), §3.4", "GET /q/?x=/../y&z=%2e%2e HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/q/?x=/../y&z=.."))),
        case("path-escaped-question-mark", "RFC 3986 §2.2", "GET /a%3Fb?c HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/a%3Fb?c"))),

        // ---- Paths, route for /public only: nothing outside it may reach the upstream ----
        case("scope-dot-dot", "RFC 3986 §5.2.4", "GET /public/../admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])),
        case("scope-encoded-dot-dot", "RFC 3986 §2.3, §5.2.4", "GET /public/%2e%2e/admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])),
        case("scope-dot-encoded-dot", "RFC 3986 §2.3, §5.2.4", "GET /public/.%2E/admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])),
        case("scope-encoded-dots-mixed-case", "RFC 3986 §2.3, §5.2.4", "GET /public/%2E%2e/admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])),
        case("scope-climb", "RFC 3986 §5.2.4", "GET /public/../../admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])),
        case("scope-escaped-slash", "RFC 3986 §2.2 (one segment, inside /public)", "GET /public/..%2Fadmin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])).allow(ok(get("/public/..%2Fadmin"))),
        case("scope-escaped-backslash", "RFC 3986 §2.2", "GET /public/..%5Cadmin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])).allow(ok(get("/public/..%5Cadmin"))),
        case("scope-double-encoded", "RFC 3986 §2.4", "GET /public/%252e%252e/admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404])).allow(ok(get("/public/%252e%252e/admin"))),
        case("scope-backslash", "RFC 3986 §2, RFC 9112 §3", "GET /public/..\\admin HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(reject(&[400, 404, 301])).allow(ok(get("/public/..%5Cadmin").exact())),
        case("scope-inside", "RFC 3986 §5.2.4", "GET /public/a/../b HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .public().allow(ok(get("/public/b"))),

        // ---- Host: RFC 9112 §3.2 ----
        case("host-missing", "RFC 9112 §3.2 (MUST 400)", "GET /no-host HTTP/1.1\r\n\r\n")
            .allow(reject(&[400])),
        case("host-twice-same", "RFC 9112 §3.2 (MUST 400)",
            "GET /two-hosts HTTP/1.1\r\nHost: edge.test\r\nHost: edge.test\r\n\r\n")
            .allow(reject(&[400])),
        case("host-twice-different", "RFC 9112 §3.2 (MUST 400)",
            "GET /two-hosts HTTP/1.1\r\nHost: edge.test\r\nHost: other.example\r\n\r\n")
            .allow(reject(&[400])),
        case("host-with-space", "RFC 9112 §3.2 (MUST 400), RFC 3986 §3.2.2",
            "GET /host-space HTTP/1.1\r\nHost: a b\r\n\r\n")
            .allow(reject(&[400])),
        case("host-with-userinfo", "RFC 9112 §3.2 (MUST 400), RFC 9110 §7.2",
            "GET /host-at HTTP/1.1\r\nHost: a@b\r\n\r\n")
            .allow(reject(&[400])),
        case("host-two-ports", "RFC 9112 §3.2 (MUST 400), RFC 3986 §3.2",
            "GET /host-ports HTTP/1.1\r\nHost: edge.test:80:80\r\n\r\n")
            .allow(reject(&[400])),
        case("host-port-out-of-range", "RFC 9112 §3.2 (MUST 400), RFC 3986 §3.2.3",
            "GET /host-port HTTP/1.1\r\nHost: edge.test:99999\r\n\r\n")
            .allow(reject(&[400])),
        case("host-with-path", "RFC 9112 §3.2 (MUST 400)",
            "GET /host-path HTTP/1.1\r\nHost: edge.test/x\r\n\r\n")
            .allow(reject(&[400])),
        case("http-1.0-without-host", "RFC 9112 §3.2 (Host required in HTTP/1.1 only), §9.3",
            "GET /h10-nohost HTTP/1.0\r\n\r\n")
            .allow(ok(get("/h10-nohost").any_host()).close()),

        // ---- Persistence and pipelining: RFC 9112 §9 ----
        case("pipeline-2", "RFC 9112 §9.3.2",
            "GET /p1 HTTP/1.1\r\nHost: edge.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(oks(vec![get("/p1"), get("/p2")]))
            .baseline(),
        case("pipeline-3-with-bodies", "RFC 9112 §9.3.2",
            "GET /p1 HTTP/1.1\r\nHost: edge.test\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhelloGET /p3 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(oks(vec![get("/p1"), post("/p2").body("hello"), get("/p3")]))
            .baseline(),
        case("pipeline-chunked", "RFC 9112 §9.3.2, §7.1",
            framed("POST /p1 HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n", CHUNKED_HELLO)
                .into_iter().chain(*b"GET /p2 HTTP/1.1\r\nHost: edge.test\r\n\r\n").collect::<Vec<u8>>())
            .allow(oks(vec![post("/p1").body("hello"), get("/p2")]))
            .baseline(),
        case("connection-close", "RFC 9112 §9.6 (close, and process nothing after)",
            "GET /close HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/close")).close())
            .baseline(),
        case("connection-close-uppercase", "RFC 9110 §7.6.1 (options are case-insensitive), RFC 9112 §9.6",
            "GET /close-upper HTTP/1.1\r\nHost: edge.test\r\nConnection: CLOSE\r\n\r\nGET /after-close HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/close-upper")).close()),
        case("http-1.0-closes", "RFC 9112 §9.3",
            "GET /h10 HTTP/1.0\r\nHost: edge.test\r\n\r\nGET /after-h10 HTTP/1.0\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/h10")).close())
            .baseline(),
        case("http-1.0-keep-alive", "RFC 9112 §9.3",
            "GET /h10-ka HTTP/1.0\r\nHost: edge.test\r\nConnection: keep-alive\r\n\r\nGET /h10-ka2 HTTP/1.0\r\nHost: edge.test\r\n\r\n")
            .allow(oks(vec![get("/h10-ka").absent("keep-alive"), get("/h10-ka2")]).close())
            .allow(ok(get("/h10-ka").absent("keep-alive")).close()),
        case("expect-100-continue", "RFC 9110 §10.1.1",
            "POST /expect HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .then(When::AfterInterim, "hello")
            .allow(ok(post("/expect").body("hello")).after_continue())
            .baseline(),
        case("expect-unknown", "RFC 9110 §10.1.1 (417, or no effect)",
            "POST /expect-other HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\nhello")
            .allow(reject(&[417]))
            .allow(ok(post("/expect-other").body("hello"))),
        // An HTTP/1.0 client gets no 1xx: the suite checks that for every HTTP/1.0 case.
        case("expect-100-in-http-1.0", "RFC 9110 §10.1.1 (ignored in HTTP/1.0), §15.2",
            "POST /expect10 HTTP/1.0\r\nHost: edge.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            .allow(ok(post("/expect10").body("hello")).close()),

        // ---- Hop-by-hop fields: RFC 9110 §7.6.1 ----
        case("hop-connection-named", "RFC 9110 §7.6.1",
            "GET /hop HTTP/1.1\r\nHost: edge.test\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-Kept: yes\r\n\r\n")
            .allow(ok(get("/hop").absent("x-hop").lacks("connection", "x-hop").value("x-kept", "yes"))),
        case("hop-connection-two-lines", "RFC 9110 §7.6.1",
            "GET /hop2 HTTP/1.1\r\nHost: edge.test\r\nConnection: X-A\r\nConnection: x-b\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n")
            .allow(ok(get("/hop2").absent("x-a").absent("x-b").value("x-c", "3"))),
        case("hop-keep-alive-proxy-connection", "RFC 9110 §7.6.1",
            "GET /hop-ka HTTP/1.1\r\nHost: edge.test\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n")
            .allow(ok(get("/hop-ka").absent("keep-alive").absent("proxy-connection"))),
        case("hop-te", "RFC 9110 §7.6.1, §10.1.4",
            "GET /hop-te HTTP/1.1\r\nHost: edge.test\r\nTE: trailers, deflate\r\nConnection: TE\r\n\r\n")
            .allow(ok(get("/hop-te").lacks("te", "deflate"))),
        case("hop-trailer-named", "RFC 9110 §7.6.1",
            "GET /hop-trailer HTTP/1.1\r\nHost: edge.test\r\nTrailer: X-T\r\nConnection: Trailer\r\n\r\n")
            .allow(ok(get("/hop-trailer").absent("trailer"))),
        case("hop-upgrade", "RFC 9110 §7.6.1, §7.8",
            "GET /hop-upgrade HTTP/1.1\r\nHost: edge.test\r\nConnection: Upgrade\r\nUpgrade: example/1\r\n\r\n")
            .allow(ok(get("/hop-upgrade").absent("upgrade"))),
        // Named in Connection, the client's X-Forwarded-For goes; the proxy's own entry stays.
        case("hop-connection-names-xff", "RFC 9110 §7.6.1",
            "GET /hop-xff HTTP/1.1\r\nHost: edge.test\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
            .allow(ok(get("/hop-xff").xff(&["127.0.0.1"]))),

        // ---- X-Forwarded-For: the client's hops kept, the real peer last ----
        case("xff-added", "RFC 7239 §5.2 (by analogy; X-Forwarded-For is not standardised)",
            "GET /xff0 HTTP/1.1\r\nHost: edge.test\r\n\r\n")
            .allow(ok(get("/xff0").xff(&["127.0.0.1"])))
            .baseline(),
        case("xff-appended", "RFC 7239 §5.2 (by analogy)",
            "GET /xff1 HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
            .allow(ok(get("/xff1").xff(&["203.0.113.7", "127.0.0.1"])))
            .baseline(),
        case("xff-list-appended", "RFC 7239 §5.2 (by analogy)",
            "GET /xff2 HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.9\r\n\r\n")
            .allow(ok(get("/xff2").xff(&["203.0.113.7", "198.51.100.9", "127.0.0.1"]))),
        // Two lines are one list (RFC 9110 §5.3): both kept, in order, before the real peer.
        case("xff-two-lines", "RFC 9110 §5.3",
            "GET /xff3 HTTP/1.1\r\nHost: edge.test\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n")
            .allow(ok(get("/xff3").xff(&["203.0.113.7", "198.51.100.9", "127.0.0.1"]))),
    ]
}

/// Judges one case: the invariants first, then whether any allowed outcome matches.
fn judge(case: &Case, ex: &Exchange, seen: &[Seen]) -> Result<(), String> {
    let mut problems = Vec::new();
    for s in seen {
        if let Some(fault) = &s.fault {
            problems.push(format!("the upstream got a malformed message ({fault})"));
        }
    }
    let complete: Vec<&Seen> = seen
        .iter()
        .filter(|s| !s.aborted && s.fault.is_none())
        .collect();
    let aborted = seen.iter().filter(|s| s.aborted).count();
    for s in &complete {
        // Only the last hop is the proxy's own word; anything before it came from the client.
        if forwarded_for(s).last().map(String::as_str) != Some("127.0.0.1") {
            problems.push(format!(
                "X-Forwarded-For does not end with the real peer: {:?}",
                forwarded_for(s)
            ));
        }
    }
    if case.http10() && ex.responses.iter().any(|r| r.status < 200) {
        problems.push("a 1xx sent to an HTTP/1.0 client (RFC 9110 §15.2)".into());
    }
    if let Some(garbage) = &ex.garbage {
        problems.push(format!("bytes that are no HTTP response: {garbage}"));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut reasons = Vec::new();
    for outcome in &case.allow {
        match outcome.matches(ex, &complete, aborted) {
            Ok(()) => return Ok(()),
            Err(why) => reasons.push(why),
        }
    }
    Err(reasons.join(" | or: "))
}

impl Outcome {
    fn matches(&self, ex: &Exchange, complete: &[&Seen], aborted: usize) -> Result<(), String> {
        let finals = ex.finals();
        let statuses: Vec<u16> = finals.iter().map(|r| r.status).collect();
        if self.silence {
            if !finals.is_empty() {
                return Err(format!("expected no response, got {statuses:?}"));
            }
        } else {
            let fits = statuses.len() == self.finals.len()
                && statuses
                    .iter()
                    .zip(&self.finals)
                    .all(|(s, allowed)| allowed.contains(s));
            if !fits {
                return Err(format!(
                    "expected statuses {}, got {statuses:?}",
                    self.finals
                        .iter()
                        .map(|a| statuses_text(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // A 200 the proxy made up is not the upstream's answer.
            for (response, allowed) in finals.iter().zip(&self.finals) {
                if allowed == &[200] && response.body != b"ok" {
                    return Err(format!(
                        "a 200 whose body is {}, not the upstream's",
                        show(&response.body, 40)
                    ));
                }
            }
        }
        if self.continue_first && ex.responses.first().is_none_or(|r| r.status != 100) {
            return Err("no 100 Continue before the final response".into());
        }
        if self.close && !ex.closed {
            return Err("the connection was left open".into());
        }
        if aborted > 0 && !self.aborted_ok {
            return Err(format!(
                "{aborted} request(s) abandoned half-sent to the upstream"
            ));
        }
        if complete.len() != self.forwarded.len() {
            return Err(format!(
                "the upstream got {} complete request(s), expected {}",
                complete.len(),
                self.forwarded.len()
            ));
        }
        for (i, (want, got)) in self.forwarded.iter().zip(complete).enumerate() {
            want.verify(got)
                .map_err(|e| format!("upstream request {}: {e}", i + 1))?;
        }
        Ok(())
    }
}

fn statuses_text(allowed: &[u16]) -> String {
    if allowed.len() > 20 {
        "4xx/501".into()
    } else {
        format!("{allowed:?}")
    }
}

struct Proxy {
    name: &'static str,
    all: SocketAddr,
    public: SocketAddr,
}

struct Score {
    passed: usize,
    total: usize,
    /// Each miss: name, RFC section and the whole story.
    misses: Vec<(&'static str, String)>,
    baseline_misses: Vec<&'static str>,
}

fn run(proxy: &Proxy, recorder: &Recorder) -> Score {
    let cases = cases();
    let mut score = Score {
        passed: 0,
        total: cases.len(),
        misses: Vec::new(),
        baseline_misses: Vec::new(),
    };
    // EDGE_VERBOSE=1 also shows what each passing case got.
    let verbose = std::env::var_os("EDGE_VERBOSE").is_some();
    for case in &cases {
        assert!(!case.allow.is_empty(), "{} allows nothing", case.name);
        let mark = recorder.mark();
        let addr = match case.scope {
            Scope::All => proxy.all,
            Scope::Public => proxy.public,
        };
        let ex = exchange(addr, &case.sends, &case.plan());
        let seen = recorder.settle(mark);
        match judge(case, &ex, &seen) {
            Ok(()) => {
                score.passed += 1;
                if verbose {
                    println!("pass [{}] {}: {}", proxy.name, case.name, ex.summary());
                }
            }
            Err(why) => {
                let sent: Vec<u8> = case.sends.iter().flat_map(|(_, b)| b.clone()).collect();
                let upstream = if seen.is_empty() {
                    "nothing".to_owned()
                } else {
                    seen.iter()
                        .map(Seen::summary)
                        .collect::<Vec<_>>()
                        .join("\n              ")
                };
                score.misses.push((
                    case.name,
                    format!(
                        "[{}] {} ({})\n    sent:     {}\n    got:      {}\n    upstream: {upstream}\n    why:      {why}",
                        proxy.name,
                        case.name,
                        case.rfc,
                        show(&sent, 300),
                        ex.summary()
                    ),
                ));
                if case.baseline {
                    score.baseline_misses.push(case.name);
                }
            }
        }
    }
    score
}

/// Both scores on one line once both runs are done (the two tests run in parallel, in one process).
static SCORES: Mutex<[Option<(usize, usize)>; 2]> = Mutex::new([None, None]);

fn report(slot: usize, score: &Score) {
    let mut scores = SCORES.lock().unwrap_or_else(|e| e.into_inner());
    scores[slot] = Some((score.passed, score.total));
    match *scores {
        [Some((w, n)), Some((g, m))] => println!("edge suite: weir {w}/{n}, nginx {g}/{m}"),
        _ => println!(
            "edge suite: {} {}/{} (the other run is not done)",
            ["weir", "nginx"][slot],
            score.passed,
            score.total
        ),
    }
}

fn weir_config(recorder: SocketAddr, prefix: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = false\nlog_level = \"warn\"\n\
         [upstreams.recorder]\nurl = \"http://{recorder}\"\npreserve_host = true\n\
         [[routes]]\nname = \"edge\"\npath_prefix = \"{prefix}\"\nupstream = \"recorder\"\n"
    )
}

/// nginx as it is usually put in front of an application: HTTP/1.1 and keep-alive to the upstream, the
/// client's Host passed on, X-Forwarded-For appended.
fn nginx_config(recorder: SocketAddr, all: u16, public: u16) -> String {
    support::raw::nginx_http(&format!(
        r#"    upstream recorder {{ server {recorder}; keepalive 16; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    server {{
        listen 127.0.0.1:{all};
        location / {{ proxy_pass http://recorder; }}
    }}
    server {{
        listen 127.0.0.1:{public};
        location = /public {{ proxy_pass http://recorder; }}
        location /public/ {{ proxy_pass http://recorder; }}
        location / {{ return 404; }}
    }}
"#
    ))
}

#[test]
fn weir_answers_hostile_http1_as_the_rfcs_require() {
    let recorder = Recorder::start();
    let all = Weir::start(&weir_config(recorder.addr, "/"));
    let public = Weir::start(&weir_config(recorder.addr, "/public"));
    let proxy = Proxy {
        name: "weir",
        all: all.addr,
        public: public.addr,
    };
    let score = run(&proxy, &recorder);
    for (_, story) in &score.misses {
        println!("MISS {story}");
    }
    report(0, &score);
    let names: Vec<&str> = score.misses.iter().map(|(name, _)| *name).collect();
    let known: Vec<&str> = WEIR_KNOWN_MISSES.iter().map(|(name, _)| *name).collect();
    assert!(
        names == known,
        "weir missed {} of {} edge cases: {names:?} (details above); the known misses are {known:?}",
        score.misses.len(),
        score.total
    );
}

/// The cases Weir misses on purpose, and why. The test fails when one starts passing, so the list stays
/// true.
const WEIR_KNOWN_MISSES: &[(&str, &str)] = &[(
    "version-1.2",
    "hyper 1's parser (httparse) takes only HTTP/1.0 and HTTP/1.1 and answers 400 before Weir sees the \
     request; RFC 9110 §2.5 says a server SHOULD serve it as 1.1. Not worth a fork of the parser.",
)];

#[test]
fn nginx_for_comparison() {
    let recorder = Recorder::start();
    let (all, public) = (free_port(), free_port());
    let nginx = Nginx::start(&nginx_config(recorder.addr, all, public), &[all, public]);
    let proxy = Proxy {
        name: "nginx",
        all: SocketAddr::from(([127, 0, 0, 1], all)),
        public: SocketAddr::from(([127, 0, 0, 1], public)),
    };
    let score = run(&proxy, &recorder);
    for (_, story) in &score.misses {
        println!("MISS {story}");
    }
    let names: Vec<&str> = score.misses.iter().map(|(name, _)| *name).collect();
    println!("nginx misses: {names:?}");
    report(1, &score);
    // nginx's own misses are its business; a valid request it cannot serve means the harness is wrong.
    assert!(
        score.baseline_misses.is_empty(),
        "nginx failed valid requests {:?}: the harness is broken\n{}",
        score.baseline_misses,
        nginx.error_log()
    );
}
