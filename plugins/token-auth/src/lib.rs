//! Weir's built-in `token-auth` plugin: the aiohttp token-auth tutorial's middleware as a plugin.
//!
//! ```toml
//! config = { tokens = { alice = "3f9c…", ci = "b7e1…" }, exclude_paths = ["/health"] }
//! config = { tokens_file = "/secrets/tokens", hashed = true }   # with grants.dirs = { "/secrets" = "./secrets" }
//! ```
//!
//! A request passes with `Authorization: Token <token>` for a configured token; the token's name goes into
//! the context (`auth.identity`) and the `Authorization` header is removed, so the upstream sees who, never
//! the token. Otherwise: no header 401 "Missing authorization header", not `scheme token` 403 "Invalid
//! authorization header", another scheme 403 "Invalid token scheme", an unknown token 403 "Invalid token".

mod ct;
mod guard;
mod tokens;

use guard::Guard;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokens::TokenSet;
use weir_sdk::exclude::{Exclusions, is_token_byte};
use weir_sdk::{Action, ConfigError, Hooks, Plugin, Request, Result, context};

#[derive(Deserialize)]
struct TokenAuth {
    /// Name (the identity) → token.
    tokens: Option<BTreeMap<String, String>>,
    /// A file inside a granted directory, one `name:token` per line.
    tokens_file: Option<String>,
    /// The configured values are hex SHA-256 digests of the tokens, so the config holds no secret.
    #[serde(default)]
    hashed: bool,
    #[serde(default = "default_scheme")]
    scheme: String,
    #[serde(default)]
    exclude_paths: Vec<String>,
    #[serde(default)]
    exclude_methods: Vec<String>,
    #[serde(default = "default_context_key")]
    context_key: String,
    /// Built by `init`.
    #[serde(skip)]
    ready: Option<Ready>,
}

struct Ready {
    guard: Guard,
    exclusions: Exclusions,
}

fn default_scheme() -> String {
    "Token".into()
}

fn default_context_key() -> String {
    "auth.identity".into()
}

impl TokenAuth {
    fn load_tokens(&self) -> core::result::Result<TokenSet, ConfigError> {
        match (&self.tokens, &self.tokens_file) {
            (Some(table), None) => TokenSet::from_table(table, self.hashed),
            (None, Some(path)) => {
                let text = weir_sdk::read_config_file("tokens_file", path)?;
                TokenSet::from_file(path, &text, self.hashed)
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                "tokens_file",
                "set only one of `tokens` and `tokens_file`",
            )),
            // Without tokens the plugin could only refuse every request: refuse the config instead.
            (None, None) => Err(ConfigError::new(
                "tokens",
                "set `tokens` (a table name = token) or `tokens_file`",
            )),
        }
    }

    fn check_names(&self) -> core::result::Result<(), ConfigError> {
        // The scheme is an RFC 9110 token: one with a space could never match `scheme token`, and it is
        // sent back in `WWW-Authenticate`.
        if self.scheme.is_empty() || !self.scheme.bytes().all(is_token_byte) {
            return Err(ConfigError::new(
                "scheme",
                format!("`{}` is not a valid authentication scheme", self.scheme),
            ));
        }
        if self.context_key.is_empty() {
            return Err(ConfigError::new("context_key", "must not be empty"));
        }
        Ok(())
    }
}

impl Plugin for TokenAuth {
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.check_names()?;
        let guard = Guard {
            scheme: self.scheme.clone(),
            tokens: self.load_tokens()?,
        };
        let exclusions = Exclusions::build(&self.exclude_paths, &self.exclude_methods)?;
        self.ready = Some(Ready { guard, exclusions });
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let ready = self.ready.as_ref().expect("init builds the guard");
        if ready.exclusions.excludes(req) {
            return Ok(Action::Continue);
        }
        match ready
            .guard
            .authenticate(req.header("authorization").as_deref())
        {
            Ok(identity) => {
                context::set(&self.context_key, identity)?;
                // The upstream is told who, by the identity; the token is a secret between client and proxy.
                req.remove_header("authorization")?;
                Ok(Action::Continue)
            }
            Err(rejection) => Ok(rejection.response(&self.scheme)),
        }
    }
}

weir_sdk::export!(TokenAuth);
