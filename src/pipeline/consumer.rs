//! The consume loop: a group consumer whose partitions start at the offsets
//! stored in RocksDB, feeding the [`Processor`] and committing batches.
//!
//! It runs on its own thread: every RocksDB call here is blocking. The
//! rebalance callback only assigns (paused) and records new partitions;
//! their takeover ([`super::takeover`]) runs beside the loop, which keeps
//! polling. A [`super::watchdog`] notices a partition or an instance that
//! stopped making progress; a record whose processing panics is retried and
//! then dead-lettered ([`super::poison`]).

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
use super::poison::Attempts;
use super::shared::{Programs, Progress};
use super::takeover::{Prepared, Takeovers};
use super::watchdog::{GroupWatch, Stall, StallWatch, Unassigned};
use super::PipelineError;
use crate::changelog;
use crate::config::{ClientRole, Config};
use crate::state::{keys, Durability, Family, WriteSet};
use crate::state::{read_next_seq, read_offset, Store};
use crate::telemetry;
use crate::timers::{self, Clock};

/// Intake pauses while more outbox records than this wait for the broker.
const MAX_PENDING_OUTBOX: u64 = 200_000;

/// A stalled partition makes the consumer rejoin at most once per this
/// many `[health] partition_stall` bounds.
const STALL_REJOIN_SPACING: u32 = 10;

/// How far before its stored offset a stalled partition is re-read.
const RESEEK_BACK: i64 = 10_000;

/// How often the consumer lag of owned partitions is reported.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// How long a revoke waits for the partition's outbox to reach the broker
/// before handing the partition over anyway.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// What the consume loop works on; shared with the rebalance callback, which
/// runs inside `poll` on the same thread. It outlives a consumer: a rejoin
/// hands it to the next one.
struct Work {
    processor: Processor,
    batch: Batch,
    batch_started: Option<Instant>,
    /// Partitions owned (of every co-partitioned topic).
    owned: BTreeSet<u32>,
    /// Partitions assigned (paused) and not yet taken over.
    takeovers: Takeovers,
    /// Failed attempts of records whose processing panicked.
    attempts: Attempts,
    /// The version of the programs the processor holds.
    programs_version: u64,
    /// When a stalled partition last made the consumer rejoin: a partition
    /// the broker will not serve (a record over its fetch limit) must not
    /// make the group rebalance every few minutes forever.
    last_stall_rejoin: Option<Instant>,
}

/// The consumer context: takes over and hands over partitions.
pub struct PipelineContext {
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
    work: Mutex<Option<Work>>,
    /// The group subscribes `topics[0]`; partition p of the others follows.
    topics: Vec<String>,
    failure: Mutex<Option<String>>,
    /// High watermarks from librdkafka's last statistics, for the lag metric.
    high_watermarks: Mutex<HashMap<(String, u32), i64>>,
    /// Records librdkafka has fetched and holds for each partition, from
    /// its last statistics: a partition with records queued is waiting its
    /// turn in this process, not stuck at the broker.
    fetch_queued: Mutex<HashMap<(String, u32), i64>>,
    /// `[state] changelog`: owners and epochs are kept.
    changelog: bool,
}

impl ClientContext for PipelineContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.progress.set_broker_down(true);
            telemetry::broker_reachable(false);
        }
        telemetry::librdkafka_error(&error, reason);
    }

    /// Called on the consume thread every `statistics.interval.ms`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Bootstrap entries (node id -1) never become "UP" once the real
        // brokers are known; a cluster is reachable if any broker is up.
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.progress.set_broker_down(!up);
        telemetry::broker_reachable(up);
        let mut marks = self
            .high_watermarks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut queued = self
            .fetch_queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                // -1 is librdkafka's "internal" partition; -1001 is "unknown".
                if p >= 0 && part.hi_offset >= 0 {
                    marks.insert((topic.clone(), p as u32), part.hi_offset);
                }
                if p >= 0 {
                    queued.insert((topic.clone(), p as u32), part.fetchq_cnt);
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
        self.progress.heartbeat();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Assign at the stored offsets, paused: the takeover (is
                // local state current? restore?) runs beside the loop, which
                // then positions and resumes the partition.
                let mut full = TopicPartitionList::new();
                for p in &parts {
                    work.processor.forget(*p);
                    work.attempts.forget_partition(*p);
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
                        if let Err(err) = consumer.pause(&full) {
                            // Records of a partition not yet taken over are
                            // skipped, and it is re-positioned when it is.
                            tracing::warn!(error = %err, "cannot pause partitions being taken over");
                        }
                        for p in &parts {
                            work.takeovers.add(*p);
                            tracing::info!(partition = p, topics = ?self.topics, "partition assigned; taking it over");
                        }
                    }
                    Err(err) => self.fail(format!("cannot assign partitions: {err}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                let mut owned = Vec::with_capacity(parts.len());
                for p in &parts {
                    if work.takeovers.cancel(*p) {
                        tracing::info!(partition = p, "partition revoked before its takeover finished");
                    } else {
                        owned.push(*p);
                    }
                }
                if let Err(err) = self.hand_over(work, consumer, &owned, lost) {
                    self.fail(format!("cannot hand over partitions {owned:?}: {err}"));
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
                for p in &parts {
                    work.takeovers.cancel(*p);
                }
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

    /// Finishes the takeover of partition `p` once its job found the local
    /// state current or restored it: takes ownership with a new epoch,
    /// loads its progress, positions it at the stored offsets and resumes it.
    fn finish_takeover(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
        p: u32,
        prepared: Prepared,
    ) -> Result<(), PipelineError> {
        let store = self.store.as_ref();
        let mut shadowed = Vec::new();
        match prepared.restored {
            None => telemetry::assignment("current"),
            Some(stats) => {
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
        }
        work.processor.forget(p);
        if self.changelog {
            let base = changelog::stored_owner(store, p)?.unwrap_or_default();
            let owner = base.next(prepared.head.map(|h| h.owner));
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
        // The restore may have moved the stored offsets since the assignment.
        let tpl = self.all_topics(&[p]);
        for topic in &self.topics {
            let offset = start_offset(consumer, store, topic, p)?;
            if let Err(err) = consumer.seek(topic, p as i32, offset, Duration::from_secs(10)) {
                return Err(PipelineError::Rebalance(format!("cannot position {topic}/{p}: {err}")));
            }
        }
        consumer
            .resume(&tpl)
            .map_err(|err| PipelineError::Rebalance(format!("cannot resume partition {p}: {err}")))?;
        work.owned.insert(p);
        telemetry::partitions_owned(work.owned.len());
        tracing::info!(partition = p, "partition taken over; consuming");
        Ok(())
    }

    /// Drops the open batch and positions every owned partition at its
    /// durable offsets again, so what the batch held is read and applied
    /// anew (after a lost assignment, or a record whose processing failed).
    fn rewind(&self, work: &mut Work, consumer: &BaseConsumer<PipelineContext>) -> Result<(), PipelineError> {
        work.batch = Batch::default();
        work.batch_started = None;
        for p in work.owned.clone() {
            work.processor.forget(p);
            if let Some(owner) = changelog::stored_owner(self.store.as_ref(), p)? {
                work.processor.set_owner(p, owner);
            }
            for topic in &self.topics {
                let offset = start_offset(consumer, self.store.as_ref(), topic, p)?;
                if let Err(err) = consumer.seek(topic, p as i32, offset, Duration::from_secs(10)) {
                    return Err(PipelineError::Rebalance(format!("cannot rewind {topic}/{p}: {err}")));
                }
            }
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
            for p in parts {
                self.progress.disown(*p);
                work.processor.forget(*p);
                work.attempts.forget_partition(*p);
                work.owned.remove(p);
                tracing::warn!(partition = p, "partition lost; its open work is dropped");
            }
            if dropped {
                self.rewind(work, consumer)?;
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
            self.progress.heartbeat();
            std::thread::sleep(Duration::from_millis(5));
        }
        for p in parts {
            self.progress.disown(*p);
            work.processor.forget(*p);
            work.attempts.forget_partition(*p);
            work.owned.remove(p);
            tracing::info!(partition = p, "partition revoked");
        }
        Ok(())
    }
}

/// Where partition `p` of `topic` resumes: its stored offset, or the
/// partition's first offset if nothing was applied yet. Always a concrete
/// offset: librdkafka leaves a paused partition that was sought to a
/// logical offset (`BEGINNING`) in its offset-query state, never fetching.
fn start_offset(
    consumer: &BaseConsumer<PipelineContext>,
    store: &dyn Store,
    topic: &str,
    p: u32,
) -> Result<Offset, PipelineError> {
    if let Some(off) = read_offset(store, topic, p)? {
        return Ok(Offset::Offset(off));
    }
    match consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(10)) {
        Ok((low, _)) => Ok(Offset::Offset(low)),
        Err(err) => Err(PipelineError::Rebalance(format!(
            "cannot read where {topic}/{p} begins: {err}"
        ))),
    }
}

/// How one consumer's loop ended.
enum Exit {
    /// Stop intake: asked to, or failed.
    Stop(Result<(), PipelineError>),
    /// Leave the group and join it again with a new consumer.
    Rejoin(&'static str),
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
    progress.set_bounds(&config.health);
    let (programs_version, tenants) = programs.current();
    let mut processor = Processor::new(store.clone(), tenants, code_key);
    processor.set_routing(routing);
    processor.set_changelog(config.state.changelog);
    processor.set_limits(crate::pipeline::Limits::of(config));
    let changelog_config = config.state.changelog.then(|| Arc::new(config.clone()));
    let mut work = Work {
        processor,
        batch: Batch::default(),
        batch_started: None,
        owned: BTreeSet::new(),
        takeovers: Takeovers::new(changelog_config, store.clone(), progress.clone()),
        attempts: Attempts::new(config.batch.max_attempts),
        programs_version,
        last_stall_rejoin: None,
    };
    loop {
        let context = PipelineContext {
            store: store.clone(),
            progress: progress.clone(),
            work: Mutex::new(Some(work)),
            topics: topics.clone(),
            failure: Mutex::new(None),
            high_watermarks: Mutex::new(HashMap::new()),
            fetch_queued: Mutex::new(HashMap::new()),
            changelog: config.state.changelog,
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
        let exit = consume(config, &consumer, &progress, programs, clock, stop);
        // Leaving the group revokes what we own: the callback commits, drains
        // the outbox and hands the partitions over cleanly.
        let graceful = !matches!(exit, Exit::Stop(Err(_)));
        if !graceful {
            // The open batch may hold half a record: never commit it.
            if let Ok(mut w) = take_work(&consumer) {
                w.batch = Batch::default();
                w.batch_started = None;
                put_work(&consumer, w);
            }
        }
        leave(&consumer, &progress, graceful);
        match exit {
            Exit::Stop(result) => {
                if let Ok(mut w) = take_work(&consumer) {
                    w.takeovers.stop_all();
                    put_work(&consumer, w);
                }
                // Closing revokes whatever is left; the callback hands it over.
                drop(consumer);
                if let Err(err) = &result {
                    progress.fail(err.to_string());
                }
                progress.finish_intake();
                tracing::info!("intake stopped; last batch committed");
                return result;
            }
            Exit::Rejoin(reason) => {
                work = take_work(&consumer)?;
                work.takeovers.stop_all();
                if !work.owned.is_empty() {
                    // The group did not take them back in time: give them up
                    // as lost; the new consumer starts from RocksDB.
                    work.batch = Batch::default();
                    work.batch_started = None;
                    for p in std::mem::take(&mut work.owned) {
                        progress.disown(p);
                        work.processor.forget(p);
                        work.attempts.forget_partition(p);
                    }
                }
                drop(consumer);
                telemetry::rejoined(reason);
                tracing::warn!(reason, "left the consumer group; joining again with a new consumer");
            }
        }
    }
}

/// Unsubscribes and polls until the group has taken every partition back
/// (the revoke callback hands them over), or for at most [`FLUSH_TIMEOUT`].
fn leave(consumer: &BaseConsumer<PipelineContext>, progress: &Progress, graceful: bool) {
    consumer.unsubscribe();
    if !graceful {
        return;
    }
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while Instant::now() < deadline {
        progress.heartbeat();
        // Records polled now are not applied: RocksDB holds the positions.
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().map_or(true, |a| a.count() == 0) {
            break;
        }
    }
}

/// One consumer's loop: poll, apply, commit, fire timers, watch progress.
fn consume(
    config: &Config,
    consumer: &BaseConsumer<PipelineContext>,
    progress: &Progress,
    programs: &Programs,
    clock: &dyn Clock,
    stop: &AtomicBool,
) -> Exit {
    let ctx = consumer.context();
    let topics = &ctx.topics;
    let store = ctx.store.as_ref();
    let mut paused = false;
    let mut next_timer_check = Instant::now();
    let mut consumed: Vec<(String, u64)> = Vec::new();
    let max_events = config.batch.max_events;
    let linger = config.batch.linger();
    let mut lag_reported = Instant::now();
    let lease = config.kafka.publish_lease();
    let mut last_poll = Instant::now();
    let mut confirmed = true;
    let mut stalls: StallWatch<(usize, u32)> = StallWatch::new(config.health.partition_stall);
    let mut group = GroupWatch::new(config.health.unassigned_grace);
    let mut work = match take_work(consumer) {
        Ok(work) => work,
        Err(err) => return Exit::Stop(Err(err)),
    };
    progress.renew_lease(lease);

    let exit = loop {
        let stopping = stop.load(Ordering::SeqCst);
        let due = work.batch_started.is_some_and(|t| t.elapsed() >= linger);
        if !work.batch.is_empty() && (stopping || due || work.batch.events() >= max_events) {
            for (topic, n) in consumed.drain(..) {
                telemetry::consumed(&topic, n);
            }
            let b = std::mem::take(&mut work.batch);
            work.batch_started = None;
            if let Err(err) = commit(&mut work.processor, b, consumer, progress) {
                break Exit::Stop(Err(err));
            }
        }
        if stopping {
            break Exit::Stop(Ok(()));
        }
        if let Some(failure) = ctx.take_failure() {
            break Exit::Stop(Err(PipelineError::Rebalance(failure)));
        }

        // Takeovers run beside the loop; finish those that are ready.
        if !work.takeovers.is_empty() {
            work.takeovers.start();
            for (p, prepared) in work.takeovers.finished() {
                if let Err(err) = ctx.finish_takeover(&mut work, consumer, p, prepared) {
                    break_with(&mut work);
                    return put_back(consumer, work, Exit::Stop(Err(err)));
                }
            }
        }

        // Backpressure: the outbox must drain before more input is taken.
        let over = progress.pending() > MAX_PENDING_OUTBOX;
        if over != paused {
            let owned: Vec<u32> = work.owned.iter().copied().collect();
            let tpl = ctx.all_topics(&owned);
            let result = if over {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, "pause/resume failed");
            }
            paused = over;
            tracing::info!(paused, pending = progress.pending(), "outbox backpressure");
        }

        // Due timers fire into the open batch, and commit with it.
        if Instant::now() >= next_timer_check {
            if let Err(err) = fire_timers(&mut work, clock, paused) {
                break Exit::Stop(Err(err));
            }
            next_timer_check = Instant::now() + timers::CHECK_INTERVAL;
        }

        let timeout = match work.batch_started {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => Duration::from_millis(100),
        };
        progress.heartbeat();
        // The rebalance callback runs inside poll and needs the work.
        put_work(consumer, work);
        let polled = consumer.poll(timeout);
        work = match take_work(consumer) {
            Ok(work) => work,
            Err(err) => return Exit::Stop(Err(err)),
        };

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
            confirmed = confirm_membership(consumer, &work, &topics[0], store);
        }
        if confirmed {
            progress.renew_lease(lease);
        }
        if lag_reported.elapsed() >= LAG_INTERVAL {
            report_lag(consumer, &work.processor, topics, &work.owned);
            if let Some(reason) = watch(consumer, &work, &mut stalls, &mut group, paused, progress) {
                if reason == "partition_stalled" {
                    work.last_stall_rejoin = Some(Instant::now());
                }
                break Exit::Rejoin(reason);
            }
            lag_reported = Instant::now();
        }
        let Some(result) = polled else { continue };
        let message = match result {
            Ok(message) => message,
            Err(err) => {
                if let Err(err) = handle_kafka_error(consumer, err) {
                    break Exit::Stop(Err(err));
                }
                continue;
            }
        };
        let partition = message.partition() as u32;
        if !work.owned.contains(&partition) {
            // Prefetched before a revoke, or of a partition still being
            // taken over (it is re-positioned when it is).
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
        if programs.version() != work.programs_version {
            let (version, tenants) = programs.current();
            // Customers newly seeded with a phone join the directory.
            work.processor.routing().directory.seed(tenants.values());
            work.processor.set_tenants(tenants);
            work.programs_version = version;
            tracing::info!(version, "new programs in force");
        }
        // Counted per batch, not per record: a labelled counter is a map lookup.
        match consumed.iter_mut().find(|(t, _)| t == record.topic) {
            Some((_, n)) => *n += 1,
            None => consumed.push((record.topic.to_owned(), 1)),
        }
        let Work {
            processor,
            batch,
            attempts,
            ..
        } = &mut work;
        let applied = if let Some(failed) = attempts.poison(record.topic, partition, record.offset) {
            let reason = format!(
                "processing failed {} times (the last: {}); dead-lettered so the partition moves on",
                failed.attempt, failed.cause
            );
            tracing::error!(topic = record.topic, partition, offset = record.offset, %reason, "poison record dead-lettered");
            telemetry::poison_record();
            let applied = processor.apply_unprocessable(batch, &record, &reason);
            attempts.settle(record.topic, partition, record.offset);
            applied
        } else {
            match attempts.run(record.topic, partition, record.offset, || {
                processor.apply(batch, &record)
            }) {
                Ok(applied) => applied,
                Err(failed) => {
                    telemetry::processing_failed();
                    tracing::error!(
                        topic = record.topic,
                        partition,
                        offset = record.offset,
                        attempt = failed.attempt,
                        max_attempts = config.batch.max_attempts,
                        cause = %failed.cause,
                        "applying the record failed; the open batch is dropped and read again from the durable offsets"
                    );
                    consumed.clear();
                    if let Err(err) = ctx.rewind(&mut work, consumer) {
                        break Exit::Stop(Err(err));
                    }
                    continue;
                }
            }
        };
        if let Err(err) = applied {
            break Exit::Stop(Err(err.into()));
        }
        if work.batch_started.is_none() && !work.batch.is_empty() {
            work.batch_started = Some(Instant::now());
        }
    };
    put_back(consumer, work, exit)
}

/// A failure mid-loop: the open batch may hold half a record.
fn break_with(work: &mut Work) {
    work.batch = Batch::default();
    work.batch_started = None;
}

fn put_back(consumer: &BaseConsumer<PipelineContext>, work: Work, exit: Exit) -> Exit {
    put_work(consumer, work);
    exit
}

/// Fires due timers of owned partitions into the open batch (measures
/// only, under outbox backpressure).
fn fire_timers(work: &mut Work, clock: &dyn Clock, paused: bool) -> Result<(), PipelineError> {
    let now = clock.now_ms();
    let mut overdue_ms = 0;
    let Work {
        processor,
        batch,
        batch_started,
        owned,
        ..
    } = work;
    for p in owned.iter().copied() {
        if let Some(due) = processor.earliest_due(p)? {
            overdue_ms = overdue_ms.max(now.saturating_sub(due));
        }
        if !paused {
            processor.fire_due(batch, p, now, timers::FIRE_LIMIT)?;
        }
    }
    telemetry::timers_overdue(overdue_ms);
    if batch_started.is_none() && !batch.is_empty() {
        *batch_started = Some(Instant::now());
    }
    telemetry::timers_pending(processor.timers_pending());
    Ok(())
}

/// Every [`LAG_INTERVAL`]: is an owned partition stuck, or is this instance
/// left without partitions while input waits? Sets readiness and metrics,
/// re-positions a stuck partition, and asks for a rejoin when that did not
/// help. Returns the reason to rejoin, if any.
fn watch(
    consumer: &BaseConsumer<PipelineContext>,
    work: &Work,
    stalls: &mut StallWatch<(usize, u32)>,
    group: &mut GroupWatch,
    paused: bool,
    progress: &Progress,
) -> Option<&'static str> {
    let ctx = consumer.context();
    let now = Instant::now();
    let marks = ctx
        .high_watermarks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let queued = ctx
        .fetch_queued
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut rejoin = None;
    stalls.retain(|(_, p)| work.owned.contains(p));
    for p in work.owned.iter().copied() {
        for (i, topic) in ctx.topics.iter().enumerate() {
            let next = match work.processor.stored_offset(topic, p) {
                Ok(next) => next.unwrap_or(0),
                Err(_) => continue,
            };
            let key = (topic.clone(), p);
            let mut high = marks.get(&key).copied().unwrap_or(next);
            if stalls.quiet((i, p), next, now) {
                // Statistics can be stale when fetching is what is stuck:
                // ask the broker too, and believe the larger answer (tansu
                // 0.6.0's memory storage under-reports its latest offset).
                if let Ok((_, h)) = consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(2)) {
                    high = high.max(h);
                }
            }
            // Records fetched and queued here wait their turn behind other
            // partitions' records: that is slow, not stuck.
            let waiting_here = queued.get(&key).is_some_and(|n| *n > 0);
            let stall = stalls.observe((i, p), next, high, paused || waiting_here, now);
            // Set at every look, so the gauge never ages out mid-stall.
            telemetry::partition_stalled(topic, p, matches!(stall, Stall::Stuck { .. }));
            match stall {
                Stall::Fine => {}
                Stall::Recovered => {
                    tracing::info!(topic = %topic, partition = p, offset = next, "partition moves again");
                }
                Stall::Stuck { first: true, stuck_for } => {
                    tracing::warn!(
                        topic = %topic,
                        partition = p,
                        offset = next,
                        high_watermark = high,
                        stuck_seconds = stuck_for.as_secs(),
                        "partition stalled: records wait but its applied offset has not moved; re-positioning it"
                    );
                    // From before the stored offset: a broker that cannot
                    // serve a fetch from inside a record batch (tansu
                    // 0.6.0's memory storage returns nothing, or skips to
                    // the next batch) serves one from an earlier batch
                    // start. Records below the stored offset are skipped as
                    // already applied.
                    let offset = Offset::Offset(next.saturating_sub(RESEEK_BACK).max(0));
                    if let Err(err) = consumer.seek(topic, p as i32, offset, Duration::from_secs(10)) {
                        tracing::warn!(topic = %topic, partition = p, error = %err, "cannot re-position the stalled partition");
                    }
                }
                Stall::Stuck {
                    first: false,
                    stuck_for,
                } => {
                    let rejoined_lately = work
                        .last_stall_rejoin
                        .is_some_and(|t| t.elapsed() < stalls.bound().saturating_mul(STALL_REJOIN_SPACING));
                    if stuck_for >= stalls.bound().saturating_mul(2) && !rejoined_lately {
                        tracing::error!(
                            topic = %topic,
                            partition = p,
                            offset = next,
                            high_watermark = high,
                            stuck_seconds = stuck_for.as_secs(),
                            "partition still stalled after re-positioning; rejoining the group"
                        );
                        rejoin = Some("partition_stalled");
                    }
                }
            }
        }
    }
    progress.set_stalled(stalls.stuck() as u64);

    if !work.owned.is_empty() || !work.takeovers.is_empty() {
        group.owning();
        progress.set_unassigned_with_lag(false);
        return rejoin;
    }
    let Some((lag, committed)) = group_lag(consumer, &ctx.topics[0]) else {
        return rejoin;
    };
    match group.observe(lag, committed, now) {
        Unassigned::Fine => progress.set_unassigned_with_lag(false),
        Unassigned::Unready => {
            tracing::warn!(
                lag,
                "this instance owns no partitions while input waits and nobody consumes it"
            );
            progress.set_unassigned_with_lag(true);
        }
        Unassigned::Rejoin => {
            tracing::error!(lag, "still no partitions while input waits; rejoining the group");
            progress.set_unassigned_with_lag(true);
            group.reset();
            rejoin = Some("no_assignment");
        }
    }
    rejoin
}

/// The group's input records not yet committed by any member, and the sum
/// of its committed offsets; `None` if the broker cannot tell now.
fn group_lag(consumer: &BaseConsumer<PipelineContext>, topic: &str) -> Option<(i64, i64)> {
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p as i32);
    }
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let (mut lag, mut sum) = (0i64, 0i64);
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout).ok()?;
        let at = match element.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        lag = lag.saturating_add(high.saturating_sub(at).max(0));
        sum = sum.saturating_add(at);
    }
    Some((lag, sum))
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
    let seen = consumer
        .context()
        .high_watermarks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&(topic.to_owned(), p))
        .copied()
        .unwrap_or(0);
    // The larger of the broker's answer and what fetches have shown: tansu
    // 0.6.0's memory storage under-reports its latest offset.
    match consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(10)) {
        Ok((_, high)) if stored > high.max(seen) => Err(PipelineError::Rebalance(format!(
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
