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
use crate::rules::{self, Booking, Customer, Notice, OrderRecord, Outcome, RejectionType};
use crate::state::{keys, read_next_seq, read_offset, Durability, Family, StateError, Store, WriteSet};
use crate::telemetry;

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
}

/// What one input record asks for, once decoded.
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
    seen: HashSet<Vec<u8>>,
    /// Timer keys deleted (fired or stale) in this batch.
    timers_deleted: HashSet<Vec<u8>>,
    /// Directory entries to apply to this instance's copy once committed.
    directory: Vec<DirectoryEntry>,
    /// Outbox records (partition, sequence) that carry internal commands.
    commands: Vec<(u32, u64)>,
    cursors: HashMap<u32, Cursor>,
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

    /// A batch that writes each of `keys` of partition `p` again with its
    /// current value (a tombstone if it has none), so that its changelog
    /// batch supersedes records a restore dropped (see
    /// [`crate::changelog::RestoreStats::shadowed`]). Commit it like any batch.
    ///
    /// # Errors
    /// [`StateError`] if the store cannot be read.
    pub fn repair_batch(&self, p: u32, keys: &[(Family, Vec<u8>)]) -> Result<Batch, StateError> {
        let mut batch = Batch::default();
        self.open_cursor(&mut batch, p)?;
        for (family, key) in keys {
            match self.store.get(*family, key)? {
                Some(value) => batch.set.put(*family, key.clone(), value),
                None => batch.set.delete(*family, key.clone()),
            }
        }
        Ok(batch)
    }

    /// Opens partition `p` in `batch`: loads its progress and reserves the
    /// sequence of the batch's changelog record, which precedes its outputs.
    fn open_cursor(&self, batch: &mut Batch, p: u32) -> Result<(), StateError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = batch.cursors.entry(p) {
            let mut cursor = self.load_cursor(p)?;
            if self.changelog {
                cursor.changelog_seq = Some(cursor.next_seq);
                cursor.next_seq = seq_after(cursor.next_seq);
            }
            slot.insert(cursor);
        }
        Ok(())
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
        // Records of the internal topic are commands, not events.
        let target = match given {
            Given::Refused(err) => Err(err),
            _ if record.topic == self.routing.internal_topic => self.decode_command(record).map(Target::Command),
            // The caller parsed it already; the size rule still holds.
            Given::Decoded(decoded) => self
                .check_size(record)
                .and(decoded)
                .and_then(|event| self.admit(record, event))
                .map(Target::Event),
            Given::Raw => self.decode(record).map(Target::Event),
        };
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
            cursor
                .offsets
                .insert(record.topic.to_owned(), record.offset.saturating_add(1));
        }
        Ok(applied)
    }

    /// Writes `batch` as one WAL-synced write and returns what became durable.
    ///
    /// # Errors
    /// [`StateError`] if the write fails; nothing of the batch is then stored.
    pub fn commit(&mut self, batch: Batch) -> Result<Committed, StateError> {
        let Batch {
            mut set,
            balances,
            dirty,
            mut cursors,
            events,
            oldest_occurred_at,
            first_applied,
            directory,
            commands,
            ..
        } = batch;
        for (prefix, account) in dirty {
            let balance = balances
                .get(&prefix)
                .and_then(|b| b.get(&account))
                .copied()
                .unwrap_or_default();
            let mut key = prefix;
            key.extend_from_slice(account.as_bytes());
            set.put(Family::Balances, key, keys::encode_decimal(balance).to_vec());
        }
        let mut committed = Committed {
            commands,
            ..Committed::default()
        };
        for (p, cursor) in &cursors {
            set.put(
                Family::Meta,
                keys::next_seq(*p),
                keys::encode_u64(cursor.next_seq).to_vec(),
            );
            for (topic, off) in &cursor.offsets {
                set.put(
                    Family::Offsets,
                    keys::offset(*p, topic),
                    keys::encode_u64(*off as u64).to_vec(),
                );
                committed.offsets.push((topic.clone(), *p, *off));
            }
            committed.durable_seq.push((*p, cursor.next_seq));
        }
        if self.changelog {
            self.add_changelog(&mut set, &mut cursors)?;
        }
        let started = Instant::now();
        self.store.write(&set, Durability::Synced)?;
        for entry in &directory {
            self.routing.directory.upsert(entry);
        }
        telemetry::batch_committed(events, started.elapsed());
        telemetry::batch_latency(oldest_occurred_at, first_applied);
        self.committed.extend(cursors);
        Ok(committed)
    }

    fn load_cursor(&self, p: u32) -> Result<Cursor, StateError> {
        if let Some(cursor) = self.committed.get(&p) {
            return Ok(cursor.clone());
        }
        let prefix = keys::partition_prefix(p);
        let timers = self.store.scan(Family::Timers, &prefix, &prefix, usize::MAX)?.len() as i64;
        let changelog_last = self
            .store
            .get(Family::Meta, &keys::changelog_cursor(p))?
            .and_then(|v| Some((keys::decode_u64(v.get(..8)?)?, keys::decode_u64(v.get(8..)?)?)));
        Ok(Cursor {
            next_seq: read_next_seq(self.store.as_ref(), p)?,
            offsets: HashMap::new(),
            timers,
            changelog_seq: None,
            changelog_last,
        })
    }

    /// Adds each partition's changelog record to `set`: every operation of
    /// the batch on the partition, tombstones for the outbox records of the
    /// previous batch (published before this record is sent), and the
    /// partition's batch number. See [`crate::changelog`].
    fn add_changelog(&self, set: &mut WriteSet, cursors: &mut HashMap<u32, Cursor>) -> Result<(), StateError> {
        let mut writers: HashMap<u32, ChangeBatchWriter> = HashMap::with_capacity(cursors.len());
        for (p, cursor) in cursors.iter_mut() {
            let Some(seq) = cursor.changelog_seq.take() else {
                continue;
            };
            // One batch number per commit: u64 cannot run out.
            let n = cursor.changelog_last.map_or(1, |(n, _)| n.saturating_add(1));
            let mut value = keys::encode_u64(n).to_vec();
            value.extend_from_slice(&keys::encode_u64(seq));
            set.put(Family::Meta, keys::changelog_cursor(*p), value);
            let owner = self.owners.get(p).copied().unwrap_or_default();
            let mut writer = ChangeBatchWriter::new(BatchTag { owner, n }, seq, cursor.next_seq);
            if let Some((_, prev)) = cursor.changelog_last {
                for old in prev..seq {
                    writer.push(Family::Outbox, &crate::state::Op::Delete(keys::outbox(*p, old)));
                }
            }
            cursor.changelog_last = Some((n, seq));
            writers.insert(*p, writer);
        }
        for (family, op) in set.ops() {
            let key = match op {
                crate::state::Op::Put(k, _) | crate::state::Op::Delete(k) => k,
            };
            if let Some(writer) = keys::partition_of(key).and_then(|p| writers.get_mut(&p)) {
                writer.push(*family, op);
            }
        }
        for (p, writer) in writers {
            let Some(seq) = cursors.get(&p).and_then(|c| c.changelog_last).map(|(_, seq)| seq) else {
                continue;
            };
            let record = OutboxRecord {
                destination: Destination::Changelog,
                partition: None,
                key: None,
                headers: Vec::new(),
                payload: writer.finish(),
            };
            set.put(Family::Outbox, keys::outbox(p, seq), record.encode());
        }
        Ok(())
    }

    fn decode(&self, record: &InputRecord<'_>) -> Result<Event, ContractError> {
        self.check_size(record)?;
        let Some(payload) = record.payload else {
            return Err(ContractError::new(ErrorKind::MalformedJson, "the record has no value"));
        };
        self.admit(record, contract::decode(payload)?)
    }

    /// Refuses a value over `max_input_bytes` before anything parses it.
    fn check_size(&self, record: &InputRecord<'_>) -> Result<(), ContractError> {
        let size = record.payload.map_or(0, <[u8]>::len) as u64;
        if size > self.limits.max_input_bytes {
            return Err(ContractError::new(
                ErrorKind::TooLarge,
                format!(
                    "the value is {size} bytes, more than [batch] max_input_bytes ({}); it was not parsed",
                    self.limits.max_input_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Refuses an event (or command) that occurred longer ago than the
    /// dedupe retention: its dedupe record may have been dropped, so a
    /// duplicate could no longer be recognised.
    fn check_retention(&self, occurred_at: time::OffsetDateTime) -> Result<(), ContractError> {
        let Some(retention) = self.limits.dedupe_retention else {
            return Ok(());
        };
        let window_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let oldest = unix_ms(time::OffsetDateTime::now_utc()).saturating_sub(window_ms);
        if unix_ms(occurred_at) < oldest {
            return Err(ContractError::new(
                ErrorKind::DedupeExpired,
                format!(
                    "occurred_at {} is older than [state] dedupe_retention ({}): a duplicate of it could no \
                     longer be recognised, so it is not applied",
                    occurred_at.format(&Rfc3339).unwrap_or_default(),
                    humantime_serde::re::humantime::format_duration(retention)
                ),
            ));
        }
        Ok(())
    }

    /// The checks of a decoded event against its tenant's config and the
    /// record's key.
    fn admit(&self, record: &InputRecord<'_>, event: Event) -> Result<Event, ContractError> {
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Err(ContractError::new(
                ErrorKind::UnknownTenant,
                format!("tenant {:?} is not configured", event.tenant),
            ));
        };
        contract::check_key(record.key, &event)?;
        self.check_retention(event.occurred_at)?;
        if !tenant.branches.contains_key(&event.branch) {
            return Err(ContractError::new(
                ErrorKind::UnknownBranch,
                format!("branch {:?} is not a branch of tenant {:?}", event.branch, event.tenant),
            ));
        }
        match &event.body {
            Body::OrderPaid(order) | Body::VisitCompleted(order) => {
                let amounts = order
                    .lines
                    .iter()
                    .map(|l| l.amount)
                    .chain(order.payments.iter().map(|p| p.amount))
                    .chain(std::iter::once(order.total));
                check_money(tenant, &order.currency, amounts)?;
            }
            Body::OrderRefunded(refund) => check_money(tenant, &refund.currency, std::iter::once(refund.amount))?,
            Body::CustomerUpserted(_)
            | Body::BalanceAdjust(_)
            | Body::GiftCardExchange(_)
            | Body::BookingCreated(_)
            | Body::BookingRescheduled(_)
            | Body::BookingCancelled(_)
            | Body::BookingNoShow(_) => {}
        }
        Ok(event)
    }

    fn apply_event(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        event: &Event,
    ) -> Result<Applied, StateError> {
        let p = record.partition;
        let event_type = event.event_type().as_str();
        let dedupe_key = keys::dedupe(p, &event.tenant, &event.event_id);
        if self.applied_before(batch, &dedupe_key)? {
            telemetry::duplicate(event_type);
            return Ok(Applied::Duplicate);
        }
        let tenants = self.tenants.clone();
        // The event was validated against this tenant in `decode`.
        let Some(tenant) = tenants.get(&event.tenant) else {
            return Ok(Applied::Processed(0));
        };
        let customer = self.customer(batch, p, tenant, &event.customer)?;
        let prefix = keys::balance_prefix(p, &event.tenant, &event.customer);
        self.load_balances(batch, &prefix)?;
        let original_key = match &event.body {
            Body::OrderRefunded(refund) => Some(keys::order(
                p,
                &event.tenant,
                &event.customer,
                &refund.original_event_id,
            )),
            _ => None,
        };
        let original = match &original_key {
            Some(key) => self.order(batch, key)?,
            None => None,
        };
        let booking_id = match &event.body {
            Body::BookingCreated(b) => Some(&b.booking_id),
            Body::BookingRescheduled(b) => Some(&b.booking_id),
            Body::BookingCancelled(b) | Body::BookingNoShow(b) => Some(&b.booking_id),
            _ => None,
        };
        let booking = match booking_id {
            Some(id) => self.booking(batch, &keys::booking(p, &event.tenant, &event.customer, id))?,
            None => None,
        };
        let mut outcome = {
            let empty = BTreeMap::new();
            let balances = batch.balances.get(&prefix).unwrap_or(&empty);
            rules::evaluate(&rules::Input {
                tenant,
                event,
                customer: &customer,
                balances,
                original: original.as_ref(),
                booking: booking.as_ref(),
                code_key: &self.code_key,
                network: &NetworkView {
                    directory: &self.routing.directory,
                    tenants: &tenants,
                },
            })
        };
        if let (Body::BookingCreated(_), Some((_, created))) = (&event.body, outcome.booking.as_deref_mut()) {
            created.source_topic = record.topic.to_owned();
            created.source_offset = record.offset;
        }
        let out = Emitter::for_event(p, tenant, record, event);
        let first_seq = peek_seq(batch, p);
        let entries = self.apply_outcome(batch, &out, &prefix, &outcome)?.entries;
        if let (Body::CustomerUpserted(_), Some(profile)) = (&event.body, &outcome.customer) {
            self.publish_directory_entry(batch, p, tenant, &event.customer, profile)?;
        }
        record_applied(batch, p, dedupe_key, first_seq, unix_ms(event.occurred_at));
        telemetry::processed(event_type);
        telemetry::tenant_processed(&event.tenant);
        if batch.oldest_occurred_at.is_none_or(|t| event.occurred_at < t) {
            batch.oldest_occurred_at = Some(event.occurred_at);
        }
        Ok(Applied::Processed(entries))
    }

    /// Writes an outcome's ledger entries, outputs and records. Every new
    /// balance is computed first: if one would overflow or pass the
    /// contract's balance limit, the outcome is replaced by a rejection
    /// (`amount_overflow`, `balance_limit`) before anything of it is written.
    fn apply_outcome(
        &self,
        batch: &mut Batch,
        out: &Emitter<'_>,
        prefix: &[u8],
        outcome: &Outcome,
    ) -> Result<Written, StateError> {
        let (p, tenant, customer) = (out.p, out.tenant, out.customer);
        let refused;
        let (outcome, after) = match balances_after(batch.balances.get(prefix), outcome, out.reject_as) {
            Ok(after) => (outcome, after),
            Err(rejection) => {
                refused = *rejection;
                (&refused, Vec::new())
            }
        };
        let mut last_balance = Decimal::ZERO;
        for (entry, new_balance) in outcome.entries.iter().zip(after) {
            let balances = batch.balances.entry(prefix.to_vec()).or_default();
            balances.insert(entry.account.to_string(), new_balance);
            last_balance = new_balance;
            batch.dirty.insert((prefix.to_vec(), entry.account.to_string()));
            let seq = next_seq(batch, p);
            let scale = rules::scale_of(tenant, &entry.account);
            let accrual = AccrualEvent {
                header: out.header(seq, AccrualEvent::TYPE),
                account: entry.account.to_string(),
                entry_type: entry.entry_type.as_str().to_owned(),
                program: entry.program.to_string(),
                amount: money(entry.amount, scale),
                balance: money(new_balance, scale),
                base_amount: entry.base.map(|b| money(b, tenant.minor_units)).unwrap_or_default(),
                currency: tenant.currency.clone(),
                description: entry.description.clone(),
                operator: entry.operator.clone(),
            };
            let payload = to_json(&accrual)?;
            let ledger_key = keys::ledger(p, &tenant.id, customer, seq);
            // The read API's index by time, in the same atomic write.
            let occurred_ms = keys::rfc3339_ms(&out.occurred_at).unwrap_or_default();
            batch.set.put(
                Family::LedgerByTime,
                keys::ledger_by_time(p, &tenant.id, occurred_ms, seq),
                ledger_key.clone(),
            );
            batch.set.put(Family::Ledger, ledger_key, payload.clone());
            out.push(batch, seq, payload);
            telemetry::ledger_entry(entry.entry_type.as_str());
        }
        if let Some(rejection) = &outcome.rejection {
            let seq = next_seq(batch, p);
            let payload = to_json(&RejectionEvent {
                header: out.header(seq, rejection.output_type.as_str()),
                reason_code: rejection.code.as_str().to_owned(),
                reason: rejection.reason.clone(),
            })?;
            out.push(batch, seq, payload);
            telemetry::rejected(rejection.output_type.as_str(), rejection.code.as_str());
        }
        if let (Some(notification), Some(entry)) = (outcome.notify, outcome.entries.first()) {
            let seq = next_seq(batch, p);
            let scale = rules::scale_of(tenant, &entry.account);
            let payload = to_json(&BalanceNotification {
                header: out.header(seq, notification),
                account: entry.account.to_string(),
                amount: money(entry.amount, scale),
                balance: money(last_balance, scale),
                description: entry.description.clone().unwrap_or_default(),
            })?;
            out.push(batch, seq, payload);
        }
        let mut command_id = None;
        if let Some(command) = &outcome.command {
            // The command's id is the outbox position `push_routed` takes below.
            let id = contract::output_id(p, peek_seq(batch, p));
            let body = Command {
                schema_version: contract::SCHEMA_VERSION,
                id: id.clone(),
                tenant: command.tenant.clone(),
                customer: command.customer.clone(),
                source_tenant: tenant.id.clone(),
                source_customer: customer.to_owned(),
                branch: out.branch.to_owned(),
                source_event_id: out.event_id.to_owned(),
                occurred_at: out.occurred,
                body: command.body.clone(),
            };
            let seq = self.push_routed(
                batch,
                p,
                Destination::Internal,
                &command.tenant,
                &command.customer,
                to_json(&body)?,
            );
            telemetry::command_sent(body.type_name());
            batch.commands.push((p, seq));
            command_id = Some(id);
        }
        match outcome.notice.as_deref() {
            Some(Notice::Referral {
                program,
                referrer,
                invitee_discount_percent,
                reward,
            }) => {
                let seq = next_seq(batch, p);
                let scale = rules::scale_of(tenant, &reward.0);
                let payload = to_json(&ReferralApplied {
                    header: out.header(seq, "referral.applied"),
                    program: program.clone(),
                    referrer: referrer.clone(),
                    invitee_discount_percent: invitee_discount_percent.normalize().to_string(),
                    referrer_account: reward.0.clone(),
                    referrer_amount: money(reward.1, scale),
                    command_id: command_id.clone(),
                })?;
                out.push(batch, seq, payload);
            }
            Some(Notice::Partner {
                partner_tenant,
                partner_customer,
                discount_percent,
                accrual_percent,
                shared_deposit,
            }) => {
                let seq = next_seq(batch, p);
                let payload = to_json(&PartnerIdentified {
                    header: out.header(seq, "partner.identified"),
                    partner_tenant: partner_tenant.clone(),
                    partner_customer: partner_customer.clone(),
                    discount_percent: discount_percent.normalize().to_string(),
                    accrual_percent: accrual_percent.normalize().to_string(),
                    shared_deposit: *shared_deposit,
                    command_id: command_id.clone(),
                })?;
                out.push(batch, seq, payload);
            }
            None => {}
        }
        if let Some(card) = &outcome.gift_card {
            let seq = next_seq(batch, p);
            let payload = to_json(&GiftCardIssued {
                header: out.header(seq, "giftcard.issued"),
                gift_card: card.gift_card.clone(),
                code: card.code.clone(),
                value: money(card.value, tenant.minor_units),
                currency: tenant.currency.clone(),
                points: money(card.points, 0),
                account: card.account.clone(),
            })?;
            out.push(batch, seq, payload);
        }
        if let Some(profile) = &outcome.customer {
            let key = keys::customer(p, &tenant.id, customer);
            batch.set.put(Family::Customers, key.clone(), to_json(profile)?);
            batch.customers.insert(key, profile.clone());
        }
        if let Some((order_event, order)) = &outcome.order_record {
            let key = keys::order(p, &tenant.id, customer, order_event);
            batch.set.put(Family::Orders, key.clone(), to_json(order)?);
            batch.orders.insert(key, Some(order.clone()));
        }
        if let Some((booking_id, booking)) = outcome.booking.as_deref() {
            let key = keys::booking(p, &tenant.id, customer, booking_id);
            batch.set.put(Family::Bookings, key.clone(), to_json(booking)?);
            batch.bookings.insert(key, Some(booking.clone()));
            if let Some(due) = outcome.timers.delete {
                batch
                    .set
                    .delete(Family::Timers, keys::timer(p, due, &tenant.id, customer, booking_id));
                add_timers(batch, p, -1);
            }
            if let Some(due) = outcome.timers.set {
                batch.set.put(
                    Family::Timers,
                    keys::timer(p, due, &tenant.id, customer, booking_id),
                    Vec::new(),
                );
                add_timers(batch, p, 1);
            }
        }
        Ok(Written {
            entries: outcome.entries.len(),
            rejected: outcome.rejection.is_some(),
        })
    }

    /// The customer's profile: this batch, then state, then config, else an
    /// unregistered customer with no groups.
    fn customer(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
    ) -> Result<Customer, StateError> {
        let key = keys::customer(p, &tenant.id, customer);
        if let Some(found) = batch.customers.get(&key) {
            return Ok(found.clone());
        }
        let profile = match self.store.get(Family::Customers, &key)? {
            Some(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt(Family::Customers, &e.to_string()))?,
            None => tenant.seeded_customer(customer).cloned().unwrap_or_default(),
        };
        batch.customers.insert(key, profile.clone());
        Ok(profile)
    }

    /// Loads every balance of the customer at `prefix` into the batch once.
    fn load_balances(&self, batch: &mut Batch, prefix: &[u8]) -> Result<(), StateError> {
        if batch.balances.contains_key(prefix) {
            return Ok(());
        }
        let mut found = BTreeMap::new();
        for (key, value) in self.store.scan(Family::Balances, prefix, prefix, 64)? {
            let account = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let balance =
                keys::decode_decimal(&value).ok_or_else(|| corrupt(Family::Balances, "balance is not 16 bytes"))?;
            found.insert(account, balance);
        }
        batch.balances.insert(prefix.to_vec(), found);
        Ok(())
    }

    fn booking(&self, batch: &mut Batch, key: &[u8]) -> Result<Option<Booking>, StateError> {
        read_through(self.store.as_ref(), &mut batch.bookings, Family::Bookings, key)
    }

    /// Fires up to `limit` timers of partition `p` due at `now_ms` or
    /// earlier, into `batch`: each credit, its outputs and the timer's
    /// deletion commit together. Returns how many credits were made.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; the batch must then be dropped.
    pub fn fire_due(&mut self, batch: &mut Batch, p: u32, now_ms: i64, limit: usize) -> Result<usize, StateError> {
        let prefix = keys::partition_prefix(p);
        let due = self.store.scan(Family::Timers, &prefix, &prefix, limit)?;
        let mut fired: usize = 0;
        for (key, _) in due {
            let Some(keys::TimerKey {
                due_ms,
                tenant: tenant_id,
                customer: customer_id,
                booking_id,
            }) = keys::parse_timer(&key)
            else {
                continue;
            };
            if due_ms > now_ms {
                break;
            }
            self.open_cursor(batch, p)?;
            let tenants = self.tenants.clone();
            let booking_key = keys::booking(p, &tenant_id, &customer_id, &booking_id);
            let booking = self.booking(batch, &booking_key)?;
            let live = booking.as_ref().is_some_and(|b| b.due_ms == Some(due_ms));
            let (Some(tenant), Some(booking), true) = (tenants.get(&tenant_id), booking, live) else {
                // Moved, cancelled, fired in this batch, or of a removed
                // tenant: the timer is stale.
                if batch.timers_deleted.insert(key.clone()) {
                    batch.set.delete(Family::Timers, key);
                    add_timers(batch, p, -1);
                }
                continue;
            };
            let customer = self.customer(batch, p, tenant, &booking.customer)?;
            let prefix = keys::balance_prefix(p, &tenant_id, &booking.customer);
            self.load_balances(batch, &prefix)?;
            let mut outcome = rules::fire(&booking_id, &booking, customer.marketing_consent);
            if let Err(refused) = balances_after(batch.balances.get(&prefix), &outcome, RejectionType::Booking) {
                // The credit does not fit the balance: refuse it once and drop
                // the timer, or it would fire (and be refused) forever. The
                // booking stays scheduled, without a credit to come.
                let mut kept = booking.clone();
                kept.due_ms = None;
                outcome = Outcome {
                    timers: rules::TimerChange {
                        delete: Some(due_ms),
                        set: None,
                    },
                    booking: Some(Box::new((booking_id.clone(), kept))),
                    ..*refused
                };
            }
            // i64 milliseconds times 10^6 always fits an i128.
            let due_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(due_ms).saturating_mul(1_000_000))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let out = Emitter {
                p,
                tenant,
                customer: &booking.customer,
                branch: &booking.branch,
                event_id: &booking.event_id,
                source: SourceRef {
                    topic: booking.source_topic.clone(),
                    partition: p,
                    offset: booking.source_offset,
                },
                occurred_at: due_at.format(&Rfc3339).unwrap_or_default(),
                occurred: due_at,
                reject_as: RejectionType::Booking,
            };
            batch.timers_deleted.insert(key.clone());
            self.apply_outcome(batch, &out, &prefix, &outcome)?;
            telemetry::timer_fired(now_ms.saturating_sub(due_ms).max(0));
            // At most `limit` timers are scanned.
            fired = fired.saturating_add(1);
        }
        Ok(fired)
    }

    /// The due time of the earliest timer of partition `p` in state, if any.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn earliest_due(&self, p: u32) -> Result<Option<i64>, StateError> {
        let prefix = keys::partition_prefix(p);
        let first = self.store.scan(Family::Timers, &prefix, &prefix, 1)?;
        Ok(first
            .first()
            .and_then(|(key, _)| keys::parse_timer(key))
            .map(|t| t.due_ms))
    }

    /// Pending timers of every partition this processor has committed.
    pub fn timers_pending(&self) -> i64 {
        self.committed.values().map(|c| c.timers).sum()
    }

    fn decode_command(&self, record: &InputRecord<'_>) -> Result<Command, ContractError> {
        let Some(payload) = record.payload else {
            return Err(ContractError::new(ErrorKind::MalformedJson, "the record has no value"));
        };
        let command = Command::decode(record.key, payload)?;
        self.check_retention(command.occurred_at)?;
        if !self.tenants.contains_key(&command.tenant) {
            return Err(ContractError::new(
                ErrorKind::UnknownTenant,
                format!("command for tenant {:?}, which is not configured", command.tenant),
            ));
        }
        Ok(command)
    }

    /// Applies an internal command to its target customer, exactly once:
    /// its dedupe record (`cmd:` + origin partition-sequence) is written in
    /// the same batch as its effect.
    fn apply_command(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        command: &Command,
    ) -> Result<Applied, StateError> {
        let p = record.partition;
        let command_type = command.type_name();
        // ':' never occurs in an input event_id, so no event can take this key.
        let dedupe_key = keys::dedupe(p, &command.tenant, &format!("cmd:{}", command.id));
        if self.applied_before(batch, &dedupe_key)? {
            telemetry::command_applied(command_type, "duplicate");
            return Ok(Applied::Duplicate);
        }
        let tenants = self.tenants.clone();
        let Some(tenant) = tenants.get(&command.tenant) else {
            return Ok(Applied::Processed(0));
        };
        let prefix = keys::balance_prefix(p, &command.tenant, &command.customer);
        self.load_balances(batch, &prefix)?;
        let outcome = {
            let empty = BTreeMap::new();
            let balances = batch.balances.get(&prefix).unwrap_or(&empty);
            let network = NetworkView {
                directory: &self.routing.directory,
                tenants: &tenants,
            };
            rules::apply_command(tenant, balances, &network, command)
        };
        let out = Emitter {
            p,
            tenant,
            customer: &command.customer,
            branch: &command.branch,
            event_id: &command.source_event_id,
            source: SourceRef {
                topic: record.topic.to_owned(),
                partition: p,
                offset: record.offset,
            },
            occurred_at: command.occurred_at.format(&Rfc3339).unwrap_or_default(),
            occurred: command.occurred_at,
            reject_as: rules::command_rejection_type(&command.body),
        };
        let first_seq = peek_seq(batch, p);
        let written = self.apply_outcome(batch, &out, &prefix, &outcome)?;
        let entries = written.entries;
        record_applied(batch, p, dedupe_key, first_seq, unix_ms(command.occurred_at));
        let result = if written.rejected { "rejected" } else { "applied" };
        telemetry::command_applied(command_type, result);
        Ok(Applied::Processed(entries))
    }

    /// Writes a customer's directory entry to the outbox (for every
    /// instance) and remembers it for this instance's copy at commit.
    fn publish_directory_entry(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        profile: &Customer,
    ) -> Result<(), StateError> {
        let entry = DirectoryEntry {
            tenant: tenant.id.clone(),
            customer: customer.to_owned(),
            phone: profile.phone.clone(),
            discount_percent: profile.discount_percent,
            accrual_percent: profile.accrual_percent,
        };
        self.push_routed(batch, p, Destination::Directory, &tenant.id, customer, to_json(&entry)?);
        batch.directory.push(entry);
        Ok(())
    }

    /// Queues `payload` as the next outbox record of partition `p`, for
    /// `destination`, keyed `tenant:customer` and routed to the partition of
    /// that key; returns its sequence.
    fn push_routed(
        &self,
        batch: &mut Batch,
        p: u32,
        destination: Destination,
        tenant: &str,
        customer: &str,
        payload: Vec<u8>,
    ) -> u64 {
        let key = contract::customer_key(tenant, customer).into_bytes();
        let record = OutboxRecord {
            destination,
            partition: Some(contract::partition_for(&key, self.routing.partitions)),
            key: Some(key),
            headers: Vec::new(),
            payload,
        };
        let seq = next_seq(batch, p);
        batch.set.put(Family::Outbox, keys::outbox(p, seq), record.encode());
        seq
    }

    /// Whether `dedupe_key` was applied before, in this batch or in state.
    /// Any value counts, old 8-byte ones too ([`keys::DedupeValue`]).
    fn applied_before(&self, batch: &Batch, dedupe_key: &[u8]) -> Result<bool, StateError> {
        Ok(batch.seen.contains(dedupe_key) || self.store.get(Family::Dedupe, dedupe_key)?.is_some())
    }

    fn order(&self, batch: &mut Batch, key: &[u8]) -> Result<Option<OrderRecord>, StateError> {
        read_through(self.store.as_ref(), &mut batch.orders, Family::Orders, key)
    }

    /// Writes the dead letter of `record`, cut to fit the producer's
    /// `message.max.bytes` (a truncated copy, with the original size).
    fn dead_letter(&self, batch: &mut Batch, record: &InputRecord<'_>, err: &ContractError) {
        let p = record.partition;
        let seq = next_seq(batch, p);
        let out = OutboxRecord {
            destination: Destination::DeadLetter,
            partition: None,
            key: record.key.map(<[u8]>::to_vec),
            headers: vec![
                (
                    contract::HEADER_ERROR_KIND.into(),
                    err.kind.as_str().as_bytes().to_vec(),
                ),
                (contract::HEADER_ERROR_REASON.into(), err.reason.as_bytes().to_vec()),
                (contract::HEADER_SOURCE_TOPIC.into(), record.topic.as_bytes().to_vec()),
                (contract::HEADER_SOURCE_PARTITION.into(), p.to_string().into_bytes()),
                (
                    contract::HEADER_SOURCE_OFFSET.into(),
                    record.offset.to_string().into_bytes(),
                ),
            ],
            payload: record.payload.map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let out = fit_dead_letter(out, self.limits.max_message_bytes);
        batch.set.put(Family::Outbox, keys::outbox(p, seq), out.encode());
        telemetry::dead_lettered(err.kind.as_str());
        tracing::debug!(partition = p, offset = record.offset, topic = record.topic, reason = %err, "dead-lettered");
    }
}

/// A JSON record of `family`: this batch's copy if it has one, else the
/// stored one, remembered (absent too) for the rest of the batch.
fn read_through<T: serde::de::DeserializeOwned + Clone>(
    store: &dyn Store,
    cache: &mut HashMap<Vec<u8>, Option<T>>,
    family: Family,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    if let Some(found) = cache.get(key) {
        return Ok(found.clone());
    }
    let record = match store.get(family, key)? {
        Some(raw) => Some(serde_json::from_slice(&raw).map_err(|e| corrupt(family, &e.to_string()))?),
        None => None,
    };
    cache.insert(key.to_vec(), record.clone());
    Ok(record)
}

/// Records `dedupe_key` as applied in `batch`. Its value is the sequence of
/// the first output written since `first_seq` (or `u64::MAX` if none was)
/// and when the event occurred, which the retention compaction reads.
fn record_applied(batch: &mut Batch, p: u32, dedupe_key: Vec<u8>, first_seq: u64, occurred_ms: i64) {
    let marker = if peek_seq(batch, p) > first_seq {
        first_seq
    } else {
        u64::MAX
    };
    batch.set.put(
        Family::Dedupe,
        dedupe_key.clone(),
        keys::DedupeValue::encode(marker, occurred_ms).to_vec(),
    );
    batch.seen.insert(dedupe_key);
}

/// Unix milliseconds of `at` (saturating: the contract bounds dates).
fn unix_ms(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The sequence the next output of partition `p` will take.
fn peek_seq(batch: &Batch, p: u32) -> u64 {
    batch.cursors.get(&p).map_or(0, |c| c.next_seq)
}

fn add_timers(batch: &mut Batch, p: u32, delta: i64) {
    // A count of stored timers, for a gauge: far below i64::MAX.
    let timers = &mut batch.cursors.entry(p).or_default().timers;
    *timers = timers.saturating_add(delta);
}

fn next_seq(batch: &mut Batch, p: u32) -> u64 {
    let cursor = batch.cursors.entry(p).or_default();
    let seq = cursor.next_seq;
    cursor.next_seq = seq_after(seq);
    seq
}

/// The output sequence after `seq`. A partition would need 2^64 outputs,
/// 584 years at a billion a second, to reach the end, so the saturation
/// that keeps this free of overflow never happens.
fn seq_after(seq: u64) -> u64 {
    seq.saturating_add(1)
}

/// What [`Processor::apply_outcome`] wrote.
struct Written {
    /// Ledger entries.
    entries: usize,
    /// Whether it wrote a rejection (the rules' or the balance check's).
    rejected: bool,
}

/// The balance after each entry of `outcome`, in order, from the
/// customer's `current` balances; or, if one would overflow or pass the
/// contract's balance limit, the rejection (of type `reject_as`) that
/// replaces the whole outcome.
fn balances_after(
    current: Option<&BTreeMap<String, Decimal>>,
    outcome: &Outcome,
    reject_as: RejectionType,
) -> Result<Vec<Decimal>, Box<Outcome>> {
    let mut running: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut after = Vec::with_capacity(outcome.entries.len());
    for entry in &outcome.entries {
        let balance = running
            .get(&*entry.account)
            .or_else(|| current.and_then(|c| c.get(&*entry.account)))
            .copied()
            .unwrap_or_default();
        match rules::next_balance(&entry.account, balance, entry.amount) {
            Ok(next) => {
                running.insert(&entry.account, next);
                after.push(next);
            }
            Err((code, reason)) => return Err(Box::new(Outcome::rejected(reject_as, code, reason))),
        }
    }
    Ok(after)
}

fn check_money(
    tenant: &TenantConfig,
    currency: &str,
    amounts: impl Iterator<Item = contract::Amount>,
) -> Result<(), ContractError> {
    if currency != tenant.currency {
        return Err(ContractError::new(
            ErrorKind::BadCurrency,
            format!(
                "body.currency is {currency:?}, but tenant {:?} keeps its balances in {}",
                tenant.id, tenant.currency
            ),
        ));
    }
    for amount in amounts {
        if amount.value().scale() > tenant.minor_units {
            return Err(ContractError::new(
                ErrorKind::BadCurrency,
                format!(
                    "amount {amount} has more decimals than {currency} has ({})",
                    tenant.minor_units
                ),
            ));
        }
    }
    Ok(())
}

/// Writes the outputs of one event.
struct Emitter<'a> {
    p: u32,
    tenant: &'a TenantConfig,
    customer: &'a str,
    branch: &'a str,
    event_id: &'a str,
    source: SourceRef,
    occurred_at: String,
    occurred: time::OffsetDateTime,
    /// The output type that refuses this source's effect.
    reject_as: RejectionType,
}

impl<'a> Emitter<'a> {
    fn for_event(p: u32, tenant: &'a TenantConfig, record: &InputRecord<'_>, event: &'a Event) -> Self {
        Emitter {
            p,
            tenant,
            customer: &event.customer,
            branch: &event.branch,
            event_id: &event.event_id,
            source: SourceRef {
                topic: record.topic.to_owned(),
                partition: p,
                offset: record.offset,
            },
            occurred_at: event.occurred_at.format(&Rfc3339).unwrap_or_default(),
            occurred: event.occurred_at,
            reject_as: rules::rejection_type(&event.body),
        }
    }

    fn header(&self, seq: u64, output_type: &str) -> OutputHeader {
        OutputHeader {
            id: contract::output_id(self.p, seq),
            event_type: output_type.to_owned(),
            schema_version: contract::SCHEMA_VERSION,
            tenant: self.tenant.id.clone(),
            customer: self.customer.to_owned(),
            branch: self.branch.to_owned(),
            source_event_id: self.event_id.to_owned(),
            source: self.source.clone(),
            occurred_at: self.occurred_at.clone(),
        }
    }

    /// Queues `payload` for the accruals topic as outbox record `seq`.
    fn push(&self, batch: &mut Batch, seq: u64, payload: Vec<u8>) {
        let out = OutboxRecord {
            destination: Destination::Accruals,
            partition: None,
            key: Some(contract::customer_key(&self.tenant.id, self.customer).into_bytes()),
            headers: Vec::new(),
            payload,
        };
        batch.set.put(Family::Outbox, keys::outbox(self.p, seq), out.encode());
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| corrupt(Family::Outbox, &e.to_string()))
}

/// A money amount at the currency's scale: `4` becomes `"4.00"`.
fn money(value: Decimal, minor_units: u32) -> String {
    let mut v = value;
    v.rescale(minor_units);
    v.to_string()
}

fn corrupt(family: Family, detail: &str) -> StateError {
    StateError::Corrupt {
        family: family.name(),
        detail: detail.to_owned(),
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
