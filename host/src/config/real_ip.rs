//! `[server.real_ip]`: the proxies in front of Weir (a CDN, a cloud's HTTP load balancer, an ingress) whose
//! `X-Forwarded-For` is believed about the client.

use serde::Deserialize;

use super::Findings;
use super::HeaderNameText;
use super::Step::Key;
use super::peers::Peers;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealIp {
    /// The proxies whose word on the client is taken.
    pub from: Vec<Peers>,
    /// The header they write it in: a comma-separated list of addresses, the nearest hop last.
    #[serde(default = "x_forwarded_for")]
    pub header: HeaderNameText,
}

fn x_forwarded_for() -> HeaderNameText {
    HeaderNameText(http::HeaderName::from_static("x-forwarded-for"))
}

impl RealIp {
    pub(super) fn validate(&self, found: &mut Findings) {
        let field = |name| [Key("server"), Key("real_ip"), Key(name)];
        if self.from.is_empty() {
            found.refuse(
                &field("from"),
                "names no proxy: list the addresses of the proxies in front, or remove [server.real_ip]",
            );
        }
        // Its elements are `for=…;proto=…` pairs, not addresses: read as a list, no client would be found.
        if self.header.0 == http::header::FORWARDED {
            found.refuse(
                &field("header"),
                "Forwarded (RFC 7239) is not a list of addresses: name the header your proxies write \
                 addresses in, such as X-Forwarded-For",
            );
        }
    }
}
