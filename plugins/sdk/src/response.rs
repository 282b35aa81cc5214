//! The response on its way back to the client.

use crate::bindings::weir::plugin::response as host;
use crate::body::{self, Phase};
use crate::{Result, Transform};

/// The upstream's response, or a plugin's local answer, as `on_response` sees it. Like
/// [`Request`](crate::Request) it is a handle: reads and changes go to the host.
pub struct Response {
    _handle: (),
}

impl Response {
    /// Only the SDK hands out the handle, and only inside `on_response`.
    pub(crate) const fn current() -> Self {
        Self { _handle: () }
    }

    crate::headers::header_methods!(host);

    pub fn status(&self) -> u16 {
        host::status()
    }

    /// Sets a status from 200 to 599.
    pub fn set_status(&mut self, status: u16) -> Result<()> {
        Ok(host::set_status(status)?)
    }

    /// Runs `transform` on this response's body, chunk by chunk, for a plugin that declared
    /// [`Hooks::RESPONSE_BODY`](crate::Hooks::RESPONSE_BODY). A response whose `on_response` sets none has
    /// its body left alone (say, a compressor that decided not to compress): when no plugin transforms it,
    /// it streams straight through with its `content-length`.
    pub fn transform_body(&mut self, transform: impl Transform + 'static) {
        body::set(Phase::Response, Box::new(transform));
    }
}
