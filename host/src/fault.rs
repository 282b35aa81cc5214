//! Whose fault a failed request was, and the one place that turns that into a status code. Details go to
//! the log; the client gets a short plain-text body and nothing of the plugin's internals.

use http::{Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::plugin::PluginError;
use crate::sandbox::Label;
use crate::upstream::UpstreamError;

pub enum Fault<'a> {
    NoRoute,
    BodyTooLarge,
    Upstream(&'a UpstreamError),
    Plugin {
        label: &'a Label,
        error: &'a PluginError,
    },
}

/// The response for a fault.
pub fn error_response(fault: &Fault<'_>) -> Response<ProxyBody> {
    let (status, text) = report(fault);
    let mut response = Response::new(ProxyBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Logs the fault's details and gives the status and the short text the client sees.
pub fn report(fault: &Fault<'_>) -> (StatusCode, &'static str) {
    match fault {
        Fault::NoRoute => (StatusCode::NOT_FOUND, "no route for this request\n"),
        Fault::BodyTooLarge | Fault::Upstream(UpstreamError::BodyTooLarge) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
        }
        Fault::Upstream(e @ UpstreamError::Unreachable { .. }) => {
            tracing::warn!("{e}");
            (StatusCode::BAD_GATEWAY, "upstream unreachable\n")
        }
        Fault::Upstream(e @ UpstreamError::Timeout { .. }) => {
            tracing::warn!("{e}");
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n")
        }
        Fault::Plugin { label, error } if error.is_overload() => {
            tracing::warn!(route = %label.route, plugin = %label.plugin, "no plugin instance available: {error}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "proxy overloaded, try again\n",
            )
        }
        Fault::Plugin { label, error } => {
            tracing::error!(route = %label.route, plugin = %label.plugin, "plugin failed: {error}");
            (StatusCode::INTERNAL_SERVER_ERROR, "plugin error\n")
        }
    }
}
