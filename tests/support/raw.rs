//! HTTP/1.1 byte by byte, for the hostile-input suite (`tests/edge.rs`): a strict recording upstream, a
//! client that writes exact bytes and parses whatever comes back, and an nginx to compare against.
//!
//! The upstream is deliberately not hyper: it must record what a proxy really sent, and it must call a
//! message malformed where a lenient server would quietly accept it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bigger heads than this are refused by the recorder: no proxy under test forwards one.
const MAX_HEAD: usize = 1 << 20;
/// Bodies are small in every case; a larger declared length means broken framing.
const MAX_BODY: u64 = 16 << 20;

/// One request as the recording upstream received it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub trailers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Why the message was malformed: a proxy must never send one.
    pub fault: Option<String>,
    /// The proxy ended the connection before the message was complete (it gave up on the request).
    pub aborted: bool,
    /// The head as received, for reports.
    pub head: Vec<u8>,
}

impl Seen {
    /// Every value of a header, in order, by case-insensitive name.
    pub fn values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    pub fn summary(&self) -> String {
        let mut text = if self.method.is_empty() {
            format!("(incomplete head) {}", show(&self.head, 200))
        } else {
            format!("{} {} {}", self.method, self.target, self.version)
        };
        for (name, value) in &self.headers {
            text.push_str(&format!(" | {name}: {}", show(value, 80)));
        }
        text.push_str(&format!(" | body {}", show(&self.body, 80)));
        for (name, value) in &self.trailers {
            text.push_str(&format!(" | trailer {name}: {}", show(value, 80)));
        }
        if self.aborted {
            text.push_str(" [aborted by the proxy]");
        }
        if let Some(fault) = &self.fault {
            text.push_str(&format!(" [MALFORMED: {fault}]"));
        }
        text
    }
}

/// Bytes as an escaped string, cut at `max` characters.
pub fn show(bytes: &[u8], max: usize) -> String {
    let text = format!("\"{}\"", bytes.escape_ascii());
    if text.len() > max {
        format!("{}…({} bytes)", &text[..max], bytes.len())
    } else {
        text
    }
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    /// Connections in the middle of a message: their request is not in `seen` yet.
    busy: usize,
    last_event: Option<Instant>,
}

/// A raw HTTP/1.1 upstream on loopback that records every request and answers each with `200 ok`.
pub struct Recorder {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let addr = listener.local_addr().expect("bound");
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = shared.clone();
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Recorder { addr, log }
    }

    /// Where the next case's requests start in the log.
    pub fn mark(&self) -> usize {
        self.log.lock().expect("log").seen.len()
    }

    /// Waits until no message is half-received and nothing has happened for a moment, then returns what
    /// arrived since `mark`. Cases run one after another, so this is how a case owns its requests.
    pub fn settle(&self, mark: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_millis(1500);
        loop {
            {
                let log = self.log.lock().expect("log");
                let quiet = log
                    .last_event
                    .is_none_or(|t| t.elapsed() > Duration::from_millis(20));
                if (log.busy == 0 && quiet) || Instant::now() > deadline {
                    return log.seen[mark.min(log.seen.len())..].to_vec();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Marks a connection busy for as long as one message is being read.
struct Busy<'a>(&'a Mutex<Log>);

impl<'a> Busy<'a> {
    fn new(log: &'a Mutex<Log>) -> Busy<'a> {
        let mut l = log.lock().expect("log");
        l.busy += 1;
        l.last_event = Some(Instant::now());
        Busy(log)
    }

    fn record(&self, seen: Seen) {
        let mut l = self.0.lock().expect("log");
        l.seen.push(seen);
        l.last_event = Some(Instant::now());
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut l = self.0.lock().expect("log");
        l.busy -= 1;
        l.last_event = Some(Instant::now());
    }
}

enum End {
    /// The peer closed or reset the connection mid-message.
    Aborted,
    Malformed(String),
}

struct Conn {
    stream: TcpStream,
    /// Received and not yet consumed.
    buf: Vec<u8>,
}

impl Conn {
    fn more(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => Err(End::Aborted),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Moves `n` bytes into `out`, reading as needed.
    fn take_into(&mut self, out: &mut Vec<u8>, mut n: usize) -> Result<(), End> {
        while n > 0 {
            if self.buf.is_empty() {
                self.more()?;
            }
            let k = n.min(self.buf.len());
            out.extend(self.buf.drain(..k));
            n -= k;
        }
        Ok(())
    }

    /// One CRLF-terminated line, without its CRLF. A bare LF or CR is malformed (RFC 9112 §2.2: a sender
    /// must not generate them, and the proxy is the sender here).
    fn line(&mut self) -> Result<Vec<u8>, End> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let body = &line[..line.len() - 1];
                let Some(content) = body.strip_suffix(b"\r") else {
                    return Err(End::Malformed(format!("bare LF after {}", show(body, 60))));
                };
                if content.contains(&b'\r') {
                    return Err(End::Malformed(format!("bare CR in {}", show(content, 60))));
                }
                return Ok(content.to_vec());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(End::Malformed("a line over 64 KiB".into()));
            }
            self.more()?;
        }
    }
}

fn serve(stream: TcpStream, log: &Mutex<Log>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        if conn.buf.is_empty() && conn.more().is_err() {
            return; // closed between messages: the normal end of a pooled connection
        }
        let busy = Busy::new(log);
        let mut seen = Seen::default();
        match read_request(&mut conn, &mut seen) {
            Ok(close) => {
                busy.record(seen);
                let reply: &[u8] = if close {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                if conn.stream.write_all(reply).is_err() || close {
                    return;
                }
            }
            Err(end) => {
                match end {
                    End::Aborted => seen.aborted = true,
                    End::Malformed(why) => seen.fault = Some(why),
                }
                busy.record(seen);
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// The head as httparse sees it, copied out of the buffer.
struct Head {
    len: usize,
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = vec![httparse::EMPTY_HEADER; 4096];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("httparse: {e}")),
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            len,
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            minor: req.version.unwrap_or_default(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
        })),
    }
}

/// Reads one request; `Ok(true)` when the connection is to close after the answer.
fn read_request(conn: &mut Conn, seen: &mut Seen) -> Result<bool, End> {
    let head = loop {
        match parse_head(&conn.buf) {
            Ok(Some(head)) => break head,
            Ok(None) if conn.buf.len() > MAX_HEAD => {
                seen.head = conn.buf.clone();
                return Err(End::Malformed("a head over 1 MiB".into()));
            }
            Ok(None) => {
                if let Err(end) = conn.more() {
                    seen.head = conn.buf.clone();
                    return Err(end);
                }
            }
            Err(why) => {
                seen.head = conn.buf.clone();
                return Err(End::Malformed(why));
            }
        }
    };
    seen.head = conn.buf.drain(..head.len).collect();
    seen.method = head.method;
    seen.target = head.target;
    seen.version = format!("HTTP/1.{}", head.minor);
    seen.headers = head.headers;
    check_head(seen).map_err(End::Malformed)?;

    let te = seen.values("transfer-encoding");
    let cl = seen.values("content-length");
    let expects_continue = head.minor == 1
        && seen
            .values("expect")
            .iter()
            .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if !te.is_empty() {
        // The only framing a proxy has any reason to send: one `chunked`, no Content-Length.
        if te.len() != 1 || !cl.is_empty() || !te[0].eq_ignore_ascii_case(b"chunked") {
            return Err(End::Malformed(format!(
                "ambiguous framing: Transfer-Encoding {:?} with {} Content-Length",
                te.iter().map(|v| show(v, 40)).collect::<Vec<_>>(),
                cl.len()
            )));
        }
        if expects_continue {
            let _ = conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        read_chunked(conn, seen)?;
    } else if !cl.is_empty() {
        let valid = cl.len() == 1
            && !cl[0].is_empty()
            && cl[0].len() <= 12
            && cl[0].iter().all(u8::is_ascii_digit);
        if !valid {
            return Err(End::Malformed(format!(
                "Content-Length {:?}",
                cl.iter().map(|v| show(v, 40)).collect::<Vec<_>>()
            )));
        }
        let len: u64 = String::from_utf8_lossy(cl[0]).parse().unwrap_or(u64::MAX);
        if len > MAX_BODY {
            return Err(End::Malformed(format!("Content-Length {len} is absurd")));
        }
        if expects_continue && len > 0 {
            let _ = conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = Vec::new();
        let read = conn.take_into(&mut body, len as usize);
        seen.body = body;
        read?;
    }
    let connection: Vec<String> = seen
        .values("connection")
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .collect();
    let close = connection.iter().any(|t| t == "close")
        || (head.minor == 0 && !connection.iter().any(|t| t == "keep-alive"));
    Ok(close)
}

/// What httparse lets through and a proxy still must not send.
fn check_head(seen: &Seen) -> Result<(), String> {
    let head = &seen.head;
    if head.starts_with(b"\r") || head.starts_with(b"\n") {
        return Err("empty lines before the request line".into());
    }
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return Err(format!("bare LF at byte {i}"));
        }
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            return Err(format!("bare CR at byte {i}"));
        }
    }
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let parts: Vec<&[u8]> = head[..line_end].split(|&b| b == b' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "request line {} is not METHOD SP target SP version",
            show(&head[..line_end], 100)
        ));
    }
    check_target(&seen.method, &seen.target)?;
    for (name, value) in &seen.headers {
        if let Some(&b) = value
            .iter()
            .find(|&&b| !(b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80))
        {
            return Err(format!("header {name} has the control byte 0x{b:02x}"));
        }
    }
    let hosts = seen.values("host").len();
    if hosts > 1 || (seen.version == "HTTP/1.1" && hosts == 0) {
        return Err(format!(
            "{hosts} Host headers in an {} request",
            seen.version
        ));
    }
    Ok(())
}

/// RFC 9112 §3.2: what a gateway sends an origin is origin-form (or `*` for OPTIONS), in URI characters.
fn check_target(method: &str, target: &str) -> Result<(), String> {
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(format!("asterisk-form target for {method}"))
        };
    }
    if !target.starts_with('/') {
        return Err(format!("target {target:?} is not origin-form"));
    }
    let bytes = target.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(format!("target {target:?} has an invalid %-escape"));
            }
            i += 3;
            continue;
        }
        // RFC 3986: unreserved, sub-delims, ":", "@", "/" and "?" (the query's delimiter and content).
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b);
        if !allowed {
            return Err(format!("target {target:?} has the byte 0x{b:02x}"));
        }
        i += 1;
    }
    Ok(())
}

fn read_chunked(conn: &mut Conn, seen: &mut Seen) -> Result<(), End> {
    loop {
        let line = conn.line()?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 || !valid_chunk_ext(&line[digits..]) {
            return Err(End::Malformed(format!("chunk line {}", show(&line, 60))));
        }
        let size = u64::from_str_radix(&String::from_utf8_lossy(&line[..digits]), 16)
            .expect("at most 16 hex digits");
        if size == 0 {
            break;
        }
        if seen.body.len() as u64 + size > MAX_BODY {
            return Err(End::Malformed(format!("a chunk of {size} bytes")));
        }
        let mut body = std::mem::take(&mut seen.body);
        let read = conn.take_into(&mut body, size as usize);
        seen.body = body;
        read?;
        let mut crlf = Vec::new();
        conn.take_into(&mut crlf, 2)?;
        if crlf != b"\r\n" {
            return Err(End::Malformed(format!(
                "chunk data not followed by CRLF but {}",
                show(&crlf, 10)
            )));
        }
    }
    loop {
        let line = conn.line()?;
        if line.is_empty() {
            return Ok(());
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(End::Malformed(format!("trailer line {}", show(&line, 60))));
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(End::Malformed(format!("trailer name {}", show(name, 60))));
        }
        let value = line[colon + 1..].trim_ascii().to_vec();
        seen.trailers
            .push((String::from_utf8_lossy(name).into_owned(), value));
    }
}

/// `*( ";" token [ "=" ( token / quoted-string ) ] )` with no whitespace: what a sender may generate.
fn valid_chunk_ext(mut rest: &[u8]) -> bool {
    while let Some(after) = rest.strip_prefix(b";") {
        let name = after.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return false;
        }
        rest = &after[name..];
        if let Some(value) = rest.strip_prefix(b"=") {
            let len = if value.first() == Some(&b'"') {
                match quoted_len(value) {
                    Some(len) => len,
                    None => return false,
                }
            } else {
                value.iter().take_while(|&&b| is_tchar(b)).count()
            };
            if len == 0 {
                return false;
            }
            rest = &value[len..];
        }
    }
    rest.is_empty()
}

fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            b if b == b'\t' || b >= 0x20 && b != 0x7f => i += 1,
            _ => return None,
        }
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One response as the client read it.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of a header, in order, by case-insensitive name.
    pub fn header(&self, name: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.head)
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn status_line(&self) -> String {
        let end = self
            .head
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(self.head.len());
        String::from_utf8_lossy(&self.head[..end]).into_owned()
    }
}

enum Frame {
    Done(Response, usize),
    Partial,
    Bad(String),
}

/// Splits received bytes into responses, by the framing of RFC 9112 §6.3 (no HEAD is ever sent).
pub fn parse_responses(buf: &[u8], eof: bool) -> (Vec<Response>, Option<String>) {
    let mut responses = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match parse_response(&buf[at..], eof) {
            Frame::Done(response, used) => {
                responses.push(response);
                at += used;
            }
            Frame::Partial => return (responses, None),
            Frame::Bad(why) => return (responses, Some(why)),
        }
    }
    (responses, None)
}

fn parse_response(buf: &[u8], eof: bool) -> Frame {
    let mut headers = vec![httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if eof => {
            return Frame::Bad(format!("a response head cut short: {}", show(buf, 120)));
        }
        Ok(httparse::Status::Partial) => return Frame::Partial,
        Err(e) => return Frame::Bad(format!("not a response ({e}): {}", show(buf, 120))),
    };
    let status = resp.code.unwrap_or_default();
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let chunked = header("transfer-encoding").is_some_and(|te| te.ends_with("chunked"));
    let length = header("content-length").and_then(|cl| cl.parse::<usize>().ok());
    let head = buf[..len].to_vec();
    let rest = &buf[len..];
    let done = |body: Vec<u8>, used: usize| {
        Frame::Done(
            Response {
                status,
                head: head.clone(),
                body,
            },
            len + used,
        )
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return done(Vec::new(), 0);
    }
    if chunked {
        return match dechunk(rest) {
            Some((body, used)) => done(body, used),
            None if eof => Frame::Bad("a chunked response cut short".into()),
            None => Frame::Partial,
        };
    }
    match length {
        Some(n) if rest.len() >= n => done(rest[..n].to_vec(), n),
        Some(_) if eof => Frame::Bad("a response body cut short".into()),
        Some(_) => Frame::Partial,
        None if eof => done(rest.to_vec(), rest.len()),
        None => Frame::Partial,
    }
}

/// A chunked body and the bytes it took, or `None` while incomplete.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&buf[at..end]);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = end + 2;
        if size == 0 {
            loop {
                let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some((body, at));
                }
            }
        }
        body.extend_from_slice(buf.get(at..at + size)?);
        at += size + 2;
        if at > buf.len() {
            return None;
        }
    }
}

/// When a piece of a case's bytes is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Now,
    /// After a 1xx arrives (or a final response, or a second without either): `Expect: 100-continue`.
    AfterInterim,
    /// After the first final response, only if the connection is still open.
    AfterFinal,
}

/// When to stop reading.
pub struct Plan {
    /// Stop shortly after this many final responses.
    pub finals: usize,
    /// Having got them, wait for the proxy to close the connection.
    pub wait_close: bool,
    /// Stop when nothing arrives for this long: the proxy is waiting for bytes that will never come.
    pub idle: Duration,
}

/// What a client saw on one connection.
pub struct Exchange {
    pub responses: Vec<Response>,
    pub closed: bool,
    /// Bytes that are no HTTP response.
    pub garbage: Option<String>,
}

impl Exchange {
    pub fn finals(&self) -> Vec<&Response> {
        self.responses.iter().filter(|r| r.status >= 200).collect()
    }

    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .responses
            .iter()
            .map(|r| format!("{} {}", r.status_line(), show(&r.body, 60)))
            .collect();
        if parts.is_empty() {
            parts.push("no response".into());
        }
        if let Some(garbage) = &self.garbage {
            parts.push(format!("garbage: {garbage}"));
        }
        parts.push(if self.closed {
            "connection closed".into()
        } else {
            "connection open".into()
        });
        parts.join("; ")
    }
}

/// Connects, writes `sends` (each at its moment), and reads responses until `plan` says stop.
pub fn exchange(addr: SocketAddr, sends: &[(When, Vec<u8>)], plan: &Plan) -> Exchange {
    let stream = TcpStream::connect(addr).expect("connect to the proxy");
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone the socket");
    let (first, later): (Vec<_>, Vec<_>) = sends.iter().partition(|(w, _)| *w == When::Now);
    let first: Vec<u8> = first.iter().flat_map(|(_, b)| b.clone()).collect();
    std::thread::scope(|scope| {
        // A separate writer: a proxy may answer (and stop reading) before a large request is all sent.
        scope.spawn(move || {
            let _ = writer.write_all(&first);
        });
        let result = read_loop(&stream, &later, plan);
        let _ = stream.shutdown(Shutdown::Both);
        result
    })
}

fn read_loop(stream: &TcpStream, later: &[&(When, Vec<u8>)], plan: &Plan) -> Exchange {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut closed = false;
    let mut last_activity = Instant::now();
    let mut pending: Vec<&(When, Vec<u8>)> = later.to_vec();
    let mut enough_since: Option<Instant> = None;
    let mut chunk = [0u8; 65536];
    loop {
        match (&*stream).read(&mut chunk) {
            Ok(0) => closed = true,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                last_activity = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => closed = true,
        }
        let (responses, garbage) = parse_responses(&received, closed);
        let finals = responses.iter().filter(|r| r.status >= 200).count();
        let interim = responses.len() > finals;
        pending.retain(|(when, bytes)| {
            let due = match when {
                When::AfterInterim => {
                    interim || finals > 0 || start.elapsed() > Duration::from_secs(1)
                }
                When::AfterFinal => finals > 0 && !closed,
                When::Now => true,
            };
            if due {
                let _ = (&*stream).write_all(bytes);
                last_activity = Instant::now();
            }
            !due
        });
        if closed || garbage.is_some() {
            return Exchange {
                responses,
                closed,
                garbage,
            };
        }
        if finals >= plan.finals && pending.is_empty() {
            let since = *enough_since.get_or_insert_with(Instant::now);
            // Long enough to see a response the proxy should not have sent, or the close it should do.
            let wait = if plan.wait_close { 500 } else { 30 };
            if since.elapsed() > Duration::from_millis(wait) {
                return Exchange {
                    responses,
                    closed,
                    garbage,
                };
            }
        }
        if last_activity.elapsed() > plan.idle || start.elapsed() > Duration::from_secs(6) {
            return Exchange {
                responses,
                closed,
                garbage,
            };
        }
    }
}

/// What came on a connection until the proxy closed it, or until the time given ran out.
pub struct Drained {
    pub bytes: Vec<u8>,
    pub closed: bool,
}

impl Drained {
    pub fn responses(&self) -> Vec<Response> {
        parse_responses(&self.bytes, self.closed).0
    }
}

/// Reads `stream` until the proxy closes it (an end or a reset), for at most `within`.
pub fn read_until_closed(stream: &TcpStream, within: Duration) -> Drained {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match (&*stream).read(&mut chunk) {
            Ok(0) => {
                return Drained {
                    bytes,
                    closed: true,
                };
            }
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                return Drained {
                    bytes,
                    closed: true,
                };
            }
        }
    }
    Drained {
        bytes,
        closed: false,
    }
}

/// Reads one response from a connection that may stay open after it, for at most `within`.
pub fn read_response(stream: &TcpStream, within: Duration) -> Option<Response> {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(
                left.clamp(Duration::from_millis(1), Duration::from_millis(20)),
            ))
            .expect("read timeout");
        match (&*stream).read(&mut chunk) {
            Ok(0) => return parse_responses(&bytes, true).0.into_iter().next(),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return parse_responses(&bytes, true).0.into_iter().next(),
        }
        if let Some(response) = parse_responses(&bytes, false).0.into_iter().next() {
            return Some(response);
        }
    }
    None
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound").port()
}

/// An nginx master process with its own prefix and config; stopped on drop, also when a test panics.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// The `nginx` binary on PATH (or in /usr/sbin, where Debian puts it).
    pub fn binary() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    }

    /// Starts nginx with `config` (`{prefix}` replaced by its temporary directory) and waits until every
    /// port in `ports` accepts connections.
    pub fn start(config: &str, ports: &[u16]) -> Nginx {
        let binary = Nginx::binary().expect("nginx is not installed: run `make test-deps`");
        let dir = tempfile::tempdir().expect("tempdir");
        // Workers run as an unprivileged user when the tests run as root; they need to reach the prefix.
        let _ = std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        );
        let prefix = dir.path().display().to_string();
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config.replace("{prefix}", &prefix)).expect("write nginx.conf");
        let mut child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                let exited = child.try_wait().expect("nginx status");
                if exited.is_some() || Instant::now() > deadline {
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut stderr);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not start ({exited:?}):\n{stderr}\n{}",
                        read_log(&dir.path().join("error.log"))
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Nginx { child, dir }
    }

    pub fn error_log(&self) -> String {
        read_log(&self.dir.path().join("error.log"))
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master (fast shutdown) stops its workers too; SIGKILL would orphan them.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An nginx config for the tests: one worker in the foreground, its files under `{prefix}`, no access log,
/// and `http` holding what goes into the `http` block (`{prefix}` there is replaced too).
pub fn nginx_http(http: &str) -> String {
    format!(
        "worker_processes 1;\ndaemon off;\npid {{prefix}}/nginx.pid;\nerror_log {{prefix}}/error.log info;\n\
         events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{http}\n}}\n"
    )
}
