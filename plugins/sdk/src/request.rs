//! The request of the current exchange.

use crate::bindings::weir::plugin::request as host;
use crate::body::{self, Phase};
use crate::{Error, Result, Transform};

pub use host::BodyError;

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

    crate::headers::header_methods!(host);

    pub fn method(&self) -> String {
        host::method()
    }

    /// The path in the host's normal form (dot segments resolved, escapes of unreserved characters decoded),
    /// as the route matched it or as an earlier plugin set it, without the query.
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

    /// The name of the upstream the request will go to.
    pub fn upstream(&self) -> String {
        host::upstream()
    }

    /// How the client reached the proxy: `http` or `https` (say, for a cookie's `Secure`).
    pub fn scheme(&self) -> String {
        host::scheme()
    }

    /// The request body, read whole, for a plugin that answers the request itself (a login endpoint): at
    /// most `limit` bytes, and the route's `max_request_body`. The body then goes upstream as it was read.
    ///
    /// The error says whose fault it is, for the answer to give: [`BodyError::TooLarge`] (413),
    /// [`BodyError::TimedOut`] (the client went silent: 408), [`BodyError::Broken`] (the client broke off:
    /// 400). `?` turns it into an [`Error`], a plugin fault.
    pub fn read_body(&mut self, limit: u32) -> Result<Vec<u8>, BodyError> {
        host::read_body(limit)
    }

    /// Replaces the path: an absolute path (`/…`) without spaces, control bytes, `?` or `#`, which the host
    /// normalises; one that climbs above the root is refused.
    pub fn set_path(&mut self, path: &str) -> Result<()> {
        Ok(host::set_path(path)?)
    }

    /// Replaces the query (without the leading `?`); `None` removes it.
    pub fn set_query(&mut self, query: Option<&str>) -> Result<()> {
        Ok(host::set_query(query)?)
    }

    /// Sends the request to another upstream of the config, by name; an unknown name is an error.
    pub fn set_upstream(&mut self, name: &str) -> Result<()> {
        Ok(host::set_upstream(name)?)
    }

    /// Runs `transform` on this request's body, chunk by chunk, for a plugin that declared
    /// [`Hooks::REQUEST_BODY`](crate::Hooks::REQUEST_BODY). A request whose `on_request` sets none has its
    /// body left alone, streaming straight through when no plugin transforms it.
    pub fn transform_body(&mut self, transform: impl Transform + 'static) {
        body::set(Phase::Request, Box::new(transform));
    }
}

impl From<BodyError> for Error {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge(limit) => format!("the request body is over {limit} bytes").into(),
            BodyError::TimedOut => {
                "the client stopped sending its request body (client_body_timeout)".into()
            }
            BodyError::Broken(reason) => reason.into(),
        }
    }
}
