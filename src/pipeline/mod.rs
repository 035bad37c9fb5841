//! The consume side: the processor core ([`batch`]), the Kafka consume loop
//! ([`consumer`]) and the progress it shares with the publisher.

pub mod batch;
pub mod consumer;
pub mod poison;
mod positions;
pub mod progress;
mod rebalance;
pub mod shared;
mod stalls;
pub mod takeover;
pub mod watchdog;
pub mod workers;

pub use batch::{Applied, Batch, InputRecord, Limits, Processor, Tenants};
pub use progress::Message;
pub use shared::{Programs, Progress};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::state::StateError;

/// Why the consume loop stopped. Each variant carries its cause; the
/// state on disk is intact in every case (nothing half-applied is written).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The state store failed; the batch in flight was not written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The Kafka client could not be created or subscribed.
    #[error("Kafka client error: {0}; check [kafka] brokers and the librdkafka overrides")]
    Kafka(#[source] KafkaError),
    /// An apply worker failed.
    #[error("an apply worker failed: {0}")]
    Workers(#[from] workers::FlushError),
    /// The apply worker threads could not be started.
    #[error("cannot start the apply worker threads: {0}; lower [pipeline] workers or raise the process's thread limit, then restart")]
    StartWorkers(#[source] std::io::Error),
    /// librdkafka reported a fatal error: the client cannot go on.
    #[error("fatal Kafka error {code:?}: {reason}; restart the processor")]
    Fatal {
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
        /// librdkafka's explanation.
        reason: String,
    },
    /// A partition could not be assigned at, or sought to, its stored offset.
    #[error(
        "cannot position {topic}/{partition} at its stored offset: {source}; check that the broker is \
         reachable, then restart the processor (the state is intact)"
    )]
    Position {
        /// The input topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the client said.
        source: KafkaError,
    },
    /// A partition that was taken over could not be resumed.
    #[error(
        "cannot resume partition {partition} after taking it over: {source}; restart the processor \
         (the state is intact)"
    )]
    Resume {
        /// The partition.
        partition: u32,
        /// What the client said.
        source: KafkaError,
    },
    /// A new assignment could not be applied in the rebalance callback.
    #[error("cannot assign partitions: {source}; restart the processor to rejoin the group (the state is intact)")]
    Assign {
        /// What the client said.
        source: KafkaError,
    },
    /// Where a partition begins could not be read from the broker.
    #[error(
        "cannot read where {topic}/{partition} begins: {source}; check that the broker is reachable and \
         the topic exists, then restart the processor"
    )]
    Watermarks {
        /// The input topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the client said.
        source: KafkaError,
    },
    /// The stored offset of an assigned partition could not be read.
    #[error("cannot read the stored offset of {topic}/{partition}: {source}")]
    StoredOffset {
        /// The input topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the store said (and what to do).
        source: StateError,
    },
    /// Revoked partitions could not be handed over (or, after a rebalance
    /// error, dropped): their open batch or outbox was not finished.
    #[error("cannot hand over partitions {partitions:?}: {source}")]
    HandOver {
        /// The partitions.
        partitions: Vec<u32>,
        /// Why.
        source: Box<PipelineError>,
    },
    /// The state has applied input beyond the partition's end: the topic
    /// was deleted and recreated, or truncated.
    #[error(
        "input {topic}/{partition} ends at offset {end}, but the state has applied it up to offset {applied}: \
         the topic was recreated or truncated. Point [state] dir at a fresh directory to start over, \
         or restore the topic; accrue will not guess which records are new"
    )]
    Truncated {
        /// The input topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The partition's high watermark.
        end: i64,
        /// The stored offset: the next record the state would apply.
        applied: i64,
    },
    /// The consume loop's work was not where it belongs (a bug).
    #[error("the consume loop lost its state {during}; this is a bug: restart the processor and report it")]
    LostState {
        /// When it was missed.
        during: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pipeline_error_keeps_its_source_and_says_what_to_do() {
        use std::error::Error as _;
        let kafka = || KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        let state = || StateError::Corrupt {
            family: "offsets",
            detail: "short value".into(),
        };
        let errors = [
            PipelineError::State(state()),
            PipelineError::Kafka(kafka()),
            PipelineError::Fatal {
                code: RDKafkaErrorCode::Fatal,
                reason: "producer fenced".into(),
            },
            PipelineError::Position {
                topic: "orders".into(),
                partition: 3,
                source: kafka(),
            },
            PipelineError::Resume {
                partition: 3,
                source: kafka(),
            },
            PipelineError::Assign { source: kafka() },
            PipelineError::Watermarks {
                topic: "orders".into(),
                partition: 3,
                source: kafka(),
            },
            PipelineError::StoredOffset {
                topic: "orders".into(),
                partition: 3,
                source: state(),
            },
            PipelineError::HandOver {
                partitions: vec![1, 2],
                source: Box::new(PipelineError::State(state())),
            },
            PipelineError::Truncated {
                topic: "orders".into(),
                partition: 3,
                end: 10,
                applied: 20,
            },
            PipelineError::LostState { during: "in a test" },
            PipelineError::Workers(workers::FlushError::State(state())),
            PipelineError::Workers(workers::FlushError::Worker("a worker thread is gone".into())),
            PipelineError::StartWorkers(std::io::Error::other("no threads left")),
        ];
        for err in &errors {
            let text = err.to_string();
            assert!(
                ["restart", "check", "restore", "Point"]
                    .iter()
                    .any(|w| text.contains(w)),
                "{text}"
            );
            let sourced = !matches!(
                err,
                PipelineError::Fatal { .. } | PipelineError::Truncated { .. } | PipelineError::LostState { .. }
            );
            // State is transparent: its message is the store's own.
            let has_source = err.source().is_some() || matches!(err, PipelineError::State(_));
            assert_eq!(has_source, sourced, "{text}");
        }
        let Some(PipelineError::HandOver { source, .. }) = errors.get(8) else {
            panic!("the hand-over error moved")
        };
        assert!(matches!(**source, PipelineError::State(StateError::Corrupt { .. })));
    }
}
