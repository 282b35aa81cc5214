//! A plugin's `timeout` is CPU time, not wall-clock time.
//!
//! Epoch ticks measure wall-clock time, which on a busy machine includes the time the thread waited for a
//! core: a plugin preempted for 20 ms would be stopped having used almost none of its budget. So when the
//! epoch deadline passes, the call is not stopped at once: the thread's CPU clock is read then and the
//! call is stopped once it has used a whole budget of CPU since. A plugin spinning on an idle machine is
//! stopped after about twice its `timeout`; one that was merely waiting for a core is not stopped at all.
//! The CPU clock is only read past the deadline, so calls that finish in time pay nothing for it.

use std::thread::{self, ThreadId};
use std::time::Duration;

/// The CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write into; CLOCK_THREAD_CPUTIME_ID exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return Duration::MAX;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// One call's CPU use past its wall-clock deadline.
#[derive(Default)]
pub struct Overtime {
    /// The thread running the call and its CPU clock when the deadline first passed.
    since: Option<(ThreadId, Duration)>,
}

impl Overtime {
    /// For a new call.
    pub fn reset(&mut self) {
        self.since = None;
    }

    /// Called each time the deadline passes: true once the call has used `budget` of CPU since the first
    /// time. A call whose fiber moved to another thread starts counting again on that thread.
    pub fn exhausted(&mut self, budget: Duration) -> bool {
        let (me, now) = (thread::current().id(), thread_cpu_time());
        match self.since {
            Some((thread, start)) if thread == me => now.saturating_sub(start) >= budget,
            _ => {
                self.since = Some((me, now));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleeping_uses_no_budget_and_spinning_does() {
        let budget = Duration::from_millis(5);
        let mut overtime = Overtime::default();
        assert!(
            !overtime.exhausted(budget),
            "the first pass only starts counting"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(!overtime.exhausted(budget), "waiting is not CPU time");
        let start = Instant::now();
        while !overtime.exhausted(budget) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "spinning never exhausted the budget"
            );
        }
        overtime.reset();
        assert!(!overtime.exhausted(budget));
    }
}
