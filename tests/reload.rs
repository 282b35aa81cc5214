//! Hot reload through the real binary: SIGHUP, `weir reload` and the admin listener swap a new generation in
//! atomically; a bad config or a change only a restart can apply changes nothing and says why, as
//! `weir check` would; requests in flight finish on their generation; clients see no failure while reloads
//! flip under load; a thousand reloads leave the memory where it was.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use support::*;

/// A config whose one route tags every answer with `generation` (response header `x-gen`). The admin
/// listener has a fixed port, which `weir reload` finds in the file.
fn config(upstream: std::net::SocketAddr, generation: &str) -> String {
    config_on(upstream, generation, 0)
}

fn config_on(upstream: std::net::SocketAddr, generation: &str, admin_port: u16) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
access_log = false
[admin]
listen = "127.0.0.1:{admin_port}"
[upstreams.a]
url = "http://{upstream}"
[[routes]]
name = "tagged"
upstream = "a"
[[routes.plugins]]
plugin = "headers"
config.response = {{ set = {{ "x-gen" = "{generation}" }} }}
"#
    )
}

/// The config file the running Weir reads, written in place for each reload.
fn config_file(weir: &Weir) -> PathBuf {
    weir.config_file()
}

fn write(file: &Path, text: &str) {
    std::fs::write(file, text).expect("write the config");
}

fn weir_reload(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["reload", "-c"])
        .arg(file)
        .output()
        .expect("run weir reload");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn generation_seen(weir: &Weir) -> String {
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.header("x-gen").unwrap_or("none").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_weir_reload_and_the_admin_listener_swap_generations() {
    let a = upstream("a").await;
    let port = support::raw::free_port();
    let weir = Weir::start(&config_on(a, "A", port));
    let file = config_file(&weir);
    assert_eq!(generation_seen(&weir).await, "A");

    write(&file, &config_on(a, "B", port));
    let (ok, said) = weir_reload(&file);
    assert!(ok, "{said}");
    assert!(said.contains("generation 2"), "{said}");
    assert_eq!(generation_seen(&weir).await, "B");

    write(&file, &config_on(a, "C", port));
    weir.signal(libc::SIGHUP);
    // The first reload logged "config reloaded" too: wait for this one's generation.
    assert!(weir.wait_for_log("generation=3"), "{}", weir.log());
    assert_eq!(generation_seen(&weir).await, "C");

    // `weir reload` prints the refusal and fails; the running generation stays.
    write(
        &file,
        &config_on(a, "D", port).replace("plugin = \"headers\"", "plugin = \"no-such-plugin\""),
    );
    let (ok, said) = weir_reload(&file);
    assert!(
        !ok && said.contains("unknown built-in plugin \"no-such-plugin\""),
        "{said}"
    );
    assert_eq!(generation_seen(&weir).await, "C");
    assert_eq!(weir.metric("weir_config_generation", &[]).await, Some(3.0));
    assert_eq!(
        weir.metric("weir_config_reloads_total", &[("outcome", "ok")])
            .await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_with_the_errors_weir_check_prints() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "A"));
    let file = config_file(&weir);
    let bad = config(a, "B").replace("upstream = \"a\"", "upstream = \"missing\"") + "bogus = 1\n";
    write(&file, &bad);
    let admin = weir.admin.expect("admin");
    let reply = support::post(&format!("http://{admin}/reload"), "").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let checked = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .expect("weir check");
    assert!(!checked.status.success());
    assert_eq!(
        reply.text().trim_end(),
        String::from_utf8_lossy(&checked.stderr).trim_end(),
        "the reload's errors are weir check's"
    );
    assert_eq!(
        generation_seen(&weir).await,
        "A",
        "the old generation serves on"
    );

    // A change only a restart can apply is refused whole, naming the field.
    write(
        &file,
        &config(a, "B").replace("access_log = false", "access_log = false\nworkers = 1"),
    );
    let reply = support::post(&format!("http://{admin}/reload"), "").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .text()
            .contains("server, field \"workers\": changed, and only a restart applies it"),
        "{}",
        reply.text()
    );
    assert_eq!(generation_seen(&weir).await, "A");
    assert_eq!(
        weir.metric("weir_config_reloads_total", &[("outcome", "failed")])
            .await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_its_generation() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "A"));
    let file = config_file(&weir);
    let slow = tokio::spawn({
        let url = weir.url("/sleep/1500");
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&file, &config(a, "B"));
    let admin = weir.admin.expect("admin");
    assert_eq!(
        support::post(&format!("http://{admin}/reload"), "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(generation_seen(&weir).await, "B");
    let slow = slow.await.expect("the slow request");
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.header("x-gen"), Some("A"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_see_no_failure_while_reloads_flip_good_and_bad_configs() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "A"));
    let file = config_file(&weir);
    let admin = weir.admin.expect("admin");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, url) = (stop.clone(), served.clone(), weir.url("/"));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(&url).await;
                    match reply.header("x-gen") {
                        Some("A" | "B") if reply.status == StatusCode::OK => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => failures.push(format!("{} {:?}", reply.status, reply.text())),
                    }
                }
                failures
            })
        })
        .collect();
    let bad = config(a, "B").replace("plugin = \"headers\"", "plugin = \"no-such-plugin\"");
    for round in 0..30 {
        let (text, good) = match round % 3 {
            0 => (config(a, "B"), true),
            1 => (bad.clone(), false),
            _ => (config(a, "A"), true),
        };
        write(&file, &text);
        let reply = support::post(&format!("http://{admin}/reload"), "").await;
        assert_eq!(reply.status.is_success(), good, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let failures = client.await.expect("client");
        assert!(failures.is_empty(), "failed requests: {failures:?}");
    }
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "the clients were busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_leave_the_memory_flat() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "A"));
    let file = config_file(&weir);
    let admin = weir.admin.expect("admin");
    let reload_to = |generation: &'static str| {
        let text = config(a, generation);
        let file = file.clone();
        async move {
            write(&file, &text);
            let reply = support::post(&format!("http://{admin}/reload"), "").await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    };
    // Warm up: allocator arenas and pools reach their working size.
    for i in 0..100 {
        reload_to(if i % 2 == 0 { "B" } else { "A" }).await;
        generation_seen(&weir).await;
    }
    let warm = weir.peak_rss();
    for i in 0..1000 {
        reload_to(if i % 2 == 0 { "B" } else { "A" }).await;
        generation_seen(&weir).await;
    }
    let after = weir.peak_rss();
    eprintln!(
        "peak RSS after 100 reloads {} MiB, after 1,100 {} MiB",
        warm >> 20,
        after >> 20
    );
    assert!(
        after <= warm + warm / 10,
        "peak RSS grew from {warm} to {after} bytes over 1,000 reloads"
    );
    assert_eq!(
        weir.metric("weir_config_generation", &[]).await,
        Some(1101.0)
    );
}

/// Replaces `file` as a deploy does: the new text is written beside it and renamed over it, so a reader sees
/// the old file or the new one, never half of one.
fn replace(file: &Path, text: &str) {
    let next = file.with_extension("next");
    write(&next, text);
    std::fs::rename(&next, file).expect("rename the config into place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_is_reloaded_when_it_changes() {
    let a = upstream("a").await;
    let watched = |generation: &str| {
        config(a, generation).replace(
            "access_log = false",
            "access_log = false\nwatch_config = \"100ms\"",
        )
    };
    let weir = Weir::start(&watched("A"));
    let file = config_file(&weir);
    assert_eq!(generation_seen(&weir).await, "A");

    replace(&file, &watched("B"));
    assert!(weir.wait_for_log("generation=2"), "{}", weir.log());
    assert_eq!(generation_seen(&weir).await, "B");

    // Refused once, and not tried again while the file stays as it is; the running generation serves.
    replace(
        &file,
        &watched("C").replace("plugin = \"headers\"", "plugin = \"no-such-plugin\""),
    );
    assert!(weir.wait_for_log("config not reloaded"), "{}", weir.log());
    assert_eq!(generation_seen(&weir).await, "B");

    replace(&file, &watched("D"));
    assert!(weir.wait_for_log("generation=3"), "{}", weir.log());
    assert_eq!(generation_seen(&weir).await, "D");
    assert_eq!(
        weir.log().matches("config not reloaded").count(),
        1,
        "{}",
        weir.log()
    );
}
