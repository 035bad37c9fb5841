//! Every metric name and its recording function, in one place, plus the
//! tracing set-up. No other module writes a metric name.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;

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

/// Installs the Prometheus recorder and serves `/metrics` on `listen`.
///
/// Must be called inside a tokio runtime.
///
/// # Errors
/// If the address cannot be bound or a recorder is already installed.
pub fn install_metrics(listen: SocketAddr) -> Result<(), metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COMMIT_SECONDS.into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.into()),
            &[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 50000.0],
        )?
        .install()
}

/// Records read from `topic`.
pub fn consumed(topic: &str, n: u64) {
    counter!(EVENTS_CONSUMED, "topic" => topic.to_owned()).increment(n);
}

/// One event applied.
pub fn processed(event_type: &'static str) {
    counter!(EVENTS_PROCESSED, "type" => event_type).increment(1);
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
    if matches!(error, rdkafka::error::KafkaError::PartitionEOF(_)) {
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

/// Business rejections (`redemption.rejected`, ...), by type and reason.
pub const EVENTS_REJECTED: &str = "accrue_events_rejected_total";

/// One valid request refused by the programs.
pub fn rejected(output_type: &'static str, code: &'static str) {
    counter!(EVENTS_REJECTED, "type" => output_type, "reason" => code).increment(1);
}
