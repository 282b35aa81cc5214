//! `weir check` and `weir plugin inspect`: exit codes and errors that name file, line, route, plugin and
//! field, all reported at once.

mod support;

use support::*;

const GOOD: &str = r#"[server]
listen = "127.0.0.1:0"

[upstreams.api]
url = "http://127.0.0.1:9"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"

[[routes.plugins]]
plugin = "path-rewrite"
config = { strip_prefix = "/api" }

[[routes.plugins]]
path = "{fixture}"
config = { mode = "tag", name = "x" }
"#;

#[test]
fn check_accepts_a_good_config() {
    let out = check(GOOD);
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("ok (1 routes, 1 upstreams, 2 plugins)"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_reports_every_error_with_file_line_route_plugin_and_field() {
    let bad = GOOD
        .replace(
            "strip_prefix = \"/api\"",
            "strip_prefix = \"/api\", bogus = 1",
        )
        .replace("mode = \"tag\", name = \"x\"", "mode = \"nonsense\"")
        .replace("upstream = \"api\"", "upstream = \"apj\"");
    let out = check(&bad);
    assert_eq!(out.code, Some(1));
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    assert!(
        lines.iter().any(|l| l.contains("weir.toml:10:12: route \"api\", field \"upstream\": no upstream named \"apj\" (known: api)")),
        "{}",
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains(
            "weir.toml:12:1: route \"api\", plugin #1 (path-rewrite), field \"config.bogus\""
        )),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("weir.toml:16:1: route \"api\", plugin #2 (")
                && l.contains("field \"config.mode\"")),
        "{}",
        out.stderr
    );
}

#[test]
fn syntax_and_unknown_keys_name_the_line() {
    let out = check(&GOOD.replace(
        "path_prefix = \"/api\"",
        "path_prefix = \"/api\"\ntimeout = 3",
    ));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("weir.toml:10:1: unknown field `timeout`"),
        "{}",
        out.stderr
    );
    let out = check("[server\n");
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("weir.toml:1:"), "{}", out.stderr);
}

#[test]
fn missing_plugins_and_unknown_built_ins_are_named() {
    let out = check(
        &GOOD
            .replace("\"path-rewrite\"", "\"no-such-plugin\"")
            .replace("{fixture}", "/nonexistent.wasm"),
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("unknown built-in plugin \"no-such-plugin\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("path-rewrite"),
        "the error lists the built-ins: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no plugin file at /nonexistent.wasm"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    // A valid core module, but not a component.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = check(&GOOD.replace("{fixture}", &core.display().to_string()));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("is not a valid WebAssembly component"),
        "{}",
        out.stderr
    );

    let inspect = weir_command()
        .args(["plugin", "inspect"])
        .arg(&core)
        .output()
        .unwrap();
    assert!(!inspect.status.success());
}

#[test]
fn inspect_lists_imports_and_exports_and_checks_the_contract() {
    let out = weir_command()
        .args(["plugin", "inspect"])
        .arg(wasm("path_rewrite"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("init, on-request, on-response, on-request-body, on-response-body"),
        "{text}"
    );
    assert!(text.contains("weir:plugin/request@0.3.0"), "{text}");
    assert!(text.contains("fits weir:plugin@0.3.0: yes"), "{text}");
}

#[test]
fn compiled_plugins_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = GOOD.replace(
        "[server]",
        &format!("[server]\ncache_dir = \"{}\"", cache.display()),
    );
    let file = write_config(dir.path(), &config);
    let status = weir_command()
        .args(["check", "-c"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    // Beside the compiled files, the cache holds the key that signs them.
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 2, "one compiled file per distinct .wasm");
    let modified = cached[0].metadata().unwrap().modified().unwrap();
    assert!(
        weir_command()
            .args(["check", "-c"])
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        cached[0].metadata().unwrap().modified().unwrap(),
        modified,
        "a second start reuses the cache"
    );
}

#[test]
fn check_reports_read_as_the_golden_files_say() {
    let many_mistakes = r#"[server]
listen = "127.0.0.1:0"
workers = 0
escaped_slashes = "sometimes-maybe"
"#;
    let out = check(many_mistakes);
    assert_eq!(out.code, Some(1));
    golden("check-parse-error.txt", &report(&out));

    let ranges = r#"[server]
listen = "127.0.0.1:0"
workers = 0
max_request_target = 10

[upstreams.api]
url = "http://127.0.0.1:9"
timeout = "0s"

[[routes]]
name = "api"
path_prefix = "/api/../v1"
upstream = "apj"

[[routes.plugins]]
plugin = "headers"
max_instances = 0
max_idle = 3
wall_timeout = "2h"
"#;
    let out = check(ranges);
    assert_eq!(out.code, Some(1));
    golden("check-range-errors.txt", &report(&out));

    // A warning does not fail the check, but it is said.
    let fails_open = r#"[server]
listen = "127.0.0.1:0"

[upstreams.api]
url = "http://127.0.0.1:9"

[[routes]]
name = "api"
upstream = "api"

[[routes.plugins]]
plugin = "token-auth"
config = { tokens = { ci = "t" } }
on_error = "skip"
"#;
    let out = check(fails_open);
    assert!(out.success, "{}", out.stderr);
    golden("check-warning-skip-on-guard.txt", &report(&out));
}
