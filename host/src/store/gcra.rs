//! The generic cell rate algorithm, in integer microseconds: the one definition the local backend runs and
//! `throttle.lua` mirrors line for line on Redis's clock.
//!
//! A limit of `rate` units per `period` with `burst` is a cell of emission interval `T = period / rate`
//! and capacity `C = rate + burst`. Its whole state is one number, the theoretical arrival time (TAT): the
//! time at which the limit would be full again. A call of `cost` units at `now` fits when
//! `max(TAT, now) + cost·T − C·T ≤ now`, and then moves the TAT to `max(TAT, now) + cost·T`. From rest a
//! limit admits exactly `C` units at once, then one every `T`: no window edges, no boundary bursts.

/// One limit as the algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Microseconds between two units in the long run (`T`), rounded up so a limit never admits more than
    /// it says.
    pub interval: u64,
    /// Units admitted at once from rest (`C`).
    pub capacity: u64,
}

/// The longest period a limit may have: a year and a day, as the TTLs of stored values.
pub const MAX_PERIOD_MS: u64 = 366 * 24 * 60 * 60 * 1000;

/// The longest `C·T` (about 95 years): with the clock (1.8e15 µs since 1970) and a cost of at most `C`
/// added, every sum stays below 2^53, where Redis's Lua numbers (doubles) are still exact integers.
const MAX_WINDOW: u64 = 3_000_000_000_000_000;

impl Cell {
    pub fn new(rate: u32, period_ms: u64, burst: u32) -> Result<Cell, String> {
        if rate == 0 {
            return Err("a limit's rate must be at least 1".into());
        }
        if period_ms == 0 || period_ms > MAX_PERIOD_MS {
            return Err(format!(
                "a limit's period must be 1 ms to 366 days, not {period_ms} ms"
            ));
        }
        let cell = Cell {
            interval: (period_ms * 1000).div_ceil(u64::from(rate)),
            capacity: u64::from(rate) + u64::from(burst),
        };
        if cell
            .interval
            .checked_mul(cell.capacity)
            .is_none_or(|w| w > MAX_WINDOW)
        {
            return Err("a limit's rate + burst units take more than 95 years to free".into());
        }
        Ok(cell)
    }

    /// `C·T`: how far ahead of now the TAT may run.
    fn window(self) -> u64 {
        self.interval * self.capacity
    }
}

/// How one limit stands after a call, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    pub next: u64,
    pub reset: u64,
    pub retry_after: u64,
}

/// The verdicts of one call over every limit, and the TATs to store: `None` when nothing changes (a
/// limit refused, or the cost was 0), so a refused request spends none of the limits it passed.
pub fn throttle(
    cells: &[Cell],
    stored: &[Option<u64>],
    now: u64,
    cost: u64,
) -> (Vec<Verdict>, Option<Vec<u64>>) {
    let starts: Vec<u64> = stored
        .iter()
        .map(|tat| tat.unwrap_or(now).max(now))
        .collect();
    let fits = |cell: &Cell, start: u64| start + cost * cell.interval <= now + cell.window();
    let all = cells
        .iter()
        .zip(&starts)
        .all(|(cell, &start)| fits(cell, start));
    let verdicts = cells
        .iter()
        .zip(&starts)
        .map(|(cell, &start)| {
            let tat = if all {
                start + cost * cell.interval
            } else {
                start
            };
            let remaining = (now + cell.window() - tat) / cell.interval;
            let retry_after = (start + cost * cell.interval).saturating_sub(now + cell.window());
            Verdict {
                allowed: fits(cell, start),
                remaining,
                next: if remaining >= cell.capacity {
                    0
                } else {
                    (tat - now) - (cell.capacity - remaining - 1) * cell.interval
                },
                reset: tat - now,
                retry_after,
            }
        })
        .collect();
    let commit = (all && cost > 0).then(|| {
        cells
            .iter()
            .zip(&starts)
            .map(|(cell, &start)| start + cost * cell.interval)
            .collect()
    });
    (verdicts, commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn cell(rate: u32, period_ms: u64, burst: u32) -> Cell {
        Cell::new(rate, period_ms, burst).unwrap()
    }

    /// Runs `n` calls of cost 1 at `now` against one stored TAT, as a backend would.
    fn burst(cells: &[Cell], tats: &mut Vec<Option<u64>>, now: u64, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| {
                let (verdicts, commit) = throttle(cells, tats, now, 1);
                if let Some(commit) = commit {
                    *tats = commit.into_iter().map(Some).collect();
                }
                verdicts.iter().all(|v| v.allowed)
            })
            .collect()
    }

    #[test]
    fn from_rest_exactly_rate_plus_burst_pass_then_one_per_interval() {
        let cells = [cell(10, 1000, 20)];
        let mut tats = vec![None];
        let start = 1_000 * SECOND;
        let passed = burst(&cells, &mut tats, start, 40);
        assert_eq!(passed.iter().filter(|p| **p).count(), 30);
        assert!(passed[..30].iter().all(|p| *p));
        // One interval later exactly one more fits.
        let later = burst(&cells, &mut tats, start + SECOND / 10, 3);
        assert_eq!(later, [true, false, false]);
    }

    #[test]
    fn a_refusal_says_when_to_come_back_and_spends_nothing() {
        let cells = [cell(2, 1000, 0)];
        let now = 50 * SECOND;
        let (v, commit) = throttle(&cells, &[Some(now + SECOND)], now, 1);
        assert!(commit.is_none());
        assert_eq!(
            v[0],
            Verdict {
                allowed: false,
                remaining: 0,
                next: SECOND / 2,
                reset: SECOND,
                retry_after: SECOND / 2,
            }
        );
    }

    #[test]
    fn every_limit_must_fit_and_only_then_are_all_spent() {
        // 10/s with room, 1000/h with none: refused, and the first limit keeps its units.
        let cells = [cell(10, 1000, 0), cell(1000, 3_600_000, 0)];
        let now = 10_000 * SECOND;
        let full_hour = now + 3_600 * SECOND;
        let (v, commit) = throttle(&cells, &[None, Some(full_hour)], now, 1);
        assert!(commit.is_none());
        assert!(v[0].allowed && !v[1].allowed);
        assert_eq!(v[0].remaining, 10);
        assert_eq!(v[1].retry_after, 3_600 * SECOND / 1000);
        let (v, commit) = throttle(&cells, &[None, None], now, 1);
        assert!(v.iter().all(|v| v.allowed));
        assert_eq!(
            commit,
            Some(vec![now + SECOND / 10, now + 3_600 * SECOND / 1000])
        );
        assert_eq!((v[0].remaining, v[1].remaining), (9, 999));
        assert_eq!(v[0].next, SECOND / 10);
        assert_eq!(v[0].reset, SECOND / 10);
    }

    #[test]
    fn intervals_round_up_and_bad_limits_are_refused() {
        assert_eq!(cell(3, 1000, 0).interval, 333_334);
        assert_eq!(cell(1, 1, 0).interval, 1000);
        assert!(Cell::new(0, 1000, 0).is_err());
        assert!(Cell::new(1, 0, 0).is_err());
        assert!(Cell::new(1, MAX_PERIOD_MS + 1, 0).is_err());
        assert!(Cell::new(1, MAX_PERIOD_MS, u32::MAX).is_err());
    }

    #[test]
    fn a_full_limit_has_no_next_unit_and_cost_zero_only_reads() {
        let cells = [cell(5, 1000, 0)];
        let (v, commit) = throttle(&cells, &[None], 7 * SECOND, 0);
        assert!(commit.is_none());
        assert_eq!((v[0].remaining, v[0].next, v[0].reset), (5, 0, 0));
    }
}
