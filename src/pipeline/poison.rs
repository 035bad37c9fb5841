//! Panics and poison records.
//!
//! Bad input is never a panic: the contract and the rules turn it into a
//! dead letter or a rejection. A panic is a bug in accrue. Two policies
//! follow (docs/guarantees.md, "Poison records"):
//!
//! - A panic while one input record is applied is caught ([`Attempts::run`]).
//!   The open batch is dropped and the owned partitions rewind to their
//!   durable offsets, so the record is tried again; after `[batch]
//!   max_attempts` failures it is dead-lettered as `processing_failed` with
//!   the panic message, and its partition moves on. One record never stops
//!   a partition.
//! - Any other panic ends the process ([`install_panic_hook`] aborts): a
//!   worker thread that died would leave a live husk that answers "ready".
//!   Kubernetes or `scripts/dev-up` restart it, and exactly-once holds across
//!   the restart as across a `kill -9`.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    /// The record this thread is applying under [`Attempts::run`]:
    /// (partition, offset). A panic there is caught, not fatal.
    static APPLYING: Cell<Option<(u32, i64)>> = const { Cell::new(None) };
}

/// Installs the process-wide panic hook: logs the panic with the thread,
/// the location and (when applying a record) its partition and offset;
/// then, unless [`Attempts::run`] will catch it, aborts the process with a
/// non-zero status.
pub fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let cause = payload_text(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        match APPLYING.with(Cell::get) {
            Some((partition, offset)) => tracing::error!(
                thread,
                partition,
                offset,
                %location,
                cause = %cause,
                "panic while applying a record; the batch is dropped and the record retried"
            ),
            None => {
                tracing::error!(thread, %location, cause = %cause, "panic: a bug in accrue; the process exits");
                // Also on stderr, in case logging is what broke.
                eprintln!("accrue: panic in thread {thread} at {location}: {cause}; aborting");
                std::process::abort();
            }
        }
    }));
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// Where a record is: topic, partition, offset.
type Coordinates = (String, u32, i64);

/// A record failed inside accrue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// How many times it has failed now.
    pub attempt: u32,
    /// The panic message.
    pub cause: String,
}

/// Counts failed attempts per record and decides when one is poison.
#[derive(Debug)]
pub struct Attempts {
    max: u32,
    failed: HashMap<Coordinates, Failed>,
}

impl Attempts {
    /// A record is poison after `max` failed attempts (at least 1).
    pub fn new(max: u32) -> Self {
        Attempts {
            max: max.max(1),
            failed: HashMap::new(),
        }
    }

    /// The cause, if the record at these coordinates has failed `max`
    /// times: it is to be dead-lettered instead of applied again.
    pub fn poison(&self, topic: &str, partition: u32, offset: i64) -> Option<&Failed> {
        if self.failed.is_empty() {
            return None; // the hot path: nothing ever failed
        }
        self.failed
            .get(&(topic.to_owned(), partition, offset))
            .filter(|f| f.attempt >= self.max)
    }

    /// Runs `apply` for the record at these coordinates, catching a panic.
    ///
    /// # Errors
    /// [`Failed`] if `apply` panicked: the caller must drop its open batch
    /// and rewind; the attempt is counted.
    pub fn run<T>(&mut self, topic: &str, partition: u32, offset: i64, apply: impl FnOnce() -> T) -> Result<T, Failed> {
        APPLYING.with(|a| a.set(Some((partition, offset))));
        let result = panic::catch_unwind(AssertUnwindSafe(apply));
        APPLYING.with(|a| a.set(None));
        match result {
            Ok(value) => Ok(value),
            Err(payload) => {
                let entry = self
                    .failed
                    .entry((topic.to_owned(), partition, offset))
                    .or_insert_with(|| Failed {
                        attempt: 0,
                        cause: String::new(),
                    });
                entry.attempt = entry.attempt.saturating_add(1);
                entry.cause = payload_text(payload.as_ref());
                Err(entry.clone())
            }
        }
    }

    /// Runs `stage` for a whole chunk of records (the admit and prefetch
    /// stages), catching a panic without counting it against any record:
    /// the caller then applies the chunk one record at a time, where
    /// [`Attempts::run`] finds the record that fails. `first` is the chunk's
    /// first record (partition, offset), for the log line.
    ///
    /// # Errors
    /// The panic message, if `stage` panicked.
    pub fn catch<T>(first: (u32, i64), stage: impl FnOnce() -> T) -> Result<T, String> {
        APPLYING.with(|a| a.set(Some(first)));
        let result = panic::catch_unwind(AssertUnwindSafe(stage));
        APPLYING.with(|a| a.set(None));
        result.map_err(|payload| payload_text(payload.as_ref()))
    }

    /// The record was dead-lettered or applied: forget its attempts.
    pub fn settle(&mut self, topic: &str, partition: u32, offset: i64) {
        if !self.failed.is_empty() {
            self.failed.remove(&(topic.to_owned(), partition, offset));
        }
    }

    /// Partition `partition` was revoked: its next owner counts afresh.
    pub fn forget_partition(&mut self, partition: u32) {
        self.failed.retain(|(_, p, _), _| *p != partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_poison_after_max_failed_attempts() {
        let mut attempts = Attempts::new(3);
        for n in 1..=3 {
            assert!(
                attempts.poison("in", 0, 7).is_none(),
                "not yet poison before attempt {n}"
            );
            let failed = attempts.run("in", 0, 7, || -> u32 { panic!("overflow in rule") });
            assert_eq!(
                failed,
                Err(Failed {
                    attempt: n,
                    cause: "overflow in rule".into()
                })
            );
        }
        let poison = attempts.poison("in", 0, 7).expect("poison after 3 attempts");
        assert_eq!(poison.cause, "overflow in rule");
        assert!(attempts.poison("in", 0, 8).is_none(), "other records are not");
        assert!(attempts.poison("in", 1, 7).is_none(), "nor the same offset elsewhere");
        attempts.settle("in", 0, 7);
        assert!(attempts.poison("in", 0, 7).is_none());
    }

    #[test]
    fn a_record_that_succeeds_returns_its_value() {
        let mut attempts = Attempts::new(1);
        assert_eq!(attempts.run("in", 2, 1, || 41 + 1), Ok(42));
        let failed = attempts.run("in", 2, 2, || -> () { panic!("{}", String::from("formatted")) });
        assert_eq!(failed.map_err(|f| f.cause), Err("formatted".into()));
        assert!(attempts.poison("in", 2, 2).is_some(), "max 1: poison at once");
        attempts.forget_partition(2);
        assert!(attempts.poison("in", 2, 2).is_none(), "revoked: forgotten");
    }
}
