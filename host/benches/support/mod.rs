//! What the host benches share: a plugin slot made the way the proxy makes one, and a request to run it on,
//! without the network (the upstream is never called).
#![allow(dead_code, reason = "each bench uses its own part")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tokio::runtime::Runtime;
use weir::config::{EscapedSlashes, Isolation, OnError, UpstreamConfig};
use weir::exchange::{Exchange, PluginBounds};
use weir::normalise::PathPolicy;
use weir::plugin::{PluginSlot, SlotSettings};
use weir::sandbox::{InstanceLimits, Label, Sandbox, SandboxSettings};
use weir::upstream::{Upstream, Upstreams};

/// A plugin built by `make plugins`, by file stem (`fixture`, `jwt_auth`).
pub fn wasm(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// One upstream `a` on a port nothing listens on.
pub fn upstreams() -> Arc<Upstreams> {
    let config: UpstreamConfig = toml::from_str(
        "url = \"http://127.0.0.1:9\"\nconnect_timeout = \"1s\"\ntimeout = \"1s\"\nread_timeout = \"1s\"\n",
    )
    .expect("an upstream config");
    let upstream =
        Upstream::new("a", &config, &Path::to_owned, Arc::default()).expect("an upstream");
    Arc::new(Upstreams::new(
        [("a".to_owned(), Arc::new(upstream))].into(),
    ))
}

/// With Weir's compile cache, so that a plugin loaded by several slots (pooled and fresh) is compiled once.
pub fn sandbox(concurrency_support: bool) -> Arc<Sandbox> {
    Sandbox::new(&SandboxSettings {
        max_instances: 64,
        max_plugin_memory: 64 << 20,
        concurrency_support,
        cache_dir: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/weir-bench-cache"),
        ),
    })
    .expect("sandbox")
}

/// The server's defaults for what plugins may add.
pub const BOUNDS: PluginBounds = PluginBounds {
    headers: 64,
    header_bytes: 16 << 10,
    context_keys: 256,
    context_bytes: 64 << 10,
};

/// A GET of `/api/orders?page=2` with `headers`.
pub fn exchange(upstreams: &Arc<Upstreams>, headers: &[(&str, &str)]) -> Box<Exchange> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    Box::new(Exchange {
        method: Method::GET,
        path: "/api/orders".into(),
        query: Some("page=2".into()),
        original_uri: Uri::from_static("/api/orders?page=2"),
        headers: map,
        header_budget: BOUNDS.headers(),
        client_ip: [127, 0, 0, 1].into(),
        upstream: upstreams.get("a").expect("upstream a").clone(),
        upstreams: upstreams.clone(),
        path_policy: PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            merge_slashes: true,
        },
        context: BOUNDS.context(),
        response: None,
        skip_body: false,
        body: None,
        scheme: "http",
    })
}

/// The slot of plugin `name` (a `.wasm` stem) with `config` (JSON), as a route entry would have it; a
/// generous CPU deadline, since a bench measures rather than polices.
pub fn slot(
    rt: &Runtime,
    sandbox: &Arc<Sandbox>,
    name: &str,
    config: &str,
    isolation: Isolation,
) -> Arc<PluginSlot> {
    let pre = sandbox.load(&wasm(name)).expect("plugin loads");
    let settings = SlotSettings {
        limits: InstanceLimits {
            memory: 16 << 20,
            deadline_ticks: 1000,
            env: vec![],
            dirs: vec![],
            http: Arc::new([]),
            wall_timeout: Duration::from_secs(5),
            log_bytes: 8 << 10,
            store: None,
        },
        on_error: OnError::Deny,
        isolation,
        max_uses: u64::MAX,
        max_instances: 4,
        max_idle: 4,
        warm: 4,
        idle_timeout: Duration::from_secs(60),
    };
    let label = Arc::new(Label {
        route: "bench".into(),
        plugin: name.into(),
    });
    rt.block_on(PluginSlot::new(
        label,
        sandbox.clone(),
        pre,
        config.into(),
        settings,
        Arc::default(),
    ))
    .expect("init")
}
