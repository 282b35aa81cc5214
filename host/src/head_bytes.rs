//! A request head's bytes, moved out of the connection's read buffer.
//!
//! hyper and h2 hand a request's target and header values over as slices of the connection's read buffer.
//! While any of them lives, that buffer's allocation cannot be reused: hyper's next read on the connection
//! (it reads ahead to notice a client that closes) allocates another 8 KiB, and every request in flight
//! holds two. Copied into one allocation the size of the head, which the request keeps until its response
//! is done, the read buffer is free again as soon as the head is parsed.

use bytes::BytesMut;
use http::{HeaderValue, Request, Uri};

/// Moves the target and the header values of `head` into one allocation of their own. A value that would
/// not parse again as the same (an HTTP/2 `:path` of `*` beside an `:authority`, written as
/// `http://host*`) keeps its old storage.
pub fn detach<B>(head: &mut Request<B>) {
    let (uri, headers) = (head.uri(), head.headers());
    let values: usize = headers.values().map(|v| v.len()).sum();
    let mut buf = BytesMut::with_capacity(values + uri_len(uri));
    match uri.path_and_query() {
        // An origin-form target, as every HTTP/1.1 request's but a proxy's is: its bytes as they are,
        // without the formatting machinery that `Display` goes through.
        Some(target) if uri.scheme().is_none() && uri.authority().is_none() => {
            buf.extend_from_slice(target.as_str().as_bytes());
        }
        // Its parts as they came, not as `Display` writes them: that puts a `/` before an HTTP/2 `:path` of
        // `?a=1`, which admission must see as sent to refuse it.
        _ => {
            if let Some(scheme) = uri.scheme_str() {
                buf.extend_from_slice(scheme.as_bytes());
                buf.extend_from_slice(b"://");
            }
            if let Some(authority) = uri.authority() {
                buf.extend_from_slice(authority.as_str().as_bytes());
            }
            if let Some(target) = uri.path_and_query() {
                buf.extend_from_slice(target.as_str().as_bytes());
            }
        }
    }
    let target_end = buf.len();
    for value in headers.values() {
        buf.extend_from_slice(value.as_bytes());
    }
    let bytes = buf.freeze();
    if let Ok(copy) = Uri::from_maybe_shared(bytes.slice(..target_end))
        && copy == *head.uri()
    {
        *head.uri_mut() = copy;
    }
    let mut at = target_end;
    for value in head.headers_mut().values_mut() {
        let end = at + value.len();
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(bytes.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
}

/// The length of `uri` as written, without writing it.
pub fn uri_len(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + authority + path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_reads_the_same_after() {
        for target in ["/a/b?c=d", "/?", "http://h:8080/x?y", "*", "h:443", "/"] {
            let mut head = http::Request::get(target).body(()).expect("a request");
            let headers = head.headers_mut();
            headers.append("x-one", HeaderValue::from_static("1"));
            headers.append("x-one", HeaderValue::from_static("again"));
            let mut secret = HeaderValue::from_static("Bearer t");
            secret.set_sensitive(true);
            headers.insert("authorization", secret);
            let (before_uri, before_headers) = (head.uri().clone(), head.headers().clone());
            detach(&mut head);
            assert_eq!(*head.uri(), before_uri);
            assert_eq!(head.uri().to_string(), before_uri.to_string());
            assert_eq!(*head.headers(), before_headers);
            assert!(head.headers()["authorization"].is_sensitive());
        }
        // HTTP/2's `*` beside an authority, which would be written `http://a*` and read back as another URI.
        let star = Uri::builder()
            .scheme("http")
            .authority("a")
            .path_and_query("*")
            .build()
            .expect("a URI");
        let mut head = http::Request::options(star.clone())
            .body(())
            .expect("a request");
        detach(&mut head);
        assert_eq!(*head.uri(), star);
        assert_eq!(head.uri().path(), "*");
        // And a `:path` without its `/`, kept as sent for admission to refuse.
        let query = Uri::builder()
            .scheme("http")
            .authority("a")
            .path_and_query("?q=1")
            .build()
            .expect("a URI");
        let mut head = http::Request::get(query).body(()).expect("a request");
        detach(&mut head);
        assert_eq!(
            head.uri().path_and_query().map(|p| p.as_str()),
            Some("?q=1")
        );
    }
}
