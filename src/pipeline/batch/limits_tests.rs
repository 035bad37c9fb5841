//! Input size, dead-letter size and dedupe retention limits.

use std::time::Duration;

use super::*;
use crate::state::MemoryStore;

fn setup(limits: Limits) -> (Arc<MemoryStore>, Processor) {
    let (store, mut processor) = super::tests::setup();
    processor.set_limits(limits);
    (store, processor)
}

fn order(event_id: &str, occurred_at: &str, padding: usize) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{event_id}","type":"order.paid","tenant":"cafe","branch":"downtown",
        "customer":"c1","occurred_at":"{occurred_at}","body":{{"order_id":"{pad}","sale_type":"dine_in",
        "lines":[{{"product":"p","category":"food","quantity":"1","amount":"10.00"}}],
        "payments":[{{"method":"card","amount":"10.00"}}],"total":"10.00","currency":"AZN"}}}}"#,
        pad = "o".repeat(padding.max(1))
    )
}

fn record(offset: i64, payload: &str) -> InputRecord<'_> {
    InputRecord {
        topic: "orders",
        partition: 0,
        offset,
        key: Some(b"cafe:c1"),
        payload: Some(payload.as_bytes()),
    }
}

fn outbox(store: &MemoryStore) -> Vec<OutboxRecord> {
    store
        .scan(Family::Outbox, &keys::partition_prefix(0), &keys::outbox(0, 0), 1000)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| crate::outbox::load(store, 0, keys::parse_outbox(&k)?.1, &v).ok())
        .collect()
}

fn header<'a>(record: &'a OutboxRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn now_rfc3339(offset: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + offset)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[test]
fn an_input_over_max_input_bytes_is_a_dead_letter_and_not_parsed() {
    let (store, mut processor) = setup(Limits {
        max_input_bytes: 2_000,
        ..Limits::default()
    });
    let mut batch = Batch::default();
    // Not even JSON: the size rule comes first.
    let garbage = "x".repeat(2_001);
    let big = order("e-big", "2026-11-23T12:00:00Z", 3_000);
    let small = order("e-small", "2026-11-23T12:00:00Z", 10);
    assert_eq!(
        processor.apply(&mut batch, &record(0, &garbage)).ok(),
        Some(Applied::DeadLettered(ErrorKind::TooLarge))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(1, &big)).ok(),
        Some(Applied::DeadLettered(ErrorKind::TooLarge))
    );
    // The same rule holds for input the caller decoded (replay).
    assert_eq!(
        processor
            .apply_decoded(&mut batch, &record(2, &big), contract::decode(big.as_bytes()))
            .ok(),
        Some(Applied::DeadLettered(ErrorKind::TooLarge))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(3, &small)).ok(),
        Some(Applied::Processed(1))
    );
    assert!(processor.commit(batch).is_ok());
    let out = outbox(&store);
    let dead: Vec<_> = out
        .iter()
        .filter(|r| r.destination == Destination::DeadLetter)
        .collect();
    assert_eq!(dead.len(), 3);
    assert_eq!(header(dead[0], contract::HEADER_ERROR_KIND), Some("too_large"));
    assert!(header(dead[0], contract::HEADER_ERROR_REASON).is_some_and(|r| r.contains("2001 bytes")));
    // Under the producer limit: the value is carried whole.
    assert_eq!(dead[1].payload, big.as_bytes());
    assert_eq!(header(dead[1], contract::HEADER_TRUNCATED), None);
}

#[test]
fn a_dead_letter_over_the_producer_limit_carries_a_truncated_copy() {
    let (store, mut processor) = setup(Limits {
        max_message_bytes: 65_536,
        ..Limits::default()
    });
    let mut batch = Batch::default();
    let mut payload = "{".to_owned();
    payload.push_str(&"é".repeat(100_000));
    assert_eq!(
        processor.apply(&mut batch, &record(41, &payload)).ok(),
        Some(Applied::DeadLettered(ErrorKind::MalformedJson))
    );
    assert!(processor.commit(batch).is_ok());
    let out = outbox(&store);
    assert_eq!(out.len(), 1);
    let letter = &out[0];
    assert!(letter.payload.len() < 65_536 && letter.payload.len() > 60_000);
    assert!(payload.as_bytes().starts_with(&letter.payload));
    assert_eq!(
        header(letter, contract::HEADER_ORIGINAL_SIZE),
        Some(payload.len().to_string().as_str())
    );
    assert_eq!(header(letter, contract::HEADER_TRUNCATED), Some("true"));
    assert_eq!(header(letter, contract::HEADER_SOURCE_OFFSET), Some("41"));
    assert_eq!(header(letter, contract::HEADER_SOURCE_TOPIC), Some("orders"));
    assert_eq!(header(letter, contract::HEADER_ERROR_KIND), Some("malformed_json"));
}

#[test]
fn dedupe_records_carry_occurred_at_and_old_records_still_count() {
    let (store, mut processor) = setup(Limits::default());
    let mut batch = Batch::default();
    let first = order("e1", "2026-11-23T12:00:00Z", 1);
    assert_eq!(
        processor.apply(&mut batch, &record(0, &first)).ok(),
        Some(Applied::Processed(1))
    );
    assert!(processor.commit(batch).is_ok());
    let stored = store
        .get(Family::Dedupe, &keys::dedupe(0, "cafe", "e1"))
        .ok()
        .flatten()
        .and_then(|v| keys::DedupeValue::decode(&v));
    let at = time::macros::datetime!(2026-11-23 12:00 UTC);
    assert_eq!(
        stored,
        Some(keys::DedupeValue {
            first_seq: 0,
            occurred_ms: Some(unix_ms(at)),
        })
    );

    // A record written by an earlier version (8 bytes) still marks its
    // event as applied.
    let mut set = WriteSet::new();
    set.put(
        Family::Dedupe,
        keys::dedupe(0, "cafe", "e-old"),
        keys::encode_u64(u64::MAX).to_vec(),
    );
    assert!(store.write(&set, Durability::Synced).is_ok());
    let mut batch = Batch::default();
    let old = order("e-old", "2026-11-23T12:00:00Z", 1);
    assert_eq!(
        processor.apply(&mut batch, &record(1, &old)).ok(),
        Some(Applied::Duplicate)
    );
}

#[test]
fn events_older_than_the_dedupe_retention_are_dead_letters() {
    let (store, mut processor) = setup(Limits {
        dedupe_retention: Some(Duration::from_secs(30 * 86_400)),
        ..Limits::default()
    });
    let mut batch = Batch::default();
    let old = order("e-old", &now_rfc3339(time::Duration::days(-31)), 1);
    let recent = order("e-recent", &now_rfc3339(time::Duration::days(-29)), 1);
    let future = order("e-future", &now_rfc3339(time::Duration::days(2)), 1);
    assert_eq!(
        processor.apply(&mut batch, &record(0, &old)).ok(),
        Some(Applied::DeadLettered(ErrorKind::DedupeExpired))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(1, &recent)).ok(),
        Some(Applied::Processed(1))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(2, &future)).ok(),
        Some(Applied::Processed(1))
    );
    assert!(processor.commit(batch).is_ok());
    assert!(store
        .get(Family::Dedupe, &keys::dedupe(0, "cafe", "e-old"))
        .ok()
        .flatten()
        .is_none());
    let dead: Vec<_> = outbox(&store)
        .into_iter()
        .filter(|r| r.destination == Destination::DeadLetter)
        .collect();
    assert_eq!(dead.len(), 1);
    assert!(header(&dead[0], contract::HEADER_ERROR_REASON).is_some_and(|r| r.contains("dedupe_retention (30days)")));

    // Without retention, the same old event is applied.
    let (_, mut keep_all) = setup(Limits::default());
    let mut batch = Batch::default();
    assert_eq!(
        keep_all.apply(&mut batch, &record(0, &old)).ok(),
        Some(Applied::Processed(1))
    );
}
