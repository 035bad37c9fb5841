//! The apply workers: owned partitions are applied on a pool of threads.
//!
//! Partition `p` belongs to worker `p % workers` (`[pipeline] workers`,
//! default: the cores), so each partition's records are applied in order
//! by one thread. Each worker holds its own [`Processor`] (the cursors and
//! owners of its partitions) and, per flush, its own [`Batch`], which it
//! commits as one WAL-synced WriteBatch: state, offsets and outbox of its
//! partitions together, as with one thread. Workers commit concurrently,
//! and RocksDB folds concurrent synced writes into one WAL write and fsync
//! (group commit).
//!
//! The consume loop only polls and routes: it copies each record into its
//! worker's [`Chunk`] and, when the batch is full or lingered long enough,
//! hands every chunk to its worker and waits for all of them
//! ([`Cores::flush`]). A worker runs the processor's stages over its chunk:
//! admit every record, prefetch what they read, then evaluate and emit one
//! record at a time under the poison guard, fire due timers, and write.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::batch::{Admission, Applied, Batch, Committed, InputRecord, Processor};
use super::poison::{Attempts, Failed};
use crate::state::StateError;
use crate::telemetry;
use crate::till::{TillAnswer, TillRequest};
use crate::timers;

/// Input records copied out of the consumer, in arrival order: one
/// allocation per chunk, not per record.
#[derive(Default)]
pub struct Chunk {
    topics: Vec<String>,
    records: Vec<Slot>,
    data: Vec<u8>,
}

/// Where one record of a [`Chunk`] is.
struct Slot {
    topic: usize,
    partition: u32,
    offset: i64,
    key: Option<(usize, usize)>,
    payload: Option<(usize, usize)>,
}

impl Chunk {
    /// Appends a copy of `record`.
    pub fn push(&mut self, record: &InputRecord<'_>) {
        let topic = match self.topics.iter().position(|t| t == record.topic) {
            Some(i) => i,
            None => {
                self.topics.push(record.topic.to_owned());
                self.topics.len().saturating_sub(1)
            }
        };
        let key = record.key.map(|k| self.copy(k));
        let payload = record.payload.map(|v| self.copy(v));
        self.records.push(Slot {
            topic,
            partition: record.partition,
            offset: record.offset,
            key,
            payload,
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        (start, self.data.len())
    }

    /// The records, in the order they were pushed.
    pub fn records(&self) -> Vec<InputRecord<'_>> {
        let slice = |range: Option<(usize, usize)>| range.and_then(|(a, b)| self.data.get(a..b));
        self.records
            .iter()
            .map(|slot| InputRecord {
                topic: self.topics.get(slot.topic).map_or("", String::as_str),
                partition: slot.partition,
                offset: slot.offset,
                key: slice(slot.key),
                payload: slice(slot.payload),
            })
            .collect()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops every record (keeps the memory for the next batch).
    pub fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
    }
}

/// One worker's part: its processor, the failed attempts of its records,
/// and the records waiting for its next batch.
pub struct Core {
    /// The processor of the worker's partitions.
    pub processor: Processor,
    /// Failed attempts of records whose processing panicked.
    pub attempts: Attempts,
    /// Records waiting for the next flush.
    pub chunk: Chunk,
    /// Till requests (holds) of its partitions, applied after the records.
    pub till: Vec<TillRequest>,
}

/// What one worker's flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// The batch it committed, if it applied anything.
    pub committed: Option<Committed>,
    /// A record whose processing panicked: the worker's batch was dropped,
    /// and its partitions must rewind to their durable offsets.
    pub failed: Option<FailedRecord>,
    /// What became of the records.
    pub counts: Counts,
}

/// How many records of a flush ended how.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Applied, with their effects (or a rejection).
    pub processed: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Duplicate event ids.
    pub duplicates: u64,
    /// Applied before (redelivered).
    pub already_applied: u64,
}

impl Counts {
    fn count(&mut self, applied: &Applied) {
        let n = match applied {
            Applied::Processed(_) => &mut self.processed,
            Applied::DeadLettered(_) => &mut self.dead_lettered,
            Applied::Duplicate => &mut self.duplicates,
            Applied::AlreadyApplied => &mut self.already_applied,
        };
        *n = n.saturating_add(1);
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Counts) {
        self.processed = self.processed.saturating_add(other.processed);
        self.dead_lettered = self.dead_lettered.saturating_add(other.dead_lettered);
        self.duplicates = self.duplicates.saturating_add(other.duplicates);
        self.already_applied = self.already_applied.saturating_add(other.already_applied);
    }
}

/// A record that failed inside accrue, and the partitions to rewind.
#[derive(Debug)]
pub struct FailedRecord {
    /// Topic, partition and offset of the record.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: i64,
    /// The attempt count and the panic message.
    pub failed: Failed,
}

impl Core {
    /// Applies the chunk (and due timers of `timer_partitions` at `now_ms`)
    /// as one batch and commits it; clears the chunk.
    ///
    /// # Errors
    /// [`StateError`] if the store fails: the batch is not written.
    pub fn flush(&mut self, timers_at: Option<(i64, &[u32])>) -> Result<Flushed, StateError> {
        let result = self.apply_chunk(timers_at);
        self.chunk.clear();
        result
    }

    fn apply_chunk(&mut self, timers_at: Option<(i64, &[u32])>) -> Result<Flushed, StateError> {
        let Core {
            processor,
            attempts,
            chunk,
            till,
        } = self;
        let mut batch = Batch::default();
        let records = chunk.records();
        let mut flushed = Flushed::default();
        // Stages 1 and 2 over the whole chunk. A panic there (a bug) is not
        // pinned on a record: the chunk is then applied one record at a time.
        let first = records.first().map_or((0, 0), |r| (r.partition, r.offset));
        let staged = Attempts::catch(first, || {
            let admitted: Vec<Admission> = records.iter().map(|r| processor.admit(r)).collect();
            processor.prefetch(&mut batch, &records, &admitted).map(|()| admitted)
        });
        let mut admitted = match staged {
            Ok(found) => Some(found?.into_iter()),
            Err(cause) => {
                tracing::error!(%cause, "admitting a chunk failed; applying its records one at a time");
                batch = Batch::default();
                None
            }
        };
        for record in &records {
            let admission = admitted.as_mut().and_then(Iterator::next);
            let (topic, p, offset) = (record.topic, record.partition, record.offset);
            if let Some(failed) = attempts.poison(topic, p, offset) {
                let reason = format!(
                    "processing failed {} times (the last: {}); dead-lettered so the partition moves on",
                    failed.attempt, failed.cause
                );
                tracing::error!(topic, partition = p, offset, %reason, "poison record dead-lettered");
                telemetry::poison_record();
                let applied = processor.apply_unprocessable(&mut batch, record, &reason)?;
                flushed.counts.count(&applied);
                attempts.settle(topic, p, offset);
                continue;
            }
            let run = attempts.run(topic, p, offset, || match admission {
                Some(admission) => processor.apply_admitted(&mut batch, record, admission),
                None => processor.apply(&mut batch, record),
            });
            match run {
                Ok(applied) => flushed.counts.count(&applied?),
                Err(failed) => {
                    flushed.failed = Some(FailedRecord {
                        topic: topic.to_owned(),
                        partition: p,
                        offset,
                        failed,
                    });
                    return Ok(flushed);
                }
            }
        }
        if let Some((now_ms, partitions)) = timers_at {
            for p in partitions {
                processor.fire_due(&mut batch, *p, now_ms, timers::FIRE_LIMIT)?;
            }
        }
        // Till requests last: they see the balances this batch leaves. Each
        // is answered only once the batch is durable.
        let mut answers = Vec::with_capacity(till.len());
        for request in till.drain(..) {
            let answer = match processor.apply_till(&mut batch, &request) {
                Ok(answer) => answer,
                Err(err) => TillAnswer::Failed(err.to_string()),
            };
            answers.push((request.reply, answer));
        }
        if !batch.is_empty() {
            match processor.commit(batch) {
                Ok(committed) => flushed.committed = Some(committed),
                Err(err) => {
                    for (reply, _) in answers {
                        let _ = reply.send(TillAnswer::Failed(err.to_string()));
                    }
                    return Err(err);
                }
            }
        }
        for (reply, answer) in answers {
            // The till may have given up waiting: nothing to tell it.
            let _ = reply.send(answer);
        }
        Ok(flushed)
    }
}

/// The workers' parts, and the threads that run them.
pub struct Cores {
    cores: Vec<Option<Core>>,
    pool: Pool,
    /// When the oldest record waiting was routed.
    pub started: Option<Instant>,
}

impl Cores {
    /// One core per processor; the pool runs all but the last on threads of
    /// its own, and the last on the caller's thread.
    ///
    /// # Errors
    /// If a worker thread cannot be started.
    pub fn new(cores: Vec<Core>) -> std::io::Result<Self> {
        let pool = Pool::new(cores.len().saturating_sub(1))?;
        Ok(Cores {
            cores: cores.into_iter().map(Some).collect(),
            pool,
            started: None,
        })
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// The worker that applies partition `p`.
    pub fn worker_of(&self, p: u32) -> usize {
        (p as usize).checked_rem(self.cores.len()).unwrap_or(0)
    }

    /// The partitions of `owned` that worker `worker` applies.
    pub fn partitions_of(&self, worker: usize, owned: &BTreeSet<u32>) -> Vec<u32> {
        owned.iter().copied().filter(|p| self.worker_of(*p) == worker).collect()
    }

    /// The core that applies partition `p`.
    ///
    /// # Panics
    /// Never: cores are only out of their slots during [`Cores::flush`],
    /// which returns every one.
    #[allow(clippy::expect_used)]
    pub fn core(&mut self, p: u32) -> &mut Core {
        let i = self.worker_of(p);
        self.cores
            .get_mut(i)
            .and_then(Option::as_mut)
            .expect("a core is in its slot outside a flush")
    }

    /// Every core.
    pub fn each(&mut self) -> impl Iterator<Item = &mut Core> {
        self.cores.iter_mut().flatten()
    }

    /// Routes `record` to its partition's worker.
    pub fn push(&mut self, record: &InputRecord<'_>) {
        self.core(record.partition).chunk.push(record);
        self.started.get_or_insert_with(Instant::now);
    }

    /// Records waiting for the next flush.
    pub fn buffered(&self) -> usize {
        self.cores.iter().flatten().map(|c| c.chunk.len()).sum()
    }

    /// Whether till requests wait for the next flush.
    pub fn till_waiting(&self) -> bool {
        self.cores.iter().flatten().any(|c| !c.till.is_empty())
    }

    /// Drops every record waiting (a rewind reads them again).
    pub fn drop_buffered(&mut self) {
        for core in self.each() {
            core.chunk.clear();
        }
        self.started = None;
    }

    /// Pending timers of every partition the processors have committed.
    pub fn timers_pending(&self) -> i64 {
        self.cores.iter().flatten().map(|c| c.processor.timers_pending()).sum()
    }

    /// Applies every worker's chunk (and, with `timers_at`, fires due
    /// timers of `owned` partitions) on the pool, each worker committing its
    /// own batch; returns what each did (in no particular order).
    ///
    /// # Errors
    /// The first [`StateError`] of any worker, or [`FlushError::Worker`]
    /// if a worker thread is gone. The other workers' batches may have been
    /// committed; the caller stops the pipeline.
    pub fn flush(&mut self, timers_at: Option<i64>, owned: &BTreeSet<u32>) -> Result<Vec<Flushed>, FlushError> {
        self.started = None;
        let n = self.cores.len();
        let mut jobs: Vec<Job<Returned>> = Vec::with_capacity(n);
        for i in 0..n {
            let mine = self.partitions_of(i, owned);
            let Some(slot) = self.cores.get_mut(i) else { continue };
            let Some(mut core) = slot.take() else { continue };
            // A partition given up since its request was queued is not ours
            // to write: the till asks the new owner.
            if !core.till.is_empty() {
                for request in extract(&mut core.till, |r| !owned.contains(&r.partition)) {
                    let _ = request.reply.send(TillAnswer::NotOwner);
                }
            }
            let timers = timers_at.filter(|_| !mine.is_empty());
            if core.chunk.is_empty() && core.till.is_empty() && timers.is_none() {
                *slot = Some(core);
                continue;
            }
            jobs.push(Box::new(move || {
                let result = core.flush(timers.map(|now| (now, mine.as_slice())));
                (i, core, result)
            }));
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut first_error = None;
        for (i, core, result) in self.pool.run(jobs)? {
            if let Some(slot) = self.cores.get_mut(i) {
                *slot = Some(core);
            }
            match result {
                Ok(flushed) => out.push(flushed),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(FlushError::State(err)),
            None => Ok(out),
        }
    }
}

/// Removes and returns the items of `items` that `pick` selects.
fn extract<T>(items: &mut Vec<T>, pick: impl Fn(&T) -> bool) -> Vec<T> {
    let (picked, kept): (Vec<T>, Vec<T>) = std::mem::take(items).into_iter().partition(|item| pick(item));
    *items = kept;
    picked
}

/// Why a flush failed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// A worker's store write or read failed; its batch was not written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A worker thread is gone: the process must restart.
    #[error("apply worker failed: {0}; restart the processor")]
    Worker(String),
}

/// A core back from its worker, with its index and what it did.
type Returned = (usize, Core, Result<Flushed, StateError>);

type Job<T> = Box<dyn FnOnce() -> T + Send>;
type Task = Box<dyn FnOnce() + Send>;

/// Threads that run jobs handed to them; the caller's thread runs one job
/// of each round itself.
struct Pool {
    senders: Vec<mpsc::Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> std::io::Result<Self> {
        let mut pool = Pool {
            senders: Vec::with_capacity(threads),
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let (tx, rx) = mpsc::channel::<Task>();
            let handle = std::thread::Builder::new()
                .name(format!("accrue-worker-{}", i.saturating_add(1)))
                .spawn(move || {
                    for task in rx {
                        task();
                    }
                })?;
            pool.senders.push(tx);
            pool.threads.push(handle);
        }
        Ok(pool)
    }

    /// Runs every job, the last on this thread, and returns their results
    /// in no particular order.
    fn run<T: Send + 'static>(&self, mut jobs: Vec<Job<T>>) -> Result<Vec<T>, FlushError> {
        let mine = jobs.pop();
        let (tx, rx) = mpsc::channel::<T>();
        let mut sent = 0usize;
        for (i, job) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            let task: Task = Box::new(move || {
                // The receiver waits for every job it was promised.
                let _ = tx.send(job());
            });
            let Some(sender) = i.checked_rem(self.senders.len()).and_then(|w| self.senders.get(w)) else {
                return Err(FlushError::Worker("no worker thread to run a batch on".into()));
            };
            sender
                .send(task)
                .map_err(|_| FlushError::Worker("a worker thread is gone".into()))?;
            sent = sent.saturating_add(1);
        }
        drop(tx);
        let mut out = Vec::with_capacity(sent.saturating_add(1));
        if let Some(job) = mine {
            out.push(job());
        }
        for _ in 0..sent {
            // A worker that panicked aborted the process (the panic hook),
            // so a closed channel means a thread ended some other way.
            out.push(
                rx.recv()
                    .map_err(|_| FlushError::Worker("a worker thread ended during a batch".into()))?,
            );
        }
        Ok(out)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.senders.clear();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}
