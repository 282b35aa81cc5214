//! HTTPS upstreams through the real binary: certificates from a CA the test makes (rcgen), checked against
//! `ca_file` (its CAs held to their dates, as OpenSSL holds them) and `server_name`; refusals the client
//! sees as 502 and the log explains; HTTP/2 by ALPN; the option that checks nothing; a client certificate
//! shown to an endpoint that asks for one; and what `weir check` says of the option that checks nothing and
//! of every other upstream mistake.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::StatusCode;
use pki::Pki;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::endpoint::{Behaviour, Endpoint};
use support::{Weir, check, get, golden, report};

/// Leaves of the test's own CA.
impl Pki {
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server's TLS config: a certificate for `name` signed by the CA, ALPN `h2` and `http/1.1`.
    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        self.server_asking(name, None)
    }

    /// The same, asking every client for a certificate from `clients`' CA when there is one.
    fn server_asking(&self, name: &str, clients: Option<&Pki>) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("a server key");
        let params = CertificateParams::new(vec![name.to_owned()]).expect("server params");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("the server certificate");
        let chain = vec![cert.der().clone(), CertificateDer::clone(self.ca.der())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match clients {
            Some(clients) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::clone(clients.ca.der()))
                    .expect("the clients' CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("a server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// An endpoint serving TLS with a certificate for `name`.
    fn endpoint(&self, name: &str) -> Endpoint {
        Endpoint::start(
            name,
            Behaviour {
                tls: Some(self.server(name)),
                ..Behaviour::default()
            },
        )
    }
}

/// A config with one `https://` upstream `a` to `endpoint` (and `extra` lines in its table).
fn config(endpoint: &Endpoint, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"https://{}\"\n{extra}\n\
         [[routes]]\nupstream = \"a\"\n",
        endpoint.addr
    )
}

fn ca_line(file: &Path) -> String {
    format!("ca_file = \"{}\"\n", file.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_checked_against_the_ca_file_and_the_server_name() {
    let pki = Pki::new();
    let server = pki.endpoint("upstream.test");
    let extra = format!(
        "server_name = \"upstream.test\"\n{}",
        ca_line(&pki.ca_file())
    );
    let weir = Weir::start(&config(&server, &extra));
    let reply = get(&weir.url("/over-tls")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-sni"), Some("upstream.test"));
    assert_eq!(reply.header("x-version"), Some("HTTP/1.1"));

    // HTTP/2 by ALPN on the same kind of endpoint.
    let h2 = Weir::start(&config(&server, &format!("{extra}http2 = true\n")));
    let reply = support::post(&h2.url("/over-h2"), "a body").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-version"), Some("HTTP/2.0"));
    assert_eq!(reply.text(), "a body");
}

/// An endpoint that asks for a client certificate gets the one `client_cert` names, over HTTP/1.1 and
/// HTTP/2; without one, the request is a 502 and never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_asks_for_a_certificate_gets_client_cert() {
    let pki = Pki::new();
    let clients = Pki::new();
    clients.client("proxy", "spiffe://weir.test/proxy", "proxy.test");
    let server = Endpoint::start(
        "upstream.test",
        Behaviour {
            tls: Some(pki.server_asking("upstream.test", Some(&clients))),
            ..Behaviour::default()
        },
    );
    let trust = format!(
        "server_name = \"upstream.test\"\n{}",
        ca_line(&pki.ca_file())
    );
    let shown = format!(
        "{trust}client_cert = \"{}\"\nclient_key = \"{}\"\n",
        clients.path("proxy.pem"),
        clients.path("proxy.key")
    );
    let weir = Weir::start(&config(&server, &shown));
    let reply = get(&weir.url("/with-a-certificate")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let h2 = Weir::start(&config(&server, &format!("{shown}http2 = true\n")));
    let reply = get(&h2.url("/with-a-certificate-over-h2")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-version"), Some("HTTP/2.0"));
    assert_eq!(server.requests(), 2);

    let without = Weir::start(&config(&server, &trust));
    let reply = get(&without.url("/without")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_with_502_and_the_reason_in_the_log() {
    let pki = Pki::new();
    let server = pki.endpoint("upstream.test");
    let extra = format!("server_name = \"other.test\"\n{}", ca_line(&pki.ca_file()));
    let weir = Weir::start(&config(&server, &extra));
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.text(), "upstream TLS handshake failed\n");
    assert!(weir.wait_for_record(&[
        "cannot reach upstream \"a\"",
        "over TLS",
        "certificate not valid for name \"other.test\"",
    ]));
    assert_eq!(server.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused_and_the_dangerous_option_takes_it() {
    let pki = Pki::new();
    let server = pki.endpoint("upstream.test");
    // Without ca_file only the built-in public roots are trusted.
    let weir = Weir::start(&config(&server, "server_name = \"upstream.test\"\n"));
    assert_eq!(get(&weir.url("/")).await.status, StatusCode::BAD_GATEWAY);
    assert!(weir.wait_for_record(&["over TLS", "UnknownIssuer"]));
    assert_eq!(server.requests(), 0);

    // Checking nothing: any certificate, for any name.
    let reckless = Weir::start(&config(
        &server,
        "server_name = \"anything.test\"\ntls_insecure_skip_verify_DANGEROUS = true\n",
    ));
    let reply = get(&reckless.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reckless.wait_for_log("tls_insecure_skip_verify_DANGEROUS"));
}

/// An endpoint whose chain ends at a `ca_file` certificate past its `notAfter` is refused, as curl
/// (OpenSSL) refuses it with the same file: webpki alone checks only the chain the endpoint shows; `weir
/// check` warns of it. With the CA renewed in the file (same name and key), the same endpoint is served, and
/// `/metrics` says when the renewal expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_under_an_expired_ca_file_certificate_is_refused_as_openssl_refuses_it() {
    let expired = std::time::SystemTime::from(rcgen::date_time_ymd(2025, 1, 1));
    let pki = Pki::named("Weir expired upstream CA", None, Some(expired));
    let server = pki.endpoint("upstream.test");
    let extra = format!(
        "server_name = \"upstream.test\"\n{}",
        ca_line(&pki.ca_file())
    );
    let weir = Weir::start(&config(&server, &extra));
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert!(
        weir.wait_for_record(&["over TLS", "certificate expired"]),
        "{}",
        weir.log()
    );
    assert_eq!(server.requests(), 0);
    let port = server.addr.port();
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--cacert", &pki.ca_file().display().to_string()])
        .args(["--resolve", &format!("upstream.test:{port}:127.0.0.1")])
        .arg(format!("https://upstream.test:{port}/"))
        .output()
        .expect("run curl");
    let said = String::from_utf8_lossy(&curl.stderr);
    assert!(!curl.status.success(), "curl took it: {said}");
    assert!(said.contains("certificate has expired"), "{said}");
    // Warned of at load, so that a config that served before is not met by 502s alone.
    let out = check(&config(&server, &extra));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    golden("check-expired-upstream-ca.txt", &report(&out));

    let renewed = std::time::SystemTime::from(rcgen::date_time_ymd(2099, 1, 1));
    std::fs::write(pki.ca_file(), pki.renewed_until(renewed)).expect("write the renewed CA");
    let admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&(config(&server, &extra) + admin));
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // `/metrics` says when the file's CA expires, as an independent reader of the file finds it.
    let file = pki.ca_file().display().to_string();
    let metric = weir
        .metric(
            "weir_upstream_ca_expiry_timestamp_seconds",
            &[("upstream", "a")],
        )
        .await;
    assert_eq!(metric, Some(support::expiry_by_python("earliest", &file)));
}

/// A session made under a `ca_file` CA is not resumed once that CA has expired: rustls checks no
/// certificate on a resumed session, so the CA's expiry would otherwise wait for the ticket's. A
/// connection made before and still open goes on serving, as in nginx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_under_a_ca_that_has_since_expired_is_not_resumed() {
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    let pki = Pki::named("Weir brief upstream CA", None, Some(expires));
    // Each answer waits, so that two requests at once need two connections.
    let server = Endpoint::start(
        "upstream.test",
        Behaviour {
            tls: Some(pki.server("upstream.test")),
            delay: std::time::Duration::from_millis(500),
            ..Behaviour::default()
        },
    );
    let extra = format!(
        "server_name = \"upstream.test\"\n{}",
        ca_line(&pki.ca_file())
    );
    let weir = Weir::start(&config(&server, &extra));
    let first = get(&weir.url("/first")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let past = expires + std::time::Duration::from_secs(1);
    tokio::time::sleep(
        past.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    let (url_a, url_b) = (weir.url("/a"), weir.url("/b"));
    let (a, b) = tokio::join!(get(&url_a), get(&url_b));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    // The new connection's handshake checks the certificate in full; the kept one is left be.
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::BAD_GATEWAY],
        "{}",
        weir.log()
    );
    assert!(
        weir.wait_for_record(&["over TLS", "certificate expired"]),
        "{}",
        weir.log()
    );
}

/// `weir check` on the TLS options: the warning for the option that checks nothing, and errors that name
/// the file, line, upstream and field.
#[test]
fn check_reports_tls_mistakes_with_the_file_line_and_field() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").expect("write");
    let shown = |text: String| text.replace(&dir.display().to_string(), "<dir>");

    let warned = check(
        "[upstreams.a]\nurl = \"https://127.0.0.1:8443\"\ntls_insecure_skip_verify_DANGEROUS = true\n\
         [[routes]]\nupstream = \"a\"\n",
    );
    assert!(warned.success, "{}", warned.stderr);
    let refused = check(&format!(
        "[upstreams.missing]\nurl = \"https://127.0.0.1:8443\"\nca_file = \"{0}/missing.pem\"\n\
         [upstreams.garbage]\nurl = \"https://127.0.0.1:8443\"\nca_file = \"{0}/garbage.pem\"\n\
         [upstreams.plain]\nurl = \"http://127.0.0.1:8080\"\nserver_name = \"plain.test\"\n\
         [upstreams.both]\nurl = \"https://127.0.0.1:8443\"\nca_file = \"{0}/ca.pem\"\n\
         tls_insecure_skip_verify_DANGEROUS = true\n\
         [upstreams.half]\nurl = \"https://127.0.0.1:8443\"\nclient_cert = \"{0}/ca.pem\"\n\
         [upstreams.keyless]\nurl = \"https://127.0.0.1:8443\"\nclient_cert = \"{0}/ca.pem\"\n\
         client_key = \"{0}/garbage.pem\"\n\
         [upstreams.plain_key]\nurl = \"http://127.0.0.1:8080\"\nclient_key = \"{0}/ca.pem\"\n\
         [[routes]]\nupstream = \"missing\"\n",
        dir.display()
    ));
    assert!(!refused.success);
    // A name is checked as the file is read: a parse error, on its own.
    let unnamed = check(
        "[upstreams.a]\nurl = \"https://127.0.0.1:8443\"\nserver_name = \"not a name\"\n\
         [[routes]]\nupstream = \"a\"\n",
    );
    assert!(!unnamed.success);
    golden(
        "check-upstream-tls.txt",
        &shown(format!(
            "## tls_insecure_skip_verify_DANGEROUS\n{}## CA files, client certificates, and TLS options on \
             http://\n{}\
             ## server_name\n{}",
            report(&warned),
            report(&refused),
            report(&unnamed)
        )),
    );
}

/// Every other rule of an `[upstreams]` table, reported at once.
#[test]
fn check_reports_pool_and_retry_mistakes_with_the_file_line_and_field() {
    let refused = check(
        "[upstreams.both]\nurl = \"http://127.0.0.1:1\"\nurls = [\"http://127.0.0.1:2\"]\n\
         [upstreams.mixed]\nurls = [\"http://127.0.0.1:1\", \"https://127.0.0.1:2\", \"http://127.0.0.1:1\"]\n\
         [upstreams.hash]\nurl = \"http://127.0.0.1:1\"\nbalance = \"hash\"\n\
         [upstreams.retry]\nurl = \"http://127.0.0.1:1\"\nretries = 11\nretry_on = [200]\n\
         retry_methods = [\"GET\", \"POST\"]\nretry_budget_percent = 101\n\
         [upstreams.eject]\nurl = \"http://127.0.0.1:1\"\neject_for = \"1m\"\neject_for_max = \"10s\"\n\
         [upstreams.eject.health_check]\npath = \"healthz\"\ninterval = \"0s\"\nunhealthy = 0\n\
         [[routes]]\nupstream = \"both\"\n",
    );
    assert!(!refused.success);
    golden("check-upstream-errors.txt", &report(&refused));
}
