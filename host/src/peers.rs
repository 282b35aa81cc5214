//! The peers Weir takes a client's address from: the load balancers that send a PROXY protocol header,
//! the proxies whose `X-Forwarded-For` is believed.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::peers::Peers;

pub struct PeerSet(Box<[IpNet]>);

impl PeerSet {
    pub fn new(from: &[Peers]) -> PeerSet {
        PeerSet(from.iter().map(|peers| peers.0).collect())
    }

    /// Whether `address` is one of them. A dual-stack listener sees an IPv4 peer as `::ffff:a.b.c.d`,
    /// which the config writes as `a.b.c.d`.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }
}
