//! Every number, size and duration in the config at its boundaries, and `grants.http` at its edges: what
//! `weir check` accepts, `weir run` starts and serves; what check refuses, it refuses with exit code 1 and
//! an error naming the file, line and field, never with a panic, and `weir run` refuses it the same way.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

/// Where a case puts its line: which table of the base config.
#[derive(Clone, Copy)]
enum Table {
    /// `[server]`, with the usual chain of one fixture entry.
    Server,
    /// `[server]` of a config with no plugin at all, so that a plugin's own needs do not decide.
    ServerAlone,
    Upstream,
    Route,
    Plugin,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Check accepts, run starts and a GET through the route gets 200.
    Serves,
    /// Check accepts, run starts and answers, with any status: a 1 ms timeout may well give 504.
    Answers,
    /// Check and run refuse, naming the table, route or plugin (`route "r", plugin #1 (`) and the field.
    Refused(&'static str, &'static str),
}

use Expect::{Answers, Refused, Serves};

struct Case {
    table: Table,
    line: String,
    expect: Expect,
    /// A `[server]` line the case needs besides its own.
    server: &'static str,
    /// The line a refusal must point at, when it is not the case's own.
    at: Option<&'static str>,
}

fn case(table: Table, line: impl Into<String>, expect: Expect) -> Case {
    Case {
        table,
        line: line.into(),
        expect,
        server: "",
        at: None,
    }
}

impl Case {
    fn with_server(self, server: &'static str) -> Case {
        Case { server, ..self }
    }

    fn at(self, at: &'static str) -> Case {
        Case {
            at: Some(at),
            ..self
        }
    }
}

const NOOP: &str = "[[routes.plugins]]\npath = \"{fixture}\"\nconfig = { mode = \"noop\" }\n";

/// The base config with the case's line in its table; `upstream` is a live loopback upstream.
fn config(case: &Case, upstream: SocketAddr) -> String {
    let (line, upstream_line, route, plugin) = match case.table {
        Table::Server | Table::ServerAlone => (case.line.as_str(), "", "", ""),
        Table::Upstream => ("", case.line.as_str(), "", ""),
        Table::Route => ("", "", case.line.as_str(), ""),
        Table::Plugin => ("", "", "", case.line.as_str()),
    };
    let chain = match case.table {
        Table::ServerAlone => String::new(),
        _ => format!("{NOOP}{plugin}\n"),
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n{line}\n\n[upstreams.a]\nurl = \"http://{upstream}\"\n{upstream_line}\n\n[[routes]]\nname = \"r\"\nupstream = \"a\"\n{route}\n\n{chain}",
        case.server
    )
}

/// The 1-based line of the case's own line in the config, which its error must name.
fn line_of(config: &str, case: &Case) -> usize {
    let first = case
        .at
        .unwrap_or_else(|| case.line.lines().next().unwrap_or_default());
    config.lines().position(|l| l == first).map_or(0, |i| i + 1)
}

/// Runs every case, in parallel, and returns what went wrong with each that failed.
fn run_cases(cases: Vec<Case>) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = runtime.block_on(upstream("a"));
    std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| scope.spawn(move || run_case(case, upstream)))
            .collect();
        handles
            .into_iter()
            .zip(&cases)
            .filter_map(|(handle, case)| match handle.join() {
                Ok(Ok(())) => None,
                Ok(Err(problem)) => Some(format!("{:?}: {problem}", case.line)),
                Err(_) => Some(format!("{:?}: the case panicked (see above)", case.line)),
            })
            .collect()
    })
}

fn run_case(case: &Case, upstream: SocketAddr) -> Result<(), String> {
    let config = config(case, upstream);
    let checked = check(&config);
    if checked.stderr.contains("panicked") {
        return Err(format!("weir check panicked:\n{}", checked.stderr));
    }
    match case.expect {
        Serves | Answers => {
            if !checked.success {
                return Err(format!("weir check refused it:\n{}", checked.stderr));
            }
            // `Weir::start` panics, and so fails the case, unless run prints its address.
            let weir = Weir::start(&config);
            let reply = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(get(&weir.url("/x")));
            if case.expect == Serves && reply.status != 200 {
                return Err(format!(
                    "weir run answered {}: {}\n{}",
                    reply.status,
                    reply.text(),
                    weir.log()
                ));
            }
            Ok(())
        }
        Refused(owner, field) => {
            let wanted = format!("weir.toml:{}:", line_of(&config, case));
            let field = format!("field \"{field}\":");
            let names_it = |stderr: &str| {
                stderr.lines().any(|l| {
                    l.starts_with("error: ")
                        && l.contains(&wanted)
                        && l.contains(owner)
                        && l.contains(&field)
                })
            };
            if checked.code != Some(1) || !names_it(&checked.stderr) {
                return Err(format!(
                    "weir check should exit 1 with {wanted} … {owner} … {field}; exit {:?}, stdout {:?}, stderr:\n{}",
                    checked.code, checked.stdout, checked.stderr
                ));
            }
            let (code, stdout, stderr) = refused_run(&config)?;
            if code != Some(1) || stderr.contains("panicked") || !names_it(&stderr) {
                return Err(format!(
                    "weir run should refuse as check does; exit {code:?}, stdout {stdout:?}, stderr:\n{stderr}"
                ));
            }
            Ok(())
        }
    }
}

/// `weir run` on a config check refused: it must exit by itself, at once.
fn refused_run(config: &str) -> Result<(Option<i32>, String, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = write_config(dir.path(), config);
    let mut child = weir_command()
        .args(["run", "-c"])
        .arg(&file)
        .env("XDG_CACHE_HOME", workspace().join("target/weir-test-cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("weir run was still running 20 s after a config check refused".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    Ok((status.code(), stdout, stderr))
}

fn assert_all(cases: Vec<Case>) {
    let failures = run_cases(cases);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn server_fields() {
    use Table::{Server, ServerAlone};
    const WORKERS: Expect = Refused("server, ", "workers");
    const INSTANCES: Expect = Refused("server, ", "max_instances");
    const MEMORY: Expect = Refused("server, ", "max_plugin_memory");
    const SHUTDOWN: Expect = Refused("server, ", "shutdown_timeout");
    const HEAD: Expect = Refused("server, ", "max_request_head");
    const TARGET: Expect = Refused("server, ", "max_request_target");
    const BODY: Expect = Refused("server, ", "client_body_timeout");
    const HEADER: Expect = Refused("server, ", "header_read_timeout");
    const KEEPALIVE: Expect = Refused("server, ", "keepalive_timeout");
    const CONNECTIONS: Expect = Refused("server, ", "max_connections");
    const FIELDS: Expect = Refused("server, ", "max_request_headers");
    assert_all(vec![
        case(Server, "max_request_target = 0", TARGET),
        case(Server, "max_request_target = 1023", TARGET),
        case(Server, "max_request_target = \"1KiB\"", Serves),
        case(Server, "max_request_target = \"64KiB\"", Serves),
        case(Server, "max_request_target = 65537", TARGET),
        case(Server, "max_request_head = 0", HEAD),
        case(Server, "max_request_head = 1023", HEAD),
        case(Server, "max_request_head = \"1KiB\"", Serves),
        case(Server, "max_request_head = \"1MiB\"", Serves),
        case(Server, "max_request_head = 1048577", HEAD),
        case(Server, "max_request_head = 18446744073709551615", HEAD),
        case(Server, "workers = 0", WORKERS),
        case(Server, "workers = 1", Serves),
        case(Server, "workers = 1024", Serves),
        case(Server, "workers = 1025", WORKERS),
        case(Server, "workers = 18446744073709551615", WORKERS),
        case(Server, "workers = -1", WORKERS),
        case(Server, "max_instances = 0", INSTANCES),
        // With no plugin, one slot is all the sandbox needs.
        case(ServerAlone, "max_instances = 1", Serves),
        // The one entry may have its 64 busy and its idle instances alive at once.
        case(Server, "max_instances = 1", INSTANCES),
        case(Server, "max_instances = 16384", Serves),
        case(Server, "max_instances = 16385", INSTANCES),
        case(Server, "max_instances = 4294967295", INSTANCES),
        case(Server, "max_instances = 18446744073709551615", INSTANCES),
        // Two entries cannot share their instances.
        case(Table::Plugin, NOOP, INSTANCES)
            .with_server("max_instances = 100")
            .at("max_instances = 100"),
        case(ServerAlone, "max_plugin_memory = 0", MEMORY),
        case(ServerAlone, "max_plugin_memory = 65535", MEMORY),
        case(ServerAlone, "max_plugin_memory = \"64KiB\"", Serves),
        case(Server, "max_plugin_memory = \"4GiB\"", Serves),
        case(Server, "max_plugin_memory = 4294967297", MEMORY),
        case(Server, "max_plugin_memory = \"17179869184GiB\"", MEMORY),
        case(Server, "max_plugin_memory = 18446744073709551615", MEMORY),
        // 0 has a meaning: requests in flight are cut off at once.
        case(Server, "shutdown_timeout = \"0s\"", Serves),
        case(Server, "shutdown_timeout = \"1ns\"", Serves),
        case(Server, "shutdown_timeout = \"365d\"", Serves),
        case(Server, "shutdown_timeout = \"365d 1ns\"", SHUTDOWN),
        case(Server, "shutdown_timeout = \"1000000000d\"", SHUTDOWN),
        case(
            Server,
            "shutdown_timeout = \"1000000000000000000000d\"",
            SHUTDOWN,
        ),
        // The GET of each case has no body to time out.
        case(Server, "client_body_timeout = \"0s\"", BODY),
        case(Server, "client_body_timeout = \"999us\"", BODY),
        case(Server, "client_body_timeout = \"1ms\"", Serves),
        case(Server, "client_body_timeout = \"365d\"", Serves),
        case(Server, "client_body_timeout = \"365d 1ms\"", BODY),
        case(
            Server,
            "client_body_timeout = \"1000000000000000000000d\"",
            BODY,
        ),
        // The GET of each case sends its head at once.
        case(Server, "header_read_timeout = \"0s\"", HEADER),
        case(Server, "header_read_timeout = \"999us\"", HEADER),
        case(Server, "header_read_timeout = \"1s\"", Serves),
        case(Server, "header_read_timeout = \"365d\"", Serves),
        case(Server, "header_read_timeout = \"365d 1ms\"", HEADER),
        // 0 has a meaning: no keep-alive.
        case(Server, "keepalive_timeout = \"0s\"", Serves),
        case(Server, "keepalive_timeout = \"365d\"", Serves),
        case(Server, "keepalive_timeout = \"365d 1ns\"", KEEPALIVE),
        case(Server, "max_connections = 0", CONNECTIONS),
        case(Server, "max_connections = 1", Serves),
        case(Server, "max_connections = 1048576", Serves),
        case(Server, "max_connections = 1048577", CONNECTIONS),
        case(Server, "max_connections = -1", CONNECTIONS),
        case(Server, "max_request_headers = 0", FIELDS),
        // The test client sends Host alone.
        case(Server, "max_request_headers = 1", Serves),
        case(Server, "max_request_headers = 10000", Serves),
        case(Server, "max_request_headers = 10001", FIELDS),
        case(Server, "log_level = \"weir=debug,warn\"", Serves),
        case(
            Server,
            "log_level = \"weir=loud\"",
            Refused("server, ", "log_level"),
        ),
    ]);
}

#[test]
fn upstream_fields() {
    use Table::Upstream;
    let mut cases = Vec::new();
    for field in [
        "connect_timeout",
        "timeout",
        "read_timeout",
        "queue_timeout",
    ] {
        let refused = Refused("upstream \"a\", ", field);
        cases.extend([
            case(Upstream, format!("{field} = \"0s\""), refused),
            case(Upstream, format!("{field} = \"999us\""), refused),
            case(Upstream, format!("{field} = \"1ms\""), Answers),
            case(Upstream, format!("{field} = \"365d\""), Serves),
            case(Upstream, format!("{field} = \"365d 1ms\""), refused),
            case(Upstream, format!("{field} = \"1000000000d\""), refused),
            case(
                Upstream,
                format!("{field} = \"1000000000000000000000d\""),
                refused,
            ),
        ]);
    }
    let refused = Refused("upstream \"a\", ", "max_requests");
    cases.extend([
        case(Upstream, "max_requests = 0", refused),
        case(Upstream, "max_requests = 1", Serves),
        case(Upstream, "max_requests = 1048576", Serves),
        case(Upstream, "max_requests = 1048577", refused),
    ]);
    assert_all(cases);
}

#[test]
fn route_fields() {
    use Table::Route;
    assert_all(vec![
        // 0 has a meaning: no request body at all (this GET has none).
        case(Route, "max_request_body = 0", Serves),
        case(Route, "max_request_body = 1", Serves),
        case(Route, "max_request_body = 18446744073709551615", Serves),
        case(
            Route,
            "max_request_body = \"17179869184GiB\"",
            Refused("route \"r\", ", "max_request_body"),
        ),
    ]);
}

#[test]
fn plugin_fields() {
    use Table::Plugin;
    const OWNER: &str = "route \"r\", plugin #1 (";
    const TIMEOUT: Expect = Refused(OWNER, "timeout");
    const MEMORY: Expect = Refused(OWNER, "memory");
    const USES: Expect = Refused(OWNER, "max_uses");
    const INSTANCES: Expect = Refused(OWNER, "max_instances");
    const IDLE: Expect = Refused(OWNER, "max_idle");
    const IDLE_TIMEOUT: Expect = Refused(OWNER, "idle_timeout");
    const WALL: Expect = Refused(OWNER, "wall_timeout");
    let cases = vec![
        case(Plugin, "max_instances = 0", INSTANCES),
        case(Plugin, "max_instances = 1", Answers),
        // All the slots the sandbox may reserve: the idle instances are among them.
        case(Plugin, "max_instances = 16384", Serves),
        case(Plugin, "max_instances = 16385", INSTANCES),
        case(Plugin, "max_instances = 18446744073709551615", INSTANCES),
        case(Plugin, "max_idle = 0", Answers),
        case(Plugin, "max_idle = 64", Serves),
        case(Plugin, "max_idle = 65", IDLE),
        case(Plugin, "idle_timeout = \"999ms\"", IDLE_TIMEOUT),
        case(Plugin, "idle_timeout = \"1s\"", Serves),
        case(Plugin, "idle_timeout = \"1day\"", Serves),
        case(Plugin, "idle_timeout = \"1day 1s\"", IDLE_TIMEOUT),
        case(Plugin, "wall_timeout = \"0s\"", WALL),
        case(Plugin, "wall_timeout = \"1ms\"", Serves),
        case(Plugin, "wall_timeout = \"1h\"", Serves),
        case(Plugin, "wall_timeout = \"1h 1ms\"", WALL),
        case(Plugin, "timeout = \"0s\"", TIMEOUT),
        case(Plugin, "timeout = \"999us\"", TIMEOUT),
        case(Plugin, "timeout = \"1ms\"", Answers),
        case(Plugin, "timeout = \"4294967295ms\"", Serves),
        case(Plugin, "timeout = \"4294967296ms\"", TIMEOUT),
        case(Plugin, "timeout = \"1000000000d\"", TIMEOUT),
        // Its tick count once overflowed the engine's epoch deadline: a panic in check and run.
        case(Plugin, "timeout = \"500000000000y\"", TIMEOUT),
        case(Plugin, "memory = 0", MEMORY),
        case(Plugin, "memory = 65535", MEMORY),
        // In range, but too little for the fixture: refused at load, naming the field all the same.
        case(Plugin, "memory = \"64KiB\"", MEMORY),
        case(Plugin, "memory = \"16MiB\"", Serves),
        case(Plugin, "memory = \"4GiB\"", MEMORY),
        case(Plugin, "memory = 4294967297", MEMORY),
        case(Plugin, "memory = 18446744073709551615", MEMORY),
        case(Plugin, "max_uses = 0", USES),
        case(Plugin, "max_uses = 1", Serves),
        case(Plugin, "max_uses = 18446744073709551615", Serves),
        case(Plugin, "max_uses = -1", USES),
    ];
    let mut cases = cases;
    cases.push(
        case(Plugin, "memory = \"4GiB\"", Serves).with_server("max_plugin_memory = \"4GiB\""),
    );
    assert_all(cases);
}

#[test]
fn http_grants() {
    use Table::Plugin;
    let grants = |list: &str| format!("grants.http = [{list}]");
    let mut cases: Vec<Case> = [
        "\"auth.example.com\"",
        "\"Auth.Example.com:8080\"",
        "\"127.0.0.1:8080\"",
        "\"[::1]:8080\"",
        "\"[::1]\"",
        "\"jwks_1:65535\"",
    ]
    .iter()
    .map(|grant| case(Plugin, grants(grant), Serves))
    .collect();
    for bad in [
        "\"http://auth.example.com\"",
        "\"auth.example.com/jwks\"",
        "\"/jwks\"",
        "\"\"",
        "\"user@auth.example.com\"",
        "\"auth example.com\"",
        "\" auth.example.com\"",
        "\"auth.example.com:0\"",
        "\"auth.example.com:65536\"",
        "\"::1\"",
        "\"999.1.1.1\"",
        "3",
    ] {
        cases.push(case(
            Plugin,
            grants(bad),
            Refused("route \"r\", plugin #1 (", "grants.http.0"),
        ));
    }
    cases.push(case(
        Plugin,
        grants("\"auth.example.com\", \"http://x\""),
        Refused("route \"r\", plugin #1 (", "grants.http.1"),
    ));
    assert_all(cases);
}
