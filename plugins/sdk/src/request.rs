//! The request of the current exchange.

use crate::Result;
use crate::bindings::weir::plugin::request as host;

/// The request the host is proxying now. It is a handle, not a copy: every read asks the host, so it always
/// sees the changes of earlier plugins, and every change is visible at once to later ones.
///
/// The setters take `&mut self`: `on_request` gets `&mut Request`, `on_response` only `&Request`, because
/// by then the request has gone upstream and the host would refuse the change.
pub struct Request {
    _handle: (),
}

impl Request {
    /// Only the SDK hands out the handle, and only inside a hook.
    pub(crate) const fn current() -> Self {
        Self { _handle: () }
    }

    pub fn method(&self) -> String {
        host::method()
    }

    /// The path, percent-encoded as received (or as an earlier plugin set it), without the query.
    pub fn path(&self) -> String {
        host::path()
    }

    /// The query without the leading `?`, if there is one.
    pub fn query(&self) -> Option<String> {
        host::query()
    }

    /// The path and query as the client sent them, before any plugin changed them.
    pub fn original_uri(&self) -> String {
        host::original_uri()
    }

    /// The client's IP address as text (`127.0.0.1`, `::1`).
    pub fn client_addr(&self) -> String {
        host::client_addr()
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

    /// The name of the upstream the request will go to.
    pub fn upstream(&self) -> String {
        host::upstream()
    }

    /// Replaces the path: an absolute path (`/…`) without spaces, control bytes, `?` or `#`.
    pub fn set_path(&mut self, path: &str) -> Result<()> {
        Ok(host::set_path(path)?)
    }

    /// Replaces the query (without the leading `?`); `None` removes it.
    pub fn set_query(&mut self, query: Option<&str>) -> Result<()> {
        Ok(host::set_query(query)?)
    }

    /// Replaces every value of a header. The host refuses invalid names and values (CR, LF, NUL) and
    /// hop-by-hop headers.
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

    /// Sends the request to another upstream of the config, by name; an unknown name is an error.
    pub fn set_upstream(&mut self, name: &str) -> Result<()> {
        Ok(host::set_upstream(name)?)
    }

    /// Leaves this request's body alone: this plugin's request body hook is not called for it (say, a
    /// compressor that decided not to compress). Bodies no plugin transforms stream straight through.
    pub fn skip_body(&mut self) {
        host::skip_body();
    }
}
