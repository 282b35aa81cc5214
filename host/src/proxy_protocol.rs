//! HAProxy's PROXY protocol, versions 1 and 2: a load balancer that passes TCP through (AWS's NLB, HAProxy
//! in `mode tcp`, an nginx `stream` block) opens each connection with a header naming the client, since
//! the address Weir sees is the balancer's own. Only the peers `[server.proxy_protocol] from` names are
//! asked for it, and from them it is required: anyone else's header would be a claim nobody checked.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest header read: version 1's is at most 107 bytes (spec §2.1); version 2's addresses take at
/// most 216 (§2.2), and this leaves room for the TLVs balancers add (AWS's endpoint id, a TLS summary).
const MAX_HEADER: usize = 4096;

/// Connections closed for want of a good header, by every generation, for `/metrics`.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Why a connection that owed a header was closed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Closed before its first byte: a balancer's TCP health check, or a port scan, not a broken header.
    #[error("the connection closed before it sent anything")]
    Empty,
    #[error("no whole PROXY protocol header within header_read_timeout")]
    TimedOut,
    #[error("the connection closed before its PROXY protocol header ended")]
    Closed,
    #[error("a PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("not a PROXY protocol header: {0}")]
    Malformed(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header `peer` opens with, by `deadline`, taking nothing of the bytes after it, and returns the
/// client it names. A balancer's own connection (version 2's `LOCAL`, its health checks) and a client
/// that is not on IP (`UNKNOWN`, a UNIX socket) are the peer's.
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<SocketAddr, Refused> {
    let read = tokio::time::timeout_at(deadline, read_header(stream, peer))
        .await
        .unwrap_or(Err(Refused::TimedOut));
    if read.as_ref().is_err_and(|e| !matches!(e, Refused::Empty)) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    read
}

/// Connections from the peers the config names that were closed for want of a whole, well-formed header.
pub fn refused_total() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    // What has been taken off the socket, then what is waiting there, which is only looked at: the bytes
    // after the header are the client's, for TLS or HTTP to read.
    let mut seen = Vec::new();
    let mut window = [0; 512];
    loop {
        let taken = seen.len();
        let room = (MAX_HEADER - taken).min(window.len());
        let waiting = stream.peek(&mut window[..room]).await?;
        if waiting == 0 {
            return Err(if taken == 0 {
                Refused::Empty
            } else {
                Refused::Closed
            });
        }
        seen.extend_from_slice(&window[..waiting]);
        let parsed = HeaderResult::parse(&seen);
        if parsed.is_incomplete() {
            if seen.len() >= MAX_HEADER {
                return Err(Refused::TooLong);
            }
            stream.read_exact(&mut window[..waiting]).await?;
            continue;
        }
        let (length, client) = named(parsed, peer)?;
        // The bytes taken before were an incomplete header, so it ends past them.
        let Some(left) = length.checked_sub(taken) else {
            return Err(Refused::Malformed(
                "a header that ended before its end".into(),
            ));
        };
        let mut rest = vec![0; left];
        stream.read_exact(&mut rest).await?;
        return Ok(client);
    }
}

/// The header's length and the client it names.
fn named(parsed: HeaderResult<'_>, peer: SocketAddr) -> Result<(usize, SocketAddr), Refused> {
    let malformed = |e: &dyn std::fmt::Display| Refused::Malformed(e.to_string());
    match parsed {
        HeaderResult::V1(header) => {
            let header = header.map_err(|e| malformed(&e))?;
            let client = match header.addresses {
                v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Unknown => peer,
            };
            Ok((header.header.len(), canonical(client)))
        }
        HeaderResult::V2(header) => {
            let header = header.map_err(|e| malformed(&e))?;
            // §2.2: of the family and transport byte's values only these are assigned, and "any other value
            // must be rejected"; ppp also takes an address family with an unspecified transport.
            let assigned = [0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32];
            let pair = header.address_family() as u8 | header.protocol as u8;
            if !assigned.contains(&pair) {
                return Err(Refused::Malformed(format!(
                    "unassigned address family and transport 0x{pair:02x}"
                )));
            }
            let client = match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                _ => peer,
            };
            Ok((header.len(), canonical(client)))
        }
    }
}

/// An IPv4 client named as IPv6 (`::ffff:192.0.2.7`, as a balancer on an IPv6 frontend says it) is the
/// same client as `192.0.2.7`, in `X-Forwarded-For` and in the keys rate limits count by.
fn canonical(client: SocketAddr) -> SocketAddr {
    SocketAddr::new(client.ip().to_canonical(), client.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<(usize, SocketAddr), Refused> {
        let peer = SocketAddr::from(([10, 0, 0, 1], 4000));
        named(HeaderResult::parse(bytes), peer)
    }

    #[test]
    fn the_header_names_the_client_and_its_own_length() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 443\r\nGET / HTTP/1.1\r\n";
        let (length, client) = parse(v1).unwrap();
        assert_eq!(
            &v1[..length],
            b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 443\r\n"
        );
        assert_eq!(client, "192.0.2.7:51000".parse().unwrap());
        let (_, client) = parse(b"PROXY TCP6 ::ffff:192.0.2.7 ::1 51000 443\r\n").unwrap();
        assert_eq!(client, "192.0.2.7:51000".parse().unwrap());
        let (length, client) = parse(b"PROXY UNKNOWN\r\n\x16\x03\x01").unwrap();
        assert_eq!((length, client), (15, "10.0.0.1:4000".parse().unwrap()));
    }

    #[test]
    fn a_partial_header_asks_for_more_and_garbage_is_refused() {
        assert!(HeaderResult::parse(b"PROXY TCP4 192.0.2.7").is_incomplete());
        assert!(HeaderResult::parse(b"\r\n\r\n\0\r\nQUIT\n").is_incomplete());
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.2 70000 443\r\n",
        ] {
            assert!(matches!(parse(bad), Err(Refused::Malformed(_))), "{bad:?}");
        }
    }
}
