//! The access log through the real binary: one JSON line per request, every field checked against what the
//! test sent and got (bytes both ways, route and upstream, the path in its normal form beside the target as
//! sent, plugin time within the total); the text line by default; no line when it is off; and the error
//! for a format that does not exist.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn config(a: SocketAddr, access_log: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{access_log}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [upstreams.a]\nurl = \"http://{a}\"\n\
         [[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"a\"\n{}\
         [[routes]]\nname = \"upper\"\npath_prefix = \"/upper\"\nupstream = \"a\"\n{}\
         [[routes]]\nname = \"bare\"\npath_prefix = \"/text\"\nupstream = \"a\"\n\
         [[routes]]\nname = \"napping\"\npath = \"/nap\"\nupstream = \"a\"\n{}wall_timeout = \"30s\"\n",
        fixture(r#"mode = "tag", name = "t""#),
        fixture(r#"mode = "body-upper""#),
        fixture(r#"mode = "sleep", ms = 20000"#),
    )
}

/// The JSON access lines logged so far.
fn json_lines(weir: &Weir) -> Vec<Value> {
    weir.log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The one JSON line for `target`, waited for (bounded): a line is written once the response has been
/// handed to the connection, which may be a moment after the client has it.
fn line_for(weir: &Weir, target: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<Value> = json_lines(weir)
            .into_iter()
            .filter(|l| l["target"] == target)
            .collect();
        match found.as_slice() {
            [line] => return line.clone(),
            [] if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => panic!("{} lines for {target}:\n{}", found.len(), weir.log()),
        }
    }
}

/// Checks the fields every line has the same way, and gives the line's plugin time.
fn common(line: &Value, reply: &Reply) -> u64 {
    let time = line["time"].as_str().expect("time");
    humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("time {time:?}: {e}"));
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["status"], reply.status.as_u16());
    assert_eq!(line["bytes_out"], reply.body.len() as u64, "{line}");
    let head = line["head_us"].as_u64().expect("head_us");
    let total = line["duration_us"].as_u64().expect("duration_us");
    let plugins = line["plugins_us"].as_u64().expect("plugins_us");
    assert!(
        head <= total,
        "the head ({head} µs) came before the end ({total} µs)"
    );
    assert!(
        plugins <= total,
        "plugin time {plugins} µs within the total {total} µs"
    );
    let fields: Vec<&String> = line.as_object().expect("an object").keys().collect();
    assert_eq!(
        fields.len(),
        13,
        "exactly the documented fields: {fields:?}"
    );
    plugins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_every_field() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "access_log = \"json\""));

    let posted = post(&weir.url("/echo/x?q=1"), "hello world").await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.json()["body_len"], 11, "the upstream got the body");
    let line = line_for(&weir, "/echo/x?q=1");
    assert!(common(&line, &posted) > 0, "the tag plugin ran: {line}");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/echo/x");
    assert_eq!(line["route"], "echo");
    assert_eq!(line["upstream"], "a");
    assert_eq!(line["bytes_in"], 11);

    // The body hooks' time counts too, and the bytes are the client's, before and after the plugin.
    let upper = post(&weir.url("/upper"), "shout it").await;
    assert_eq!(upper.status, 200);
    assert!(upper.text().contains("SHOUT IT"), "{}", upper.text());
    let line = line_for(&weir, "/upper");
    assert!(common(&line, &upper) > 0);
    assert_eq!(line["bytes_in"], 8);
    assert_eq!(line["route"], "upper");

    // The target as sent beside the path the route saw.
    let dotted = get(&weir.url("/echo/a/../b%7e")).await;
    assert_eq!(dotted.status, 200);
    let line = line_for(&weir, "/echo/a/../b%7e");
    common(&line, &dotted);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/echo/b~");
    assert_eq!(line["bytes_in"], 0);

    // No plugins, a body of known length.
    let text = get(&weir.url("/text/1000")).await;
    assert_eq!(text.body.len(), 1000);
    let line = line_for(&weir, "/text/1000");
    assert_eq!(common(&line, &text), 0, "no plugin, no plugin time");
    assert_eq!(line["route"], "bare");
    assert_eq!(line["upstream"], "a");

    // No route: no upstream either.
    let missing = get(&weir.url("/nowhere")).await;
    assert_eq!(missing.status, 404);
    let line = line_for(&weir, "/nowhere");
    common(&line, &missing);
    assert_eq!(line["path"], "/nowhere");
    assert_eq!(line["route"], Value::Null);
    assert_eq!(line["upstream"], Value::Null);

    // Refused before its path had a normal form.
    let refused = get(&weir.url("/echo/%zz")).await;
    assert_eq!(refused.status, 400);
    let line = line_for(&weir, "/echo/%zz");
    common(&line, &refused);
    assert_eq!(line["path"], Value::Null);
    assert_eq!(line["route"], Value::Null);
}

/// A client that leaves while a plugin works gets its line when the handler is dropped: 499, as nginx
/// logs it, with the time the abandoned call took.
/// A token a client puts in the query (RFC 6750 §2.3) reaches the upstream, not the log file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_query_values_are_redacted_in_the_log_only() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "access_log = \"json\""));
    let sent = "/echo/x?access_token=eyJ.s3cret.sig&page=2";
    let reply = get(&weir.url(sent)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().contains("access_token=eyJ.s3cret.sig"),
        "the upstream gets the query as sent: {}",
        reply.text()
    );
    let line = line_for(&weir, "/echo/x?access_token=<redacted>&page=2");
    assert_eq!(line["status"], 200);
    assert!(!weir.log().contains("s3cret"), "{}", weir.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_before_the_answer_is_499() {
    use std::io::Write;
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, "access_log = \"json\""));
    let mut client = std::net::TcpStream::connect(weir.addr).expect("connect");
    client
        .write_all(b"GET /nap HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("send");
    // The plugin holds an instance while it sleeps: then the request is surely in its call.
    let deadline = Instant::now() + Duration::from_secs(5);
    while weir
        .metric("weir_plugin_instances_leased", &[("route", "napping")])
        .await
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the plugin never got the request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);
    let line = line_for(&weir, "/nap");
    assert_eq!(line["status"], 499);
    assert_eq!(line["route"], "napping");
    assert_eq!(line["bytes_out"], 0);
    assert_eq!(line["head_us"], Value::Null, "no answer was made");
    let plugins = line["plugins_us"].as_u64().expect("plugins_us");
    assert!(
        plugins > 0 && plugins <= line["duration_us"].as_u64().expect("duration_us"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_by_default_and_no_line_when_off() {
    let a = upstream("a").await;
    let weir = Weir::start(&config(a, ""));
    let reply = get(&weir.url("/text/5")).await;
    assert_eq!(reply.status, 200);
    assert!(
        weir.wait_for_record(&[
            " INFO weir::access: GET /text/5 200 client=127.0.0.1 route=\"bare\" upstream=\"a\" head_us=",
            " plugins_us=0 bytes_in=0 bytes_out=5 path=\"/text/5\"",
        ]),
        "{}",
        weir.log()
    );

    let dir = weir.config_file().parent().expect("a directory").to_owned();
    let admin = weir.admin.expect("admin");
    for (generation, access_log, target) in [
        (2, "access_log = false", "/text/7"),
        (3, "access_log = \"json\"", "/text/9"),
    ] {
        write_config(&dir, &config(a, access_log));
        let reloaded = post(&format!("http://{admin}/reload"), "").await;
        assert!(
            reloaded
                .text()
                .contains(&format!("generation {generation}")),
            "{}",
            reloaded.text()
        );
        assert_eq!(get(&weir.url(target)).await.status, 200);
    }
    // The line of the request after it is there, so the one before would be too.
    line_for(&weir, "/text/9");
    assert!(!weir.log().contains("/text/7"), "{}", weir.log());
}

#[test]
fn an_unknown_format_is_refused_naming_the_formats() {
    let out = check("[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"xml\"\n");
    assert_eq!(out.code, Some(1));
    golden("check-access-log.txt", &report(&out));
}
