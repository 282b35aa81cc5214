//! Scenario 5 end to end: a single-page app behind `jwt-auth` (`on_failure = "record"`) and `spa-router`,
//! the real `weir` binary, tokens minted by PyJWT (tests/jwt/mint.py), the echo upstream reporting the path
//! it was asked for, so that `rewrite` mode shows which page the upstream served.

#[path = "jwt/mint.rs"]
mod jwt_mint;
mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{Value, json};
use support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The token states of the table's columns: a bad token is one that is expired or wrongly signed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Valid,
    Missing,
    Expired,
    BadSignature,
}

const STATES: [State; 4] = [
    State::Valid,
    State::Missing,
    State::Expired,
    State::BadSignature,
];

/// The route's HS256 secret and a token for each state.
struct Tokens {
    secret: String,
    valid: String,
    expired: String,
    forged: String,
}

impl Tokens {
    fn mint() -> Tokens {
        let claims = |extra: Value| {
            let mut claims = json!({ "sub": "alice", "iat": now(), "exp": now() + 600 });
            for (k, v) in extra.as_object().expect("object") {
                claims[k] = v.clone();
            }
            claims
        };
        let minted = jwt_mint::run(&json!({
            "keys": { "app": "hmac", "intruder": "hmac" },
            "tokens": {
                "valid": { "key": "app", "alg": "HS256", "claims": claims(json!({})) },
                "expired": { "key": "app", "alg": "HS256",
                             "claims": claims(json!({ "iat": now() - 7200, "exp": now() - 3600 })) },
                "forged": { "key": "intruder", "alg": "HS256", "claims": claims(json!({})) },
            },
        }));
        let token = |name: &str| minted["tokens"][name].as_str().expect("a token").to_owned();
        Tokens {
            secret: minted["keys"]["app"]["secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
            valid: token("valid"),
            expired: token("expired"),
            forged: token("forged"),
        }
    }

    fn of(&self, state: State) -> Option<&str> {
        match state {
            State::Valid => Some(self.valid.as_str()),
            State::Missing => None,
            State::Expired => Some(self.expired.as_str()),
            State::BadSignature => Some(self.forged.as_str()),
        }
    }
}

/// jwt-auth recording its verdict, then spa-router with the scenario's lists and `mode`.
fn chain(secret: &str, mode: &str) -> String {
    format!(
        r#"[[routes.plugins]]
plugin = "jwt-auth"
config = {{ keys = [{{ alg = "HS256", secret = {secret} }}], on_failure = "record", clock_skew_seconds = 0 }}
[[routes.plugins]]
plugin = "spa-router"
config = {{ whitelist = ["/login_api"], protected = ["/setattr_api", "/api/.*"], assets = ['/static/.*', '.*\.(css|js|ico)'], mode = "{mode}" }}
"#,
        secret = Value::from(secret)
    )
}

async fn start(tokens: &Tokens, mode: &str) -> Weir {
    Weir::start(&one_route(
        upstream("a").await,
        &chain(&tokens.secret, mode),
    ))
}

async fn call(weir: &Weir, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    get_with(&weir.url(path), &headers).await
}

/// What a row's cell expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The upstream was asked for the requested path.
    Pass,
    /// The app entry, or the login page: a 302 to it, or (rewrite) the upstream asked for it.
    App,
    Login,
    Unauthorized,
    Forbidden,
}

/// The scenario's table, plus an asset: (path, with a valid token, without one, with a bad one).
const TABLE: [(&str, Expect, Expect, Expect); 7] = [
    ("/index.html", Expect::Pass, Expect::Login, Expect::Login),
    ("/login.html", Expect::App, Expect::Pass, Expect::Pass),
    ("/login_api", Expect::Pass, Expect::Pass, Expect::Pass),
    (
        "/setattr_api",
        Expect::Pass,
        Expect::Unauthorized,
        Expect::Forbidden,
    ),
    ("/404", Expect::App, Expect::Login, Expect::Login),
    (
        "/deep/client/route",
        Expect::App,
        Expect::Login,
        Expect::Login,
    ),
    ("/static/app.js", Expect::Pass, Expect::Pass, Expect::Pass),
];

fn expected(row: &(&str, Expect, Expect, Expect), state: State) -> Expect {
    match state {
        State::Valid => row.1,
        State::Missing => row.2,
        State::Expired | State::BadSignature => row.3,
    }
}

/// Asserts the upstream was asked for `path` (and `query`), and never saw the token.
fn assert_upstream_got(reply: &Reply, path: &str, query: Option<&str>, case: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{case}: {}", reply.text());
    let echo = Echo(reply.json());
    assert_eq!(echo.path(), path, "{case}");
    assert_eq!(echo.0["query"].as_str(), query, "{case}");
    assert!(
        echo.header("authorization").is_empty(),
        "{case}: the token reached the upstream"
    );
}

fn assert_cell(reply: &Reply, expect: Expect, mode: &str, path: &str, state: State) {
    let case = format!("{mode} {path} {state:?}");
    let reason = match state {
        State::Expired => "expired",
        _ => "bad_signature",
    };
    let page = match expect {
        Expect::App => "/index.html",
        Expect::Login => "/login.html",
        Expect::Pass => return assert_upstream_got(reply, path, None, &case),
        Expect::Unauthorized => {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{case}");
            assert_eq!(reply.json()["error"], "missing_token", "{case}");
            assert_eq!(reply.header("x-upstream"), None, "{case}");
            return;
        }
        Expect::Forbidden => {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{case}");
            assert_eq!(
                reply.json(),
                json!({ "error": "invalid_token", "reason": reason }),
                "{case}"
            );
            assert_eq!(reply.header("x-upstream"), None, "{case}");
            return;
        }
    };
    match mode {
        "redirect" => {
            assert_eq!(reply.status, StatusCode::FOUND, "{case}: {}", reply.text());
            assert_eq!(reply.header("location"), Some(page), "{case}");
            assert_eq!(reply.header("x-upstream"), None, "{case}");
        }
        _ => assert_upstream_got(reply, page, None, &case),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_table_for_every_token_state_in_both_modes() {
    let tokens = Tokens::mint();
    for mode in ["redirect", "rewrite"] {
        let weir = start(&tokens, mode).await;
        for row in &TABLE {
            for state in STATES {
                let reply = call(&weir, row.0, tokens.of(state), &[]).await;
                assert_cell(&reply, expected(row, state), mode, row.0, state);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_survives_the_detour() {
    let tokens = Tokens::mint();
    let redirecting = start(&tokens, "redirect").await;
    let reply = call(&redirecting, "/404?lang=fr&next=%2Fa", None, &[]).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.header("location"),
        Some("/login.html?lang=fr&next=%2Fa")
    );
    let reply = call(
        &redirecting,
        "/login.html?lang=fr",
        Some(&tokens.valid),
        &[],
    )
    .await;
    assert_eq!(reply.header("location"), Some("/index.html?lang=fr"));

    let rewriting = start(&tokens, "rewrite").await;
    let reply = call(&rewriting, "/orders/7?tab=2", Some(&tokens.valid), &[]).await;
    assert_upstream_got(
        &reply,
        "/index.html",
        Some("tab=2"),
        "rewrite keeps the query",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_forge_the_verdict() {
    let tokens = Tokens::mint();
    let weir = start(&tokens, "redirect").await;
    let forged: &[(&str, &str)] = &[
        ("jwt.verdict", "valid"),
        ("x-jwt-verdict", "valid"),
        ("cookie", "jwt.verdict=valid"),
    ];
    let api = call(&weir, "/setattr_api?jwt.verdict=valid", None, forged).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());
    let page = call(&weir, "/index.html?jwt.verdict=valid", None, forged).await;
    assert_eq!(page.status, StatusCode::FOUND);
    let bad = call(&weir, "/setattr_api", Some(&tokens.expired), forged).await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);

    // Nor can a token, by a claim of that name: a bad token's claims never reach the context, and a good
    // token's are written before the verdict, which overwrites its `verdict` claim.
    let minted = jwt_mint::run(&json!({
        "keys": { "app": "hmac" },
        "tokens": {
            "expired_says_valid": { "key": "app", "alg": "HS256",
                                    "claims": { "verdict": "valid", "exp": now() - 3600 } },
            "valid_says_bad": { "key": "app", "alg": "HS256",
                                "claims": { "verdict": "bad", "exp": now() + 600 } },
        },
    }));
    let secret = minted["keys"]["app"]["secret"].as_str().expect("secret");
    let token = |name: &str| minted["tokens"][name].as_str().expect("token").to_owned();
    let weir = Weir::start(&one_route(upstream("a").await, &chain(secret, "redirect")));
    let reply = call(
        &weir,
        "/setattr_api",
        Some(&token("expired_says_valid")),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(reply.json()["reason"], "expired");
    let reply = call(&weir, "/setattr_api", Some(&token("valid_says_bad")), &[]).await;
    assert_upstream_got(&reply, "/setattr_api", None, "a valid token claiming `bad`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jwt_auth_in_front_everything_is_unauthenticated() {
    let tokens = Tokens::mint();
    let config = r#"[[routes.plugins]]
plugin = "spa-router"
config = { protected = ["/setattr_api"] }
"#;
    let weir = Weir::start(&one_route(upstream("a").await, config));
    let api = call(&weir, "/setattr_api", Some(&tokens.valid), &[]).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let page = call(&weir, "/index.html", Some(&tokens.valid), &[]).await;
    assert_eq!(page.header("location"), Some("/login.html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_to_a_protected_api_pass() {
    let tokens = Tokens::mint();
    let weir = start(&tokens, "redirect").await;
    let preflight = |method: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(weir.url("/setattr_api"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .body(http_body_util::Full::default())
            .expect("request")
    };
    let reply = send(preflight("OPTIONS")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        send(preflight("GET")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn bad_configs_name_the_field() {
    let cases = [
        (r#"app = "index.html""#, "app", "absolute"),
        (r#"login = "/index.html""#, "login", "must differ"),
        (r#"whitelist = ["/ok", "/(x"]"#, "whitelist.1", "unclosed"),
        (r#"assets = ["["]"#, "assets.0", "unclosed"),
        (r#"protected = ["/api/(x"]"#, "protected.0", "unclosed"),
        (r#"mode = "serve""#, "mode", "redirect"),
        (r#"verdict_key = """#, "verdict_key", "empty"),
        (r#"apps = "/x""#, "apps", "unknown field"),
    ];
    for (config, field, why) in cases {
        let checked = check(&format!(
            "[upstreams.a]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nname = \"spa\"\nupstream = \"a\"\n[[routes.plugins]]\nplugin = \"spa-router\"\nconfig = {{ {config} }}\n"
        ));
        assert!(!checked.success, "{config} was accepted");
        let expected = format!("field \"config.{field}\"");
        assert!(
            checked.stderr.contains(&expected) && checked.stderr.contains(why),
            "{config}: expected {expected} and {why:?} in:\n{}",
            checked.stderr
        );
    }
}
