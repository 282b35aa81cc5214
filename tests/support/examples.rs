//! The README-replay harness behind `tests/examples.rs`: an example's README is its test, so the two
//! cannot drift.
//!
//! [`replay`] starts `examples/NAME/run.sh`, exactly what `make run EXAMPLE=NAME` starts, and waits for
//! Weir's `weir listening on` line. It then runs every step of `examples/NAME/README.md` in order with
//! `sh`, compares what each printed with what the README shows, stops `run.sh` with SIGTERM (what Ctrl-C
//! does) and checks that nothing it started is left.
//!
//! # The transcript format
//!
//! Only fenced blocks whose info string is exactly `console` or `log` are read; every other block is prose.
//!
//! ````text
//! ```console
//! $ curl -si http://127.0.0.1:8083/orders
//! HTTP/1.1 401 Unauthorized
//! content-type: text/plain; charset=utf-8
//! www-authenticate: Token
//! content-length: 29
//! date: …
//!
//! Missing authorization header
//! ```
//! ````
//!
//! - In a `console` block a line starting with `$ ` is a command; a command whose line ends with `\`
//!   continues on the next line (a leading `> ` there is dropped). The lines up to the next command or the
//!   end of the block are what the command prints, stdout and stderr together (CR before LF removed,
//!   trailing spaces and trailing empty lines ignored). A command must exit with status 0. Give curl `-s`
//!   (`curl -si`, `curl -sS`): its output is not a terminal here, and curl would add its progress meter.
//!   To show a failing command, print its status: `curl -sf http://… ; echo "exit $?"`.
//! - Each command runs as `sh -c` in one scratch directory (empty at the start of the README, shared by
//!   its steps), so generate data inline (`head -c 1048577 /dev/zero | curl --data-binary @- …`) and write
//!   files there. Variables assigned by a step (`TOKEN=$(curl -s … | jq -r .token)`) are seen by every
//!   later step, as in one terminal. `curl`, `jq` and `python3` are there.
//! - Wildcards in expected output: `…` (U+2026) within a line matches any run of characters of that line,
//!   including none (`date: …`, `{"token":"eyJ…"}`); a line that is only `…` matches any number of whole
//!   lines, including none (headers you do not want to show).
//! - A `log` block lists lines that the example's output (run.sh's stdout and stderr, Weir's log among
//!   them) must hold, in that order, once the steps above the block have run (waiting up to 5 s; `…` as
//!   above, and the log's timestamps need one). Not every line need be listed: each pattern takes the
//!   first line after the previous pattern's that fits it.
//! - Addresses are written `127.0.0.1:PORT` (or `localhost:PORT`) everywhere, in the README as in
//!   weir.toml and run.sh: the harness moves every such port, in commands and expected output alike.
//!
//! # Ports
//!
//! Each example has fixed ports (808N for Weir, 9N01… for its upstreams, N its scenario number; see
//! `examples/lib.sh`). So that checkouts testing at the same time on one machine never fight over them,
//! the harness passes run.sh a `WEIR_PORT_OFFSET` of minus a multiple of 100, up to 5,900, after checking
//! that every moved port is free; a start that still loses a port is retried with another offset. Moving
//! down by hundreds keeps a four-digit port four digits long, so a `content-length` of a body that echoes
//! an address still holds. Within this test binary the examples run one after another.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::support::workspace;

/// The wildcard of expected output.
pub const ANY: &str = "…";

/// How long a step may run.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long run.sh may take to print Weir's listening line: plugins compile on a cold cache.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long run.sh may take to stop everything after SIGTERM (Weir's own `shutdown_timeout` is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// One thing a README asks for.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// A command of a `console` block and what it prints.
    Step {
        line: usize,
        command: String,
        expected: Vec<String>,
    },
    /// A `log` block: lines the example's output must contain, in order.
    Log { line: usize, patterns: Vec<String> },
}

/// The `console` and `log` blocks of a README, in order. Panics on a block it cannot read.
pub fn parse(readme: &str) -> Vec<Item> {
    #[derive(PartialEq)]
    enum Block {
        Prose,
        Console,
        Log,
        Other,
    }
    let mut items = Vec::new();
    let mut block = Block::Prose;
    let mut indent = 0;
    let mut continued = false;
    // Output belongs to a command of its own block, never to the last command of the block before.
    let mut block_has_step = false;
    for (index, raw) in readme.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim_start();
        if trimmed.starts_with("```") {
            if block == Block::Prose {
                indent = raw.len() - trimmed.len();
                block_has_step = false;
                block = match trimmed.trim_start_matches('`').trim() {
                    "console" => Block::Console,
                    "log" => {
                        items.push(Item::Log {
                            line: number,
                            patterns: Vec::new(),
                        });
                        Block::Log
                    }
                    _ => Block::Other,
                };
            } else {
                assert!(
                    !continued,
                    "README line {number}: the block ends inside a command"
                );
                block = Block::Prose;
            }
            continue;
        }
        // A block inside a list item is indented with its fence.
        let line = raw
            .get(indent.min(raw.len() - trimmed.len())..)
            .unwrap_or(raw);
        match block {
            Block::Prose | Block::Other => {}
            Block::Log => {
                if let (false, Some(Item::Log { patterns, .. })) =
                    (line.trim().is_empty(), items.last_mut())
                {
                    patterns.push(line.trim_end().to_owned());
                }
            }
            Block::Console => {
                if continued {
                    let Some(Item::Step { command, .. }) = items.last_mut() else {
                        unreachable!("a continuation follows a command");
                    };
                    command.push('\n');
                    command.push_str(line.strip_prefix("> ").unwrap_or(line));
                    continued = line.ends_with('\\');
                } else if let Some(command) = line.strip_prefix("$ ") {
                    continued = command.ends_with('\\');
                    block_has_step = true;
                    items.push(Item::Step {
                        line: number,
                        command: command.to_owned(),
                        expected: Vec::new(),
                    });
                } else {
                    match items.last_mut() {
                        Some(Item::Step { expected, .. }) if block_has_step => {
                            expected.push(line.trim_end().to_owned())
                        }
                        _ => panic!(
                            "README line {number}: output before any command of its console block"
                        ),
                    }
                }
            }
        }
    }
    assert!(
        block == Block::Prose,
        "the README ends inside a fenced block"
    );
    // Trailing empty lines of an output are not part of it.
    for item in &mut items {
        if let Item::Step { expected, .. } = item {
            while expected.last().is_some_and(|l| l.is_empty()) {
                expected.pop();
            }
        }
    }
    items
}

/// Whether `line` fits `pattern`, where each `…` stands for any run of characters.
pub fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split(ANY);
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    // Each middle part at its leftmost place leaves the most room for the rest: with only `*`-like
    // wildcards that never loses a match.
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether `lines` fit `patterns`, where a pattern that is only `…` stands for any number of lines.
pub fn lines_match(patterns: &[String], lines: &[&str]) -> bool {
    match patterns.split_first() {
        None => lines.is_empty(),
        Some((pattern, rest)) if pattern == ANY => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((pattern, rest)) => lines
            .split_first()
            .is_some_and(|(line, more)| line_matches(pattern, line) && lines_match(rest, more)),
    }
}

/// `text` with every `127.0.0.1:PORT` and `localhost:PORT` moved by `offset`, as `examples/lib.sh` moves
/// them.
pub fn move_ports(text: &str, offset: i32) -> String {
    static ADDRESS: OnceLock<Regex> = OnceLock::new();
    let address = ADDRESS
        .get_or_init(|| Regex::new(r"(127\.0\.0\.1|localhost):([0-9]+)").expect("valid regex"));
    address
        .replace_all(text, |c: &regex::Captures<'_>| {
            let port: i64 = c[2].parse().expect("a port number");
            format!("{}:{}", &c[1], port + i64::from(offset))
        })
        .into_owned()
}

/// Output as the README shows it: no CR before LF, no trailing spaces, no trailing empty lines.
fn normalise(output: &str) -> Vec<String> {
    let mut lines: Vec<String> = output.lines().map(|l| l.trim_end().to_owned()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Starts the example, replays its README, stops it; panics with the step, the expected and the actual
/// output at the first mismatch.
pub fn replay(name: &str) {
    // One example at a time in this process: their logs stay apart and their port choices cannot race.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    let dir = workspace().join("examples").join(name);
    let readme_path = dir.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("{}: {e}", readme_path.display()));
    let items = parse(&readme);
    assert!(
        items.iter().any(|i| matches!(i, Item::Step { .. })),
        "{} has no console step",
        readme_path.display()
    );
    let mut example = Example::start(name, &dir);
    let scratch = tempfile::tempdir().expect("scratch directory");
    let mut variables = BTreeMap::new();
    let where_ = |line: &usize| format!("examples/{name}/README.md:{line}");
    for item in &items {
        match item {
            Item::Step {
                line,
                command,
                expected,
            } => {
                let command = move_ports(command, example.offset);
                let expected: Vec<String> = expected
                    .iter()
                    .map(|l| move_ports(l, example.offset))
                    .collect();
                let (status, output) = run_step(&command, &mut variables, scratch.path());
                let actual = normalise(&output);
                let actual_refs: Vec<&str> = actual.iter().map(String::as_str).collect();
                if !status.success() || !lines_match(&expected, &actual_refs) {
                    panic!(
                        "{}: the step printed something else (ports moved by {}{})\n$ {command}\n\
                         ---- expected (README) ----\n{}\n---- actual ----\n{}\n---- end ----",
                        where_(line),
                        example.offset,
                        if status.success() {
                            String::new()
                        } else {
                            format!(", and it exited with {status}")
                        },
                        expected.join("\n"),
                        actual.join("\n"),
                    );
                }
            }
            Item::Log { line, patterns } => {
                let patterns: Vec<String> = patterns
                    .iter()
                    .map(|l| move_ports(l, example.offset))
                    .collect();
                if let Err(missing) = example.wait_for_log(&patterns) {
                    panic!(
                        "{}: the example's output lacks `{missing}` (in order after the lines before it \
                         in the block)\n---- output ----\n{}---- end ----",
                        where_(line),
                        example.output()
                    );
                }
            }
        }
    }
    example.stop();
}

/// Runs one command as the README's reader would, with the variables earlier steps set; returns its exit
/// status and what it printed (stdout and stderr together).
fn run_step(
    command: &str,
    variables: &mut BTreeMap<String, String>,
    scratch: &Path,
) -> (ExitStatus, String) {
    let env_file = scratch.join(".weir-step-env");
    // `set -a` exports every variable the command assigns, so that `env -0` can hand it to the next step.
    let script = format!(
        "exec 2>&1\nset -a\n{{\n{command}\n}}\n__weir_status=$?\nenv -0 >\"$WEIR_STEP_ENV\"\nexit \"$__weir_status\"\n"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(scratch)
        .envs(variables.iter())
        .env("WEIR_STEP_ENV", &env_file)
        // A proxy in the developer's environment must not stand between curl and the example.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start sh");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sh") {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            panic!("the step did not finish in {STEP_TIMEOUT:?}:\n$ {command}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    if let Ok(dump) = std::fs::read(&env_file) {
        for pair in dump.split(|&b| b == 0) {
            let pair = String::from_utf8_lossy(pair);
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let inherited = std::env::var(key).ok();
            let shell_own = matches!(
                key,
                "PWD" | "OLDPWD" | "SHLVL" | "_" | "WEIR_STEP_ENV" | "NO_PROXY" | "no_proxy"
            ) || key.starts_with("__weir");
            if !shell_own && inherited.as_deref() != Some(value) {
                variables.insert(key.to_owned(), value.to_owned());
            }
        }
        let _ = std::fs::remove_file(&env_file);
    }
    (status, output)
}

/// Sends `signal` to the process group `pgid` (a child started with `process_group(0)`).
fn kill_group(pgid: u32, signal: i32) -> bool {
    let pgid = i32::try_from(pgid).expect("a pid");
    // SAFETY: kill has no memory preconditions; the group is one this test started.
    unsafe { libc::kill(-pgid, signal) == 0 }
}

/// A running `examples/NAME/run.sh`, in a process group of its own.
struct Example {
    child: Child,
    offset: i32,
    output: Arc<Mutex<String>>,
    stopped: bool,
}

impl Example {
    fn start(name: &str, dir: &Path) -> Example {
        let ports = ports(dir);
        assert!(!ports.is_empty(), "examples/{name} names no 127.0.0.1 port");
        let mut tried = Vec::new();
        for attempt in 0..8 {
            let offset = free_offset(&ports, attempt);
            let mut example = Example::spawn(dir, offset);
            match example.wait_ready() {
                Ok(()) => return example,
                // Another program took a port between the check and the bind: try other ports.
                Err(output) if output.contains("cannot listen") => {
                    tried.push(offset);
                    example.stop_quietly();
                }
                Err(output) => {
                    example.stop_quietly();
                    panic!(
                        "examples/{name}/run.sh did not start (ports moved by {offset})\n\
                         ---- output ----\n{output}---- end ----"
                    );
                }
            }
        }
        panic!("examples/{name}/run.sh found a port taken at every offset tried: {tried:?}");
    }

    fn spawn(dir: &Path, offset: i32) -> Example {
        let mut child = Command::new(dir.join("run.sh"))
            .env(
                "WEIR_BIN",
                crate::support::example_binaries(&["token_auth"]),
            )
            .env("WEIR_PORT_OFFSET", offset.to_string())
            // The test suite's compile cache: each plugin is compiled once for every test.
            .env("XDG_CACHE_HOME", workspace().join("target/weir-test-cache"))
            // The log level is the example's weir.toml's, whatever the developer's shell says.
            .env_remove("RUST_LOG")
            .env_remove("WEIR_PLUGIN_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}/run.sh: {e}", dir.display()));
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
        Example {
            child,
            offset,
            output,
            stopped: false,
        }
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    /// Until Weir says it listens; `Err(output)` if run.sh ends first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.output().contains("weir listening on http://") {
                return Ok(());
            }
            if self.child.try_wait().expect("wait").is_some() {
                // The readers may still hold the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(self.output());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}(no `weir listening on` line in {START_TIMEOUT:?})\n",
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until the output has lines fitting `patterns` in order; `Err` names the first
    /// pattern without a line.
    fn wait_for_log(&self, patterns: &[String]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let output = self.output();
            let mut lines = output.lines();
            let missing = patterns
                .iter()
                .find(|pattern| !lines.any(|line| line_matches(pattern, line.trim_end())));
            match missing {
                None => return Ok(()),
                Some(pattern) if Instant::now() > deadline => return Err(pattern.clone()),
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops run.sh as Ctrl-C would and checks that it stopped everything it started.
    fn stop(&mut self) {
        let pid = self.child.id();
        assert!(
            kill_process(pid, libc::SIGTERM),
            "run.sh ended before it was stopped\n---- output ----\n{}",
            self.output()
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "run.sh did not stop within {STOP_TIMEOUT:?} of SIGTERM\n---- output ----\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stopped = true;
        // run.sh waits for what it started before it exits, so its group must be empty now.
        let left = kill_group(pid, 0);
        if left {
            kill_group(pid, libc::SIGKILL);
        }
        assert!(
            !left,
            "run.sh exited on SIGTERM but left processes of its group running\n---- output ----\n{}",
            self.output()
        );
    }

    /// SIGTERM, a bounded wait, then SIGKILL to the whole group: nothing of it outlives the test.
    fn stop_quietly(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.child.id();
        kill_process(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(pid, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.stop_quietly();
        if std::thread::panicking() {
            eprintln!(
                "---- run.sh output (ports moved by {}) ----\n{}",
                self.offset,
                self.output()
            );
        }
    }
}

/// Sends `signal` to run.sh itself, not its group: run.sh's trap must stop the rest, and that is tested.
fn kill_process(pid: u32, signal: i32) -> bool {
    let pid = i32::try_from(pid).expect("a pid");
    // SAFETY: kill has no memory preconditions; the process is this test's child, not yet reaped.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// The ports an example's files name (`127.0.0.1:PORT` in weir.toml, run.sh and the rest).
fn ports(dir: &Path) -> Vec<u16> {
    let address = Regex::new(r"(?:127\.0\.0\.1|localhost):([0-9]+)").expect("valid regex");
    let mut ports = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the example's directory") {
        let path = entry.expect("an entry").path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for c in address.captures_iter(&text) {
            if let Ok(port) = c[1].parse::<u16>()
                && !ports.contains(&port)
            {
                ports.push(port);
            }
        }
    }
    ports
}

/// An offset (minus a multiple of 100) at which every port is free, starting from a place that differs
/// between processes so that two test runs do not walk the same list.
fn free_offset(ports: &[u16], attempt: u32) -> i32 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let mut report = String::new();
    for step in 0..59 {
        let k = (seed.wrapping_add(attempt * 7).wrapping_add(step) % 59 + 1) as i32;
        let offset = -100 * k;
        let free = ports.iter().all(|&port| {
            let port = i32::from(port) + offset;
            u16::try_from(port).is_ok_and(|port| {
                port >= 1024 && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            })
        });
        if free {
            return offset;
        }
        let _ = write!(report, " {offset}");
    }
    panic!("no offset leaves the ports {ports:?} free; tried{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_wildcard_matches_any_run_within_a_line() {
        assert!(line_matches(
            "date: …",
            "date: Mon, 30 Nov 2026 19:41:19 GMT"
        ));
        assert!(line_matches("date: …", "date: "));
        assert!(line_matches(
            "{\"token\":\"eyJ…\",\"n\":…}",
            "{\"token\":\"eyJabc\",\"n\":3}"
        ));
        assert!(line_matches("…", "anything"));
        assert!(line_matches("a…b…c", "abc"));
        assert!(line_matches("a…b…c", "a-b-b-c"));
        assert!(!line_matches("a…b…c", "a-c-b"));
        assert!(!line_matches("date: …", "Date: x"));
        assert!(!line_matches("exact", "exact "));
        assert!(
            !line_matches("ab…ba", "aba"),
            "the two ends may not overlap"
        );
    }

    #[test]
    fn a_wildcard_line_matches_any_number_of_lines() {
        let patterns = strings(&["HTTP/1.1 200 OK", "…", "", "body"]);
        assert!(lines_match(&patterns, &["HTTP/1.1 200 OK", "", "body"]));
        assert!(lines_match(
            &patterns,
            &["HTTP/1.1 200 OK", "a: 1", "b: 2", "", "body"]
        ));
        assert!(!lines_match(
            &patterns,
            &["HTTP/1.1 200 OK", "a: 1", "body"]
        ));
        assert!(!lines_match(
            &patterns,
            &["HTTP/1.1 200 OK", "", "body", "more"]
        ));
    }

    #[test]
    fn steps_blocks_and_continuations_are_read() {
        let readme = "# T\n\n```console\n$ A=1\n$ curl -s x \\\n> -H 'y'\nout 1\n\nout 2\n\n```\n\n\
                      ```sh\n$ not a step\n```\n\n- item\n\n  ```log\n  … INFO weir::access: GET / 200 …\n  ```\n";
        assert_eq!(
            parse(readme),
            vec![
                Item::Step {
                    line: 4,
                    command: "A=1".into(),
                    expected: vec![],
                },
                Item::Step {
                    line: 5,
                    command: "curl -s x \\\n-H 'y'".into(),
                    expected: strings(&["out 1", "", "out 2"]),
                },
                Item::Log {
                    line: 19,
                    patterns: strings(&["… INFO weir::access: GET / 200 …"]),
                },
            ]
        );
    }

    #[test]
    fn ports_move_in_commands_and_output() {
        assert_eq!(
            move_ports(
                "curl http://127.0.0.1:8083/x -H 'Host: localhost:9301' 10.0.0.1:80",
                -300
            ),
            "curl http://127.0.0.1:7783/x -H 'Host: localhost:9001' 10.0.0.1:80"
        );
    }

    #[test]
    fn variables_set_by_a_step_reach_the_next() {
        let scratch = tempfile::tempdir().unwrap();
        let mut variables = BTreeMap::new();
        let (status, output) = run_step(
            "TOKEN=$(printf 'a b')\necho set",
            &mut variables,
            scratch.path(),
        );
        assert!(status.success());
        assert_eq!(output, "set\n");
        let (_, output) = run_step("echo \"[$TOKEN]\" >&2", &mut variables, scratch.path());
        assert_eq!(output, "[a b]\n", "stderr is captured with stdout");
        let (status, _) = run_step("false", &mut variables, scratch.path());
        assert!(!status.success());
    }
}
