//! Whose fault a failed request was, and the one place that turns that into a status code. Details go to
//! the log; the client gets a short plain-text body and nothing of the plugin's internals.
//!
//! A plugin that fails on every request would write its backtrace into the log on every request: its
//! failures are logged in full once per period per plugin entry, and counted in between (see
//! [`crate::logging::Throttle`]).

use std::borrow::Cow;

use http::{Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::inbound::{ALLOW, Refusal};
use crate::logging;
use crate::plugin::PluginError;
use crate::sandbox::Label;
use crate::upstream::UpstreamError;
use crate::websocket;

pub enum Fault<'a> {
    NoRoute,
    BodyTooLarge,
    /// The route serves only clients that showed a verified certificate, and this one showed none.
    NoClientCert,
    /// The connection's client no longer passes the listener's check of clients' certificates: a reload
    /// changed the check, or a certificate of its chain, a `client_ca` certificate or a revocation list
    /// expired since its handshake.
    CheckedAnew,
    /// The request head broke the protocol's rules.
    Client(&'a Refusal),
    Upstream(&'a UpstreamError),
    Plugin {
        label: &'a Label,
        error: &'a PluginError,
    },
    /// A WebSocket upgrade the route cannot carry.
    Upgrade(&'a websocket::Refused),
    /// A bug in Weir, reported instead of a panic.
    Internal(&'static str),
}

/// The response for a fault.
pub fn error_response(fault: &Fault<'_>) -> Response<ProxyBody> {
    let (status, text) = report(fault);
    let body = match text {
        Cow::Borrowed(text) => ProxyBody::full(text),
        Cow::Owned(text) => ProxyBody::full(text),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match fault {
        Fault::Client(Refusal::Trace) => {
            headers.insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
        }
        // After a broken body or a tunnel request the next bytes on the connection cannot be trusted to
        // start a request: nothing more is read from it. A head too large is closed on as the parser's
        // own 431 is.
        Fault::Client(
            Refusal::Connect
            | Refusal::ConnectWithoutAuthority
            | Refusal::ChunkedTwice
            | Refusal::HeadTooLarge(_),
        )
        | Fault::Upstream(UpstreamError::ClientBody(_) | UpstreamError::ClientBodyTimeout(_)) => {
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        _ => {}
    }
    response
}

/// Logs the fault's details and gives the status and the short text the client sees.
pub fn report(fault: &Fault<'_>) -> (StatusCode, Cow<'static, str>) {
    match fault {
        Fault::NoRoute => (StatusCode::NOT_FOUND, "no route for this request\n".into()),
        Fault::BodyTooLarge | Fault::Upstream(UpstreamError::BodyTooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n".into(),
        ),
        // No HTTP challenge can ask for a certificate, so not 401; nginx's `ssl_verify_client optional` with
        // a check of `$ssl_client_verify` answers the same.
        Fault::NoClientCert => (
            StatusCode::FORBIDDEN,
            "a client certificate is required\n".into(),
        ),
        // RFC 9110 §15.5.20: a client may send the request again over another connection, whose handshake
        // the new check makes.
        Fault::CheckedAnew => (
            StatusCode::MISDIRECTED_REQUEST,
            "this connection's client certificate no longer passes the listener's check: connect again\n"
                .into(),
        ),
        Fault::Client(refusal) => {
            // A client's mistake is not the proxy's trouble: debug, so a noisy client cannot flood the log.
            tracing::debug!("request refused: {refusal}");
            let status = match refusal {
                Refusal::Connect => StatusCode::NOT_IMPLEMENTED,
                Refusal::Trace => StatusCode::METHOD_NOT_ALLOWED,
                Refusal::Expectation(_) => StatusCode::EXPECTATION_FAILED,
                Refusal::TargetTooLong(_) => StatusCode::URI_TOO_LONG,
                Refusal::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, format!("{refusal}\n").into())
        }
        // The route's config, not the client, is why: RFC 9110 §15.6.2, see crate::websocket.
        Fault::Upgrade(refused) => {
            tracing::debug!("upgrade refused: {refused}");
            (StatusCode::NOT_IMPLEMENTED, format!("{refused}\n").into())
        }
        Fault::Upstream(e @ UpstreamError::ClientBody(_)) => {
            tracing::debug!("{e}");
            (StatusCode::BAD_REQUEST, "malformed request body\n".into())
        }
        Fault::Upstream(e @ UpstreamError::ClientBodyTimeout(_)) => {
            tracing::debug!("{e}");
            (
                StatusCode::REQUEST_TIMEOUT,
                "request body timed out\n".into(),
            )
        }
        Fault::Upstream(e @ UpstreamError::Target(_)) => {
            tracing::error!("{e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot form the upstream request\n".into(),
            )
        }
        Fault::Upstream(e @ UpstreamError::Unreachable { .. }) => {
            tracing::warn!("{e}");
            (StatusCode::BAD_GATEWAY, "upstream unreachable\n".into())
        }
        // The client learns that TLS failed, not why: the certificate's names and issuer are the operator's.
        Fault::Upstream(e @ UpstreamError::Tls { .. }) => {
            tracing::warn!("{e}");
            (
                StatusCode::BAD_GATEWAY,
                "upstream TLS handshake failed\n".into(),
            )
        }
        // Word for word what the analytics server's `/proxy` answered with no target configured, without
        // the newline of the other texts: the clients it replaces may compare the body.
        Fault::Upstream(e @ UpstreamError::Disabled { .. }) => {
            tracing::debug!("{e}");
            (StatusCode::NOT_IMPLEMENTED, "The proxy is disabled.".into())
        }
        Fault::Upstream(e @ UpstreamError::Timeout { .. }) => {
            tracing::warn!("{e}");
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n".into())
        }
        // Overload, not a broken upstream: 503, which a client may try again (RFC 9110 §15.6.4).
        Fault::Upstream(e @ UpstreamError::Busy { .. }) => {
            tracing::warn!("{e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream busy, try again\n".into(),
            )
        }
        Fault::Plugin { label, error } if error.is_overload() => {
            let log = logging::plugin(label);
            if let Some(held) = log.overloads.admit() {
                let more = more_times(held, log.overloads.period());
                tracing::warn!(route = %label.route, plugin = %label.plugin, "no plugin instance available{more}: {error}");
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "proxy overloaded, try again\n".into(),
            )
        }
        Fault::Plugin { label, error } => {
            let log = logging::plugin(label);
            match log.failures.admit() {
                Some(held) => {
                    let more = more_times(held, log.failures.period());
                    tracing::error!(route = %label.route, plugin = %label.plugin, "plugin failed{more}: {error}");
                }
                None => log.count_failure_held(),
            }
            (StatusCode::INTERNAL_SERVER_ERROR, "plugin error\n".into())
        }
        Fault::Internal(what) => {
            tracing::error!("internal error: {what}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
        }
    }
}

/// Logs a failure of a plugin whose `on_error` is `skip`, under the same limit as the failures that fail
/// their request: once in full per period, counted in between.
pub fn report_skipped(label: &Label, error: &PluginError) {
    let log = logging::plugin(label);
    match log.failures.admit() {
        Some(held) => {
            let more = more_times(held, log.failures.period());
            tracing::warn!(route = %label.route, plugin = %label.plugin, "plugin skipped (on_error = \"skip\"), its changes undone{more}: {error}");
        }
        None => log.count_failure_held(),
    }
}

/// What a throttled line adds when others were held back before it: ` (and 2,341 more times in the 10 s
/// after the last one logged)`. Held lines all fall in the window that began with the last one logged.
fn more_times(held: u64, period: std::time::Duration) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(
            " (and {} more times in the {} s after the last one logged)",
            logging::thousands(held),
            period.as_secs()
        )
    }
}

/// An error and its causes, outermost first.
pub fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// True if `err` or one of its causes is an `E`: body errors reach the proxy as causes of hyper's errors.
pub fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|e| e.is::<E>())
}

/// `outer: cause: root cause`, for the log.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    causes(err)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
