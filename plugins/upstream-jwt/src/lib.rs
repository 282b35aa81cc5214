//! Weir's built-in `upstream-jwt` plugin: the proxy vouches for its user to the upstream with a JWT it
//! signs itself, as an analytics server's `/proxy` did for its data platform.
//!
//! ```toml
//! config = { key = { pem_file = "/keys/proxy.pem", kid = "proxy-2026" }, issuer = "weir", ttl = "5m" }
//! grants.dirs = { "/keys" = "./keys" }
//! ```
//!
//! The identity comes from the context, where an auth plugin before this one put it (`auth.user`, and the
//! comma-separated `auth.roles`); a request without one is the anonymous user (`anonymousUser`,
//! `ROLE_ANONYMOUS`), or is refused with 401 under `anonymous = false`. The token (`sub` = the user,
//! `authorities` = the roles, `iat`, `exp`, optional `iss`, `aud` and static claims; RS512 by default) goes
//! upstream as `Authorization: Bearer …`, replacing whatever the client sent. Signing is done by the host;
//! each identity's token is reused until a third of its lifetime is left.

mod cache;
mod claims;

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use cache::Tokens;
use claims::{Anonymous, Identity, Shape};
use serde::Deserialize;
use serde_json::{Map, Value};
use weir_sdk::config::Seconds;
use weir_sdk::crypto::{Algorithm, Key};
use weir_sdk::jws::{self, KeyConfig};
use weir_sdk::{Action, ConfigError, Hooks, LocalResponse, Plugin, Request, Result, context};

#[derive(Deserialize)]
struct UpstreamJwt {
    /// A private key or an HMAC secret; `alg` defaults to RS512, what the analytics upstreams of scenario 2
    /// verify (Spring Security's default for RSA keys there).
    key: KeyConfig,
    #[serde(default = "default_user_key")]
    user_key: String,
    #[serde(default = "default_roles_key")]
    roles_key: String,
    #[serde(default = "default_user_claim")]
    user_claim: String,
    #[serde(default = "default_roles_claim")]
    roles_claim: String,
    issuer: Option<String>,
    /// A string or a list of strings.
    audience: Option<Value>,
    /// Static claims added to every token.
    #[serde(default)]
    claims: Map<String, Value>,
    #[serde(default = "default_ttl")]
    ttl: Seconds,
    #[serde(default)]
    anonymous: Anonymous,
    /// The `WWW-Authenticate` of the 401 under `anonymous = false`.
    #[serde(default = "default_challenge")]
    challenge: String,
    /// Identities whose tokens are remembered per instance; 0 signs on every request.
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    /// Built by `init`.
    #[serde(skip)]
    ready: Option<Ready>,
}

fn default_user_key() -> String {
    "auth.user".into()
}

fn default_roles_key() -> String {
    "auth.roles".into()
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "authorities".into()
}

fn default_challenge() -> String {
    "Basic realm=\"weir\"".into()
}

fn default_cache_size() -> usize {
    1024
}

fn default_ttl() -> Seconds {
    Seconds(300)
}

struct Ready {
    key: Key,
    /// The JWS header, base64url-encoded: the same for every token.
    header: String,
    shape: Shape,
    /// Kept across the requests this instance serves, on purpose: minting is the expensive part.
    tokens: RefCell<Tokens>,
}

impl Ready {
    /// `Bearer <JWS>` for `identity`, signed by the host now.
    fn mint(&self, identity: &Identity, now: u64) -> Result<Rc<str>> {
        const SCHEME: &str = "Bearer ";
        let payload = self
            .shape
            .payload(identity, now)
            .map_err(|e| format!("cannot encode the claims: {e}"))?;
        let mut value = String::from(SCHEME);
        jws::encode_into(&mut value, &self.header, payload.as_bytes(), &self.key)
            .map_err(|e| format!("cannot sign the token: {e}"))?;
        Ok(value.into())
    }
}

impl UpstreamJwt {
    fn check_names(&self) -> core::result::Result<(), ConfigError> {
        for (field, key) in [("user_key", &self.user_key), ("roles_key", &self.roles_key)] {
            if key.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if let Anonymous::As(identity) = &self.anonymous
            && identity.user.is_empty()
        {
            return Err(ConfigError::new("anonymous.user", "must not be empty"));
        }
        // Sent back as a header value: visible ASCII and spaces only.
        let printable = |b: u8| b == b' ' || b.is_ascii_graphic();
        if self.challenge.is_empty() || !self.challenge.bytes().all(printable) {
            return Err(ConfigError::new(
                "challenge",
                "a `WWW-Authenticate` value such as `Basic realm=\"weir\"`",
            ));
        }
        Ok(())
    }

    /// Who the request speaks for; `None` when nobody and the anonymous are refused.
    fn identity(&self) -> Option<Cow<'_, Identity>> {
        match context::get(&self.user_key).filter(|user| !user.is_empty()) {
            Some(user) => {
                let roles =
                    context::get(&self.roles_key).map_or_else(Vec::new, |r| claims::roles(&r));
                Some(Cow::Owned(Identity { user, roles }))
            }
            None => match &self.anonymous {
                Anonymous::As(identity) => Some(Cow::Borrowed(identity)),
                Anonymous::Refused => None,
            },
        }
    }
}

impl Plugin for UpstreamJwt {
    /// Skipped on an error, the request would go upstream with whatever `Authorization` the client sent,
    /// as if the proxy vouched for it: `weir check` warns about `on_error = "skip"`.
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.check_names()?;
        self.key.default_alg(Algorithm::Rs512);
        let signer = self.key.load_signer("key")?;
        let ttl = claims::check_ttl(self.ttl).map_err(|e| ConfigError::new("ttl", e))?;
        let shape = Shape {
            user_claim: std::mem::take(&mut self.user_claim),
            roles_claim: std::mem::take(&mut self.roles_claim),
            issuer: self.issuer.take(),
            audience: self.audience.take(),
            extra: std::mem::take(&mut self.claims),
            ttl,
        };
        shape.check()?;
        self.ready = Some(Ready {
            header: jws::encoded_header(signer.algorithm, signer.kid.as_deref()),
            key: signer.key,
            shape,
            tokens: RefCell::new(Tokens::new(self.cache_size)),
        });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let Some(ready) = &self.ready else {
            return Err("upstream-jwt: a request before init".into());
        };
        let Some(identity) = self.identity() else {
            return Ok(LocalResponse::new(401)
                .header("www-authenticate", self.challenge.as_str())
                .header("content-type", "text/plain; charset=utf-8")
                .body("Authentication required\n")
                .into());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cached = ready.tokens.borrow().get(&identity, now);
        let value = match cached {
            Some(value) => value,
            None => {
                let value = ready.mint(&identity, now)?;
                let refresh_at = ready.shape.refresh_at(now);
                ready
                    .tokens
                    .borrow_mut()
                    .insert(identity.into_owned(), value.clone(), refresh_at);
                value
            }
        };
        req.set_header("authorization", value.as_bytes())?;
        Ok(Action::Continue)
    }
}

weir_sdk::export!(UpstreamJwt);
