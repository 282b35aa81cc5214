//! Each `--mode` of weir-upstream over a real socket, with requests written by hand: what the examples'
//! READMEs rely on, checked without Weir in front.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use weir_upstream::{Mode, Options, erp::Service};

/// Serves `options` on a loopback port from a thread of its own for the rest of the test process.
fn start(mode: Mode, api_key: Option<&str>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let options = Options {
        mode,
        api_key: api_key.map(Into::into),
        ..Options::echo("u")
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                weir_upstream::serve_options(listener, options).await
            })
    });
    addr
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// One request on its own connection; every mode's answers have a `Content-Length`.
fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: upstream\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", target, headers, b"")
}

#[test]
fn an_erp_service_wants_its_key() {
    let addr = start(Mode::Erp(Service::Transactions), Some("t-key"));
    for headers in [
        vec![],
        vec![("x-api-key", "i-key")],
        vec![("x-api-key", "")],
    ] {
        let reply = get(addr, "/shops/1/transactions", &headers);
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(reply.json()["error"], "unauthorized");
        assert!(!reply.text().contains("t-key"));
    }
    let reply = get(addr, "/shops/1/transactions", &[("x-api-key", "t-key")]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("u"));
}

#[test]
fn an_erp_service_keeps_each_shops_items() {
    let addr = start(Mode::Erp(Service::Inventory), Some("k"));
    let key = [("x-api-key", "k")];
    let json = [("x-api-key", "k"), ("content-type", "application/json")];

    let list = get(addr, "/shops/17/inventory", &key);
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert!(
        list.body.len() > 1024,
        "worth gzip: {} bytes",
        list.body.len()
    );
    let doc = list.json();
    assert_eq!(doc["service"], "inventory");
    assert_eq!(doc["shop_id"], "17");
    assert_eq!(doc["path"], "/shops/17/inventory");
    assert_eq!(doc["items"].as_array().unwrap().len(), 8);

    let created = send(
        addr,
        "POST",
        "/shops/17/inventory",
        &json,
        br#"{"sku": "Z-1", "id": 99}"#,
    );
    assert_eq!(created.status, 201);
    assert_eq!(
        created.json()["item"],
        serde_json::json!({"id": 9, "sku": "Z-1"})
    );
    let item = get(addr, "/shops/17/inventory/9", &key);
    assert_eq!(item.json()["item"]["sku"], "Z-1");
    assert_eq!(item.json()["path"], "/shops/17/inventory/9");

    let updated = send(
        addr,
        "PUT",
        "/shops/17/inventory/9?pad=3",
        &json,
        br#"{"sku": "Z-2"}"#,
    );
    assert_eq!(updated.status, 200);
    assert_eq!(
        updated.json()["item"],
        serde_json::json!({"id": 9, "sku": "Z-2"})
    );
    assert_eq!(updated.json()["pad"], "...");

    assert_eq!(
        send(addr, "DELETE", "/shops/17/inventory/9", &key, b"").status,
        204
    );
    assert_eq!(get(addr, "/shops/17/inventory/9", &key).status, 404);
    assert_eq!(
        send(addr, "DELETE", "/shops/17/inventory/9", &key, b"").status,
        404
    );

    // Another shop has its own items, untouched by shop 17's.
    assert_eq!(get(addr, "/shops/18/inventory/9", &key).status, 404);
    assert_eq!(get(addr, "/shops/18/inventory/1", &key).status, 200);

    for (method, target, body, status) in [
        ("POST", "/shops/17/inventory", &b"[1]"[..], 400),
        ("POST", "/shops/17/inventory", b"not json", 400),
        ("PATCH", "/shops/17/inventory/1", b"{}", 405),
        ("DELETE", "/shops/17/inventory", b"", 405),
        ("GET", "/shops/17/transactions", b"", 404),
        ("GET", "/shops/17/inventory/x", b"", 404),
        ("GET", "/shops/17/inventory/1/more", b"", 404),
        ("GET", "/shops//inventory", b"", 404),
    ] {
        let reply = send(addr, method, target, &json, body);
        assert_eq!(reply.status, status, "{method} {target}: {}", reply.text());
    }
}

#[test]
fn mirror_gives_the_body_back_byte_for_byte() {
    let addr = start(Mode::Mirror, None);
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let reply = send(
        addr,
        "POST",
        "/a/b?x=1&y",
        &[("content-type", "image/png"), ("x-custom", "v")],
        &body,
    );
    assert_eq!(reply.status, 200);
    assert!(reply.body == body, "the body changed");
    assert_eq!(reply.header("content-type"), Some("image/png"));
    assert_eq!(reply.header("x-echo-method"), Some("POST"));
    assert_eq!(reply.header("x-echo-path"), Some("/a/b"));
    assert_eq!(reply.header("x-echo-query"), Some("x=1&y"));
    assert_eq!(reply.header("x-echo-body-length"), Some("70000"));
    assert_eq!(reply.header("x-echo-header-x-custom"), Some("v"));

    let empty = get(addr, "/", &[]);
    assert_eq!(empty.header("content-type"), None);
    assert_eq!(empty.header("x-echo-query"), None);
}

#[test]
fn shard_says_which_shard_served() {
    let addr = start(Mode::Shard, None);
    let reply = get(addr, "/api/orders?page=2", &[]);
    assert_eq!(
        reply.json(),
        serde_json::json!({"shard": "u", "method": "GET", "path": "/api/orders", "query": "page=2"})
    );
    assert!(
        reply.text().starts_with("{\n  \"shard\": \"u\","),
        "shard first"
    );
}

#[test]
fn spa_serves_its_pages_assets_and_api() {
    let addr = start(Mode::Spa, None);
    for (path, ids) in [
        (
            "/",
            &["id=\"app\"", "id=\"logout\"", "/app.js", "/style.css"][..],
        ),
        ("/index.html", &["id=\"app\""]),
        (
            "/login.html",
            &[
                "id=\"login\"",
                "id=\"username\"",
                "id=\"password\"",
                "type=\"submit\"",
            ],
        ),
    ] {
        let reply = get(addr, path, &[]);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.header("cache-control"), Some("private, no-cache"));
        for id in ids {
            assert!(reply.text().contains(id), "{path} lacks {id}");
        }
    }
    assert!(
        !get(addr, "/", &[]).text().contains("id=\"login\""),
        "the marker is the login page's own"
    );
    let script = get(addr, "/app.js", &[]);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    for needle in [
        "\"/login_api\"",
        "\"/logout\"",
        "method: \"POST\"",
        "location.assign(\"/\")",
    ] {
        assert!(script.text().contains(needle), "app.js lacks {needle}");
    }
    assert_eq!(
        get(addr, "/style.css", &[]).header("content-type"),
        Some("text/css; charset=utf-8")
    );

    let api = send(
        addr,
        "POST",
        "/setattr_api?a=1",
        &[],
        b"{\"theme\":\"dark\"}",
    );
    assert_eq!(
        api.json(),
        serde_json::json!({"api": "/setattr_api", "method": "POST", "query": "a=1", "body": "{\"theme\":\"dark\"}"})
    );
    assert_eq!(get(addr, "/api/users", &[]).status, 200);
    assert_eq!(get(addr, "/404", &[]).status, 404);
    assert_eq!(send(addr, "POST", "/index.html", &[], b"").status, 405);
}
