//! The consume loop: a group consumer whose partitions start at the offsets
//! stored in RocksDB, feeding the [`Processor`] and committing batches.
//!
//! It runs on its own thread: every RocksDB call here is blocking. The
//! rebalance callback ([`super::rebalance`]) only assigns (paused) and
//! records new partitions; their takeover ([`super::takeover`]) runs beside
//! the loop, which keeps polling. Every few seconds the loop looks at its
//! own progress ([`super::stalls`]); a record whose processing panics is
//! retried and then dead-lettered ([`super::poison`]). If the group leaves
//! it without partitions while input waits, or a partition stays stuck, it
//! leaves the group and joins again with a new consumer.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::batch::{InputRecord, Processor, Routing};
use super::poison::Attempts;
use super::rebalance::{put_work, take_work, PipelineContext, Work, FLUSH_TIMEOUT};
use super::shared::{Programs, Progress};
use super::stalls::watch;
use super::takeover::Takeovers;
use super::watchdog::{GroupWatch, StallWatch};
use super::workers::{Chunk, Core, Cores};
use super::PipelineError;
use crate::config::{ClientRole, Config};
use crate::state::{read_offset, Store};
use crate::telemetry;
use crate::till::{Till, TillAnswer};
use crate::timers::{self, Clock};

/// Longest poll: how long a till request may wait to be noticed while no
/// record arrives (the loop cannot be woken inside librdkafka's poll).
const TILL_POLL: Duration = Duration::from_millis(1);

/// How often the consumer lag of owned partitions is reported.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

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
    till: &Till,
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
    let cores = (0..config.pipeline.workers.max(1))
        .map(|_| {
            let mut processor = Processor::new(store.clone(), tenants.clone(), code_key.clone());
            processor.set_routing(routing.clone());
            processor.set_changelog(config.state.changelog);
            processor.set_report_gaps(true);
            processor.set_limits(crate::pipeline::Limits::of(config));
            Core {
                processor,
                attempts: Attempts::new(config.batch.max_attempts),
                chunk: Chunk::default(),
                till: Vec::new(),
            }
        })
        .collect();
    let cores = Cores::new(cores).map_err(PipelineError::StartWorkers)?;
    tracing::info!(workers = cores.workers(), "apply workers started");
    let changelog_config = config.state.changelog.then(|| Arc::new(config.clone()));
    let mut work = Work {
        cores,
        owned: BTreeSet::new(),
        takeovers: Takeovers::new(changelog_config, store.clone(), progress.clone()),
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
            partition_stats: Mutex::new(HashMap::new()),
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
        let exit = consume(config, &consumer, &progress, programs, clock, till, stop);
        // Leaving the group revokes what we own: the callback commits, drains
        // the outbox and hands the partitions over cleanly.
        let graceful = !matches!(exit, Exit::Stop(Err(_)));
        if !graceful {
            // The open batch may hold half a record: never commit it.
            if let Ok(mut w) = take_work(&consumer) {
                w.drop_batch();
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
                    work.drop_batch();
                    for p in work.owned.clone() {
                        work.release(&progress, p);
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
    till: &Till,
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
    let mut timers_at: Option<i64> = None;
    progress.renew_lease(lease);

    let exit = loop {
        let stopping = stop.load(Ordering::SeqCst);
        // Till requests go to their partition's worker and are applied in
        // the next batch, flushed at once: a till waits for one batch.
        if till.waiting() {
            for request in till.take() {
                if work.owned.contains(&request.partition) {
                    work.cores.core(request.partition).till.push(request);
                } else {
                    let _ = request.reply.send(TillAnswer::NotOwner);
                }
            }
        }
        let due = work.cores.started.is_some_and(|t| t.elapsed() >= linger);
        let waiting = work.cores.buffered();
        let at_till = work.cores.till_waiting();
        if (waiting > 0 && (stopping || due || waiting >= max_events)) || at_till || timers_at.is_some() {
            for (topic, n) in consumed.drain(..) {
                telemetry::consumed(&topic, n);
            }
            if let Err(err) = ctx.flush(&mut work, consumer, timers_at.take()) {
                break Exit::Stop(Err(err));
            }
        }
        if stopping {
            break Exit::Stop(Ok(()));
        }
        if let Some(failure) = ctx.take_failure() {
            break Exit::Stop(Err(failure));
        }

        // Takeovers run beside the loop; finish those that are ready.
        if !work.takeovers.is_empty() {
            work.takeovers.start();
            for (p, prepared) in work.takeovers.finished() {
                if let Err(err) = ctx.finish_takeover(&mut work, consumer, p, prepared) {
                    return put_back(consumer, work, Exit::Stop(Err(err)));
                }
            }
        }

        // Backpressure: while the intake's credit is spent (too many outbox
        // records wait for the broker), the outbox drains before more input
        // is taken.
        let over = progress.credit_spent();
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

        // Due timers fire in the next batch of their partition's worker.
        if Instant::now() >= next_timer_check {
            match due_timers(&mut work, clock, paused) {
                Ok(at) => timers_at = at,
                Err(err) => break Exit::Stop(Err(err)),
            }
            next_timer_check = Instant::now() + timers::CHECK_INTERVAL;
        }

        let timeout = match work.cores.started {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => Duration::from_millis(100),
        }
        .min(TILL_POLL);
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
        // A reload (SIGHUP) applies from the next batch on.
        if programs.version() != work.programs_version {
            if let Err(err) = ctx.flush(&mut work, consumer, None) {
                break Exit::Stop(Err(err));
            }
            let (version, tenants) = programs.current();
            for core in work.cores.each() {
                // Customers newly seeded with a phone join the directory.
                core.processor.routing().directory.seed(tenants.values());
                core.processor.set_tenants(tenants.clone());
            }
            work.programs_version = version;
            tracing::info!(version, "new programs in force");
        }
        // Counted per batch, not per record: a labelled counter is a map lookup.
        match consumed.iter_mut().find(|(t, _)| t == record.topic) {
            Some((_, n)) => *n += 1,
            None => consumed.push((record.topic.to_owned(), 1)),
        }
        work.cores.push(&record);
    };
    put_back(consumer, work, exit)
}

fn put_back(consumer: &BaseConsumer<PipelineContext>, work: Work, exit: Exit) -> Exit {
    put_work(consumer, work);
    exit
}

/// Whether timers of owned partitions are due: the time to fire them at
/// in the next batch (none under outbox backpressure, which only measures).
fn due_timers(work: &mut Work, clock: &dyn Clock, paused: bool) -> Result<Option<i64>, PipelineError> {
    let now = clock.now_ms();
    let mut overdue_ms = 0;
    let mut any = false;
    for p in work.owned.clone() {
        if let Some(due) = work.cores.core(p).processor.earliest_due(p)? {
            overdue_ms = overdue_ms.max(now.saturating_sub(due));
            any |= due <= now;
        }
    }
    telemetry::timers_overdue(overdue_ms);
    telemetry::timers_pending(work.cores.timers_pending());
    Ok((any && !paused).then_some(now))
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

fn handle_kafka_error(consumer: &BaseConsumer<PipelineContext>, err: KafkaError) -> Result<(), PipelineError> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        return Err(PipelineError::Fatal { code, reason });
    }
    tracing::warn!(error = %err, "consumer error (retrying)");
    Ok(())
}
