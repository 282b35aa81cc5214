//! What `on_request` decides.

use crate::bindings::weir::plugin::types;

/// The outcome of [`Plugin::on_request`](crate::Plugin::on_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next plugin, then the upstream.
    Continue,
    /// Stop the chain and send this answer; no upstream is called, and the plugins after this one do not
    /// run. The response phase still runs for this plugin and the ones before it.
    Respond(LocalResponse),
}

/// An answer a plugin gives itself instead of calling the upstream (a 401, a redirect, a 400).
///
/// ```
/// # use weir_sdk::{Action, LocalResponse};
/// let action: Action = LocalResponse::new(401)
///     .header("www-authenticate", "Bearer")
///     .body("missing token\n")
///     .into();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; calling it again with the same name adds another value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

impl From<LocalResponse> for Action {
    fn from(response: LocalResponse) -> Self {
        Action::Respond(response)
    }
}

impl From<Action> for types::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Continue => types::Action::Continue,
            Action::Respond(r) => types::Action::Respond(types::LocalResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        }
    }
}
