//! `[server.request_id]`: each request's ID, through the real binary, as the upstream, the client, the
//! access log and Weir's own log lines about the request see it; IDs read by Python's `uuid`.

mod support;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Command;

use support::{Echo, Weir, closed_port, exchange_from, get, get_with, python_output, upstream};

fn config(upstream: SocketAddr, server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\naccess_log = \"json\"\n{server}\
         [upstreams.e]\nurl = \"http://{upstream}\"\n\
         [upstreams.down]\nurl = \"http://{}\"\n\
         [[routes]]\nname = \"fails\"\npath_prefix = \"/fails\"\nupstream = \"e\"\n\
         [[routes.plugins]]\npath = \"{{fixture}}\"\nconfig = {{ mode = \"fail\" }}\n\
         [[routes]]\nname = \"down\"\npath_prefix = \"/down\"\nupstream = \"down\"\n\
         [[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"e\"\n",
        closed_port()
    )
}

/// Python's reading of each ID: whether it is a version 4 UUID in its canonical form.
fn uuid_v4_by_python(ids: &[String]) -> Vec<bool> {
    const READ: &str = "import sys, uuid\n\
        for s in sys.argv[1:]:\n\
        \x20   u = uuid.UUID(s)\n\
        \x20   print(u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == s)";
    let args: Vec<&OsStr> = ids.iter().map(OsStr::new).collect();
    String::from_utf8_lossy(&python_output(READ, &args))
        .lines()
        .map(|line| line == "True")
        .collect()
}

/// The `request_id` of each JSON access line in `log`, with its status.
fn logged_ids(log: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| {
            Some((
                line["status"].as_u64()?,
                line["request_id"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_s_id_is_one_uuid_for_the_upstream_the_client_and_the_logs() {
    let e = upstream("e").await;
    // The test's client is a named proxy, whose ID is not kept either unless `keep_from_proxies` says so.
    let server = "[server.real_ip]\nfrom = [\"127.0.0.1\"]\n[server.request_id]\n";
    let weir = Weir::start(&config(e, server));

    let mut ids = Vec::new();
    for _ in 0..200 {
        // A client's own ID is never taken: it could name another client's request.
        let reply = get_with(&weir.url("/echo"), &[("x-request-id", "mine")]).await;
        assert_eq!(reply.status, 200);
        let id = reply.header("x-request-id").expect("an ID").to_owned();
        assert_eq!(Echo(reply.json()).header("x-request-id"), [id.as_str()]);
        ids.push(id);
    }
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert!(uuid_v4_by_python(&ids).iter().all(|&ok| ok), "{ids:?}");

    // Weir's own answers carry one too, and its log lines about them name it.
    for (path, status, said) in [
        ("/fails", 500, Some("plugin failed")),
        ("/down", 502, Some("cannot reach upstream")),
        ("/nowhere", 404, None),
    ] {
        let reply = get(&weir.url(path)).await;
        assert_eq!(reply.status, status, "{path}");
        let id = reply.header("x-request-id").expect("an ID").to_owned();
        if let Some(said) = said {
            assert!(
                weir.wait_for_record(&[&format!("request{{id={id}}}: weir::fault: {said}")]),
                "{path}: {}",
                weir.log()
            );
        }
        ids.push(id);
    }

    // HTTP/2 alike.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--http2-prior-knowledge",
        ])
        .arg(weir.url("/echo"))
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an ID")
        .trim()
        .to_owned();
    ids.push(id);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logged_ids(&weir.log()).len() < ids.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logged: Vec<String> = logged_ids(&weir.log())
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(logged, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_proxy_s_well_formed_id_is_kept_and_anything_else_replaced() {
    let e = upstream("e").await;
    let server = "[server.real_ip]\nfrom = [\"127.0.0.1\"]\n\
        [server.request_id]\nheader = \"X-Correlation-Id\"\nkeep_from_proxies = true\n";
    let weir = Weir::start(&config(e, server));
    let aws = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    let long = "a".repeat(201);
    let cases: [(&str, &[&str], Option<&str>); 7] = [
        ("127.0.0.1", &["abc-123"], Some("abc-123")),
        ("127.0.0.1", &[aws], Some(aws)),
        ("127.0.0.2", &["abc-123"], None),
        ("127.0.0.1", &["abc", "def"], None),
        ("127.0.0.1", &["a b"], None),
        ("127.0.0.1", &["\"abc\""], None),
        ("127.0.0.1", &[long.as_str()], None),
    ];
    for (from, lines, kept) in cases {
        let mut request = b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
        for line in lines {
            request.extend_from_slice(format!("X-Correlation-Id: {line}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        let response = exchange_from(weir.addr, from, &request).await;
        assert_eq!(response.status, 200, "{from} {lines:?}");
        let [id] = &response.header("x-correlation-id")[..] else {
            panic!("one ID: {}", response.status_line());
        };
        let echo = Echo(serde_json::from_slice(&response.body).expect("the echo's JSON"));
        assert_eq!(
            echo.header("x-correlation-id"),
            [id.as_str()],
            "{from} {lines:?}"
        );
        match kept {
            Some(kept) => assert_eq!(id, kept),
            None => assert_eq!(
                uuid_v4_by_python(std::slice::from_ref(id)),
                [true],
                "{from} {lines:?}: {id}"
            ),
        }
    }
    // A `Connection` that names the header takes the client's copy, not the ID.
    let response = exchange_from(
        weir.addr,
        "127.0.0.1",
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close, x-correlation-id\r\n\
          X-Correlation-Id: abc-123\r\n\r\n",
    )
    .await;
    let echo = Echo(serde_json::from_slice(&response.body).expect("the echo's JSON"));
    assert_eq!(echo.header("x-correlation-id"), ["abc-123"]);
    assert_eq!(response.header("x-correlation-id"), ["abc-123"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_nothing_is_added() {
    let e = upstream("e").await;
    let weir = Weir::start(&config(e, ""));
    let reply = get(&weir.url("/echo")).await;
    assert_eq!(reply.header("x-request-id"), None);
    assert!(Echo(reply.json()).header("x-request-id").is_empty());
    assert!(weir.wait_for_log("\"bytes_out\""));
    assert!(!weir.log().contains("request_id"), "{}", weir.log());
}

#[test]
fn weir_check_names_a_header_weir_writes_itself() {
    let mut said = String::new();
    for header in [
        "X-Forwarded-For",
        "X-Forwarded-Client-Cert",
        "Proxy-Authorization",
        "Connection",
        "bad name",
    ] {
        let out = support::check(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.request_id]\nheader = \"{header}\"\n\
             [upstreams.e]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nupstream = \"e\"\n"
        ));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        said.push_str(&support::report(&out));
    }
    support::golden("check-request-id.txt", &said);
}
