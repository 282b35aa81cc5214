//! A plugin's stdout and stderr go to the log, tagged with its route and plugin: that is where a Rust panic
//! message ends up, so a trap in the log comes with its reason.
//!
//! What a plugin can make Weir log is bounded: a line is cut at [`MAX_LINE`] bytes, and each plugin entry
//! logs at most [`logging::PLUGIN_LINES_PER_PERIOD`] lines per [`logging::DROP_REPORT_PERIOD`] across its
//! stdout, stderr and the `log` interface ([`log`]); lines past that are counted, and the next line logged
//! is preceded by how many were not.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tracing::Level;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logging::{self, PluginLog};
use crate::sandbox::Label;

/// The longest line of a plugin's output that is logged; the rest of the line is dropped and counted. Long
/// enough for any message meant for a person, short enough that a plugin printing a body cannot fill the log.
pub const MAX_LINE: usize = 4 << 10;

/// How much a plugin may write to stdout or stderr per `write` call: the permit a WASI stream grants, which
/// bounds what the host copies out of the plugin at once.
const WRITE_PERMIT: usize = 64 << 10;

#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One of a plugin's output streams, as given to its WASI context.
pub struct GuestOutput {
    pub label: Arc<Label>,
    pub stream: Stream,
}

impl GuestOutput {
    fn lines(&self) -> Lines {
        Lines {
            log: logging::plugin(&self.label),
            label: self.label.clone(),
            stream: self.stream,
            line: Vec::new(),
            skipping: false,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    // Written to directly, without the default adapter's task and 8 KiB pipe: logging a line never waits.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.lines())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.lines())
    }
}

/// An open output stream of one instance: bytes are gathered into lines, each logged as it ends.
struct Lines {
    label: Arc<Label>,
    log: Arc<PluginLog>,
    stream: Stream,
    /// The line so far, at most [`MAX_LINE`] bytes.
    line: Vec<u8>,
    /// The line was logged cut at [`MAX_LINE`]; its bytes up to the next newline are dropped.
    skipping: bool,
}

impl Lines {
    fn take(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            if self.skipping {
                self.log.count_bytes_cut(text.len());
            } else {
                let keep = text.len().min(MAX_LINE - self.line.len());
                self.line.extend_from_slice(&text[..keep]);
                if self.line.len() == MAX_LINE && (keep < text.len() || !ends) {
                    self.log.count_bytes_cut(text.len() - keep);
                    self.emit(true);
                    self.skipping = true;
                }
            }
            if ends {
                if !self.skipping {
                    self.emit(false);
                }
                self.skipping = false;
            }
        }
    }

    fn emit(&mut self, cut: bool) {
        let line = String::from_utf8_lossy(&self.line);
        let line = line.trim_end_matches('\r');
        if !line.trim().is_empty() {
            let (level, stream) = match self.stream {
                Stream::Stdout => (Level::INFO, "stdout"),
                Stream::Stderr => (Level::WARN, "stderr"),
            };
            let cut = if cut { CUT_MARK } else { "" };
            emit(
                &self.label,
                &self.log,
                level,
                format_args!("{stream}: {line}{cut}"),
            );
        }
        self.line.clear();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.line.is_empty() && !self.skipping {
            self.emit(false);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Lines {
    async fn ready(&mut self) {}
}

impl OutputStream for Lines {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for Lines {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().take(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const CUT_MARK: &str = " [cut: line longer than 4096 bytes]";

/// Logs a message a plugin gave the `log` interface, under the same bounds as its stdout and stderr: the
/// message cut at [`MAX_LINE`] bytes, and counted against the entry's lines per period.
pub fn log(label: &Label, level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    let budget = logging::plugin(label);
    if message.len() <= MAX_LINE {
        emit(label, &budget, level, format_args!("{message}"));
    } else {
        let mut end = MAX_LINE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        budget.count_bytes_cut(message.len() - end);
        let kept = &message[..end];
        emit(label, &budget, level, format_args!("{kept}{CUT_MARK}"));
    }
}

/// True when a plugin's line at `level` would be logged: a line the filter drops costs no budget.
pub fn enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: "weir::plugin", Level::ERROR),
        Level::WARN => tracing::enabled!(target: "weir::plugin", Level::WARN),
        Level::INFO => tracing::enabled!(target: "weir::plugin", Level::INFO),
        Level::DEBUG => tracing::enabled!(target: "weir::plugin", Level::DEBUG),
        Level::TRACE => tracing::enabled!(target: "weir::plugin", Level::TRACE),
    }
}

fn emit(label: &Label, log: &PluginLog, level: Level, line: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let Some(held) = log.output.admit() else {
        log.count_line_held();
        return;
    };
    let (route, plugin) = (&label.route, &label.plugin);
    if held > 0 {
        tracing::warn!(
            target: "weir::plugin",
            route,
            plugin,
            "{} lines of this plugin's output not logged: over {} lines per {} s",
            logging::thousands(held),
            logging::PLUGIN_LINES_PER_PERIOD,
            log.output.period().as_secs()
        );
    }
    match level {
        Level::ERROR => tracing::error!(target: "weir::plugin", route, plugin, "{line}"),
        Level::WARN => tracing::warn!(target: "weir::plugin", route, plugin, "{line}"),
        Level::INFO => tracing::info!(target: "weir::plugin", route, plugin, "{line}"),
        Level::DEBUG => tracing::debug!(target: "weir::plugin", route, plugin, "{line}"),
        Level::TRACE => tracing::trace!(target: "weir::plugin", route, plugin, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Each test's stream is its own plugin entry, with a budget of its own.
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// Lines of a stream whose output is captured instead of logged.
    fn lines_of(writes: &[&[u8]]) -> (Vec<String>, u64) {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || CaptureWriter(sink.clone()))
            .finish();
        let mut cut = 0;
        tracing::subscriber::with_default(subscriber, || {
            let output = GuestOutput {
                label: Arc::new(Label {
                    route: format!("guest-output-test-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
                    plugin: "plugin #1 (test)".into(),
                }),
                stream: Stream::Stdout,
            };
            let mut lines = output.lines();
            for write in writes {
                lines.take(write);
            }
            cut = lines.log.stats().bytes_cut;
        });
        let text = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
        let lines = text
            .lines()
            .map(|l| {
                let text = l.split_once("stdout: ").map_or(l, |(_, t)| t);
                text.rsplit_once(" route=")
                    .map_or(text, |(t, _)| t)
                    .to_owned()
            })
            .collect();
        (lines, cut)
    }

    struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CaptureWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_split_across_writes_are_logged_whole() {
        let (lines, _) = lines_of(&[b"a ", b"42", b" b\nsecond\r\n\n  \nthi", b"rd\nunfinished"]);
        assert_eq!(lines, ["a 42 b", "second", "third", "unfinished"]);
    }

    #[test]
    fn a_long_line_is_cut_and_the_rest_counted() {
        let long = vec![b'x'; MAX_LINE + 100];
        let (lines, cut) = lines_of(&[&long, b"yyy\nnext\n"]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            CUT_MARK.contains(&MAX_LINE.to_string()),
            "the mark names the limit"
        );
        assert_eq!(lines[0], format!("{}{CUT_MARK}", "x".repeat(MAX_LINE)));
        assert_eq!(lines[1], "next");
        assert!(cut >= 103, "{cut}");
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_not_cut() {
        let mut exact = vec![b'z'; MAX_LINE];
        exact.push(b'\n');
        let (lines, cut) = lines_of(&[&exact]);
        assert_eq!(lines, ["z".repeat(MAX_LINE)]);
        assert_eq!(cut, 0);
    }

    #[test]
    fn lines_over_the_budget_are_counted_and_reported_later() {
        let many: Vec<u8> = (0..PLUGIN_LINES_TEST)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let (lines, _) = lines_of(&[&many]);
        assert_eq!(lines.len(), logging::PLUGIN_LINES_PER_PERIOD as usize);
        assert_eq!(lines.last().map(String::as_str), Some("line 99"));
    }

    const PLUGIN_LINES_TEST: u32 = logging::PLUGIN_LINES_PER_PERIOD + 50;
}
