//! The client behind the proxies in front: a CDN or a cloud's HTTP load balancer connects from its own
//! address and names the client in `X-Forwarded-For`, each proxy appending the address it was connected
//! from. Only the proxies `[server.real_ip] from` names are believed, and only about the hop before them,
//! so the client is the last address in the list that is not one of them (see [`RealIp::client`] for a
//! list of proxies alone, and one that breaks off): whatever a client writes left of that is its own claim.
//!
//! This is nginx's `real_ip_recursive on` (`ngx_http_get_forwarded_addr`), Envoy's trusted CIDRs and
//! Traefik's `forwardedHeaders.trustedIPs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName};

use crate::config::real_ip::RealIp as Config;
use crate::peers::PeerSet;

pub struct RealIp {
    proxies: PeerSet,
    header: HeaderName,
}

impl RealIp {
    pub fn new(config: &Config) -> RealIp {
        RealIp {
            proxies: PeerSet::new(&config.from),
            header: config.header.0.clone(),
        }
    }

    /// Whether `peer` is one of the proxies in front.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.proxies.contains(peer)
    }

    /// The client of a request that `peer` sent with `headers`.
    ///
    /// The lines of the header are one list, read from its end: while the address reached is a trusted
    /// proxy's, the element before it is the address that proxy was connected from. An element that is not
    /// an address ends the walk at the last one that was, since a proxy writes addresses: what is left of
    /// it nobody here vouches for. Empty elements are skipped.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        for line in headers.get_all(&self.header).iter().rev() {
            for element in line.as_bytes().rsplit(|&b| b == b',') {
                if !self.proxies.contains(client) {
                    return client;
                }
                // RFC 9110 §5.6.1's OWS around list elements is spaces and tabs; nginx takes a space as a
                // separator and a tab as part of the element.
                let element = element.trim_ascii();
                if element.is_empty() {
                    continue;
                }
                match address(element) {
                    Some(address) => client = address,
                    None => return client,
                }
            }
        }
        client
    }
}

/// An element as proxies write them: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::7`, `[2001:db8::7]` or
/// `[2001:db8::7]:4711`, with a port from 1 to 65535 as nginx takes them. An IPv4 client written as IPv6
/// (`::ffff:192.0.2.7`) is IPv4, as the config's entries are.
fn address(element: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(element).ok()?;
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        let (v6, after) = bracketed.split_once(']')?;
        if !after.is_empty() {
            port(after.strip_prefix(':')?)?;
        }
        return Some(IpAddr::V6(v6.parse::<Ipv6Addr>().ok()?).to_canonical());
    }
    let (v4, after) = text.split_once(':')?;
    port(after)?;
    Some(IpAddr::V4(v4.parse::<Ipv4Addr>().ok()?))
}

fn port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&port| port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderNameText;
    use crate::config::peers::Peers;

    fn real_ip(from: &[&str]) -> RealIp {
        RealIp::new(&Config {
            from: from.iter().map(|p| p.parse::<Peers>().unwrap()).collect(),
            header: HeaderNameText(HeaderName::from_static("x-forwarded-for")),
        })
    }

    fn client(real_ip: &RealIp, peer: &str, lines: &[&[u8]]) -> String {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(line).unwrap(),
            );
        }
        real_ip.client(peer.parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn the_client_is_the_last_address_no_trusted_proxy_is_at() {
        let r = real_ip(&["10.0.0.0/8", "2001:db8::/32"]);
        let cases: &[(&str, &[&[u8]], &str)] = &[
            ("10.0.0.1", &[], "10.0.0.1"),
            ("192.0.2.1", &[b"198.51.100.7"], "192.0.2.1"),
            ("::ffff:192.0.2.1", &[b"198.51.100.7"], "192.0.2.1"),
            ("::ffff:10.0.0.1", &[b"198.51.100.7"], "198.51.100.7"),
            ("10.0.0.1", &[b"198.51.100.7"], "198.51.100.7"),
            (
                "10.0.0.1",
                &[b"1.1.1.1, 198.51.100.7, 10.2.3.4"],
                "198.51.100.7",
            ),
            ("10.0.0.1", &[b"10.9.9.9, 10.2.3.4"], "10.9.9.9"),
            (
                "10.0.0.1",
                &[b"1.1.1.1, 198.51.100.7", b"10.2.3.4"],
                "198.51.100.7",
            ),
            (
                "10.0.0.1",
                &[b"198.51.100.7", b"", b" , ,", b"10.2.3.4"],
                "198.51.100.7",
            ),
            ("10.0.0.1", &[b"198.51.100.7,\t10.2.3.4\t"], "198.51.100.7"),
            ("10.0.0.1", &[b"198.51.100.7:4711"], "198.51.100.7"),
            ("10.0.0.1", &[b"2001:db9::7"], "2001:db9::7"),
            ("10.0.0.1", &[b"[2001:db9::7]"], "2001:db9::7"),
            (
                "10.0.0.1",
                &[b"198.51.100.7, [2001:db8::7]:443"],
                "198.51.100.7",
            ),
            ("10.0.0.1", &[b"::ffff:198.51.100.7"], "198.51.100.7"),
            ("10.0.0.1", &[b"198.51.100.7, unknown"], "10.0.0.1"),
            ("10.0.0.1", &[b"unknown, 10.2.3.4"], "10.2.3.4"),
            ("10.0.0.1", &[b"198.51.100.7, 10.2.3.4:0"], "10.0.0.1"),
            ("10.0.0.1", &[b"198.51.100.7:65536"], "10.0.0.1"),
            ("10.0.0.1", &[b"198.51.100.7:+80"], "10.0.0.1"),
            ("10.0.0.1", &[b"198.51.100.7:"], "10.0.0.1"),
            ("10.0.0.1", &[b":80"], "10.0.0.1"),
            ("10.0.0.1", &[b"[192.0.2.7]"], "10.0.0.1"),
            ("10.0.0.1", &[b"[2001:db9::7]x"], "10.0.0.1"),
            ("10.0.0.1", &[b"[2001:db9::7"], "10.0.0.1"),
            ("10.0.0.1", &[b"fe80::1%eth0"], "10.0.0.1"),
            ("10.0.0.1", &[b"010.0.0.1"], "10.0.0.1"),
            ("10.0.0.1", &[b"198.51.100.7, \xff"], "10.0.0.1"),
            ("10.0.0.1", &[b"\"198.51.100.7\""], "10.0.0.1"),
        ];
        for (peer, lines, expected) in cases {
            let lines_text: Vec<_> = lines.iter().map(|l| String::from_utf8_lossy(l)).collect();
            assert_eq!(
                client(&r, peer, lines),
                *expected,
                "from {peer} with {lines_text:?}"
            );
        }
    }

    #[test]
    fn another_header_is_read_alike() {
        let mut r = real_ip(&["10.0.0.0/8"]);
        r.header = HeaderName::from_static("cf-connecting-ip");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", http::HeaderValue::from_static("1.1.1.1"));
        headers.insert(
            "cf-connecting-ip",
            http::HeaderValue::from_static("198.51.100.7"),
        );
        assert_eq!(
            r.client("10.0.0.1".parse().unwrap(), &headers).to_string(),
            "198.51.100.7"
        );
    }
}
