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
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
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
        if scheme != http::uri::Scheme::HTTP {
            return Err(format!("\"{v}\": only http:// upstreams are supported"));
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
    fn upstream_urls() {
        let u = UpstreamUrl::try_from("http://127.0.0.1:9000/base/".to_string()).unwrap();
        assert_eq!(u.base_path, "/base");
        assert!(UpstreamUrl::try_from("https://x".to_string()).is_err());
        assert!(UpstreamUrl::try_from("127.0.0.1:80".to_string()).is_err());
    }
}
