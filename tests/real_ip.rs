//! `[server.real_ip]`: the client behind the proxies in front, read from `X-Forwarded-For`, through the
//! real binary; each case also goes to nginx's realip module with `real_ip_recursive on`, and where the two
//! differ the difference is named and asserted.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::raw::{Nginx, free_port, show};
use support::{Echo, Weir, exchange_from, logged_clients, upstream};

/// The proxies both servers trust.
const PROXIES: [&str; 3] = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"];
/// A client connecting from an address no proxy has.
const STRANGER: &str = "127.0.0.2";

/// What plugins are told of the client, as the upstream then sees it.
const CLIENT_TO_HEADER: &str = "[[routes.plugins]]\nplugin = \"headers\"\n\
    config.request = { remove = [\"x-client\"], set = { \"x-client\" = \"{client_addr}\" } }\n";

fn config(upstream: SocketAddr, server: &str, chain: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"json\"\n{server}\
         [upstreams.e]\nurl = \"http://{upstream}\"\n[[routes]]\nupstream = \"e\"\n{chain}"
    )
}

fn real_ip(from: &[&str]) -> String {
    let quoted: Vec<String> = from.iter().map(|p| format!("\"{p}\"")).collect();
    format!("[server.real_ip]\nfrom = [{}]\n", quoted.join(", "))
}

/// One request from `from` to `to` with `head` (header lines, each ending in CRLF) in its head: the status
/// and the body.
async fn ask(to: SocketAddr, from: &str, head: &[u8]) -> (u16, Vec<u8>) {
    ask_after(to, from, b"", head).await
}

/// [`ask`], with `preface` written before the request.
async fn ask_after(to: SocketAddr, from: &str, preface: &[u8], head: &[u8]) -> (u16, Vec<u8>) {
    let mut request = preface.to_vec();
    request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    request.extend_from_slice(head);
    request.extend_from_slice(b"\r\n");
    let response = exchange_from(to, from, &request).await;
    (response.status, response.body)
}

/// Each of `lines` as an `X-Forwarded-For` line.
fn xff(lines: &[&[u8]]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| [b"X-Forwarded-For: ", *line, b"\r\n"].concat())
        .collect()
}

/// The clients of the access log, once it has `lines` (it is written off the request's path).
async fn logged(weir: &Weir, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while logged_clients(&weir.log()).len() < lines && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    logged_clients(&weir.log())
}

struct Case {
    name: &'static str,
    from: &'static str,
    lines: &'static [&'static [u8]],
    client: &'static str,
}

const fn case(name: &'static str, lines: &'static [&'static [u8]], client: &'static str) -> Case {
    Case {
        name,
        from: "127.0.0.1",
        lines,
        client,
    }
}

/// Cases from RFC 9110 §5.3 and §5.6.1 (lines are one list; empty elements and OWS), the forms proxies
/// write (a port, a bracketed IPv6 address) and what a client may write to pass for another.
const CASES: &[Case] = &[
    case("no header: the peer", &[], "127.0.0.1"),
    case("one client", &[b"192.0.2.7"], "192.0.2.7"),
    case(
        "a trusted hop after the client",
        &[b"192.0.2.7, 10.1.2.3"],
        "192.0.2.7",
    ),
    case(
        "an address the client wrote, left of its own",
        &[b"1.1.1.1, 192.0.2.7, 10.1.2.3"],
        "192.0.2.7",
    ),
    case(
        "every hop trusted: the leftmost",
        &[b"10.0.0.9, 10.1.2.3"],
        "10.0.0.9",
    ),
    case(
        "two lines are one list",
        &[b"1.1.1.1, 192.0.2.7", b"10.1.2.3"],
        "192.0.2.7",
    ),
    case(
        "an untrusted address in the last line",
        &[b"192.0.2.7", b"198.51.100.9"],
        "198.51.100.9",
    ),
    case(
        "empty elements and a leading comma",
        &[b", 192.0.2.7,, 10.0.0.5 ,"],
        "192.0.2.7",
    ),
    case("a port", &[b"192.0.2.7:5555"], "192.0.2.7"),
    case("IPv6", &[b"2001:db9::1"], "2001:db9::1"),
    case(
        "a trusted bracketed IPv6 hop with a port",
        &[b"198.51.100.1, [2001:db8::7]:443"],
        "198.51.100.1",
    ),
    case(
        "not an address: the peer",
        &[b"192.0.2.7, unknown"],
        "127.0.0.1",
    ),
    case(
        "not an address behind a trusted hop: the hop",
        &[b"unknown, 10.0.0.5"],
        "10.0.0.5",
    ),
    case("port 0", &[b"192.0.2.7, 192.0.2.8:0"], "127.0.0.1"),
    case("a port past 65535", &[b"192.0.2.8:65536"], "127.0.0.1"),
    case("a port and no address", &[b":80"], "127.0.0.1"),
    case("a name", &[b"client.example"], "127.0.0.1"),
    case("a zone", &[b"fe80::1%eth0"], "127.0.0.1"),
    case("garbage after a bracket", &[b"[2001:db9::1]x"], "127.0.0.1"),
    case("bracketed IPv4", &[b"[192.0.2.7]"], "127.0.0.1"),
    case("quoted", &[b"\"192.0.2.7\""], "127.0.0.1"),
    case("bytes past ASCII", &[b"192.0.2.7, \xff\xfe"], "127.0.0.1"),
    case(
        "an address in RFC 7239's form",
        &[b"for=192.0.2.7"],
        "127.0.0.1",
    ),
    Case {
        name: "from a peer no proxy has, the header is not read",
        from: STRANGER,
        lines: &[b"192.0.2.7"],
        client: STRANGER,
    },
    // Where nginx differs (see `NGINX_DIFFERS`).
    case(
        "a tab between elements",
        &[b"192.0.2.7,\t10.0.0.5"],
        "192.0.2.7",
    ),
    case(
        "an empty line between two",
        &[b"192.0.2.7", b"", b"10.0.0.5"],
        "192.0.2.7",
    ),
    case("IPv4 written as IPv6", &[b"::ffff:192.0.2.7"], "192.0.2.7"),
    case("a leading zero", &[b"010.0.0.1"], "127.0.0.1"),
    case(
        "a space between elements",
        &[b"192.0.2.7 10.0.0.5"],
        "127.0.0.1",
    ),
    case("bracketed IPv6", &[b"[2001:db9::1]"], "2001:db9::1"),
];

/// The cases nginx 1.22 answers otherwise, with what it finds.
const NGINX_DIFFERS: &[(&str, &str)] = &[
    // RFC 9110 §5.6.1: OWS is spaces and tabs; nginx splits on spaces, so `\t10.0.0.5` is not an address.
    ("a tab between elements", "127.0.0.1"),
    // §5.3: lines are one list joined by commas, where an empty element is skipped; nginx stops there.
    ("an empty line between two", "10.0.0.5"),
    // Weir names an IPv4 client as IPv4 everywhere, as the config's entries are written.
    ("IPv4 written as IPv6", "::ffff:192.0.2.7"),
    // `inet_aton` reads `010` as 8, nginx as 10: an address two readers take apart is not believed.
    ("a leading zero", "10.0.0.1"),
    // RFC 9110 §5.6.1 separates list elements by commas; nginx takes a space as one too.
    ("a space between elements", "192.0.2.7"),
    // nginx 1.22 takes a bracketed address only before a port; a proxy may write one without.
    ("bracketed IPv6", "127.0.0.1"),
];

fn nginx_config(port: u16) -> String {
    let from: String = PROXIES
        .iter()
        .map(|p| format!("        set_real_ip_from {p};\n"))
        .collect();
    support::raw::nginx_http(&format!(
        "    server {{\n        listen 127.0.0.1:{port};\n{from}\
         \x20       real_ip_header X-Forwarded-For;\n        real_ip_recursive on;\n\
         \x20       location / {{ return 200 \"$remote_addr\"; }}\n    }}\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_the_one_nginx_finds_behind_the_same_proxies() {
    let e = upstream("e").await;
    let weir = Weir::start(&config(e, &real_ip(&PROXIES), CLIENT_TO_HEADER));
    let port = free_port();
    let nginx = Nginx::start(&nginx_config(port), &[port]);
    let nginx_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let (mut misses, mut differences) = (Vec::new(), Vec::new());
    for case in CASES {
        let head = xff(case.lines);
        let (status, body) = ask(weir.addr, case.from, &head).await;
        assert_eq!(status, 200, "{}: {}", case.name, show(&body, 300));
        let echo = Echo(serde_json::from_slice(&body).expect("the echo's JSON"));
        if echo.header("x-client") != [case.client] {
            misses.push(format!(
                "{}: {:?}, wanted {}",
                case.name,
                echo.header("x-client"),
                case.client
            ));
        }
        // The upstream hears of the hop Weir saw, after what the proxies wrote: the chain is kept whole.
        let forwarded = echo.header("x-forwarded-for").join(", ");
        let hop = forwarded.rsplit(", ").next().unwrap_or_default();
        assert_eq!(hop, case.from, "{}: {forwarded}", case.name);

        let (status, body) = ask(nginx_addr, case.from, &head).await;
        assert_eq!(status, 200, "{}: nginx {}", case.name, show(&body, 300));
        let by_nginx = String::from_utf8_lossy(&body).into_owned();
        let expected = NGINX_DIFFERS
            .iter()
            .find(|(name, _)| *name == case.name)
            .map_or(case.client, |(_, client)| client);
        if by_nginx != expected {
            differences.push(format!(
                "{}: nginx {by_nginx}, wanted {expected}",
                case.name
            ));
        }
    }
    assert!(misses.is_empty(), "{misses:#?}\n{}", weir.log());
    assert!(
        differences.is_empty(),
        "{differences:#?}\n{}",
        nginx.error_log()
    );
    // The access log names the client found, as it would the peer.
    let wanted: Vec<&str> = CASES.iter().map(|c| c.client).collect();
    assert_eq!(logged(&weir, wanted.len()).await, wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_tcp_balancer_the_proxy_protocol_names_the_hop_and_the_header_the_client() {
    let e = upstream("e").await;
    let server = format!(
        "[server.proxy_protocol]\nfrom = [\"127.0.0.1\"]\n{}",
        real_ip(&["10.0.0.0/8"])
    );
    // No chain: the request goes the way that streams straight through.
    let weir = Weir::start(&config(e, &server, ""));
    let cases = [("10.0.0.5", "192.0.2.7"), ("198.51.100.9", "198.51.100.9")];
    for (named, _) in cases {
        let proxy = format!("PROXY TCP4 {named} 127.0.0.1 4000 80\r\n");
        let (status, body) = ask_after(
            weir.addr,
            "127.0.0.1",
            proxy.as_bytes(),
            &xff(&[b"192.0.2.7"]),
        )
        .await;
        assert_eq!(status, 200, "{}", show(&body, 300));
        let echo = Echo(serde_json::from_slice(&body).expect("the echo's JSON"));
        assert_eq!(
            echo.header("x-forwarded-for"),
            [format!("192.0.2.7, {named}")]
        );
    }
    let wanted: Vec<&str> = cases.iter().map(|(_, client)| *client).collect();
    assert_eq!(logged(&weir, wanted.len()).await, wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_the_client_found_and_a_reload_applies_at_once() {
    let e = upstream("e").await;
    let limited = "[[routes.plugins]]\nplugin = \"rate-limit\"\ngrants.store = true\n\
        config = { limits = [{ rate = \"1/m\" }] }\n";
    let weir = Weir::start(&config(e, "", limited));
    let status = |client: &'static str| {
        let addr = weir.addr;
        async move { ask(addr, "127.0.0.1", &xff(&[client.as_bytes()])).await.0 }
    };
    // Unnamed, the proxy is the client: one quota for everyone behind it.
    assert_eq!(status("192.0.2.1").await, 200);
    assert_eq!(status("192.0.2.2").await, 429);

    std::fs::write(
        weir.config_file(),
        config(e, &real_ip(&["127.0.0.1"]), limited),
    )
    .expect("write the config");
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("generation=2"), "{}", weir.log());
    assert_eq!(status("192.0.2.3").await, 200);
    assert_eq!(status("192.0.2.4").await, 200);
    assert_eq!(status("192.0.2.3").await, 429);
}

#[test]
fn weir_check_names_the_field_of_a_bad_entry() {
    let mut said = String::new();
    for real_ip in [
        r#"from = ["10.0.0.1/8"]"#,
        "from = []",
        "from = [\"10.0.0.0/8\"]\nheader = \"x forwarded\"",
        "from = [\"10.0.0.0/8\"]\nheader = \"Forwarded\"",
    ] {
        let out = support::check(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.real_ip]\n{real_ip}\n\
             [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n"
        ));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        said.push_str(&support::report(&out));
    }
    support::golden("check-real-ip.txt", &said);
}
