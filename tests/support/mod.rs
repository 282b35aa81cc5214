//! Test harness: the real `weir` binary on a loopback port, real upstreams, a real HTTP client.
#![allow(dead_code, reason = "each test file uses its own part of the harness")]

pub mod endpoint;
pub mod raw;
pub mod redis_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// A plugin `.wasm` built by `make plugins` (the test fixture or a built-in), by file stem.
pub fn wasm(name: &str) -> PathBuf {
    let path = workspace()
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// The directory of this build's `weir`, with `weir-upstream` built beside it and the built-in plugins in
/// its `plugins/` (each of `plugins` checked there): what an example's run.sh gets as `WEIR_BIN`.
pub fn example_binaries(plugins: &[&str]) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_weir"))
            .parent()
            .expect("the binary's directory")
            .to_owned();
        // Cargo builds a test's own package's binaries only; weir-upstream is another package's, built here
        // into the same profile directory (a no-op when `make test` has built it).
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory");
        let profile = if profile == "debug" { "dev" } else { profile };
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args([
                "build",
                "--quiet",
                "-p",
                "weir-upstream",
                "--bin",
                "weir-upstream",
            ])
            .args(["--profile", profile, "--target-dir"])
            .arg(dir.parent().expect("the target directory"))
            .current_dir(workspace())
            .status()
            .expect("run cargo build -p weir-upstream");
        assert!(status.success(), "cargo build -p weir-upstream failed");
        dir
    });
    for plugin in plugins {
        assert!(
            dir.join(format!("plugins/{plugin}.wasm")).is_file(),
            "{}/plugins has no {plugin}.wasm: run `make plugins` first",
            dir.display()
        );
    }
    dir
}

/// Starts an upstream on an ephemeral loopback port; it lives as long as the test's runtime.
pub async fn upstream(name: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("bound");
    let name = name.to_owned();
    tokio::spawn(async move { weir_upstream::serve(listener, &name).await });
    addr
}

/// A config with one upstream `a` and one catch-all route to it, whose chain is `chain` (plugin entries).
pub fn one_route(upstream: SocketAddr, chain: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n[[routes]]\nupstream = \"a\"\n{chain}"
    )
}

/// A chain entry for the test fixture: `fixture(r#"mode = "tag", name = "x""#)`.
pub fn fixture(config: &str) -> String {
    format!("[[routes.plugins]]\npath = \"{{fixture}}\"\nconfig = {{ {config} }}\n")
}

/// A `headers` entry setting request header `header` from context key `key`, after removing any value the
/// client sent, so that a client can never pass one off as what an earlier plugin found.
pub fn context_to_header(header: &str, key: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"headers\"\nconfig.request = {{ remove = [\"{header}\"], set = {{ \"{header}\" = \"{{ctx.{key}}}\" }} }}\n"
    )
}

/// A loopback address where nothing listens.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound")
}

/// The `weir` binary, started with a config; killed on drop, its log printed if the test failed.
pub struct Weir {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener, when the config has one.
    pub admin: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Weir {
    /// `config` is a TOML file's text; `{fixture}` is replaced by the fixture plugin's path.
    pub fn start(config: &str) -> Weir {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_config(dir.path(), config);
        let mut child = weir_command()
            .args(["run", "-c"])
            .arg(&file)
            .env("XDG_CACHE_HOME", test_cache())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read weir's first line");
        // `https://` when the config has `[server.tls]`.
        let Some(addr) = first
            .trim()
            .strip_prefix("weir listening on http://")
            .or_else(|| first.trim().strip_prefix("weir listening on https://"))
        else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "weir did not start; stdout: {first:?}\nstderr:\n{}",
                log.lock().expect("log")
            );
        };
        // With an `[admin]` table, the admin listener's address comes next.
        let admin = config.contains("[admin]").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read the admin line");
            line.trim()
                .strip_prefix("weir admin on http://")
                .unwrap_or_else(|| panic!("no admin line: {line:?}"))
                .parse()
                .expect("admin address")
        });
        Weir {
            addr: addr.parse().expect("address"),
            admin,
            child,
            log,
            _dir: dir,
        }
    }

    /// The value of a sample of `/metrics` (the admin listener must be configured): `name` with every
    /// label of `labels`, as the exposition shows it (`weir_plugin_instances_created_total`).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let admin = self.admin.expect("an [admin] table in the config");
        let text = get(&format!("http://{admin}/metrics")).await.text();
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric == name && wanted).then(|| value.parse().ok())?
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The config file the process runs, which a test may rewrite before a reload.
    pub fn config_file(&self) -> PathBuf {
        self._dir.path().join("weir.toml")
    }

    /// Sends the process a signal (SIGHUP to reload, SIGTERM to drain).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on the process this harness started and still holds.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process exits, for at most `within`; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir still running {within:?} later"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the proxy process so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .expect("value")
            .parse()
            .expect("number");
        kib * 1024
    }

    /// Waits (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        self.wait_for_record(&[needle])
    }

    /// Waits (bounded) until one log record contains every needle, so that a message and the fields that
    /// name its route are matched on the same record, not each on some other line. A record is a line and
    /// the indented lines after it (an error's backtrace).
    pub fn wait_for_record(&self, needles: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if records(&self.log()).any(|r| needles.iter().all(|n| r.contains(n))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The user and system CPU time the proxy process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("proc stat");
        // The fields after the command name, which is in parentheses and may hold spaces; utime and stime
        // are the 14th and 15th fields of the line.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let per_second = u64::try_from(per_second).expect("clock ticks per second");
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

/// The log's records: each line that is not indented, with the indented lines that follow it.
fn records(log: &str) -> impl Iterator<Item = String> + '_ {
    let mut lines = log.lines().peekable();
    std::iter::from_fn(move || {
        let mut record = lines.next()?.to_owned();
        while let Some(next) = lines.next_if(|l| l.starts_with(char::is_whitespace)) {
            record.push('\n');
            record.push_str(next);
        }
        Some(record)
    })
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- weir log ----\n{}", self.log());
        }
    }
}

/// One compile cache for every test run: each plugin is compiled once, not once per test.
fn test_cache() -> PathBuf {
    workspace().join("target/weir-test-cache")
}

/// What `python3 -c script args…` prints: Python as the reader of formats nobody here wrote (PyYAML,
/// cryptography, gzip). Its failure fails the test, with what it wrote to stderr.
pub fn python_output(script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn weir_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

pub fn write_config(dir: &Path, config: &str) -> PathBuf {
    let file = dir.join("weir.toml");
    let text = config.replace("{fixture}", &wasm("fixture").display().to_string());
    std::fs::write(&file, text).expect("write config");
    file
}

/// The result of `weir check` on a config text.
pub struct Checked {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn check(config: &str) -> Checked {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), config);
    let out = weir_command()
        .args(["check", "-c"])
        .arg(&file)
        .env("XDG_CACHE_HOME", test_cache())
        .output()
        .expect("run weir check");
    Checked {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Compares what users read with `tests/golden/NAME`; `WEIR_BLESS=1` writes the file instead, for a change
/// of wording made on purpose (review the diff).
pub fn golden(name: &str, actual: &str) {
    let file = workspace().join("tests/golden").join(name);
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&file, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (WEIR_BLESS=1 writes it)", file.display()));
    assert_eq!(
        actual,
        expected,
        "the text differs from {} (WEIR_BLESS=1 rewrites it after a change made on purpose)",
        file.display()
    );
}

/// `weir check`'s report with the temporary directory of the config taken out of each line.
pub fn report(out: &Checked) -> String {
    out.stderr
        .lines()
        .map(|line| match line.find("weir.toml:") {
            Some(at) => {
                let (level, _) = line.split_once(' ').unwrap_or(("", ""));
                format!("{level} {}\n", &line[at..])
            }
            None => format!("{line}\n"),
        })
        .collect()
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .collect()
    }
}

/// Writes `bytes` to `to` from the loopback address `from` (any of 127.0.0.0/8), reads until the server
/// closes, and parses the first response.
pub async fn exchange_from(to: SocketAddr, from: &str, bytes: &[u8]) -> raw::Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let from: std::net::IpAddr = from.parse().expect("an address");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = socket.connect(to).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    match raw::parse_responses(&got, true) {
        (responses, None) if !responses.is_empty() => responses[0].clone(),
        (_, bad) => panic!("{bad:?}: {}", raw::show(&got, 500)),
    }
}

/// The `client` field of each JSON access line in `log`.
pub fn logged_clients(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["client"].as_str().map(str::to_owned))
        .collect()
}

/// What the echo upstream says it received.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().expect("value").to_owned())
            .collect()
    }

    pub fn path(&self) -> &str {
        self.0["path"].as_str().expect("path")
    }

    pub fn upstream(&self) -> &str {
        self.0["upstream"].as_str().expect("upstream")
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(request: Request<Full<Bytes>>) -> Reply {
    let response = tokio::time::timeout(Duration::from_secs(30), client().request(request))
        .await
        .expect("response within 30 s")
        .expect("a response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post(url: &str, body: &str) -> Reply {
    send(
        Request::post(url)
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

pub async fn get(url: &str) -> Reply {
    get_with(url, &[]).await
}

pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(request.body(Full::default()).expect("request")).await
}

/// When the certificates in `file` stop serving, as Python's `cryptography` reads them (nobody here wrote
/// it): `first`, the first certificate's `notAfter`; `earliest`, the earliest of them; `crl`, the list's
/// next update. In seconds since the Unix epoch.
pub fn expiry_by_python(kind: &str, file: &str) -> f64 {
    const READ: &str = r#"
import sys
from cryptography import x509
kind, data = sys.argv[1], open(sys.argv[2], "rb").read()
if kind == "crl":
    print(x509.load_pem_x509_crl(data).next_update_utc.timestamp())
else:
    certs = x509.load_pem_x509_certificates(data)
    dates = [c.not_valid_after_utc.timestamp() for c in certs]
    print(dates[0] if kind == "first" else min(dates))
"#;
    let out = python_output(READ, &[kind.as_ref(), file.as_ref()]);
    let text = String::from_utf8_lossy(&out);
    text.trim().parse().unwrap_or_else(|_| panic!("{text:?}"))
}
