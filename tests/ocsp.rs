//! OCSP stapling (`ocsp` beside a certificate of `[server.tls]`) through the real binary. The responses are
//! made by Python's `cryptography` for the leaves of a test CA (rcgen); curl's `--cert-status` checks what
//! is stapled (OpenSSL verifies the response's signature, that it is about the certificate served, and its
//! status), and `openssl s_client -status` shows it. nginx serves the same files with `ssl_stapling_file`,
//! and staples the same; past a response's next update Weir stops stapling it, where nginx goes on. `weir
//! check` names each response that cannot be stapled, and the field that names it.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pki::Pki;
use support::raw::{Nginx, free_port, nginx_http};
use support::{Weir, check, golden, python_output, report};

/// Writes `{out}.der`: an OCSP response about the leaf `{cn}.pem` signed by the CA, its status `status`
/// (`good`, `revoked`, `unknown`, `misnamed`: good but with the hashes of another issuer's name and key, or
/// the responder's `tryLater` refusal), its thisUpdate `this` seconds from
/// now and its nextUpdate `next` seconds from now (none when `None`). The path is returned.
fn respond(pki: &Pki, cn: &str, status: &str, this: i64, next: Option<i64>, out: &str) -> String {
    respond_by(pki, pki, cn, (status, this, next), out)
}

/// As `respond`, the response signed by `signer`'s CA (and naming it as the certificate's issuer).
fn respond_by(
    signer: &Pki,
    pki: &Pki,
    cn: &str,
    (status, this, next): (&str, i64, Option<i64>),
    out: &str,
) -> String {
    const RESPOND: &str = "import sys, datetime, hashlib\n\
        from cryptography import x509\n\
        from cryptography.x509 import ocsp\n\
        from cryptography.hazmat.primitives import hashes, serialization\n\
        ca_pem, ca_key, leaf_pem, status, this, nxt, out, hash = sys.argv[1:9]\n\
        ca = x509.load_pem_x509_certificate(open(ca_pem, 'rb').read())\n\
        key = serialization.load_pem_private_key(open(ca_key, 'rb').read(), None)\n\
        leaf = x509.load_pem_x509_certificate(open(leaf_pem, 'rb').read())\n\
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)\n\
        at = lambda s: now + datetime.timedelta(seconds=int(s))\n\
        if status == 'tryLater':\n\
        \x20   response = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)\n\
        elif status == 'misnamed':\n\
        \x20   h = lambda b: hashlib.new(hash.lower(), b).digest()\n\
        \x20   response = ocsp.OCSPResponseBuilder().add_response_by_hash(\n\
        \x20       h(b'another issuer'), h(b'another key'), leaf.serial_number, getattr(hashes, hash)(),\n\
        \x20       ocsp.OCSPCertStatus.GOOD, at(this), None, None, None,\n\
        \x20   ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca).sign(key, hashes.SHA256())\n\
        else:\n\
        \x20   response = ocsp.OCSPResponseBuilder().add_response(\n\
        \x20       cert=leaf, issuer=ca, algorithm=getattr(hashes, hash)(),\n\
        \x20       cert_status=getattr(ocsp.OCSPCertStatus, status.upper()),\n\
        \x20       this_update=at(this), next_update=None if nxt == 'none' else at(nxt),\n\
        \x20       revocation_time=at(-86400) if status == 'revoked' else None, revocation_reason=None,\n\
        \x20   ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca).sign(key, hashes.SHA256())\n\
        open(out, 'wb').write(response.public_bytes(serialization.Encoding.DER))\n";
    let key = signer.path("ca.key");
    std::fs::write(&key, signer.ca.key().serialize_pem()).expect("write ca.key");
    let file = pki.path(&format!("{out}.der"));
    let next = next.map_or("none".to_owned(), |n| n.to_string());
    let args = [
        signer.path("ca.pem"),
        key,
        pki.path(&format!("{cn}.pem")),
        status.to_owned(),
        this.to_string(),
        next,
        file.clone(),
        // The CertID's hash: OpenSSL's default, SHA-1, but for `b`, whose responses use SHA-256.
        if cn == "b" { "SHA256" } else { "SHA1" }.to_owned(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    python_output(RESPOND, &args);
    file
}

/// A test CA with leaves `a` (written with the CA after it as `a-chain.pem`, so that the response's issuer
/// key hash is checked too), `b` and `c`.
fn pki() -> Pki {
    let pki = Pki::new();
    for cn in ["a", "b", "c"] {
        pki.leaf(&format!("{cn}.test"), cn);
    }
    let chain = std::fs::read_to_string(pki.path("a.pem")).expect("a.pem")
        + &std::fs::read_to_string(pki.path("ca.pem")).expect("ca.pem");
    std::fs::write(pki.path("a-chain.pem"), chain).expect("write a-chain.pem");
    pki
}

/// `a.test` by default with `a_ocsp`, `b.test` by SNI with `b_ocsp`, `c.test` with none.
fn config(pki: &Pki, a_ocsp: &str, b_ocsp: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{a}\"\nkey = \"{a_key}\"\nocsp = \"{a_ocsp}\"\n\
         [[server.tls.sni]]\nnames = [\"b.test\"]\ncert = \"{b}\"\nkey = \"{b_key}\"\nocsp = \"{b_ocsp}\"\n\
         [[server.tls.sni]]\nnames = [\"c.test\"]\ncert = \"{c}\"\nkey = \"{c_key}\"\n\
         [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n",
        a = pki.path("a-chain.pem"),
        a_key = pki.path("a.key"),
        b = pki.path("b.pem"),
        b_key = pki.path("b.key"),
        c = pki.path("c.pem"),
        c_key = pki.path("c.key"),
    )
}

/// curl's `--cert-status` handshake with `name` at `port`: whether it took a stapled response it verified,
/// and what it said.
fn cert_status(pki: &Pki, port: u16, name: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--cert-status"])
        .args(["--cacert", &pki.path("ca.pem")])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .expect("run curl");
    // Weir's upstream is down, so its answer is a 502: without `-f` curl fails only for the handshake.
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `openssl s_client -status` shows of the OCSP response stapled to a handshake with `name` at `port`.
fn stapled(port: u16, name: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-status", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", name])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let shown = String::from_utf8_lossy(&out.stdout);
    let start = shown
        .find("OCSP response:")
        .expect("s_client's OCSP section");
    let end = shown[start..]
        .find("---")
        .map_or(shown.len(), |e| start + e);
    shown[start..end].to_owned()
}

/// nginx serving `cert` and `key` with the stapled response `ocsp` on `port`.
fn nginx(cert: &str, key: &str, ocsp: &str, port: u16) -> Nginx {
    let server = format!(
        "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate {cert};\n        \
         ssl_certificate_key {key};\n        ssl_stapling on;\n        ssl_stapling_file {ocsp};\n        \
         location / {{ return 200 \"ok\\n\"; }}\n    }}\n"
    );
    Nginx::start(&nginx_http(&server), &[port])
}

/// A `good` response is stapled to the certificate it is about, the default one and one chosen by SNI,
/// and curl verifies it, as it verifies nginx's staple of the same file; a certificate without one gets no
/// staple, which curl's check refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_response_is_stapled_as_nginx_staples_it() {
    let pki = pki();
    let a = respond(&pki, "a", "good", -60, Some(86_400), "a-good");
    let b = respond(&pki, "b", "good", -60, None, "b-good");
    let weir = Weir::start(&config(&pki, &a, &b));
    let port = free_port();
    let nginx = nginx(&pki.path("a-chain.pem"), &pki.path("a.key"), &a, port);
    tokio::task::block_in_place(|| {
        // OpenSSL verifies a response by the issuer the server sends: `a.test`'s chain has it, `b.test`'s
        // is the leaf alone, so its staple is only shown.
        let (verified, said) = cert_status(&pki, weir.addr.port(), "a.test");
        assert!(verified, "{said}");
        for name in ["a.test", "b.test"] {
            let shown = stapled(weir.addr.port(), name);
            assert!(shown.contains("Cert Status: good"), "{name}: {shown}");
        }
        let (verified, said) = cert_status(&pki, weir.addr.port(), "c.test");
        assert!(!verified, "c.test has no response to staple: {said}");
        assert!(
            stapled(weir.addr.port(), "c.test").contains("no response sent"),
            "c.test"
        );
        let (verified, said) = cert_status(&pki, port, "a.test");
        assert!(verified, "nginx: {said}\n{}", nginx.error_log());
        // The same response, so the same dates.
        let dates = |shown: &str| -> Vec<String> {
            (shown.lines())
                .filter(|l| l.contains("Update:"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            dates(&stapled(weir.addr.port(), "a.test")),
            dates(&stapled(port, "a.test"))
        );
    });
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_secs()).expect("in range")
}

/// A response is stapled until its next update and not after it (a client that requires a staple refuses
/// a stale one as it refuses none; one that does not asks the responder), where nginx goes on stapling
/// it; a fresh one written to the file is stapled after a reload. `/metrics` says when; `weir check` warns
/// of a response already stale, and loads the certificate all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_past_its_next_update_is_no_longer_stapled() {
    let pki = pki();
    let b = respond(&pki, "b", "good", -60, None, "b-good");
    let stale = respond(&pki, "a", "good", -7_200, Some(-3_600), "a-stale");
    let port = free_port();
    let nginx = nginx(&pki.path("a-chain.pem"), &pki.path("a.key"), &stale, port);
    // Python's clock, in whole seconds: the next update is 7 to 8 s from now, time enough for what comes
    // before the first look on a loaded machine.
    let soon = respond(&pki, "a", "good", -60, Some(8), "a-soon");
    let next_update = unix_now() + 8;
    let text = config(&pki, &soon, &b) + "[admin]\nlisten = \"127.0.0.1:0\"\n";
    let weir = Weir::start(&text);
    let metric = weir
        .metric(
            "weir_tls_expiry_timestamp_seconds",
            &[("field", "server.tls.ocsp")],
        )
        .await;
    let metric = metric.expect("the staple's next update in /metrics") as i64;
    assert!(
        (next_update - 1..=next_update + 1).contains(&metric),
        "{metric} against {next_update}"
    );
    tokio::task::block_in_place(|| {
        let shown = stapled(weir.addr.port(), "a.test");
        assert!(shown.contains("Cert Status: good"), "{shown}");
        let past =
            UNIX_EPOCH + Duration::from_secs(u64::try_from(next_update).expect("after 1970"));
        let wait = (past + Duration::from_millis(1_500)).duration_since(SystemTime::now());
        std::thread::sleep(wait.unwrap_or_default());
        let shown = stapled(weir.addr.port(), "a.test");
        assert!(
            shown.contains("no response sent"),
            "stale, still stapled: {shown}"
        );
        // The other certificate's response has no next update: it is stapled still.
        assert!(stapled(weir.addr.port(), "b.test").contains("Cert Status: good"));
        // A fresh response in the file, and a reload (what a renewal job does): stapled again.
        respond(&pki, "a", "good", -60, Some(86_400), "a-soon");
        weir.signal(libc::SIGHUP);
        assert!(weir.wait_for_log("config reloaded"), "{}", weir.log());
        let shown = stapled(weir.addr.port(), "a.test");
        assert!(
            shown.contains("Cert Status: good"),
            "after the reload: {shown}"
        );
        // nginx staples its file whatever its dates (curl refuses it as stale: "OCSP response has expired").
        let shown = stapled(port, "a.test");
        assert!(
            shown.contains("Cert Status: good"),
            "nginx: {shown}\n{}",
            nginx.error_log()
        );
        let (verified, said) = cert_status(&pki, port, "a.test");
        assert!(
            !verified && said.contains("OCSP response has expired"),
            "nginx's stale staple: {said}"
        );
    });
    let out = check(&config(&pki, &stale, &b));
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("field \"tls.ocsp\": the OCSP response was due for its next update on"),
        "{}",
        out.stderr
    );
}

/// Each response that cannot be stapled is refused by `weir check`, naming the file, the certificate and
/// the field: one saying the certificate is revoked or unknown, a responder's refusal, a response about
/// another certificate, one from another CA (of the same name, or not), one whose thisUpdate is an hour
/// ahead, a file that is no DER response, and a missing one.
#[test]
fn weir_check_names_a_response_that_cannot_be_stapled() {
    let pki = pki();
    let good_a = respond(&pki, "a", "good", -60, None, "a-good");
    let good_b = respond(&pki, "b", "good", -60, None, "b-good");
    // About the right serial number, but from a CA of the same name with another key (told apart by the
    // issuer's key hash, as `a`'s chain holds its issuer), or naming another issuer.
    let twin = Pki::new();
    let for_a = |ocsp: String| (ocsp, good_b.clone());
    let for_b = |ocsp: String| (good_a.clone(), ocsp);
    let cases = [
        for_b(respond(&pki, "b", "revoked", -60, None, "b-revoked")),
        for_b(respond(&pki, "b", "unknown", -60, None, "b-unknown")),
        for_b(respond(&pki, "b", "tryLater", 0, None, "b-try-later")),
        for_b(respond(&pki, "a", "good", -60, None, "a-for-b")),
        for_a(respond_by(
            &twin,
            &pki,
            "a",
            ("good", -60, None),
            "a-by-twin",
        )),
        for_b(respond(&pki, "b", "misnamed", -60, None, "b-misnamed")),
        for_b(respond(&pki, "b", "good", 3_600, None, "b-from-the-future")),
        for_b(pki.path("b.pem")),
        for_b(pki.path("missing.der")),
    ];
    let dir = format!("{}/", pki.dir.path().display());
    let mut seen = String::new();
    for (a, b) in cases {
        let out = check(&config(&pki, &a, &b));
        assert_eq!(out.code, Some(1), "{a} {b}: {}", out.stderr);
        let mut line = report(&out).replace(&dir, "");
        // The leaf's serial number is random, and so is the time of a response from the future.
        for (from, to) in [("(serial ", ","), ("valid only from ", ": clients")] {
            if let Some(at) = line.find(from)
                && let Some(end) = line[at + from.len()..].find(to)
            {
                line.replace_range(at + from.len()..at + from.len() + end, "…");
            }
        }
        seen.push_str(&line);
    }
    golden("check-ocsp.txt", &seen);
}
