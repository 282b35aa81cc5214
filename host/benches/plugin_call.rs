//! The cost of one plugin call through the host, without the network: an empty hook, a hook that reads
//! and writes headers, and a fresh instance per request, each with wasmtime's concurrency support off
//! (Weir's default) and on. Plugins are the test fixture, built by `make plugins`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use tokio::runtime::Runtime;
use weir::config::{Isolation, OnError, UpstreamConfig, UpstreamUrl};
use weir::exchange::Exchange;
use weir::plugin::{PluginSlot, SlotSettings};
use weir::sandbox::{InstanceLimits, Label, Sandbox, SandboxSettings};
use weir::upstream::{Upstream, Upstreams};

fn fixture() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/fixture.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// A request as a browser sends it: ten headers.
fn exchange(upstreams: &Arc<Upstreams>) -> Box<Exchange> {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "shop.example"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        ),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"),
        ("cookie", "session=abc"),
        ("x-request-id", "8d2f1c"),
        ("referer", "https://shop.example/"),
        ("connection", "keep-alive"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let upstream = upstreams.get("a").expect("upstream a").clone();
    Box::new(Exchange {
        method: Method::GET,
        path: "/api/orders".into(),
        query: Some("page=2".into()),
        original_uri: Uri::from_static("/api/orders?page=2"),
        headers,
        client_ip: [127, 0, 0, 1].into(),
        upstream,
        upstreams: upstreams.clone(),
        context: Default::default(),
        response: None,
        skip_body: false,
    })
}

fn settings(isolation: Isolation) -> SlotSettings {
    SlotSettings {
        limits: InstanceLimits {
            memory: 16 << 20,
            deadline_ticks: 20,
            env: vec![],
            dirs: vec![],
            http: Arc::new([]),
        },
        on_error: OnError::Deny,
        isolation,
        max_uses: u64::MAX,
        max_idle: 4,
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let url = UpstreamUrl::try_from("http://127.0.0.1:9".to_owned()).expect("url");
    let upstream = Upstream::new(
        "a",
        &UpstreamConfig {
            url,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            preserve_host: false,
        },
    );
    let upstreams = Arc::new(Upstreams::new(
        [("a".to_owned(), Arc::new(upstream))].into(),
    ));

    for concurrency_support in [false, true] {
        let sandbox = Sandbox::new(&SandboxSettings {
            max_instances: 64,
            max_plugin_memory: 64 << 20,
            concurrency_support,
            cache_dir: None,
        })
        .expect("sandbox");
        let pre = sandbox.load(&fixture()).expect("fixture loads");
        let label = || {
            Arc::new(Label {
                route: "bench".into(),
                plugin: "fixture".into(),
            })
        };
        let slot = |config: &str, isolation| {
            rt.block_on(PluginSlot::new(
                label(),
                sandbox.clone(),
                pre.clone(),
                config.into(),
                settings(isolation),
            ))
            .expect("init")
        };
        let suffix = format!("concurrency_support={concurrency_support}");

        for (name, config) in [
            ("empty hook", r#"{"mode":"noop"}"#),
            ("header read+write", r#"{"mode":"tag","name":"x"}"#),
        ] {
            let slot = slot(config, Isolation::Pooled);
            let mut instance = rt.block_on(slot.checkout()).expect("instance");
            c.bench_function(&format!("on_request: {name}, {suffix}"), |b| {
                b.iter_batched(
                    || exchange(&upstreams),
                    |ex| {
                        let (ex, result) = rt.block_on(instance.on_request(ex));
                        black_box(result.expect("hook runs"));
                        ex
                    },
                    BatchSize::SmallInput,
                )
            });
        }

        let fresh = slot(r#"{"mode":"noop"}"#, Isolation::Request);
        c.bench_function(
            &format!("fresh instance + init + empty hook, {suffix}"),
            |b| {
                b.iter_batched(
                    || exchange(&upstreams),
                    |ex| {
                        let mut instance = rt.block_on(fresh.checkout()).expect("instance");
                        let (ex, result) = rt.block_on(instance.on_request(ex));
                        black_box(result.expect("hook runs"));
                        ex
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
