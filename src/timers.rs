//! Durable timers: the clock they run on, and when the consume loop looks
//! for due ones.
//!
//! A timer is a key in the `timers` family (`p | due_ms | tenant 0
//! booking_id`), written in the same WriteBatch as the booking event that
//! set it. [`crate::pipeline::Processor::fire_due`] fires due timers into
//! the open batch, so a credit, its outputs and the timer's deletion commit
//! together: a timer fires exactly once, late if the process was down at
//! its due time, and never twice after a `kill -9`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How often the consume loop looks for due timers.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Most timers fired into one batch per partition and check.
pub const FIRE_LIMIT: usize = 2_000;

/// Wall-clock time in Unix milliseconds, injected so tests need no sleeps.
pub trait Clock: Send + Sync {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = time::OffsetDateTime::now_utc();
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        ManualClock {
            now: AtomicI64::new(now_ms),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now
            .fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
