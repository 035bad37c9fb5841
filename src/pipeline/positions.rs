//! Where owned partitions stand: taking a partition over once its job is
//! done (new owner epoch, progress, position, resume), and positioning
//! partitions at their durable offsets again after work was dropped.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::Offset;

use super::progress::Message;
use super::rebalance::{publish, PipelineContext, Work};
use super::takeover::Prepared;
use super::PipelineError;
use crate::changelog;
use crate::state::{keys, read_next_seq, read_offset, Durability, Family, Store, WriteSet};
use crate::telemetry;

impl PipelineContext {
    /// Finishes the takeover of partition `p` once its job found the local
    /// state current or restored it: takes ownership with a new epoch,
    /// loads its progress, positions it at the stored offsets and resumes it.
    pub(super) fn finish_takeover(
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
        let processor = &mut work.cores.core(p).processor;
        processor.forget(p);
        if self.changelog {
            let base = changelog::stored_owner(store, p)?.unwrap_or_default();
            let owner = base.next(prepared.head.map(|h| h.owner));
            let mut set = WriteSet::new();
            set.put(Family::Meta, keys::owner(p), owner.encode().to_vec());
            store.write(&set, Durability::Synced)?;
            processor.set_owner(p, owner);
            tracing::info!(partition = p, epoch = owner.epoch, "partition owned");
        }
        for topic in &self.topics {
            check_not_truncated(consumer, store, topic, p)?;
        }
        processor.warm(p)?;
        self.progress.send(Message::Owned {
            partition: p,
            durable: read_next_seq(store, p)?,
        });
        if !shadowed.is_empty() {
            // Records of a dropped batch (or a fenced owner) sit in the log
            // after the values they would have replaced: write those keys
            // again now, so compaction keeps the restored values.
            let repair = processor.repair_batch(p, &shadowed)?;
            let committed = processor.commit(repair)?;
            publish(&committed, consumer, &self.progress);
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
                return Err(PipelineError::Position {
                    topic: topic.clone(),
                    partition: p,
                    source: err,
                });
            }
        }
        consumer.resume(&tpl).map_err(|err| PipelineError::Resume {
            partition: p,
            source: err,
        })?;
        work.owned.insert(p);
        telemetry::partitions_owned(work.owned.len());
        tracing::info!(partition = p, "partition taken over; consuming");
        Ok(())
    }

    /// Drops the records waiting and positions every owned partition at its
    /// durable offsets again, so what was not committed is read and applied
    /// anew (after a lost assignment).
    pub(super) fn rewind(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
    ) -> Result<(), PipelineError> {
        work.drop_batch();
        let owned: Vec<u32> = work.owned.iter().copied().collect();
        self.rewind_partitions(work, consumer, &owned)
    }

    /// Positions partitions `parts` at their durable offsets again (their
    /// worker dropped its batch: a record's processing failed).
    pub(super) fn rewind_partitions(
        &self,
        work: &mut Work,
        consumer: &BaseConsumer<PipelineContext>,
        parts: &[u32],
    ) -> Result<(), PipelineError> {
        for p in parts.iter().copied() {
            let processor = &mut work.cores.core(p).processor;
            processor.forget(p);
            if let Some(owner) = changelog::stored_owner(self.store.as_ref(), p)? {
                processor.set_owner(p, owner);
            }
            for topic in &self.topics {
                let offset = start_offset(consumer, self.store.as_ref(), topic, p)?;
                if let Err(err) = consumer.seek(topic, p as i32, offset, Duration::from_secs(10)) {
                    return Err(PipelineError::Position {
                        topic: topic.clone(),
                        partition: p,
                        source: err,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Where partition `p` of `topic` resumes: its stored offset, or the
/// partition's first offset if nothing was applied yet. Always a concrete
/// offset: librdkafka leaves a paused partition that was sought to a
/// logical offset (`BEGINNING`) in its offset-query state, never fetching.
pub(super) fn start_offset(
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
        Err(err) => Err(PipelineError::Watermarks {
            topic: topic.to_owned(),
            partition: p,
            source: err,
        }),
    }
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
        .partition_stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&(topic.to_owned(), p))
        .map_or(-1, |s| s.high);
    // The larger of the broker's answer and what fetches have shown: tansu
    // 0.6.0's memory storage under-reports its latest offset.
    match consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(10)) {
        Ok((_, high)) if stored > high.max(seen) => Err(PipelineError::Truncated {
            topic: topic.to_owned(),
            partition: p,
            end: high,
            applied: stored,
        }),
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(topic, partition = p, error = %err, "cannot read watermarks to check the stored offset");
            Ok(())
        }
    }
}
