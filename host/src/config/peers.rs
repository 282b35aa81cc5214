//! The peers a setting trusts to speak for a client: addresses and ranges, as `[server.proxy_protocol]`
//! and `[server.real_ip]` list them in `from`.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

use super::units;

/// An address (`192.0.2.10`, `2001:db8::1`) or a range of them (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peers(pub IpNet);

impl<'de> Deserialize<'de> for Peers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        units::parsed_string(
            deserializer,
            "an IP address or a range such as \"10.0.0.0/8\"",
        )
    }
}

impl FromStr for Peers {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        // A dual-stack listener's IPv4 peer is compared as IPv4, so an IPv4-mapped entry is written as one.
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Peers(IpNet::from(address.to_canonical())));
        }
        let net: IpNet = text.parse().map_err(|_| {
            format!("\"{text}\" is not an IP address or a range such as \"10.0.0.0/8\"")
        })?;
        // nginx takes `10.0.0.1/8` for `10.0.0.0/8` with a warning; a range is written here as what it is.
        if net.trunc() != net {
            return Err(format!(
                "\"{text}\" has address bits set past its prefix length: write \"{}\"",
                net.trunc()
            ));
        }
        if let IpNet::V6(v6) = net
            && let Some(v4) = v6.network().to_ipv4_mapped()
            && let Some(prefix) = v6.prefix_len().checked_sub(96)
            && let Ok(mapped) = Ipv4Net::new(v4, prefix)
        {
            return Ok(Peers(IpNet::V4(mapped)));
        }
        Ok(Peers(net))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_addresses_or_ranges_written_as_what_they_are() {
        let parsed = |text: &str| text.parse::<Peers>().map(|p| p.0.to_string());
        assert_eq!(parsed("192.0.2.10").unwrap(), "192.0.2.10/32");
        assert_eq!(parsed("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(parsed("2001:db8::/32").unwrap(), "2001:db8::/32");
        assert_eq!(parsed("::1").unwrap(), "::1/128");
        assert_eq!(parsed("::ffff:10.0.0.1").unwrap(), "10.0.0.1/32");
        assert_eq!(parsed("::ffff:10.0.0.0/104").unwrap(), "10.0.0.0/8");
        assert!(
            parsed("10.0.0.1/8")
                .unwrap_err()
                .contains("write \"10.0.0.0/8\"")
        );
        for bad in ["", "10.0.0.0/33", "lb.internal", "10.0.0.0/", "010.0.0.1"] {
            assert!(parsed(bad).is_err(), "{bad:?} was taken");
        }
    }
}
