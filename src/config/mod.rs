//! Typed configuration: the processor file and one file per tenant, loaded
//! from TOML, validated at start-up, and turned into librdkafka settings in
//! exactly one place ([`KafkaConfig::client_config`]).
//!
//! Every error names the file and the field, so `accrue check-config` can
//! point an operator straight at the line to fix.

mod http;
mod pipeline;
mod tenant;

pub use http::HttpConfig;
pub use pipeline::PipelineConfig;

pub use tenant::{
    deposit_at, BookingsConfig, BranchConfig, CustomerProfile, GiftCardConfig, GroupRule, NegativeBalance,
    PartnerConditions, PartnerConfig, ProgramConfig, ProgramStatus, ProgramType, RedemptionConfig, ReferralConfig,
    ReferralReward, RefundConfig, SalePair, SalesConfig, TenantConfig, BUILTIN_ACCOUNTS, DEPOSIT_AT,
};

/// The conditions `place` grants customers of `home`, if their partnership
/// is active: both tenants sent an agreement and both accepted the other's.
/// Anything less (one direction only, a tenant not configured) is `None`.
pub fn partnership<'a>(
    tenants: &'a HashMap<String, TenantConfig>,
    place: &str,
    home: &str,
) -> Option<&'a PartnerConditions> {
    if place == home {
        return None;
    }
    let here = tenants.get(place)?.partners.get(home)?;
    let there = tenants.get(home)?.partners.get(place)?;
    if here.sent && there.sent && there.accepted.is_some() {
        here.accepted.as_ref()
    } else {
        None
    }
}

/// Agreements that are not (yet) active, as sentences for `check-config`:
/// one per pair of tenants where either side names the other, whichever
/// side that is.
pub fn pending_partnerships(tenants: &HashMap<String, TenantConfig>) -> Vec<String> {
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (id, tenant) in tenants {
        for partner in tenant.partners.keys() {
            match id.as_str().cmp(partner.as_str()) {
                std::cmp::Ordering::Less => pairs.insert((id, partner)),
                std::cmp::Ordering::Greater => pairs.insert((partner, id)),
                // Refused by validation: a tenant cannot be its own partner.
                std::cmp::Ordering::Equal => false,
            };
        }
    }
    pairs
        .into_iter()
        .filter(|(a, b)| partnership(tenants, a, b).is_none())
        .map(|(a, b)| {
            format!(
                "partnership {a} <-> {b} is not active: both tenants must set sent = true and an \
                 [partners.<other>.accepted] table"
            )
        })
        .collect()
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// One configuration problem, located by file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file the problem is in.
    pub file: PathBuf,
    /// The dotted field path, empty when the whole file is at fault.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

/// Configuration could not be loaded; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

/// Collects issues for one file while validating it.
pub(crate) struct Issues<'a> {
    file: &'a Path,
    found: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Issues {
            file,
            found: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.found.push(ConfigIssue {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_vec(self) -> Vec<ConfigIssue> {
        self.found
    }
}

/// The whole configuration: processor settings and every tenant.
#[derive(Debug, Clone)]
pub struct Config {
    /// The processor file this was loaded from.
    pub path: PathBuf,
    /// Kafka connection and librdkafka overrides.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Where state lives.
    pub state: StateConfig,
    /// Batching of commits.
    pub batch: BatchConfig,
    /// The worker threads that apply partitions.
    pub pipeline: PipelineConfig,
    /// The HTTP port.
    pub http: HttpConfig,
    /// Optional metric labels.
    pub metrics: MetricsConfig,
    /// When the process stops counting as ready, and when it rejoins.
    pub health: HealthConfig,
    /// Tenants by id.
    pub tenants: HashMap<String, TenantConfig>,
}

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
struct TenantsSection {
    /// Directory of `*.toml` tenant files, relative to the processor file.
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessorFile {
    kafka: KafkaConfig,
    topics: TopicsConfig,
    state: StateConfig,
    #[serde(default)]
    batch: BatchConfig,
    #[serde(default)]
    pipeline: PipelineConfig,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    health: HealthConfig,
    tenants: TenantsSection,
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
    fn fetch_problems(&self, max_input_bytes: u64) -> Vec<(String, String)> {
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
/// Smallest and largest `batch.max_input_bytes`.
const MIN_INPUT_BYTES: u64 = 1_024;
const MAX_INPUT_BYTES: u64 = 100 * 1024 * 1024;

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
const RESERVED_LIBRDKAFKA_KEYS: [&str; 5] = [
    "group.id",
    "bootstrap.servers",
    "enable.auto.offset.store",
    "enable.idempotence",
    "partitioner",
];

impl Config {
    /// Loads and validates the processor file at `path` and the tenant files
    /// it points to.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem found, each with file and field.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            issues: vec![ConfigIssue {
                file: path.to_path_buf(),
                field: String::new(),
                message: format!("cannot read the file: {err}"),
            }],
        })?;
        let file: ProcessorFile = parse_toml(path, &text).map_err(|issue| ConfigError { issues: vec![issue] })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut issues = Issues::new(path);
        validate_processor(&file, &mut issues);
        let mut all = issues.into_vec();

        let tenants_dir = base.join(&file.tenants.dir);
        let mut tenants = HashMap::new();
        let mut paths: HashMap<String, PathBuf> = HashMap::new();
        match tenant_files(&tenants_dir) {
            Ok(files) if files.is_empty() => all.push(ConfigIssue {
                file: path.to_path_buf(),
                field: "tenants.dir".into(),
                message: format!("no *.toml tenant files in {}", tenants_dir.display()),
            }),
            Ok(files) => {
                let mut seen: HashMap<String, PathBuf> = HashMap::new();
                let mut token_owner: HashMap<String, String> = HashMap::new();
                for tenant_path in files {
                    match tenant::load(&tenant_path) {
                        Ok(tenant) => {
                            for (i, hash) in tenant.api_tokens_sha256.iter().enumerate() {
                                match token_owner.get(hash) {
                                    Some(owner) if *owner != tenant.id => all.push(ConfigIssue {
                                        file: tenant_path.clone(),
                                        field: format!("api_tokens_sha256[{i}]"),
                                        message: format!(
                                            "this token is also a token of tenant {owner:?}; a token must map to one tenant"
                                        ),
                                    }),
                                    _ => {
                                        token_owner.insert(hash.clone(), tenant.id.clone());
                                    }
                                }
                            }
                            if let Some(other) = seen.get(&tenant.id) {
                                all.push(ConfigIssue {
                                    file: tenant_path.clone(),
                                    field: "id".into(),
                                    message: format!("tenant {:?} is also defined in {}", tenant.id, other.display()),
                                });
                            } else {
                                seen.insert(tenant.id.clone(), tenant_path.clone());
                                paths.insert(tenant.id.clone(), tenant_path.clone());
                                tenants.insert(tenant.id.clone(), tenant);
                            }
                        }
                        Err(mut found) => all.append(&mut found),
                    }
                }
            }
            Err(err) => all.push(ConfigIssue {
                file: path.to_path_buf(),
                field: "tenants.dir".into(),
                message: format!("cannot list {}: {err}", tenants_dir.display()),
            }),
        }
        for (id, tenant) in &tenants {
            for partner in tenant.partners.keys() {
                if let Some(other) = tenants.get(partner) {
                    if other.currency != tenant.currency {
                        all.push(ConfigIssue {
                            file: paths.get(id).cloned().unwrap_or_else(|| tenants_dir.clone()),
                            field: format!("partners.{partner}"),
                            message: format!(
                                "{partner:?} keeps its balances in {}, this tenant in {}: a shared deposit needs one currency",
                                other.currency, tenant.currency
                            ),
                        });
                    }
                }
                if !tenants.contains_key(partner) && partner != id {
                    all.push(ConfigIssue {
                        file: paths.get(id).cloned().unwrap_or_else(|| tenants_dir.clone()),
                        field: format!("partners.{partner}"),
                        message: format!(
                            "{partner:?} is not a configured tenant; both partners must be served by this deployment"
                        ),
                    });
                }
            }
        }
        if !all.is_empty() {
            return Err(ConfigError { issues: all });
        }
        let state_dir = if file.state.dir.is_absolute() {
            file.state.dir.clone()
        } else {
            base.join(&file.state.dir)
        };
        Ok(Config {
            path: path.to_path_buf(),
            kafka: file.kafka,
            topics: file.topics,
            state: StateConfig {
                dir: state_dir,
                changelog: file.state.changelog,
                dedupe_retention: file.state.dedupe_retention,
            },
            batch: file.batch,
            pipeline: file.pipeline,
            http: file.http,
            metrics: file.metrics,
            health: file.health,
            tenants,
        })
    }
}

fn tenant_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses TOML into `T`, reporting the failing field's dotted path.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigIssue> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_owned();
        let location = inner
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigIssue {
            file: path.to_path_buf(),
            field: if field == "." { String::new() } else { field },
            message: format!("{message}{location}"),
        }
    })
}

fn validate_processor(file: &ProcessorFile, issues: &mut Issues<'_>) {
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod limits_tests;
