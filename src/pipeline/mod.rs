//! The consume side: the processor core ([`batch`]), the Kafka consume loop
//! ([`consumer`]) and the progress it shares with the publisher.

pub mod batch;
pub mod consumer;
pub mod poison;
mod rebalance;
pub mod shared;
mod stalls;
pub mod takeover;
pub mod watchdog;
pub mod workers;

pub use batch::{Applied, Batch, InputRecord, Limits, Processor, Tenants};
pub use shared::{Programs, Progress};

/// Why the consume loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The state store failed; the batch in flight was not written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The Kafka client could not be created or subscribed.
    #[error("Kafka client error: {0}; check [kafka] brokers and the librdkafka overrides")]
    Kafka(rdkafka::error::KafkaError),
    /// An apply worker failed.
    #[error(transparent)]
    Workers(#[from] workers::FlushError),
    /// librdkafka reported a fatal error.
    #[error("fatal Kafka error: {0}; restart the processor")]
    Fatal(String),
    /// Partitions could not be positioned at their stored offsets.
    #[error("rebalance failed: {0}")]
    Rebalance(String),
}
