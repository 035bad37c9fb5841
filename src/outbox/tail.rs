//! Reads the last records of an output partition to learn the highest
//! sequence already published from a source partition.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::OutboxError;
use crate::config::{ClientRole, Config};
use crate::contract;
use crate::telemetry::KafkaLog;

/// How far back from the end the reader looks for an accrue id.
const LOOK_BACK: i64 = 256;
const TIMEOUT: Duration = Duration::from_secs(15);

/// An unsubscribed consumer used only to read partition tails.
pub struct TailReader {
    consumer: BaseConsumer<KafkaLog>,
}

impl TailReader {
    /// Creates the reader.
    ///
    /// # Errors
    /// [`OutboxError::Kafka`] if the client cannot be created.
    pub fn new(config: &Config) -> Result<Self, OutboxError> {
        let consumer = config
            .kafka
            .client_config(ClientRole::TailReader)
            .create_with_context(KafkaLog)
            .map_err(OutboxError::Kafka)?;
        Ok(TailReader { consumer })
    }

    /// The highest sequence of source partition `p` found in the last
    /// records of `topic`/`p`, or `None` if it holds none.
    ///
    /// # Errors
    /// [`OutboxError::Tail`] if the partition cannot be read in time; the
    /// caller must not publish that partition until this succeeds.
    pub fn last_seq(&self, topic: &str, p: u32) -> Result<Option<u64>, OutboxError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, p as i32, TIMEOUT)
            .map_err(|e| OutboxError::Tail(format!("watermarks of {topic}/{p}: {e}")))?;
        if high <= low {
            return Ok(None);
        }
        let start = (high - LOOK_BACK).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(start))
            .map_err(|e| OutboxError::Tail(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| OutboxError::Tail(e.to_string()))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut best: Option<u64> = None;
        let result = loop {
            if Instant::now() >= deadline {
                break Err(OutboxError::Tail(format!(
                    "timed out reading {topic}/{p} from {start} to {high}"
                )));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break Ok(()),
                Some(Err(e)) => break Err(OutboxError::Tail(format!("reading {topic}/{p}: {e}"))),
                Some(Ok(msg)) => {
                    let id = msg.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == contract::HEADER_ID)
                            .and_then(|h| h.value)
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(contract::parse_output_id)
                    });
                    if let Some((src, seq)) = id {
                        if src == p {
                            best = Some(best.map_or(seq, |b| b.max(seq)));
                        }
                    }
                    if msg.offset() >= high - 1 {
                        break Ok(());
                    }
                }
            }
        };
        let _ = self.consumer.unassign();
        result.map(|()| best)
    }
}
