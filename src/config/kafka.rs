//! `[kafka]` and the single translation of accrue's settings into
//! librdkafka's ([`KafkaConfig::client_config`]), with the limits derived
//! from it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// `[kafka]`: how to reach the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group id of the processors.
    pub group_id: String,
    /// Passed to librdkafka as they are, for every client, after accrue's own
    /// settings, so an operator can override anything (security, timeouts).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// Which client a librdkafka configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// The processor's group consumer.
    Consumer,
    /// The outbox publisher (idempotent).
    Producer,
    /// A reader of output tails, with no group membership.
    TailReader,
    /// Admin and ad-hoc tools.
    Admin,
}

impl KafkaConfig {
    /// The single translation of accrue's settings into librdkafka's.
    ///
    /// accrue's own choices come first; the `[kafka.librdkafka]` table is
    /// applied last and wins.
    pub fn client_config(&self, role: ClientRole) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        match role {
            ClientRole::Consumer => {
                cfg.set("group.id", &self.group_id)
                    // RocksDB holds the real offsets; Kafka's are advisory.
                    .set("enable.auto.commit", "true")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    // Scale-out: a rebalance moves only the partitions that
                    // change owner; the others keep working (docs/operations.md).
                    .set("partition.assignment.strategy", "cooperative-sticky")
                    .set("enable.partition.eof", "false")
                    // High watermarks for the lag metric (ConsumerContext::stats).
                    .set("statistics.interval.ms", "5000");
            }
            ClientRole::Producer => {
                cfg.set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("linger.ms", "5")
                    .set("compression.type", "lz4")
                    // Full batches go out without waiting for linger.ms; the
                    // publisher hands over one at a time (`producer_batch`).
                    .set("batch.num.messages", PRODUCER_BATCH_MESSAGES.to_string());
            }
            ClientRole::TailReader => {
                cfg.set("group.id", format!("{}.tail-reader", self.group_id))
                    .set("enable.auto.commit", "false")
                    .set("enable.partition.eof", "true");
            }
            ClientRole::Admin => {}
        }
        for (key, value) in &self.librdkafka {
            // The few keys exactly-once depends on are refused in `load`
            // (RESERVED_LIBRDKAFKA_KEYS); everything else is the operator's.
            // One table serves every client, so a setting that only applies
            // to the other kind of client is left out instead of making
            // librdkafka warn at every start.
            if !role.ignores(key) {
                cfg.set(key, value);
            }
        }
        cfg
    }

    /// How long the publisher may go on publishing after the consume loop
    /// last confirmed its group membership: half of `session.timeout.ms`
    /// (librdkafka's default 45 s unless overridden). A member paused longer
    /// than the session timeout has been expelled and must not publish.
    pub fn publish_lease(&self) -> Duration {
        let session_ms = self
            .librdkafka
            .get("session.timeout.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(45_000);
        Duration::from_millis((session_ms / 2).max(1_000))
    }

    /// The publisher's produce batch: librdkafka's `batch.num.messages` and
    /// the smaller of `batch.size` and `message.max.bytes`, as configured
    /// (accrue's defaults unless `[kafka.librdkafka]` overrides them).
    ///
    /// An idempotent librdkafka producer keeps one produce request in flight
    /// per partition, and while records wait behind it its broker thread
    /// polls without sleeping. The publisher therefore hands librdkafka one
    /// batch of a partition at a time, so nothing waits.
    pub fn producer_batch(&self) -> ProducerBatch {
        let cfg = self.client_config(ClientRole::Producer);
        let get = |key: &str, default: u64| {
            cfg.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        ProducerBatch {
            messages: get("batch.num.messages", PRODUCER_BATCH_MESSAGES),
            bytes: get("batch.size", LIBRDKAFKA_BATCH_SIZE).min(get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES)),
        }
    }
}

impl KafkaConfig {
    /// The producer's `message.max.bytes`: the largest record accrue may
    /// publish (librdkafka's default unless `[kafka.librdkafka]` sets it).
    /// Dead letters are cut to fit it.
    pub fn max_message_bytes(&self) -> u64 {
        self.librdkafka
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
    }

    /// The fetch limits the consumers run with, as librdkafka derives them
    /// from the overrides; every problem that would make a record the
    /// producer may write unreadable, or that librdkafka refuses, as
    /// `(field, message)`.
    pub(super) fn fetch_problems(&self, max_input_bytes: u64) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut get = |key: &str| -> Option<u64> {
            let raw = self.librdkafka.get(key)?;
            raw.trim()
                .parse::<u64>()
                .map_err(|_| {
                    problems.push((
                        format!("kafka.librdkafka.{key}"),
                        format!("{raw:?} is not a number of bytes; write it as a string of digits, e.g. \"1000000\""),
                    ));
                })
                .ok()
        };
        let message_max = get("message.max.bytes");
        let fetch_max = get("fetch.max.bytes");
        let receive_max = get("receive.message.max.bytes");
        let queued_kb = get("queued.max.messages.kbytes");
        let message_max_or_default = message_max.unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        if message_max_or_default < MIN_MESSAGE_MAX_BYTES {
            problems.push((
                "kafka.librdkafka.message.max.bytes".into(),
                format!(
                    "is {message_max_or_default}; it must be at least {MIN_MESSAGE_MAX_BYTES}, so a dead letter's \
                     headers and an excerpt of its value fit one record"
                ),
            ));
        }
        // librdkafka's rule: unless set, fetch.max.bytes is its default
        // capped by the consumer queue, and raised to message.max.bytes.
        let effective_fetch = fetch_max.unwrap_or_else(|| {
            LIBRDKAFKA_FETCH_MAX_BYTES
                .min(queued_kb.unwrap_or(LIBRDKAFKA_QUEUED_MAX_KBYTES).saturating_mul(1024))
                .max(message_max_or_default)
        });
        if let Some(fetch) = fetch_max {
            if fetch < message_max_or_default {
                problems.push((
                    "kafka.librdkafka.fetch.max.bytes".into(),
                    format!(
                        "is {fetch}, below message.max.bytes ({message_max_or_default}): the tail reader could not \
                         read back what the publisher writes; raise it or remove it"
                    ),
                ));
            }
        }
        if effective_fetch < max_input_bytes {
            problems.push((
                "batch.max_input_bytes".into(),
                format!(
                    "is {max_input_bytes}, above the consumer's fetch.max.bytes ({effective_fetch}): an input \
                     between the two could not be fetched and would stall its partition; lower max_input_bytes \
                     or raise kafka.librdkafka.fetch.max.bytes"
                ),
            ));
        }
        if let Some(receive) = receive_max {
            if receive < effective_fetch.saturating_add(512) {
                problems.push((
                    "kafka.librdkafka.receive.message.max.bytes".into(),
                    format!(
                        "is {receive}; it must be at least fetch.max.bytes + 512 ({}), or a fetch response \
                         holding a large record is refused and its partition stalls; raise it or remove it",
                        effective_fetch.saturating_add(512)
                    ),
                ));
            }
        }
        problems
    }
}

/// The size of one produce request of the publisher; see
/// [`KafkaConfig::producer_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Most records.
    pub messages: u64,
    /// Most bytes, as librdkafka counts them (uncompressed).
    pub bytes: u64,
}

/// librdkafka's defaults for `batch.size` and `message.max.bytes`.
const LIBRDKAFKA_BATCH_SIZE: u64 = 1_000_000;
const LIBRDKAFKA_MESSAGE_MAX_BYTES: u64 = 1_000_000;
/// librdkafka's defaults for `fetch.max.bytes` and `queued.max.messages.kbytes`.
const LIBRDKAFKA_FETCH_MAX_BYTES: u64 = 50 * 1024 * 1024;
const LIBRDKAFKA_QUEUED_MAX_KBYTES: u64 = 65_536;
/// Smallest `message.max.bytes` accrue accepts: a dead letter's headers
/// (reason, source coordinates, sizes) and an excerpt must fit one record.
pub const MIN_MESSAGE_MAX_BYTES: u64 = 16_384;

/// accrue's default `batch.num.messages` for the publisher's producer.
const PRODUCER_BATCH_MESSAGES: u64 = 1_000;

/// librdkafka properties only consumers read.
const CONSUMER_ONLY: [&str; 13] = [
    "fetch.",
    // An alias of fetch.message.max.bytes.
    "max.partition.fetch.bytes",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "partition.assignment.strategy",
    "queued.",
    "group.",
];

/// librdkafka properties only producers read.
const PRODUCER_ONLY: [&str; 9] = [
    "linger.ms",
    "acks",
    "request.required.acks",
    "compression.",
    "batch.",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queue.buffering.",
    "retries",
];

impl ClientRole {
    fn ignores(self, key: &str) -> bool {
        let matches = |list: &[&str]| {
            list.iter().any(|p| {
                if p.ends_with('.') {
                    key.starts_with(p)
                } else {
                    key == *p
                }
            })
        };
        match self {
            ClientRole::Consumer | ClientRole::TailReader => matches(&PRODUCER_ONLY),
            ClientRole::Producer => matches(&CONSUMER_ONLY),
            ClientRole::Admin => matches(&PRODUCER_ONLY) || matches(&CONSUMER_ONLY),
        }
    }
}

/// librdkafka settings an operator may not override.
pub(super) const RESERVED_LIBRDKAFKA_KEYS: [&str; 5] = [
    "group.id",
    "bootstrap.servers",
    "enable.auto.offset.store",
    "enable.idempotence",
    "partitioner",
];
