//! Active health checks: a task per upstream that asks every endpoint `GET path` each `interval` and takes
//! an endpoint out after `unhealthy` failed checks in a row, back in after `healthy` passed ones.
//!
//! The task belongs to the generation of the config that made it: the upstream holds its [`Checks`], which
//! aborts it when dropped, so a reload that drops the upstream (once its last request has ended) stops its
//! checks, and a reload never leaves a task behind. The task holds the endpoints and the transport, never the
//! upstream itself, or the upstream would keep itself alive.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Limited};
use tokio::task::{JoinHandle, JoinSet};

use super::endpoints::{Endpoint, Endpoints};
use super::outbound::Outbound;
use super::path_and_query;
use super::transport::Transport;
use crate::config::upstream::HealthCheck;

/// A health check's answer is read whole (so the connection can be reused), up to this much.
const MAX_CHECK_BODY: usize = 64 << 10;

/// The running checks of one upstream, stopped when dropped.
pub struct Checks(JoinHandle<()>);

impl Drop for Checks {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts checking `endpoints`; `None` outside a tokio runtime (a unit test), where nothing could run it.
pub fn start(
    upstream: Arc<str>,
    endpoints: Arc<Endpoints>,
    transport: Transport,
    check: HealthCheck,
) -> Option<Checks> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    Some(Checks(
        runtime.spawn(run(upstream, endpoints, transport, check)),
    ))
}

async fn run(
    upstream: Arc<str>,
    endpoints: Arc<Endpoints>,
    transport: Transport,
    check: HealthCheck,
) {
    // Checks passed (positive) or failed (negative) in a row, per endpoint.
    let mut streaks = vec![0i64; endpoints.list().len()];
    loop {
        // The first round after one interval: `weir check` loads upstreams too, and exits long before.
        tokio::time::sleep(check.interval).await;
        let mut round = JoinSet::new();
        for (index, endpoint) in endpoints.list().iter().enumerate() {
            let probe = probe(&transport, endpoint, &check);
            round.spawn(async move { (index, probe.await) });
        }
        while let Some(done) = round.join_next().await {
            let Ok((index, passed)) = done else { continue };
            let (Some(streak), Some(endpoint)) =
                (streaks.get_mut(index), endpoints.list().get(index))
            else {
                continue;
            };
            *streak = match (passed, *streak) {
                (true, n) if n > 0 => n.saturating_add(1),
                (true, _) => 1,
                (false, n) if n < 0 => n.saturating_sub(1),
                (false, _) => -1,
            };
            judge(&upstream, endpoint, *streak, &check);
        }
    }
}

/// Takes the endpoint out or brings it back when its streak reaches a threshold.
fn judge(upstream: &str, endpoint: &Endpoint, streak: i64, check: &HealthCheck) {
    let up = endpoint.health.checked_up();
    if up && streak <= -i64::from(check.unhealthy) {
        endpoint.health.set_checked(false);
        tracing::warn!(
            "upstream \"{upstream}\": endpoint {} is out: {} health checks of {} failed in a row",
            endpoint.label,
            check.unhealthy,
            check.path
        );
    } else if !up && streak >= i64::from(check.healthy) {
        endpoint.health.set_checked(true);
        tracing::info!(
            "upstream \"{upstream}\": endpoint {} is back in: {} health checks passed in a row",
            endpoint.label,
            check.healthy
        );
    }
}

/// One check: a 2xx answer, read whole, within the timeout.
fn probe(
    transport: &Transport,
    endpoint: &Endpoint,
    check: &HealthCheck,
) -> impl Future<Output = bool> + Send + 'static {
    let request = check_request(endpoint, &check.path);
    let transport = transport.clone();
    let idle = endpoint.idle.clone();
    let timeout: Duration = check.timeout;
    async move {
        let Some(request) = request else {
            return false;
        };
        let exchange = async {
            let response = transport.send(&idle, request).await.ok()?;
            let passed = response.status().is_success();
            Limited::new(response.into_body(), MAX_CHECK_BODY)
                .collect()
                .await
                .ok()?;
            Some(passed)
        };
        matches!(
            tokio::time::timeout(timeout, exchange).await,
            Ok(Some(true))
        )
    }
}

fn check_request(endpoint: &Endpoint, path: &str) -> Option<Request<Outbound>> {
    let uri = Uri::builder()
        .scheme(endpoint.url.scheme.clone())
        .authority(endpoint.url.authority.clone())
        .path_and_query(path_and_query(&endpoint.url.base_path, path, None))
        .build()
        .ok()?;
    let mut request = Request::new(Outbound::empty());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let host = HeaderValue::from_str(endpoint.url.authority.as_str()).ok()?;
    headers.insert(header::HOST, host);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("weir-health-check"),
    );
    Some(request)
}
