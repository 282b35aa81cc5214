//! Where Weir's log goes, and what bounds it.
//!
//! Every line (access lines, Weir's own, plugins' output and failures) is handed to one writer thread
//! through a bounded queue, so a stderr that cannot keep up (a full pipe, a paused terminal, a slow log
//! collector) never blocks a tokio worker: when the queue is full a line is dropped and counted instead.
//! The count is kept for the metrics endpoint ([`dropped_lines`]) and reported on stderr at most once per
//! [`DROP_REPORT_PERIOD`].
//!
//! What a plugin can make Weir log is bounded per plugin entry by [`Throttle`]s kept in a registry
//! ([`plugin`]), so that a plugin failing on every request logs once per period, not once per request.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::sandbox::Label;

/// Lines queued for the writer thread. A line is one event (an access line is ~150 bytes, a plugin's line
/// at most [`crate::guest_output::MAX_LINE`] plus its tags), so the queue holds a few MiB in the usual
/// case and about 35 MiB if every line is a plugin's longest; at 50,000 requests a second with access
/// lines on, it absorbs a stall of stderr of about 160 ms before lines are dropped.
pub const BUFFERED_LINES: usize = 8192;

/// How often dropped lines are reported, and the window of every [`Throttle`] of plugin logging.
pub const DROP_REPORT_PERIOD: Duration = Duration::from_secs(10);

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The writer's queue, for access lines, which are formatted whole by [`crate::access_log`] rather than
/// by the subscriber.
static ACCESS: OnceLock<NonBlocking> = OnceLock::new();

/// Queues one access line (ending in a newline) behind the others, or drops and counts it when the queue
/// is full, as any line; before [`init`], nothing is written.
pub fn access(line: &[u8]) {
    if let Some(writer) = ACCESS.get() {
        // One `write` is one queued line; the lossy writer never fails.
        let _ = writer.make_writer().write_all(line);
    }
}

/// Lines dropped because the writer thread fell behind, since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Keeps the writer thread alive; dropping it flushes the queued lines (for up to a second) and reports
/// any drops not reported yet. Hold it until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct Guard {
    worker: Option<WorkerGuard>,
    reported: Arc<AtomicU64>,
    ansi: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        drop(self.worker.take());
        report_drops(&self.reported, self.ansi);
    }
}

/// Sets up the process's log: `RUST_LOG` if set, otherwise `level`, through the non-blocking writer.
pub fn init(level: &str) -> Guard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::stderr().is_terminal();
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("weir-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    let _ = ACCESS.set(writer.clone());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .init();
    let reported = Arc::new(AtomicU64::new(0));
    let watched = reported.clone();
    // A thread of its own: the report is written to stderr directly, which blocks while stderr is stuck,
    // and that is exactly when there is something to report.
    let spawned = std::thread::Builder::new()
        .name("weir-log-drops".into())
        .spawn(move || {
            loop {
                std::thread::sleep(DROP_REPORT_PERIOD);
                report_drops(&watched, ansi);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the thread that reports dropped log lines: {e}");
    }
    Guard {
        worker: Some(worker),
        reported,
        ansi,
    }
}

/// Writes a warning straight to stderr, past the queue that is dropping lines, if more were dropped since
/// the last report.
fn report_drops(reported: &AtomicU64, ansi: bool) {
    let dropped = dropped_lines();
    let before = reported.swap(dropped, Ordering::Relaxed);
    // The filter of the process's log decides, as for any warning; this thread has no other subscriber.
    if dropped <= before || !tracing::enabled!(target: "weir::log", tracing::Level::WARN) {
        return;
    }
    let direct = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .finish();
    tracing::subscriber::with_default(direct, || {
        tracing::warn!(
            target: "weir::log",
            dropped = dropped - before,
            total = dropped,
            "{} log lines dropped: stderr did not keep up",
            thousands(dropped - before)
        );
    });
}

/// A fixed-window limit on one kind of log line: the first `limit` lines of each period are logged, the
/// rest only counted, and the next line logged carries that count so that the log still says how many.
pub struct Throttle {
    limit: u32,
    period: Duration,
    window: Mutex<Window>,
}

struct Window {
    start: Option<Instant>,
    passed: u32,
    held: u64,
}

impl Throttle {
    pub const fn new(limit: u32, period: Duration) -> Throttle {
        Throttle {
            limit,
            period,
            window: Mutex::new(Window {
                start: None,
                passed: 0,
                held: 0,
            }),
        }
    }

    /// `Some(n)` when this line may be logged, `n` being the lines held back since the last one logged;
    /// `None` when it is to be held back (and counted).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        // The window is a few integers that every path leaves consistent, so a poisoned lock is still sound.
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.period)
        {
            window.start = Some(now);
            window.passed = 0;
        }
        if window.passed < self.limit {
            window.passed += 1;
            Some(std::mem::take(&mut window.held))
        } else {
            window.held += 1;
            None
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }
}

/// The log budgets of one plugin entry (route and plugin), shared by all its instances, and what they
/// held back.
pub struct PluginLog {
    /// Lines of stdout, stderr and the `log` interface.
    pub output: Throttle,
    /// Reports of a failed call (trap, CPU or memory limit): the first of each period in full, with its
    /// backtrace.
    pub failures: Throttle,
    /// "No instance available" warnings: the proxy is overloaded, every request of the entry would say so.
    pub overloads: Throttle,
    lines_held: AtomicU64,
    bytes_cut: AtomicU64,
    failures_held: AtomicU64,
}

impl PluginLog {
    fn new() -> PluginLog {
        PluginLog {
            output: Throttle::new(PLUGIN_LINES_PER_PERIOD, DROP_REPORT_PERIOD),
            failures: Throttle::new(PLUGIN_FAILURES_PER_PERIOD, DROP_REPORT_PERIOD),
            overloads: Throttle::new(PLUGIN_FAILURES_PER_PERIOD, DROP_REPORT_PERIOD),
            lines_held: AtomicU64::new(0),
            bytes_cut: AtomicU64::new(0),
            failures_held: AtomicU64::new(0),
        }
    }

    /// What this entry's budgets held back since the process started; for the metrics endpoint.
    pub fn stats(&self) -> PluginLogStats {
        PluginLogStats {
            lines_held: self.lines_held.load(Ordering::Relaxed),
            bytes_cut: self.bytes_cut.load(Ordering::Relaxed),
            failures_held: self.failures_held.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_line_held(&self) {
        self.lines_held.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_bytes_cut(&self, bytes: usize) {
        self.bytes_cut.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_failure_held(&self) {
        self.failures_held.fetch_add(1, Ordering::Relaxed);
    }
}

/// Lines of output a plugin entry may log per [`DROP_REPORT_PERIOD`].
pub const PLUGIN_LINES_PER_PERIOD: u32 = 100;

/// Failures of a plugin entry logged in full per [`DROP_REPORT_PERIOD`].
pub const PLUGIN_FAILURES_PER_PERIOD: u32 = 1;

/// Route name, then plugin label: looked up with borrowed names, without allocating.
type Registry = RwLock<HashMap<String, HashMap<String, Arc<PluginLog>>>>;

fn registry() -> &'static Registry {
    static PLUGINS: OnceLock<Registry> = OnceLock::new();
    PLUGINS.get_or_init(Default::default)
}

/// The log budgets of the plugin entry `label` names. Kept by name, not per loaded slot, so that an entry
/// keeps its budget across a reload; the registry grows only with new route and plugin names.
pub fn plugin(label: &Label) -> Arc<PluginLog> {
    let plugins = registry();
    let found = plugins
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&label.route)
        .and_then(|route| route.get(&label.plugin))
        .cloned();
    if let Some(log) = found {
        return log;
    }
    plugins
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(label.route.clone())
        .or_default()
        .entry(label.plugin.clone())
        .or_insert_with(|| Arc::new(PluginLog::new()))
        .clone()
}

/// What plugins tried to log but did not get logged, since the process started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PluginLogStats {
    /// Lines of output over an entry's [`PLUGIN_LINES_PER_PERIOD`].
    pub lines_held: u64,
    /// Bytes cut from lines longer than [`crate::guest_output::MAX_LINE`].
    pub bytes_cut: u64,
    /// Failures logged only as a count.
    pub failures_held: u64,
}

/// The sum over every plugin entry; [`PluginLog::stats`] gives one entry's.
pub fn plugin_log_stats() -> PluginLogStats {
    let plugins = registry().read().unwrap_or_else(PoisonError::into_inner);
    plugins
        .values()
        .flat_map(HashMap::values)
        .map(|log| log.stats())
        .fold(PluginLogStats::default(), |sum, one| PluginLogStats {
            lines_held: sum.lines_held + one.lines_held,
            bytes_cut: sum.bytes_cut + one.bytes_cut,
            failures_held: sum.failures_held + one.failures_held,
        })
}

/// `2341` as `2,341`: counts in log lines are read by people.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_passes_its_limit_per_window_and_carries_the_count() {
        let throttle = Throttle::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(throttle.admit_at(t0), Some(0));
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(1)), Some(0));
        for s in 2..10 {
            assert_eq!(throttle.admit_at(t0 + Duration::from_secs(s)), None);
        }
        // A new window: the eight held back are reported once, with the first line logged.
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(10)), Some(8));
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(12)), None);
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(3600)), Some(1));
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2341), "2,341");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn entries_are_told_apart_by_route_and_plugin() {
        let label = |route: &str, plugin: &str| Label {
            route: route.into(),
            plugin: plugin.into(),
        };
        let a = plugin(&label("logging-test-a", "plugin #1 (x)"));
        let again = plugin(&label("logging-test-a", "plugin #1 (x)"));
        let b = plugin(&label("logging-test-b", "plugin #1 (x)"));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!Arc::ptr_eq(&a, &b));
    }
}
