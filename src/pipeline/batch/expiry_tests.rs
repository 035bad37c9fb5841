//! Points expiry through the processor: lots booked with the credits,
//! spent oldest first, expired once by the review timer, warned with
//! consent, and refunds that never take back what expired.

use super::*;
use crate::state::MemoryStore;

const DAY: i64 = 86_400_000;
/// 2026-11-01T12:00:00Z.
const START: i64 = 1_793_534_400_000;

const CAFE: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
payment_methods = ["cashback"]
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
[expiry.cashback]
after = "30d"
warn_before = "7d"
"#;

struct Cafe {
    store: Arc<MemoryStore>,
    processor: Processor,
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
            store,
            processor,
            offset: 0,
        };
        cafe.send(&format!(
            r#"{{"schema_version":1,"event_id":"u1","type":"customer.upserted","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"registered":true,"marketing_consent":true}}}}"#,
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

    /// An order of `total` at `ms`, `paid` of it with cashback.
    fn order(&mut self, id: &str, ms: i64, total: &str, paid: &str) -> Applied {
        let card = total.parse::<Decimal>().unwrap_or_default() - paid.parse::<Decimal>().unwrap_or_default();
        let mut payments = format!(r#"{{"method":"card","amount":"{card}"}}"#);
        if paid != "0" {
            payments.push_str(&format!(r#",{{"method":"cashback","amount":"{paid}"}}"#));
        }
        self.send(&format!(
            r#"{{"schema_version":1,"event_id":"{id}","type":"order.paid","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"order_id":"{id}","sale_type":"dine_in",
            "lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],
            "payments":[{payments}],"total":"{total}","currency":"AZN"}}}}"#,
            at(ms)
        ))
    }

    fn refund(&mut self, id: &str, original: &str, ms: i64, amount: &str) -> Applied {
        self.send(&format!(
            r#"{{"schema_version":1,"event_id":"{id}","type":"order.refunded","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"refund_id":"{id}","original_event_id":"{original}","amount":"{amount}",
            "currency":"AZN"}}}}"#,
            at(ms)
        ))
    }

    fn fire(&mut self, now: i64) -> usize {
        let mut batch = Batch::default();
        let fired = self.processor.fire_due(&mut batch, 2, now, 100).unwrap_or(usize::MAX);
        assert!(self.processor.commit(batch).is_ok());
        fired
    }

    fn cashback(&self) -> Decimal {
        self.store
            .get(Family::Balances, &keys::balance(2, "cafe", "ann", "cashback"))
            .ok()
            .flatten()
            .and_then(|raw| keys::decode_decimal(&raw))
            .unwrap_or_default()
    }

    fn reviews(&self) -> usize {
        let p = keys::partition_prefix(2);
        self.store.scan(Family::Reviews, &p, &p, 100).map_or(0, |v| v.len())
    }

    fn outputs(&self) -> Vec<serde_json::Value> {
        self.store
            .scan(Family::Outbox, &keys::partition_prefix(2), &keys::outbox(2, 0), 1000)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| crate::outbox::load(self.store.as_ref(), 2, keys::parse_outbox(&k)?.1, &v).ok())
            .filter_map(|r| serde_json::from_slice(&r.payload).ok())
            .collect()
    }

    fn of_type(&self, entry_type: &str) -> Vec<serde_json::Value> {
        self.outputs()
            .into_iter()
            .filter(|o| o["entry_type"] == entry_type || o["type"] == entry_type)
            .collect()
    }
}

#[test]
fn what_is_left_of_each_credit_expires_once_oldest_spent_first() {
    let mut c = Cafe::new();
    assert_eq!(c.order("o1", START, "80.00", "0"), Applied::Processed(1)); // +4.00, expires day 30
    assert_eq!(c.order("o2", START + 10 * DAY, "80.00", "0"), Applied::Processed(1)); // +4.00, day 40
    assert_eq!(c.reviews(), 1, "one review timer per customer");
    assert_eq!(c.processor.timers_pending(), 1);
    // 5.00 paid with cashback on day 15: all of o1's credit, 1.00 of o2's.
    assert_eq!(c.order("o3", START + 15 * DAY, "10.00", "5.00"), Applied::Processed(2)); // -5.00, +0.25
    assert_eq!(c.cashback(), Decimal::new(300, 2) + Decimal::new(25, 2));
    // Nothing is due before o3's credit warning (day 15 + 30 - 7).
    assert_eq!(c.fire(START + 30 * DAY), 0, "o1's credit was spent: nothing to expire");
    assert!(c.of_type("expiry").is_empty());
    // Down until day 50: one review runs every due time in order: the
    // warnings of o2 (day 33) and o3 (day 38), then their expiries (days 40, 45).
    assert_eq!(c.fire(START + 50 * DAY), 1);
    let expiries = c.of_type("expiry");
    assert_eq!(expiries.len(), 2, "{expiries:?}");
    assert_eq!(expiries[0]["amount"], "-3.00", "what was left of o2's 4.00");
    assert_eq!(expiries[0]["source_event_id"], "o2");
    assert_eq!(expiries[0]["occurred_at"], at(START + 40 * DAY));
    assert_eq!(expiries[1]["amount"], "-0.25");
    assert_eq!(expiries[1]["source_event_id"], "o3");
    let warnings = c.of_type("points.expiring");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["amount"], "3.00");
    assert_eq!(warnings[0]["expires_at"], at(START + 40 * DAY));
    assert_eq!(warnings[0]["occurred_at"], at(START + 33 * DAY));
    assert_eq!(warnings[1]["amount"], "0.25");
    assert_eq!(c.cashback(), Decimal::ZERO);
    assert_eq!(c.fire(START + 400 * DAY), 0, "never twice");
    assert_eq!(c.reviews(), 0, "no credit left: no timer");
    assert_eq!(c.processor.timers_pending(), 0, "the gauge counts review timers too");
    assert_eq!(c.of_type("expiry").len(), 2);
}

#[test]
fn a_refund_never_takes_back_what_expired() {
    let mut c = Cafe::new();
    c.order("o1", START, "80.00", "0"); // +4.00
    c.order("o2", START + 20 * DAY, "40.00", "1.00"); // 1.00 of o1's spent, +1.95 (expires day 50)
    assert_eq!(c.fire(START + 31 * DAY), 1);
    assert_eq!(c.of_type("expiry")[0]["amount"], "-3.00");
    // The whole of o1 refunded: 3.00 of its 4.00 expired, so 1.00 is taken back.
    assert_eq!(c.refund("r1", "o1", START + 32 * DAY, "80.00"), Applied::Processed(1));
    let reversals = c.of_type("reversal");
    assert_eq!(reversals.len(), 1);
    assert_eq!(reversals[0]["amount"], "-1.00");
    assert_eq!(c.cashback(), Decimal::new(95, 2));
}

#[test]
fn a_dropped_review_batch_expires_again_and_a_committed_one_never() {
    let mut c = Cafe::new();
    c.order("o1", START, "80.00", "0");
    let mut batch = Batch::default();
    assert_eq!(c.processor.fire_due(&mut batch, 2, START + 31 * DAY, 100).ok(), Some(1));
    drop(batch); // kill -9 before the commit
    assert_eq!(c.cashback(), Decimal::new(400, 2));
    assert_eq!(c.fire(START + 31 * DAY), 1);
    assert_eq!(c.cashback(), Decimal::ZERO);
    assert_eq!(c.fire(START + 32 * DAY), 0);
    assert_eq!(c.of_type("expiry").len(), 1);
}
