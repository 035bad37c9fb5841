//! The consume loop: a group consumer whose partitions start at the offsets
//! stored in RocksDB, feeding the [`Processor`] and committing batches.
//!
//! It runs on its own thread: every RocksDB call here is blocking.

use std::collections::{HashMap, HashSet};
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
use crate::config::{ClientRole, Config};
use crate::state::{read_next_seq, read_offset, Store};
use crate::telemetry;
use crate::timers::{self, Clock};

/// Intake pauses while more outbox records than this wait for the broker.
const MAX_PENDING_OUTBOX: u64 = 200_000;

/// How often the consumer lag of owned partitions is reported.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// A change of assignment, reported by the rebalance callback.
#[derive(Debug)]
enum Change {
    Assigned(Vec<(String, u32)>),
    Revoked(Vec<(String, u32)>),
}

/// The consumer context: positions assigned partitions at stored offsets.
pub struct PipelineContext {
    store: Arc<dyn Store>,
    changes: Mutex<Vec<Change>>,
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
        let parts: Vec<(String, u32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition() as u32))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Kafka's committed offsets are advisory: start where RocksDB says.
                for (topic, p) in &parts {
                    let offset = match read_offset(self.store.as_ref(), topic, *p) {
                        Ok(Some(off)) => Offset::Offset(off),
                        Ok(None) => Offset::Beginning,
                        Err(err) => {
                            self.fail(format!("cannot read the stored offset of {topic}/{p}: {err}"));
                            return;
                        }
                    };
                    if let Err(err) = tpl.set_partition_offset(topic, *p as i32, offset) {
                        self.fail(format!("cannot position {topic}/{p}: {err}"));
                        return;
                    }
                }
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                match result {
                    Ok(()) => self.push(Change::Assigned(parts)),
                    Err(err) => self.fail(format!("cannot assign partitions: {err}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.push(Change::Revoked(parts));
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "unassign after revoke failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                self.push(Change::Revoked(parts));
                if let Err(err) = consumer.unassign() {
                    tracing::warn!(error = %err, "unassign after rebalance error failed");
                }
            }
        }
    }
}

impl PipelineContext {
    fn push(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(change);
    }

    fn fail(&self, message: String) {
        tracing::error!("{message}");
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }

    fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
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
    let context = PipelineContext {
        store: store.clone(),
        changes: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
        high_watermarks: Mutex::new(HashMap::new()),
    };
    let consumer: BaseConsumer<PipelineContext> = config
        .kafka
        .client_config(ClientRole::Consumer)
        .create_with_context(context)
        .map_err(PipelineError::Kafka)?;
    // The internal topic is co-partitioned with the input: partition p of
    // every topic is owned together, by whoever owns the state of p.
    let topics: Vec<&str> = config
        .topics
        .input
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(config.topics.internal.as_str()))
        .collect();
    consumer.subscribe(&topics).map_err(PipelineError::Kafka)?;
    tracing::info!(topics = ?topics, group = %config.kafka.group_id, "subscribed");

    let (mut programs_version, tenants) = programs.current();
    let mut processor = Processor::new(store.clone(), tenants, code_key);
    processor.set_routing(routing);
    let mut owned: HashSet<(String, u32)> = HashSet::new();
    let mut batch = Batch::default();
    let mut batch_started: Option<Instant> = None;
    let mut paused = false;
    let mut next_timer_check = Instant::now();
    let mut consumed: Vec<(String, u64)> = Vec::new();
    let max_events = config.batch.max_events;
    let linger = config.batch.linger();
    let mut lag_reported = Instant::now();

    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let due = batch_started.is_some_and(|t| t.elapsed() >= linger);
        if !batch.is_empty() && (stopping || due || batch.events() >= max_events) {
            for (topic, n) in consumed.drain(..) {
                telemetry::consumed(&topic, n);
            }
            let b = std::mem::take(&mut batch);
            commit(&mut processor, b, &consumer, &progress)?;
            batch_started = None;
        }
        if stopping {
            break;
        }
        if let Some(failure) = consumer.context().take_failure() {
            return Err(PipelineError::Rebalance(failure));
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
            let partitions: HashSet<u32> = owned.iter().map(|(_, p)| *p).collect();
            let mut overdue_ms = 0;
            for p in partitions {
                if let Some(due) = processor.earliest_due(p)? {
                    overdue_ms = overdue_ms.max(now - due);
                }
                // Under outbox backpressure, measure but do not add output.
                if !paused {
                    processor.fire_due(&mut batch, p, now, timers::FIRE_LIMIT)?;
                }
            }
            telemetry::timers_overdue(overdue_ms);
            if batch_started.is_none() && !batch.is_empty() {
                batch_started = Some(Instant::now());
            }
            telemetry::timers_pending(processor.timers_pending());
            next_timer_check = Instant::now() + timers::CHECK_INTERVAL;
        }

        let timeout = match batch_started {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => Duration::from_millis(100),
        };
        let polled = consumer.poll(timeout);
        let changes = consumer.context().take_changes();
        if !changes.is_empty() {
            apply_changes(
                changes,
                &mut owned,
                &mut processor,
                &mut batch,
                &mut batch_started,
                &consumer,
                &progress,
                store.as_ref(),
            )?;
        }
        if lag_reported.elapsed() >= LAG_INTERVAL {
            report_lag(&consumer, &processor, &owned);
            lag_reported = Instant::now();
        }
        let Some(result) = polled else { continue };
        let message = match result {
            Ok(message) => message,
            Err(err) => {
                handle_kafka_error(&consumer, err)?;
                continue;
            }
        };
        let key = (message.topic().to_owned(), message.partition() as u32);
        if !owned.contains(&key) {
            // Prefetched before a revoke; the new owner will read it.
            continue;
        }
        let record = InputRecord {
            topic: message.topic(),
            partition: key.1,
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
        };
        // A reload (SIGHUP) applies from the next record on.
        if programs.version() != programs_version {
            let (version, tenants) = programs.current();
            // Customers newly seeded with a phone join the directory.
            processor.routing().directory.seed(tenants.values());
            processor.set_tenants(tenants);
            programs_version = version;
            tracing::info!(version, "new programs in force");
        }
        // Counted per batch, not per record: a labelled counter is a map lookup.
        match consumed.iter_mut().find(|(t, _)| t == record.topic) {
            Some((_, n)) => *n += 1,
            None => consumed.push((record.topic.to_owned(), 1)),
        }
        processor.apply(&mut batch, &record)?;
        if batch_started.is_none() && !batch.is_empty() {
            batch_started = Some(Instant::now());
        }
    }
    progress.finish_intake();
    tracing::info!("intake stopped; last batch committed");
    Ok(())
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

#[allow(clippy::too_many_arguments)]
fn apply_changes(
    changes: Vec<Change>,
    owned: &mut HashSet<(String, u32)>,
    processor: &mut Processor,
    batch: &mut Batch,
    batch_started: &mut Option<Instant>,
    consumer: &BaseConsumer<PipelineContext>,
    progress: &Progress,
    store: &dyn Store,
) -> Result<(), PipelineError> {
    for change in changes {
        match change {
            Change::Assigned(parts) => {
                for (topic, p) in parts {
                    check_not_truncated(consumer, store, &topic, p)?;
                    processor.warm(p)?;
                    progress.own(p, read_next_seq(store, p)?);
                    tracing::info!(topic = %topic, partition = p, "partition assigned");
                    owned.insert((topic, p));
                }
            }
            Change::Revoked(parts) => {
                // The open batch may hold work of a revoked partition, which
                // its new owner will redo: drop the batch (nothing of it was
                // written) and rewind the partitions we keep.
                let dropped = !batch.is_empty();
                *batch = Batch::default();
                *batch_started = None;
                for (topic, p) in &parts {
                    owned.remove(&(topic.clone(), *p));
                    tracing::info!(topic = %topic, partition = p, "partition revoked");
                }
                let still: HashSet<u32> = owned.iter().map(|(_, p)| *p).collect();
                for (_, p) in &parts {
                    if !still.contains(p) {
                        progress.disown(*p);
                    }
                    processor.forget(*p);
                }
                if dropped {
                    for (topic, p) in owned.iter() {
                        processor.forget(*p);
                        let offset = read_offset(store, topic, *p)?.map_or(Offset::Beginning, Offset::Offset);
                        if let Err(err) = consumer.seek(topic, *p as i32, offset, Duration::from_secs(10)) {
                            return Err(PipelineError::Rebalance(format!("cannot rewind {topic}/{p}: {err}")));
                        }
                    }
                }
            }
        }
    }
    telemetry::partitions_owned(distinct_partitions(owned));
    progress.set_assigned();
    Ok(())
}

/// Reports each owned partition's lag: the high watermark from librdkafka's
/// statistics (no broker round trip) minus the next offset stored in state.
fn report_lag(consumer: &BaseConsumer<PipelineContext>, processor: &Processor, owned: &HashSet<(String, u32)>) {
    let marks = consumer
        .context()
        .high_watermarks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (topic, p) in owned {
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
    telemetry::partitions_owned(distinct_partitions(owned));
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

/// Partitions owned, each counted once over the co-partitioned topics.
fn distinct_partitions(owned: &HashSet<(String, u32)>) -> usize {
    owned.iter().map(|(_, p)| *p).collect::<HashSet<u32>>().len()
}

fn handle_kafka_error(consumer: &BaseConsumer<PipelineContext>, err: KafkaError) -> Result<(), PipelineError> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        return Err(PipelineError::Fatal(format!("{code:?}: {reason}")));
    }
    tracing::warn!(error = %err, "consumer error (retrying)");
    Ok(())
}
