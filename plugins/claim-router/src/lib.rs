//! Weir's built-in `claim-router` plugin: the upstream chosen from a value of the request, as nginx's `map`
//! chose a backend from a variable.
//!
//! ```toml
//! config = { from = "ctx.jwt.user_id", modulo = { divisor = 2, upstreams = ["api-a", "api-b"] } }
//! config = { from = "header.x-tenant", map = { "gold" = "api-gold" }, default = "api-std" }
//! ```
//!
//! The value is read from the context (`ctx.KEY`, where jwt-auth puts claims) or a request header
//! (`header.NAME`). An exact entry of `map` wins; then, with `modulo`, an integer value picks
//! `upstreams[value mod divisor]`; anything else (no value, a value `map` lacks and `modulo` cannot read) goes
//! to `default`, or, without one, to the route's own upstream. It is a plugin, not a route option, because
//! routes are matched before any plugin runs and a claim exists only once jwt-auth has verified its token.

mod choice;

use choice::{Choice, Modulo, Source};
use serde::Deserialize;
use std::collections::BTreeMap;
use weir_sdk::{Action, ConfigError, Plugin, Request, Result, context};

#[derive(Deserialize)]
struct ClaimRouter {
    /// `ctx.KEY` or `header.NAME`.
    from: String,
    /// Exact value → upstream name.
    #[serde(default)]
    map: BTreeMap<String, String>,
    modulo: Option<Modulo>,
    /// Where a value nothing else places goes; without it, the route's own upstream.
    default: Option<String>,
    /// Built by `init`.
    #[serde(skip)]
    ready: Option<(Source, Choice)>,
}

impl Plugin for ClaimRouter {
    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        let source = Source::parse(&self.from).map_err(|e| ConfigError::new("from", e))?;
        let choice = Choice::new(
            std::mem::take(&mut self.map),
            self.modulo.take(),
            self.default.take(),
        )?;
        self.ready = Some((source, choice));
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let Some((source, choice)) = &self.ready else {
            return Err("claim-router: a request before init".into());
        };
        let value = match source {
            Source::Context(key) => context::get(key),
            // A value that is not text matches no entry: it goes where a missing one goes.
            Source::Header(name) => req.header_str(name),
        };
        if let Some(upstream) = choice.pick(value.as_deref()) {
            req.set_upstream(upstream)?;
        }
        Ok(Action::Continue)
    }
}

weir_sdk::export!(ClaimRouter);
