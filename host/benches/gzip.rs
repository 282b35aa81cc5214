//! The gzip plugin's compression throughput through the host (`on-response`, then the response body hook
//! on 64 KiB chunks of a JSON body) against native flate2 with zlib-rs at the same level, in the same
//! process; and the plugin's brotli for comparison. The plugin is built by `make plugins`.

mod support;

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::runtime::Runtime;
use weir::config::Isolation;
use weir::exchange::ResponseHead;
use weir::plugin::bindings::ResponseHook;
use weir::plugin::{BodyKind, Instance};
use weir::upstream::Upstreams;

const CHUNK: usize = 64 << 10;
const LEVEL: u32 = 6;

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

/// One response through the plugin, as the chain drives it; returns the compressed size.
async fn through_plugin(instance: &mut Instance, upstreams: &Arc<Upstreams>, body: &[u8]) -> usize {
    let (mut ex, action) = instance
        .on_request(support::exchange(
            upstreams,
            &[("accept-encoding", "gzip, br")],
        ))
        .await;
    action.expect("on_request");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    ex.response = Some(ResponseHead {
        status: StatusCode::OK,
        headers,
        header_budget: support::BOUNDS.headers(),
    });
    let (ex, done) = instance.on_response(ex).await;
    assert!(
        matches!(done.expect("on_response"), ResponseHook::Ran),
        "gzip has a response hook"
    );
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
    let upstreams = support::upstreams();
    let sandbox = support::sandbox(false);
    let slot = |config: &str| support::slot(&rt, &sandbox, "gzip", config, Isolation::Pooled);

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
        let mut lease = rt.block_on(slot.lease()).expect("instance");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(rt.block_on(through_plugin(&mut lease.instance, &upstreams, &body)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
