//! The topics of a deployment and the start-up check that they exist and
//! are co-partitioned (state and outputs are keyed by input partition).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{ClientRole, Config};

/// How long a metadata request may take.
pub(crate) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics are not as `accrue run` needs them.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The Kafka client failed.
    #[error("Kafka error: {0}; is the broker at [kafka] brokers running?")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic is missing.
    #[error("topic {0:?} does not exist; create it with `accrue topics create`")]
    MissingTopic(String),
    /// Topics are not co-partitioned.
    #[error("topics must all have the same partition count (state and output are keyed by input partition), but {0}")]
    PartitionMismatch(String),
}

/// Every topic accrue uses, inputs first.
pub fn all(config: &Config) -> Vec<String> {
    let mut topics = config.topics.input.clone();
    topics.push(config.topics.accruals.clone());
    topics.push(config.topics.dead_letter.clone());
    topics.push(config.topics.internal.clone());
    topics.push(config.topics.directory());
    if config.state.changelog {
        topics.push(config.topics.changelog());
    }
    topics
}

/// Checks that every topic exists and that all have one partition count;
/// returns it.
///
/// # Errors
/// [`TopicsError::MissingTopic`] or [`TopicsError::PartitionMismatch`],
/// which `accrue run` reports before it consumes anything.
pub fn check(config: &Config) -> Result<i32, TopicsError> {
    let consumer: BaseConsumer = config.kafka.client_config(ClientRole::TailReader).create()?;
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for topic in all(config) {
        let metadata = consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT)?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                counts.insert(topic, t.partitions().len() as i32);
            }
            _ => return Err(TopicsError::MissingTopic(topic)),
        }
    }
    let first = counts.values().next().copied().unwrap_or(0);
    if counts.values().any(|n| *n != first) {
        let listing: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
        return Err(TopicsError::PartitionMismatch(listing.join(", ")));
    }
    Ok(first)
}
