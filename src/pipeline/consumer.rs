//! The consume loop: a group consumer whose partitions start at the offsets
//! stored in RocksDB, feeding the [`Processor`] and committing batches.
//!
//! It runs on its own thread: every RocksDB call here is blocking.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::batch::{Batch, InputRecord, Processor, Routing};
use super::shared::{Programs, Progress};
use super::PipelineError;
use crate::changelog::{self, Restorer};
use crate::config::{ClientRole, Config};
use crate::state::{keys, Durability, Family, WriteSet};
use crate::state::{read_next_seq, read_offset, Store};
use crate::telemetry;
use crate::timers::{self, Clock};

/// Intake pauses while more outbox records than this wait for the broker.
const MAX_PENDING_OUTBOX: u64 = 200_000;

/// How often the consumer lag of owned partitions is reported.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// How long a revoke waits for the partition's outbox to reach the broker
/// before handing the partition over anyway.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// What the consume loop works on; shared with the rebalance callback, which
/// runs inside `poll` on the same thread.
struct Work {
    processor: Processor,
    batch: Batch,
    batch_started: Option<Instant>,
    /// Partitions owned (of every co-partitioned topic).
    owned: BTreeSet<u32>,
}

/// The consumer context: takes over and hands over partitions.
pub struct PipelineContext {
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
    work: Mutex<Option<Work>>,
    /// The group subscribes `topics[0]`; partition p of the others follows.
    topics: Vec<String>,
    /// Reads the changelog, when `[state] changelog` is on.
    restorer: Option<Restorer>,
    failure: Mutex<Option<String>>,
    /// High watermarks from librdkafka's last statistics, for the lag metric.
    high_watermarks: Mutex<HashMap<(String, u32), i64>>,
}

impl ClientContext for PipelineContext {
    fn error(&self, error: KafkaError, reason: &str) {
        telemetry::librdkafka_error(&error, reason);
    }

    /// Called on the consume thread every `statistics.interval.ms`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut marks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                // -1 is librdkafka's "internal" partition; -1001 is "unknown".
                if p >= 0 && part.hi_offset >= 0 {
                    marks.insert((topic.clone(), p as u32), part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let parts: Vec<u32> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topics[0])
            .map(|e| e.partition() as u32)
            .collect();
        let mut guard = self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(work) = guard.as_mut() else {
            self.fail("rebalance outside the consume loop".into());
            return;
        };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut full = TopicPartitionList::new();
                for p in &parts {
                    if let Err(err) = self.take_over(work, consumer, *p) {
                        self.fail(format!("cannot take over partition {p}: {err}"));
                        return;
                    }
                    for topic in &self.topics {
                        // Kafka's committed offsets are advisory: start where RocksDB says.
                        let offset = match read_offset(self.store.as_ref(), topic, *p) {
                            Ok(Some(off)) => Offset::Offset(off),
                            Ok(None) => Offset::Beginning,
                            Err(err) => {
                                self.fail(format!("cannot read the stored offset of {topic}/{p}: {err}"));
                                return;
                            }
                        };
                        if let Err(err) = full.add_partition_offset(topic, *p as i32, offset) {
                            self.fail(format!("cannot position {topic}/{p}: {err}"));
                            return;
                        }
                    }
                }
                let result = if cooperative {
                    consumer.incremental_assign(&full)
                } else {
                    consumer.assign(&full)
                };
                match result {
                    Ok(()) => {
                        for p in &parts {
                            work.owned.insert(*p);
                            tracing::info!(partition = p, topics = ?self.topics, "partition assigned");
                        }
                    }
                    Err(err) => self.fail(format!("cannot assign partitions: {err}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                if let Err(err) = self.hand_over(work, consumer, &parts, lost) {
                    self.fail(format!("cannot hand over partitions {parts:?}: {err}"));
                }
                let result = if cooperative {
                    consumer.incremental_unassign(&self.all_topics(&parts))
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "unassign after revoke failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                let all: Vec<u32> = work.owned.iter().copied().collect();
                if let Err(err) = self.hand_over(work, consumer, &all, true) {
                    self.fail(format!("cannot drop partitions {all:?}: {err}"));
                }
                if let Err(err) = consumer.unassign() {
                    tracing::warn!(error = %err, "unassign after rebalance error failed");
                }
            }
        }
        telemetry::partitions_owned(work.owned.len());
        self.progress.set_assigned();
    }
}

impl PipelineContext {
    fn fail(&self, message: String) {
        tracing::error!("{message}");
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }

    fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn all_topics(&self, parts: &[u32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            for topic in &self.topics {
                tpl.add_partition(topic, *p as i32);
            }
        }
        tpl
    }

    /// Makes partition `p`'s local state current (restoring it from the
    /// changelog if it is missing, behind, or was written by another owner
    /// since), takes ownership with a new epoch, and loads its progress.
    fn take_over(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
        p: u32,
    ) -> Result<(), PipelineError> {
        let store = self.store.as_ref();
        work.processor.forget(p);
        let mut shadowed = Vec::new();
        if let Some(restorer) = &self.restorer {
            let head = restorer.head(p).map_err(|e| PipelineError::Rebalance(e.to_string()))?;
            let local = changelog::stored_owner(store, p)?;
            let current = head.is_none_or(|h| local == Some(h));
            if current {
                telemetry::assignment("current");
                tracing::info!(partition = p, owner = ?local, "local state is current; no restore");
            } else {
                tracing::info!(partition = p, local = ?local, changelog = ?head, "restoring partition from the changelog");
                self.progress.set_restoring(true);
                let restored = restorer.restore(store, p);
                self.progress.set_restoring(false);
                let stats = restored.map_err(|e| {
                    telemetry::restore_failed(p);
                    PipelineError::Rebalance(e.to_string())
                })?;
                telemetry::assignment("restored");
                let secs = stats.elapsed.as_secs_f64();
                tracing::info!(
                    partition = p,
                    records = stats.records,
                    applied = stats.applied,
                    dropped = stats.dropped,
                    seconds = secs,
                    records_per_second = (stats.records as f64 / secs.max(1e-9)).round(),
                    shadowed = stats.shadowed.len(),
                    "partition restored"
                );
                shadowed = stats.shadowed;
            }
            let base = changelog::stored_owner(store, p)?.unwrap_or_default();
            let owner = base.next(head);
            let mut set = WriteSet::new();
            set.put(Family::Meta, keys::owner(p), owner.encode().to_vec());
            store.write(&set, Durability::Synced)?;
            work.processor.set_owner(p, owner);
            tracing::info!(partition = p, epoch = owner.epoch, "partition owned");
        }
        for topic in &self.topics {
            check_not_truncated(consumer, store, topic, p)?;
        }
        work.processor.warm(p)?;
        self.progress.own(p, read_next_seq(store, p)?);
        if !shadowed.is_empty() {
            // Records of a dropped batch (or a fenced owner) sit in the log
            // after the values they would have replaced: write those keys
            // again now, so compaction keeps the restored values.
            let repair = work.processor.repair_batch(p, &shadowed)?;
            commit(&mut work.processor, repair, consumer, &self.progress)?;
            tracing::info!(
                partition = p,
                keys = shadowed.len(),
                "changelog keys of dropped records written again"
            );
        }
        Ok(())
    }

    /// Gives partitions up. Unless the assignment was lost (another member
    /// may own them already), the open batch is committed and their outbox
    /// drained first, so the next owner's restore finds everything.
    fn hand_over(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
        parts: &[u32],
        lost: bool,
    ) -> Result<(), PipelineError> {
        if lost {
            // Nothing of the open batch was written; the next owner redoes it.
            let dropped = !work.batch.is_empty();
            work.batch = Batch::default();
            work.batch_started = None;
            for p in parts {
                self.progress.disown(*p);
                work.processor.forget(*p);
                work.owned.remove(p);
                tracing::warn!(partition = p, "partition lost; its open work is dropped");
            }
            if dropped {
                for p in work.owned.clone() {
                    work.processor.forget(p);
                    if let Some(owner) = changelog::stored_owner(self.store.as_ref(), p)? {
                        work.processor.set_owner(p, owner);
                    }
                    for topic in &self.topics {
                        let offset =
                            read_offset(self.store.as_ref(), topic, p)?.map_or(Offset::Beginning, Offset::Offset);
                        if let Err(err) = consumer.seek(topic, p as i32, offset, Duration::from_secs(10)) {
                            return Err(PipelineError::Rebalance(format!("cannot rewind {topic}/{p}: {err}")));
                        }
                    }
                }
            }
            return Ok(());
        }
        if !work.batch.is_empty() {
            let batch = std::mem::take(&mut work.batch);
            work.batch_started = None;
            commit(&mut work.processor, batch, consumer, &self.progress)?;
        }
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while parts.iter().any(|p| !self.progress.flushed(*p)) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    partitions = ?parts,
                    "outbox not drained in time; the next owner reprocesses what its changelog lacks"
                );
                break;
            }
            // Still a member until this callback returns.
            self.progress.renew_lease(Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(5));
        }
        for p in parts {
            self.progress.disown(*p);
            work.processor.forget(*p);
            work.owned.remove(p);
            tracing::info!(partition = p, "partition revoked");
        }
        Ok(())
    }
}

/// Runs the consume loop until `stop` is set, then commits the open batch.
///
/// # Errors
/// [`PipelineError`] on a state failure or a fatal Kafka error.
#[allow(clippy::too_many_arguments)] // the run's parts, wired once by `app`
pub fn run(
    config: &Config,
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
    programs: &Programs,
    code_key: Arc<[u8]>,
    routing: Routing,
    clock: &dyn Clock,
    stop: &AtomicBool,
) -> Result<(), PipelineError> {
    // The internal topic is co-partitioned with the input: partition p of
    // every topic is owned together, by whoever owns the state of p. The
    // group assigns the first input topic; the others follow it.
    let topics: Vec<String> = config
        .topics
        .input
        .iter()
        .cloned()
        .chain(std::iter::once(config.topics.internal.clone()))
        .collect();
    let restorer = if config.state.changelog {
        Some(Restorer::new(config).map_err(|e| PipelineError::Rebalance(e.to_string()))?)
    } else {
        None
    };
    let (mut programs_version, tenants) = programs.current();
    let mut processor = Processor::new(store.clone(), tenants, code_key);
    processor.set_routing(routing);
    processor.set_changelog(config.state.changelog);
    processor.set_limits(crate::pipeline::Limits::of(config));
    let context = PipelineContext {
        store: store.clone(),
        progress: progress.clone(),
        work: Mutex::new(Some(Work {
            processor,
            batch: Batch::default(),
            batch_started: None,
            owned: BTreeSet::new(),
        })),
        topics: topics.clone(),
        restorer,
        failure: Mutex::new(None),
        high_watermarks: Mutex::new(HashMap::new()),
    };
    let consumer: BaseConsumer<PipelineContext> = config
        .kafka
        .client_config(ClientRole::Consumer)
        .create_with_context(context)
        .map_err(PipelineError::Kafka)?;
    consumer
        .subscribe(&[topics[0].as_str()])
        .map_err(PipelineError::Kafka)?;
    tracing::info!(group_topic = %topics[0], followers = ?&topics[1..], group = %config.kafka.group_id, "subscribed");

    let mut paused = false;
    let mut next_timer_check = Instant::now();
    let mut consumed: Vec<(String, u64)> = Vec::new();
    let max_events = config.batch.max_events;
    let linger = config.batch.linger();
    let mut lag_reported = Instant::now();
    let lease = config.kafka.publish_lease();
    let mut last_poll = Instant::now();
    let mut confirmed = true;
    let mut work = take_work(&consumer)?;
    progress.renew_lease(lease);

    let result = loop {
        let stopping = stop.load(Ordering::SeqCst);
        let due = work.batch_started.is_some_and(|t| t.elapsed() >= linger);
        if !work.batch.is_empty() && (stopping || due || work.batch.events() >= max_events) {
            for (topic, n) in consumed.drain(..) {
                telemetry::consumed(&topic, n);
            }
            let b = std::mem::take(&mut work.batch);
            work.batch_started = None;
            if let Err(err) = commit(&mut work.processor, b, &consumer, &progress) {
                break Err(err);
            }
        }
        if stopping {
            break Ok(());
        }
        if let Some(failure) = consumer.context().take_failure() {
            break Err(PipelineError::Rebalance(failure));
        }

        // Backpressure: the outbox must drain before more input is taken.
        let over = progress.pending() > MAX_PENDING_OUTBOX;
        if over != paused {
            if let Ok(assignment) = consumer.assignment() {
                let result = if over {
                    consumer.pause(&assignment)
                } else {
                    consumer.resume(&assignment)
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "pause/resume failed");
                }
            }
            paused = over;
            tracing::info!(paused, pending = progress.pending(), "outbox backpressure");
        }

        // Due timers fire into the open batch, and commit with it.
        if Instant::now() >= next_timer_check {
            let now = clock.now_ms();
            let mut overdue_ms = 0;
            let Work {
                processor,
                batch,
                batch_started,
                owned,
            } = &mut work;
            for p in owned.iter().copied() {
                match processor.earliest_due(p) {
                    Ok(Some(due)) => overdue_ms = overdue_ms.max(now - due),
                    Ok(None) => {}
                    Err(err) => return Err(err.into()),
                }
                // Under outbox backpressure, measure but do not add output.
                if !paused {
                    processor.fire_due(batch, p, now, timers::FIRE_LIMIT)?;
                }
            }
            telemetry::timers_overdue(overdue_ms);
            if batch_started.is_none() && !batch.is_empty() {
                *batch_started = Some(Instant::now());
            }
            telemetry::timers_pending(processor.timers_pending());
            next_timer_check = Instant::now() + timers::CHECK_INTERVAL;
        }

        let timeout = match work.batch_started {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => Duration::from_millis(100),
        };
        // The rebalance callback runs inside poll and needs the work.
        put_work(&consumer, work);
        let polled = consumer.poll(timeout);
        work = take_work(&consumer)?;

        // Fencing: after a pause longer than the lease the group may have
        // moved our partitions; publish nothing until the coordinator
        // accepts a synchronous commit from this member again.
        if last_poll.elapsed() > lease {
            confirmed = false;
            tracing::warn!(
                paused_ms = last_poll.elapsed().as_millis() as u64,
                "long pause; confirming group membership before publishing"
            );
        }
        last_poll = Instant::now();
        if !confirmed {
            confirmed = confirm_membership(&consumer, &work, &topics[0], store.as_ref());
        }
        if confirmed {
            progress.renew_lease(lease);
        }
        if lag_reported.elapsed() >= LAG_INTERVAL {
            report_lag(&consumer, &work.processor, &topics, &work.owned);
            lag_reported = Instant::now();
        }
        let Some(result) = polled else { continue };
        let message = match result {
            Ok(message) => message,
            Err(err) => {
                if let Err(err) = handle_kafka_error(&consumer, err) {
                    break Err(err);
                }
                continue;
            }
        };
        let partition = message.partition() as u32;
        if !work.owned.contains(&partition) {
            // Prefetched before a revoke; the new owner will read it.
            continue;
        }
        let record = InputRecord {
            topic: message.topic(),
            partition,
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
        };
        // A reload (SIGHUP) applies from the next record on.
        if programs.version() != programs_version {
            let (version, tenants) = programs.current();
            // Customers newly seeded with a phone join the directory.
            work.processor.routing().directory.seed(tenants.values());
            work.processor.set_tenants(tenants);
            programs_version = version;
            tracing::info!(version, "new programs in force");
        }
        // Counted per batch, not per record: a labelled counter is a map lookup.
        match consumed.iter_mut().find(|(t, _)| t == record.topic) {
            Some((_, n)) => *n += 1,
            None => consumed.push((record.topic.to_owned(), 1)),
        }
        if let Err(err) = work.processor.apply(&mut work.batch, &record) {
            break Err(err.into());
        }
        if work.batch_started.is_none() && !work.batch.is_empty() {
            work.batch_started = Some(Instant::now());
        }
    };
    // Leaving the group revokes what we own: the callback commits, drains
    // the outbox and hands the partitions over cleanly.
    put_work(&consumer, work);
    if result.is_ok() {
        consumer.unsubscribe();
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while Instant::now() < deadline {
            let _ = consumer.poll(Duration::from_millis(50));
            if consumer.assignment().map_or(true, |a| a.count() == 0) {
                break;
            }
        }
    }
    drop(consumer);
    progress.finish_intake();
    tracing::info!("intake stopped; last batch committed");
    result
}

fn take_work(consumer: &BaseConsumer<PipelineContext>) -> Result<Work, PipelineError> {
    consumer
        .context()
        .work
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or_else(|| PipelineError::Rebalance("the consume loop lost its state".into()))
}

fn put_work(consumer: &BaseConsumer<PipelineContext>, work: Work) {
    *consumer
        .context()
        .work
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(work);
}

/// A synchronous offset commit of the owned partitions: the group
/// coordinator refuses it from a member it has expelled.
fn confirm_membership(consumer: &BaseConsumer<PipelineContext>, work: &Work, topic: &str, store: &dyn Store) -> bool {
    if work.owned.is_empty() {
        return true;
    }
    let mut tpl = TopicPartitionList::new();
    for p in &work.owned {
        let Ok(Some(off)) = read_offset(store, topic, *p) else {
            continue;
        };
        if tpl.add_partition_offset(topic, *p as i32, Offset::Offset(off)).is_err() {
            return false;
        }
    }
    if tpl.count() == 0 {
        return true;
    }
    match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => {
            tracing::info!("group membership confirmed; publishing resumes");
            true
        }
        Err(err) => {
            tracing::warn!(error = %err, "group membership not confirmed; not publishing");
            false
        }
    }
}

fn commit(
    processor: &mut Processor,
    batch: Batch,
    consumer: &BaseConsumer<PipelineContext>,
    progress: &Progress,
) -> Result<(), PipelineError> {
    let committed = processor.commit(batch)?;
    for (p, next_seq) in &committed.durable_seq {
        progress.advance(*p, *next_seq);
    }
    // Advisory only: lets lag tools see progress. RocksDB is authoritative.
    let mut tpl = TopicPartitionList::new();
    for (topic, p, off) in &committed.offsets {
        if tpl
            .add_partition_offset(topic, *p as i32, Offset::Offset(*off))
            .is_err()
        {
            continue;
        }
    }
    if let Err(err) = consumer.store_offsets(&tpl) {
        tracing::debug!(error = %err, "advisory offset store failed");
    }
    Ok(())
}

/// Reports each owned partition's lag: the high watermark from librdkafka's
/// statistics (no broker round trip) minus the next offset stored in state.
fn report_lag(
    consumer: &BaseConsumer<PipelineContext>,
    processor: &Processor,
    topics: &[String],
    owned: &BTreeSet<u32>,
) {
    let marks = consumer
        .context()
        .high_watermarks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for p in owned {
        for topic in topics {
            let Some(high) = marks.get(&(topic.clone(), *p)).copied() else {
                continue; // no statistics for it yet
            };
            let next = match processor.stored_offset(topic, *p) {
                Ok(Some(next)) => next,
                Ok(None) => 0,
                Err(err) => {
                    tracing::debug!(topic = %topic, partition = p, error = %err, "cannot read the stored offset for lag");
                    continue;
                }
            };
            telemetry::consumer_lag(topic, *p, high - next);
        }
    }
    telemetry::partitions_owned(owned.len());
}

/// State that has applied input beyond the partition's end means the topic
/// was deleted and recreated (or truncated): reading it would skip records
/// as "already applied". Refuse, with what to do.
fn check_not_truncated(
    consumer: &BaseConsumer<PipelineContext>,
    store: &dyn Store,
    topic: &str,
    p: u32,
) -> Result<(), PipelineError> {
    let Some(stored) = read_offset(store, topic, p)? else {
        return Ok(());
    };
    match consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(10)) {
        Ok((_, high)) if stored > high => Err(PipelineError::Rebalance(format!(
            "input {topic}/{p} ends at offset {high}, but the state has applied it up to offset {stored}: \
             the topic was recreated or truncated. Point [state] dir at a fresh directory to start over, \
             or restore the topic; accrue will not guess which records are new"
        ))),
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(topic, partition = p, error = %err, "cannot read watermarks to check the stored offset");
            Ok(())
        }
    }
}

fn handle_kafka_error(consumer: &BaseConsumer<PipelineContext>, err: KafkaError) -> Result<(), PipelineError> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        return Err(PipelineError::Fatal(format!("{code:?}: {reason}")));
    }
    tracing::warn!(error = %err, "consumer error (retrying)");
    Ok(())
}
