//! Size limits, librdkafka fetch limits and dedupe retention.

use std::time::Duration;

use super::*;

const PROCESSOR: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
[kafka.librdkafka]
OVERRIDES
[topics]
input = ["orders"]
accruals = "accruals"
dead_letter = "dlq"
internal = "internal"
[state]
dir = "state"
STATE
[batch]
BATCH
[tenants]
dir = "tenants"
"#;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
"#;

fn load(overrides: &str, state: &str, batch: &str) -> Result<Config, Vec<String>> {
    let dir = tempfile::tempdir().map_err(|e| vec![e.to_string()])?;
    let text = PROCESSOR
        .replace("OVERRIDES", overrides)
        .replace("STATE", state)
        .replace("BATCH", batch);
    let write = |path: &Path, body: &str| std::fs::write(path, body).map_err(|e| vec![e.to_string()]);
    write(&dir.path().join("accrue.toml"), &text)?;
    std::fs::create_dir(dir.path().join("tenants")).map_err(|e| vec![e.to_string()])?;
    write(&dir.path().join("tenants/cafe.toml"), TENANT)?;
    Config::load(&dir.path().join("accrue.toml")).map_err(|e| e.issues.iter().map(ToString::to_string).collect())
}

fn fields(result: Result<Config, Vec<String>>) -> Vec<String> {
    result.err().unwrap_or_default()
}

#[test]
fn defaults_are_one_mib_inputs_librdkafka_message_size_and_no_retention() {
    let config = load("", "", "");
    let Ok(config) = config else {
        panic!("{:?}", config.err())
    };
    assert_eq!(config.batch.max_input_bytes, 1_048_576);
    assert_eq!(config.kafka.max_message_bytes(), 1_000_000);
    assert_eq!(config.state.dedupe_retention, None);
}

#[test]
fn retention_and_sizes_are_read() {
    let config = load(
        "\"message.max.bytes\" = \"65536\"",
        "dedupe_retention = \"30d\"",
        "max_input_bytes = 4096",
    );
    let Ok(config) = config else {
        panic!("{:?}", config.err())
    };
    assert_eq!(config.batch.max_input_bytes, 4096);
    assert_eq!(config.kafka.max_message_bytes(), 65_536);
    assert_eq!(config.state.dedupe_retention, Some(Duration::from_secs(30 * 86_400)));
}

#[test]
fn out_of_range_limits_are_refused_with_their_field() {
    let found = fields(load(
        "\"message.max.bytes\" = \"2000\"",
        "dedupe_retention = \"10m\"",
        "max_input_bytes = 10",
    ));
    for field in [
        "kafka.librdkafka.message.max.bytes: is 2000",
        "state.dedupe_retention: must be at least",
        "batch.max_input_bytes: must be between",
    ] {
        assert!(found.iter().any(|i| i.contains(field)), "no {field:?} in {found:#?}");
    }
}

#[test]
fn inconsistent_fetch_overrides_are_refused() {
    // librdkafka itself refuses the first and the last; accrue says why
    // before a client is made.
    let found = fields(load(
        "\"message.max.bytes\" = \"2000000\"\n\"fetch.max.bytes\" = \"1500000\"\n\"receive.message.max.bytes\" = \"1500100\"",
        "",
        "",
    ));
    for field in [
        "kafka.librdkafka.fetch.max.bytes: is 1500000, below message.max.bytes (2000000)",
        "kafka.librdkafka.receive.message.max.bytes: is 1500100; it must be at least fetch.max.bytes + 512 (1500512)",
    ] {
        assert!(found.iter().any(|i| i.contains(field)), "no {field:?} in {found:#?}");
    }
    // An input limit above what one fetch may hold could stall a partition.
    let found = fields(load(
        "\"fetch.max.bytes\" = \"1000000\"",
        "",
        "max_input_bytes = 2000000",
    ));
    assert!(
        found
            .iter()
            .any(|i| i.contains("batch.max_input_bytes: is 2000000, above the consumer's fetch.max.bytes (1000000)")),
        "{found:#?}"
    );
    // A smaller consumer queue lowers librdkafka's own fetch.max.bytes.
    let found = fields(load("\"queued.max.messages.kbytes\" = \"512\"", "", ""));
    assert!(
        found
            .iter()
            .any(|i| i.contains("batch.max_input_bytes: is 1048576, above the consumer's fetch.max.bytes (1000000)")),
        "{found:#?}"
    );
    let found = fields(load("\"fetch.max.bytes\" = \"a lot\"", "", ""));
    assert!(
        found
            .iter()
            .any(|i| i.contains("kafka.librdkafka.fetch.max.bytes: \"a lot\" is not a number of bytes")),
        "{found:#?}"
    );
    // Consistent overrides pass.
    let ok = load(
        "\"message.max.bytes\" = \"2000000\"\n\"fetch.max.bytes\" = \"4000000\"\n\"receive.message.max.bytes\" = \"4000512\"",
        "",
        "max_input_bytes = 3000000",
    );
    assert!(ok.is_ok(), "{:?}", ok.err());
}
