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

    pub fn status(&self) -> u16 {
        host::status()
    }

    /// Sets a status from 200 to 599.
    pub fn set_status(&mut self, status: u16) -> Result<()> {
        Ok(host::set_status(status)?)
    }

    /// The first value of a header; names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        host::header(name)
    }

    /// The first value of a header as text; `None` when it is absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<String> {
        String::from_utf8(self.header(name)?).ok()
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        host::header_all(name)
    }

    /// Every header as `(name, value)`, in order.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        host::headers()
    }

    /// Replaces every value of a header; the host refuses invalid names and values and hop-by-hop headers.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<()> {
        Ok(host::set_header(name, value.as_ref())?)
    }

    /// Adds a value after the header's existing ones.
    pub fn append_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<()> {
        Ok(host::append_header(name, value.as_ref())?)
    }

    pub fn remove_header(&mut self, name: &str) -> Result<()> {
        Ok(host::remove_header(name)?)
    }

    /// Leaves this response's body alone: this plugin's response body hook is not called for it (say, a
    /// compressor that decided not to compress). Bodies no plugin transforms stream straight through.
    pub fn skip_body(&mut self) {
        host::skip_body();
    }
}
