//! The processor core: applies input records to an open batch and commits
//! the batch as one atomic, WAL-synced write.
//!
//! It knows nothing of Kafka: the consume loop (and `replay`) feed it
//! [`InputRecord`]s. Everything it writes is keyed by input partition.
//!
//! Arithmetic here is checked or explained (the lint below): a balance that
//! would overflow or pass the contract's limit refuses the event instead.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

// The batch's maps are keyed by state keys and looked up several times per
// event: foldhash (seeded per process) costs less than SipHash there.
use foldhash::{HashMap, HashMapExt, HashSet};
use rust_decimal::Decimal;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::changelog::{BatchTag, ChangeBatchWriter, Owner};
use crate::contract::{
    self, AccrualEvent, BalanceNotification, Body, Command, ContractError, ErrorKind, Event, GiftCardIssued,
    OutputHeader, PartnerIdentified, ReferralApplied, RejectionEvent, SourceRef,
};
use crate::directory::{Directory, DirectoryEntry, NetworkView};
use crate::outbox::{fit_dead_letter, Destination, OutboxRecord};
use crate::programs::TenantConfig;
use crate::rules::{self, Booking, Customer, Notice, OrderRecord, Outcome};
use crate::state::{keys, read_next_seq, read_offset, Durability, Family, StateError, Store, WriteSet};
use crate::telemetry;

mod admit;
mod emit;
mod event;
mod loyalty;
mod prefetch;
mod till;
mod timers;
mod totals;
mod write;

pub use admit::check_for_tenant;
use emit::*;
use write::*;

/// One record read from an input topic.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Partition, the unit of state ownership.
    pub partition: u32,
    /// Offset within the topic partition.
    pub offset: i64,
    /// Kafka key, `tenant:customer`.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub payload: Option<&'a [u8]>,
}

/// What the caller hands [`Processor`] of one record's value.
// Moved once per record and never stored: boxing the event would cost an
// allocation per replayed line.
#[allow(clippy::large_enum_variant)]
enum Given {
    /// Nothing: it is decoded here.
    Raw,
    /// Decoded already (replay decodes each line once, for its key).
    Decoded(Result<Event, ContractError>),
    /// Not to be applied: dead-lettered with this error.
    Refused(ContractError),
    /// Through the admit stage already ([`Processor::admit`]).
    Admitted(Result<Target, ContractError>),
}

/// What the admit stage made of one record: an event or a command to
/// apply, or the reason it is refused. Made by [`Processor::admit`], read
/// by [`Processor::prefetch`], consumed by [`Processor::apply_admitted`].
pub struct Admission(Result<Target, ContractError>);

/// What one input record asks for, once decoded.
// One per record in flight, never stored: boxing would cost an allocation.
#[allow(clippy::large_enum_variant)]
enum Target {
    /// An internal command (a credit for another customer).
    Command(Command),
    /// An event from a POS or booking system.
    Event(Event),
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Its offset was applied before (redelivery after a restart): nothing.
    AlreadyApplied,
    /// Its `event_id` was applied before: nothing but the offset moves.
    Duplicate,
    /// Applied; this many ledger entries were written.
    Processed(usize),
    /// Refused; a dead-letter record was written.
    DeadLettered(ErrorKind),
}

/// Per-partition progress: output sequence and input offsets.
#[derive(Debug, Clone, Default)]
struct Cursor {
    next_seq: u64,
    /// Next offset to apply per input topic; absent means none applied yet.
    offsets: HashMap<String, i64>,
    /// Durable timers pending in this partition.
    timers: i64,
    /// The output sequence reserved for this batch's changelog record.
    changelog_seq: Option<u64>,
    /// The last batch written to the changelog: number and first sequence.
    changelog_last: Option<(u64, u64)>,
}

/// An open batch: everything applied since the last commit.
#[derive(Default)]
pub struct Batch {
    set: WriteSet,
    /// Balances of customers touched in this batch, by balance prefix; the
    /// authoritative view until commit.
    balances: HashMap<Vec<u8>, BTreeMap<String, Decimal>>,
    /// Balance keys changed in this batch, written once at commit.
    dirty: HashSet<(Vec<u8>, String)>,
    customers: HashMap<Vec<u8>, Customer>,
    orders: HashMap<Vec<u8>, Option<OrderRecord>>,
    bookings: HashMap<Vec<u8>, Option<Booking>>,
    /// Loyalty records of customers of tenants that keep them, by key.
    loyalty: HashMap<Vec<u8>, rules::Loyalty>,
    /// Credits that may expire, by the same key.
    lots: HashMap<Vec<u8>, rules::loyalty::Lots>,
    /// Loyalty records (and credits) to write at commit, by key.
    loyalty_dirty: HashMap<Vec<u8>, loyalty::Dirty>,
    seen: HashSet<Vec<u8>>,
    /// Dedupe records read from state by the prefetch stage: whether each
    /// key was there.
    stored_dedupe: HashMap<Vec<u8>, bool>,
    /// Timer keys deleted (fired or stale) in this batch.
    timers_deleted: HashSet<Vec<u8>>,
    /// Directory entries to apply to this instance's copy once committed.
    directory: Vec<DirectoryEntry>,
    /// Outbox records (partition, sequence) that carry internal commands.
    commands: Vec<(u32, u64)>,
    cursors: HashMap<u32, Cursor>,
    /// Deltas of the totals buckets touched in this batch, by bucket key;
    /// added to the stored sums at commit (one read and one put per bucket).
    totals: HashMap<Vec<u8>, keys::TotalsValue>,
    /// A reused buffer for the totals keys.
    totals_key: Vec<u8>,
    events: usize,
    /// For the latency metrics: the oldest `occurred_at` and the first apply.
    oldest_occurred_at: Option<time::OffsetDateTime>,
    first_applied: Option<Instant>,
}

impl Batch {
    /// Records applied to this batch (skipped redeliveries excluded).
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether nothing is waiting to be committed.
    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }
}

/// The result of a commit.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// Per partition: the next output sequence, so every record below it is
    /// durable and may be published.
    pub durable_seq: Vec<(u32, u64)>,
    /// Per (topic, partition): the next input offset.
    pub offsets: Vec<(String, u32, i64)>,
    /// Outbox records (partition, sequence) of the internal commands written.
    pub commands: Vec<(u32, u64)>,
}

/// Tenants by id, as configured.
pub type Tenants = std::collections::HashMap<String, TenantConfig>;

/// The size and age limits the processor enforces on input and dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A larger input value is a dead letter (`too_large`), not parsed
    /// (`[batch] max_input_bytes`).
    pub max_input_bytes: u64,
    /// The producer's `message.max.bytes`: a dead letter is cut to fit it.
    pub max_message_bytes: u64,
    /// Events older than this are dead letters (`dedupe_expired`): their
    /// dedupe record may be gone (`[state] dedupe_retention`).
    pub dedupe_retention: Option<std::time::Duration>,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        Limits {
            max_input_bytes: config.batch.max_input_bytes,
            max_message_bytes: config.kafka.max_message_bytes(),
            dedupe_retention: config.state.dedupe_retention,
        }
    }
}

impl Default for Limits {
    /// The defaults of an empty config: 1 MiB inputs, librdkafka's
    /// `message.max.bytes`, dedupe records kept forever.
    fn default() -> Self {
        Limits {
            max_input_bytes: 1 << 20,
            max_message_bytes: 1_000_000,
            dedupe_retention: None,
        }
    }
}

/// Where effects on other customers go.
#[derive(Clone)]
pub struct Routing {
    /// The internal commands topic: its records are commands, not events.
    pub internal_topic: String,
    /// Partitions of every (co-partitioned) topic; a command goes to the
    /// partition of its target's key, as librdkafka's default partitioner
    /// puts the target's own events.
    pub partitions: u32,
    /// The customer directory.
    pub directory: Arc<Directory>,
}

impl Routing {
    /// One partition, and a directory of the customers seeded in config.
    pub fn seeded(tenants: &Tenants) -> Self {
        let directory = Directory::standalone();
        directory.seed(tenants.values());
        Routing {
            directory: Arc::new(directory),
            ..Routing::default()
        }
    }
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            internal_topic: "internal".into(),
            partitions: 1,
            directory: Arc::new(Directory::standalone()),
        }
    }
}

/// Applies records and commits batches against a [`Store`].
pub struct Processor {
    store: Arc<dyn Store>,
    tenants: Arc<Tenants>,
    committed: HashMap<u32, Cursor>,
    code_key: Arc<[u8]>,
    routing: Routing,
    /// Write each batch's state changes to the changelog (`[state] changelog`).
    changelog: bool,
    /// Warn about gaps in input offsets (records from Kafka, whose offsets
    /// are dense; replay numbers lines across partitions).
    report_gaps: bool,
    /// The owner of each assigned partition, written in its changelog records.
    owners: HashMap<u32, Owner>,
    limits: Limits,
}

impl Processor {
    /// A processor over `store` with the configured tenants; `code_key` is
    /// the secret that makes gift-card codes unguessable.
    pub fn new(store: Arc<dyn Store>, tenants: Arc<Tenants>, code_key: Arc<[u8]>) -> Self {
        let routing = Routing::seeded(&tenants);
        Processor {
            store,
            tenants,
            committed: HashMap::new(),
            code_key,
            routing,
            changelog: false,
            report_gaps: false,
            owners: HashMap::new(),
            limits: Limits::default(),
        }
    }

    /// Sets the input size, dead-letter size and dedupe retention limits
    /// (by default those of an empty config).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Warns about, and counts, gaps between the offsets of a partition's
    /// records from now on (`accrue run`: a gap is input the broker did
    /// not serve).
    pub fn set_report_gaps(&mut self, on: bool) {
        self.report_gaps = on;
    }

    /// Writes every batch's state changes to the changelog from now on.
    pub fn set_changelog(&mut self, on: bool) {
        self.changelog = on;
    }

    /// Partition `p` is now owned by `owner` (after its assignment).
    pub fn set_owner(&mut self, p: u32, owner: Owner) {
        self.owners.insert(p, owner);
    }

    /// Sets where commands and directory entries go (`accrue run` and
    /// replay); by default one partition and a directory of the customers
    /// seeded in config.
    pub fn set_routing(&mut self, routing: Routing) {
        self.routing = routing;
    }

    /// The routing in use.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Replaces the programs (a reload). Call between batches.
    pub fn set_tenants(&mut self, tenants: Arc<Tenants>) {
        self.tenants = tenants;
    }

    /// The next offset to apply for `topic`/`partition`, from state.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn stored_offset(&self, topic: &str, partition: u32) -> Result<Option<i64>, StateError> {
        if let Some(off) = self.committed.get(&partition).and_then(|c| c.offsets.get(topic)) {
            return Ok(Some(*off));
        }
        read_offset(self.store.as_ref(), topic, partition)
    }

    /// Loads the committed progress of a newly assigned `partition`, so its
    /// pending timers count before its first batch.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn warm(&mut self, partition: u32) -> Result<(), StateError> {
        if !self.committed.contains_key(&partition) {
            let cursor = self.load_cursor(partition)?;
            self.committed.insert(partition, cursor);
        }
        Ok(())
    }

    /// Forgets cached progress of `partition` (it was revoked); the next
    /// touch reloads it from the store.
    pub fn forget(&mut self, partition: u32) {
        self.committed.remove(&partition);
        self.owners.remove(&partition);
    }

    /// Applies one record to `batch`.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; the batch must then be dropped.
    pub fn apply(&mut self, batch: &mut Batch, record: &InputRecord<'_>) -> Result<Applied, StateError> {
        self.apply_with(batch, record, Given::Raw)
    }

    /// [`Processor::apply`] for an input record whose value the caller has
    /// already run through [`contract::decode`] (replay needs the event's
    /// key before it can choose the partition, and decodes each line once).
    /// The tenant checks still run here. Records of the internal topic are
    /// commands, not events: `decoded` is ignored for them.
    ///
    /// # Errors
    /// As [`Processor::apply`].
    pub fn apply_decoded(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        decoded: Result<Event, ContractError>,
    ) -> Result<Applied, StateError> {
        self.apply_with(batch, record, Given::Decoded(decoded))
    }

    /// Dead-letters `record` as `processing_failed` with `reason`, without
    /// decoding or applying it: its processing failed inside accrue
    /// `[batch] max_attempts` times (see [`crate::pipeline::poison`]).
    ///
    /// # Errors
    /// As [`Processor::apply`].
    pub fn apply_unprocessable(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        reason: &str,
    ) -> Result<Applied, StateError> {
        let failed = ContractError::new(ErrorKind::ProcessingFailed, reason);
        self.apply_with(batch, record, Given::Refused(failed))
    }

    fn apply_with(&mut self, batch: &mut Batch, record: &InputRecord<'_>, given: Given) -> Result<Applied, StateError> {
        let p = record.partition;
        self.open_cursor(batch, p)?;
        let expected = match batch.cursors.get(&p).and_then(|c| c.offsets.get(record.topic)) {
            Some(off) => Some(*off),
            None => {
                let stored = read_offset(self.store.as_ref(), record.topic, p)?;
                if let (Some(off), Some(cursor)) = (stored, batch.cursors.get_mut(&p)) {
                    cursor.offsets.insert(record.topic.to_owned(), off);
                }
                stored
            }
        };
        if expected.is_some_and(|next| record.offset < next) {
            telemetry::already_applied(1);
            return Ok(Applied::AlreadyApplied);
        }
        if let Some(next) = expected.filter(|next| self.report_gaps && record.offset > *next) {
            // Inputs are neither compacted nor written by accrue: a gap is
            // records the broker did not serve (or a transactional
            // producer's commit markers). Say so; never silently.
            let missing = record.offset.saturating_sub(next);
            telemetry::input_offset_gap(record.topic, missing);
            tracing::warn!(
                topic = record.topic,
                partition = p,
                expected = next,
                offset = record.offset,
                missing,
                "input offsets skipped: the broker served this record after a gap"
            );
        }
        // One per applied record: a batch holds far fewer than usize::MAX.
        batch.events = batch.events.saturating_add(1);
        batch.first_applied.get_or_insert_with(Instant::now);
        let target = self.target(record, given);
        let applied = match target {
            Err(err) => {
                self.dead_letter(batch, record, &err);
                Applied::DeadLettered(err.kind)
            }
            Ok(Target::Command(command)) => self.apply_command(batch, record, &command)?,
            Ok(Target::Event(event)) => self.apply_event(batch, record, &event)?,
        };
        if let Some(cursor) = batch.cursors.get_mut(&p) {
            // Kafka offsets stay far below i64::MAX.
            let next = record.offset.saturating_add(1);
            match cursor.offsets.get_mut(record.topic) {
                Some(off) => *off = next,
                None => {
                    cursor.offsets.insert(record.topic.to_owned(), next);
                }
            }
        }
        Ok(applied)
    }

    /// Stages 3 and 4 for one record that went through [`Processor::admit`]
    /// (and, with its chunk, [`Processor::prefetch`]): evaluates it and
    /// emits its effects into `batch`. Records must come in offset order
    /// per partition, as for [`Processor::apply`].
    ///
    /// # Errors
    /// As [`Processor::apply`].
    pub fn apply_admitted(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        admission: Admission,
    ) -> Result<Applied, StateError> {
        self.apply_with(batch, record, Given::Admitted(admission.0))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod limits_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod prop_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod test_cafe;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod expiry_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tiers_tests;

#[cfg(test)]
mod campaign_tests;
