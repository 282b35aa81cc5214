//! Scenario 5 in a real browser: the single-page app of `examples/spa` used through headless Chromium.
//!
//! The test starts exactly what the example's README starts (`examples/spa/run.sh`, its ports moved as
//! `tests/examples.rs` moves them), then Debian's Chromium (`/usr/bin/chromium`, which `make test-deps`
//! installs) with a new profile, and hands the browser's DevTools address to
//! [`tests/browser/spa.py`](browser/spa.py), which drives it over the DevTools protocol as a person would:
//! `/` lands on the login page; a wrong password shows the login API's message; signing in through the
//! form (typing into `#username` and `#password`, a mouse click on `#login`) lands on the app with the
//! token as an HttpOnly cookie; the app's button opens the protected API; an unknown path shows the app;
//! a tampered cookie is sent back to the login page; `#logout` clears the cookie and lands on the login
//! page. The app page's screenshot goes to `examples/spa/screenshot.png`, which the example's README
//! shows.
//!
//! Nothing is fetched at run time. A machine where Chromium cannot run fails this test, saying so: a
//! browser test skipped in silence would pass forever. Chromium and run.sh are stopped by their process
//! ids when the test ends, a panic included.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::workspace;

const CHROMIUM: &str = "/usr/bin/chromium";
/// run.sh may compile the plugins on a cold cache (the examples test shares the cache, so usually not).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Chromium prints its DevTools address within a second or two here.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);
/// The walk through the app takes a few seconds; each of its waits is bounded at 10 s.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(45);
/// The example's fixed ports (examples/spa/weir.toml and run.sh), moved together by the offset.
const PORTS: [u16; 2] = [8085, 9501];

#[test]
fn the_spa_in_headless_chromium() {
    let started = Instant::now();
    preflight();
    let example = Example::start();
    let browser = Chromium::start();
    let shot_dir = tempfile::tempdir().expect("a scratch directory");
    let shot = shot_dir.path().join("screenshot.png");

    let mut driver = Command::new("python3")
        .arg(workspace().join("tests/browser/spa.py"))
        .arg("--devtools")
        .arg(&browser.devtools)
        .arg("--base")
        .arg(&example.base)
        .arg("--screenshot")
        .arg(&shot)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start python3 tests/browser/spa.py");
    let output = collect(&mut driver);
    let deadline = Instant::now() + DRIVER_TIMEOUT;
    let status = loop {
        if let Some(status) = driver.try_wait().expect("wait for the driver") {
            break Some(status);
        }
        if Instant::now() > deadline {
            signal_group(driver.id(), libc::SIGKILL);
            let _ = driver.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The readers may still hold the last lines.
    std::thread::sleep(Duration::from_millis(50));
    let output = output.lock().expect("output").clone();
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "the browser walk through examples/spa failed ({status}):\n{output}\n\
             ---- Chromium's last lines ----\n{}",
            browser.tail()
        ),
        None => panic!(
            "the browser walk through examples/spa did not finish in {DRIVER_TIMEOUT:?}:\n{output}"
        ),
    }
    eprint!("{output}");

    let png = std::fs::read(&shot).expect("the driver wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let (width, height) = (
        u32::from_be_bytes(png[16..20].try_into().expect("IHDR width")),
        u32::from_be_bytes(png[20..24].try_into().expect("IHDR height")),
    );
    assert_eq!(
        (width, height),
        (720, 560),
        "the screenshot has the viewport's size"
    );
    assert!(
        png.len() < 100 << 10,
        "the screenshot should stay small enough to commit: {} bytes",
        png.len()
    );
    let target = workspace().join("examples/spa/screenshot.png");
    std::fs::write(&target, &png).unwrap_or_else(|e| panic!("{}: {e}", target.display()));

    drop(browser);
    example.stop();
    eprintln!("the browser walk took {:?}", started.elapsed());
}

/// Fails, saying why, when the browser or the driver's one package is missing.
fn preflight() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "Chromium cannot run on this machine: {CHROMIUM} is missing. `make test-deps` installs Debian's \
         `chromium` package; this test is never skipped."
    );
    let websockets = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .output()
        .expect("run python3");
    assert!(
        websockets.status.success(),
        "the browser driver needs Python's `websockets` package (`make test-deps` installs it): {}",
        String::from_utf8_lossy(&websockets.stderr)
    );
}

/// Reads a child's stdout and stderr into one string, line by line, as they come.
fn collect(child: &mut Child) -> Arc<Mutex<String>> {
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut output = sink.lock().expect("output");
                output.push_str(&line);
                output.push('\n');
            }
        });
    }
    output
}

fn signal(pid: u32, signal: i32) -> bool {
    let pid = i32::try_from(pid).expect("a pid");
    // SAFETY: kill has no memory preconditions; the process is this test's child, not yet reaped.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Sends `signal` to the process group `pgid` (a child started with `process_group(0)`).
fn signal_group(pgid: u32, signal: i32) -> bool {
    let pgid = i32::try_from(pgid).expect("a pid");
    // SAFETY: kill has no memory preconditions; the group is one this test started.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// SIGTERM to `child`, up to `grace` for it to exit, then SIGKILL to its whole group (what it started).
fn stop(child: &mut Child, grace: Duration) -> bool {
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut exited = false;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = signal_group(child.id(), 0);
    signal_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
    exited && !left
}

/// Headless Chromium with a new, empty profile, on a DevTools port of its choosing.
struct Chromium {
    child: Child,
    devtools: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Chromium {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("Chromium cannot run on this machine: {CHROMIUM}: {e}"));
        // Chromium goes on writing to stderr (D-Bus complaints in a container): the reader drains it for
        // the browser's whole life, keeping the last other lines for a failure's report.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = mpsc::channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://")
                    && line.starts_with("DevTools listening on ")
                {
                    let _ = found.send(line[at..].trim().to_owned());
                }
                // No D-Bus in a container: noise, not a reason.
                if line.contains(":ERROR:dbus/") {
                    continue;
                }
                let mut lines = lines.lock().expect("stderr");
                lines.push(line);
                if lines.len() > 40 {
                    lines.remove(0);
                }
            }
        });
        let mut browser = Chromium {
            child,
            devtools: String::new(),
            stderr,
            _profile: profile,
        };
        match address.recv_timeout(BROWSER_TIMEOUT) {
            Ok(devtools) => browser.devtools = devtools,
            Err(_) => {
                let exited = browser.child.try_wait().ok().flatten();
                panic!(
                    "Chromium cannot run on this machine: no `DevTools listening on ws://…` line in \
                     {BROWSER_TIMEOUT:?}{}\n---- its stderr ----\n{}",
                    exited
                        .map(|s| format!(" (it exited: {s})"))
                        .unwrap_or_default(),
                    browser.tail()
                );
            }
        }
        browser
    }

    fn tail(&self) -> String {
        self.stderr.lock().expect("stderr").join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// `examples/spa/run.sh`, in a process group of its own, its ports moved to free ones.
struct Example {
    child: Child,
    base: String,
    output: Arc<Mutex<String>>,
    stopped: bool,
}

impl Example {
    fn start() -> Example {
        let run_sh = workspace().join("examples/spa/run.sh");
        for attempt in 0..8 {
            let offset = free_offset(attempt);
            let mut child = Command::new(&run_sh)
                .env(
                    "WEIR_BIN",
                    support::example_binaries(&["jwt_login", "jwt_auth", "spa_router"]),
                )
                .env("WEIR_PORT_OFFSET", offset.to_string())
                // The test suite's compile cache, shared with tests/examples.rs.
                .env("XDG_CACHE_HOME", workspace().join("target/weir-test-cache"))
                .env_remove("RUST_LOG")
                .env_remove("WEIR_PLUGIN_DIR")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", run_sh.display()));
            let output = collect(&mut child);
            let mut example = Example {
                child,
                base: String::new(),
                output,
                stopped: false,
            };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let output = example.output();
                if let Some(address) = output
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("weir listening on "))
                {
                    example.base = address.to_owned();
                    return example;
                }
                let ended = example.child.try_wait().expect("wait").is_some();
                if ended && output.contains("cannot listen") {
                    // Another program took a port between the check and the bind: other ports.
                    break;
                }
                assert!(
                    !ended,
                    "examples/spa/run.sh did not start (ports moved by {offset})\n{output}"
                );
                assert!(
                    Instant::now() < deadline,
                    "examples/spa/run.sh: no `weir listening on` line in {START_TIMEOUT:?}\n{output}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            example.stop_quietly();
        }
        panic!("examples/spa/run.sh found a port taken at every offset tried");
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// Stops run.sh as Ctrl-C would, and checks that it stopped what it started.
    fn stop(mut self) {
        self.stopped = true;
        assert!(
            stop(&mut self.child, Duration::from_secs(15)),
            "examples/spa/run.sh did not stop everything it started on SIGTERM\n{}",
            self.output()
        );
    }

    fn stop_quietly(&mut self) {
        if !self.stopped {
            self.stopped = true;
            stop(&mut self.child, Duration::from_secs(5));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- examples/spa/run.sh output ----\n{}", self.output());
        }
        self.stop_quietly();
    }
}

/// An offset (minus a multiple of 100, as tests/examples.rs moves examples) at which the example's ports
/// are free.
fn free_offset(attempt: u32) -> i32 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for step in 0..59 {
        let offset = -100 * (seed.wrapping_add(attempt * 7).wrapping_add(step) % 59 + 1) as i32;
        let free = PORTS.iter().all(|&port| {
            u16::try_from(i32::from(port) + offset).is_ok_and(|port| {
                port >= 1024 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            })
        });
        if free {
            return offset;
        }
    }
    panic!("no offset leaves the ports {PORTS:?} free");
}
