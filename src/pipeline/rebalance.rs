//! Rebalances: what the consume loop works on ([`Work`]), and the consumer
//! context whose callback takes partitions over and hands them over.
//!
//! The callback runs inside `poll` on the consume thread and returns
//! quickly: a new partition is assigned paused and recorded; its takeover
//! (is the local state current? a restore?) runs beside the loop
//! ([`super::takeover`]), which then positions and resumes it
//! ([`PipelineContext::finish_takeover`]). A revoke commits the open batch
//! and waits (bounded) for the partition's outbox to drain, so the next
//! owner's restore finds everything.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::batch::Committed;
use super::progress::Message;
use super::shared::Progress;
use super::takeover::Takeovers;
use super::workers::Cores;
use super::PipelineError;

use crate::state::{read_offset, Store};
use crate::telemetry;

/// How long a revoke waits for the partition's outbox to reach the broker
/// before handing the partition over anyway.
pub(super) const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// What the consume loop works on; shared with the rebalance callback, which
/// runs inside `poll` on the same thread. It outlives a consumer: a rejoin
/// hands it to the next one.
pub(super) struct Work {
    /// The apply workers, and the records waiting for each.
    pub(super) cores: Cores,
    /// Partitions owned (of every co-partitioned topic).
    pub(super) owned: BTreeSet<u32>,
    /// Partitions assigned (paused) and not yet taken over.
    pub(super) takeovers: Takeovers,
    /// The version of the programs the processor holds.
    pub(super) programs_version: u64,
    /// When a stalled partition last made the consumer rejoin: a partition
    /// the broker will not serve (a record over its fetch limit) must not
    /// make the group rebalance every few minutes forever.
    pub(super) last_stall_rejoin: Option<Instant>,
}

impl Work {
    /// Drops the records waiting for the next batch, unapplied (a rewind,
    /// or the next owner, reads them again).
    pub(super) fn drop_batch(&mut self) {
        self.cores.drop_buffered();
    }

    /// Partition `p` is no longer this instance's: forget everything held
    /// for it.
    pub(super) fn release(&mut self, progress: &Progress, p: u32) {
        progress.send(Message::Revoked { partition: p });
        let core = self.cores.core(p);
        core.processor.forget(p);
        core.attempts.forget_partition(p);
        self.owned.remove(&p);
    }
}

/// What librdkafka's last statistics say of one partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartitionStats {
    /// High watermark, if the partition was fetched (-1 until then).
    pub(super) high: i64,
    /// Records fetched and held in this process: a partition with records
    /// queued waits its turn here, it is not stuck at the broker.
    pub(super) queued: i64,
}

/// The consumer context: takes over and hands over partitions.
pub(super) struct PipelineContext {
    pub(super) store: Arc<dyn Store>,
    pub(super) progress: Arc<Progress>,
    pub(super) work: Mutex<Option<Work>>,
    /// The group subscribes `topics[0]`; partition p of the others follows.
    pub(super) topics: Vec<String>,
    /// What went wrong in the rebalance callback, for the loop to stop on.
    pub(super) failure: Mutex<Option<PipelineError>>,
    /// librdkafka's last statistics per (topic, partition): the lag metric
    /// and the stall detector read them.
    pub(super) partition_stats: Mutex<HashMap<(String, u32), PartitionStats>>,
    /// `[state] changelog`: owners and epochs are kept.
    pub(super) changelog: bool,
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
        let mut stats = self
            .partition_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, t) in statistics.topics {
            for (p, part) in t.partitions {
                // -1 is librdkafka's "internal" partition; -1001 is "unknown".
                if p >= 0 {
                    stats.insert(
                        (topic.clone(), p as u32),
                        PartitionStats {
                            high: part.hi_offset,
                            queued: part.fetchq_cnt,
                        },
                    );
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
            self.fail(PipelineError::LostState {
                during: "in a rebalance callback",
            });
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
                    let core = work.cores.core(*p);
                    core.processor.forget(*p);
                    core.attempts.forget_partition(*p);
                    for topic in &self.topics {
                        // Kafka's committed offsets are advisory: start where RocksDB says.
                        let offset = match read_offset(self.store.as_ref(), topic, *p) {
                            Ok(Some(off)) => Offset::Offset(off),
                            Ok(None) => Offset::Beginning,
                            Err(err) => {
                                self.fail(PipelineError::StoredOffset {
                                    topic: topic.clone(),
                                    partition: *p,
                                    source: err,
                                });
                                return;
                            }
                        };
                        if let Err(err) = full.add_partition_offset(topic, *p as i32, offset) {
                            self.fail(PipelineError::Position {
                                topic: topic.clone(),
                                partition: *p,
                                source: err,
                            });
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
                    Err(err) => self.fail(PipelineError::Assign { source: err }),
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
                    self.fail(PipelineError::HandOver {
                        partitions: owned,
                        source: Box::new(err),
                    });
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
                    self.fail(PipelineError::HandOver {
                        partitions: all,
                        source: Box::new(err),
                    });
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
    pub(super) fn fail(&self, err: PipelineError) {
        tracing::error!("{err}");
        *self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
    }

    pub(super) fn take_failure(&self) -> Option<PipelineError> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(super) fn all_topics(&self, parts: &[u32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            for topic in &self.topics {
                tpl.add_partition(topic, *p as i32);
            }
        }
        tpl
    }

    /// Applies and commits every record waiting, on the workers (and, with
    /// `timers_at`, the timers of owned partitions due by then); publishes
    /// what became durable. A worker whose record failed dropped its batch:
    /// its partitions rewind, and the record is tried again.
    pub(super) fn flush(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
        timers_at: Option<i64>,
    ) -> Result<(), PipelineError> {
        for done in work.cores.flush(timers_at, &work.owned)? {
            if let Some(committed) = &done.committed {
                publish(committed, consumer, &self.progress);
            }
            if let Some(failed) = done.failed {
                telemetry::processing_failed();
                tracing::error!(
                    topic = failed.topic,
                    partition = failed.partition,
                    offset = failed.offset,
                    attempt = failed.failed.attempt,
                    cause = %failed.failed.cause,
                    "applying the record failed; its worker's batch is dropped and read again from the durable offsets"
                );
                let worker = work.cores.worker_of(failed.partition);
                let parts = work.cores.partitions_of(worker, &work.owned);
                self.rewind_partitions(work, consumer, &parts)?;
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
            // Nothing waiting was applied; the next owner redoes it.
            let dropped = work.cores.buffered() > 0;
            for p in parts {
                work.release(&self.progress, *p);
                tracing::warn!(partition = p, "partition lost; its open work is dropped");
            }
            if dropped {
                self.rewind(work, consumer)?;
            }
            return Ok(());
        }
        if work.cores.buffered() > 0 {
            self.flush(work, consumer, None)?;
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
            work.release(&self.progress, *p);
            tracing::info!(partition = p, "partition revoked");
        }
        Ok(())
    }
}

pub(super) fn take_work(consumer: &BaseConsumer<PipelineContext>) -> Result<Work, PipelineError> {
    consumer
        .context()
        .work
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or(PipelineError::LostState {
            during: "when the loop took it back from the consumer context",
        })
}

pub(super) fn put_work(consumer: &BaseConsumer<PipelineContext>, work: Work) {
    *consumer
        .context()
        .work
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(work);
}

/// Tells the publisher what became durable, and Kafka (advisory only:
/// lag tools read it; RocksDB is authoritative) the next offsets.
pub(super) fn publish(committed: &Committed, consumer: &BaseConsumer<PipelineContext>, progress: &Progress) {
    for (p, next_seq) in &committed.durable_seq {
        progress.send(Message::Durable {
            partition: *p,
            seq: *next_seq,
        });
    }
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
}
