//! The valid range of every number, size and duration in the config, and why each end is where it is.
//!
//! [`super::Source::validate`] holds every value to these, and `weir check` and `weir run` both run it, so
//! no value that check accepts can make run panic or fail: each limit is the point past which something
//! below Weir (tokio, wasmtime, the address space) would refuse the value or quietly mean something else.

use std::time::Duration;

use super::ByteSize;
use crate::sandbox::EPOCH_TICK;

/// An inclusive range, with the reason for an end when it is not plain "zero means nothing".
pub struct Bounds<T> {
    pub min: T,
    pub max: T,
    min_reason: Option<&'static str>,
    max_reason: Option<&'static str>,
}

/// Tokio worker threads. Tokio asserts on 0. Each worker is an OS thread polling for work, so more than the
/// machine's cores only adds contention; 1024 is beyond any machine Weir is meant for, while a typo such as
/// `workers = 80000` would spawn threads until the OS refuses and tokio panics.
pub const WORKERS: Bounds<usize> = Bounds {
    min: 1,
    max: 1024,
    min_reason: None,
    max_reason: None,
};

/// Plugin instances alive at once. Every slot of wasmtime's pooling allocator reserves a 4 GiB
/// static-memory region and a 32 MiB guard (wasmtime's 64-bit defaults), whatever `max_plugin_memory` is:
/// 16384 slots are 64.5 TiB of address space, half of the 128 TiB a process has with 4-level paging; on
/// this kind of machine 30000 slots (118 TiB) already fail to map. A machine with less address space, or a
/// `ulimit -v`, can refuse fewer: that is reported against this field when the sandbox is built.
pub const MAX_INSTANCES: Bounds<u32> = Bounds {
    min: 1,
    max: 16384,
    min_reason: None,
    max_reason: Some("each instance reserves 4GiB + 32MiB of address space"),
};

/// One plugin entry's instances busy at once: at least one, or it could never run; at most what the whole
/// sandbox can reserve.
pub const ENTRY_INSTANCES: Bounds<u32> = Bounds {
    min: 1,
    max: MAX_INSTANCES.max,
    min_reason: None,
    max_reason: Some("the sandbox's own limit"),
};

/// A plugin's linear memory, and the largest any plugin may have. Wasm memory grows in 64 KiB pages, so
/// less than one page can hold nothing; a wasm32 memory addresses at most 4 GiB, which is also the pooling
/// allocator's reservation per slot (wasmtime refuses to start with a larger `max_memory_size`).
pub const PLUGIN_MEMORY: Bounds<ByteSize> = Bounds {
    min: ByteSize(64 << 10),
    max: ByteSize(4 << 30),
    min_reason: Some("one WebAssembly page"),
    max_reason: Some("all a wasm32 memory can address"),
};

/// A request's header fields. Below 1 KiB a browser's ordinary request does not fit; above 1 MiB a
/// connection that is only sending headers holds more memory than any real client needs.
pub const REQUEST_HEAD: Bounds<ByteSize> = Bounds {
    min: ByteSize(1 << 10),
    max: ByteSize(1 << 20),
    min_reason: None,
    max_reason: None,
};

/// A request target. RFC 9112 §3 recommends supporting 8000 octets in the request line, so less than
/// 1 KiB refuses ordinary links; the HTTP/1 parser refuses targets over 64 KiB - 2 itself.
pub const REQUEST_TARGET: Bounds<ByteSize> = Bounds {
    min: ByteSize(1 << 10),
    max: ByteSize(64 << 10),
    min_reason: None,
    max_reason: Some("the HTTP/1 parser's own limit"),
};

/// Headers the plugins of a chain may add to one message. 0 forbids plugins to add any; past 10000 a message
/// is no longer HTTP anyone serves.
pub const PLUGIN_HEADERS: Bounds<u32> = Bounds {
    min: 0,
    max: 10_000,
    min_reason: None,
    max_reason: None,
};

/// Bytes of headers the plugins may add to one message.
pub const PLUGIN_HEADER_BYTES: Bounds<ByteSize> = Bounds {
    min: ByteSize(0),
    max: ByteSize(1 << 20),
    min_reason: None,
    max_reason: None,
};

/// Keys of one request's context.
pub const CONTEXT_KEYS: Bounds<u32> = Bounds {
    min: 0,
    max: 100_000,
    min_reason: None,
    max_reason: None,
};

/// Bytes of one request's context: host memory each request in flight may hold for its plugins.
pub const CONTEXT_BYTES: Bounds<ByteSize> = Bounds {
    min: ByteSize(0),
    max: ByteSize(16 << 20),
    min_reason: None,
    max_reason: None,
};

/// Bytes one plugin call may log.
pub const PLUGIN_LOG_BYTES: Bounds<ByteSize> = Bounds {
    min: ByteSize(0),
    max: ByteSize(1 << 20),
    min_reason: None,
    max_reason: None,
};

/// The longest wall-clock wait. `tokio::time::sleep` cuts any duration to 30 years, a `timeout` whose
/// deadline overflows `Instant` never fires, and one that lands within a millisecond of `Instant`'s end
/// overflows in tokio's rounding: past some length a duration stops meaning what it says. A year is far
/// beyond any timeout a proxy needs and well inside what tokio keeps exactly.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How long a graceful shutdown waits for requests in flight; 0 cuts them off at once.
pub const SHUTDOWN_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::ZERO,
    max: LONGEST_WAIT,
    min_reason: None,
    max_reason: None,
};

/// How long a client may pause in the middle of its request body. 0 would answer 408 to any body not
/// already in the socket buffer, and the timer counts whole milliseconds.
pub const CLIENT_BODY_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: LONGEST_WAIT,
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// How long a request head may take to come: 0 would refuse every head not already in the socket buffer,
/// and the timer counts whole milliseconds.
pub const HEADER_READ_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: LONGEST_WAIT,
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// How long a write to the client may make no progress: 0 would cut every response the socket buffer
/// cannot take at once.
pub const SEND_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: LONGEST_WAIT,
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// How long a connection may sit idle between requests; 0 turns keep-alive off, as nginx's
/// `keepalive_timeout 0` does.
pub const KEEPALIVE_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::ZERO,
    max: LONGEST_WAIT,
    min_reason: None,
    max_reason: None,
};

/// How often the config file is read for a change: more often than every 100 ms is a busy loop on a file
/// that changes by hand or by a deploy, and a day is as good as never.
pub const WATCH_CONFIG: Bounds<Duration> = Bounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(86_400),
    min_reason: None,
    max_reason: None,
};

/// Client connections at once: 0 would serve nothing, and a process cannot hold more sockets than the
/// files Linux lets any process open (`fs.nr_open`, 2^20 by default).
pub const MAX_CONNECTIONS: Bounds<u32> = Bounds {
    min: 1,
    max: 1 << 20,
    min_reason: None,
    max_reason: Some("the files a Linux process may open (fs.nr_open)"),
};

/// Header fields in a request head. HTTP/1.1 needs `Host`; the parser sets aside 64 bytes per field
/// allowed for every head it parses (on the heap above 100), so 10000 already costs 640 KiB a request.
pub const REQUEST_HEADERS: Bounds<u32> = Bounds {
    min: 1,
    max: 10_000,
    min_reason: Some("HTTP/1.1 needs Host"),
    max_reason: None,
};

/// An upstream's connect, response-head and response-body (`read_timeout`) timeouts. Tokio's timer counts
/// whole milliseconds (a shorter deadline is rounded up to one), and 0 would answer every request with 504
/// or cut every body not already received.
pub const UPSTREAM_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: LONGEST_WAIT,
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// A plugin's CPU time per call, counted in epoch ticks: less than one tick cannot be measured, and the
/// sandbox converts a call's tick count to a `u32` for its CPU budget, so 2^32 − 1 ticks (about 49.7 days)
/// is the most it holds; past it the budget was silently cut, and near `u64::MAX` ticks (`"500000000000y"`)
/// the engine's epoch deadline overflowed and panicked in check and run alike.
pub const PLUGIN_TIMEOUT: Bounds<Duration> = Bounds {
    min: EPOCH_TICK,
    max: EPOCH_TICK.saturating_mul(u32::MAX),
    min_reason: Some("one epoch tick"),
    max_reason: Some("2^32 - 1 epoch ticks"),
};

/// A hook call's wall-clock time from its first wait, and a wait for an instance: under a millisecond the
/// timer cannot tell, and a plugin that needs more than an hour for one call is not a proxy plugin.
pub const WALL_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(60 * 60),
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// How long an idle plugin instance is kept: the reaper looks every half of it, so under a second it would
/// wake the process often for little memory, and past a day the memory of a burst is not given back.
pub const IDLE_INSTANCE_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_secs(1),
    max: Duration::from_secs(24 * 60 * 60),
    min_reason: Some("the reaper's pace"),
    max_reason: None,
};

/// Requests a pooled instance serves before it is retired: 0 would retire it unused. The count is a `u64`
/// that one request increments, so no real maximum exists.
pub const MAX_USES: Bounds<u64> = Bounds {
    min: 1,
    max: u64::MAX,
    min_reason: None,
    max_reason: None,
};

/// The store's Redis connect and response timeouts: the timer counts whole milliseconds, and a minute is
/// already far past any deadline a call waits for (the connection keeps trying in the background).
pub const STORE_TIMEOUT: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(60),
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// One store call's hard deadline: what an outage can add to a request before the breaker opens. Under a
/// millisecond the timer cannot tell; past a second a rate limiter costs more than it protects.
pub const STORE_DEADLINE: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(1),
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// Failures in a row that open the store's circuit breaker: at least one.
pub const BREAKER_FAILURES: Bounds<u32> = Bounds {
    min: 1,
    max: u32::MAX,
    min_reason: None,
    max_reason: None,
};

/// How long an open breaker waits before a probe: the timer's resolution to an hour.
pub const BREAKER_OPEN: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(60 * 60),
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// The in-process store's memory: one shard's worth of small entries at least, and no more than this kind
/// of machine has.
pub const STORE_MEMORY: Bounds<ByteSize> = Bounds {
    min: ByteSize(64 << 10),
    max: ByteSize(16 << 30),
    min_reason: None,
    max_reason: None,
};

/// An upstream's endpoints: at least one to send to. Each is scanned on every pick that some endpoint is
/// out for, and a consistent hash scores every endpoint of every request: past a few hundred that is more
/// than the rest of the proxying costs, and no deployment Weir is meant for has that many behind one name.
pub const UPSTREAM_ENDPOINTS: Bounds<usize> = Bounds {
    min: 1,
    max: 256,
    min_reason: None,
    max_reason: Some("every request scans them"),
};

/// Retries of one request. Each one is another endpoint's time (and each is held to the retry budget);
/// past a few, a request outlives any client's patience and only adds load to a failing upstream.
pub const RETRIES: Bounds<u32> = Bounds {
    min: 0,
    max: 10,
    min_reason: None,
    max_reason: None,
};

/// Requests in flight to one upstream endpoint (`max_requests`). Over HTTP/1.1 each holds a connection, so
/// the most is the files a process may open, as for the listener's `max_connections`.
pub const UPSTREAM_MAX_REQUESTS: Bounds<u32> = Bounds {
    min: 1,
    max: 1 << 20,
    min_reason: Some("0 would queue every request until it timed out"),
    max_reason: Some("the files a Linux process may open (fs.nr_open)"),
};

/// The share of an upstream's requests in flight that may be retries, in percent.
pub const RETRY_BUDGET_PERCENT: Bounds<u32> = Bounds {
    min: 0,
    max: 100,
    min_reason: None,
    max_reason: None,
};

/// Failures in a row (connect errors, resets, timeouts, 5xx answers) that take an endpoint out; 0 never
/// does, and past a thousand an endpoint failing every request still serves them for too long to matter.
pub const EJECT_AFTER: Bounds<u32> = Bounds {
    min: 0,
    max: 1000,
    min_reason: None,
    max_reason: None,
};

/// How long an endpoint is out (`eject_for`, and the most the back-off grows to, `eject_for_max`), and an
/// active health check's `interval` and `timeout`: the timer's resolution to a day.
pub const HEALTH_TIME: Bounds<Duration> = Bounds {
    min: Duration::from_millis(1),
    max: Duration::from_secs(24 * 60 * 60),
    min_reason: Some("the timer's resolution"),
    max_reason: None,
};

/// Health checks in a row that change an endpoint's state (`healthy`, `unhealthy`).
pub const HEALTH_THRESHOLD: Bounds<u32> = Bounds {
    min: 1,
    max: 1000,
    min_reason: None,
    max_reason: None,
};

impl<T: Limit> Bounds<T> {
    /// `None` when `value` is in range, otherwise what is wrong with it.
    pub fn refuse(&self, value: T) -> Option<String> {
        if value < self.min {
            let mut message = if value.is_zero() {
                "must be above zero".to_owned()
            } else {
                format!("must be at least {}", self.min.show())
            };
            if let Some(reason) = self.min_reason {
                if value.is_zero() {
                    message.push_str(&format!(": at least {} ({reason})", self.min.show()));
                } else {
                    message.push_str(&format!(" ({reason})"));
                }
            }
            Some(message)
        } else if value > self.max {
            Some(match self.max_reason {
                Some(reason) => format!("must be at most {} ({reason})", self.max.show()),
                None => format!("must be at most {}", self.max.show()),
            })
        } else {
            None
        }
    }

    pub fn contains(&self, value: T) -> bool {
        self.refuse(value).is_none()
    }
}

/// A value a bound can hold, shown in the syntax the config file uses for it.
pub trait Limit: PartialOrd + Copy {
    fn is_zero(&self) -> bool;
    fn show(&self) -> String;
}

macro_rules! integer_limit {
    ($($t:ty),*) => {$(
        impl Limit for $t {
            fn is_zero(&self) -> bool {
                *self == 0
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

integer_limit!(u32, u64, usize);

impl Limit for ByteSize {
    fn is_zero(&self) -> bool {
        self.0 == 0
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Limit for Duration {
    fn is_zero(&self) -> bool {
        Duration::is_zero(self)
    }

    /// The largest unit that divides the duration, so that the text reads back to the same value
    /// (`humantime` would write 365 days as "11months 30days 3h 50m 24s").
    fn show(&self) -> String {
        const UNITS: [(&str, u128); 6] = [
            ("d", 86_400_000_000_000),
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
        ];
        let nanos = self.as_nanos();
        if nanos == 0 {
            return "0s".into();
        }
        UNITS
            .iter()
            .find(|(_, size)| nanos.is_multiple_of(*size))
            .map_or_else(
                || format!("{nanos}ns"),
                |(unit, size)| format!("{}{unit}", nanos / size),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_in_the_largest_exact_unit() {
        assert_eq!(LONGEST_WAIT.show(), "365d");
        assert_eq!(PLUGIN_TIMEOUT.max.show(), "4294967295ms");
        assert_eq!(Duration::from_micros(1500).show(), "1500us");
        assert_eq!(Duration::ZERO.show(), "0s");
    }

    #[test]
    fn messages_name_the_end_that_was_passed() {
        assert_eq!(WORKERS.refuse(0).as_deref(), Some("must be above zero"));
        assert_eq!(
            WORKERS.refuse(1025).as_deref(),
            Some("must be at most 1024")
        );
        assert_eq!(WORKERS.refuse(1024), None);
        assert_eq!(
            PLUGIN_TIMEOUT.refuse(Duration::ZERO).as_deref(),
            Some("must be above zero: at least 1ms (one epoch tick)")
        );
        assert_eq!(
            PLUGIN_MEMORY.refuse(ByteSize(1000)).as_deref(),
            Some("must be at least 64KiB (one WebAssembly page)")
        );
        assert_eq!(
            PLUGIN_MEMORY.refuse(ByteSize((4 << 30) + 1)).as_deref(),
            Some("must be at most 4GiB (all a wasm32 memory can address)")
        );
        assert_eq!(SHUTDOWN_TIMEOUT.refuse(Duration::ZERO), None);
    }

    /// What the sandbox does with the largest plugin timeout: its tick count must fit the `u32` it is
    /// converted to.
    #[test]
    fn the_longest_plugin_timeout_fits_the_sandbox_tick_count() {
        let ticks = PLUGIN_TIMEOUT.max.as_nanos() / EPOCH_TICK.as_nanos();
        assert_eq!(ticks, u128::from(u32::MAX));
    }
}
