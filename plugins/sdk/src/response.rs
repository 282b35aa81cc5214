//! The response on its way back to the client.

use crate::Result;
use crate::bindings::weir::plugin::response as host;

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

    /// Leaves this response's body alone: this plugin's response body hook is not called for it (say, a
    /// compressor that decided not to compress). Bodies no plugin transforms stream straight through.
    pub fn skip_body(&mut self) {
        host::skip_body();
    }
}
