//! Tiers and earning limits through the processor: the order that reaches
//! a level publishes `tier.changed` after its accrual and earns at the
//! level, the review timer lowers the level once when a day leaves the
//! window, and a capped accrual says so in its description.

use super::*;
use crate::state::MemoryStore;

const DAY: i64 = 86_400_000;
/// 2026-11-01T12:00:00Z.
const START: i64 = 1_793_534_400_000;

const CAFE: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
[tiers]
metric = "spend"
window = "30d"
[[tiers.levels]]
id = "silver"
threshold = "100"
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
tier_percent = { silver = "10" }
limits = { per_day = "12" }
branches = { downtown = "active" }
"#;

struct Cafe {
    processor: Processor,
    store: Arc<MemoryStore>,
    offset: i64,
}

fn at(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

impl Cafe {
    fn new() -> Self {
        let tenant: TenantConfig = match toml::from_str(CAFE) {
            Ok(t) => t,
            Err(e) => panic!("fixture tenant: {e}"),
        };
        let store = Arc::new(MemoryStore::default());
        let tenants = Arc::new(Tenants::from([("cafe".to_owned(), tenant)]));
        let processor = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
        let mut cafe = Cafe {
            processor,
            store,
            offset: 0,
        };
        cafe.send(&format!(
            r#"{{"schema_version":1,"event_id":"u1","type":"customer.upserted","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"registered":true,"marketing_consent":false}}}}"#,
            at(START - DAY)
        ));
        cafe
    }

    fn send(&mut self, payload: &str) -> Applied {
        let mut batch = Batch::default();
        let record = InputRecord {
            topic: "orders",
            partition: 2,
            offset: self.offset,
            key: Some(b"cafe:ann"),
            payload: Some(payload.as_bytes()),
        };
        self.offset += 1;
        let applied = self.processor.apply(&mut batch, &record);
        assert!(self.processor.commit(batch).is_ok());
        applied.unwrap_or(Applied::AlreadyApplied)
    }

    fn order(&mut self, id: &str, ms: i64, total: &str) -> Applied {
        self.send(&format!(
            r#"{{"schema_version":1,"event_id":"{id}","type":"order.paid","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"order_id":"{id}","sale_type":"dine_in",
            "lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],
            "payments":[{{"method":"card","amount":"{total}"}}],"total":"{total}","currency":"AZN"}}}}"#,
            at(ms)
        ))
    }

    fn fire(&mut self, now: i64) -> usize {
        let mut batch = Batch::default();
        let fired = self.processor.fire_due(&mut batch, 2, now, 100).unwrap_or(usize::MAX);
        assert!(self.processor.commit(batch).is_ok());
        fired
    }

    fn outputs(&self) -> Vec<serde_json::Value> {
        self.store
            .scan(Family::Outbox, &keys::partition_prefix(2), &keys::outbox(2, 0), 1000)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| crate::outbox::load(self.store.as_ref(), 2, keys::parse_outbox(&k)?.1, &v).ok())
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
            // Outputs only (the outbox also carries directory updates).
            .filter(|o| o.get("type").is_some())
            .collect()
    }
}

fn decimal(v: &serde_json::Value) -> Option<Decimal> {
    v.as_str()?.parse().ok()
}

#[test]
fn reaching_a_level_publishes_tier_changed_and_the_review_lowers_it_once() {
    let mut c = Cafe::new();
    assert_eq!(c.order("o1", START, "60.00"), Applied::Processed(1)); // 5%: 3.00
    assert_eq!(c.order("o2", START + 5 * DAY, "50.00"), Applied::Processed(1)); // 110: silver, 10%: 5.00
    let out = c.outputs();
    let types: Vec<&str> = out.iter().filter_map(|o| o["type"].as_str()).collect();
    assert_eq!(
        types,
        ["accrual.recorded", "accrual.recorded", "tier.changed"],
        "{out:?}"
    );
    assert_eq!(out[1]["amount"], "5.00", "the crossing order earns at the level");
    let change = &out[2];
    assert_eq!(change["source_event_id"], "o2");
    assert_eq!(
        (&change["from"], &change["to"]),
        (&serde_json::Value::Null, &serde_json::json!("silver"))
    );
    assert_eq!(change["metric"], "spend");
    assert_eq!(decimal(&change["value"]), Some(Decimal::new(11000, 2)));
    // Day 30 after o1: its 60.00 leaves the window, 50.00 < 100.
    assert_eq!(
        c.fire(START + 30 * DAY - DAY / 2 - 1),
        0,
        "not due before the day leaves"
    );
    assert_eq!(c.fire(START + 30 * DAY), 1);
    let out = c.outputs();
    let down: Vec<&serde_json::Value> = out.iter().filter(|o| o["type"] == "tier.changed").collect();
    assert_eq!(down.len(), 2, "{out:?}");
    assert_eq!(
        (&down[1]["from"], &down[1]["to"]),
        (&serde_json::json!("silver"), &serde_json::Value::Null)
    );
    assert_eq!(decimal(&down[1]["value"]), Some(Decimal::new(5000, 2)));
    assert_eq!(c.fire(START + 400 * DAY), 0, "never twice");
    // Below the level again: 5%.
    assert_eq!(c.order("o3", START + 31 * DAY, "20.00"), Applied::Processed(1));
    let out = c.outputs();
    assert_eq!(out.last().map(|o| o["amount"].clone()), Some(serde_json::json!("1.00")));
}

#[test]
fn a_capped_accrual_says_which_limit_capped_it() {
    let mut c = Cafe::new();
    c.order("o1", START, "200.00"); // silver at once: 10% = 20.00, capped to 12
    c.order("o2", START + 60_000, "200.00"); // the day is used up: no entry
    let accruals: Vec<serde_json::Value> = c
        .outputs()
        .into_iter()
        .filter(|o| o["type"] == "accrual.recorded")
        .collect();
    assert_eq!(accruals.len(), 1, "{accruals:?}");
    assert_eq!(accruals[0]["amount"], "12.00");
    assert_eq!(accruals[0]["description"], "capped by per_day limit 12");
}
