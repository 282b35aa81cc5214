//! What a client's request head must be before any route sees it (RFC 9112 §3, RFC 9110 §7.2): a method
//! the proxy can forward, exactly one valid Host, a target in origin form, and a path in the one normal form
//! (see [`normalise`]). Everything after this reads the request as admitted here.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Uri, Version};

use crate::head_bytes;
use crate::normalise::{self, PathPolicy, TargetError};

/// The methods a `405` or a server-wide `OPTIONS *` advertises. Extension methods are forwarded too; these
/// are the ones every upstream is expected to know.
pub const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// What the server's config says about admission.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub path: PathPolicy,
    /// The longest request target, in bytes; longer gets 414.
    pub max_target: usize,
    /// The most bytes of header fields, each counted as `name: value` and its line end; more gets 431.
    pub max_head: usize,
}

/// Why a request head is refused; always the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    #[error("an HTTP/2 request needs :authority or a Host header")]
    MissingAuthority,
    #[error("an HTTP/2 :path must start with \"/\", or be \"*\" for OPTIONS")]
    PseudoPath,
    #[error("the value of {0} starts or ends with whitespace")]
    FieldWhitespace(String),
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid Host {0:?}")]
    InvalidHost(String),
    #[error("the target's scheme is not http or https")]
    Scheme,
    #[error("the asterisk target is only for OPTIONS")]
    Asterisk,
    /// A tunnel would take the connection out of HTTP: a reverse proxy has no business opening one.
    #[error("CONNECT is not supported")]
    Connect,
    /// RFC 9113 §8.5, RFC 9110 §9.3.6: a CONNECT names the host and port to tunnel to.
    #[error("CONNECT without a host and port")]
    ConnectWithoutAuthority,
    /// TRACE echoes the request, cookies and credentials added by the proxy included (cross-site tracing).
    #[error("TRACE is not allowed")]
    Trace,
    #[error("unsupported expectation {0:?}")]
    Expectation(String),
    #[error("chunked is applied more than once")]
    ChunkedTwice,
    #[error("the request target is longer than {0} bytes")]
    TargetTooLong(usize),
    #[error("the header fields are larger than {0} bytes")]
    HeadTooLarge(usize),
}

/// What to do with an admitted request.
pub enum Admitted {
    /// Route and forward it. When the target was changed (normalised, or from absolute form), this is the
    /// target as the client sent it, for `{original_uri}`.
    Forward { original: Option<Uri> },
    /// `OPTIONS *`: a question about the server, answered by Weir.
    ServerOptions,
}

/// Checks the head and rewrites it in place to what the rest of the proxy reads: the target in origin form
/// with its path normalised, and Host set from an absolute-form target.
pub fn admit(parts: &mut Parts, rules: Rules) -> Result<Admitted, Refusal> {
    if parts.method == Method::CONNECT {
        // Malformed (the client's to mend) before unsupported (Weir's).
        return Err(match parts.uri.authority() {
            None => Refusal::ConnectWithoutAuthority,
            Some(_) => Refusal::Connect,
        });
    }
    if parts.method == Method::TRACE {
        return Err(Refusal::Trace);
    }
    check_expect(parts)?;
    if head_len(&parts.headers) > rules.max_head {
        return Err(Refusal::HeadTooLarge(rules.max_head));
    }
    // The target's length as sent, near enough: the parsed URI keeps its parts, not the line.
    if head_bytes::uri_len(&parts.uri) > rules.max_target {
        return Err(Refusal::TargetTooLong(rules.max_target));
    }
    if parts.version == Version::HTTP_2 {
        h2_fields(parts)?;
        pseudo_to_origin_form(parts)?;
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(Refusal::DuplicateHost);
    }
    // RFC 9112 §3.2: an HTTP/1.1 request needs its Host, even with an absolute-form target; RFC 9113 §8.3.1:
    // an HTTP/2 one for http or https, its `:authority` or a Host.
    if host.is_none() {
        match parts.version {
            Version::HTTP_11 => return Err(Refusal::MissingHost),
            Version::HTTP_2 => return Err(Refusal::MissingAuthority),
            _ => {}
        }
    }
    if parts.uri.path() == "*" && parts.uri.authority().is_none() {
        return if parts.method == Method::OPTIONS {
            Ok(Admitted::ServerOptions)
        } else {
            Err(Refusal::Asterisk)
        };
    }
    let absolute = parts.uri.authority().is_some();
    if absolute {
        // RFC 9112 §3.2.2: the target's authority wins over the Host the client sent.
        if !matches!(parts.uri.scheme_str(), Some("http" | "https")) {
            return Err(Refusal::Scheme);
        }
        let authority = parts.uri.authority().map_or("", |a| a.as_str());
        let value = valid_host(authority.as_bytes())?;
        parts.headers.insert(header::HOST, value);
    } else if let Some(value) = host {
        valid_host(value.as_bytes())?;
    }
    check_framing(parts)?;

    let path = normalise::path(parts.uri.path(), rules.path)?;
    let query = match parts.uri.query() {
        Some(q) => Some(normalise::query(q)?),
        None => None,
    };
    let unchanged = !absolute
        && matches!(path, std::borrow::Cow::Borrowed(_))
        && query
            .as_ref()
            .is_none_or(|q| matches!(q, std::borrow::Cow::Borrowed(_)));
    if unchanged {
        return Ok(Admitted::Forward { original: None });
    }
    let target = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    // The normal form only holds bytes a URI allows, so this parse fails only on a bug; it is still a
    // refusal, never a panic.
    let origin_form = Uri::try_from(target).map_err(|_| TargetError::InvalidByte(0))?;
    let original = std::mem::replace(&mut parts.uri, origin_form);
    Ok(Admitted::Forward {
        original: Some(original),
    })
}

/// What RFC 9113 asks of an HTTP/2 request's fields that the h2 crate leaves to the server. §8.2.1: a value
/// that starts or ends with whitespace makes the request malformed (HTTP/1.1's parser strips it; h2 has no
/// whitespace to strip). §8.2.3: a client may split `cookie` into several fields for compression, and they
/// go on to HTTP/1.1, and to the plugins, joined by `"; "`, as one field. §8.3.1: `:path` is `*` or starts
/// with `/`.
fn h2_fields(parts: &mut Parts) -> Result<(), Refusal> {
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    if !(path.starts_with('/') || path == "*") {
        return Err(Refusal::PseudoPath);
    }
    for (name, value) in &parts.headers {
        let bytes = value.as_bytes();
        let spaced = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
        if spaced(bytes.first()) || spaced(bytes.last()) {
            return Err(Refusal::FieldWhitespace(name.as_str().to_owned()));
        }
    }
    let cookies = parts.headers.get_all(header::COOKIE);
    if cookies.iter().nth(1).is_some() {
        let mut joined = Vec::new();
        let mut sensitive = false;
        for crumb in cookies.iter().filter(|crumb| !crumb.is_empty()) {
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(crumb.as_bytes());
            // HPACK's never-indexed fields stay so on an HTTP/2 upstream.
            sensitive |= crumb.is_sensitive();
        }
        // Each part was a valid value, and so is what joins them; were it not, the parts would go on as sent.
        if let Ok(mut value) = HeaderValue::from_bytes(&joined) {
            value.set_sensitive(sensitive);
            parts.headers.insert(header::COOKIE, value);
        }
    }
    Ok(())
}

/// RFC 9113 §8.3.1: HTTP/2 sends `:authority`, which stands for Host, beside a path that is the target in
/// origin form; hyper joins them (with `:scheme`) into one URI. Split back, they are what HTTP/1.1 sends as
/// Host and target, so the plugins see the same request whichever the client spoke.
fn pseudo_to_origin_form(parts: &mut Parts) -> Result<(), Refusal> {
    let Some(authority) = parts.uri.authority() else {
        return Ok(());
    };
    if !matches!(parts.uri.scheme_str(), Some("http" | "https")) {
        return Err(Refusal::Scheme);
    }
    let value = valid_host(authority.as_str().as_bytes())?;
    parts.headers.insert(header::HOST, value);
    parts.uri = parts
        .uri
        .path_and_query()
        .cloned()
        .map_or_else(|| Uri::from_static("/"), Uri::from);
    Ok(())
}

/// RFC 9112 §6.1: chunked is applied at most once. The parser has framed the body by the last coding
/// already; a second `chunked`, in one field or two, means the client and some other hop may disagree.
/// (`Content-Length` beside `Transfer-Encoding` never gets here: the parser drops the length, frames the
/// body as chunked and closes the connection after it, as RFC 9112 §6.3 allows.)
fn check_framing(parts: &Parts) -> Result<(), Refusal> {
    let chunked = parts
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count();
    if chunked > 1 {
        return Err(Refusal::ChunkedTwice);
    }
    Ok(())
}

/// The header fields' size as written back out, `name: value\r\n` each: the parser's own cap on the head
/// leaves room for the longest target, so a head with a short target would otherwise fit more fields.
fn head_len(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// `Expect: 100-continue` is answered by the server when the body is first read, and is this hop's alone:
/// it is removed before forwarding. Any other expectation gets 417 (RFC 9110 §10.1.1).
fn check_expect(parts: &mut Parts) -> Result<(), Refusal> {
    let Some(value) = parts.headers.get(header::EXPECT) else {
        return Ok(());
    };
    if !value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
        return Err(Refusal::Expectation(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
    parts.headers.remove(header::EXPECT);
    Ok(())
}

/// RFC 9110 §7.2: `uri-host [ ":" port ]`, where the host is a bracketed IPv6 literal or a reg-name/IPv4
/// (unreserved, sub-delims and escapes), and the port, when present, fits 16 bits. Userinfo is refused.
fn valid_host(value: &[u8]) -> Result<HeaderValue, Refusal> {
    let invalid = || Refusal::InvalidHost(String::from_utf8_lossy(value).into_owned());
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let close = rest.iter().position(|&b| b == b']').ok_or_else(invalid)?;
            let (literal, after) = rest.split_at(close);
            let literal = std::str::from_utf8(literal).map_err(|_| invalid())?;
            literal
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid())?;
            let after = after.get(1..).unwrap_or_default();
            let port = match after {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return Err(invalid()),
            };
            (None, port)
        }
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (value.get(..colon), value.get(colon + 1..)),
            None => (Some(value), None),
        },
    };
    if let Some(host) = host {
        // RFC 3986 §3.2.2 `reg-name`, which also spells an IPv4 address.
        let reg_name =
            |&b: &u8| normalise::is_unreserved(b) || normalise::is_sub_delim(b) || b == b'%';
        if host.is_empty() || !host.iter().all(reg_name) {
            return Err(invalid());
        }
    }
    if let Some(port) = port {
        // An empty port is allowed by the grammar (`*DIGIT`) and means the default.
        let digits = std::str::from_utf8(port).map_err(|_| invalid())?;
        if !digits.is_empty()
            && (!digits.bytes().all(|b| b.is_ascii_digit()) || digits.parse::<u16>().is_err())
        {
            return Err(invalid());
        }
    }
    HeaderValue::from_bytes(value).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EscapedSlashes;

    const POLICY: Rules = Rules {
        path: PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            merge_slashes: true,
        },
        max_target: 64,
        max_head: 1024,
    };

    fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hosts() {
        for good in [
            "a",
            "a.example:8080",
            "127.0.0.1",
            "[::1]:80",
            "[::1]",
            "a:",
            "x_y",
        ] {
            assert!(valid_host(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in [
            "", "a b", "a@b", "a:b:c", "a:99999", "a:-1", "[::1", "[zz]", "[::1]x", ":80", "a/b",
        ] {
            assert!(valid_host(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_is_required_once_in_http_11() {
        let mut p = parts("GET", "/", &[]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::MissingHost));
        let mut p = parts("GET", "/", &[("host", "a"), ("host", "b")]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::DuplicateHost));
        let mut p = parts("GET", "/", &[]);
        p.version = Version::HTTP_10;
        assert!(admit(&mut p, POLICY).is_ok());
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_host() {
        let mut p = parts("GET", "http://b.example/x/../y?q", &[("host", "a")]);
        let Ok(Admitted::Forward {
            original: Some(original),
        }) = admit(&mut p, POLICY)
        else {
            panic!("admitted with the original kept");
        };
        assert_eq!(original, "http://b.example/x/../y?q");
        assert_eq!(p.uri, "/y?q");
        assert_eq!(p.headers[header::HOST], "b.example");
        let mut p = parts("GET", "http://b.example/x", &[]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::MissingHost));
        let mut p = parts("GET", "ftp://b.example/x", &[("host", "a")]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::Scheme));
    }

    #[test]
    fn h2_authority_is_the_host_and_the_target_stays_in_origin_form() {
        let mut p = parts("GET", "http://a.example:8080/x?y=1", &[]);
        p.version = Version::HTTP_2;
        assert!(matches!(
            admit(&mut p, POLICY),
            Ok(Admitted::Forward { original: None })
        ));
        assert_eq!(p.headers[header::HOST], "a.example:8080");
        assert_eq!(p.uri, "/x?y=1");
    }

    #[test]
    fn h2_requests_are_held_to_what_rfc_9113_asks_of_their_fields() {
        let h2 = |method: &str, uri: Uri, headers: &[(&str, &str)]| {
            let mut p = parts(method, "/", headers);
            p.version = Version::HTTP_2;
            p.uri = uri;
            p
        };
        let with_authority = |path: &str| {
            Uri::builder()
                .scheme("http")
                .authority("a.example")
                .path_and_query(path)
                .build()
                .expect("a URI")
        };
        // §8.2.3: split cookies go on as one field.
        let mut p = h2(
            "GET",
            with_authority("/x"),
            &[("cookie", "a=1"), ("cookie", "b=2")],
        );
        assert!(admit(&mut p, POLICY).is_ok());
        let cookies: Vec<_> = p.headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
        // §8.2.1: a value may not start or end with whitespace.
        for value in [" lead", "trail\t"] {
            let mut p = h2("GET", with_authority("/x"), &[("x-a", value)]);
            assert_eq!(
                admit(&mut p, POLICY).err(),
                Some(Refusal::FieldWhitespace("x-a".into()))
            );
        }
        // §8.3.1: `*` only for OPTIONS, which Weir answers; `:authority` or Host.
        let mut p = h2("OPTIONS", with_authority("*"), &[]);
        assert!(matches!(admit(&mut p, POLICY), Ok(Admitted::ServerOptions)));
        let mut p = h2("GET", with_authority("*"), &[]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::Asterisk));
        let mut p = h2("OPTIONS", Uri::from_static("*"), &[]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::MissingAuthority));
        let mut p = h2(
            "GET",
            with_authority("/x"),
            &[("cookie", ""), ("cookie", "a=1"), ("cookie", "b=2")],
        );
        assert!(admit(&mut p, POLICY).is_ok());
        assert_eq!(p.headers[header::COOKIE], "a=1; b=2");
        let mut p = h2("GET", Uri::from_static("/x"), &[]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::MissingAuthority));
        let mut p = h2("GET", Uri::from_static("/x"), &[("host", "a.example")]);
        assert!(admit(&mut p, POLICY).is_ok());
        let mut p = h2("CONNECT", Uri::from_static("/"), &[("host", "a.example")]);
        assert_eq!(
            admit(&mut p, POLICY).err(),
            Some(Refusal::ConnectWithoutAuthority)
        );
    }

    #[test]
    fn long_targets_get_414() {
        let fits = format!("/{}", "a".repeat(63));
        assert!(admit(&mut parts("GET", &fits, &[("host", "a")]), POLICY).is_ok());
        let long = format!("/{}", "a".repeat(64));
        assert_eq!(
            admit(&mut parts("GET", &long, &[("host", "a")]), POLICY).err(),
            Some(Refusal::TargetTooLong(64))
        );
    }

    #[test]
    fn header_fields_over_the_limit_get_431() {
        let rules = Rules {
            max_head: 64,
            ..POLICY
        };
        // `host: a\r\n` is 9 bytes, `x: ` and its line end 5 more than the value.
        let value = "v".repeat(64 - 9 - 5);
        let fits = [("host", "a"), ("x", value.as_str())];
        assert!(admit(&mut parts("GET", "/", &fits), rules).is_ok());
        let over = format!("{value}v");
        let over = [("host", "a"), ("x", over.as_str())];
        assert_eq!(
            admit(&mut parts("GET", "/", &over), rules).err(),
            Some(Refusal::HeadTooLarge(64))
        );
    }

    #[test]
    fn chunked_at_most_once() {
        let te = |values: &[&str]| {
            let mut headers = vec![("host", "a")];
            headers.extend(values.iter().map(|v| ("transfer-encoding", *v)));
            admit(&mut parts("POST", "/", &headers), POLICY).err()
        };
        assert_eq!(te(&["chunked"]), None);
        assert_eq!(te(&["gzip, chunked"]), None);
        assert_eq!(te(&["chunked", "chunked"]), Some(Refusal::ChunkedTwice));
        assert_eq!(te(&["chunked , Chunked"]), Some(Refusal::ChunkedTwice));
    }

    #[test]
    fn methods_and_expectations() {
        let mut p = parts("CONNECT", "a.example:443", &[("host", "a.example:443")]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::Connect));
        let mut p = parts("TRACE", "/", &[("host", "a")]);
        assert_eq!(admit(&mut p, POLICY).err(), Some(Refusal::Trace));
        let mut p = parts("OPTIONS", "*", &[("host", "a")]);
        assert!(matches!(admit(&mut p, POLICY), Ok(Admitted::ServerOptions)));
        let mut p = parts("GET", "/", &[("host", "a"), ("expect", "100-Continue")]);
        assert!(admit(&mut p, POLICY).is_ok());
        assert!(!p.headers.contains_key(header::EXPECT));
        let mut p = parts("GET", "/", &[("host", "a"), ("expect", "teapot")]);
        assert!(matches!(
            admit(&mut p, POLICY),
            Err(Refusal::Expectation(_))
        ));
    }
}
