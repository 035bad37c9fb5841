//! The consume loop's look at its own progress, every few seconds: lag
//! metrics, owned partitions stuck at their offset, and an instance left
//! without partitions while input waits. The decisions are pure
//! ([`super::watchdog`]); this is their I/O shell (broker queries, seeks,
//! logs, readiness).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::rebalance::{PipelineContext, Work};
use super::shared::Progress;
use super::watchdog::{GroupWatch, Stall, StallWatch, Unassigned};
use crate::telemetry;

/// A stalled partition makes the consumer rejoin at most once per this
/// many `[health] partition_stall` bounds.
const STALL_REJOIN_SPACING: u32 = 10;

/// How far before its stored offset a stalled partition is re-read.
const RESEEK_BACK: i64 = 10_000;

/// Every few seconds: reports each owned partition's lag (the high
/// watermark from librdkafka's statistics, no broker round trip, minus the
/// next offset stored in state); is an owned partition stuck, or is this
/// instance left without partitions while input waits? Sets readiness and
/// metrics, re-positions a stuck partition, and asks for a rejoin when that
/// did not help. Returns the reason to rejoin, if any.
pub(super) fn watch(
    consumer: &BaseConsumer<PipelineContext>,
    work: &Work,
    stalls: &mut StallWatch<(usize, u32)>,
    group: &mut GroupWatch,
    paused: bool,
    progress: &Progress,
) -> Option<&'static str> {
    let ctx = consumer.context();
    let now = Instant::now();
    let stats = ctx
        .partition_stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut rejoin = None;
    stalls.retain(|(_, p)| work.owned.contains(p));
    for p in work.owned.iter().copied() {
        for (i, topic) in ctx.topics.iter().enumerate() {
            let next = match crate::state::read_offset(ctx.store.as_ref(), topic, p) {
                Ok(next) => next.unwrap_or(0),
                Err(err) => {
                    tracing::debug!(topic = %topic, partition = p, error = %err, "cannot read the stored offset");
                    continue;
                }
            };
            let seen = stats.get(&(topic.clone(), p)).copied();
            // librdkafka says -1 until the partition was fetched.
            let known_high = seen.map(|s| s.high).filter(|h| *h >= 0);
            if let Some(h) = known_high {
                telemetry::consumer_lag(topic, p, h - next);
            }
            let mut high = known_high.unwrap_or(next);
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
            let waiting_here = seen.is_some_and(|s| s.queued > 0);
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
    telemetry::partitions_owned(work.owned.len());

    if !work.owned.is_empty() || !work.takeovers.is_empty() {
        group.reset();
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
