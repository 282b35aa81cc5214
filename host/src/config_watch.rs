//! `[server] watch_config`: the config file read every so often and reloaded once its bytes change, for
//! deployments that replace the file but cannot signal the process. A Kubernetes ConfigMap volume is one:
//! the kubelet swaps a symlink, and nothing tells the container.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::MissedTickBehavior;

use crate::reload::Control;

/// Reloads the config whenever the file's bytes differ from the running generation's and from the last
/// text tried: a config that was refused is tried again only once it changes.
pub async fn watch(control: Arc<Control>, every: Duration) {
    let mut tried = digest(control.running_text().await.as_bytes());
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A file being replaced may be missing for a moment: the next tick sees the new one.
        let Ok(bytes) = tokio::fs::read(control.file()).await else {
            continue;
        };
        let now = digest(&bytes);
        if now == tried || now == digest(control.running_text().await.as_bytes()) {
            continue;
        }
        tried = now;
        tracing::info!(file = %control.file().display(), "the config file changed: reloading");
        // The outcome is logged by the reload itself.
        let _ = control.reload().await;
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
