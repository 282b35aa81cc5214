//! A plugin's stdout and stderr go to the log, tagged with its route and plugin: that is where a Rust panic
//! message ends up, so a trap in the log comes with its reason.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::sandbox::Label;

#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One of a plugin's output streams, logged line by line as it is written.
pub struct GuestOutput {
    pub label: Arc<Label>,
    pub stream: Stream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(GuestOutput {
            label: self.label.clone(),
            stream: self.stream,
        })
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let text = String::from_utf8_lossy(bytes);
        let (route, plugin) = (&self.label.route, &self.label.plugin);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match self.stream {
                Stream::Stdout => {
                    tracing::info!(target: "weir::plugin", route, plugin, "stdout: {line}")
                }
                Stream::Stderr => {
                    tracing::warn!(target: "weir::plugin", route, plugin, "stderr: {line}")
                }
            }
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
