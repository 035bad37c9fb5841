//! Oversized records through a real broker: no record stops its partition.
//! An input over the producer's `message.max.bytes` gets a truncated dead
//! letter; an input over `[batch] max_input_bytes` is a `too_large` dead
//! letter; an outbox record too large for the producer is replaced by the
//! publisher instead of being retried forever. Later orders are applied.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{order, produce, producer, read_all, sample, scrape, terminate, wait_until, Env, Record};

/// Adds `line` under the `[section]` header of the test's config.
fn configure(env: &Env, section: &str, line: &str) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let header = format!("[{section}]\n");
    assert!(text.contains(&header), "no {header} in the test config");
    std::fs::write(&env.config, text.replacen(&header, &format!("{header}{line}\n"), 1)).unwrap();
}

/// `count` ordinary orders of customer `c-1` (partition of its key), 1.00 each.
fn orders(prefix: &str, count: usize) -> Vec<(Option<String>, Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                Some("cafe-central:c-1".to_owned()),
                order(&format!("{prefix}-{i}"), "cafe-central", "downtown", "c-1", 100, "AZN"),
            )
        })
        .collect()
}

fn accruals_of(env: &Env, prefix: &str) -> Vec<Record> {
    read_all(&env.accruals, env.partitions)
        .into_iter()
        .filter(|r| {
            r.json()["source_event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .collect()
}

#[test]
fn a_dead_letter_over_the_producer_limit_is_truncated_and_the_partition_moves_on() {
    let env = Env::new("limits-dl", 2);
    // The producer accepts 64 KiB; the broker and the test's producer accept more.
    configure(&env, "kafka.librdkafka", "\"message.max.bytes\" = \"65536\"");
    let big: Vec<u8> = std::iter::repeat_n(b"not json ".as_slice(), 22_222)
        .flatten()
        .copied()
        .collect();
    let mut input = orders("before", 3);
    input.push((Some("cafe-central:c-1".into()), big.clone()));
    input.extend(orders("after", 20));
    produce(&producer(), &env.input, &input);

    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(90), || {
        accruals_of(&env, "after").len() == 20 && !read_all(&env.dead_letter, env.partitions).is_empty()
    });
    assert!(done, "later orders or the dead letter missing\n{}", env.logs());

    let dead = read_all(&env.dead_letter, env.partitions);
    assert_eq!(dead.len(), 1, "one dead letter, published once");
    let letter = &dead[0];
    assert_eq!(letter.header("accrue-error-kind"), Some("malformed_json"));
    assert_eq!(letter.header("accrue-truncated"), Some("true"));
    assert_eq!(
        letter.header("accrue-original-size"),
        Some(big.len().to_string().as_str())
    );
    assert_eq!(letter.header("accrue-source-topic"), Some(env.input.as_str()));
    assert_eq!(letter.header("accrue-source-offset"), Some("3"));
    assert!(letter.header("accrue-source-partition").is_some());
    assert!(
        letter.payload.len() < 65_536 && letter.payload.len() > 32_768,
        "{}",
        letter.payload.len()
    );
    assert!(big.starts_with(&letter.payload), "a prefix of the original value");
    assert_eq!(letter.key.as_deref(), Some("cafe-central:c-1"));
    assert_eq!(accruals_of(&env, "before").len(), 3);
    let last = accruals_of(&env, "after-19");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].json()["balance"], "1.15", "23 orders of 1.00 at 5%");

    // Nothing was refused, retried or left out on the way: the dead letter
    // and its copy in the changelog fit the limit.
    let metrics = scrape(env.http_port);
    assert_eq!(
        sample(&metrics, "accrue_outbox_publish_errors_total", &[]),
        0.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "accrue_outbox_dropped_total", &[]), 0.0);
    assert_eq!(sample(&metrics, "accrue_outbox_replaced_total", &[]), 0.0);
    assert_eq!(
        sample(
            &metrics,
            "accrue_events_dead_lettered_total",
            &["reason=\"malformed_json\""]
        ),
        1.0
    );
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}

#[test]
fn an_input_over_max_input_bytes_is_dead_lettered_as_too_large() {
    let env = Env::new("limits-input", 2);
    configure(&env, "batch", "max_input_bytes = 4096");
    // A valid order, padded past the limit with whitespace JSON allows:
    // applied if it were parsed.
    let mut padded = order("huge", "cafe-central", "downtown", "c-1", 10_000, "AZN");
    padded.extend(std::iter::repeat_n(b' ', 5_000));
    let mut input = orders("before", 2);
    input.push((Some("cafe-central:c-1".into()), padded.clone()));
    input.extend(orders("after", 10));
    produce(&producer(), &env.input, &input);

    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(90), || {
        accruals_of(&env, "after").len() == 10 && !read_all(&env.dead_letter, env.partitions).is_empty()
    });
    assert!(done, "later orders or the dead letter missing\n{}", env.logs());

    let dead = read_all(&env.dead_letter, env.partitions);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("accrue-error-kind"), Some("too_large"));
    assert!(dead[0]
        .header("accrue-error-reason")
        .is_some_and(|r| r.contains(&padded.len().to_string()) && r.contains("max_input_bytes")));
    assert_eq!(
        dead[0].payload, padded,
        "under the producer limit the value is carried whole"
    );
    assert_eq!(dead[0].header("accrue-truncated"), None);
    assert!(
        accruals_of(&env, "huge").is_empty(),
        "the oversized order was not applied"
    );
    let last = accruals_of(&env, "after-9");
    assert_eq!(last.len(), 1);
    assert_eq!(
        last[0].json()["balance"],
        "0.60",
        "12 orders of 1.00 at 5%, not the 100.00 one"
    );
    let metrics = scrape(env.http_port);
    assert_eq!(
        sample(&metrics, "accrue_events_dead_lettered_total", &["reason=\"too_large\""]),
        1.0,
        "{metrics}"
    );
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}

#[test]
fn the_publisher_replaces_an_outbox_record_over_the_producer_limit() {
    // A replay writes a 200 kB dead letter to the outbox while the producer
    // limit is librdkafka's default; the run that publishes it has a 64 KiB
    // limit. Before, the publisher retried it forever and the partition's
    // outbox never drained.
    let env = Env::new("limits-pub", 1);
    let line: String = "not json ".repeat(22_222);
    let file = env.dir.path().join("input.ndjson");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let status = env.accrue(&["replay", file.to_str().unwrap(), "--partitions", "1"]);
    assert!(status.success(), "accrue replay failed");

    configure(&env, "kafka.librdkafka", "\"message.max.bytes\" = \"65536\"");
    produce(&producer(), &env.input, &orders("after", 5));
    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(90), || {
        accruals_of(&env, "after").len() == 5 && !read_all(&env.dead_letter, env.partitions).is_empty()
    });
    assert!(done, "the dead letter or later orders missing\n{}", env.logs());
    let dead = read_all(&env.dead_letter, env.partitions);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("accrue-truncated"), Some("true"));
    assert_eq!(
        dead[0].header("accrue-original-size"),
        Some(line.len().to_string().as_str())
    );
    assert!(line.as_bytes().starts_with(&dead[0].payload));
    assert!(dead[0].payload.len() < 65_536);

    let metrics = scrape(env.http_port);
    assert_eq!(
        sample(
            &metrics,
            "accrue_outbox_replaced_total",
            &["destination=\"dead_letter\""]
        ),
        1.0,
        "{metrics}"
    );
    // The replay's changelog batch holds that outbox record too: too large
    // to publish, it is left out of the changelog, and the rest goes out.
    assert_eq!(
        sample(&metrics, "accrue_outbox_dropped_total", &["destination=\"changelog\""]),
        1.0
    );
    assert_eq!(sample(&metrics, "accrue_outbox_publish_errors_total", &[]), 0.0);
    assert_eq!(sample(&metrics, "accrue_outbox_depth", &[]), 0.0, "the outbox drained");
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}
