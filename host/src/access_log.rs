//! The access log: one line per request, as text or as JSON (`[server] access_log`), written when its
//! response has been sent or abandoned, through the process's log queue ([`crate::logging::access`]): a
//! stderr that cannot keep up costs dropped lines, never a blocked worker.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::config::AccessLog;
use crate::logging;

/// What a request spends where it is spent, for its line: the request body bytes read from the client,
/// and the time its plugins took. Shared with the request body and the body-hook tasks, which may outlive
/// the handler.
#[derive(Debug, Default)]
pub struct Tally {
    bytes_in: AtomicU64,
    plugin_ns: AtomicU64,
}

impl Tally {
    pub fn received(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn plugin_time(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.plugin_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub fn plugins(&self) -> Duration {
        Duration::from_nanos(self.plugin_ns.load(Ordering::Relaxed))
    }
}

/// One request's line, in the order the text line gives the fields and with the names the JSON uses.
#[derive(Serialize)]
pub struct Line<'a> {
    /// When the line was written: the response sent, or the client gone.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: &'a str,
    /// The request target as the client sent it, secret query values redacted ([`crate::redact::target`]).
    pub target: &'a str,
    /// The path in its normal form, as the route saw it; none for a request refused before that.
    pub path: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub status: u16,
    /// From the request head to the response head; none when the client left before it.
    pub head_us: Option<u64>,
    /// From the request head to the end of the response body.
    pub duration_us: u64,
    /// In plugin calls, the wait for an instance included.
    pub plugins_us: u64,
    /// Bytes of the request body read from the client.
    pub bytes_in: u64,
    /// Bytes of the response body handed to the client's connection.
    pub bytes_out: u64,
    /// With `[server.request_id]` only, so that a line without IDs keeps its fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_micros(*time))
}

/// Writes `line` in `format`; nothing when the log is off, or when the log's filter (`log_level`,
/// `RUST_LOG`) leaves out `info` on the `weir::access` target, as it would any line.
pub fn write(format: AccessLog, line: &Line<'_>) {
    if !tracing::enabled!(target: "weir::access", tracing::Level::INFO) {
        return;
    }
    let mut text = match format {
        AccessLog::Off => return,
        AccessLog::Text => text(line),
        // Every field is a string, a number or null: serialising cannot fail.
        AccessLog::Json => serde_json::to_string(line).unwrap_or_default(),
    };
    text.push('\n');
    logging::access(text.as_bytes());
}

/// The text line, laid out as Weir's other log lines are (time, level, target, message, `key=value`
/// fields, names quoted), with `-` for what a request did not get to. Its first fields are those of the
/// line before it had formats, in the same order, for whatever reads them.
fn text(line: &Line<'_>) -> String {
    let mut text = String::with_capacity(256);
    let head = line
        .head_us
        .map_or_else(|| "-".to_owned(), |us| us.to_string());
    // Writing to a `String` cannot fail.
    let _ = write!(
        text,
        "{}  INFO weir::access: {} {} {} client={} route={:?} upstream={:?} head_us={head} \
         duration_us={} plugins_us={} bytes_in={} bytes_out={} path={:?}",
        humantime::format_rfc3339_micros(line.time),
        line.method,
        line.target,
        line.status,
        line.client,
        line.route.unwrap_or("-"),
        line.upstream.unwrap_or("-"),
        line.duration_us,
        line.plugins_us,
        line.bytes_in,
        line.bytes_out,
        line.path.unwrap_or("-"),
    );
    if let Some(id) = line.request_id {
        let _ = write!(text, " request_id={id:?}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(target: &str) -> Line<'_> {
        Line {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_504_000_123_456),
            client: "127.0.0.1".parse().unwrap(),
            method: "POST",
            target,
            path: Some("/api/~x"),
            route: Some("api"),
            upstream: None,
            status: 502,
            head_us: Some(1000),
            duration_us: 1200,
            plugins_us: 300,
            bytes_in: 5,
            bytes_out: 21,
            request_id: None,
        }
    }

    #[test]
    fn text_and_json() {
        let target = "/api/%7Ex?q=1";
        assert_eq!(
            text(&line(target)),
            "2025-11-30T12:00:00.123456Z  INFO weir::access: POST /api/%7Ex?q=1 502 client=127.0.0.1 \
             route=\"api\" upstream=\"-\" head_us=1000 duration_us=1200 plugins_us=300 bytes_in=5 \
             bytes_out=21 path=\"/api/~x\""
        );
        assert_eq!(
            serde_json::to_string(&line(target)).unwrap(),
            r#"{"time":"2025-11-30T12:00:00.123456Z","client":"127.0.0.1","method":"POST","target":"/api/%7Ex?q=1","path":"/api/~x","route":"api","upstream":null,"status":502,"head_us":1000,"duration_us":1200,"plugins_us":300,"bytes_in":5,"bytes_out":21}"#
        );
        let with_id = Line {
            request_id: Some("4b1c…"),
            ..line(target)
        };
        assert!(text(&with_id).ends_with(r#" path="/api/~x" request_id="4b1c…""#));
        assert!(
            serde_json::to_string(&with_id)
                .unwrap()
                .ends_with(r#","bytes_out":21,"request_id":"4b1c…"}"#)
        );
    }
}
