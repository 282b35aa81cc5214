//! SIGUSR2 upgrades the binary without downtime: the running Weir starts a new one on the same command
//! line, hands it the listening sockets, and drains and exits 0 once the new one serves; a new process that
//! fails to start leaves the old one serving. Under continuous load, on kept-alive and on new connections,
//! not one request fails; over a TLS listener, not one handshake either, and the new process presents the
//! same certificate.

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::raw::{Plan, When, exchange};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

/// The process an upgrade started. Its parent, the Weir the test started, exits after the upgrade; this
/// test process is made a child subreaper, so that it adopts the new one then and can wait for it.
struct Successor {
    pid: libc::pid_t,
    reaped: bool,
}

fn adopt_orphans() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag of this process.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
}

impl Successor {
    /// SIGTERM, then waits for it to exit; its exit code.
    fn stop(&mut self) -> Option<i32> {
        // SAFETY: kill(2) and waitpid(2) on the process this test adopted and has not reaped.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut status = 0;
            // SAFETY: as above.
            let done = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if done == self.pid {
                self.reaped = true;
                return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            }
            assert!(
                done == 0,
                "waitpid {}: not this test's to wait for",
                self.pid
            );
            assert!(Instant::now() < deadline, "pid {} still running", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: as in `stop`.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

fn config(upstream: std::net::SocketAddr, server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npid_file = \"weir.pid\"\n{server}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n\
         [[routes]]\nupstream = \"a\"\n{}",
        // A plugin to load, as a real config has: the new process takes a while to be ready.
        fixture("mode = \"noop\"")
    )
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Waits until the pid file names a process other than `old`: the new one, once it serves.
fn new_pid(file: &Path, old: u32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = pid_in(file).filter(|&pid| u32::try_from(pid) != Ok(old)) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no new pid in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(addr: std::net::SocketAddr, request: &str) -> Option<u16> {
    let plan = Plan {
        finals: 1,
        wait_close: false,
        idle: Duration::from_secs(5),
    };
    let seen = exchange(addr, &[(When::Now, request.as_bytes().to_vec())], &plan);
    seen.finals().first().map(|r| r.status)
}

const READYZ: &str = "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Requests sent again on a new connection because a kept-alive one closed before any answer, as
    /// browsers, curl and Go's client do.
    resent: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().expect("failures").push(what);
    }
}

/// The load's side of a TLS listener: it trusts the test CA alone, and takes only the one leaf the config
/// names, so that a process serving some other certificate fails the load rather than passing unseen.
struct Tls {
    connector: TlsConnector,
    leaf: CertificateDer<'static>,
}

impl Tls {
    /// For the leaf `pki` wrote for `a.test` as `{cn}.pem`.
    fn new(pki: &Pki, cn: &str) -> Tls {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::clone(pki.ca.der()))
            .expect("the test CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Tls {
            connector: TlsConnector::from(Arc::new(config)),
            leaf: CertificateDer::from_pem_file(pki.path(&format!("{cn}.pem"))).expect("the leaf"),
        }
    }
}

async fn open(
    addr: std::net::SocketAddr,
    tls: Option<&Tls>,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let Some(tls) = tls else {
        return http1_on(stream).await;
    };
    let name = ServerName::try_from("a.test").expect("a server name");
    let stream = tls
        .connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    if stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        != Some(&tls.leaf)
    {
        return Err("the server presented another certificate".into());
    }
    http1_on(stream).await
}

async fn http1_on<S>(stream: S) -> Result<SendRequest<Empty<Bytes>>, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One GET on `sender`, its body read whole: its status.
async fn one(sender: &mut SendRequest<Empty<Bytes>>, close: bool) -> Result<u16, hyper::Error> {
    let mut request = hyper::Request::get("/load").header("host", "a");
    if close {
        request = request.header("connection", "close");
    }
    let response = sender
        .send_request(request.body(Empty::new()).expect("request"))
        .await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Requests one after another on one connection, kept alive; when the proxy closes it, a new one, as a
/// pooling client does. A request sent on a kept-alive connection that closed before any answer came is
/// sent again on a new one; anything else that goes wrong is a failure.
async fn kept_alive(
    addr: std::net::SocketAddr,
    tls: Option<Arc<Tls>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut kept: Option<SendRequest<Empty<Bytes>>> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(mut sender) = kept.take()
            && sender.ready().await.is_ok()
        {
            match one(&mut sender, false).await {
                Ok(200) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    kept = Some(sender);
                    continue;
                }
                Ok(status) => {
                    tally.fail(format!("status {status}"));
                    continue;
                }
                Err(e) if e.is_incomplete_message() || e.is_canceled() || is_reset(&e) => {
                    tally.resent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tally.fail(format!("kept-alive connection: {e:?}"));
                    continue;
                }
            }
        }
        match open(addr, tls.as_deref()).await {
            Ok(mut sender) => match one(&mut sender, false).await {
                Ok(200) => {
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    kept = Some(sender);
                }
                Ok(status) => tally.fail(format!("status {status}")),
                Err(e) => tally.fail(format!("new connection: {e:?}")),
            },
            Err(e) => tally.fail(e),
        }
    }
}

fn is_reset(e: &hyper::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
}

/// A new connection for every request.
async fn fresh(
    addr: std::net::SocketAddr,
    tls: Option<Arc<Tls>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        let outcome = match open(addr, tls.as_deref()).await {
            Ok(mut sender) => one(&mut sender, true)
                .await
                .map_err(|e| format!("new connection: {e:?}")),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(200) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => tally.fail(format!("status {status}")),
            Err(e) => tally.fail(e),
        }
    }
}

/// Waits until the load has had `more` answers beyond `from`.
fn wait_for_answers(tally: &Tally, from: u64, more: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.ok.load(Ordering::Relaxed) < from + more {
        assert!(
            Instant::now() < deadline,
            "the load stalled: {} answers, failures: {:?}",
            tally.ok.load(Ordering::Relaxed),
            tally.failures.lock().expect("failures")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_upgrade_under_load_fails_no_request() {
    upgrade_under_load("", None);
}

/// The new process reads the certificates from the config as it starts, before it takes the sockets over:
/// every handshake across the upgrade passes against the test CA and gets the same leaf.
#[test]
fn an_upgrade_over_tls_fails_no_request_and_keeps_the_certificate() {
    let pki = Pki::new();
    pki.leaf("a.test", "a");
    let listener = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"",
        pki.path("a.pem"),
        pki.path("a.key")
    );
    upgrade_under_load(&listener, Some(Arc::new(Tls::new(&pki, "a"))));
}

/// Weir with `server` lines added to the config, under load from kept-alive and new connections (over
/// `tls` if given), is upgraded: the old process exits 0, the new one serves on, and no request fails.
fn upgrade_under_load(server: &str, tls: Option<Arc<Tls>>) {
    adopt_orphans();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = runtime.block_on(upstream("a"));
    let mut weir = Weir::start(&config(upstream, server));
    let admin = weir.admin.expect("admin");
    let pid_file = weir.config_file().with_file_name("weir.pid");
    assert_eq!(pid_in(&pid_file), i32::try_from(weir.pid()).ok());

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (tls, stop, tally) = (tls.clone(), stop.clone(), tally.clone());
            if i % 2 == 0 {
                runtime.spawn(kept_alive(weir.addr, tls, stop, tally))
            } else {
                runtime.spawn(fresh(weir.addr, tls, stop, tally))
            }
        })
        .collect();
    wait_for_answers(&tally, 0, 200);

    let signalled = Instant::now();
    weir.signal(libc::SIGUSR2);
    let mut successor = Successor {
        pid: new_pid(&pid_file, weir.pid()),
        reaped: false,
    };
    let serving = signalled.elapsed();
    let exit = weir.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{exit}");
    eprintln!(
        "the new process served {serving:?} after SIGUSR2, the old one exited after {:?}",
        signalled.elapsed()
    );
    assert!(
        weir.wait_for_log(&format!("upgrade: pid {} serves", successor.pid)),
        "{}",
        weir.log()
    );
    // Served by the new process alone from here.
    wait_for_answers(&tally, tally.ok.load(Ordering::Relaxed), 400);
    stop.store(true, Ordering::Relaxed);
    for task in load {
        runtime.block_on(task).expect("a load task");
    }
    let failures = tally.failures.lock().expect("failures");
    assert!(
        failures.is_empty(),
        "{} failed of {}: {failures:#?}",
        failures.len(),
        tally.ok.load(Ordering::Relaxed)
    );
    eprintln!(
        "{} answers, {} sent again after a kept-alive connection closed",
        tally.ok.load(Ordering::Relaxed),
        tally.resent.load(Ordering::Relaxed)
    );
    assert_eq!(status(admin, READYZ), Some(200), "the new admin listener");

    assert_eq!(successor.stop(), Some(0));
    assert!(!pid_file.exists(), "the pid file outlived its process");
}

/// A new process that cannot start (its config no longer parses, or names another address than the
/// sockets it is handed) leaves the old one serving, and says why; the next USR2, with the config mended,
/// upgrades, and the new process applies what only a restart can.
#[test]
fn a_failed_upgrade_changes_nothing() {
    adopt_orphans();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = runtime.block_on(upstream("a"));
    let mut weir = Weir::start(&config(upstream, ""));
    let admin = weir.admin.expect("admin");
    let pid_file = weir.config_file().with_file_name("weir.pid");
    let three_fields = "GET / HTTP/1.1\r\nHost: a\r\nx-a: 1\r\nx-b: 2\r\nConnection: close\r\n\r\n";

    write_config(
        weir.config_file().parent().expect("dir"),
        &config(upstream, "bogus = 1"),
    );
    weir.signal(libc::SIGUSR2);
    assert!(
        weir.wait_for_record(&["upgrade failed, this process serves on", "exit status: 1"]),
        "{}",
        weir.log()
    );
    assert!(
        weir.log().contains("unknown field `bogus`"),
        "{}",
        weir.log()
    );
    assert_eq!(status(weir.addr, three_fields), Some(200));
    assert_eq!(status(admin, READYZ), Some(200));
    assert_eq!(pid_in(&pid_file), i32::try_from(weir.pid()).ok());

    let elsewhere = format!("listen = \"{}\"", closed_port());
    write_config(
        weir.config_file().parent().expect("dir"),
        &config(upstream, "").replacen("listen = \"127.0.0.1:0\"", &elsewhere, 1),
    );
    weir.signal(libc::SIGUSR2);
    assert!(
        weir.wait_for_log("an upgrade keeps the addresses it listens on"),
        "{}",
        weir.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while weir
        .log()
        .matches("upgrade failed, this process serves on")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{}", weir.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status(weir.addr, three_fields), Some(200));
    assert_eq!(pid_in(&pid_file), i32::try_from(weir.pid()).ok());

    write_config(
        weir.config_file().parent().expect("dir"),
        &config(upstream, "max_request_headers = 2"),
    );
    weir.signal(libc::SIGUSR2);
    let mut successor = Successor {
        pid: new_pid(&pid_file, weir.pid()),
        reaped: false,
    };
    let exit = weir.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{exit}");
    assert_eq!(status(weir.addr, three_fields), Some(431));
    assert_eq!(successor.stop(), Some(0));
}
