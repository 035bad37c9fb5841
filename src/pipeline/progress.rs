//! The progress protocol between the partitions' owners (the consume loop,
//! its apply workers, the rebalance callback) and the publisher, in typed
//! messages, and the bounded credit that holds intake back while the
//! broker falls behind.
//!
//! Every change of a partition's progress is one [`Message`], applied by
//! [`Partitions::send`], the one place where it changes:
//!
//! - [`Message::Owned`]: the partition was taken over; its outbox is durable
//!   up to `durable`. It starts a new *tenure*, so the publisher recovers the
//!   partition afresh even if it never saw it leave.
//! - [`Message::Durable`]: a batch committed; records below `seq` may be
//!   published. Bounds only grow.
//! - [`Message::Acked`]: the broker acknowledged every record below `seq`.
//! - [`Message::Revoked`]: the partition is no longer this instance's.
//!
//! Messages are applied to a shared table, not queued: the publisher needs
//! each partition's latest bounds, never their history, and a reader never
//! waits for a writer. [`Credit`] is the intake's allowance of outbox
//! records that are durable but not yet acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

/// One change of a partition's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Partition `partition` was taken over; its outbox is durable below
    /// `durable` (its stored next sequence).
    Owned {
        /// The partition.
        partition: u32,
        /// Its stored next output sequence.
        durable: u64,
    },
    /// Every outbox record of `partition` below `seq` is WAL-synced.
    Durable {
        /// The partition.
        partition: u32,
        /// The next output sequence not yet durable.
        seq: u64,
    },
    /// Every outbox record of `partition` below `seq` is on the broker.
    Acked {
        /// The partition.
        partition: u32,
        /// The next output sequence not yet acknowledged.
        seq: u64,
    },
    /// Partition `partition` was revoked (or lost).
    Revoked {
        /// The partition.
        partition: u32,
    },
}

/// What each owned partition's progress is.
#[derive(Debug, Default)]
pub struct Partitions {
    /// Owned partitions -> next output sequence not yet durable.
    durable: DashMap<u32, u64>,
    /// Owned partitions -> which assignment of this process owns them.
    tenure: DashMap<u32, u64>,
    tenures: AtomicU64,
    /// Owned partitions -> next output sequence not yet acknowledged.
    acked: DashMap<u32, u64>,
}

impl Partitions {
    /// Applies `message`. Messages about partitions not owned (a late
    /// acknowledgement after a revoke) change nothing.
    pub fn send(&self, message: Message) {
        match message {
            Message::Owned { partition, durable } => {
                let tenure = self.tenures.fetch_add(1, Ordering::SeqCst).saturating_add(1);
                self.tenure.insert(partition, tenure);
                self.durable.insert(partition, durable);
                self.acked.remove(&partition);
            }
            Message::Durable { partition, seq } => {
                if let Some(mut entry) = self.durable.get_mut(&partition) {
                    *entry = (*entry).max(seq);
                }
            }
            Message::Acked { partition, seq } => {
                if self.durable.contains_key(&partition) {
                    self.acked.insert(partition, seq);
                }
            }
            Message::Revoked { partition } => {
                self.durable.remove(&partition);
                self.tenure.remove(&partition);
                self.acked.remove(&partition);
            }
        }
    }

    /// The durable bound of `partition`, if owned.
    pub fn durable(&self, partition: u32) -> Option<u64> {
        self.durable.get(&partition).map(|e| *e)
    }

    /// Which assignment owns `partition`, if owned.
    pub fn tenure(&self, partition: u32) -> Option<u64> {
        self.tenure.get(&partition).map(|e| *e)
    }

    /// Owned partitions, sorted.
    pub fn owned(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.durable.iter().map(|e| *e.key()).collect();
        v.sort_unstable();
        v
    }

    /// Whether every durable record of `partition` is acknowledged (true
    /// for a partition not owned: nothing of it is waiting here).
    pub fn flushed(&self, partition: u32) -> bool {
        match (self.durable(partition), self.acked.get(&partition).map(|e| *e)) {
            (Some(durable), Some(acked)) => acked >= durable,
            (None, _) => true,
            (Some(_), None) => false,
        }
    }
}

/// How many outbox records may be durable and not yet acknowledged before
/// intake pauses: the publisher reports what is waiting, the consume loop
/// pauses its partitions while the credit is spent and resumes when the
/// broker has caught up.
#[derive(Debug)]
pub struct Credit {
    limit: u64,
    pending: AtomicU64,
}

impl Credit {
    /// A credit of `limit` records.
    pub fn new(limit: u64) -> Self {
        Credit {
            limit,
            pending: AtomicU64::new(0),
        }
    }

    /// The publisher counted `pending` records durable and not acknowledged.
    pub fn set_pending(&self, pending: u64) {
        self.pending.store(pending, Ordering::Relaxed);
    }

    /// Records durable and not acknowledged, as last counted.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Whether the credit is spent: intake waits for the broker.
    pub fn spent(&self) -> bool {
        self.pending() > self.limit
    }
}

impl Default for Credit {
    /// 200,000 records: about 20 batches of the default size.
    fn default() -> Self {
        Credit::new(200_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_bounds_only_grow_and_need_an_owner() {
        let parts = Partitions::default();
        parts.send(Message::Durable { partition: 1, seq: 5 });
        assert_eq!(parts.durable(1), None, "not owned: nothing");
        parts.send(Message::Owned {
            partition: 1,
            durable: 3,
        });
        parts.send(Message::Durable { partition: 1, seq: 9 });
        parts.send(Message::Durable { partition: 1, seq: 7 });
        assert_eq!(parts.durable(1), Some(9), "a late, lower bound is ignored");
        assert_eq!(parts.owned(), vec![1]);
    }

    #[test]
    fn a_partition_is_flushed_when_acks_reach_its_durable_bound() {
        let parts = Partitions::default();
        assert!(parts.flushed(2), "not owned");
        parts.send(Message::Owned {
            partition: 2,
            durable: 0,
        });
        assert!(!parts.flushed(2), "owned, nothing acknowledged yet");
        parts.send(Message::Durable { partition: 2, seq: 4 });
        parts.send(Message::Acked { partition: 2, seq: 3 });
        assert!(!parts.flushed(2));
        parts.send(Message::Acked { partition: 2, seq: 4 });
        assert!(parts.flushed(2));
    }

    #[test]
    fn each_ownership_is_a_new_tenure_and_a_revoke_forgets_everything() {
        let parts = Partitions::default();
        parts.send(Message::Owned {
            partition: 0,
            durable: 1,
        });
        let first = parts.tenure(0);
        parts.send(Message::Acked { partition: 0, seq: 1 });
        parts.send(Message::Revoked { partition: 0 });
        assert_eq!((parts.durable(0), parts.tenure(0)), (None, None));
        parts.send(Message::Acked { partition: 0, seq: 1 });
        assert!(parts.flushed(0), "a late ack of a revoked partition changes nothing");
        parts.send(Message::Owned {
            partition: 0,
            durable: 1,
        });
        assert!(parts.tenure(0) > first);
        assert!(!parts.flushed(0), "the new tenure starts unacknowledged");
    }

    #[test]
    fn credit_is_spent_past_its_limit() {
        let credit = Credit::new(10);
        credit.set_pending(10);
        assert!(!credit.spent());
        credit.set_pending(11);
        assert!(credit.spent());
        assert_eq!(credit.pending(), 11);
    }
}
