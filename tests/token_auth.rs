//! The `token-auth` built-in end to end: the real `weir` binary, the plugin built by `make plugins`, the echo
//! upstream reporting what it received. The `headers` built-in after it copies the identity from the context
//! into `x-identity`, as a route would to tell its upstream who called.

mod support;

use http_body_util::Full;
use hyper::{Request, StatusCode};
use support::*;

/// `token-auth` with `config` (the inside of an inline table), then `headers` copying the identity found
/// under `key` into `x-identity`; a client's own `x-identity` is removed first, so it can never pass as one.
fn chain(config: &str, key: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = {{ {config} }}\n{}",
        context_to_header("x-identity", key)
    )
}

async fn start(config: &str) -> Weir {
    Weir::start(&one_route(
        upstream("a").await,
        &chain(config, "auth.identity"),
    ))
}

/// Asserts a refusal: status, exact plain-text body, and that no upstream answered.
fn assert_refused(reply: &Reply, status: StatusCode, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.text(), format!("{message}\n"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-upstream"), None, "the upstream was called");
}

/// Asserts the request reached the upstream as `identity`, without the token anywhere in what it received.
fn assert_passed_as(reply: &Reply, identity: &str, token: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.header("x-identity"), [identity]);
    assert!(echo.header("authorization").is_empty());
    assert!(
        !reply.text().contains(token),
        "the token reached the upstream: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_message() {
    let weir = start(r#"tokens = { alice = "a-secret" }"#).await;
    let url = weir.url("/orders");

    let missing = get(&url).await;
    assert_refused(
        &missing,
        StatusCode::UNAUTHORIZED,
        "Missing authorization header",
    );
    assert_eq!(missing.header("www-authenticate"), Some("Token"));

    for header in [
        "Token",
        "a-secret",
        "Token a-secret extra",
        "Token  a-secret",
    ] {
        let reply = get_with(&url, &[("authorization", header)]).await;
        assert_refused(
            &reply,
            StatusCode::FORBIDDEN,
            "Invalid authorization header",
        );
        assert_eq!(reply.header("www-authenticate"), None, "{header}");
    }
    let reply = get_with(&url, &[("authorization", "Bearer a-secret")]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "Invalid token scheme");
    for token in ["b-secret", "a-secre", "alice"] {
        let reply = get_with(&url, &[("authorization", &format!("Token {token}"))]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "Invalid token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_passes_as_its_name_and_never_reaches_the_upstream() {
    let weir = start(r#"tokens = { alice = "a-secret", bob = "b-secret" }"#).await;
    for (header, identity, token) in [
        ("Token a-secret", "alice", "a-secret"),
        ("token b-secret", "bob", "b-secret"),
        ("  TOKEN a-secret  ", "alice", "a-secret"),
    ] {
        let reply = get_with(
            &weir.url("/orders"),
            &[("authorization", header), ("x-identity", "mallory")],
        )
        .await;
        assert_passed_as(&reply, identity, token);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_tokens_are_matched_by_their_sha256() {
    // `printf %s a-secret | sha256sum`: the config holds no usable secret.
    let weir = start(
        r#"hashed = true, tokens = { alice = "b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d" }"#,
    )
    .await;
    let url = weir.url("/");
    let reply = get_with(&url, &[("authorization", "Token a-secret")]).await;
    assert_passed_as(&reply, "alice", "a-secret");
    let hash = "b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d";
    let reply = get_with(&url, &[("authorization", &format!("Token {hash}"))]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "Invalid token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_a_file_in_a_granted_directory() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("tokens"),
        "# name:token\nalice:a-secret\n\n  ci : c-secret  \n# old:o-secret\n",
    )
    .unwrap();
    // The hashed twin: `printf %s f-secret | sha256sum`.
    std::fs::write(
        secrets.path().join("hashed"),
        "frank:0696738e27cf852f523b2d8f5df3de6ee15bca2d28c26b114ba835418bff423e\n",
    )
    .unwrap();
    let a = upstream("a").await;
    let route = |file: &str, hashed: bool| {
        format!(
            "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = {{ tokens_file = \"/secrets/{file}\", hashed = {hashed} }}\ngrants.dirs = {{ \"/secrets\" = \"{}\" }}\n",
            secrets.path().display()
        )
    };
    let headers = "[[routes.plugins]]\nplugin = \"headers\"\nconfig.request = { set = { \"x-identity\" = \"{ctx.auth.identity}\" } }\n";
    let weir = Weir::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.a]\nurl = \"http://{a}\"\n\
         [[routes]]\npath_prefix = \"/plain\"\nupstream = \"a\"\n{}{headers}\
         [[routes]]\npath_prefix = \"/hashed\"\nupstream = \"a\"\n{}{headers}",
        route("tokens", false),
        route("hashed", true),
    ));
    for (path, token, identity) in [
        ("/plain", "a-secret", "alice"),
        ("/plain", "c-secret", "ci"),
        ("/hashed", "f-secret", "frank"),
    ] {
        let reply = get_with(
            &weir.url(path),
            &[("authorization", &format!("Token {token}"))],
        )
        .await;
        assert_passed_as(&reply, identity, token);
    }
    let commented = get_with(&weir.url("/plain"), &[("authorization", "Token o-secret")]).await;
    assert_refused(&commented, StatusCode::FORBIDDEN, "Invalid token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_and_methods_pass_without_a_token() {
    let weir = start(
        r#"tokens = { alice = "a-secret" }, exclude_paths = ["/health", "/public/.*"], exclude_methods = ["options"]"#,
    )
    .await;
    for path in ["/health", "/public/logo.png"] {
        let reply = get(&weir.url(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert!(
            Echo(reply.json()).header("x-identity").is_empty(),
            "{path} has no identity"
        );
    }
    let options = send(
        Request::options(weir.url("/orders"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.text());

    // Patterns match the whole path, and a path the upstream could resolve elsewhere is not excluded.
    for path in [
        "/healthz",
        "/admin/health",
        "/public/../admin",
        "/public/%2e%2e/admin",
    ] {
        assert_refused(
            &get(&weir.url(path)).await,
            StatusCode::UNAUTHORIZED,
            "Missing authorization header",
        );
    }
    let post = send(
        Request::post(weir.url("/health"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        post.status,
        StatusCode::OK,
        "exclusions are per path or per method"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheme_and_context_key_are_configurable() {
    let weir = Weir::start(&one_route(
        upstream("a").await,
        &chain(
            r#"tokens = { alice = "a-secret" }, scheme = "Bearer", context_key = "who""#,
            "who",
        ),
    ));
    let url = weir.url("/");
    assert_eq!(get(&url).await.header("www-authenticate"), Some("Bearer"));
    assert_refused(
        &get_with(&url, &[("authorization", "Token a-secret")]).await,
        StatusCode::FORBIDDEN,
        "Invalid token scheme",
    );
    let reply = get_with(&url, &[("authorization", "bearer a-secret")]).await;
    assert_passed_as(&reply, "alice", "a-secret");
}

#[test]
fn config_errors_name_the_field() {
    let unreadable = tempfile::tempdir().unwrap();
    for (config, field, message) in [
        ("", "config.tokens", "set `tokens`"),
        ("tokens = {}", "config.tokens", "the table is empty"),
        (
            r#"tokens = { a = "x" }, tokens_file = "/s/t""#,
            "config.tokens_file",
            "set only one",
        ),
        (
            r#"tokens = { a = "x" }, hashed = true"#,
            "config.tokens.a",
            "64 hex digits",
        ),
        (
            r#"tokens = { a = "two words" }"#,
            "config.tokens.a",
            "whitespace",
        ),
        (
            r#"tokens_file = "/secrets/none""#,
            "config.tokens_file",
            "cannot read /secrets/none",
        ),
        (
            r#"tokens = { a = "x" }, scheme = "To ken""#,
            "config.scheme",
            "not a valid authentication scheme",
        ),
        (
            r#"tokens = { a = "x" }, exclude_paths = ["/(open"]"#,
            "config.exclude_paths.0",
            "",
        ),
        (
            r#"tokens = { a = "x" }, exclude_methods = ["GET", "NOT A METHOD"]"#,
            "config.exclude_methods.1",
            "not an HTTP method",
        ),
        (
            r#"tokens = { a = "x" }, context_key = """#,
            "config.context_key",
            "must not be empty",
        ),
        (
            r#"tokens = { a = "x" }, token = "y""#,
            "config.token",
            "unknown field",
        ),
    ] {
        let out = check(&one_route(
            closed_port(),
            &format!(
                "[[routes.plugins]]\nplugin = \"token-auth\"\nconfig = {{ {config} }}\ngrants.dirs = {{ \"/secrets\" = \"{}\" }}\n",
                unreadable.path().display()
            ),
        ));
        assert_eq!(out.code, Some(1), "{config}: {}", out.stderr);
        let field = format!("plugin #1 (token-auth), field \"{field}\": ");
        assert!(
            out.stderr
                .lines()
                .any(|line| line.contains(&field) && line.contains(message)),
            "{config}: wanted {field:?} and {message:?} in\n{}",
            out.stderr
        );
    }
}
