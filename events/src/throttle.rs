//! Warnings on hot paths, limited per call site: a client that sends a bad frame every 20 ms must
//! not write a log line every 20 ms (and push the lines that matter out of the log). The metric
//! beside each such warning still counts every case; the line says how many it held back.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often one hot-path warning is written at most.
pub const WARN_EVERY: Duration = Duration::from_secs(1);

/// One call site's budget: a line, then none until `every` has passed.
pub struct Throttle {
    /// When the next line may be written, in ms since the process's first throttled line.
    next_ms: AtomicU64,
    /// Lines held back since the last one written.
    held: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether to write the line now, with how many were held back since the last one; `None`
    /// (and one more held back) within `every` of the last.
    pub fn allow(&self, every: Duration) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + every.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !due {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// `tracing::warn!` at most once per [`WARN_EVERY`] from this call site, with a `held_back`
/// field counting the lines not written since the last. The caller depends on `tracing`.
#[macro_export]
macro_rules! warn_throttled {
    ($($arg:tt)+) => {{
        static THROTTLE: $crate::throttle::Throttle = $crate::throttle::Throttle::new();
        if let Some(held_back) = THROTTLE.allow($crate::throttle::WARN_EVERY) {
            tracing::warn!(held_back, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_next_says_how_many_were_held_back() {
        let throttle = Throttle::new();
        let every = Duration::from_millis(200);
        assert_eq!(throttle.allow(every), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.allow(every), None);
        }
        std::thread::sleep(every + Duration::from_millis(20));
        assert_eq!(throttle.allow(every), Some(5));
        assert_eq!(throttle.allow(every), None);
    }
}
