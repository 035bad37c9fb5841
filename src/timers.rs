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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Batch, InputRecord, Processor};
    use crate::state::MemoryStore;
    use std::collections::HashMap;
    use std::sync::Arc;

    const STUDIO: &str = r#"
id = "studio"
currency = "EUR"
[branches.main]
[bookings]
credit_delay = "3h"
points = { yoga = "10" }
"#;

    #[test]
    fn the_schedule_follows_the_injected_clock_without_sleeping() {
        let tenant = match toml::from_str(STUDIO) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let mut processor = Processor::new(
            Arc::new(MemoryStore::default()),
            Arc::new(HashMap::from([("studio".to_owned(), tenant)])),
            Arc::from(&b"k"[..]),
        );
        // The class ends at 12:00 UTC; the clock starts at 11:00.
        let ends_at = time::macros::datetime!(2026-11-23 12:00 UTC);
        let ends_ms = (ends_at.unix_timestamp_nanos() / 1_000_000) as i64;
        let clock = ManualClock::at(ends_ms - 3_600_000);
        let json = r#"{"schema_version":1,"event_id":"e","type":"booking.created","tenant":"studio","branch":"main",
            "customer":"ann","occurred_at":"2026-11-23T10:00:00Z","body":{"booking_id":"b","service":"yoga",
            "starts_at":"2026-11-23T11:00:00Z","ends_at":"2026-11-23T12:00:00Z"}}"#;
        let mut batch = Batch::default();
        let record = InputRecord {
            topic: "t",
            partition: 0,
            offset: 0,
            key: Some(b"studio:ann"),
            payload: Some(json.as_bytes()),
        };
        assert!(processor.apply(&mut batch, &record).is_ok());
        assert!(processor.commit(batch).is_ok());

        let mut fired_at = Vec::new();
        // Step through four hours a minute at a time: exactly one firing, at 15:00.
        for _ in 0..240 {
            clock.advance(Duration::from_secs(60));
            let mut batch = Batch::default();
            let fired = processor
                .fire_due(&mut batch, 0, clock.now_ms(), FIRE_LIMIT)
                .unwrap_or(usize::MAX);
            assert!(processor.commit(batch).is_ok());
            if fired > 0 {
                fired_at.push((clock.now_ms() - ends_ms) / 60_000);
            }
        }
        assert_eq!(fired_at, vec![180], "one firing, 3h after the end");
        assert_eq!(processor.timers_pending(), 0);
    }

    #[test]
    fn system_clock_is_unix_milliseconds() {
        let now = SystemClock.now_ms();
        assert!(now > 1_700_000_000_000 && now < 4_000_000_000_000);
    }
}
