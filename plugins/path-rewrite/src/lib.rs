//! Weir's built-in `path-rewrite` plugin: rewrites the request path before it goes upstream.
//!
//! The config sets exactly one of:
//!
//! ```toml
//! config = { strip_prefix = "/api" }                               # /api/x → /x, /api → /
//! config = { replace_prefix = { from = "/old", to = "/new" } }     # /old/x → /new/x
//! config = { regex = '^/users/(\d+)$', replacement = "/u/{1}" }    # /users/7 → /u/7
//! config = { template = "/shops/{ctx.jwt.user_id}{path}" }         # /orders → /shops/42/orders
//! ```
//!
//! Prefixes match whole segments (`/api` matches `/api/x`, not `/apix`). A `regex` replaces the whole path
//! when it matches; `replacement` and `template` use the SDK's [`template`](weir_sdk::template) placeholders,
//! `replacement` also the regex's groups. Paths a prefix or regex does not match pass unchanged; the query
//! is always kept.
//!
//! The host normalises the rewritten path as it normalised the client's (dot segments resolved, `%2e` counts
//! as a dot). One that climbs above the root, or is not a valid path, gets a local 400 instead of reaching
//! the upstream, as does a template whose placeholder has no value (a context key an earlier plugin did not
//! set, such as a claim the token lacks).
//! Values are inserted as they are, so a client-controlled `{header.…}` can move the path anywhere under
//! the root: keep such values out of paths that select what the client may see.

mod config_path;
mod rule;

use rule::Rule;
use serde::Deserialize;
use weir_sdk::{Action, ConfigError, LocalResponse, Plugin, Request, Result};

#[derive(Deserialize)]
struct PathRewrite {
    strip_prefix: Option<String>,
    replace_prefix: Option<ReplacePrefix>,
    regex: Option<String>,
    replacement: Option<String>,
    template: Option<String>,
    /// Built by `init` from the one option that is set.
    #[serde(skip)]
    rule: Option<Rule>,
}

#[derive(Deserialize)]
struct ReplacePrefix {
    from: String,
    to: String,
}

const OPTIONS: &str = "strip_prefix, replace_prefix, regex (with replacement) or template";

impl PathRewrite {
    fn build_rule(&self) -> core::result::Result<Rule, ConfigError> {
        let set: Vec<&str> = [
            ("strip_prefix", self.strip_prefix.is_some()),
            ("replace_prefix", self.replace_prefix.is_some()),
            ("regex", self.regex.is_some()),
            ("template", self.template.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        if let [first, second, ..] = set[..] {
            return Err(ConfigError::new(
                second,
                format!("set only one of {OPTIONS}; `{first}` is set too"),
            ));
        }
        if self.replacement.is_some() && self.regex.is_none() {
            return Err(ConfigError::new("replacement", "is only used with `regex`"));
        }
        match (
            &self.strip_prefix,
            &self.replace_prefix,
            &self.regex,
            &self.template,
        ) {
            (Some(prefix), ..) => Rule::prefix("strip_prefix", prefix, ""),
            (_, Some(r), ..) => Rule::prefix("replace_prefix", &r.from, &r.to),
            (.., Some(regex), _) => Rule::regex(regex, self.replacement.as_deref()),
            (.., Some(template)) => Rule::template(template),
            _ => Err(ConfigError::new("", format!("set one of {OPTIONS}"))),
        }
    }
}

impl Plugin for PathRewrite {
    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.rule = Some(self.build_rule()?);
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        let rule = self.rule.as_ref().expect("init builds the rule");
        let path = req.path();
        let rewritten = match rule.apply(&path, req) {
            Ok(Some(rewritten)) => rewritten,
            Ok(None) => return Ok(Action::Continue),
            Err(missing) => return Ok(bad_request(&missing.to_string())),
        };
        if rewritten != path
            && let Err(refusal) = req.set_path(&rewritten)
        {
            // The host's reason names the path and what is wrong with it.
            return Ok(bad_request(refusal.message()));
        }
        Ok(Action::Continue)
    }
}

fn bad_request(reason: &str) -> Action {
    LocalResponse::new(400)
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("path-rewrite: {reason}\n"))
        .into()
}

weir_sdk::export!(PathRewrite);
