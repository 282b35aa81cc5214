//! Weir's built-in `spa-router` plugin: a single-page app behind a JWT, as the aiohttp-jwtplus middleware
//! serves one. It runs after `jwt-auth` with `on_failure = "record"` and reads the verdict it recorded.
//!
//! ```toml
//! config.whitelist = ["/login_api"]
//! config.protected = ["/setattr_api", "/api/.*"]
//! config.assets = ['/static/.*', '/favicon\.ico']
//! config.mode = "rewrite"
//! ```
//!
//! | path | with a valid token | without (missing or bad) |
//! |---|---|---|
//! | `app` (`/index.html`) | the app | the login page |
//! | `login` (`/login.html`) | the app | the login page |
//! | `whitelist`, `assets` | passes | passes |
//! | `protected` | passes | 401 (missing) or 403 (bad) |
//! | anything else | the app | the login page |
//!
//! A page is reached by a 302 to it (`mode = "redirect"`) or by serving it at the requested URL
//! (`mode = "rewrite"`, as nginx's `try_files $uri /index.html`). The verdict comes from the context,
//! which only plugins write: a client cannot send one.

mod route;

use route::{Decision, Kind, Router, Spec, Verdict};
use serde::Deserialize;
use serde_json::json;
use weir_sdk::{Action, ConfigError, Hooks, LocalResponse, Plugin, Request, Result, context};

#[derive(Deserialize)]
struct SpaRouter {
    #[serde(default = "default_app")]
    app: String,
    #[serde(default = "default_login")]
    login: String,
    /// Whole-path regexes that pass whatever the token (the login API).
    #[serde(default)]
    whitelist: Vec<String>,
    /// Whole-path regexes of the APIs that need a valid token.
    #[serde(default)]
    protected: Vec<String>,
    /// Whole-path regexes of static files that pass untouched (scripts, styles, images).
    #[serde(default)]
    assets: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_verdict_key")]
    verdict_key: String,
    /// Browsers send CORS preflights without credentials: let them through, as jwt-auth does.
    #[serde(default = "yes")]
    bypass_cors_preflight: bool,
    /// Built by `init`.
    #[serde(skip)]
    ready: Option<Ready>,
}

#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// 302 to the page: the address bar shows where the user is.
    #[default]
    Redirect,
    /// The upstream serves the page at the requested URL, so the app's own router sees the deep link.
    Rewrite,
}

struct Ready {
    router: Router,
    reason_key: String,
}

fn default_app() -> String {
    "/index.html".into()
}

fn default_login() -> String {
    "/login.html".into()
}

fn default_verdict_key() -> String {
    "jwt.verdict".into()
}

fn yes() -> bool {
    true
}

/// The reason sits beside the verdict, as jwt-auth writes them: `jwt.reason` for `jwt.verdict`.
fn reason_key(verdict_key: &str) -> String {
    match verdict_key.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.reason"),
        None => "reason".into(),
    }
}

impl Plugin for SpaRouter {
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        if self.verdict_key.is_empty() {
            return Err(ConfigError::new("verdict_key", "must not be empty"));
        }
        let router = Router::build(&Spec {
            app: &self.app,
            login: &self.login,
            whitelist: &self.whitelist,
            assets: &self.assets,
            protected: &self.protected,
        })?;
        self.ready = Some(Ready {
            router,
            reason_key: reason_key(&self.verdict_key),
        });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let Some(ready) = &self.ready else {
            return Err("spa-router: called before init".into());
        };
        let kind = ready.router.kind(&req.path());
        // Open paths do not need the verdict: one host call fewer on every asset.
        if kind == Kind::Open {
            return Ok(Action::Continue);
        }
        let verdict = Verdict::from_context(context::get(&self.verdict_key).as_deref());
        let decision = route::decide(kind, verdict);
        if decision == Decision::Pass || (self.bypass_cors_preflight && is_cors_preflight(req)) {
            return Ok(Action::Continue);
        }
        match decision {
            Decision::Pass => Ok(Action::Continue),
            Decision::Goto(page) => self.go_to(req, ready.router.page(page)),
            Decision::Unauthorized => Ok(unauthorized()),
            Decision::Forbidden => Ok(forbidden(context::get(&ready.reason_key).as_deref())),
        }
    }
}

impl SpaRouter {
    fn go_to(&self, req: &mut Request, page: &str) -> Result<Action> {
        match self.mode {
            Mode::Redirect => Ok(redirect(&route::location(page, req.query().as_deref()))),
            Mode::Rewrite => {
                req.set_path(page)?;
                Ok(Action::Continue)
            }
        }
    }
}

/// An `OPTIONS` request with `Origin` and `Access-Control-Request-Method` (the Fetch standard's
/// preflight): it never carries credentials, so no verdict says anything about it.
fn is_cors_preflight(req: &Request) -> bool {
    req.method() == "OPTIONS"
        && req.header("origin").is_some()
        && req.header("access-control-request-method").is_some()
}

fn redirect(location: &str) -> Action {
    LocalResponse::new(302).header("location", location).into()
}

/// RFC 6750 section 3.1: a request without credentials gets a bare challenge.
fn unauthorized() -> Action {
    json_answer(
        401,
        json!({ "error": "missing_token", "reason": "missing" }),
    )
    .header("www-authenticate", "Bearer")
    .into()
}

/// A token was sent and is no good: signing in again, not sending it again, is what helps. The reason is
/// absent when jwt-auth hides details.
fn forbidden(reason: Option<&str>) -> Action {
    let body = match reason {
        Some(reason) => json!({ "error": "invalid_token", "reason": reason }),
        None => json!({ "error": "invalid_token" }),
    };
    json_answer(403, body).into()
}

fn json_answer(status: u16, body: serde_json::Value) -> LocalResponse {
    LocalResponse::new(status)
        .header("content-type", "application/json")
        .body(format!("{body}\n"))
}

weir_sdk::export!(SpaRouter);

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(action: Action) -> LocalResponse {
        match action {
            Action::Respond(response) => response,
            Action::Continue => panic!("continued"),
        }
    }

    fn header<'a>(response: &'a LocalResponse, name: &str) -> Option<&'a [u8]> {
        response
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn a_missing_token_gets_a_bare_challenge() {
        let response = respond(unauthorized());
        assert_eq!(response.status, 401);
        assert_eq!(header(&response, "www-authenticate"), Some(&b"Bearer"[..]));
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body,
            json!({ "error": "missing_token", "reason": "missing" })
        );
    }

    #[test]
    fn a_bad_token_gets_403_with_the_reason_escaped() {
        let response = respond(forbidden(Some("expired")));
        assert_eq!(response.status, 403);
        assert_eq!(header(&response, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body,
            json!({ "error": "invalid_token", "reason": "expired" })
        );
        let odd = respond(forbidden(Some("a\"b\n")));
        let body: serde_json::Value = serde_json::from_slice(&odd.body).unwrap();
        assert_eq!(body["reason"], "a\"b\n");
        let hidden = respond(forbidden(None));
        let body: serde_json::Value = serde_json::from_slice(&hidden.body).unwrap();
        assert_eq!(body, json!({ "error": "invalid_token" }));
    }

    #[test]
    fn redirects_are_302_to_the_location() {
        let response = respond(redirect("/login.html?x=1"));
        assert_eq!(response.status, 302);
        assert_eq!(header(&response, "location"), Some(&b"/login.html?x=1"[..]));
    }

    #[test]
    fn the_reason_sits_beside_the_verdict() {
        assert_eq!(reason_key("jwt.verdict"), "jwt.reason");
        assert_eq!(reason_key("auth.jwt.verdict"), "auth.jwt.reason");
        assert_eq!(reason_key("verdict"), "reason");
    }

    #[test]
    fn the_config_has_the_scenario_defaults() {
        let plugin: SpaRouter = serde_json::from_str("{}").unwrap();
        assert_eq!(plugin.app, "/index.html");
        assert_eq!(plugin.login, "/login.html");
        assert_eq!(plugin.mode, Mode::Redirect);
        assert_eq!(plugin.verdict_key, "jwt.verdict");
        assert!(plugin.bypass_cors_preflight);
        let rewrite: SpaRouter = serde_json::from_str(r#"{"mode": "rewrite"}"#).unwrap();
        assert_eq!(rewrite.mode, Mode::Rewrite);
        assert!(serde_json::from_str::<SpaRouter>(r#"{"mode": "serve"}"#).is_err());
    }

    #[test]
    fn init_validates_and_names_the_field() {
        let mut empty_key: SpaRouter = serde_json::from_str(r#"{"verdict_key": ""}"#).unwrap();
        assert_eq!(empty_key.init().unwrap_err().field, "verdict_key");
        let mut bad_regex: SpaRouter =
            serde_json::from_str(r#"{"protected": ["/api/(x"]}"#).unwrap();
        assert_eq!(bad_regex.init().unwrap_err().field, "protected.0");
        let mut relative: SpaRouter = serde_json::from_str(r#"{"app": "index.html"}"#).unwrap();
        assert_eq!(relative.init().unwrap_err().field, "app");
        let mut fine: SpaRouter = serde_json::from_str(r#"{"whitelist": ["/login_api"]}"#).unwrap();
        assert!(fine.init().is_ok());
    }
}
