//! TLS on the listener through the real binary and curl: a certificate chosen by SNI from a CA the test makes
//! (rcgen), the default one for other names, a wildcard entry beside an exact name, h2 by ALPN, TLS 1.2,
//! `X-Forwarded-Proto: https` on both forwarding paths, a reload that swaps the certificates, a stalled
//! handshake closed within `header_read_timeout`, and `weir check` on a certificate that is missing and on
//! wildcards no name can match; client certificates (mutual TLS), required or optional, checked against
//! `client_ca` and forwarded as `X-Forwarded-Client-Cert`, and a client's own such header never; a reload
//! that changes that check checks each connection's client again and ends the connections of those it
//! refuses, as does a client certificate or its CA expiring while its connection is open; a CA out of its
//! dates refused as nginx refuses it, and its renewal beside it let in; each file's expiry in `/metrics`,
//! and a stale revocation list warned of.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Output, Stdio};

use pki::Pki;
use support::{Weir, check, golden, report, upstream};

/// `a.test` by default, `b.test` by SNI; `/chain` runs a plugin, `/` forwards with an empty chain.
fn config(pki: &Pki, upstream: std::net::SocketAddr, b_cn: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[server.tls]
cert = "{a}"
key = "{a_key}"
[[server.tls.sni]]
names = ["b.test"]
cert = "{b}"
key = "{b_key}"
[upstreams.e]
url = "http://{upstream}"
[[routes]]
path_prefix = "/chain"
upstream = "e"
[[routes.plugins]]
plugin = "headers"
config.request = {{ set = {{ "x-chain" = "1" }} }}
[[routes]]
upstream = "e"
"#,
        a = pki.path("a.pem"),
        a_key = pki.path("a.key"),
        b = pki.path(&format!("{b_cn}.pem")),
        b_key = pki.path(&format!("{b_cn}.key")),
    )
}

/// curl to `https://NAME:PORT/PATH` resolved to Weir, trusting the test CA; `-v` so that stderr shows the
/// certificate's subject and the protocol.
fn curl(pki: &Pki, weir: &Weir, name: &str, path: &str, args: &[&str]) -> Output {
    let port = weir.addr.port();
    Command::new("curl")
        .args(["-sS", "-v", "--cacert", &pki.path("ca.pem")])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("run curl")
}

/// The status and HTTP version curl reports, the body, and its verbose log.
fn parts(out: &Output) -> (String, String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl failed: {stderr}");
    let (body, last) = stdout.rsplit_once('\n').expect("the -w line");
    (last.to_owned(), body.to_owned(), stderr)
}

/// The values of header `name` the echo upstream received.
fn echoed(body: &str, name: &str) -> Vec<String> {
    support::Echo(serde_json::from_str(body).expect("the echo's JSON")).header(name)
}

fn subject_cn(verbose: &str) -> Option<String> {
    let subject = verbose.lines().find(|l| l.contains("subject:"))?;
    let (_, cn) = subject.split_once("CN=")?;
    Some(cn.split([',', ';', ' ']).next()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_name_gets_its_certificate_over_h1_h2_and_tls12() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    pki.leaf("b.test", "b");
    let echo = upstream("e").await;
    let weir = Weir::start(&config(&pki, echo, "b"));
    let (pki, weir) = (&pki, &weir);
    tokio::task::block_in_place(|| {
        for (name, cn) in [("a.test", "a"), ("b.test", "b")] {
            let (status, body, verbose) = parts(&curl(pki, weir, name, "/", &["--http1.1"]));
            assert_eq!(status, "200 1.1", "{verbose}");
            assert_eq!(subject_cn(&verbose).as_deref(), Some(cn), "{verbose}");
            assert_eq!(echoed(&body, "x-forwarded-proto"), ["https"]);
        }
        // A name no `sni` entry has gets the default certificate (and curl refuses it: it is a.test's).
        let other = curl(pki, weir, "c.test", "/", &[]);
        assert!(!other.status.success());
        assert!(String::from_utf8_lossy(&other.stderr).contains("CN=a"));

        let (status, body, _) = parts(&curl(pki, weir, "b.test", "/chain", &["--http2"]));
        assert_eq!(status, "200 2");
        assert_eq!(echoed(&body, "x-forwarded-proto"), ["https"]);
        assert_eq!(echoed(&body, "x-chain"), ["1"]);

        let tls12 = ["--http1.1", "--tlsv1.2", "--tls-max", "1.2"];
        let (status, _, verbose) = parts(&curl(pki, weir, "a.test", "/", &tls12));
        assert_eq!(status, "200 1.1");
        assert!(verbose.contains("TLSv1.2"), "{verbose}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_entry_serves_one_label_and_an_exact_name_wins() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    pki.leaf("b.test", "b");
    pki.leaf("*.example.test", "wild");
    pki.leaf("a.example.test", "exact");
    let echo = upstream("e").await;
    // The wildcard entry first: the exact name must win by being exact, not by its place.
    let entries = format!(
        "[[server.tls.sni]]\nnames = [\"*.example.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[server.tls.sni]]\nnames = [\"a.example.test\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [upstreams.e]\n",
        pki.path("wild.pem"),
        pki.path("wild.key"),
        pki.path("exact.pem"),
        pki.path("exact.key"),
    );
    let weir = Weir::start(&config(&pki, echo, "b").replacen("[upstreams.e]\n", &entries, 1));
    let (pki, weir) = (&pki, &weir);
    tokio::task::block_in_place(|| {
        for (name, cn) in [("a.example.test", "exact"), ("b.example.test", "wild")] {
            let (status, _, verbose) = parts(&curl(pki, weir, name, "/", &[]));
            assert!(status.starts_with("200"), "{name}: {verbose}");
            assert_eq!(
                subject_cn(&verbose).as_deref(),
                Some(cn),
                "{name}: {verbose}"
            );
        }
        // RFC 6125 §6.4.3: `*` stands for exactly one label, so neither two labels nor none match; those
        // names get the default certificate, which curl refuses.
        for name in ["x.b.example.test", "example.test"] {
            let out = curl(pki, weir, name, "/", &[]);
            let verbose = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name}: {verbose}");
            assert!(verbose.contains("CN=a"), "{name}: {verbose}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificates() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    pki.leaf("b.test", "b");
    pki.leaf("b.test", "b2");
    let echo = upstream("e").await;
    let weir = Weir::start(&config(&pki, echo, "b"));
    std::fs::write(weir.config_file(), config(&pki, echo, "b2")).expect("rewrite the config");
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    let (pki, weir) = (&pki, &weir);
    tokio::task::block_in_place(|| {
        let (status, _, verbose) = parts(&curl(pki, weir, "b.test", "/", &[]));
        assert!(status.starts_with("200"));
        assert_eq!(subject_cn(&verbose).as_deref(), Some("b2"), "{verbose}");
    });
}

#[test]
fn check_names_a_missing_certificate_and_its_field() {
    // Relative to the config file, as every path in it is.
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n\
                [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n";
    let out = check(text);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    // The file is named with the config's directory, a temporary one: taken out.
    let mut seen = String::new();
    for line in report(&out).lines() {
        let line = match (line.find("cannot read /"), line.rfind('/')) {
            (Some(at), Some(slash)) => format!("{}cannot read {}", &line[..at], &line[slash + 1..]),
            _ => line.to_owned(),
        };
        seen.push_str(&line);
        seen.push('\n');
    }
    golden("check-listener-tls.txt", &seen);
}

#[test]
fn check_refuses_a_wildcard_that_is_not_a_whole_first_label() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    let entry = |names: &str| {
        format!(
            "[[server.tls.sni]]\nnames = {names}\ncert = \"{}\"\nkey = \"{}\"\n",
            pki.path("a.pem"),
            pki.path("a.key")
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{}{}{}{}\
         [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n",
        pki.path("a.pem"),
        pki.path("a.key"),
        entry(r#"["ok.test", "a*.example.test"]"#),
        entry(r#"["*"]"#),
        entry(r#"["*.*.test"]"#),
        entry(r#"["*.good.test", "good.test"]"#),
    );
    let out = check(&text);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    golden("check-sni-names.txt", &report(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_comes_is_closed_within_header_read_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    pki.leaf("b.test", "b");
    let echo = upstream("e").await;
    let text = config(&pki, echo, "b").replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nheader_read_timeout = \"300ms\"\n",
        1,
    );
    let weir = Weir::start(&text);
    let mut socket = tokio::net::TcpStream::connect(weir.addr)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // Nothing sent, nothing answered: the server closes (EOF or a reset) once the timeout has passed.
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // The next connection is served.
    let (pki, weir) = (&pki, &weir);
    tokio::task::block_in_place(|| {
        let (status, _, _) = parts(&curl(pki, weir, "a.test", "/", &[]));
        assert!(status.starts_with("200"));
    });
}

/// The listener of `config` asking clients for a certificate from `clients`' CA, `mode` being
/// `client_cert`'s value (or none, for the default).
fn mutual(pki: &Pki, clients: &Pki, upstream: std::net::SocketAddr, mode: Option<&str>) -> String {
    let mut entry = format!("client_ca = \"{}\"\n", clients.path("ca.pem"));
    if let Some(mode) = mode {
        entry.push_str(&format!("client_cert = \"{mode}\"\n"));
    }
    config(pki, upstream, "b").replacen(
        "[[server.tls.sni]]\n",
        &(entry + "[[server.tls.sni]]\n"),
        1,
    )
}

/// The listener of `mutual`, requiring a certificate, with `clients`' revocation list (`crl.pem`).
fn revocable(pki: &Pki, clients: &Pki, upstream: std::net::SocketAddr) -> String {
    let list = format!("client_crl = \"{}\"\n", clients.path("crl.pem"));
    mutual(pki, clients, upstream, None).replacen("client_ca = ", &(list + "client_ca = "), 1)
}

/// The listener's CA with its `a.test` and `b.test` leaves, and a clients' CA with a certificate for each
/// of `names` (`spiffe://weir.test/NAME` and `NAME.test`; serial numbers 1, 2, … in order).
fn pkis(names: &[&str]) -> (Pki, Pki) {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    pki.leaf("b.test", "b");
    let clients = Pki::new();
    for name in names {
        clients.client(
            name,
            &format!("spiffe://weir.test/{name}"),
            &format!("{name}.test"),
        );
    }
    (pki, clients)
}

/// What `X-Forwarded-Client-Cert` must say of client `name` of `clients`: its certificate's SHA-256, its
/// subject as RFC 4514 writes it (the last RDN first), and its names.
fn expected_xfcc(clients: &Pki, name: &str) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(clients.path(&format!("{name}.pem")))
        .expect("the client certificate");
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "Hash={hash};Subject=\"CN={name},O=Weir tests\";URI=spiffe://weir.test/{name};DNS={name}.test"
    )
}

/// curl's arguments to show the client certificate `cn` of `clients`, and to send a forged header beside it.
fn showing(clients: &Pki, cn: &str) -> [String; 6] {
    [
        "--cert".into(),
        clients.path(&format!("{cn}.pem")),
        "--key".into(),
        clients.path(&format!("{cn}.key")),
        "-H".into(),
        "X-Forwarded-Client-Cert: Hash=forged;Subject=\"CN=admin\"".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_required_checked_and_forwarded() {
    let (pki, clients) = pkis(&["client-1"]);
    // The same names from a CA the listener does not trust.
    pki.client("stranger", "spiffe://weir.test/client-1", "client-1.test");
    let echo = upstream("e").await;
    let weir = Weir::start(&mutual(&pki, &clients, echo, None));
    let want = expected_xfcc(&clients, "client-1");
    let (pki, clients, weir) = (&pki, &clients, &weir);
    tokio::task::block_in_place(|| {
        let args = showing(clients, "client-1");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for (path, http) in [("/", "--http1.1"), ("/chain", "--http2")] {
            let mut all = args.clone();
            all.push(http);
            let (status, body, verbose) = parts(&curl(pki, weir, "a.test", path, &all));
            assert!(status.starts_with("200"), "{verbose}");
            // The client's own header is gone; the one the listener made from the certificate is there.
            assert_eq!(
                echoed(&body, "x-forwarded-client-cert"),
                std::slice::from_ref(&want),
                "{path}"
            );
        }
        // No certificate, or one from another CA: no handshake, and nothing reaches the upstream.
        let stranger = showing(pki, "stranger");
        let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
        for args in [&["--http1.1"][..], &stranger] {
            let out = curl(pki, weir, "a.test", "/", args);
            let verbose = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} was let in: {verbose}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_client_certificate_is_forwarded_when_shown_and_a_forged_one_never() {
    let (pki, clients) = pkis(&["client-2"]);
    let echo = upstream("e").await;
    let weir = Weir::start(&mutual(&pki, &clients, echo, Some("optional")));
    let want = expected_xfcc(&clients, "client-2");
    let (pki, clients, weir) = (&pki, &clients, &weir);
    tokio::task::block_in_place(|| {
        let forged = ["-H", "X-Forwarded-Client-Cert: Hash=forged", "--http1.1"];
        let (status, body, verbose) = parts(&curl(pki, weir, "a.test", "/", &forged));
        assert!(status.starts_with("200"), "{verbose}");
        assert!(
            echoed(&body, "x-forwarded-client-cert").is_empty(),
            "{body}"
        );

        let args = showing(clients, "client-2");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body, verbose) = parts(&curl(pki, weir, "a.test", "/chain", &args));
        assert!(status.starts_with("200"), "{verbose}");
        assert_eq!(echoed(&body, "x-forwarded-client-cert"), [want]);
    });
}

/// A listener that asks for certificates without requiring them, and a route that requires one: without a
/// certificate that route answers 403 (HTTP/1.1 and HTTP/2) and the others serve; with one it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_requires_the_certificate_the_listener_leaves_optional() {
    let (pki, clients) = pkis(&["client-3"]);
    let echo = upstream("e").await;
    let config = mutual(&pki, &clients, echo, Some("optional")).replacen(
        "path_prefix = \"/chain\"\n",
        "path_prefix = \"/chain\"\nrequire_client_cert = true\n",
        1,
    );
    let weir = Weir::start(&config);
    let want = expected_xfcc(&clients, "client-3");
    let (pki, clients, weir) = (&pki, &clients, &weir);
    tokio::task::block_in_place(|| {
        for http in ["--http1.1", "--http2"] {
            let (status, body, verbose) = parts(&curl(pki, weir, "a.test", "/chain", &[http]));
            assert!(status.starts_with("403"), "{http}: {verbose}");
            assert_eq!(body, "a client certificate is required\n", "{http}");
            let (status, _, verbose) = parts(&curl(pki, weir, "a.test", "/", &[http]));
            assert!(status.starts_with("200"), "{http}: {verbose}");
        }
        let args = showing(clients, "client-3");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body, verbose) = parts(&curl(pki, weir, "a.test", "/chain", &args));
        assert!(status.starts_with("200"), "{verbose}");
        assert_eq!(echoed(&body, "x-forwarded-client-cert"), [want]);
        assert_eq!(echoed(&body, "x-chain"), ["1"]);
    });
}

#[test]
fn check_refuses_client_options_without_client_ca_and_names_bad_ca_and_crl_files() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    std::fs::write(pki.path("not-pem.pem"), "no certificate here\n").expect("write");
    let text = |tls: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{tls}\
             [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n\
             require_client_cert = true\n",
            pki.path("a.pem"),
            pki.path("a.key"),
        )
    };
    let out = check(&text(
        "client_cert = \"required\"\nclient_crl = \"crl.pem\"\n",
    ));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let mut seen = report(&out);
    // A CA file that is not PEM; a CRL file that holds a certificate, not a list.
    for tls in [
        format!("client_ca = \"{}\"\n", pki.path("not-pem.pem")),
        format!(
            "client_ca = \"{}\"\nclient_crl = \"{}\"\n",
            pki.path("ca.pem"),
            pki.path("a.pem")
        ),
    ] {
        let out = check(&text(&tls));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        // The file's directory is a temporary one: taken out.
        seen.push_str(&report(&out).replace(&pki.dir.path().display().to_string(), "DIR"));
    }
    // No TLS at all: no client could show a certificate.
    let clear = "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.e]\nurl = \"http://127.0.0.1:1\"\n\
                 [[routes]]\nupstream = \"e\"\nrequire_client_cert = true\n";
    let out = check(clear);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    seen.push_str(&report(&out));
    golden("check-client-ca.txt", &seen);
}

/// With `client_crl`, a certificate the CA's list names is refused and the others are let in; a list past
/// its next update refuses every certificate, as nginx's `ssl_crl` does, and a reload reads the list again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused() {
    let (pki, clients) = pkis(&["kept", "revoked"]);
    // The second certificate made: serial number 2.
    let revoked = 2;
    clients.crl(&[revoked], (2099, 1, 1));
    let echo = upstream("e").await;
    let text = revocable(&pki, &clients, echo);
    let weir = Weir::start(&text);
    let (pki_ref, clients_ref, weir_ref) = (&pki, &clients, &weir);
    let served = |cn: &str| {
        let args = showing(clients_ref, cn);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(pki_ref, weir_ref, "a.test", "/", &args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = stdout.rsplit('\n').next().unwrap_or_default();
        out.status.success() && status.starts_with("200 ")
    };
    tokio::task::block_in_place(|| {
        assert!(served("kept"), "{}", weir.log());
        assert!(!served("revoked"), "a revoked certificate was let in");
    });
    clients.crl(&[revoked], (2026, 1, 2));
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    tokio::task::block_in_place(|| {
        assert!(
            !served("kept"),
            "a list past its next update let a client in"
        );
    });
}

/// Two requests by one curl, ten seconds apart, with `clients`' certificate `cn` (or none) over `http`;
/// each path is `/NAME/1` and `/NAME/2`. `--rate` leaves the connection to be reused between them.
fn two_requests(
    pki: &Pki,
    clients: &Pki,
    weir: &Weir,
    name: &str,
    cn: Option<&str>,
    http: &str,
) -> Child {
    let port = weir.addr.port();
    let url = |n: u8| format!("https://a.test:{port}/{name}/{n}");
    let mut curl = Command::new("curl");
    if let Some(cn) = cn {
        curl.args(["--cert", &clients.path(&format!("{cn}.pem"))])
            .args(["--key", &clients.path(&format!("{cn}.key"))]);
    }
    curl.args(["-sS", "--cacert", &pki.path("ca.pem"), http])
        .args(["--rate", "6/m"])
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        // One -o for each URL.
        .args(["-o", "/dev/null", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{num_connects}\n"])
        .args([url(1), url(2)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl")
}

/// Each transfer's status and the connections it opened, as `two_requests` has curl write them.
fn transfers(curl: Child) -> Vec<String> {
    let out = curl.wait_with_output().expect("curl's output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What each `two_requests` of `running` saw: those whose name holds `kept` made both requests on one
/// connection; the others were served once, then refused on their connection or at a new handshake.
fn kept_or_refused(running: Vec<(String, Child)>, kept: &str) {
    for (name, curl) in running {
        let seen = transfers(curl);
        if name.contains(kept) {
            assert_eq!(seen, ["200 1", "200 0"], "{name}");
        } else {
            assert_eq!(seen.len(), 2, "{name}: {seen:?}");
            assert_eq!(seen[0], "200 1", "{name}");
            assert!(seen[1].starts_with("000 "), "{name} was let in: {seen:?}");
        }
    }
}

/// An HTTP/1.1 client over one TLS connection to `a.test` (`argv[1]` the port, trusting CA `argv[2]`,
/// showing certificate `argv[3]` with key `argv[4]`): a request at once, another once a line comes on
/// stdin; for each, the status, the `Connection` header and the body's first line, or `closed` when the
/// server closed the connection instead.
const ONE_CONNECTION: &str = r#"
import http.client, socket, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
conn = http.client.HTTPConnection("a.test", port)
conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="a.test")
def get(path):
    try:
        conn.request("GET", path)
        response = conn.getresponse()
    except (ConnectionError, http.client.HTTPException, ssl.SSLError):
        print("closed", flush=True)
        return
    body = response.read().decode().split("\n")[0]
    print(response.status, response.getheader("connection", "-"), body[:120], flush=True)
get("/one-connection/1")
sys.stdin.readline()
get("/one-connection/2")
"#;

/// A reload that changes what clients' certificates are checked against checks each TLS connection's
/// client again, over HTTP/1.1 and HTTP/2 alike: one whose certificate the new list revokes gets no further
/// request through (the connection drains, a request that comes on it meanwhile is answered 421, and a
/// request still in flight is cut at `shutdown_timeout`), while one whose certificate still passes keeps
/// its connection. A reload that leaves the check as it was leaves every connection be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_client_check_ends_the_connections_it_refuses() {
    let (pki, clients) = pkis(&["kept", "revoked"]);
    let revoked = 2;
    clients.crl(&[], (2099, 1, 1));
    let echo = upstream("e").await;
    let text = revocable(&pki, &clients, echo).replacen(
        "[server]\n",
        "[server]\nshutdown_timeout = \"2s\"\n",
        1,
    ) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&text);
    let https = [("h1", "--http1.1"), ("h2", "--http2")];
    let run = |phase: &str, cns: &[&str]| -> Vec<(String, Child)> {
        let mut running = Vec::new();
        for cn in cns {
            for (version, http) in https {
                let name = format!("{phase}-{cn}-{version}");
                let curl = two_requests(&pki, &clients, &weir, &name, Some(cn), http);
                running.push((name, curl));
            }
        }
        // Each has made its first request, and waits for its second.
        for (name, _) in &running {
            assert!(weir.wait_for_log(&format!("/{name}/1")), "{}", weir.log());
        }
        running
    };
    tokio::task::block_in_place(|| {
        let same = run("same", &["kept"]);
        weir.signal(libc::SIGHUP);
        assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
        for (name, curl) in same {
            // The second request rode the first's connection.
            assert_eq!(transfers(curl), ["200 1", "200 0"], "{name}");
        }

        clients.crl(&[revoked], (2099, 1, 1));
        let revoking = run("revoking", &["kept", "revoked"]);
        let (mut one, mut line) = python_client(ONE_CONNECTION, &pki, &clients, &weir, "revoked");
        assert!(line().starts_with("200 "), "{}", weir.log());
        let port = weir.addr.port();
        let in_flight = Command::new("curl")
            .args(["-sS", "--cacert", &pki.path("ca.pem"), "--http1.1"])
            .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
            .args(["--cert", &clients.path("revoked.pem")])
            .args(["--key", &clients.path("revoked.key")])
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://a.test:{port}/sleep/8000"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        // Its handshake done and its request at the upstream, which answers after 8 s.
        std::thread::sleep(std::time::Duration::from_millis(700));
        weir.signal(libc::SIGHUP);
        assert!(
            weir.wait_for_log("clients' certificates are checked anew"),
            "{}",
            weir.log()
        );
        let reloaded = std::time::Instant::now();
        // Within the second an idle connection is given to drain.
        let mut stdin = one.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("write to the client");
        assert_eq!(
            line(),
            "421 close this connection's client certificate no longer passes the listener's check: connect again",
        );
        // Cut at shutdown_timeout, where the upstream would have answered 8 s after it was asked.
        let out = in_flight.wait_with_output().expect("curl's output");
        let cut = reloaded.elapsed();
        assert!(
            !out.status.success() && out.stdout.starts_with(b"000"),
            "the request in flight was answered: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(cut < std::time::Duration::from_secs(6), "cut after {cut:?}");
        assert!(
            weir.wait_for_log("closed: still busy 2s after a check refused"),
            "{}",
            weir.log()
        );
        kept_or_refused(revoking, "-kept-");
        assert!(
            one.wait().expect("wait").success(),
            "the Python client failed"
        );
    });
    // The revoked certificate's: curl's over HTTP/1.1 and HTTP/2, the Python client's, the one in flight.
    let refused = weir.metric("weir_tls_clients_refused_total", &[]).await;
    assert_eq!(refused, Some(4.0));
}

/// `script` (`ONE_CONNECTION` or `LATE_HANDSHAKE`) run against `weir`, showing `clients`' certificate `cn`:
/// the child, whose stdin tells it to go on, and a reader of the lines it prints.
fn python_client(
    script: &str,
    pki: &Pki,
    clients: &Pki,
    weir: &Weir,
    cn: &str,
) -> (Child, impl FnMut() -> String) {
    let mut child = Command::new("python3")
        .args(["-c", script, &weir.addr.port().to_string()])
        .args([pki.path("ca.pem"), clients.path(&format!("{cn}.pem"))])
        .arg(clients.path(&format!("{cn}.key")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = move || lines.next().expect("a line").expect("the client's line");
    (child, line)
}

/// A client of `a.test` (`argv[1]` the port, trusting CA `argv[2]`, showing certificate `argv[3]` with key
/// `argv[4]`) that connects, says `connected`, and shakes hands only once a line comes on stdin; then one
/// request, and its status and `Connection` header, or `closed`.
const LATE_HANDSHAKE: &str = r#"
import http.client, socket, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
raw = socket.create_connection(("127.0.0.1", port))
print("connected", flush=True)
sys.stdin.readline()
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
conn = http.client.HTTPConnection("a.test", port)
try:
    conn.sock = context.wrap_socket(raw, server_hostname="a.test")
    conn.request("GET", "/late-handshake")
    response = conn.getresponse()
    print(response.status, response.getheader("connection", "-"), flush=True)
except (ConnectionError, http.client.HTTPException, ssl.SSLError):
    print("closed", flush=True)
"#;

/// A connection accepted before a reload shakes hands with the certificates and check it was accepted
/// under, and its client is then checked at once against the reload's: a certificate the reload revoked
/// while the handshake was still to come gets no request through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_straddles_a_reload_is_checked_against_the_new_check() {
    let (pki, clients) = pkis(&["revoked"]);
    clients.crl(&[], (2099, 1, 1));
    let echo = upstream("e").await;
    let text = revocable(&pki, &clients, echo);
    let weir = Weir::start(&text);
    tokio::task::block_in_place(|| {
        let (mut late, mut line) = python_client(LATE_HANDSHAKE, &pki, &clients, &weir, "revoked");
        assert_eq!(line(), "connected");
        // The first certificate made: serial number 1.
        clients.crl(&[1], (2099, 1, 1));
        weir.signal(libc::SIGHUP);
        assert!(
            weir.wait_for_log("clients' certificates are checked anew"),
            "{}",
            weir.log()
        );
        let mut stdin = late.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("write to the client");
        // The handshake passes under the old list; the request does not pass the new one.
        let answer = line();
        assert!(
            answer == "closed" || answer == "421 close",
            "a certificate revoked before its handshake was served: {answer}"
        );
        assert!(
            late.wait().expect("wait").success(),
            "the Python client failed"
        );
    });
    assert!(
        !weir.log().contains("/late-handshake 200"),
        "{}",
        weir.log()
    );
}

/// A reload that turns an optional client certificate into a required one ends the connections of the
/// clients that showed none, over HTTP/1.1 and HTTP/2, and leaves those that showed one be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_requires_a_certificate_ends_the_connections_that_showed_none() {
    let (pki, clients) = pkis(&["c"]);
    let echo = upstream("e").await;
    let optional =
        mutual(&pki, &clients, echo, Some("optional")) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&optional);
    tokio::task::block_in_place(|| {
        let mut running = Vec::new();
        for cn in [None, Some("c")] {
            for (version, http) in [("h1", "--http1.1"), ("h2", "--http2")] {
                let name = format!("required-{}-{version}", cn.unwrap_or("none"));
                let curl = two_requests(&pki, &clients, &weir, &name, cn, http);
                running.push((name, curl));
            }
        }
        for (name, _) in &running {
            assert!(weir.wait_for_log(&format!("/{name}/1")), "{}", weir.log());
        }
        let required = optional.replacen(
            "client_cert = \"optional\"",
            "client_cert = \"required\"",
            1,
        );
        assert_ne!(required, optional);
        std::fs::write(weir.config_file(), required).expect("rewrite the config");
        weir.signal(libc::SIGHUP);
        assert!(
            weir.wait_for_log("clients' certificates are checked anew"),
            "{}",
            weir.log()
        );
        kept_or_refused(running, "-c-");
    });
    let refused = weir.metric("weir_tls_clients_refused_total", &[]).await;
    assert_eq!(refused, Some(2.0));
}

/// A client certificate that expires while its connection is open ends that connection without a reload:
/// the check runs again at its `notAfter`, over HTTP/1.1 and HTTP/2 alike, and the connection's next
/// request is refused (nginx checks the dates at the handshake only). Another client's connections carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_that_expires_while_its_connection_is_open_ends_it() {
    let (pki, clients) = pkis(&["lasting"]);
    let echo = upstream("e").await;
    let text = mutual(&pki, &clients, echo, None) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&text);
    // Issued once Weir is up, so that a slow start cannot use up its few seconds: long enough for each
    // client's first request, well before its second, ten seconds on.
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(4);
    let uri = "spiffe://weir.test/brief";
    clients.client_until("brief", uri, "brief.test", Some(expires));
    tokio::task::block_in_place(|| {
        let mut running = Vec::new();
        for cn in ["lasting", "brief"] {
            for (version, http) in [("h1", "--http1.1"), ("h2", "--http2")] {
                let name = format!("expiry-{cn}-{version}");
                let curl = two_requests(&pki, &clients, &weir, &name, Some(cn), http);
                running.push((name, curl));
            }
        }
        let (mut one, mut line) = python_client(ONE_CONNECTION, &pki, &clients, &weir, "brief");
        assert!(line().starts_with("200 "), "{}", weir.log());
        for (name, _) in &running {
            assert!(weir.wait_for_log(&format!("/{name}/1")), "{}", weir.log());
        }
        drained_at_expiry(&weir, expires);
        let mut stdin = one.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("write to the client");
        // Answered 421 if it came within the second an idle draining connection is given, else closed.
        let second = line();
        assert!(
            second == "closed" || second.starts_with("421 close "),
            "a request after the certificate expired was answered: {second}"
        );
        kept_or_refused(running, "-lasting-");
        assert!(
            one.wait().expect("wait").success(),
            "the Python client failed"
        );
    });
    // The expired certificate's connections: curl's over HTTP/1.1 and HTTP/2, and the Python client's.
    let refused = weir.metric("weir_tls_clients_refused_total", &[]).await;
    assert_eq!(refused, Some(3.0));
}

/// Waits past `expires` (webpki holds a certificate valid through its `notAfter`'s second) for Weir to
/// drain a connection for it.
fn drained_at_expiry(weir: &Weir, expires: std::time::SystemTime) {
    let past = expires + std::time::Duration::from_secs(1);
    std::thread::sleep(
        past.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    );
    assert!(
        weir.wait_for_log("draining: its client's certificate or the CA it chains to expired"),
        "{}",
        weir.log()
    );
}

/// A revocation list whose next update passes while connections are open ends them as a reload of the
/// stale list would: every certificate it covers is refused from then on, on open connections too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_list_that_goes_stale_while_a_connection_is_open_ends_it() {
    let (pki, clients) = pkis(&["c"]);
    clients.crl(&[], (2099, 1, 1));
    let echo = upstream("e").await;
    let text = revocable(&pki, &clients, echo) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    // Loaded with a next update a few seconds on, once Weir is up (a reload reads the list again).
    let weir = Weir::start(&text);
    let stale = std::time::SystemTime::now() + std::time::Duration::from_secs(4);
    clients.crl_until(&[], stale);
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    tokio::task::block_in_place(|| {
        let curl = two_requests(&pki, &clients, &weir, "stale", Some("c"), "--http1.1");
        assert!(weir.wait_for_log("/stale/1"), "{}", weir.log());
        std::thread::sleep(
            stale
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default(),
        );
        assert!(
            weir.wait_for_log("draining: its client's certificate or the CA it chains to expired"),
            "{}",
            weir.log()
        );
        let seen = transfers(curl);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "200 1");
        assert!(
            seen[1].starts_with("000 "),
            "let in past the list's next update: {seen:?}"
        );
    });
    let refused = weir.metric("weir_tls_clients_refused_total", &[]).await;
    assert_eq!(refused, Some(1.0));
}

/// nginx with `a.test`'s certificate, asking every client for one that chains to `client_ca`, answering
/// 200 `ok` to those that pass, on `port`.
fn nginx_mutual(pki: &Pki, client_ca: &str, port: u16) -> String {
    support::raw::nginx_http(&format!(
        r#"    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {client_ca};
        ssl_verify_client on;
        location / {{ return 200 "ok\n"; }}
    }}
"#,
        cert = pki.path("a.pem"),
        key = pki.path("a.key"),
    ))
}

/// A `client_ca` certificate out of its dates vouches for nobody, as in nginx (OpenSSL checks the CA's
/// dates; webpki alone would not): in one file with a CA in date, a CA expired and a CA not yet valid, only
/// the first one's client is served, the others are refused with a `certificate_expired` alert where nginx
/// answers them 400 and logs each CA's fault. `weir check` warns of the expired CA. With the expired CA's
/// renewal added to the file, its client is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_out_of_its_dates_vouches_for_nobody_as_in_nginx() {
    let (pki, clients) = pkis(&["current"]);
    let day =
        |year, month, day| std::time::SystemTime::from(rcgen::date_time_ymd(year, month, day));
    let expired = Pki::named("Weir expired CA", None, Some(day(2025, 1, 1)));
    let early = Pki::named("Weir early CA", Some(day(2099, 1, 1)), None);
    for (ca, cn) in [(&expired, "expired"), (&early, "early")] {
        ca.client(
            cn,
            &format!("spiffe://weir.test/{cn}"),
            &format!("{cn}.test"),
        );
    }
    // One file with the three CAs: what `mutual` reads as the clients' CA.
    let bundle: String = [&clients, &expired, &early]
        .iter()
        .map(|ca| std::fs::read_to_string(ca.path("ca.pem")).expect("a CA"))
        .collect();
    std::fs::write(clients.path("ca.pem"), &bundle).expect("write the bundle");
    let echo = upstream("e").await;
    let text = mutual(&pki, &clients, echo, None);
    let weir = Weir::start(&text);
    let nginx_port = support::raw::free_port();
    let nginx = support::raw::Nginx::start(
        &nginx_mutual(&pki, &clients.path("ca.pem"), nginx_port),
        &[nginx_port],
    );
    let cases = [
        (&clients, "current"),
        (&expired, "expired"),
        (&early, "early"),
    ];
    tokio::task::block_in_place(|| {
        for (ca, cn) in cases {
            let args = showing(ca, cn);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Over TLS 1.2 the client's certificate is judged within the handshake, so the alert is what
            // curl reports; over 1.3 it may see the connection closed first.
            let mut tls12 = args.clone();
            tls12.push("--tls-max");
            tls12.push("1.2");
            let out = curl(&pki, &weir, "a.test", "/", &tls12);
            let verbose = String::from_utf8_lossy(&out.stderr).into_owned();
            let served = out.status.success();
            let tls13 = curl(&pki, &weir, "a.test", "/", &args).status.success();
            let by_nginx = Command::new("curl")
                .args(["-sS", "--cacert", &pki.path("ca.pem")])
                .args(["--resolve", &format!("a.test:{nginx_port}:127.0.0.1")])
                .args(["-o", "/dev/null", "-w", "%{http_code}"])
                .args(["--cert", &ca.path(&format!("{cn}.pem"))])
                .args(["--key", &ca.path(&format!("{cn}.key"))])
                .arg(format!("https://a.test:{nginx_port}/"))
                .output()
                .expect("run curl");
            let by_nginx = String::from_utf8_lossy(&by_nginx.stdout).into_owned();
            if cn == "current" {
                assert!(served && tls13, "{verbose}");
                assert_eq!(by_nginx, "200");
            } else {
                assert!(!served && !tls13, "{cn} was let in: {verbose}");
                assert!(
                    verbose.contains("TLS alert, certificate expired"),
                    "{cn}: {verbose}"
                );
                assert_eq!(by_nginx, "400", "nginx let {cn} in");
            }
        }
    });
    // nginx's own word on each CA, so that the test knows which case it compared.
    let log = nginx.error_log();
    assert!(log.contains("certificate has expired"), "{log}");
    assert!(log.contains("certificate is not yet valid"), "{log}");
    let out = check(&text);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    golden("check-expired-client-ca.txt", &report(&out));

    // The expired CA renewed (same name and key) beside it in the file: what it signed is let in again,
    // path building over the anchors in date finding the renewal.
    let renewal = expired.renewed_until(day(2099, 1, 1));
    std::fs::write(clients.path("ca.pem"), bundle + &renewal).expect("write the bundle");
    let weir = Weir::start(&text);
    tokio::task::block_in_place(|| {
        let args = showing(&expired, "expired");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&pki, &weir, "a.test", "/", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A `client_ca` certificate that expires while connections are open ends those whose chain ends at it, as
/// the expiry of the client's own certificate does; a client of another CA in the file keeps its
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_that_expires_while_a_connection_is_open_ends_it() {
    let (pki, clients) = pkis(&["brief"]);
    let lasting = Pki::named("Weir lasting CA", None, None);
    lasting.client("lasting", "spiffe://weir.test/lasting", "lasting.test");
    let bundle = |brief_ca: &str| {
        let lasting_ca = std::fs::read_to_string(lasting.path("ca.pem")).expect("a CA");
        std::fs::write(clients.path("ca.pem"), format!("{brief_ca}{lasting_ca}"))
            .expect("write the bundle");
    };
    bundle(&std::fs::read_to_string(clients.path("ca.pem")).expect("a CA"));
    let echo = upstream("e").await;
    let text = mutual(&pki, &clients, echo, None) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&text);
    // The CA renewed to expire a few seconds on, once Weir is up (a reload reads the file again).
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(8);
    bundle(&clients.renewed_until(expires));
    weir.signal(libc::SIGHUP);
    assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
    tokio::task::block_in_place(|| {
        let mut running = Vec::new();
        for (ca, cn, version, http) in [
            (&clients, "brief", "h1", "--http1.1"),
            (&clients, "brief", "h2", "--http2"),
            (&lasting, "lasting", "h1", "--http1.1"),
        ] {
            let name = format!("ca-expiry-{cn}-{version}");
            let curl = two_requests(&pki, ca, &weir, &name, Some(cn), http);
            running.push((name, curl));
        }
        for (name, _) in &running {
            assert!(weir.wait_for_log(&format!("/{name}/1")), "{}", weir.log());
        }
        drained_at_expiry(&weir, expires);
        kept_or_refused(running, "-lasting-");
        // A new handshake under the expired CA is refused as well (over TLS 1.2, for the alert).
        let args = showing(&clients, "brief");
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--tls-max", "1.2"]);
        let out = curl(&pki, &weir, "a.test", "/", &args);
        let verbose = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "let in: {verbose}");
        assert!(
            verbose.contains("TLS alert, certificate expired"),
            "{verbose}"
        );
    });
    let refused = weir.metric("weir_tls_clients_refused_total", &[]).await;
    assert_eq!(refused, Some(2.0));
}

/// `/metrics` says when each file of `[server.tls]` expires, by its field, as an
/// independent reader of the files finds it; `weir check` warns of a revocation list already past its next
/// update, and a reload of one logs the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_tell_when_each_tls_file_expires_and_a_stale_list_is_warned_of() {
    let (pki, clients) = pkis(&["c"]);
    clients.crl(&[], (2099, 1, 1));
    let echo = upstream("e").await;
    let text = revocable(&pki, &clients, echo) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&text);
    for (field, kind, file) in [
        ("server.tls.cert", "first", pki.path("a.pem")),
        ("server.tls.sni.0.cert", "first", pki.path("b.pem")),
        ("server.tls.client_ca", "earliest", clients.path("ca.pem")),
        ("server.tls.client_crl", "crl", clients.path("crl.pem")),
    ] {
        let metric = weir
            .metric("weir_tls_expiry_timestamp_seconds", &[("field", field)])
            .await;
        assert_eq!(
            metric,
            Some(support::expiry_by_python(kind, &file)),
            "{field}"
        );
    }

    clients.crl(&[], (2026, 1, 2));
    let out = check(&text);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    golden("check-stale-crl.txt", &report(&out));
    weir.signal(libc::SIGHUP);
    assert!(
        weir.wait_for_record(&["WARN", "tls.client_crl", "due for its next update"]),
        "{}",
        weir.log()
    );
    let metric = weir
        .metric(
            "weir_tls_expiry_timestamp_seconds",
            &[("field", "server.tls.client_crl")],
        )
        .await;
    assert_eq!(
        metric,
        Some(support::expiry_by_python("crl", &clients.path("crl.pem")))
    );
}
