//! The welcome and birthday bonuses through the processor and its store:
//! what the profile keeps about them is written with the credit, so a
//! replay, a re-upsert or a later order never credits them twice.

use super::*;
use crate::state::MemoryStore;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
timezone = "Europe/Kyiv"
[branches.downtown]
[welcome]
account = "bonus"
amount = "200"
[birthday]
account = "bonus"
amount = "100"
[[campaigns]]
id = "double"
multiplier = "2"
bonus = { account = "bonus", amount = "5" }
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
"#;

fn setup() -> (Arc<MemoryStore>, Processor) {
    let tenant: TenantConfig = match toml::from_str(TENANT) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    };
    let store = Arc::new(MemoryStore::default());
    let tenants = Arc::new(Tenants::from([("cafe".to_owned(), tenant)]));
    let processor = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
    (store, processor)
}

fn upsert(event_id: &str, registered: bool) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{event_id}","type":"customer.upserted","tenant":"cafe","branch":"downtown",
        "customer":"c1","occurred_at":"2026-06-01T12:00:00Z","body":{{"registered":{registered},
        "marketing_consent":false,"birthday":"1990-06-15"}}}}"#
    )
}

fn order(event_id: &str, occurred_at: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{event_id}","type":"order.paid","tenant":"cafe","branch":"downtown",
        "customer":"c1","occurred_at":"{occurred_at}","body":{{"order_id":"o","sale_type":"dine_in",
        "lines":[{{"product":"p","category":"food","quantity":"1","amount":"80.00"}}],
        "payments":[{{"method":"card","amount":"80.00"}}],"total":"80.00","currency":"AZN"}}}}"#
    )
}

fn record(offset: i64, payload: &str) -> InputRecord<'_> {
    InputRecord {
        topic: "commands",
        partition: 3,
        offset,
        key: Some(b"cafe:c1"),
        payload: Some(payload.as_bytes()),
    }
}

fn balance(store: &MemoryStore, account: &str) -> Option<Decimal> {
    store
        .get(Family::Balances, &keys::balance(3, "cafe", "c1", account))
        .ok()
        .flatten()
        .and_then(|raw| keys::decode_decimal(&raw))
}

/// The `entry_type` of every accrual event in the outbox, in order.
fn published(store: &MemoryStore) -> Vec<String> {
    store
        .scan(Family::Outbox, &keys::partition_prefix(3), &keys::outbox(3, 0), 1000)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| crate::outbox::load(store, 3, keys::parse_outbox(&k)?.1, &v).ok())
        .filter_map(|r| serde_json::from_slice::<AccrualEvent>(&r.payload).ok())
        .map(|e| e.entry_type)
        .collect()
}

/// Applies `payloads` from `offset` on in one batch and commits it.
fn apply_all(processor: &mut Processor, offset: i64, payloads: &[&str]) -> Vec<Option<Applied>> {
    let mut batch = Batch::default();
    let applied = payloads
        .iter()
        .zip(offset..)
        .map(|(p, o)| processor.apply(&mut batch, &record(o, p)).ok())
        .collect();
    assert!(processor.commit(batch).is_ok());
    applied
}

#[test]
fn a_welcome_bonus_lands_on_the_balance_exactly_once() {
    let (store, mut processor) = setup();
    let first = upsert("u1", true);
    // The same upsert twice in a batch, then again in the next one.
    assert_eq!(
        apply_all(&mut processor, 0, &[&first, &first]),
        vec![Some(Applied::Processed(1)), Some(Applied::Duplicate)]
    );
    assert_eq!(apply_all(&mut processor, 2, &[&first]), vec![Some(Applied::Duplicate)]);
    // A later upsert of the registered customer, and leaving and coming back.
    let (again, left, back) = (upsert("u2", true), upsert("u3", false), upsert("u4", true));
    assert_eq!(
        apply_all(&mut processor, 3, &[&again, &left, &back]),
        vec![Some(Applied::Processed(0)); 3]
    );
    // A restart that replays the stream from the start.
    let tenants = processor.tenants.clone();
    let mut restarted = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
    assert_eq!(
        apply_all(&mut restarted, 0, &[&first]),
        vec![Some(Applied::AlreadyApplied)]
    );
    assert_eq!(balance(&store, "bonus"), Some(Decimal::from(200)));
    assert_eq!(published(&store), vec!["welcome_bonus"]);
}

#[test]
fn the_birthday_bonus_is_kept_in_the_stored_profile_and_credited_once() {
    let (store, mut processor) = setup();
    let up = upsert("u1", true);
    // 2026-06-14T21:00Z is the birthday (06-15 00:00 in Kyiv); a week after.
    let (on, after, next_year) = (
        order("o1", "2026-06-14T21:00:00Z"),
        order("o2", "2026-06-20T12:00:00Z"),
        order("o3", "2027-06-16T12:00:00Z"),
    );
    assert_eq!(
        apply_all(&mut processor, 0, &[&up, &on]),
        vec![Some(Applied::Processed(1)), Some(Applied::Processed(3))]
    );
    // A new batch reads the profile back from the store.
    assert_eq!(
        apply_all(&mut processor, 2, &[&after]),
        vec![Some(Applied::Processed(2))]
    );
    assert_eq!(
        apply_all(&mut processor, 3, &[&next_year]),
        vec![Some(Applied::Processed(3))]
    );
    // Welcome 200, three campaign bonuses of 5, two birthday bonuses of 100.
    assert_eq!(balance(&store, "bonus"), Some(Decimal::from(415)));
    // 5% of 80.00, doubled by the campaign, three times.
    assert_eq!(balance(&store, "cashback"), Some(Decimal::new(2400, 2)));
    assert_eq!(
        published(&store),
        vec![
            "welcome_bonus",
            "accrual",
            "campaign_bonus",
            "birthday_bonus",
            "accrual",
            "campaign_bonus",
            "accrual",
            "campaign_bonus",
            "birthday_bonus"
        ]
    );
}
