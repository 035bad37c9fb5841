//! Every metric name and its recording function, in one place, plus the
//! tracing set-up. No other module writes a metric name.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

/// Input records read from Kafka, by topic.
pub const EVENTS_CONSUMED: &str = "accrue_events_consumed_total";
/// Input events applied, by event type.
pub const EVENTS_PROCESSED: &str = "accrue_events_processed_total";
/// Input events that were duplicates of an applied `event_id`.
pub const EVENTS_DUPLICATE: &str = "accrue_events_duplicate_total";
/// Input records sent to the dead-letter topic, by reason.
pub const EVENTS_DEAD_LETTERED: &str = "accrue_events_dead_lettered_total";
/// Records skipped because their offset was already applied (redelivery).
pub const RECORDS_REPLAYED: &str = "accrue_records_already_applied_total";
/// Ledger entries written, by entry type.
pub const LEDGER_ENTRIES: &str = "accrue_ledger_entries_total";
/// Events per committed batch.
pub const BATCH_SIZE: &str = "accrue_batch_events";
/// Seconds to write and fsync one batch.
pub const COMMIT_SECONDS: &str = "accrue_commit_seconds";
/// Outbox records acknowledged by the broker, by topic.
pub const OUTBOX_PUBLISHED: &str = "accrue_outbox_published_total";
/// Outbox records found already published on recovery and not re-sent.
pub const OUTBOX_RECOVERED: &str = "accrue_outbox_already_published_total";
/// Outbox records durable but not yet acknowledged.
pub const OUTBOX_DEPTH: &str = "accrue_outbox_depth";
/// Delivery failures of outbox records.
pub const OUTBOX_ERRORS: &str = "accrue_outbox_publish_errors_total";
/// Input partitions this instance owns.
pub const PARTITIONS_OWNED: &str = "accrue_partitions_owned";
/// Seconds from an event's `occurred_at` to the durable commit of its batch.
pub const EVENT_AGE_SECONDS: &str = "accrue_event_age_seconds";
/// Seconds from reading a record from Kafka to the durable commit of its batch.
pub const PROCESSING_SECONDS: &str = "accrue_processing_seconds";
/// Seconds from handing an outbox record to the producer to its acknowledgement.
pub const PUBLISH_SECONDS: &str = "accrue_outbox_publish_seconds";
/// Records of an owned input partition not yet applied: high watermark minus
/// the next stored offset, by topic and partition.
pub const CONSUMER_LAG: &str = "accrue_consumer_lag";
/// 1 when `/health/ready` would answer 200, else 0.
pub const READY: &str = "accrue_ready";
/// Events applied, by tenant (opt-in: `[metrics] tenant_label`).
pub const TENANT_EVENTS_PROCESSED: &str = "accrue_tenant_events_processed_total";
/// HTTP connections open now.
pub const HTTP_CONNECTIONS_OPEN: &str = "accrue_http_connections_open";
/// HTTP connections closed at once because `[http] max_connections` were open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "accrue_http_connections_refused_total";
/// HTTP connections closed by a timeout, by reason.
pub const HTTP_CONNECTIONS_TIMED_OUT: &str = "accrue_http_connections_timed_out_total";
/// HTTP requests refused for their body, by reason.
pub const HTTP_REQUESTS_REFUSED: &str = "accrue_http_requests_refused_total";
/// Till requests answered, by endpoint and status.
pub const TILL_REQUESTS: &str = "accrue_till_requests_total";
/// Time to answer a till request, by endpoint.
pub const TILL_SECONDS: &str = "accrue_till_request_seconds";
/// Till requests redirected to the instance owning the customer.
pub const TILL_REDIRECTS: &str = "accrue_till_redirects_total";

/// Every metric with its kind and help text, for `# HELP` lines and docs.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        RESTORE_RECORDS,
        Kind::Counter,
        "Changelog records read while restoring partitions (rate() is the restore rate).",
    ),
    (
        RESTORE_REMAINING,
        Kind::Gauge,
        "Changelog records still to read by the restore in progress, by partition (0 when done).",
    ),
    (
        PARTITIONS_RESTORING,
        Kind::Gauge,
        "Partitions being restored from the changelog now; /health/ready is false while above 0.",
    ),
    (
        RESTORE_SECONDS,
        Kind::Histogram,
        "Wall time of each completed partition restore.",
    ),
    (
        RESTORES,
        Kind::Counter,
        "Partition assignments, by how local state was found: result=current (used as is) or restored.",
    ),
    (
        CHANGELOG_RECORDS,
        Kind::Counter,
        "Changelog records acknowledged by the broker (state changes and commit markers).",
    ),
    (
        DIRECTORY_ENTRIES,
        Kind::Gauge,
        "Customers with a phone in this instance's customer directory (all tenants).",
    ),
    (
        COMMANDS_SENT,
        Kind::Counter,
        "Internal commands written to the outbox (referral credits, partner orders), by type.",
    ),
    (
        COMMANDS_APPLIED,
        Kind::Counter,
        "Internal commands applied in their target partition, by type and result (applied, rejected, duplicate).",
    ),
    (
        TIMERS_OVERDUE,
        Kind::Gauge,
        "Seconds the earliest pending timer is past its due time (0 when none is due): timers are late.",
    ),
    (
        TIMERS_PENDING,
        Kind::Gauge,
        "Durable timers (delayed service-point credits) waiting to fire, in owned partitions.",
    ),
    (TIMERS_FIRED, Kind::Counter, "Timers fired: service points credited."),
    (
        TIMER_LAG,
        Kind::Histogram,
        "Seconds between a timer's due time and its firing.",
    ),
    (
        EVENTS_REJECTED,
        Kind::Counter,
        "Valid requests the programs refused (redemption.rejected, ...), by output type and reason.",
    ),
    (
        EVENTS_CONSUMED,
        Kind::Counter,
        "Input records read from Kafka, by topic.",
    ),
    (EVENTS_PROCESSED, Kind::Counter, "Input events applied, by event type."),
    (
        EVENTS_DUPLICATE,
        Kind::Counter,
        "Input events ignored as duplicates of an applied event_id, by event type.",
    ),
    (
        EVENTS_DEAD_LETTERED,
        Kind::Counter,
        "Input records sent to the dead-letter topic, by reason.",
    ),
    (
        RECORDS_REPLAYED,
        Kind::Counter,
        "Records skipped because their offset was applied before (redelivery).",
    ),
    (
        LEDGER_ENTRIES,
        Kind::Counter,
        "Ledger entries written, by account kind.",
    ),
    (BATCH_SIZE, Kind::Histogram, "Events per committed RocksDB batch."),
    (COMMIT_SECONDS, Kind::Histogram, "Seconds to write and fsync one batch."),
    (
        OUTBOX_PUBLISHED,
        Kind::Counter,
        "Outbox records acknowledged by the broker, by topic.",
    ),
    (
        OUTBOX_RECOVERED,
        Kind::Counter,
        "Outbox records found already published on recovery and not re-sent.",
    ),
    (
        OUTBOX_DEPTH,
        Kind::Gauge,
        "Outbox records durable but not yet acknowledged.",
    ),
    (
        OUTBOX_ERRORS,
        Kind::Counter,
        "Delivery failures of outbox records (retried).",
    ),
    (PARTITIONS_OWNED, Kind::Gauge, "Input partitions this instance owns."),
    (
        EVENT_AGE_SECONDS,
        Kind::Histogram,
        "Seconds from occurred_at to durable commit; the oldest event of each batch.",
    ),
    (
        PROCESSING_SECONDS,
        Kind::Histogram,
        "Seconds from consume to durable commit; the first record of each batch.",
    ),
    (
        PUBLISH_SECONDS,
        Kind::Histogram,
        "Seconds from producer hand-off to broker acknowledgement, per outbox record.",
    ),
    (
        CONSUMER_LAG,
        Kind::Gauge,
        "Records not yet applied: high watermark minus next stored offset, by topic and partition.",
    ),
    (READY, Kind::Gauge, "1 when /health/ready answers 200, else 0."),
    (
        TENANT_EVENTS_PROCESSED,
        Kind::Counter,
        "Input events applied, by tenant (opt-in, capped; the rest is tenant=\"other\").",
    ),
    (
        PROCESS_START,
        Kind::Gauge,
        "Start time of the process since the Unix epoch, in seconds.",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1; the version label is the accrue version.",
    ),
    (
        OUTBOX_REPLACED,
        Kind::Counter,
        "Outbox records too large for the producer or refused by the broker for good, published as a truncated dead letter instead, by destination.",
    ),
    (
        OUTBOX_DROPPED,
        Kind::Counter,
        "Outbox records dropped because nothing smaller could stand in for them (changelog records: a restore lacks that value), by destination.",
    ),
    (
        PRODUCE_BATCH_BYTES,
        Kind::Gauge,
        "Bytes of one produce request of the publisher; lowered after the broker refused a request as too large.",
    ),
    (
        CONSUME_LOOP_LAST_POLL,
        Kind::Gauge,
        "Unix time of the consume loop's last poll of Kafka; /health/ready is false when older than [health] poll_stall.",
    ),
    (
        READY_CONDITION,
        Kind::Gauge,
        "Each readiness condition, 1 when it holds: the condition label says why /health/ready is false.",
    ),
    (
        PARTITION_STALLED,
        Kind::Gauge,
        "1 while an owned partition has records waiting and its applied offset has not moved for [health] partition_stall.",
    ),
    (
        BROKER_REACHABLE,
        Kind::Gauge,
        "1 when the consumer sees a broker up (librdkafka statistics), else 0.",
    ),
    (
        CONSUMER_REJOINS,
        Kind::Counter,
        "Times the consumer left the group and joined again with a new consumer, by reason.",
    ),
    (
        PROCESSING_FAILURES,
        Kind::Counter,
        "Attempts at an input record that panicked inside accrue (the batch was dropped and retried).",
    ),
    (
        INPUT_OFFSET_GAPS,
        Kind::Counter,
        "Input offsets skipped between two records of a partition (records the broker did not serve, or transactional commit markers), by topic.",
    ),
    (
        POISON_RECORDS,
        Kind::Counter,
        "Input records dead-lettered as processing_failed after [batch] max_attempts failures.",
    ),
    (
        HTTP_CONNECTIONS_OPEN,
        Kind::Gauge,
        "HTTP connections open now, this scrape's included (at most [http] max_connections).",
    ),
    (
        HTTP_CONNECTIONS_REFUSED,
        Kind::Counter,
        "HTTP connections closed at once because [http] max_connections were open.",
    ),
    (
        HTTP_CONNECTIONS_TIMED_OUT,
        Kind::Counter,
        "HTTP connections closed by a timeout, by reason: header_read, keep_alive or idle.",
    ),
    (
        HTTP_REQUESTS_REFUSED,
        Kind::Counter,
        "HTTP requests refused for their body, by reason: body_too_large (413), body_timeout (408), body_broken (400).",
    ),
    (
        TILL_REQUESTS,
        Kind::Counter,
        "Till requests answered, by endpoint (quote, authorize, release) and HTTP status.",
    ),
    (
        TILL_SECONDS,
        Kind::Histogram,
        "Time to answer a till request, by endpoint; an authorization waits for its batch to be durable.",
    ),
    (
        TILL_REDIRECTS,
        Kind::Counter,
        "Till requests answered 307 with the instance that owns the customer's partition.",
    ),
];

/// Unix time of the consume loop's last poll.
pub const CONSUME_LOOP_LAST_POLL: &str = "accrue_consume_loop_last_poll_timestamp_seconds";
/// Each readiness condition, 1 when it holds.
pub const READY_CONDITION: &str = "accrue_ready_condition";
/// 1 while an owned partition is stuck at its offset with records waiting.
pub const PARTITION_STALLED: &str = "accrue_partition_stalled";
/// 1 when the consumer sees a broker up.
pub const BROKER_REACHABLE: &str = "accrue_broker_reachable";
/// Rejoins of the consumer group, by reason.
pub const CONSUMER_REJOINS: &str = "accrue_consumer_rejoins_total";
/// Record applications that panicked.
pub const PROCESSING_FAILURES: &str = "accrue_processing_failures_total";
/// Records dead-lettered as `processing_failed`.
pub const POISON_RECORDS: &str = "accrue_poison_records_total";
/// Input offsets skipped between two records of a partition.
pub const INPUT_OFFSET_GAPS: &str = "accrue_input_offset_gaps_total";

/// The broker served a partition of `topic` with `missing` offsets
/// skipped (the partition is in the log line; a label would multiply series).
pub fn input_offset_gap(topic: &str, missing: i64) {
    counter!(INPUT_OFFSET_GAPS, "topic" => topic.to_owned()).increment(missing.max(0) as u64);
}

/// The readiness conditions and the consume loop's heartbeat, fresh at
/// every scrape and every `/health/ready`. `since_last_poll` is `None`
/// before the first poll.
pub fn health(conditions: &[(&'static str, bool)], since_last_poll: Option<Duration>) {
    for (condition, ok) in conditions {
        gauge!(READY_CONDITION, "condition" => *condition).set(if *ok { 1.0 } else { 0.0 });
    }
    if let Some(ago) = since_last_poll {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        gauge!(CONSUME_LOOP_LAST_POLL).set(now.saturating_sub(ago).as_secs_f64());
    }
}

/// Partition `partition` of `topic` is stuck (`true`) or moves again.
pub fn partition_stalled(topic: &str, partition: u32, stalled: bool) {
    gauge!(PARTITION_STALLED, "topic" => topic.to_owned(), "partition" => partition.to_string()).set(if stalled {
        1.0
    } else {
        0.0
    });
}

/// Whether the consumer sees a broker up.
pub fn broker_reachable(up: bool) {
    gauge!(BROKER_REACHABLE).set(if up { 1.0 } else { 0.0 });
}

/// Why the consumer rejoins: owning nothing while input waits, or a
/// partition that stayed stuck after it was re-positioned.
pub const REJOIN_REASONS: [&str; 2] = ["no_assignment", "partition_stalled"];

/// The consumer left the group and joined again.
pub fn rejoined(reason: &'static str) {
    counter!(CONSUMER_REJOINS, "reason" => reason).increment(1);
}

/// Applying a record panicked (a bug); it is retried.
pub fn processing_failed() {
    counter!(PROCESSING_FAILURES).increment(1);
}

/// A record was dead-lettered after its attempts were used up.
pub fn poison_record() {
    counter!(POISON_RECORDS).increment(1);
}

/// Start time of the process since the Unix epoch, in seconds.
pub const PROCESS_START: &str = "accrue_process_start_time_seconds";
/// Always 1, labelled with the version.
pub const BUILD_INFO: &str = "accrue_build_info";

/// The tenant label value of tenants beyond the cap, and of unknown tenants.
pub const OTHER_TENANT: &str = "other";

/// Gauges not set for this long disappear from `/metrics` (the lag of a
/// partition that moved to another instance).
const GAUGE_IDLE: Duration = Duration::from_secs(60);

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Point-in-time value.
    Gauge,
    /// Distribution with buckets.
    Histogram,
}

/// Sets up logging: human-readable by default, JSON with `json = true`.
/// `RUST_LOG` filters, defaulting to `info`.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // A second initialisation (tests) is harmless; ignore it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// What the metrics recorder is told at installation.
#[derive(Debug, Clone, Default)]
pub struct MetricsSetup {
    /// Tenants that get their own `tenant` label, in order; `None` turns the
    /// per-tenant counter off.
    pub tenant_labels: Option<Vec<String>>,
}

/// Per-tenant counters, registered once so the hot path allocates nothing.
struct TenantCounters {
    by_tenant: std::collections::HashMap<String, metrics::Counter>,
    other: metrics::Counter,
}

static TENANTS: std::sync::OnceLock<TenantCounters> = std::sync::OnceLock::new();

/// Installs the Prometheus recorder (no HTTP listener: [`crate::http`]
/// serves `/metrics`), describes every metric and registers the labelled
/// counters at zero, so dashboards and `rate()` see them from the start.
///
/// # Errors
/// If a recorder is already installed.
pub fn install_metrics(setup: &MetricsSetup) -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .set_buckets_for_metric(
            Matcher::Full(COMMIT_SECONDS.into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SIZE.into()),
            &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(EVENT_AGE_SECONDS.into()),
            &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(PROCESSING_SECONDS.into()),
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(PUBLISH_SECONDS.into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(TILL_SECONDS.into()),
            &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 10.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(TIMER_LAG.into()),
            &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0],
        )?
        .install_recorder()?;
    describe();
    register(setup);
    Ok(handle)
}

fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
        }
    }
}

/// Registers the bounded label sets at zero.
fn register(setup: &MetricsSetup) {
    for kind in crate::contract::ErrorKind::ALL {
        counter!(EVENTS_DEAD_LETTERED, "reason" => kind.as_str()).absolute(0);
    }
    for event_type in crate::contract::EventType::ALL.map(crate::contract::EventType::as_str) {
        counter!(EVENTS_PROCESSED, "type" => event_type).absolute(0);
        counter!(EVENTS_DUPLICATE, "type" => event_type).absolute(0);
    }
    counter!(RECORDS_REPLAYED).absolute(0);
    for reason in REJOIN_REASONS {
        counter!(CONSUMER_REJOINS, "reason" => reason).absolute(0);
    }
    counter!(PROCESSING_FAILURES).absolute(0);
    counter!(POISON_RECORDS).absolute(0);
    counter!(TIMERS_FIRED).absolute(0);
    gauge!(TIMERS_PENDING).set(0.0);
    gauge!(TIMERS_OVERDUE).set(0.0);
    counter!(OUTBOX_RECOVERED).absolute(0);
    counter!(OUTBOX_ERRORS).absolute(0);
    for destination in crate::outbox::Destination::ALL.map(crate::outbox::Destination::as_str) {
        counter!(OUTBOX_REPLACED, "destination" => destination).absolute(0);
        counter!(OUTBOX_DROPPED, "destination" => destination).absolute(0);
    }
    gauge!(OUTBOX_DEPTH).set(0.0);
    gauge!(PARTITIONS_OWNED).set(0.0);
    gauge!(READY).set(0.0);
    gauge!(HTTP_CONNECTIONS_OPEN).set(0.0);
    counter!(HTTP_CONNECTIONS_REFUSED).absolute(0);
    for reason in HTTP_TIMEOUTS {
        counter!(HTTP_CONNECTIONS_TIMED_OUT, "reason" => reason).absolute(0);
    }
    for reason in HTTP_BODY_REFUSALS {
        counter!(HTTP_REQUESTS_REFUSED, "reason" => reason).absolute(0);
    }
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    gauge!(PROCESS_START).set(start);
    if let Some(tenants) = &setup.tenant_labels {
        let by_tenant = tenants
            .iter()
            .map(|t| (t.clone(), counter!(TENANT_EVENTS_PROCESSED, "tenant" => t.clone())))
            .collect();
        let other = counter!(TENANT_EVENTS_PROCESSED, "tenant" => OTHER_TENANT);
        for c in std::iter::once(&other).chain(std::collections::HashMap::values(&by_tenant)) {
            c.absolute(0);
        }
        // A second installation (tests) keeps the first table.
        let _ = TENANTS.set(TenantCounters { by_tenant, other });
    }
}

/// Event types of the contract, for pre-registering the `type` label.
/// The `tenant` label values for `tenants`: the first `max` ids in sorted
/// order get their own label; the rest share [`OTHER_TENANT`].
pub fn tenant_labels<'a>(tenants: impl IntoIterator<Item = &'a String>, max: usize) -> Vec<String> {
    let mut ids: Vec<String> = tenants.into_iter().cloned().collect();
    ids.sort();
    ids.truncate(max);
    ids
}

/// Records read from `topic`.
pub fn consumed(topic: &str, n: u64) {
    counter!(EVENTS_CONSUMED, "topic" => topic.to_owned()).increment(n);
}

/// One event applied.
pub fn processed(event_type: &'static str) {
    counter!(EVENTS_PROCESSED, "type" => event_type).increment(1);
}

/// One event of `tenant` applied; a no-op unless the per-tenant label is on.
pub fn tenant_processed(tenant: &str) {
    if let Some(counters) = TENANTS.get() {
        counters.by_tenant.get(tenant).unwrap_or(&counters.other).increment(1);
    }
}

/// One duplicate event ignored.
pub fn duplicate(event_type: &'static str) {
    counter!(EVENTS_DUPLICATE, "type" => event_type).increment(1);
}

/// One record dead-lettered for `reason`.
pub fn dead_lettered(reason: &'static str) {
    counter!(EVENTS_DEAD_LETTERED, "reason" => reason).increment(1);
}

/// Records skipped because they were applied before a restart.
pub fn already_applied(n: u64) {
    counter!(RECORDS_REPLAYED).increment(n);
}

/// One ledger entry of `entry_type`.
pub fn ledger_entry(entry_type: &'static str) {
    counter!(LEDGER_ENTRIES, "type" => entry_type).increment(1);
}

/// One batch committed.
pub fn batch_committed(events: usize, took: Duration) {
    histogram!(BATCH_SIZE).record(events as f64);
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

/// A committed batch's latencies: the age of its oldest event since
/// `occurred_at`, and the time since its first record was consumed.
pub fn batch_latency(oldest_occurred_at: Option<time::OffsetDateTime>, consumed: Option<std::time::Instant>) {
    if let Some(at) = oldest_occurred_at {
        // Clock skew can make an event look like it comes from the future.
        let age = (time::OffsetDateTime::now_utc() - at).as_seconds_f64().max(0.0);
        histogram!(EVENT_AGE_SECONDS).record(age);
    }
    if let Some(at) = consumed {
        histogram!(PROCESSING_SECONDS).record(at.elapsed().as_secs_f64());
    }
}

/// Hand-off-to-acknowledgement times of a round of acknowledgements.
pub fn publish_latencies(took: impl Iterator<Item = Duration>) {
    let h = histogram!(PUBLISH_SECONDS);
    for t in took {
        h.record(t.as_secs_f64());
    }
}

/// Lag of one owned input partition.
pub fn consumer_lag(topic: &str, partition: u32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string()).set(lag.max(0) as f64);
}

/// Whether `/health/ready` answers 200.
pub fn ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

/// Outbox records acknowledged on `topic`.
pub fn published(topic: &str, n: u64) {
    counter!(OUTBOX_PUBLISHED, "topic" => topic.to_owned()).increment(n);
}

/// Outbox records skipped on recovery because the broker already had them.
pub fn recovered_published(n: u64) {
    counter!(OUTBOX_RECOVERED).increment(n);
}

/// Current outbox depth (durable, not yet acknowledged).
pub fn outbox_depth(depth: u64) {
    gauge!(OUTBOX_DEPTH).set(depth as f64);
}

/// One delivery failure.
pub fn publish_error() {
    counter!(OUTBOX_ERRORS).increment(1);
}

/// Partitions owned now.
pub fn partitions_owned(n: usize) {
    gauge!(PARTITIONS_OWNED).set(n as f64);
}

/// A librdkafka client-level error. Reaching the end of a partition is
/// reported here too when `enable.partition.eof` is on; it is not an error.
pub fn librdkafka_error(error: &rdkafka::error::KafkaError, reason: &str) {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    if matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    tracing::error!(target: "librdkafka", %error, "librdkafka: {reason}");
}

/// The client context of accrue's plain clients: librdkafka errors go to
/// [`librdkafka_error`].
#[derive(Debug, Default, Clone, Copy)]
pub struct KafkaLog;

impl rdkafka::ClientContext for KafkaLog {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        librdkafka_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaLog {}

/// Durable timers waiting to fire, in owned partitions.
pub const TIMERS_PENDING: &str = "accrue_timers_pending";
/// Timers fired (service points credited).
pub const TIMERS_FIRED: &str = "accrue_timers_fired_total";
/// Seconds between a timer's due time and its firing.
pub const TIMER_LAG: &str = "accrue_timer_lag_seconds";
/// How far past due the earliest pending timer is (0 if none is due).
pub const TIMERS_OVERDUE: &str = "accrue_timers_overdue_seconds";

/// The earliest pending timer is `overdue_ms` past due (negative: not yet due).
pub fn timers_overdue(overdue_ms: i64) {
    gauge!(TIMERS_OVERDUE).set(overdue_ms.max(0) as f64 / 1000.0);
}

/// One timer fired `lag_ms` after it was due.
pub fn timer_fired(lag_ms: i64) {
    counter!(TIMERS_FIRED).increment(1);
    histogram!(TIMER_LAG).record(lag_ms as f64 / 1000.0);
}

/// Timers pending now.
pub fn timers_pending(n: i64) {
    gauge!(TIMERS_PENDING).set(n as f64);
}

/// Customers in the directory.
pub const DIRECTORY_ENTRIES: &str = "accrue_directory_entries";
/// Internal commands written.
pub const COMMANDS_SENT: &str = "accrue_commands_sent_total";
/// Internal commands applied at their target.
pub const COMMANDS_APPLIED: &str = "accrue_commands_applied_total";

/// The directory's size.
pub fn directory_entries(n: usize) {
    gauge!(DIRECTORY_ENTRIES).set(n as f64);
}

/// One internal command written to the outbox.
pub fn command_sent(command_type: &'static str) {
    counter!(COMMANDS_SENT, "type" => command_type).increment(1);
}

/// One internal command handled at its target.
pub fn command_applied(command_type: &'static str, result: &'static str) {
    counter!(COMMANDS_APPLIED, "type" => command_type, "result" => result).increment(1);
}

/// Changelog records read by restores.
pub const RESTORE_RECORDS: &str = "accrue_restore_records_total";
/// Records left to read by the restore of a partition.
pub const RESTORE_REMAINING: &str = "accrue_restore_remaining_records";
/// Partitions restoring now.
pub const PARTITIONS_RESTORING: &str = "accrue_partitions_restoring";
/// Duration of completed restores.
pub const RESTORE_SECONDS: &str = "accrue_restore_seconds";
/// Assignments by outcome.
pub const RESTORES: &str = "accrue_partition_assignments_total";
/// Changelog records acknowledged.
pub const CHANGELOG_RECORDS: &str = "accrue_changelog_records_total";

/// A restore of partition `p` starts, with about `records` to read.
pub fn restore_started(p: u32, records: u64) {
    gauge!(PARTITIONS_RESTORING).increment(1.0);
    gauge!(RESTORE_REMAINING, "partition" => p.to_string()).set(records as f64);
}

/// A restore of partition `p` has `remaining` records left to read.
pub fn restore_progress(p: u32, remaining: u64) {
    gauge!(RESTORE_REMAINING, "partition" => p.to_string()).set(remaining as f64);
}

/// A restore of partition `p` finished after reading `records`.
pub fn restore_finished(p: u32, records: u64, elapsed: Duration) {
    gauge!(PARTITIONS_RESTORING).decrement(1.0);
    gauge!(RESTORE_REMAINING, "partition" => p.to_string()).set(0.0);
    counter!(RESTORE_RECORDS).increment(records);
    histogram!(RESTORE_SECONDS).record(elapsed.as_secs_f64());
}

/// A restore of partition `p` failed.
pub fn restore_failed(p: u32) {
    gauge!(PARTITIONS_RESTORING).decrement(1.0);
    gauge!(RESTORE_REMAINING, "partition" => p.to_string()).set(0.0);
}

/// A partition was assigned; `how` is `current` or `restored`.
pub fn assignment(how: &'static str) {
    counter!(RESTORES, "result" => how).increment(1);
}

/// Changelog records acknowledged.
pub fn changelog_published(n: u64) {
    counter!(CHANGELOG_RECORDS).increment(n);
}

/// Outbox records published as a truncated dead letter instead, by destination.
pub const OUTBOX_REPLACED: &str = "accrue_outbox_replaced_total";
/// Outbox records dropped as too large, by destination.
pub const OUTBOX_DROPPED: &str = "accrue_outbox_dropped_total";
/// The publisher's produce request size.
pub const PRODUCE_BATCH_BYTES: &str = "accrue_outbox_produce_batch_bytes";

/// One outbox record of `destination` replaced by a truncated dead letter.
pub fn outbox_replaced(destination: &'static str) {
    counter!(OUTBOX_REPLACED, "destination" => destination).increment(1);
}

/// One outbox record of `destination` dropped: too large, nothing smaller
/// could stand in.
pub fn outbox_dropped(destination: &'static str) {
    counter!(OUTBOX_DROPPED, "destination" => destination).increment(1);
}

/// The publisher sends produce requests of at most `bytes` (at start, and
/// after the broker refused a request as too large).
pub fn produce_batch_bytes(bytes: u64) {
    gauge!(PRODUCE_BATCH_BYTES).set(bytes as f64);
}

/// Business rejections (`redemption.rejected`, ...), by type and reason.
pub const EVENTS_REJECTED: &str = "accrue_events_rejected_total";

/// One valid request refused by the programs.
pub fn rejected(output_type: &'static str, code: &'static str) {
    counter!(EVENTS_REJECTED, "type" => output_type, "reason" => code).increment(1);
}

/// The `reason` values of [`HTTP_CONNECTIONS_TIMED_OUT`].
pub const HTTP_TIMEOUTS: [&str; 3] = ["header_read", "keep_alive", "idle"];
/// The `reason` values of [`HTTP_REQUESTS_REFUSED`].
pub const HTTP_BODY_REFUSALS: [&str; 3] = ["body_too_large", "body_timeout", "body_broken"];

/// HTTP connections holding a slot now.
pub fn http_connections_open(n: usize) {
    gauge!(HTTP_CONNECTIONS_OPEN).set(n as f64);
}

/// One connection refused at the cap.
pub fn http_connection_refused() {
    counter!(HTTP_CONNECTIONS_REFUSED).increment(1);
}

/// One connection closed by a timeout; `reason` is one of [`HTTP_TIMEOUTS`].
pub fn http_connection_timed_out(reason: &'static str) {
    counter!(HTTP_CONNECTIONS_TIMED_OUT, "reason" => reason).increment(1);
}

/// One request refused for its body; `reason` is one of [`HTTP_BODY_REFUSALS`].
pub fn http_request_refused(reason: &'static str) {
    counter!(HTTP_REQUESTS_REFUSED, "reason" => reason).increment(1);
}

/// A till request answered with `status` after `took`.
pub fn till_request(endpoint: &'static str, status: u16, took: std::time::Duration) {
    counter!(TILL_REQUESTS, "endpoint" => endpoint, "status" => status.to_string()).increment(1);
    histogram!(TILL_SECONDS, "endpoint" => endpoint).record(took.as_secs_f64());
}

/// A till request redirected to the owning instance.
pub fn till_redirected() {
    counter!(TILL_REDIRECTS).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_unique_and_follow_prometheus_conventions() {
        let mut names: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is listed twice");
        for &(name, kind, help) in METRICS {
            assert!(name.starts_with("accrue_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help");
            assert_eq!(
                name.ends_with("_total"),
                kind == Kind::Counter,
                "{name}: only counters end in _total"
            );
        }
    }

    #[test]
    fn tenant_labels_are_capped_in_id_order() {
        let ids: Vec<String> = ["c", "a", "b"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(tenant_labels(&ids, 2), vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(tenant_labels(&ids, 10).len(), 3);
    }
}
