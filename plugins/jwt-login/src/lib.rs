//! Weir's built-in `jwt-login` plugin: a login endpoint that issues JSON Web Tokens.
//!
//! ```toml
//! config = { issuer = "https://erp.example.com", audience = "erp", ttl = "1h",
//!            keys = [{ kid = "2026-11", alg = "HS256", secret = "…" }],
//!            users = { alice = { password = "$argon2id$v=19$…", user_id = 17, role = "admin" } } }
//! ```
//!
//! `POST /login` with `{"username": "…", "password": "…"}` as JSON answers
//! `{"token": "…", "user": {"username": "…", "user_id": …, "role": "…"}}`: the token signed with the first
//! key, carrying `sub`, `iat`, `exp`, `iss`, `aud` and the user's claims. The passwords are PHC hashes the
//! host checks natively (`weir:plugin/crypto`); an unknown user costs a whole hash check too, so timing
//! does not tell which users exist. Optionally the token is also set as an `HttpOnly` cookie, and a logout
//! path clears it. Every other path passes untouched.

mod cookie;
mod credentials;
mod lifetime;
mod refusal;
mod users;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieConfig};
use refusal::Refusal;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use users::{UserConfig, Users};
use weir_sdk::config::Seconds;
use weir_sdk::jws::{self, KeyConfig, KeyEntry};
use weir_sdk::{Action, ConfigError, Hooks, LocalResponse, Plugin, Request, Result, log};

#[derive(Deserialize)]
struct JwtLogin {
    /// The first key signs; the others are checked and otherwise unused, so that one list can serve
    /// jwt-login and the jwt-auth that verifies its tokens while keys rotate.
    keys: Vec<KeyConfig>,
    issuer: Option<String>,
    /// A string or a list of strings.
    audience: Option<Value>,
    /// Seconds or a duration (`"1h"`).
    #[serde(default = "default_ttl")]
    ttl: Seconds,
    users: BTreeMap<String, UserConfig>,
    #[serde(default = "default_path")]
    path: String,
    logout_path: Option<String>,
    cookie: Option<CookieConfig>,
    /// A login body is a few dozen bytes: a small limit keeps a client from making the proxy hold more.
    #[serde(default = "default_max_body_size")]
    max_body_size: u32,
    #[serde(skip)]
    ready: Option<Ready>,
}

fn default_ttl() -> Seconds {
    Seconds(3600)
}

fn default_path() -> String {
    "/login".into()
}

fn default_max_body_size() -> u32 {
    16 * 1024
}

/// What `init` builds from the config.
struct Ready {
    signer: KeyEntry,
    users: Users,
    ttl: u64,
    /// `iss` and `aud`, the claims every token carries alike.
    common: Map<String, Value>,
    cookie: Option<Cookie>,
}

impl JwtLogin {
    fn signer(&self) -> core::result::Result<KeyEntry, ConfigError> {
        let Some(first) = self.keys.first() else {
            return Err(ConfigError::new(
                "keys",
                "give the key tokens are signed with: `keys = [{ kid, alg, secret | pem | pem_file … }]`",
            ));
        };
        let signer = first.load_signer("keys.0")?;
        if self.keys.len() > 1 && signer.kid.is_none() {
            return Err(ConfigError::new(
                "keys.0.kid",
                "with several keys, give the signing key a `kid`: verifiers pick the key by it",
            ));
        }
        for (i, older) in self.keys.iter().enumerate().skip(1) {
            older.load(&format!("keys.{i}"))?;
        }
        Ok(signer)
    }

    fn common_claims(&self) -> core::result::Result<Map<String, Value>, ConfigError> {
        let mut common = Map::new();
        if let Some(issuer) = &self.issuer {
            common.insert("iss".into(), issuer.clone().into());
        }
        match &self.audience {
            None => {}
            Some(Value::String(one)) => {
                common.insert("aud".into(), one.clone().into());
            }
            Some(Value::Array(many)) if !many.is_empty() && many.iter().all(Value::is_string) => {
                common.insert("aud".into(), Value::Array(many.clone()));
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "audience",
                    "a string or a non-empty list of strings",
                ));
            }
        }
        Ok(common)
    }

    fn check_paths(&self) -> core::result::Result<(), ConfigError> {
        let is_path = |p: &str| {
            p.starts_with('/')
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        };
        if !is_path(&self.path) {
            return Err(ConfigError::new(
                "path",
                format!("`{}` is not an absolute path without a query", self.path),
            ));
        }
        if let Some(logout) = &self.logout_path {
            if !is_path(logout) {
                return Err(ConfigError::new(
                    "logout_path",
                    format!("`{logout}` is not an absolute path without a query"),
                ));
            }
            if *logout == self.path {
                return Err(ConfigError::new("logout_path", "the same as `path`"));
            }
            if self.cookie.is_none() {
                return Err(ConfigError::new(
                    "logout_path",
                    "logging out clears the cookie: configure `cookie` too",
                ));
            }
        }
        if self.max_body_size == 0 {
            return Err(ConfigError::new("max_body_size", "must be more than 0"));
        }
        Ok(())
    }

    fn ready(&self) -> Result<&Ready> {
        // `init` always builds it; a hook without it is the SDK's bug, reported as a plugin fault.
        self.ready
            .as_ref()
            .ok_or_else(|| "jwt-login was not initialised".into())
    }

    fn login(&self, ready: &Ready, req: &mut Request) -> Result<Action> {
        if req.method() != "POST" {
            return Ok(refuse(Refusal::MethodNotAllowed, None));
        }
        if !credentials::is_json(req.header("content-type").as_deref()) {
            return Ok(refuse(Refusal::WrongContentType, None));
        }
        let limit = u64::from(self.max_body_size);
        // A declared length over the limit is refused before a byte of the body is read.
        let declared = req
            .header_str("content-length")
            .and_then(|n| n.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Ok(refuse(Refusal::TooLarge(limit), None));
        }
        let body = match req.read_body(self.max_body_size) {
            Ok(body) => body,
            Err(e) => return Ok(refuse(Refusal::of_read_error(&e), None)),
        };
        let credentials = match credentials::parse(&body) {
            Ok(credentials) => credentials,
            Err(refusal) => return Ok(refuse(refusal, None)),
        };
        let username = credentials.username;
        let Some(user) = ready
            .users
            .check(&username, credentials.password.as_bytes())
        else {
            return Ok(refuse(Refusal::BadCredentials, Some(&username)));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = user.claims.clone();
        claims.insert("sub".into(), username.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ready.ttl).into());
        claims.extend(ready.common.clone());
        let token = jws::encode(&ready.signer, &claims)
            .map_err(|e| format!("signing the token failed: {e}"))?;
        if log::enabled(log::Level::Debug) {
            log::debug(&format!("issued a token to {}", printable(&username)));
        }
        let body = json!({ "token": token, "user": user.profile });
        let mut response = LocalResponse::new(200)
            .header("content-type", "application/json")
            // RFC 6749 5.1: a response carrying a token is not to be stored by any cache.
            .header("cache-control", "no-store");
        if let Some(cookie) = &ready.cookie {
            let line = cookie.set(&token, ready.ttl, req.scheme() == "https");
            response = response.header("set-cookie", line);
        }
        Ok(response.body(format!("{body}\n")).into())
    }

    fn logout(&self, ready: &Ready, req: &Request) -> Action {
        // POST only: a link or an image on another site must not log the user out.
        if req.method() != "POST" {
            return refuse(Refusal::MethodNotAllowed, None);
        }
        let mut response = LocalResponse::new(204).header("cache-control", "no-store");
        if let Some(cookie) = &ready.cookie {
            response = response.header("set-cookie", cookie.clear(req.scheme() == "https"));
        }
        response.into()
    }
}

impl Plugin for JwtLogin {
    // Skipped on an error, the login path would go upstream with the password in its body: `weir check`
    // warns about `on_error = "skip"` on a guard.
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.check_paths()?;
        let ttl = lifetime::check(self.ttl).map_err(|e| ConfigError::new("ttl", e))?;
        let common = self.common_claims()?;
        let cookie = self.cookie.as_ref().map(CookieConfig::build).transpose()?;
        let signer = self.signer()?;
        let users = Users::load(&self.users)?;
        // The hashes now live in the host; the config's copies are not needed.
        self.users.clear();
        self.ready = Some(Ready {
            signer,
            users,
            ttl,
            common,
            cookie,
        });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let path = req.path();
        if path == self.path {
            return self.login(self.ready()?, req);
        }
        if self.logout_path.as_deref() == Some(path.as_str()) {
            return Ok(self.logout(self.ready()?, req));
        }
        Ok(Action::Continue)
    }
}

/// The answer to a refused request, logged at debug level with the user name it was for (never the
/// password, which is in no refusal).
fn refuse(refusal: Refusal, username: Option<&str>) -> Action {
    if log::enabled(log::Level::Debug) {
        let user = username.map_or(String::new(), |u| format!(" for {}", printable(u)));
        log::debug(&format!(
            "login refused ({}){user}: {}",
            refusal.reason(),
            refusal.message()
        ));
    }
    refusal.response().into()
}

/// A client's user name made safe for a log line: quoted, without control characters, at most 64 of them.
fn printable(name: &str) -> String {
    let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    format!("{shown:?}")
}

weir_sdk::export!(JwtLogin);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> JwtLogin {
        serde_json::from_value(json).unwrap()
    }

    fn minimal(extra: Value) -> Value {
        let mut base = json!({ "keys": [], "users": {} });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn paths_must_be_absolute_distinct_and_logout_needs_the_cookie() {
        assert!(config(minimal(json!({}))).check_paths().is_ok());
        for (extra, field) in [
            (json!({ "path": "login" }), "path"),
            (json!({ "path": "/login?x" }), "path"),
            (
                json!({ "logout_path": "/login", "cookie": {} }),
                "logout_path",
            ),
            (json!({ "logout_path": "/logout" }), "logout_path"),
            (json!({ "max_body_size": 0 }), "max_body_size"),
        ] {
            let e = config(minimal(extra.clone())).check_paths().unwrap_err();
            assert_eq!(e.field, field, "{extra}");
        }
        let ok = minimal(json!({ "logout_path": "/logout", "cookie": {} }));
        assert!(config(ok).check_paths().is_ok());
    }

    #[test]
    fn audience_is_one_string_or_a_list_of_them() {
        let common = config(minimal(
            json!({ "issuer": "https://a", "audience": ["x", "y"] }),
        ))
        .common_claims()
        .unwrap();
        assert_eq!(
            Value::Object(common),
            json!({ "iss": "https://a", "aud": ["x", "y"] })
        );
        let common = config(minimal(json!({ "audience": "erp" })))
            .common_claims()
            .unwrap();
        assert_eq!(Value::Object(common), json!({ "aud": "erp" }));
        for audience in [json!([]), json!(3), json!(["x", 1])] {
            let e = config(minimal(json!({ "audience": audience })))
                .common_claims()
                .unwrap_err();
            assert_eq!(e.field, "audience");
        }
    }

    #[test]
    fn user_names_are_logged_quoted_and_bounded() {
        assert_eq!(printable("alice"), "\"alice\"");
        assert_eq!(printable("a\nb\u{1b}[31m"), "\"ab[31m\"");
        assert_eq!(printable(&"x".repeat(100)).len(), 66);
    }
}
