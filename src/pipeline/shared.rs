//! What the consume loop tells the publisher: which partitions this instance
//! owns, and up to which sequence each partition's outbox is durable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::batch::Tenants;

/// Shared between the consume loop and the publisher.
#[derive(Default)]
pub struct Progress {
    /// Owned partitions -> next output sequence that is not yet durable
    /// (every record below it is WAL-synced and may be published).
    durable: DashMap<u32, u64>,
    /// Outbox records durable but not yet acknowledged, all partitions, as
    /// last counted by the publisher.
    pending: AtomicU64,
    /// The consume loop has stopped and committed its last batch.
    intake_done: AtomicBool,
    doorbell: Doorbell,
}

impl Progress {
    /// A partition was assigned; `durable` is its stored next sequence.
    pub fn own(&self, partition: u32, durable: u64) {
        self.durable.insert(partition, durable);
        self.doorbell.ring();
    }

    /// A partition was revoked.
    pub fn disown(&self, partition: u32) {
        self.durable.remove(&partition);
    }

    /// Records below `next_seq` of `partition` are durable.
    pub fn advance(&self, partition: u32, next_seq: u64) {
        if let Some(mut entry) = self.durable.get_mut(&partition) {
            *entry = (*entry).max(next_seq);
        }
        self.doorbell.ring();
    }

    /// The durable bound of `partition`, if owned.
    pub fn durable(&self, partition: u32) -> Option<u64> {
        self.durable.get(&partition).map(|e| *e)
    }

    /// Owned partitions, sorted.
    pub fn owned(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.durable.iter().map(|e| *e.key()).collect();
        v.sort_unstable();
        v
    }

    /// Outbox records not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The publisher's count of records durable but not yet acknowledged.
    pub fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Relaxed);
    }

    /// The consume loop has committed its last batch.
    pub fn finish_intake(&self) {
        self.intake_done.store(true, Ordering::SeqCst);
        self.doorbell.ring();
    }

    /// Whether intake has finished.
    pub fn intake_done(&self) -> bool {
        self.intake_done.load(Ordering::SeqCst)
    }

    /// Waits until rung or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        self.doorbell.wait(timeout);
    }
}

/// A wake-up flag with a condition variable.
#[derive(Default)]
struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        let mut rung = self.rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *rung = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut rung, _) = self
            .cv
            .wait_timeout_while(rung, timeout, |r| !*r)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *rung = false;
    }
}

/// The programs in force, swapped whole on reload (SIGHUP). The consume
/// loop picks up a new version between batches.
#[derive(Default)]
pub struct Programs {
    current: std::sync::RwLock<(u64, Arc<Tenants>)>,
}

impl Programs {
    /// Programs starting at `tenants`.
    pub fn new(tenants: Tenants) -> Self {
        Programs {
            current: std::sync::RwLock::new((1, Arc::new(tenants))),
        }
    }

    /// The current version number and tenants.
    pub fn current(&self) -> (u64, Arc<Tenants>) {
        let guard = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// Installs new tenants; returns the new version number.
    pub fn replace(&self, tenants: Tenants) -> u64 {
        let mut guard = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.0 += 1;
        guard.1 = Arc::new(tenants);
        guard.0
    }
}
