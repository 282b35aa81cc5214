//! Weir's built-in `headers` plugin: removes, sets and appends request and response headers.
//!
//! ```toml
//! config.request = { set = { "x-api-key" = "secret" }, append = { "x-a" = "1" }, remove = ["cookie"] }
//! config.response = { set = { "x-upstream" = "{upstream}", "x-rewritten-uri" = "{path}" }, remove = ["server"] }
//! ```
//!
//! Each phase removes, then sets (replacing every value the header had), then appends. Values are
//! [templates](weir_sdk::template) (write `{{`/`}}` for literal braces); a value whose placeholder has no
//! value on a request (an absent header, an unset context key) is not set on that request. The response
//! phase reads the request as it went upstream: `{path}` is the rewritten path, `{original_uri}` the
//! client's. Names and values are checked when the config loads.

mod phase;

use phase::{Change, Phase, PhaseConfig};
use serde::Deserialize;
use weir_sdk::{Action, ConfigError, Plugin, Request, Response, Result};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Headers {
    request: PhaseConfig,
    response: PhaseConfig,
    /// Built by `init` from `request`.
    #[serde(skip)]
    request_phase: Phase,
    /// Built by `init` from `response`.
    #[serde(skip)]
    response_phase: Phase,
}

impl Plugin for Headers {
    fn init(&mut self) -> core::result::Result<(), ConfigError> {
        self.request_phase = Phase::build("request", &self.request)?;
        self.response_phase = Phase::build("response", &self.response)?;
        Ok(())
    }

    fn on_request(&self, req: &mut Request) -> Result<Action> {
        for change in self.request_phase.changes(req) {
            match change {
                Change::Remove(name) => req.remove_header(name)?,
                Change::Set(name, value) => req.set_header(name, value)?,
                Change::Append(name, value) => req.append_header(name, value)?,
            }
        }
        Ok(Action::Continue)
    }

    fn on_response(&self, req: &Request, resp: &mut Response) -> Result<()> {
        for change in self.response_phase.changes(req) {
            match change {
                Change::Remove(name) => resp.remove_header(name)?,
                Change::Set(name, value) => resp.set_header(name, value)?,
                Change::Append(name, value) => resp.append_header(name, value)?,
            }
        }
        Ok(())
    }
}

weir_sdk::export!(Headers);
