//! Weir's built-in `jwt-auth` plugin: JSON Web Tokens checked as Envoy's `jwt_authn` checks them.
//!
//! ```toml
//! config = { issuer = "https://auth.example.com", audiences = ["api"],
//!            keys = [{ kid = "2026-11", alg = "RS256", pem_file = "/keys/auth.pem" }] }
//! config = { remote_jwks = { url = "http://auth.internal/.well-known/jwks.json" } }
//! ```
//!
//! The token (by default `Authorization: Bearer …`) must be signed by a configured key (the key, never
//! the token, decides the algorithm), and its time, issuer, audience and subject claims must pass. The
//! claims then go into the context as `jwt.<claim>` and, as configured, into request headers; the token
//! is removed before the upstream unless `forward = true`. Anything else is a 401 naming the reason, or,
//! with `on_failure = "record"`, goes on with the verdict in the context (`jwt.verdict` = `missing` or
//! `bad`, `jwt.reason`) for a later plugin to decide; a valid token always records `jwt.verdict = valid`.
//! Signatures are checked by the host (`weir:plugin/crypto`), natively.

mod cache;
mod claims;
mod claims_out;
mod failure;
mod jws;
mod keys;
mod remote;
mod source;
mod verdict;

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use cache::{Known, Token, Verified};
use claims::Policy;
use claims_out::ClaimToHeader;
use failure::Failure;
use jws::Jws;
use keys::Jwks;
use remote::{RemoteConfig, RemoteJwks};
use serde::Deserialize;
use serde_json::Value;
use source::{Found, HeaderSource, Sources};
use verdict::{Keys, OnFailure, Outcome, Verdict};
use weir_sdk::exclude::{Exclusions, is_token_byte};
use weir_sdk::jws::{KeyConfig, KeyEntry};
use weir_sdk::{Action, ConfigError, Hooks, Plugin, Request, Result, log};

#[derive(Deserialize)]
struct JwtAuth {
    #[serde(default)]
    keys: Vec<KeyConfig>,
    /// A JWKS inline: a table `{ keys = [...] }` or its JSON text.
    jwks: Option<Value>,
    /// A JWKS file inside a granted directory.
    jwks_file: Option<String>,
    remote_jwks: Option<RemoteConfig>,
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    subject: Option<String>,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default = "yes")]
    require_exp: bool,
    max_lifetime_seconds: Option<u64>,
    #[serde(default)]
    from_headers: Vec<HeaderSource>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    /// Keep the token in the request to the upstream.
    #[serde(default)]
    forward: bool,
    #[serde(default = "default_context_prefix")]
    context_prefix: String,
    #[serde(default)]
    claim_to_headers: Vec<ClaimToHeader>,
    #[serde(default)]
    exclude_paths: Vec<String>,
    #[serde(default)]
    exclude_methods: Vec<String>,
    /// A request without a token passes (unauthenticated); one with a bad token never does.
    #[serde(default)]
    allow_missing: bool,
    /// `record` lets a request with a missing or bad token go on, its verdict in the context, for a later
    /// plugin to decide; the default answers 401.
    #[serde(default)]
    on_failure: OnFailure,
    /// Browsers send CORS preflights without credentials: let them through to the upstream.
    #[serde(default = "yes")]
    bypass_cors_preflight: bool,
    /// Answer refusals without the reason (it is still logged, at debug level).
    #[serde(default)]
    hide_details: bool,
    #[serde(default = "default_max_token_size")]
    max_token_size: usize,
    /// Verified tokens remembered per instance; 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    cache_size: usize,
    /// Mutable behind a `RefCell` because the remote key set and the verified-token cache are kept across
    /// the requests this instance serves, on purpose; nothing of one request is kept in it.
    #[serde(skip)]
    ready: Option<RefCell<Ready>>,
}

fn yes() -> bool {
    true
}

fn default_clock_skew() -> u64 {
    60
}

fn default_context_prefix() -> String {
    "jwt".into()
}

fn default_max_token_size() -> usize {
    8192
}

fn default_cache_size() -> usize {
    64
}

/// What `init` builds from the config.
struct Ready {
    local: Vec<KeyEntry>,
    remote: Option<RemoteJwks>,
    policy: Policy,
    sources: Sources,
    exclusions: Exclusions,
    verified: Verified,
    verdict: Keys,
}

impl JwtAuth {
    fn local_keys(&self) -> core::result::Result<Vec<KeyEntry>, ConfigError> {
        let mut entries = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| k.load(&format!("keys.{i}")))
            .collect::<core::result::Result<Vec<_>, _>>()?;
        if let Some(jwks) = &self.jwks {
            let loaded = Jwks(jwks.clone())
                .load()
                .map_err(|e| ConfigError::new("jwks", e))?;
            entries.extend(loaded);
        }
        if let Some(path) = &self.jwks_file {
            let text = weir_sdk::read_config_file("jwks_file", path)?;
            let loaded = Jwks::parse(&text)
                .and_then(|jwks| jwks.load())
                .map_err(|e| ConfigError::new("jwks_file", format!("{path}: {e}")))?;
            entries.extend(loaded);
        }
        if entries.is_empty() && self.remote_jwks.is_none() {
            return Err(ConfigError::new(
                "keys",
                "give the keys tokens are signed with: `keys`, `jwks`, `jwks_file` or `remote_jwks`",
            ));
        }
        Ok(entries)
    }

    fn check_names(&self) -> core::result::Result<(), ConfigError> {
        let is_token = |s: &str| !s.is_empty() && s.bytes().all(is_token_byte);
        for (i, source) in self.from_headers.iter().enumerate() {
            if !is_token(&source.name) {
                return Err(ConfigError::new(
                    format!("from_headers.{i}.name"),
                    format!("`{}` is not a header name", source.name),
                ));
            }
        }
        for (i, mapping) in self.claim_to_headers.iter().enumerate() {
            if !is_token(&mapping.header) {
                return Err(ConfigError::new(
                    format!("claim_to_headers.{i}.header"),
                    format!("`{}` is not a header name", mapping.header),
                ));
            }
            if mapping.claim.is_empty() {
                return Err(ConfigError::new(
                    format!("claim_to_headers.{i}.claim"),
                    "must not be empty",
                ));
            }
        }
        if let Some(remote) = &self.remote_jwks
            && !remote.url.starts_with("http://")
        {
            return Err(ConfigError::new(
                "remote_jwks.url",
                format!("`{}` is not an http:// URL", remote.url),
            ));
        }
        if self.context_prefix.is_empty() {
            return Err(ConfigError::new("context_prefix", "must not be empty"));
        }
        if self.max_token_size == 0 {
            return Err(ConfigError::new("max_token_size", "must be more than 0"));
        }
        Ok(())
    }
}

impl Plugin for JwtAuth {
    const HOOKS: Hooks = Hooks::GUARD;

    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.check_names()?;
        let local = self.local_keys()?;
        let exclusions = Exclusions::build(&self.exclude_paths, &self.exclude_methods)?;
        let sources = Sources {
            headers: std::mem::take(&mut self.from_headers),
            params: std::mem::take(&mut self.from_params),
            cookies: std::mem::take(&mut self.from_cookies),
        }
        .or_default();
        let policy = Policy {
            issuer: self.issuer.take(),
            audiences: std::mem::take(&mut self.audiences),
            subject: self.subject.take(),
            clock_skew: self.clock_skew_seconds,
            require_exp: self.require_exp,
            max_lifetime: self.max_lifetime_seconds,
        };
        self.ready = Some(RefCell::new(Ready {
            local,
            remote: self.remote_jwks.as_ref().map(RemoteJwks::new),
            policy,
            sources,
            exclusions,
            verified: Verified::new(self.cache_size),
            verdict: Keys::new(&self.context_prefix),
        }));
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let mut ready = self
            .ready
            .as_ref()
            .expect("init builds the verifier")
            .borrow_mut();
        if ready.exclusions.excludes(req) || (self.bypass_cors_preflight && is_cors_preflight(req))
        {
            ready.verdict.forget();
            // Unauthenticated: no claim header may come from the client.
            claims_out::to_headers(req, &self.claim_to_headers, None)?;
            return Ok(Action::Continue);
        }
        let Some(found) = ready.sources.find(req) else {
            return self.fail(req, &ready, Failure::Missing, None);
        };
        match ready.verify(&found.token, self.max_token_size, &self.context_prefix) {
            Ok(known) => {
                claims_out::to_context(&known.context)?;
                ready.verdict.valid()?;
                claims_out::to_headers(req, &self.claim_to_headers, Some(&known.claims))?;
                if !self.forward {
                    found.strip(req)?;
                }
                Ok(Action::Continue)
            }
            Err(failure) => self.fail(req, &ready, failure, Some(&found)),
        }
    }
}

impl JwtAuth {
    /// Refuses, or records the verdict and goes on without claims, as `on_failure` and `allow_missing` say.
    fn fail(
        &self,
        req: &mut Request,
        ready: &Ready,
        failure: Failure,
        found: Option<&Found>,
    ) -> Result<Action> {
        let verdict = match verdict::outcome(&failure, self.on_failure, self.allow_missing) {
            Outcome::Refuse => return Ok(refuse(failure, self.hide_details)),
            Outcome::Record(verdict) => verdict,
        };
        // A bad token let through is still kept from the upstream, which might trust it, and from a
        // redirect's `Location` a later plugin builds from the query.
        if let Some(found) = found
            && !self.forward
        {
            found.strip(req)?;
        }
        if verdict == Verdict::Bad && log::enabled(log::Level::Debug) {
            log::debug(&format!(
                "recorded as bad ({}): {}",
                failure.reason(),
                failure.message()
            ));
        }
        let reason = (!self.hide_details).then(|| failure.reason());
        ready.verdict.failed(verdict, reason)?;
        claims_out::to_headers(req, &self.claim_to_headers, None)?;
        Ok(Action::Continue)
    }
}

impl Ready {
    /// The claims of a token that is well-formed, signed by one of the keys, and within the policy, with
    /// the context entries they make under `prefix`.
    fn verify(
        &mut self,
        token: &str,
        max_size: usize,
        prefix: &str,
    ) -> core::result::Result<Known, Failure> {
        if token.len() > max_size {
            return Err(Failure::TooLarge(max_size));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.forget_if_keys_changed();
        if let Some(known) = self.verified.get(token) {
            self.policy.check(&known.claims, now)?;
            return Ok(known);
        }
        let jws = Jws::parse(token)?;
        self.check_signature(&jws)?;
        let Ok(Value::Object(claims)) = serde_json::from_slice(&jws.payload) else {
            return Err(Failure::Malformed("Jwt payload is not a JSON object"));
        };
        self.policy.check(&claims, now)?;
        let context = claims_out::context_entries(prefix, &claims);
        let known = Known::new(Token { claims, context });
        // An unknown `kid` may have refreshed the keys on the way.
        self.forget_if_keys_changed();
        self.verified.insert(token, known.clone());
        Ok(known)
    }

    /// Refreshes a remote JWKS whose cache expired and forgets the verified tokens if the keys changed,
    /// so that a cached token is only trusted while its key is.
    fn forget_if_keys_changed(&mut self) {
        let generation = self.remote.as_mut().map_or(0, |remote| {
            remote.entries();
            remote.generation()
        });
        self.verified.track(generation);
    }

    fn check_signature(&mut self, jws: &Jws) -> core::result::Result<(), Failure> {
        let kid = jws.kid.as_deref();
        let mut result = self.try_keys(jws, kid);
        if result == Err(Failure::UnknownKid)
            && self
                .remote
                .as_mut()
                .is_some_and(|r| r.refetch_for_unknown_kid())
        {
            result = self.try_keys(jws, kid);
        }
        result
    }

    fn try_keys(&mut self, jws: &Jws, kid: Option<&str>) -> core::result::Result<(), Failure> {
        let remote = match &mut self.remote {
            Some(remote) => remote.entries(),
            None => &[],
        };
        if self.local.is_empty() && remote.is_empty() {
            return Err(Failure::KeysUnavailable);
        }
        let keys = keys::candidates(self.local.iter().chain(remote), kid, jws.algorithm)?;
        if keys
            .iter()
            .any(|key| key.verify(jws.signing_input, &jws.signature))
        {
            Ok(())
        } else {
            Err(Failure::BadSignature)
        }
    }
}

/// An `OPTIONS` request with `Origin` and `Access-Control-Request-Method` (the Fetch standard's
/// preflight).
fn is_cors_preflight(req: &Request) -> bool {
    req.method() == "OPTIONS"
        && req.header("origin").is_some()
        && req.header("access-control-request-method").is_some()
}

fn refuse(failure: Failure, hide_details: bool) -> Action {
    if log::enabled(log::Level::Debug) {
        log::debug(&format!(
            "refused ({}): {}",
            failure.reason(),
            failure.message()
        ));
    }
    failure.response(hide_details)
}

weir_sdk::export!(JwtAuth);
