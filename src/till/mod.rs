//! At the till: quotes and authorizations (holds) for orders not yet
//! settled, answered over HTTP (`POST /v1/tenants/{t}/quote`,
//! `.../authorizations`; docs/api.md).
//!
//! **Where a hold is written.** A hold is state of the customer's
//! partition, so only that partition's owner writes it, in its apply
//! worker's batch, under the same WAL-synced WriteBatch and changelog as
//! the orders of that partition. The HTTP call is answered by the owning
//! instance (a request reaching another instance is redirected to it,
//! [`ownership`]); there the request is queued here, the consume loop
//! hands it to the partition's worker with its next batch (flushed at
//! once), and the answer is sent only after that batch is durable. So a
//! hold survives `kill -9`, moves with the partition on a rebalance, and
//! two tills racing for one balance are serialized by the worker: exactly
//! one wins. An internal command through Kafka would serialize the same
//! way but costs a produce and a fetch on every authorization, which the
//! latency target (p99 ≤ 20 ms) does not allow.
//!
//! **Quotes** change nothing: they read the committed state from a
//! RocksDB snapshot on the owning instance and run the same pure rules.

pub mod api;
pub mod ownership;
mod render;
pub mod state;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::contract::Event;
use crate::directory::Directory;
use crate::programs::Hold;
use crate::rules::till::Refusal;

/// What a till request asks the partition's worker to do.
#[derive(Debug)]
pub enum TillOp {
    /// Hold the order's balance payments (`POST .../authorizations`).
    Authorize {
        /// The order, decoded and validated as the stream would.
        event: Box<Event>,
        /// The new hold's id.
        id: String,
        /// Until when it holds, Unix milliseconds.
        expires_ms: i64,
    },
    /// Release a hold (`DELETE .../authorizations/{id}`).
    Release {
        /// The hold's id.
        id: String,
    },
}

/// A request for the worker of `partition`.
#[derive(Debug)]
pub struct TillRequest {
    /// The customer's partition.
    pub partition: u32,
    /// The tenant.
    pub tenant: String,
    /// The customer.
    pub customer: String,
    /// What to do.
    pub op: TillOp,
    /// Where the answer goes once the batch is durable.
    pub reply: oneshot::Sender<TillAnswer>,
}

/// The worker's answer to a [`TillRequest`].
#[derive(Debug)]
pub enum TillAnswer {
    /// The hold is durable (or an active hold for the same order was found).
    Held(Hold),
    /// The hold is released.
    Released,
    /// Nothing was held.
    Refused(Refusal),
    /// No active hold has that id (never made, consumed, released or expired).
    NoSuchHold,
    /// This instance does not own the partition (any more).
    NotOwner,
    /// The batch could not be written; nothing changed. Retry.
    Failed(String),
}

/// The queue between the HTTP handlers and the consume loop, and what the
/// handlers need to know to route a request (which partitions this instance
/// owns they read from [`crate::pipeline::Progress`]).
#[derive(Default)]
pub struct Till {
    queue: Mutex<Vec<TillRequest>>,
    waiting: AtomicBool,
    partitions: AtomicU32,
    directory: OnceLock<Arc<Directory>>,
}

impl Till {
    /// Queues `request` for the consume loop.
    pub fn submit(&self, request: TillRequest) {
        match self.queue.lock() {
            Ok(mut queue) => queue.push(request),
            Err(poisoned) => poisoned.into_inner().push(request),
        }
        self.waiting.store(true, Ordering::Release);
    }

    /// Whether requests wait (one atomic load: the loop asks every turn).
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    /// Takes every waiting request.
    pub fn take(&self) -> Vec<TillRequest> {
        self.waiting.store(false, Ordering::Release);
        match self.queue.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Records the topics' partition count, once known.
    pub fn set_partitions(&self, partitions: u32) {
        self.partitions.store(partitions, Ordering::Release);
    }

    /// The topics' partition count, or 0 before the processor started.
    pub fn partitions(&self) -> u32 {
        self.partitions.load(Ordering::Acquire)
    }

    /// Shares the customer directory (referrals and partners in quotes, and
    /// the instances that own each partition).
    pub fn set_directory(&self, directory: Arc<Directory>) {
        let _ = self.directory.set(directory);
    }

    /// The directory, once the processor has loaded it.
    pub fn directory(&self) -> Option<&Arc<Directory>> {
        self.directory.get()
    }
}
