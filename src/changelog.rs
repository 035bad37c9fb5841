//! The state changelog: how a partition's state follows the partition.
//!
//! Every committed batch writes, in the same WriteBatch, one outbox record
//! holding every state change of each partition it touched (a
//! [`ChangeBatch`]). The publisher expands it into one compacted-topic record
//! per key (`family tag ++ state key` -> value, or a tombstone) and ends it
//! with a **commit marker**. Every record carries the [`BatchTag`] header:
//! the owner's epoch and token and the batch number; the marker also carries
//! the batch's output-sequence range, and the batch's records include the
//! partition's input offsets, so the log says which input offset the state
//! belongs to.
//!
//! Ordering (enforced by the publisher, per partition): a batch's changelog
//! records are sent only once every earlier outbox record of the partition
//! is acknowledged, and no later record is sent before its marker is
//! acknowledged. Hence, when batch *k* is complete in the log, every output of
//! earlier batches is on the broker, and no output of a batch whose
//! changelog is incomplete was ever published.
//!
//! [`Replayer`] turns the log back into state: it applies a batch only when
//! it is known complete (its marker, or a later batch of the same owner),
//! drops the trailing incomplete batch, and ignores records of an older
//! epoch once a newer epoch has appeared (a fenced-off former owner).
//! [`Restorer`] runs it against the broker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{ClientRole, Config};
use crate::state::{keys, Durability, Family, StateError, Store, WriteSet};
use crate::telemetry::{self, KafkaLog};

/// The header carrying a record's [`BatchTag`].
pub const HEADER_TAG: &str = "accrue-changelog";

/// First byte of a commit marker's key (family tags are small numbers).
const MARKER: u8 = 0xFF;

const VERSION: u8 = 1;

/// Who owns a partition's state: a number that grows with every change of
/// owner, and a random token telling apart two owners that picked the same
/// number (both restored the same log, one never published).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// Grows by one at every assignment.
    pub epoch: u64,
    /// Random per assignment.
    pub token: u64,
}

impl Owner {
    /// The owner after `self` and `seen`: a higher epoch and a fresh token.
    pub fn next(self, seen: Option<Owner>) -> Owner {
        let epoch = self.epoch.max(seen.map_or(0, |o| o.epoch)) + 1;
        Owner {
            epoch,
            token: random_token(),
        }
    }

    /// 16 bytes: epoch, token.
    pub fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.epoch.to_be_bytes());
        out[8..].copy_from_slice(&self.token.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Option<Owner> {
        Some(Owner {
            epoch: u64_at(bytes, 0)?,
            token: u64_at(bytes, 8)?,
        })
    }
}

fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The owner of partition `p` as stored, if any.
///
/// # Errors
/// [`StateError`] if the store fails.
pub fn stored_owner(store: &dyn Store, p: u32) -> Result<Option<Owner>, StateError> {
    Ok(store
        .get(Family::Meta, &keys::owner(p))?
        .and_then(|v| Owner::decode(&v)))
}

/// The number of the last batch partition `p` wrote (or restored), if any.
///
/// # Errors
/// [`StateError`] if the store fails.
pub fn stored_batch(store: &dyn Store, p: u32) -> Result<Option<u64>, StateError> {
    Ok(store
        .get(Family::Meta, &keys::changelog_cursor(p))?
        .and_then(|v| u64_at(&v, 0)))
}

/// Whether partition `p`'s local state can be used as it is, given its
/// stored owner and last batch number and the newest batch in the
/// changelog (`head`). Pure: see docs/guarantees.md, "Same-disk restarts".
///
/// - An empty changelog has nothing to restore.
/// - Local state without an owner is missing or a restore was cut short.
/// - The same owner as the head wrote the newest records: nobody else has
///   written the partition since.
/// - A newer local epoch than the head's, with every batch of the head
///   applied, is this disk taking the partition over and crashing before
///   its first changelog batch reached the broker: any other owner since
///   would have an epoch at least as new in the log. The local outbox
///   still holds the changelog records the log lacks.
pub fn is_current(local: Option<Owner>, local_batch: Option<u64>, head: Option<BatchTag>) -> bool {
    let Some(head) = head else {
        return true;
    };
    let Some(local) = local else {
        return false;
    };
    if local == head.owner {
        return true;
    }
    local.epoch > head.owner.epoch && local_batch.is_some_and(|n| n >= head.n)
}

/// Which batch a changelog record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTag {
    /// The writer.
    pub owner: Owner,
    /// The partition's batch number (continues across owners).
    pub n: u64,
}

impl BatchTag {
    /// 24 bytes: epoch, token, n.
    pub fn encode(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.owner.encode());
        out[16..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Option<BatchTag> {
        Some(BatchTag {
            owner: Owner::decode(bytes)?,
            n: u64_at(bytes, 16)?,
        })
    }
}

/// A record of the changelog topic (the tag goes in a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// `family tag ++ state key`, or a marker key.
    pub key: Vec<u8>,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

/// A batch's commit marker. Its key is per owner token, so compaction keeps
/// the last marker of every owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The batch.
    pub tag: BatchTag,
    /// Its first output sequence.
    pub from_seq: u64,
    /// The next output sequence after it.
    pub to_seq: u64,
}

impl Marker {
    fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        out.push(VERSION);
        out.extend_from_slice(&self.tag.encode());
        out.extend_from_slice(&self.from_seq.to_be_bytes());
        out.extend_from_slice(&self.to_seq.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Marker> {
        if *bytes.first()? != VERSION {
            return None;
        }
        Some(Marker {
            tag: BatchTag::decode(bytes.get(1..25)?)?,
            from_seq: u64_at(bytes, 25)?,
            to_seq: u64_at(bytes, 33)?,
        })
    }
}

fn marker_key(p: u32, token: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(MARKER);
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(&token.to_be_bytes());
    key
}

/// What one changelog record is, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A state change.
    Change(Change),
    /// A commit marker.
    Marker(Marker),
}

/// Parses a changelog record of partition `p`; `None` for a record that is
/// not accrue's or belongs to another partition (skipped, counted).
pub fn parse(p: u32, key: &[u8], value: Option<&[u8]>) -> Option<Item> {
    let (&first, rest) = key.split_first()?;
    if first == MARKER {
        let marker = Marker::decode(value?)?;
        return (keys::partition_of(rest)? == p).then_some(Item::Marker(marker));
    }
    let family = Family::from_tag(first)?;
    if keys::partition_of(rest)? != p {
        return None;
    }
    Some(Item::Change(Change {
        family,
        key: rest.to_vec(),
        value: value.map(<[u8]>::to_vec),
    }))
}

/// Rebuilds state from the log, one record at a time (pure: the caller
/// reads the broker and writes the store).
#[derive(Debug, Default)]
pub struct Replayer {
    max_epoch: u64,
    pending: Vec<Change>,
    pending_tag: Option<BatchTag>,
    /// The last batch known complete.
    pub last: Option<Marker>,
    /// Records of an older epoch after a newer one (a fenced former owner).
    pub fenced: u64,
    /// Records of batches that never completed (dropped).
    pub incomplete: u64,
    /// Keys written by dropped or fenced records. In the log those records
    /// are newer than the key's last committed value, so compaction would
    /// keep them and delete that value: the new owner writes each key's
    /// restored value (or a tombstone) again ([`Replayer::shadowed_keys`]).
    shadowed: std::collections::BTreeSet<(Family, Vec<u8>)>,
}

impl Replayer {
    /// Feeds one record; the changes that became final are appended to `out`.
    pub fn push(&mut self, tag: BatchTag, item: Item, out: &mut Vec<Change>) {
        if tag.owner.epoch < self.max_epoch {
            self.fenced += 1;
            if let Item::Change(change) = item {
                self.shadowed.insert((change.family, change.key));
            }
            return;
        }
        if tag.owner.epoch > self.max_epoch {
            self.max_epoch = tag.owner.epoch;
            self.drop_pending();
        }
        if let Some(pending) = self.pending_tag {
            if pending.owner != tag.owner {
                // Another owner took over before this batch completed.
                self.drop_pending();
            } else if pending.n < tag.n {
                // The owner went on to a later batch: this one was complete.
                self.flush(out, None);
            }
        }
        match item {
            Item::Change(change) => {
                self.pending.push(change);
                self.pending_tag = Some(tag);
            }
            Item::Marker(marker) => {
                if self.pending_tag.is_some_and(|t| t.n <= marker.tag.n) {
                    self.flush(out, Some(marker));
                }
                self.last = Some(marker);
            }
        }
    }

    /// Ends the log: a batch still open never completed and is dropped.
    pub fn finish(&mut self) {
        self.drop_pending();
    }

    fn flush(&mut self, out: &mut Vec<Change>, marker: Option<Marker>) {
        out.append(&mut self.pending);
        if let (None, Some(tag)) = (marker, self.pending_tag) {
            // Complete by succession; its marker was compacted away.
            self.last = Some(Marker {
                tag,
                from_seq: self.last.map_or(0, |m| m.from_seq),
                to_seq: self.last.map_or(0, |m| m.to_seq),
            });
        }
        self.pending_tag = None;
    }

    fn drop_pending(&mut self) {
        self.incomplete += self.pending.len() as u64;
        for change in self.pending.drain(..) {
            self.shadowed.insert((change.family, change.key));
        }
        self.pending_tag = None;
    }

    /// Keys that dropped or fenced records wrote (see the field). Writing
    /// them again is always safe: it rewrites the restored value.
    pub fn shadowed_keys(&mut self) -> Vec<(Family, Vec<u8>)> {
        std::mem::take(&mut self.shadowed).into_iter().collect()
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// Changelog records read.
    pub records: u64,
    /// State changes applied.
    pub applied: u64,
    /// Records dropped: incomplete batches and fenced owners.
    pub dropped: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The last complete batch.
    pub last: Option<Marker>,
    /// Keys the new owner must write again ([`Replayer::shadowed_keys`]).
    pub shadowed: Vec<(Family, Vec<u8>)>,
}

/// Reads changelog partitions: their head (to decide whether local state is
/// current) and their whole content (a restore).
pub struct Restorer {
    consumer: BaseConsumer<KafkaLog>,
    topic: String,
    /// Set to stop a read (the partition was revoked, or the process stops).
    cancel: Arc<AtomicBool>,
}

/// How far back from the end [`Restorer::head`] looks.
const HEAD_WINDOW: i64 = 512;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a restore waits for the next records. Generous: a fetch from far
/// behind the end can take long on a slow broker (tansu's sqlite scans from
/// the fetch offset to the end of the partition: over 30 s for the first
/// fetch of a 4-million-record changelog on a 2-core machine).
const RESTORE_STALL: Duration = Duration::from_secs(300);
/// Operations per RocksDB write while restoring.
const RESTORE_CHUNK: usize = 20_000;

/// A restore failure: the partition is not taken.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The broker could not be read.
    #[error("cannot read changelog {topic}/{partition}: {detail}")]
    Kafka {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What failed.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The read was cancelled (the partition was revoked); the partition's
    /// local state has no owner and is restored again at its next assignment.
    #[error("restore of partition {0} cancelled")]
    Cancelled(u32),
}

impl Restorer {
    /// A reader of the changelog topic.
    ///
    /// # Errors
    /// [`RestoreError::Kafka`] if the client cannot be created.
    pub fn new(config: &Config) -> Result<Self, RestoreError> {
        let topic = config.topics.changelog();
        let mut cfg = config.kafka.client_config(ClientRole::TailReader);
        cfg.set("group.id", format!("{}.restore", config.kafka.group_id))
            .set("fetch.wait.max.ms", "10")
            .set("queued.max.messages.kbytes", "262144")
            // A restore reads a long backlog: large fetches mean few round
            // trips (and on tansu's sqlite, whose fetch scans from the
            // offset to the end of the partition, few scans).
            .set("max.partition.fetch.bytes", "52428800");
        let consumer = cfg.create_with_context(KafkaLog).map_err(|e| RestoreError::Kafka {
            topic: topic.clone(),
            partition: 0,
            detail: e.to_string(),
        })?;
        Ok(Restorer {
            consumer,
            topic,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Stops reads when `cancel` is set.
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = cancel;
        self
    }

    fn err(&self, p: u32, detail: impl ToString) -> RestoreError {
        RestoreError::Kafka {
            topic: self.topic.clone(),
            partition: p,
            detail: detail.to_string(),
        }
    }

    fn watermarks(&self, p: u32) -> Result<(i64, i64), RestoreError> {
        self.consumer
            .fetch_watermarks(&self.topic, p as i32, TIMEOUT)
            .map_err(|e| self.err(p, e))
    }

    /// Reads `[from, to)` of partition `p`, calling `each` per record.
    fn read(
        &self,
        p: u32,
        from: i64,
        to: i64,
        mut each: impl FnMut(i64, Option<BatchTag>, &[u8], Option<&[u8]>) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        if from >= to {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(from))
            .map_err(|e| self.err(p, e))?;
        self.consumer.assign(&tpl).map_err(|e| self.err(p, e))?;
        let mut last_progress = Instant::now();
        let result = loop {
            if self.cancel.load(Ordering::Relaxed) {
                break Err(RestoreError::Cancelled(p));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(msg)) => {
                    last_progress = Instant::now();
                    let tag = msg.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == HEADER_TAG)
                            .and_then(|h| h.value)
                            .and_then(BatchTag::decode)
                    });
                    let offset = msg.offset();
                    if offset < to {
                        each(offset, tag, msg.key().unwrap_or_default(), msg.payload())?;
                    }
                    if offset + 1 >= to {
                        break Ok(());
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    // Compaction can leave the end short of `to`.
                    if let Ok((_, high)) = self.watermarks(p) {
                        if high <= to {
                            if let Ok(pos) = self.consumer.position() {
                                let at = pos.find_partition(&self.topic, p as i32).map(|e| e.offset());
                                if matches!(at, Some(Offset::Offset(o)) if o >= high) {
                                    break Ok(());
                                }
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(partition = p, error = %e, "changelog read error; retrying");
                }
                None => {
                    if last_progress.elapsed() > RESTORE_STALL {
                        break Err(self.err(p, format!("no records for {} s", RESTORE_STALL.as_secs())));
                    }
                }
            }
        };
        let _ = self.consumer.unassign();
        result
    }

    /// The newest batch of partition `p`'s changelog (its owner and
    /// number), or `None` if it is empty. See [`is_current`].
    ///
    /// # Errors
    /// [`RestoreError`] if the broker cannot be read.
    pub fn head(&self, p: u32) -> Result<Option<BatchTag>, RestoreError> {
        let (low, high) = self.watermarks(p)?;
        if high <= low {
            return Ok(None);
        }
        let mut newest: Option<BatchTag> = None;
        self.read(p, (high - HEAD_WINDOW).max(low), high, |_, tag, _, _| {
            if let Some(tag) = tag {
                if newest.is_none_or(|o| (tag.owner.epoch, tag.n) >= (o.owner.epoch, o.n)) {
                    newest = Some(tag);
                }
            }
            Ok(())
        })?;
        Ok(newest)
    }

    /// Replaces partition `p`'s local state by the changelog's, up to its
    /// last complete batch.
    ///
    /// # Errors
    /// [`RestoreError`] if the broker or the store fails; the partition's
    /// local state is then incomplete and the caller must not use it.
    pub fn restore(&self, store: &dyn Store, p: u32) -> Result<RestoreStats, RestoreError> {
        let started = Instant::now();
        let (low, high) = self.watermarks(p)?;
        store.delete_partition(p)?;
        let mut replayer = Replayer::default();
        let mut stats = RestoreStats::default();
        let mut out: Vec<Change> = Vec::new();
        let mut set = WriteSet::new();
        telemetry::restore_started(p, (high - low).max(0) as u64);
        let mut reported = Instant::now();
        let owner_key = keys::owner(p);
        self.read(p, low, high, |offset, tag, key, value| {
            stats.records += 1;
            let (Some(tag), Some(item)) = (tag, parse(p, key, value)) else {
                stats.dropped += 1;
                return Ok(());
            };
            replayer.push(tag, item, &mut out);
            for change in out.drain(..) {
                if change.family == Family::Meta && change.key == owner_key {
                    continue; // set last, once the restore is complete
                }
                match change.value {
                    Some(v) => set.put(change.family, change.key, v),
                    None => set.delete(change.family, change.key),
                }
            }
            if set.len() >= RESTORE_CHUNK {
                stats.applied += set.len() as u64;
                store.write(&std::mem::take(&mut set), Durability::Buffered)?;
            }
            if reported.elapsed() >= Duration::from_millis(500) {
                telemetry::restore_progress(p, (high - offset - 1).max(0) as u64);
                reported = Instant::now();
            }
            Ok(())
        })?;
        replayer.finish();
        // The owner is written last: a restore cut short leaves none, and
        // the next assignment restores again instead of trusting half a state.
        if let Some(last) = replayer.last {
            set.put(Family::Meta, owner_key.clone(), last.tag.owner.encode().to_vec());
        }
        stats.applied += set.len() as u64;
        store.write(&set, Durability::Synced)?;
        stats.dropped += replayer.fenced + replayer.incomplete;
        stats.last = replayer.last;
        stats.shadowed = replayer.shadowed_keys();
        stats.elapsed = started.elapsed();
        telemetry::restore_finished(p, stats.records, stats.elapsed);
        Ok(stats)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

mod batch;

pub use batch::{Change, ChangeBatch, ChangeBatchWriter};

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod tests;
