//! The processor file's sections besides `[kafka]` and `[http]`: topics,
//! state, batching, health and metrics, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::kafka::RESERVED_LIBRDKAFKA_KEYS;
use super::{HttpConfig, Issues, KafkaConfig, PipelineConfig};

/// `[topics]`: every topic accrue reads or writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Input topics (orders, visits, bookings, commands), co-partitioned and
    /// keyed by `tenant:customer`.
    pub input: Vec<String>,
    /// Output topic of accrual events.
    pub accruals: String,
    /// Dead-letter topic for refused input.
    pub dead_letter: String,
    /// Internal topic for cross-customer commands.
    pub internal: String,
    /// Compacted topic of the customer directory (phones); default
    /// `<internal>.directory`.
    #[serde(default)]
    pub directory: Option<String>,
    /// Compacted changelog of the state store, co-partitioned with the
    /// input; default `<internal>.changelog`.
    #[serde(default)]
    pub changelog: Option<String>,
}

impl TopicsConfig {
    /// Output topics, which must have as many partitions as the input.
    pub fn outputs(&self) -> [&str; 2] {
        [&self.accruals, &self.dead_letter]
    }

    /// The directory topic's name.
    pub fn directory(&self) -> String {
        self.directory
            .clone()
            .unwrap_or_else(|| format!("{}.directory", self.internal))
    }

    /// The changelog topic's name.
    pub fn changelog(&self) -> String {
        self.changelog
            .clone()
            .unwrap_or_else(|| format!("{}.changelog", self.internal))
    }
}

/// `[state]`: the RocksDB state directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the RocksDB database; created if missing. Relative paths
    /// are resolved against the processor config file's directory.
    pub dir: PathBuf,
    /// Write every state change to the changelog topic, so that another
    /// instance can restore a partition (scale-out, a lost disk). Default
    /// true; a single instance that never moves its partitions may turn it
    /// off for throughput (`docs/operations.md`).
    #[serde(default = "default_true")]
    pub changelog: bool,
    /// How long a dedupe record (an applied `event_id`) is kept, by the age
    /// of the event's `occurred_at` (`"30d"`, `"720h"`); absent keeps every
    /// record forever. Events older than the window are dead letters
    /// (`dedupe_expired`), so a duplicate is never applied twice.
    #[serde(default, with = "humantime_serde")]
    pub dedupe_retention: Option<Duration>,
}

fn default_true() -> bool {
    true
}

/// `[batch]`: how many events one durable commit holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one RocksDB WriteBatch.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Longest wait, in milliseconds, for a batch to fill before it is
    /// committed anyway.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Largest input value, in bytes, that is parsed; a larger one is a dead
    /// letter (`too_large`) without being parsed.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: u64,
    /// Attempts at one input record that fails inside accrue (a bug, not bad
    /// input) before it is dead-lettered as `processing_failed` and the
    /// partition moves on (docs/guarantees.md, "Poison records").
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    3
}

impl BatchConfig {
    /// The linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            linger_ms: default_linger_ms(),
            max_input_bytes: default_max_input_bytes(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_max_events() -> usize {
    5_000
}

fn default_linger_ms() -> u64 {
    20
}

fn default_max_input_bytes() -> u64 {
    1 << 20
}

/// Shortest accepted `state.dedupe_retention`.
const MIN_DEDUPE_RETENTION: Duration = Duration::from_secs(3600);

/// `[health]`: the bounds after which a stuck part of the process makes
/// `/health/ready` false (docs/operations.md, "Health").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The consume loop has not polled Kafka for this long: not ready.
    #[serde(default = "default_poll_stall", with = "humantime_serde")]
    pub poll_stall: Duration,
    /// An owned partition with records to read has not moved its applied
    /// offset for this long (and intake is not paused): not ready; accrue
    /// re-positions the partition, and rejoins the group if that does not help.
    #[serde(default = "default_partition_stall", with = "humantime_serde")]
    pub partition_stall: Duration,
    /// The instance owns no partitions while the group's input has records
    /// nobody is consuming, for this long: not ready. After twice this long
    /// it leaves and rejoins the group (a new consumer).
    #[serde(default = "default_unassigned_grace", with = "humantime_serde")]
    pub unassigned_grace: Duration,
    /// The publisher has failed to reach the broker (or had every delivery
    /// fail) for this long: not ready.
    #[serde(default = "default_publish_stall", with = "humantime_serde")]
    pub publish_stall: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            poll_stall: default_poll_stall(),
            partition_stall: default_partition_stall(),
            unassigned_grace: default_unassigned_grace(),
            publish_stall: default_publish_stall(),
        }
    }
}

fn default_poll_stall() -> Duration {
    Duration::from_secs(30)
}

fn default_partition_stall() -> Duration {
    Duration::from_secs(60)
}

fn default_unassigned_grace() -> Duration {
    Duration::from_secs(30)
}

fn default_publish_stall() -> Duration {
    Duration::from_secs(10)
}

/// `[metrics]`: optional, bounded label sets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Count processed events per tenant as well
    /// (`accrue_tenant_events_processed_total{tenant}`).
    #[serde(default)]
    pub tenant_label: bool,
    /// Most tenants with their own label (the first in id order); the rest
    /// are counted as `tenant="other"`.
    #[serde(default = "default_max_tenants")]
    pub max_tenants: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            tenant_label: false,
            max_tenants: default_max_tenants(),
        }
    }
}

fn default_max_tenants() -> usize {
    50
}

/// Largest accepted `metrics.max_tenants`: each label is a time series.
const MAX_TENANT_LABELS: usize = 1_000;

/// `[tenants]`: where the tenant files are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantsSection {
    /// Directory of `*.toml` tenant files, relative to the processor file.
    pub(super) dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProcessorFile {
    pub(super) kafka: KafkaConfig,
    pub(super) topics: TopicsConfig,
    pub(super) state: StateConfig,
    #[serde(default)]
    pub(super) batch: BatchConfig,
    #[serde(default)]
    pub(super) pipeline: PipelineConfig,
    #[serde(default)]
    pub(super) http: HttpConfig,
    #[serde(default)]
    pub(super) metrics: MetricsConfig,
    #[serde(default)]
    pub(super) health: HealthConfig,
    pub(super) tenants: TenantsSection,
}

/// Smallest and largest `batch.max_input_bytes`.
const MIN_INPUT_BYTES: u64 = 1_024;
const MAX_INPUT_BYTES: u64 = 100 * 1024 * 1024;

pub(super) fn validate_processor(file: &ProcessorFile, issues: &mut Issues<'_>) {
    if file.kafka.brokers.trim().is_empty() {
        issues.push("kafka.brokers", "must name at least one host:port");
    }
    if file.kafka.group_id.trim().is_empty() {
        issues.push("kafka.group_id", "must not be empty");
    }
    for key in file.kafka.librdkafka.keys() {
        if RESERVED_LIBRDKAFKA_KEYS.contains(&key.as_str()) {
            issues.push(
                format!("kafka.librdkafka.{key}"),
                "is managed by accrue (exactly-once or co-partitioning depends on it); remove it \
                 (brokers and group id are [kafka] brokers and group_id)",
            );
        }
    }
    if file.topics.input.is_empty() {
        issues.push("topics.input", "must list at least one input topic");
    }
    let mut names: Vec<(&str, String)> = file
        .topics
        .input
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), format!("topics.input[{i}]")))
        .collect();
    names.push((&file.topics.accruals, "topics.accruals".into()));
    names.push((&file.topics.dead_letter, "topics.dead_letter".into()));
    names.push((&file.topics.internal, "topics.internal".into()));
    let directory = file.topics.directory();
    names.push((&directory, "topics.directory".into()));
    let changelog = file.topics.changelog();
    names.push((&changelog, "topics.changelog".into()));
    for (i, (name, field)) in names.iter().enumerate() {
        if !valid_topic_name(name) {
            issues.push(
                field.clone(),
                format!("{name:?} is not a valid Kafka topic name ([a-zA-Z0-9._-], 1 to 249 chars)"),
            );
        }
        if names[..i].iter().any(|(other, _)| other == name) {
            issues.push(
                field.clone(),
                format!("topic {name:?} is used twice; every role needs its own topic"),
            );
        }
    }
    if file.batch.max_events == 0 || file.batch.max_events > 1_000_000 {
        issues.push("batch.max_events", "must be between 1 and 1000000");
    }
    if file.batch.max_attempts == 0 || file.batch.max_attempts > 100 {
        issues.push("batch.max_attempts", "must be between 1 and 100");
    }
    for (field, value, least) in [
        ("health.poll_stall", file.health.poll_stall, Duration::from_secs(5)),
        (
            "health.partition_stall",
            file.health.partition_stall,
            Duration::from_secs(5),
        ),
        (
            "health.unassigned_grace",
            file.health.unassigned_grace,
            Duration::from_secs(5),
        ),
        (
            "health.publish_stall",
            file.health.publish_stall,
            Duration::from_secs(1),
        ),
    ] {
        if value < least {
            issues.push(field, format!("must be at least {} s", least.as_secs()));
        }
    }
    if file.batch.linger_ms > 60_000 {
        issues.push("batch.linger_ms", "must be at most 60000 (one minute)");
    }
    if !(MIN_INPUT_BYTES..=MAX_INPUT_BYTES).contains(&file.batch.max_input_bytes) {
        issues.push(
            "batch.max_input_bytes",
            format!("must be between {MIN_INPUT_BYTES} and {MAX_INPUT_BYTES} bytes"),
        );
    }
    for (field, message) in file.kafka.fetch_problems(file.batch.max_input_bytes) {
        issues.push(field, message);
    }
    if file.state.dedupe_retention.is_some_and(|r| r < MIN_DEDUPE_RETENTION) {
        issues.push(
            "state.dedupe_retention",
            "must be at least \"1h\" (remove it to keep dedupe records forever)",
        );
    }
    if file.metrics.max_tenants == 0 || file.metrics.max_tenants > MAX_TENANT_LABELS {
        issues.push(
            "metrics.max_tenants",
            format!("must be between 1 and {MAX_TENANT_LABELS} (each tenant label is a time series)"),
        );
    }
    if file.state.dir.as_os_str().is_empty() {
        issues.push("state.dir", "must not be empty");
    }
    file.pipeline.validate(issues);
    file.http.validate(issues);
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}
