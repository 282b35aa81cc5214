//! `[server.proxy_protocol]`: the load balancers whose connections begin with a PROXY protocol header
//! saying whose connection it is.

use serde::Deserialize;

use super::Findings;
use super::Step::Key;
use super::peers::Peers;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    /// The peers that must open each connection with the header, and whose word on the client is taken.
    pub from: Vec<Peers>,
}

impl ProxyProtocol {
    pub(super) fn validate(&self, found: &mut Findings) {
        if self.from.is_empty() {
            found.refuse(
                &[Key("server"), Key("proxy_protocol"), Key("from")],
                "names no peer: list the load balancers' addresses, or remove [server.proxy_protocol]",
            );
        }
    }
}
