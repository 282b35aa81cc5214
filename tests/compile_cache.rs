//! The compile cache loads a file as native code only if Weir wrote it for that component: a planted file is
//! refused, logged, compiled again and replaced, and the plugins behave as their own code does.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hyper::StatusCode;
use sha2::{Digest, Sha256};
use support::*;

/// A built-in, as `plugin = "headers"` finds it beside the binary.
fn built_in(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_weir"))
        .parent()
        .expect("the binary's directory")
        .join("plugins")
        .join(format!("{name}.wasm"))
}

/// One route through the fixture, the `headers` built-in and the README's `add-header` example: three
/// components, three cache files.
fn config(upstream: std::net::SocketAddr, cache: &Path) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
cache_dir = "{cache}"
[upstreams.a]
url = "http://{upstream}"
[[routes]]
upstream = "a"
[[routes.plugins]]
path = "{{fixture}}"
config = {{ mode = "tag", name = "fx" }}
[[routes.plugins]]
plugin = "headers"
config.request = {{ set = {{ "x-from-headers" = "yes" }} }}
[[routes.plugins]]
path = "{add_header}"
config = {{ name = "x-from-add-header", value = "yes" }}
"#,
        cache = cache.display(),
        add_header = wasm("add_header").display(),
    )
}

/// Each plugin ran its own code.
async fn assert_behaves(weir: &Weir) {
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header_all("x-chain-back"), ["fx"]);
    let echo = Echo(reply.json());
    assert_eq!(echo.header("x-chain"), ["fx"]);
    assert_eq!(echo.header("x-from-headers"), ["yes"]);
    assert_eq!(echo.header("x-from-add-header"), ["yes"]);
}

/// The cache file of a `.wasm`: its name starts with the hex of the first half of the file's SHA-256.
fn cache_file(cache: &Path, wasm: &Path) -> PathBuf {
    let digest = Sha256::digest(std::fs::read(wasm).expect("read the wasm"));
    let prefix: String = digest[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "-";
    let found: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("the cache directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().expect("name").to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".cwasm")
        })
        .collect();
    assert_eq!(found.len(), 1, "{} in {found:?}", wasm.display());
    found[0].clone()
}

fn modified(file: &Path) -> SystemTime {
    std::fs::metadata(file)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_cache_files_are_refused_and_replaced() {
    let a = upstream("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let config = config(a, &cache);

    let weir = Weir::start(&config);
    assert_behaves(&weir).await;
    drop(weir);
    let key = std::fs::metadata(cache.join("key")).expect("a key was made");
    assert_eq!(key.len(), 32);
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let fixture = cache_file(&cache, &wasm("fixture"));
    let headers = cache_file(&cache, &built_in("headers"));
    let add_header = cache_file(&cache, &wasm("add_header"));

    // Genuine machine code of another plugin under a built-in's name: loaded, it would run the fixture as
    // `headers`, whose config the fixture refuses.
    let genuine_fixture = std::fs::read(&fixture).expect("fixture's cache file");
    std::fs::write(&headers, &genuine_fixture).expect("plant");
    // The same code, with a MAC made without the key.
    let mut forged = genuine_fixture.clone();
    let at = forged.len() - 7;
    forged[at] ^= 0x5a;
    std::fs::write(&add_header, &forged).expect("plant");
    // Weir's own file, which anyone may have rewritten since.
    std::fs::set_permissions(&fixture, std::fs::Permissions::from_mode(0o666)).expect("chmod");

    let weir = Weir::start(&config);
    assert_behaves(&weir).await;
    for (file, why) in [
        (&headers, "it was written for another component"),
        (&add_header, "its MAC does not verify"),
        (&fixture, "lets other users write to it"),
    ] {
        let name = file.file_name().expect("name").to_string_lossy();
        assert!(
            weir.wait_for_record(&["refusing a cached component", &name, why]),
            "{name}: {why}:\n{}",
            weir.log()
        );
        let meta = std::fs::metadata(file).expect("replaced");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
    assert_ne!(std::fs::read(&headers).expect("read"), genuine_fixture);
    assert_ne!(std::fs::read(&add_header).expect("read"), forged);
    drop(weir);

    // The replacements are trusted: loaded, not compiled and written again.
    let written: Vec<_> = [&fixture, &headers, &add_header]
        .iter()
        .map(|f| modified(f))
        .collect();
    let weir = Weir::start(&config);
    assert_behaves(&weir).await;
    let log = weir.log();
    assert!(!log.contains("refusing a cached component"), "{log}");
    assert!(!log.contains("compile cache"), "{log}");
    for (file, before) in [&fixture, &headers, &add_header].iter().zip(written) {
        assert_eq!(
            modified(file),
            before,
            "{} was written again",
            file.display()
        );
    }
    // Mapped from the files, not copied into the process: only the pages a plugin runs are resident, and
    // they are shared with every other process that loads the same file.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", weir.pid())).expect("maps");
    for file in [&fixture, &headers, &add_header] {
        let name = file.display().to_string();
        assert!(
            maps.lines().any(|line| line.ends_with(&name)),
            "{name} is not mapped:\n{maps}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_directory_others_can_write_is_not_used() {
    let a = upstream("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ncache_dir = \"{}\"\n[upstreams.a]\nurl = \"http://{a}\"\n[[routes]]\nupstream = \"a\"\n{}",
        cache.display(),
        fixture(r#"mode = "tag", name = "fx""#)
    ));
    let reply = get(&weir.url("/")).await;
    assert_eq!(reply.header_all("x-chain-back"), ["fx"]);
    assert!(
        weir.wait_for_record(&[
            "not using the compile cache",
            &cache.display().to_string(),
            "lets other users write to it"
        ]),
        "{}",
        weir.log()
    );
    let left: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing is written there: {left:?}");
}
