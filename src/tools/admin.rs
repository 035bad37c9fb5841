//! Operator tools around the topics: create them, produce sample events,
//! and print a topic's records. (The start-up check that they exist is
//! [`crate::topics::check`].)

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{ClientRole, Config};
use crate::telemetry::KafkaLog;
use crate::topics::{self, METADATA_TIMEOUT};

/// An admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The Kafka client failed.
    #[error("Kafka error: {0}; is the broker at [kafka] brokers running?")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic is missing.
    #[error("topic {0:?} does not exist; create it with `accrue topics create`")]
    MissingTopic(String),
    /// A topic could not be created.
    #[error("cannot create topic {0:?}: {1}")]
    Create(String, String),
    /// An input file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
}

/// Creates every configured topic with `partitions` partitions; existing
/// topics are left as they are.
///
/// # Errors
/// [`AdminError`] if the broker refuses.
pub async fn create_topics(config: &Config, partitions: i32, replication: i32) -> Result<(), AdminError> {
    let names = topics::all(config);
    let directory = config.topics.directory();
    let changelog = config.topics.changelog();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
            if *t == directory {
                // The directory keeps the last entry per customer, forever.
                topic.set("cleanup.policy", "compact")
            } else if *t == changelog {
                // The last value per state key; a record stays uncompacted
                // for an hour, far longer than any batch takes to complete
                // (docs/operations.md, "Scale-out").
                topic
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "3600000")
            } else {
                topic
            }
        })
        .collect();
    create(config, &new, partitions).await
}

/// Creates `new` topics; those that exist are left as they are.
async fn create(config: &Config, new: &[NewTopic<'_>], partitions: i32) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = config.kafka.client_config(ClientRole::Admin).create()?;
    let results = admin
        .create_topics(new, &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)))
        .await?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic = %topic, partitions, "created topic"),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => tracing::info!(topic = %topic, "topic exists"),
            Err((topic, code)) => return Err(AdminError::Create(topic, code.to_string())),
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions unless it exists (the raw
/// pipe's output topic of `scripts/bench`).
///
/// # Errors
/// [`AdminError`] if the broker refuses.
pub async fn create_topic(config: &Config, topic: &str, partitions: i32) -> Result<(), AdminError> {
    let new = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    create(config, &new, partitions).await
}

/// The partition count of `topic`.
///
/// # Errors
/// [`AdminError::MissingTopic`] if it does not exist.
pub fn partition_count(config: &Config, topic: &str) -> Result<i32, AdminError> {
    let (_, partitions) = topic_reader(config, topic)?;
    Ok(partitions.len() as i32)
}

/// Produces the events in `files` (JSON documents or NDJSON) to `topic`,
/// keyed `tenant:customer` from each event. Returns how many were sent.
///
/// # Errors
/// [`AdminError`] if a file cannot be read or delivery fails.
pub fn produce_files(config: &Config, topic: &str, files: &[impl AsRef<Path>]) -> Result<usize, AdminError> {
    let producer: BaseProducer = config.kafka.client_config(ClientRole::Producer).create()?;
    let mut sent = 0;
    for file in files {
        let path = file.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AdminError::Io(path.display().to_string(), e))?;
        for doc in split_documents(&text) {
            let key = serde_json::from_str::<serde_json::Value>(doc).ok().and_then(|v| {
                let tenant = v.get("tenant")?.as_str()?.to_owned();
                let customer = v.get("customer")?.as_str()?.to_owned();
                Some(format!("{tenant}:{customer}"))
            });
            loop {
                let mut record = BaseRecord::to(topic).payload(doc);
                if let Some(k) = &key {
                    record = record.key(k.as_str());
                }
                match producer.send(record) {
                    Ok(()) => break,
                    Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((err, _)) => return Err(err.into()),
                }
            }
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

/// Produces `(key, value)` records to `topic` as fast as the producer
/// queue allows; returns how many were delivered.
///
/// # Errors
/// [`AdminError`] if delivery fails.
pub fn produce_stream(
    config: &Config,
    topic: &str,
    records: impl Iterator<Item = (String, String)>,
) -> Result<u64, AdminError> {
    let producer: BaseProducer = config.kafka.client_config(ClientRole::Producer).create()?;
    let mut sent = 0;
    for (key, value) in records {
        send_waiting(
            &producer,
            BaseRecord::to(topic).key(key.as_str()).payload(value.as_str()),
        )?;
        sent += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(sent)
}

/// A file holds either one pretty-printed JSON document or NDJSON.
fn split_documents(text: &str) -> Vec<&str> {
    let trimmed = text.trim();
    if serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return vec![trimmed];
    }
    trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// One human-readable line for any output record.
fn summarize(headers: &BTreeMap<String, String>, value: &serde_json::Value) -> String {
    let id = headers.get(crate::contract::HEADER_ID).map_or("-", String::as_str);
    if let Some(kind) = headers.get(crate::contract::HEADER_ERROR_KIND) {
        let reason = headers
            .get(crate::contract::HEADER_ERROR_REASON)
            .map_or("", String::as_str);
        return format!("[{id}] dead letter: {kind}: {reason}");
    }
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let who = format!("{}/{}", field("tenant"), field("customer"));
    let kind = field("type");
    match kind.as_str() {
        "accrual.recorded" => {
            let amount = field("amount");
            let sign = if amount.starts_with('-') { "" } else { "+" };
            format!(
                "[{id}] {who}: {} {} {sign}{amount} -> balance {} ({}, event {})",
                field("entry_type"),
                field("account"),
                field("balance"),
                field("program"),
                field("source_event_id"),
            )
        }
        "giftcard.issued" => format!(
            "[{id}] {who}: gift card {} issued, code {} worth {} {}",
            field("gift_card"),
            field("code"),
            field("value"),
            field("currency")
        ),
        "referral.applied" => format!(
            "[{id}] {who}: referred by {}: {}% off this first visit; {} {} to the referrer (command {})",
            field("referrer"),
            field("invitee_discount_percent"),
            field("referrer_account"),
            field("referrer_amount"),
            field("command_id"),
        ),
        "partner.identified" => format!(
            "[{id}] {who}: customer {} of partner {}: {}% off, {}% accrual{} (command {})",
            field("partner_customer"),
            field("partner_tenant"),
            field("discount_percent"),
            field("accrual_percent"),
            if value.get("shared_deposit").and_then(serde_json::Value::as_bool) == Some(true) {
                " into the shared deposit"
            } else {
                ""
            },
            field("command_id"),
        ),
        "tier.changed" => {
            let level = |name: &str| match value.get(name).and_then(serde_json::Value::as_str) {
                Some(level) => level.to_owned(),
                None => "no tier".to_owned(),
            };
            format!(
                "[{id}] {who}: tier {} -> {} ({} {} over the window)",
                level("from"),
                level("to"),
                field("metric"),
                field("value"),
            )
        }
        "points.expiring" => format!(
            "[{id}] {who}: {} {} of {} expires at {}",
            field("amount"),
            field("account"),
            field("balance"),
            field("expires_at"),
        ),
        k if k.ends_with(".rejected") => format!("[{id}] {who}: {k}: {} ({})", field("reason_code"), field("reason")),
        _ => format!(
            "[{id}] {who}: {kind}: {} {} -> {} \"{}\"",
            field("account"),
            field("amount"),
            field("balance"),
            field("description")
        ),
    }
}

/// Prints records of `topic` from the beginning as JSON lines (key, headers,
/// value) until `max` were printed or nothing arrives for `idle`.
///
/// # Errors
/// [`AdminError`] if the topic cannot be read.
pub fn print_topic(
    config: &Config,
    topic: &str,
    max: usize,
    idle: Duration,
    pretty: bool,
    out: &mut impl Write,
) -> Result<usize, AdminError> {
    let (consumer, partitions) = topic_reader(config, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut printed = 0;
    let mut last = Instant::now();
    while printed < max && last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                last = Instant::now();
                let headers: BTreeMap<String, String> = msg
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let value = msg.payload().map(String::from_utf8_lossy).unwrap_or_default();
                let value_json: serde_json::Value =
                    serde_json::from_str(&value).unwrap_or_else(|_| serde_json::Value::String(value.into_owned()));
                if pretty {
                    let _ = writeln!(out, "  {}", summarize(&headers, &value_json));
                    printed += 1;
                    continue;
                }
                let line = serde_json::json!({
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": msg.key().map(String::from_utf8_lossy),
                    "headers": headers,
                    "value": value_json,
                });
                let _ = writeln!(out, "{line}");
                printed += 1;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(err)) => return Err(err.into()),
        }
    }
    Ok(printed)
}

/// An unsubscribed reader of `topic` and its partition ids.
pub(crate) fn topic_reader(config: &Config, topic: &str) -> Result<(BaseConsumer<KafkaLog>, Vec<i32>), AdminError> {
    let consumer: BaseConsumer<KafkaLog> = config
        .kafka
        .client_config(ClientRole::TailReader)
        .create_with_context(KafkaLog)?;
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(AdminError::MissingTopic(topic.to_owned()));
    }
    Ok((consumer, partitions))
}

/// Hands `record` to `producer`, serving delivery reports while its queue
/// is full.
pub(crate) fn send_waiting<C, K, P>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), AdminError>
where
    C: ProducerContext<DeliveryOpaque = ()>,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((err, _)) => return Err(err.into()),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: serde_json::Value) -> String {
        let headers = BTreeMap::from([(crate::contract::HEADER_ID.to_owned(), "2-8".to_owned())]);
        summarize(&headers, &value)
    }

    #[test]
    fn tier_changes_and_expiry_warnings_read_as_sentences() {
        let tier = line(serde_json::json!({
            "type": "tier.changed", "tenant": "bistro-nord", "customer": "b-2001",
            "from": null, "to": "silver", "metric": "spend", "value": "350.00"
        }));
        assert_eq!(
            tier,
            "[2-8] bistro-nord/b-2001: tier no tier -> silver (spend 350.00 over the window)"
        );
        let warning = line(serde_json::json!({
            "type": "points.expiring", "tenant": "cafe", "customer": "ann", "account": "cashback",
            "amount": "3.00", "balance": "3.25", "expires_at": "2026-12-11T12:00:00Z"
        }));
        assert_eq!(
            warning,
            "[2-8] cafe/ann: 3.00 cashback of 3.25 expires at 2026-12-11T12:00:00Z"
        );
    }
}
