//! The gzip plugin's compression throughput through the host (`on-response`, then the response body hook
//! on 64 KiB chunks of a JSON body) against native flate2 with zlib-rs at the same level, in the same
//! process; and the plugin's brotli for comparison. The plugin is built by `make plugins`.

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use tokio::runtime::Runtime;
use weir::config::{Isolation, OnError, UpstreamConfig, UpstreamUrl};
use weir::exchange::{Exchange, ResponseHead};
use weir::plugin::{BodyKind, Instance, PluginSlot, SlotSettings};
use weir::sandbox::{InstanceLimits, Label, Sandbox, SandboxSettings};
use weir::upstream::{Upstream, Upstreams};

const CHUNK: usize = 64 << 10;
const LEVEL: u32 = 6;

fn plugin() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release/gzip.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make plugins` first",
        path.display()
    );
    path
}

/// 4 MiB of API-like JSON: repeated structure with varying values, so it compresses like real JSON
/// (about 8:1) rather than like a repeated line.
fn json_body() -> Vec<u8> {
    let mut body = b"[".to_vec();
    let mut i = 0u64;
    while body.len() < 4 << 20 {
        let price = (i * 7919) % 100_000;
        write!(
            body,
            r#"{{"id":{i},"sku":"SKU-{:08X}","name":"item number {i}","price":{}.{:02},"stock":{},"tags":["t{}","t{}"]}},"#,
            i.wrapping_mul(2_654_435_761) & 0xffff_ffff,
            price / 100,
            price % 100,
            (i * 31) % 500,
            i % 17,
            i % 5
        )
        .expect("write to a Vec");
        i += 1;
    }
    body.push(b']');
    body
}

fn exchange(upstreams: &Arc<Upstreams>) -> Box<Exchange> {
    let mut headers = HeaderMap::new();
    headers.insert("accept-encoding", HeaderValue::from_static("gzip, br"));
    Box::new(Exchange {
        method: Method::GET,
        path: "/api/items".into(),
        query: None,
        original_uri: Uri::from_static("/api/items"),
        headers,
        client_ip: [127, 0, 0, 1].into(),
        upstream: upstreams.get("a").expect("upstream a").clone(),
        upstreams: upstreams.clone(),
        context: Default::default(),
        response: None,
        skip_body: false,
    })
}

/// One response through the plugin, as the chain drives it; returns the compressed size.
async fn through_plugin(instance: &mut Instance, upstreams: &Arc<Upstreams>, body: &[u8]) -> usize {
    let (mut ex, action) = instance.on_request(exchange(upstreams)).await;
    action.expect("on_request");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    ex.response = Some(ResponseHead {
        status: StatusCode::OK,
        headers,
    });
    let (ex, done) = instance.on_response(ex).await;
    done.expect("on_response");
    assert!(!ex.skip_body, "the plugin compresses this response");
    let mut out = 0;
    for chunk in body.chunks(CHUNK) {
        out += instance
            .on_body(BodyKind::Response, chunk, false)
            .await
            .expect("body hook")
            .len();
    }
    out + instance
        .on_body(BodyKind::Response, &[], true)
        .await
        .expect("body hook")
        .len()
}

fn native(body: &[u8]) -> usize {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(LEVEL));
    for chunk in body.chunks(CHUNK) {
        encoder.write_all(chunk).expect("write");
    }
    encoder.finish().expect("finish").len()
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
    let sandbox = Sandbox::new(&SandboxSettings {
        max_instances: 8,
        max_plugin_memory: 64 << 20,
        concurrency_support: false,
        cache_dir: None,
    })
    .expect("sandbox");
    let pre = sandbox.load(&plugin()).expect("the gzip plugin loads");
    let slot = |config: &str| {
        let settings = SlotSettings {
            limits: InstanceLimits {
                memory: 16 << 20,
                // A 64 KiB chunk takes well under a millisecond; the bench measures, it does not police.
                deadline_ticks: 1000,
                env: vec![],
                dirs: vec![],
                http: Arc::new([]),
            },
            on_error: OnError::Deny,
            isolation: Isolation::Pooled,
            max_uses: u64::MAX,
            max_idle: 1,
        };
        let label = Arc::new(Label {
            route: "bench".into(),
            plugin: "gzip".into(),
        });
        rt.block_on(PluginSlot::new(
            label,
            sandbox.clone(),
            pre.clone(),
            config.into(),
            settings,
        ))
        .expect("init")
    };

    let body = json_body();
    let mut group = c.benchmark_group("compress 4 MiB of JSON in 64 KiB chunks");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(20);
    group.bench_function(format!("native flate2 zlib-rs, gzip {LEVEL}"), |b| {
        b.iter(|| black_box(native(&body)))
    });
    for (name, config) in [
        (
            format!("plugin through the host, gzip {LEVEL}"),
            r#"{"encodings":["gzip"]}"#,
        ),
        (
            "plugin through the host, br 4".into(),
            r#"{"encodings":["br"]}"#,
        ),
    ] {
        let slot = slot(config);
        let mut instance = rt.block_on(slot.checkout()).expect("instance");
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(through_plugin(&mut instance, &upstreams, &body))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
