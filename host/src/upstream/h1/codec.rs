//! HTTP/1.1 as Weir speaks it to an upstream (RFC 9112): the request head it writes, the response head it
//! reads, and the framing of both bodies.

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::Frame;

use crate::exchange::has_token;

/// A response head may have this many fields (hyper's default, and Envoy's `max_headers_count`).
const MAX_FIELDS: usize = 100;
/// A response head, or a chunked body's trailer section, larger than this is refused.
pub const MAX_HEAD: usize = 64 << 10;
/// A chunk-size line (size and extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4 << 10;

/// An upstream's answer that breaks HTTP/1.1: the upstream's fault, a 502.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("invalid response head: {0}")]
    Head(String),
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    #[error("the request body does not match its content-length")]
    RequestLength,
}

/// How a request body is framed on the wire.
pub enum Encoder {
    /// `content-length`: the bytes still to come.
    Length(u64),
    Chunked,
}

/// Writes the request head, choosing the body's framing: none for a body known empty, `content-length`
/// for a known size, chunked otherwise. Framing headers the request carries are replaced by Weir's own.
pub fn encode_head(
    method: &Method,
    target: &str,
    authority: Option<&str>,
    headers: &mut HeaderMap,
    body: Option<Option<u64>>,
) -> (Vec<u8>, Option<Encoder>) {
    headers.remove(header::TRANSFER_ENCODING);
    let encoder = match body {
        // No body: what the request says of its length stays as it is (a `content-length: 0` from the
        // client goes on).
        None => None,
        Some(Some(length)) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            Some(Encoder::Length(length))
        }
        Some(None) => {
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            Some(Encoder::Chunked)
        }
    };
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut head = Vec::with_capacity(method.as_str().len() + target.len() + fields + 64);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST)
        && let Some(authority) = authority
    {
        head.extend_from_slice(b"host: ");
        head.extend_from_slice(authority.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers.iter() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    (head, encoder)
}

impl Encoder {
    /// The bytes that carry `data`: as they are, or as one chunk.
    pub fn data(&mut self, data: Bytes, out: &mut impl FnMut(Bytes)) -> Result<(), WireError> {
        if data.is_empty() {
            return Ok(());
        }
        match self {
            Encoder::Length(left) => {
                let len = data.len() as u64;
                *left = left.checked_sub(len).ok_or(WireError::RequestLength)?;
                out(data);
            }
            Encoder::Chunked => {
                out(Bytes::from(format!("{:x}\r\n", data.len())));
                out(data);
                out(Bytes::from_static(b"\r\n"));
            }
        }
        Ok(())
    }

    /// The end of the body, with its trailers when it is chunked (a sized body has nowhere to put them).
    pub fn finish(
        &self,
        trailers: Option<&HeaderMap>,
        out: &mut impl FnMut(Bytes),
    ) -> Result<(), WireError> {
        match self {
            Encoder::Length(0) => Ok(()),
            Encoder::Length(_) => Err(WireError::RequestLength),
            Encoder::Chunked => {
                let mut last = BytesMut::from(&b"0\r\n"[..]);
                for (name, value) in trailers.into_iter().flatten() {
                    last.put_slice(name.as_str().as_bytes());
                    last.put_slice(b": ");
                    last.put_slice(value.as_bytes());
                    last.put_slice(b"\r\n");
                }
                last.put_slice(b"\r\n");
                out(last.freeze());
                Ok(())
            }
        }
    }
}

/// A response head as read.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Decoder,
    /// The connection may carry another request once this response is read.
    pub keep_alive: bool,
}

/// Parses a response head from the front of `buf`, taking its bytes; `None` until it is whole. A head to
/// `HEAD` has no body whatever it says.
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, WireError> {
    // Left uninitialised, as hyper's parser leaves its own: zeroing 100 fields (3.2 KB) cost more than
    // parsing a short head, and a head that comes in several reads is parsed again for each.
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(WireError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(WireError::HeadTooLarge);
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| WireError::Head(format!("invalid status {code}")))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| WireError::Head(format!("invalid field name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| WireError::Head(format!("invalid value of {name}")))?;
        headers.append(name, value);
    }
    buf.advance(len);
    let close = has_token(&headers, header::CONNECTION, "close")
        || (version == Version::HTTP_10 && !has_token(&headers, header::CONNECTION, "keep-alive"));
    let (framing, delimited) = framing(status, head_request, &headers)?;
    Ok(Some(Head {
        status,
        version,
        keep_alive: !close && delimited,
        headers,
        framing,
    }))
}

/// RFC 9112 §6.3: the body's length, and whether the connection may be reused after it (a body that ends
/// with the connection cannot). Both framings at once "ought to be handled as an error" (§6.3 ¶3): they are
/// how responses are split and smuggled, so such a response is refused, as nginx does.
fn framing(
    status: StatusCode,
    head_request: bool,
    headers: &HeaderMap,
) -> Result<(Decoder, bool), WireError> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Decoder::Length(0), true));
    }
    let lengths = headers.get_all(header::CONTENT_LENGTH);
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if lengths.iter().next().is_some() {
            return Err(WireError::Head(
                "both transfer-encoding and content-length".into(),
            ));
        }
        let chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            (Decoder::Chunked(Chunk::Size), true)
        } else {
            (Decoder::Close, false)
        });
    }
    let mut length = None;
    for value in lengths {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let parsed = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| WireError::Head("invalid content-length".into()))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(WireError::Head("differing content-length values".into()));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(length) => (Decoder::Length(length), true),
        None => (Decoder::Close, false),
    })
}

/// Where a response body stands.
pub enum Decoder {
    /// Bytes still to come; 0 once done.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// A chunked body's place: RFC 9112 §7.1.
pub enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

/// What [`Decoder::decode`] made of the bytes at hand.
pub enum Decoded {
    Frame(Frame<Bytes>),
    /// More bytes are needed.
    More,
    Done,
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        matches!(self, Decoder::Length(0) | Decoder::Chunked(Chunk::Done))
    }

    /// The body's size when it is known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(left) => Some(*left),
            _ => None,
        }
    }

    /// The next frame from the front of `buf`, taking its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        match self {
            Decoder::Length(0) => Ok(Decoded::Done),
            Decoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                *left -= take as u64;
                Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())))
            }
            Decoder::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                Ok(Decoded::Frame(Frame::data(buf.split().freeze())))
            }
            Decoder::Chunked(chunk) => chunk.decode(buf),
        }
    }
}

impl Chunk {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self {
                Chunk::Size => {
                    let Some(line) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(WireError::Chunked("chunk-size line too long"));
                        }
                        return Ok(Decoded::More);
                    };
                    if line > MAX_CHUNK_LINE {
                        return Err(WireError::Chunked("chunk-size line too long"));
                    }
                    let size = chunk_size(&buf[..line])?;
                    buf.advance(line + 2);
                    *self = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    return Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("no CRLF after a chunk's data"));
                    }
                    buf.advance(2);
                    *self = Chunk::Size;
                }
                Chunk::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunk::Done;
                        return Ok(Decoded::Done);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                    let (len, parsed) = match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete(whole)) => whole,
                        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                            return Err(WireError::Chunked("trailer section too large"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                        Err(_) => return Err(WireError::Chunked("invalid trailer section")),
                    };
                    let mut trailers = HeaderMap::with_capacity(parsed.len());
                    for field in parsed {
                        let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(field.name.as_bytes()),
                            HeaderValue::from_bytes(field.value),
                        ) else {
                            return Err(WireError::Chunked("invalid trailer field"));
                        };
                        trailers.append(name, value);
                    }
                    buf.advance(len);
                    *self = Chunk::Done;
                    return Ok(Decoded::Frame(Frame::trailers(trailers)));
                }
                Chunk::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// A chunk-size line: hex digits, then extensions (`;…`), which mean nothing to Weir.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";"))
        || rest.iter().any(|&b| b == b'\r' || b == b'\n')
    {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits])
        .map_err(|_| WireError::Chunked("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| WireError::Chunked("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        decoder: &mut Decoder,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), WireError> {
        let mut buf = BytesMut::from(wire);
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Frame(frame) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Decoded::More | Decoded::Done => return Ok((data, trailers)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let mut d = Decoder::Chunked(Chunk::Size);
        let (data, trailers) = decode_all(
            &mut d,
            b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nx-sum: 7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "7");
        assert!(d.is_done());
    }

    #[test]
    fn broken_chunked_framing_is_refused() {
        for wire in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"-1\r\n",
            b"1 2\r\n",
            b"10000000000000000\r\n",
        ] {
            let mut d = Decoder::Chunked(Chunk::Size);
            assert!(
                decode_all(&mut d, wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let parse = |wire: &[u8], head: bool| parse_head(&mut BytesMut::from(wire), head);
        let h = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Decoder::Length(3)) && h.keep_alive);
        let h = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Decoder::Length(3)));
        assert!(
            parse(
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n", false).is_err());
        let h = parse(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Decoder::Chunked(_)) && h.keep_alive);
        assert!(
            parse(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
                false
            )
            .is_err()
        );
        let h = parse(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert!(matches!(h.framing, Decoder::Close) && !h.keep_alive);
        let h = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Decoder::Length(0)));
        let h = parse(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse(
            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Decoder::Length(0)) && !h.keep_alive);
        assert!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-le", false)
                .unwrap()
                .is_none()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nbad field: 1\r\n\r\n", false).is_err());
    }

    #[test]
    fn request_heads_carry_weir_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        let (head, encoder) = encode_head(
            &Method::POST,
            "/a?b",
            Some("up:80"),
            &mut headers,
            Some(None),
        );
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("POST /a?b HTTP/1.1\r\nhost: up:80\r\n"),
            "{head}"
        );
        assert!(
            head.contains("transfer-encoding: chunked\r\n") && !head.contains("content-length")
        );
        assert!(matches!(encoder, Some(Encoder::Chunked)));
        let mut chunks = Vec::new();
        let mut enc = Encoder::Chunked;
        enc.data(Bytes::from_static(b"hello"), &mut |b| chunks.push(b))
            .unwrap();
        enc.finish(None, &mut |b| chunks.push(b)).unwrap();
        assert_eq!(chunks.concat(), b"5\r\nhello\r\n0\r\n\r\n");
        let mut enc = Encoder::Length(3);
        assert!(enc.data(Bytes::from_static(b"four"), &mut |_| ()).is_err());
    }
}
