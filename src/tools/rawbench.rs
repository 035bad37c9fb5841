//! The broker's ceilings for `scripts/bench`: a plain consumer that reads a
//! topic and does nothing else (`accrue raw-consume`), and a plain
//! consume-and-produce pipe (`--pipe-to`). Not part of the processor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::admin::{send_waiting, topic_reader, AdminError};
use crate::config::{ClientRole, Config};
use crate::topics::METADATA_TIMEOUT;

/// A raw run failed.
#[derive(Debug, thiserror::Error)]
pub enum RawBenchError {
    /// The topic could not be found or a record not sent.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The Kafka client failed.
    #[error("Kafka error: {0}; is the broker at [kafka] brokers running?")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The pipe lost records.
    #[error(
        "raw pipe: {delivered} of {read} piped records acknowledged, {failed} failed; \
         check the broker's log and run again"
    )]
    Lost {
        /// Records read.
        read: u64,
        /// Records the broker acknowledged.
        delivered: u64,
        /// Records whose delivery failed.
        failed: u64,
    },
}

/// Counts a raw pipe's delivery reports.
#[derive(Default)]
struct PipeDeliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl rdkafka::ClientContext for PipeDeliveries {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::telemetry::librdkafka_error(&error, reason);
    }
}

impl ProducerContext for PipeDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() { &self.delivered } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`raw_consume`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawRun {
    /// Records read.
    pub records: u64,
    /// Seconds from the assignment to the last record read or, when piping,
    /// to the last delivery acknowledged.
    pub seconds: f64,
}

/// Reads every record of `topic` from the beginning with a plain rdkafka
/// consumer that does no processing: the broker's consume ceiling, for
/// `scripts/bench`.
///
/// With `pipe_to`, it also produces every record, key and value unchanged,
/// to that topic and stops the clock when the last one is acknowledged: the
/// ceiling of a consume-and-produce pipeline on this broker, which is what
/// `accrue run` is (it publishes at least one record per input event). The
/// pipe's producer is tuned for throughput, not exactly-once: `acks=all`
/// and lz4 like accrue's publisher, but not idempotent, so librdkafka keeps
/// up to 5 produce requests in flight per broker instead of one per
/// partition, and it lingers 100 ms for batches of up to 10,000 records
/// (tansu's sqlite storage commits once per produce request).
///
/// # Errors
/// [`RawBenchError`] if the topic cannot be read or a record cannot be
/// delivered.
pub fn raw_consume(config: &Config, topic: &str, pipe_to: Option<&str>) -> Result<RawRun, RawBenchError> {
    let producer: Option<BaseProducer<PipeDeliveries>> = match pipe_to {
        Some(_) => Some(
            config
                .kafka
                .client_config(ClientRole::Producer)
                .set("enable.idempotence", "false")
                .set("linger.ms", "100")
                .set("batch.num.messages", "10000")
                .create_with_context(PipeDeliveries::default())?,
        ),
        None => None,
    };
    let (consumer, partitions) = topic_reader(config, topic)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT)?;
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    // Timed from the assignment: librdkafka prefetches before the first
    // record is handed out, and that fetching is what is being measured.
    let started = Instant::now();
    let mut read = 0u64;
    let mut last = started;
    let mut idle = Instant::now();
    while (read as i64) < remaining && idle.elapsed() < Duration::from_secs(30) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if let (Some(producer), Some(to)) = (&producer, pipe_to) {
                    pipe(producer, to, message.key(), message.payload())?;
                }
                read += 1;
                last = Instant::now();
                idle = last;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(err)) => return Err(err.into()),
        }
    }
    if let Some(producer) = &producer {
        producer.flush(Duration::from_secs(120))?;
        last = Instant::now();
        let failed = producer.context().failed.load(Ordering::Relaxed);
        let delivered = producer.context().delivered.load(Ordering::Relaxed);
        if failed > 0 || delivered != read {
            return Err(RawBenchError::Lost {
                read,
                delivered,
                failed,
            });
        }
    }
    Ok(RawRun {
        records: read,
        seconds: last.duration_since(started).as_secs_f64(),
    })
}

/// Produces one record of the raw pipe, waiting while the queue is full.
fn pipe(
    producer: &BaseProducer<PipeDeliveries>,
    to: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<(), RawBenchError> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    Ok(send_waiting(producer, record)?)
}
