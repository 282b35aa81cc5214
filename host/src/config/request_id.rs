//! `[server.request_id]`: an ID for each request, in the header it names.

use http::header;
use serde::Deserialize;

use super::Findings;
use super::HeaderNameText;
use super::Step::Key;
use crate::exchange;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestId {
    /// The header the upstream and the client get the ID in.
    #[serde(default = "x_request_id")]
    pub header: HeaderNameText,
    /// Keep the ID the proxies `[server.real_ip]` names give a request, when it is well-formed: only for
    /// proxies that set the header themselves, since one that passes a client's on lets the client choose.
    #[serde(default)]
    pub keep_from_proxies: bool,
}

fn x_request_id() -> HeaderNameText {
    HeaderNameText(http::HeaderName::from_static("x-request-id"))
}

impl RequestId {
    pub(super) fn validate(&self, found: &mut Findings) {
        let name = &self.header.0;
        // Headers Weir writes or removes on its own account would overwrite the ID, or it them.
        let owned = [
            header::HOST,
            header::FORWARDED,
            header::PROXY_AUTHORIZATION,
            header::PROXY_AUTHENTICATE,
        ];
        if exchange::settable_name(name.as_str()).is_err()
            || owned.contains(name)
            || name.as_str().starts_with("x-forwarded-")
        {
            found.refuse(
                &[Key("server"), Key("request_id"), Key("header")],
                format!(
                    "{name} is a header Weir writes or removes itself: name one of its own, such as \
                     X-Request-Id"
                ),
            );
        }
    }
}
