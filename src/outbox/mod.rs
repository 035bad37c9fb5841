//! The outbox: records written in the same batch as the state they describe,
//! and the publisher that moves them to Kafka once durable.

mod oversize;
mod publisher;
mod record;
mod render;
mod tail;

pub use oversize::fit_dead_letter;
pub use publisher::Publisher;
pub use record::{AccrualRef, Destination, OutboxRecord, Stored};
pub use render::load;
pub use tail::TailReader;

/// Why the publisher stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A Kafka client could not be created.
    #[error("Kafka client error: {0}; check [kafka] brokers and the librdkafka overrides")]
    Kafka(rdkafka::error::KafkaError),
    /// An output partition's tail could not be read (retried).
    #[error("cannot read an output tail: {0}")]
    Tail(String),
}
