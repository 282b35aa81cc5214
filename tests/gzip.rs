//! The `gzip` built-in end to end: the real `weir` binary, the built plugin, the demo upstream. Compressed
//! bodies are decoded by Python's `gzip` module and by `curl --compressed`, not by anything written here.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use support::*;
use weir_upstream::{json_document, noise, text};

/// Three routes in front of one upstream: the defaults; `/forced` compresses any type at any length (for
/// random and empty bodies); `/gzip-first` prefers gzip to brotli. The prefixes are stripped before the
/// upstream.
fn config(upstream: SocketAddr) -> String {
    let route = |prefix: &str, gzip_config: &str| {
        format!(
            r#"
[[routes]]
path_prefix = "{prefix}"
upstream = "a"
[[routes.plugins]]
plugin = "gzip"
config = {{ {gzip_config} }}
[[routes.plugins]]
plugin = "path-rewrite"
config = {{ strip_prefix = "{prefix}" }}
"#
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{upstream}\"\n{}{}{}",
        route("/forced", r#"types = ["*/*"], min_length = 0"#),
        route("/gzip-first", r#"encodings = ["gzip", "br"]"#),
        route("/", ""),
    )
}

async fn start() -> Weir {
    let a = upstream("a").await;
    Weir::start(&config(a))
}

/// Python's gzip module, fed through a file so that large bodies need no pipe juggling.
fn python_gunzip(compressed: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("body.gz");
    std::fs::write(&file, compressed).expect("write");
    python_output(
        "import gzip, sys; sys.stdout.buffer.write(gzip.decompress(open(sys.argv[1], 'rb').read()))",
        &[file.as_os_str()],
    )
}

/// `curl --compressed`: the coding curl saw and the body it decoded.
async fn curl(url: String, accept: Option<&'static str>) -> (Option<String>, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--compressed", "-D", "/dev/stderr"]);
        if let Some(accept) = accept {
            cmd.args(["-H", &format!("accept-encoding: {accept}")]);
        }
        let out = cmd.arg(&url).output().expect("run curl");
        assert!(out.status.success(), "curl failed on {url}");
        let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
        let coding = head
            .lines()
            .find_map(|l| l.strip_prefix("content-encoding:"))
            .map(|v| v.trim().to_owned());
        (coding, out.stdout)
    })
    .await
    .expect("curl task")
}

async fn get_accepting(weir: &Weir, path: &str, accept: &str) -> Reply {
    get_with(&weir.url(path), &[("accept-encoding", accept)]).await
}

/// What `/stream/N` and `/trickle/N` send: `text(chunk)` over and over.
fn blocks(total: usize, chunk: usize) -> Bytes {
    text(chunk).iter().copied().cycle().take(total).collect()
}

/// Every body shape the issue lists, with what the upstream sends for it.
fn bodies() -> Vec<(&'static str, Bytes)> {
    vec![
        ("/text/200000", text(200_000)),
        ("/stream/1000000", blocks(1_000_000, 64 << 10)),
        ("/trickle/50000", blocks(50_000, 100)),
        ("/json", json_document()),
        (
            "/respond/3000000?content-type=text/plain&chunk=3000000",
            text(3_000_000),
        ),
        (
            "/forced/respond/300000?body=noise&content-type=application/octet-stream",
            noise(300_000),
        ),
        (
            "/forced/respond/300000?body=noise&content-type=application/octet-stream&chunk=100",
            noise(300_000),
        ),
        ("/forced/respond/0?content-type=text/plain", Bytes::new()),
        (
            "/forced/respond/0?content-type=text/plain&chunk=10",
            Bytes::new(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_decodes_gzip_bodies_identical_to_the_input() {
    let weir = start().await;
    for (path, want) in bodies() {
        let reply = get_accepting(&weir, path, "gzip").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{path}");
        // The upstream's length is gone; an empty body is compressed before the head goes, and gets the
        // length of what it became.
        let length = reply.header("content-length");
        let empty = want.is_empty();
        assert!(
            length.is_none() || (empty && length == Some(&reply.body.len().to_string())),
            "{path}: {length:?}"
        );
        assert_eq!(reply.header("vary"), Some("Accept-Encoding"), "{path}");
        let decoded = python_gunzip(&reply.body);
        assert!(decoded == want, "{path}: decoded body differs");
        if path.starts_with("/text") {
            assert!(
                reply.body.len() < want.len() / 20,
                "{path}: text compresses"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_decodes_gzip_and_brotli_bodies_identical_to_the_input() {
    let weir = start().await;
    for (path, want) in bodies() {
        // curl offers gzip, br and more: the server's preference, brotli, wins.
        for (accept, coding) in [(None, "br"), (Some("gzip"), "gzip")] {
            let (seen, body) = curl(weir.url(path), accept).await;
            assert_eq!(seen.as_deref(), Some(coding), "{path}");
            assert!(body == want, "{path} ({coding}): decoded body differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_is_negotiated_with_q_values() {
    let weir = start().await;
    let path = "/text/5000";
    for (accept, want) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("gzip, deflate, br", Some("br")),
        ("x-gzip", Some("gzip")),
        ("br;q=0.5, gzip", Some("gzip")),
        ("gzip;q=0.8, br;q=0.9", Some("br")),
        ("gzip;q=0", None),
        ("gzip;q=0, br;q=0", None),
        ("*", Some("br")),
        ("br;q=0, *", Some("gzip")),
        ("*;q=0", None),
        ("*, gzip;q=0, br;q=0", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("gzip, identity;q=0.5", Some("gzip")),
        ("identity;q=0, gzip", Some("gzip")),
        ("deflate", None),
        ("", None),
        ("gzip;q=2", None),
    ] {
        let reply = get_accepting(&weir, path, accept).await;
        assert_eq!(reply.header("content-encoding"), want, "{accept:?}");
        assert_eq!(
            reply.header("vary"),
            Some("Accept-Encoding"),
            "{accept:?}: compressible, so Vary either way"
        );
        if want.is_none() {
            assert_eq!(reply.header("content-length"), Some("5000"), "{accept:?}");
            assert!(reply.body == text(5000), "{accept:?}");
        }
    }
    let plain = get(&weir.url(path)).await;
    assert_eq!(plain.header("content-encoding"), None, "no Accept-Encoding");
    assert!(plain.body == text(5000));

    let preferred = get_accepting(&weir, "/gzip-first/text/5000", "br, gzip").await;
    assert_eq!(preferred.header("content-encoding"), Some("gzip"));
    let only_br = get_accepting(&weir, "/gzip-first/text/5000", "br").await;
    assert_eq!(only_br.header("content-encoding"), Some("br"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_must_not_be_compressed_pass_untouched_with_their_length() {
    let weir = start().await;
    let cases: &[(&str, &str)] = &[
        (
            "/respond/1000?content-type=text/plain",
            "smaller than min_length",
        ),
        (
            "/respond/5000?content-type=image/png",
            "a type not configured",
        ),
        ("/respond/5000", "no content type"),
        (
            "/respond/5000?content-type=text/plain&content-encoding=gzip",
            "already encoded",
        ),
        (
            "/respond/5000?content-type=text/plain&content-encoding=br",
            "already encoded",
        ),
        (
            "/respond/5000?content-type=text/plain&cache-control=public,%20No-Transform",
            "no-transform",
        ),
        (
            "/respond/5000?content-type=text/plain&status=206&content-range=bytes%200-4999/9000",
            "206",
        ),
        (
            "/respond/5000?content-type=text/plain&content-range=bytes%200-4999/5000",
            "Content-Range",
        ),
    ];
    for &(path, why) in cases {
        let reply = get_accepting(&weir, path, "gzip, br").await;
        let upstream_coding = path
            .split("content-encoding=")
            .nth(1)
            .map(|c| c.split('&').next().unwrap_or(c));
        assert_eq!(reply.header("content-encoding"), upstream_coding, "{why}");
        let length = reply.body.len();
        assert!(length >= 1000 && reply.body == text(length), "{why}");
        assert_eq!(
            reply.header("content-length"),
            Some(length.to_string().as_str()),
            "{why}: streamed untouched, so the length stays"
        );
        assert_eq!(reply.header("vary"), None, "{why}: only one answer exists");
    }

    for status in [204, 304] {
        let reply = get_accepting(
            &weir,
            &format!("/respond/5000?content-type=text/plain&status={status}"),
            "gzip",
        )
        .await;
        assert_eq!(reply.status.as_u16(), status);
        assert_eq!(reply.header("content-encoding"), None, "{status}");
        assert!(reply.body.is_empty(), "{status}");
    }

    let head = send(
        Request::head(weir.url("/text/5000"))
            .header("accept-encoding", "gzip")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-encoding"), None, "HEAD");
    assert_eq!(head.header("content-length"), Some("5000"), "HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_responses_get_a_weak_etag_merged_vary_and_no_accept_ranges() {
    let weir = start().await;
    let reply = get_accepting(
        &weir,
        "/respond/5000?content-type=text/html;%20charset=utf-8&etag=%22v1%22&vary=Origin&accept-ranges=bytes&cache-control=max-age=60",
        "gzip",
    )
    .await;
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(reply.header("etag"), Some("W/\"v1\""));
    assert_eq!(reply.header_all("vary"), ["Origin, Accept-Encoding"]);
    assert_eq!(reply.header("accept-ranges"), None);
    assert_eq!(reply.header("cache-control"), Some("max-age=60"));
    assert!(python_gunzip(&reply.body) == text(5000));

    let weak = get_accepting(
        &weir,
        "/respond/5000?content-type=text/plain&etag=W/%22v2%22&vary=accept-encoding",
        "gzip",
    )
    .await;
    assert_eq!(weak.header("etag"), Some("W/\"v2\""));
    assert_eq!(weak.header_all("vary"), ["accept-encoding"]);

    let not_for_client = get_accepting(
        &weir,
        "/respond/5000?content-type=text/plain&etag=%22v1%22",
        "identity",
    )
    .await;
    assert_eq!(
        not_for_client.header("etag"),
        Some("\"v1\""),
        "unchanged body, unchanged tag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_response_compresses_as_it_streams_in_bounded_memory() {
    const SIZE: u64 = 200 << 20;
    let weir = start().await;
    let before = weir.peak_rss();
    let response = client()
        .request(
            Request::get(weir.url(&format!("/stream/{SIZE}")))
                .header("accept-encoding", "gzip")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .expect("response");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response
        .into_body()
        .collect()
        .await
        .expect("whole body")
        .to_bytes();
    let grown = weir.peak_rss().saturating_sub(before);
    // A few 64 KiB chunks in flight, one instance's zlib state (~300 KiB) and the compressed output, in
    // a process that already holds the engine: 24 MiB is room for allocator noise, and an eighth of what
    // buffering the body would take.
    assert!(grown < 24 << 20, "peak RSS grew by {grown} bytes");
    let mut decoded = 0u64;
    let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = decoder.read(&mut buf).expect("valid gzip");
        if n == 0 {
            break;
        }
        decoded += n as u64;
    }
    assert_eq!(decoded, SIZE);
    assert!(compressed.len() < (SIZE / 100) as usize);
}
