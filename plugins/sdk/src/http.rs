//! Outbound HTTP from a plugin (a JWKS, a token endpoint), to the hosts its route entry grants with
//! `grants.http = ["auth.internal:8080"]`. [`send`] waits for the whole response (at most 1 MiB); the
//! error names the reason (not granted, unreachable, timed out, too large).

pub use crate::bindings::weir::plugin::http_client::{IncomingResponse, OutgoingRequest, send};

/// A GET of `url` with no headers, waiting at most `timeout_ms` (0 is the host's default, 5 s).
pub fn get(url: &str, timeout_ms: u32) -> Result<IncomingResponse, String> {
    send(&OutgoingRequest {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms,
    })
}
