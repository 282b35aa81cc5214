//! Per-request values shared along the chain: what one plugin learns (a JWT claim, a user id) later plugins
//! and the response phase can read. Keys are free text; dotted names (`jwt.user_id`) are the convention.

use crate::bindings::weir::plugin::context as host;

pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// Sets a value; refused (with the host's reason) when the request's context would pass the server's
/// bounds on keys or bytes.
pub fn set(key: &str, value: &str) -> crate::Result<()> {
    Ok(host::set(key, value)?)
}

pub fn remove(key: &str) {
    host::remove(key)
}
