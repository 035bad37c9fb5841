//! The publisher: drains durable outbox records to their topics with an
//! idempotent producer, into the partition equal to the source partition,
//! and deletes each record only after the broker acknowledged it. An
//! accrual's JSON is rendered here from its ledger entry ([`super::load`]).
//!
//! Recovery: before publishing a partition it reads the tail of every
//! destination partition, finds the highest sequence already there, and
//! deletes (without re-sending) every outbox record at or below it.
//! Internal commands and directory entries go to the target customer's
//! partition instead; they are re-sent after a crash, which is harmless:
//! commands are deduplicated by id where they are applied, and a directory
//! entry is an idempotent upsert.
//!
//! A record larger than the producer's `message.max.bytes`, or one the
//! broker refuses for good, is never retried as it is: it is replaced by a
//! smaller stand-in, or dropped when none can stand in (see
//! [`super::oversize`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::oversize::{self, Action, Prepared};
use super::record::{Destination, OutboxRecord};
use super::tail::TailReader;
use super::OutboxError;
use crate::changelog::{self, ChangeBatch, LogRecord};
use crate::config::{ClientRole, Config, ProducerBatch};
use crate::contract;
use crate::pipeline::{Message, Progress};
use crate::state::{keys, Durability, Family, Store, WriteSet};
use crate::telemetry;

/// Records read from the outbox per scan.
const SCAN_CHUNK: usize = 2_000;
/// Most records handed to librdkafka and not yet acknowledged, over all
/// partitions. Below the producer's own queue limit, so sends never fail with
/// a full queue and the loop never rescans records it cannot send.
const MAX_IN_FLIGHT: u64 = 50_000;
/// Longest the shutdown drain waits for acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the publisher remembers of a record handed to the producer.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Source partition and outbox sequence.
    p: u32,
    seq: u64,
    dest: Destination,
    /// When it was handed to the producer.
    at: Instant,
    /// Whether it completes its outbox record (false for all but the
    /// commit marker of a changelog batch).
    last: bool,
    /// Its index among the records of a changelog batch (0 otherwise).
    part: usize,
    /// Its size as librdkafka counts it against `message.max.bytes`.
    size: u64,
}

type Opaque = Sent;
type Ack = (Sent, Result<(), KafkaError>);

/// What became of a record handed to librdkafka.
enum Handed {
    /// Queued for sending.
    Queued,
    /// The queue is full: poll and come back.
    QueueFull,
    /// Refused at once.
    Refused(KafkaError),
}

/// Collects delivery reports; served on the publisher thread by `poll`.
struct DeliveryContext {
    acks: Mutex<Vec<Ack>>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        telemetry::librdkafka_error(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Opaque>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((err, _)) => Err(err.clone()),
        };
        self.acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((*opaque, outcome));
    }
}

/// Publishing progress of one owned partition.
#[derive(Debug, Clone)]
struct Lane {
    /// Next sequence to look at.
    next: u64,
    /// Per destination, the highest sequence known to be on the broker.
    published: HashMap<Destination, u64>,
    /// The changelog batch being sent, if it did not fit one request.
    expansion: Option<Expansion>,
    /// The assignment it was recovered for ([`Progress::tenure`]).
    tenure: u64,
}

/// A changelog outbox record expanded into its Kafka records.
#[derive(Debug, Clone)]
struct Expansion {
    seq: u64,
    tag: [u8; 24],
    records: Vec<LogRecord>,
    /// Records handed to the producer so far.
    sent: usize,
}

/// The outbox publisher.
pub struct Publisher {
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
    producer: BaseProducer<DeliveryContext>,
    tail: TailReader,
    topics: HashMap<Destination, String>,
    lanes: HashMap<u32, Lane>,
    in_flight: HashMap<u32, u64>,
    /// One produce request's worth of records, handed to librdkafka per
    /// partition at a time ([`crate::config::KafkaConfig::producer_batch`]).
    batch: ProducerBatch,
    /// The producer's `message.max.bytes`: larger records are replaced.
    max_message_bytes: u64,
    /// Per partition, the record of its last round if it went alone: a
    /// refusal then names that record, not a request it shared.
    lone: HashMap<u32, (u64, usize)>,
    /// Changelog records (partition, sequence, index) left out because
    /// they are too large; see [`super::oversize`].
    dropped_changes: HashSet<(u32, u64, usize)>,
}

impl Publisher {
    /// Creates the producer and the tail reader.
    ///
    /// # Errors
    /// [`OutboxError::Kafka`] if a client cannot be created.
    pub fn new(config: &Config, store: Arc<dyn Store>, progress: Arc<Progress>) -> Result<Self, OutboxError> {
        let producer = config
            .kafka
            .client_config(ClientRole::Producer)
            .create_with_context(DeliveryContext {
                acks: Mutex::new(Vec::new()),
            })
            .map_err(OutboxError::Kafka)?;
        let tail = TailReader::new(config)?;
        let topics = HashMap::from([
            (Destination::Accruals, config.topics.accruals.clone()),
            (Destination::DeadLetter, config.topics.dead_letter.clone()),
            (Destination::Internal, config.topics.internal.clone()),
            (Destination::Directory, config.topics.directory()),
            (Destination::Changelog, config.topics.changelog()),
        ]);
        let batch = config.kafka.producer_batch();
        telemetry::produce_batch_bytes(batch.bytes);
        Ok(Publisher {
            store,
            progress,
            producer,
            tail,
            topics,
            lanes: HashMap::new(),
            in_flight: HashMap::new(),
            batch,
            max_message_bytes: config.kafka.max_message_bytes(),
            lone: HashMap::new(),
            dropped_changes: HashSet::new(),
        })
    }

    /// Publishes until intake has finished and every durable record is
    /// acknowledged (or the drain times out).
    ///
    /// # Errors
    /// [`OutboxError`] on a state failure; broker trouble is retried.
    pub fn run(mut self) -> Result<(), OutboxError> {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            self.sync_lanes()?;
            let sent = self.send_ready()?;
            self.producer.poll(Duration::ZERO);
            let acked = self.handle_acks()?;
            self.report_acked();
            let pending = self.pending()?;
            self.progress.set_pending(pending);
            telemetry::outbox_depth(pending);

            if self.progress.intake_done() {
                let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                if self.drained() {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        pending = self.progress.pending(),
                        "outbox drain timed out; the rest is published after restart"
                    );
                    break;
                }
            }
            if sent == 0 && acked == 0 {
                if self.in_flight.values().any(|n| *n > 0) {
                    self.producer.poll(Duration::from_millis(5));
                } else {
                    self.progress.wait(Duration::from_millis(50));
                }
            }
        }
        if let Err(err) = self.producer.flush(Duration::from_secs(10)) {
            tracing::warn!(error = %err, "producer flush at shutdown failed");
        }
        self.handle_acks()?;
        tracing::info!(pending = self.progress.pending(), "publisher stopped");
        Ok(())
    }

    /// Records durable but not yet acknowledged: not yet sent, or in flight.
    /// An owned partition not yet recovered (its output tails unread, say
    /// while the broker is down) counts from its oldest outbox record.
    fn pending(&self) -> Result<u64, OutboxError> {
        let mut unsent = 0u64;
        for p in self.progress.owned() {
            let durable = self.progress.durable(p).unwrap_or(0);
            let from = match self.lanes.get(&p) {
                Some(lane) => lane.next,
                None => {
                    let prefix = keys::partition_prefix(p);
                    let oldest = self.store.scan(Family::Outbox, &prefix, &prefix, 1)?;
                    match oldest.first().and_then(|(key, _)| keys::parse_outbox(key)) {
                        Some((_, seq)) => seq,
                        None => durable,
                    }
                }
            };
            unsent = unsent.saturating_add(durable.saturating_sub(from));
        }
        Ok(unsent + self.in_flight.values().sum::<u64>())
    }

    fn drained(&self) -> bool {
        self.in_flight.values().all(|n| *n == 0)
            && self.progress.owned().iter().all(|p| {
                self.lanes
                    .get(p)
                    .is_some_and(|l| Some(l.next) >= self.progress.durable(*p))
            })
    }

    /// Starts lanes for newly owned partitions (after recovery) and drops
    /// lanes of partitions no longer owned.
    fn sync_lanes(&mut self) -> Result<(), OutboxError> {
        let owned = self.progress.owned();
        // A lane of an earlier assignment is stale, even if the partition
        // is owned again: a restore may have replaced its outbox.
        let progress = &self.progress;
        self.lanes.retain(|p, lane| progress.tenure(*p) == Some(lane.tenure));
        for p in owned {
            if self.lanes.contains_key(&p) || self.in_flight.get(&p).is_some_and(|n| *n > 0) {
                continue;
            }
            match self.recover(p) {
                Ok(lane) => {
                    self.lanes.insert(p, lane);
                }
                Err(OutboxError::Tail(msg)) => {
                    // Never publish blindly: retry recovery on the next turn.
                    self.progress.set_publish_failing(true);
                    tracing::warn!(partition = p, "cannot read output tails yet: {msg}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Finds what the broker already holds for partition `p` and drops those
    /// records from the outbox.
    fn recover(&mut self, p: u32) -> Result<Lane, OutboxError> {
        let tenure = self.progress.tenure(p).unwrap_or(0);
        let mut published = HashMap::new();
        for dest in Destination::TAILED {
            let topic = &self.topics[&dest];
            if let Some(seq) = self.tail.last_seq(topic, p)? {
                published.insert(dest, seq);
            }
        }
        self.progress.set_publish_failing(false);
        let Resume { next, found, already } = resume(
            self.store.as_ref(),
            &self.progress,
            p,
            &published,
            self.max_message_bytes,
        )?;
        telemetry::recovered_published(already);
        tracing::info!(
            partition = p,
            outbox = found,
            already_published = already,
            resume_at = next,
            "publisher recovered partition"
        );
        Ok(Lane {
            next,
            published,
            expansion: None,
            tenure,
        })
    }

    /// Sends durable records of every lane; returns how many were sent.
    fn send_ready(&mut self) -> Result<usize, OutboxError> {
        let mut sent = 0;
        if !self.progress.lease_valid() {
            // The consume loop has not confirmed the group membership
            // lately (a long pause): publish nothing until it has.
            return Ok(0);
        }
        let limit = self.max_message_bytes;
        let partitions: Vec<u32> = self.lanes.keys().copied().collect();
        for p in partitions {
            let in_flight: u64 = self.in_flight.values().sum();
            let budget = MAX_IN_FLIGHT.saturating_sub(in_flight) as usize;
            if budget == 0 {
                break;
            }
            // An idempotent producer sends one request per partition at a
            // time, and its broker thread spins while records wait behind
            // that request: hand over a partition's next batch only once its
            // previous one is acknowledged.
            if self.in_flight.get(&p).is_some_and(|n| *n > 0) {
                continue;
            }
            let budget = budget.min(self.batch.messages as usize);
            // Stay below the request size, so the batch is never split and
            // its second half never waits behind the first.
            let mut bytes_left = self.batch.bytes - self.batch.bytes / 8;
            let (Some(durable), Some(lane)) = (self.progress.durable(p), self.lanes.get(&p)) else {
                continue;
            };
            if lane.next >= durable {
                continue;
            }
            let (mut next, published) = (lane.next, lane.published.clone());
            let mut expansion = self.lanes.get_mut(&p).and_then(|l| l.expansion.take());
            let chunk = self.store.scan(
                Family::Outbox,
                &keys::partition_prefix(p),
                &keys::outbox(p, next),
                budget,
            )?;
            // Records found on the broker (deleted) and stand-ins (stored
            // in place of what they replace).
            let mut already = WriteSet::new();
            let mut sent_here = 0u64;
            let mut last_sent = None;
            // A changelog batch goes out only once everything before it is
            // acknowledged, and nothing after it until it is (see
            // `crate::changelog`): it opens a round, and ends it.
            let mut changelog_in_round = false;
            for (key, value) in chunk {
                let Some((_, seq)) = keys::parse_outbox(&key) else {
                    continue;
                };
                if seq >= durable {
                    break;
                }
                let mut record = super::load(self.store.as_ref(), p, seq, &value)?;
                if record.destination == Destination::Changelog {
                    if sent_here > 0 && !changelog_in_round {
                        break;
                    }
                    let mut exp = match expansion.take() {
                        Some(e) if e.seq == seq => e,
                        _ => expand(p, seq, &record)?,
                    };
                    while exp.sent < exp.records.len() && (sent_here as usize) < budget {
                        let part = exp.sent;
                        let rec = &exp.records[part];
                        let last = part + 1 == exp.records.len();
                        let wire = oversize::change_size(rec);
                        // The commit marker is never left out: without it
                        // a restore ignores the whole batch.
                        if !last && (wire > limit || self.dropped_changes.contains(&(p, seq, part))) {
                            if self.dropped_changes.insert((p, seq, part)) {
                                drop_change(p, seq, rec, wire, limit);
                            }
                            exp.sent += 1;
                            continue;
                        }
                        let size = (rec.key.len() + rec.value.as_ref().map_or(0, Vec::len) + 90) as u64;
                        if sent_here > 0 && size > bytes_left {
                            break;
                        }
                        let sent_as = Sent {
                            p,
                            seq,
                            dest: Destination::Changelog,
                            at: Instant::now(),
                            last,
                            part,
                            size: wire,
                        };
                        match self.produce_change(&exp.tag, rec, sent_as) {
                            Handed::Queued => {}
                            Handed::QueueFull => break,
                            Handed::Refused(err) => {
                                let action = oversize::decide(&err, true, None, wire, limit, "");
                                if action == Action::Drop && !last {
                                    self.dropped_changes.insert((p, seq, part));
                                    drop_change(p, seq, rec, wire, limit);
                                    exp.sent += 1;
                                    continue;
                                }
                                telemetry::publish_error();
                                tracing::warn!(partition = p, seq, error = %err, "cannot enqueue changelog record; retrying");
                                break;
                            }
                        }
                        bytes_left = bytes_left.saturating_sub(size);
                        sent_here += 1;
                        last_sent = Some((seq, part));
                        *self.in_flight.entry(p).or_default() += 1;
                        sent += 1;
                        exp.sent += 1;
                    }
                    changelog_in_round = true;
                    if exp.sent < exp.records.len() {
                        expansion = Some(exp);
                        break; // the rest in the next round
                    }
                    next = seq + 1;
                    continue;
                }
                if changelog_in_round {
                    break;
                }
                let topic = self.topics[&record.destination].clone();
                match oversize::prepare(&record, limit, &topic) {
                    Prepared::Fits => {}
                    Prepared::Replace(smaller) => {
                        replaced(
                            p,
                            seq,
                            &record,
                            &smaller,
                            "larger than the producer's message.max.bytes",
                        );
                        already.put(Family::Outbox, key.clone(), smaller.encode());
                        record = smaller;
                    }
                    Prepared::Drop => {
                        dropped(p, seq, &record, "larger than the producer's message.max.bytes");
                        already.delete(Family::Outbox, key);
                        next = seq + 1;
                        continue;
                    }
                }
                if published.get(&record.destination).is_some_and(|last| seq <= *last) {
                    // Found on the broker at recovery: drop, do not resend.
                    already.delete(Family::Outbox, key);
                } else if sent_here > 0 && record_size(&record) > bytes_left {
                    break; // the rest goes in the next request
                } else {
                    match self.produce(p, seq, &record) {
                        Handed::Queued => {
                            bytes_left = bytes_left.saturating_sub(record_size(&record));
                            sent_here += 1;
                            last_sent = Some((seq, 0));
                            *self.in_flight.entry(p).or_default() += 1;
                            sent += 1;
                        }
                        Handed::QueueFull => break, // poll and come back
                        Handed::Refused(err) => {
                            let wire = oversize::wire_size(&record);
                            match oversize::decide(&err, true, Some(&record), wire, limit, &topic) {
                                Action::Replace(smaller) => {
                                    replaced(p, seq, &record, &smaller, &err.to_string());
                                    // Sent in the next round, from the store.
                                    already.put(Family::Outbox, key, smaller.encode());
                                    break;
                                }
                                Action::Drop => {
                                    dropped(p, seq, &record, &err.to_string());
                                    already.delete(Family::Outbox, key);
                                }
                                Action::Retry | Action::Shrink => {
                                    telemetry::publish_error();
                                    tracing::warn!(partition = p, seq, error = %err, "cannot enqueue outbox record; retrying");
                                    break;
                                }
                            }
                        }
                    }
                }
                next = seq + 1;
            }
            match (sent_here, last_sent) {
                (1, Some(one)) => {
                    self.lone.insert(p, one);
                }
                _ => {
                    self.lone.remove(&p);
                }
            }
            if let Some(lane) = self.lanes.get_mut(&p) {
                lane.next = next;
                lane.expansion = expansion;
            }
            if !already.is_empty() {
                self.store.write(&already, Durability::Buffered)?;
            }
        }
        Ok(sent)
    }

    /// Hands one record to librdkafka.
    fn produce(&self, p: u32, seq: u64, record: &OutboxRecord) -> Handed {
        let id = contract::output_id(p, seq);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1).insert(Header {
            key: contract::HEADER_ID,
            value: Some(id.as_bytes()),
        });
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_slice()),
            });
        }
        let topic = &self.topics[&record.destination];
        let sent = Sent {
            p,
            seq,
            dest: record.destination,
            at: Instant::now(),
            last: true,
            part: 0,
            size: oversize::wire_size(record),
        };
        let mut base: BaseRecord<'_, [u8], [u8], _> = BaseRecord::with_opaque_to(topic, Box::new(sent))
            .partition(record.partition.unwrap_or(p) as i32)
            .payload(record.payload.as_slice())
            .headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        self.send(base)
    }

    /// Hands one changelog record to librdkafka.
    fn produce_change(&self, tag: &[u8; 24], rec: &LogRecord, sent: Sent) -> Handed {
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: changelog::HEADER_TAG,
            value: Some(&tag[..]),
        });
        let topic = &self.topics[&Destination::Changelog];
        let mut base: BaseRecord<'_, [u8], [u8], _> = BaseRecord::with_opaque_to(topic, Box::new(sent))
            .partition(sent.p as i32)
            .key(rec.key.as_slice())
            .headers(headers);
        if let Some(value) = &rec.value {
            base = base.payload(value.as_slice());
        }
        self.send(base)
    }

    fn send(&self, base: BaseRecord<'_, [u8], [u8], Box<Opaque>>) -> Handed {
        match self.producer.send(base) {
            Ok(()) => Handed::Queued,
            Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => Handed::QueueFull,
            Err((err, _)) => Handed::Refused(err),
        }
    }

    /// Deletes acknowledged records; on a failure, restarts the lane through
    /// recovery once its in-flight records are settled, after replacing or
    /// dropping a record refused for good ([`oversize::decide`]).
    fn handle_acks(&mut self) -> Result<usize, OutboxError> {
        let acks = std::mem::take(
            &mut *self
                .producer
                .context()
                .acks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if acks.is_empty() {
            return Ok(0);
        }
        let mut writes = WriteSet::new();
        let mut per_topic: HashMap<Destination, u64> = HashMap::new();
        let mut changes = 0u64;
        for (sent, outcome) in &acks {
            let (p, seq) = (sent.p, sent.seq);
            if let Some(n) = self.in_flight.get_mut(&p) {
                *n = n.saturating_sub(1);
            }
            match outcome {
                Ok(()) if sent.dest == Destination::Changelog => {
                    changes += 1;
                    if sent.last {
                        writes.delete(Family::Outbox, keys::outbox(p, seq));
                    }
                }
                Ok(()) => {
                    writes.delete(Family::Outbox, keys::outbox(p, seq));
                    *per_topic.entry(sent.dest).or_default() += 1;
                }
                Err(err) => {
                    telemetry::publish_error();
                    self.refused(sent, err, &mut writes)?;
                    self.lanes.remove(&p);
                }
            }
        }
        let n = writes.len();
        if n > 0 {
            self.store.write(&writes, Durability::Buffered)?;
        }
        // Readiness: the broker takes our records, or it does not.
        self.progress
            .set_publish_failing(acks.iter().all(|(.., outcome)| outcome.is_err()));
        for (dest, count) in per_topic {
            telemetry::published(&self.topics[&dest], count);
        }
        if changes > 0 {
            telemetry::changelog_published(changes);
        }
        telemetry::publish_latencies(
            acks.iter()
                .filter(|(sent, outcome)| outcome.is_ok() && sent.dest != Destination::Changelog)
                .map(|(sent, _)| sent.at.elapsed()),
        );
        self.progress.note_acked();
        Ok(acks.len())
    }

    /// Handles a delivery failure: a transient one is retried as it is; a
    /// permanent one shrinks the produce batch, replaces the record in the
    /// outbox, or drops it. The lane then restarts through recovery.
    fn refused(&mut self, sent: &Sent, err: &KafkaError, writes: &mut WriteSet) -> Result<(), OutboxError> {
        let (p, seq) = (sent.p, sent.seq);
        let alone = self.lone.get(&p) == Some(&(seq, sent.part));
        let key = keys::outbox(p, seq);
        let record = match sent.dest {
            Destination::Changelog => None,
            _ => match self.store.get(Family::Outbox, &key)? {
                // As it was sent: an accrual is rendered from the ledger.
                Some(value) => super::load(self.store.as_ref(), p, seq, &value).ok(),
                None => None,
            },
        };
        let topic = self.topics[&sent.dest].clone();
        let action = oversize::decide(err, alone, record.as_ref(), sent.size, self.max_message_bytes, &topic);
        match (action, record) {
            (Action::Shrink, _) => {
                self.batch.bytes = (self.batch.bytes / 2).max(1);
                telemetry::produce_batch_bytes(self.batch.bytes);
                tracing::warn!(
                    partition = p,
                    seq,
                    error = %err,
                    batch_bytes = self.batch.bytes,
                    "the broker refused a produce request for good; sending smaller requests until the refused \
                     record goes alone. Keep message.max.bytes and batch.size at most the broker's max.message.bytes"
                );
            }
            (Action::Replace(smaller), Some(record)) => {
                replaced(p, seq, &record, &smaller, &err.to_string());
                writes.put(Family::Outbox, key, smaller.encode());
            }
            (Action::Drop, Some(record)) => {
                dropped(p, seq, &record, &err.to_string());
                writes.delete(Family::Outbox, key);
            }
            (Action::Drop, None) if sent.dest == Destination::Changelog && !sent.last => {
                if self.dropped_changes.insert((p, seq, sent.part)) {
                    telemetry::outbox_dropped(Destination::Changelog.as_str());
                    tracing::error!(
                        partition = p,
                        seq,
                        part = sent.part,
                        size = sent.size,
                        error = %err,
                        "the broker refused a changelog record for good; it is left out of the changelog, so a \
                         restore of this partition lacks this one value"
                    );
                }
            }
            _ => {
                tracing::warn!(partition = p, seq, error = %err, "delivery failed; re-reading the output tail before retrying");
            }
        }
        Ok(())
    }

    /// Tells the consume loop how far each lane is on the broker: a lane
    /// with nothing in flight has every record below its next sequence
    /// there (a failure removes the lane instead). Also after a round that
    /// only dropped records found on the broker, which brings no ack.
    fn report_acked(&self) {
        for (p, lane) in &self.lanes {
            if self.in_flight.get(p).copied().unwrap_or(0) == 0 {
                self.progress.send(Message::Acked {
                    partition: *p,
                    seq: lane.next,
                });
            }
        }
    }
}

/// Where a recovered lane resumes, and what its outbox held.
#[derive(Debug, PartialEq, Eq)]
struct Resume {
    /// The first sequence to send.
    next: u64,
    /// Outbox records found.
    found: u64,
    /// Of them, already on the broker (deleted, not re-sent).
    already: u64,
}

/// Deletes the outbox records of partition `p` that `published` shows on
/// the broker, and finds the first one still to send.
///
/// The consume loop keeps committing while this scans. The durable mark is
/// read before the scan, so every record below it is seen by the scan;
/// reading it afterwards would resume past records committed during the
/// scan, which would then never be sent.
fn resume(
    store: &dyn Store,
    progress: &Progress,
    p: u32,
    published: &HashMap<Destination, u64>,
    limit: u64,
) -> Result<Resume, OutboxError> {
    let durable_before_scan = progress.durable(p).unwrap_or(0);
    let prefix = keys::partition_prefix(p);
    let mut from = keys::outbox(p, 0);
    let mut first_unsent: Option<u64> = None;
    let mut deletes = WriteSet::new();
    let mut found = 0u64;
    loop {
        let chunk = store.scan(Family::Outbox, &prefix, &from, SCAN_CHUNK)?;
        let Some((last_key, _)) = chunk.last() else { break };
        from = last_key.clone();
        from.push(0);
        for (key, value) in &chunk {
            let Some((_, seq)) = keys::parse_outbox(key) else {
                continue;
            };
            let record = super::load(store, p, seq, value)?;
            found += 1;
            // A record too large to send goes out as a dead letter: look
            // for it there.
            let destination = match oversize::prepare(&record, limit, "") {
                Prepared::Replace(smaller) => smaller.destination,
                Prepared::Fits | Prepared::Drop => record.destination,
            };
            if published.get(&destination).is_some_and(|last| seq <= *last) {
                deletes.delete(Family::Outbox, key.clone());
            } else if first_unsent.is_none() {
                first_unsent = Some(seq);
            }
        }
    }
    let already = deletes.len() as u64;
    if !deletes.is_empty() {
        store.write(&deletes, Durability::Buffered)?;
    }
    Ok(Resume {
        next: first_unsent.unwrap_or(durable_before_scan),
        found,
        already,
    })
}

/// Logs and counts an outbox record replaced by a smaller stand-in.
fn replaced(p: u32, seq: u64, record: &OutboxRecord, smaller: &OutboxRecord, why: &str) {
    telemetry::outbox_replaced(record.destination.as_str());
    tracing::warn!(
        partition = p,
        seq,
        destination = record.destination.as_str(),
        size = oversize::wire_size(record),
        replacement_size = oversize::wire_size(smaller),
        "outbox record cannot be published ({why}); publishing a truncated dead letter in its place"
    );
}

/// Logs and counts an outbox record dropped: nothing smaller can stand in.
fn dropped(p: u32, seq: u64, record: &OutboxRecord, why: &str) {
    telemetry::outbox_dropped(record.destination.as_str());
    tracing::error!(
        partition = p,
        seq,
        destination = record.destination.as_str(),
        size = oversize::wire_size(record),
        "outbox record cannot be published ({why}) and is already cut to its headers; dropped"
    );
}

/// Logs and counts a changelog record left out because it is too large.
fn drop_change(p: u32, seq: u64, rec: &LogRecord, size: u64, limit: u64) {
    telemetry::outbox_dropped(Destination::Changelog.as_str());
    tracing::error!(
        partition = p,
        seq,
        family = rec
            .key
            .first()
            .and_then(|t| Family::from_tag(*t))
            .map_or("marker", Family::name),
        size,
        limit,
        "a changelog record is larger than the producer's message.max.bytes; it is left out of the \
         changelog, so a restore of this partition lacks this one value (raise message.max.bytes, or lower \
         [batch] max_input_bytes)"
    );
}

/// A record's size as librdkafka counts it towards `batch.size`, roughly:
/// key, value, headers (with the id header) and per-record framing.
fn record_size(record: &OutboxRecord) -> u64 {
    let headers: usize = record.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    (record.key.as_ref().map_or(0, Vec::len) + record.payload.len() + headers + 64) as u64
}

/// Expands a changelog outbox record into its Kafka records.
fn expand(p: u32, seq: u64, record: &OutboxRecord) -> Result<Expansion, OutboxError> {
    let batch = ChangeBatch::decode(&record.payload).ok_or_else(|| {
        OutboxError::State(crate::state::StateError::Corrupt {
            family: Family::Outbox.name(),
            detail: format!("changelog batch {p}-{seq} cannot be decoded"),
        })
    })?;
    Ok(Expansion {
        seq,
        tag: batch.tag.encode(),
        records: batch.records(p),
        sent: 0,
    })
}

#[cfg(test)]
mod tests;
