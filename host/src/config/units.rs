//! Newtypes for config values that have a syntax: each checks itself while the TOML is parsed, so that the
//! error carries the line and column of the bad value.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// `16MiB`, `512KiB`, `1GiB`, `1MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "SizeText")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Number(u64),
    Text(String),
}

impl TryFrom<SizeText> for ByteSize {
    type Error = String;
    fn try_from(v: SizeText) -> Result<Self, String> {
        match v {
            SizeText::Number(n) => Ok(ByteSize(n)),
            SizeText::Text(t) => t.parse(),
        }
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("\"{text}\" is not a size such as \"16MiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit \"{other}\" (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("\"{text}\" is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 30 && n % (1 << 30) == 0 => write!(f, "{}GiB", n >> 30),
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
    }
}

/// A header name, checked (and lower-cased) as the file is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderNameText(pub http::HeaderName);

impl TryFrom<String> for HeaderNameText {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        http::HeaderName::from_bytes(v.to_ascii_lowercase().as_bytes())
            .map(HeaderNameText)
            .map_err(|_| format!("\"{v}\" is not a header name"))
    }
}

/// A regex over the request path, compiled once at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct PathRegex(pub regex::Regex);

impl TryFrom<String> for PathRegex {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        regex::Regex::new(&v)
            .map(PathRegex)
            .map_err(|e| format!("invalid regex: {e}"))
    }
}

/// An HTTP method name, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MethodName(pub http::Method);

impl TryFrom<String> for MethodName {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        http::Method::from_bytes(v.to_ascii_uppercase().as_bytes())
            .map(MethodName)
            .map_err(|_| format!("\"{v}\" is not an HTTP method"))
    }
}

/// `example.com` or `*.example.com`, matched case-insensitively against the `Host` header without its port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`: stores `.example.com`.
    Suffix(String),
}

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        let lower = v.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => Ok(HostPattern::Suffix(format!(".{rest}"))),
            None if valid(&lower) => Ok(HostPattern::Exact(lower)),
            _ => Err(format!(
                "\"{v}\" is not a host name or a \"*.domain\" pattern"
            )),
        }
    }
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// `http://host:port` with an optional base path that every forwarded path is put under.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamUrl {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Without a trailing slash; empty when the URL has no path.
    pub base_path: String,
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;
    fn try_from(v: String) -> Result<Self, String> {
        let uri: http::Uri = v
            .parse()
            .map_err(|e| format!("\"{v}\" is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("\"{v}\" needs a scheme (http://)"))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(format!("\"{v}\": an upstream is http:// or https://"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("\"{v}\" needs a host"))?;
        if uri.query().is_some() {
            return Err(format!("\"{v}\": an upstream URL cannot have a query"));
        }
        Ok(UpstreamUrl {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// A host a plugin may send HTTP requests to: `auth.internal` (any port), `auth.internal:8080`,
/// `10.0.0.7:8080` or `[::1]:8080`. One parser reads both the grant and the host of every URL a plugin asks
/// for, so the two cannot disagree on what a host is (case, brackets, a spelling of an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    host: Host,
    /// `None` grants every port.
    port: Option<u16>,
}

/// A DNS name (lower-cased) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    V4(std::net::Ipv4Addr),
    V6(std::net::Ipv6Addr),
}

impl HttpGrant {
    /// True when this grant covers a request to `uri`, an `http://` URL (port 80 when it names none).
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(Ok(host)) = uri.host().map(Host::parse) else {
            return false;
        };
        host == self.host
            && self
                .port
                .is_none_or(|port| uri.port_u16().unwrap_or(80) == port)
    }
}

impl<'de> Deserialize<'de> for HttpGrant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed_string(deserializer, "host or host:port")
    }
}

/// A string parsed by its type's `FromStr`, whose error is the message. By hand rather than `try_from`:
/// such values are array elements, and only an error raised while the element itself is read carries the
/// element's position, which names the field as `grants.http.N`.
pub(super) fn parsed_string<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct Text<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            text.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Text(expecting, std::marker::PhantomData))
}

impl FromStr for HttpGrant {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| Err(format!("\"{text}\" {why}: write host or host:port"));
        if text.is_empty() {
            return refuse("is empty");
        }
        if text.contains("://") {
            return refuse("is a URL");
        }
        if text
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return refuse("has whitespace");
        }
        if text.contains('@') {
            return refuse("has userinfo");
        }
        if text.contains(['/', '?', '#']) {
            return refuse("has a path");
        }
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((_, "")) => (text, None),
                Some((address, after)) => match after.strip_prefix(':') {
                    Some(port) => (&text[..address.len() + 2], Some(port)),
                    None => return refuse("has text after the IPv6 address"),
                },
                None => return refuse("has no ']' after its IPv6 address"),
            },
            None => match text.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return refuse("is an IPv6 address without brackets");
                }
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            },
        };
        let host = match Host::parse(host) {
            Ok(host) => host,
            Err(why) => return refuse(why),
        };
        let port = match port {
            None => None,
            // `u16::from_str` takes a sign; a port is digits only.
            Some(port) => match port.parse::<u16>() {
                Ok(number) if number > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(number)
                }
                _ => return refuse("has a port that is not 1 to 65535"),
            },
        };
        Ok(HttpGrant { host, port })
    }
}

impl Host {
    /// The error says what the host is not, to follow the text it came from.
    fn parse(text: &str) -> Result<Host, &'static str> {
        if let Some(inner) = text.strip_prefix('[') {
            return inner
                .strip_suffix(']')
                .and_then(|address| address.parse().ok())
                .map(Host::V6)
                .ok_or("is not an IPv6 address");
        }
        // As in URLs (WHATWG): a host whose last label is a number is an IPv4 address or nothing.
        let last = text.rsplit('.').next().unwrap_or(text);
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(Host::V4)
                .map_err(|_| "is not an IPv4 address");
        }
        // RFC 1035 labels; `_` too, which DNS allows and container service names use.
        let label = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if text.len() <= 253 && text.split('.').all(label) {
            Ok(Host::Name(text.to_ascii_lowercase()))
        } else {
            Err("is not a DNS name or an IP address")
        }
    }
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(name) => write!(f, "{name}")?,
            Host::V4(address) => write!(f, "{address}")?,
            Host::V6(address) => write!(f, "[{address}]")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("16MiB".parse::<ByteSize>(), Ok(ByteSize(16 << 20)));
        assert_eq!("1 KB".parse::<ByteSize>(), Ok(ByteSize(1000)));
        assert!(
            "16 parsecs"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
    }

    #[test]
    fn hosts() {
        let exact = HostPattern::try_from("Example.com".to_string()).unwrap();
        assert!(exact.matches("example.COM:8080"));
        assert!(!exact.matches("a.example.com"));
        let wild = HostPattern::try_from("*.example.com".to_string()).unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(HostPattern::try_from("exa mple".to_string()).is_err());
    }

    #[test]
    fn http_grants_are_a_host_or_a_host_and_port() {
        for good in [
            "auth.example.com",
            "Auth.Example.com:8080",
            "127.0.0.1:8123",
            "10.0.0.7",
            "[::1]",
            "[::1]:8080",
            "my_service:65535",
            "localhost:1",
            "localhost:080",
        ] {
            assert!(good.parse::<HttpGrant>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "http://auth.example.com",
            "auth.example.com/jwks",
            "/jwks",
            "user@auth.example.com",
            "auth example.com",
            " auth.example.com",
            "auth.example.com:0",
            "auth.example.com:65536",
            "auth.example.com:",
            "auth.example.com:+80",
            "::1",
            "[::1",
            "[::1]x",
            "[not-v6]:80",
            "999.1.1.1",
            "1.2.3",
            "-auth.example.com",
            "auth..example.com",
            "auth.example.com.",
            "auth.example.com?x",
        ] {
            assert!(bad.parse::<HttpGrant>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            "[0:0::1]:80".parse::<HttpGrant>().unwrap().to_string(),
            "[::1]:80"
        );
        assert_eq!(
            "http://x".parse::<HttpGrant>().unwrap_err(),
            "\"http://x\" is a URL: write host or host:port"
        );
    }

    #[test]
    fn upstream_urls() {
        let u = UpstreamUrl::try_from("http://127.0.0.1:9000/base/".to_string()).unwrap();
        assert_eq!(u.base_path, "/base");
        assert!(UpstreamUrl::try_from("https://x".to_string()).is_ok());
        assert!(UpstreamUrl::try_from("ftp://x".to_string()).is_err());
        assert!(UpstreamUrl::try_from("127.0.0.1:80".to_string()).is_err());
    }
}
