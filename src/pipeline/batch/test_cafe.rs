//! A one-customer processor over a memory store for the loyalty tests
//! (expiry, tiers, limits): `ann` of tenant `cafe`, partition 2, with
//! helpers to send orders and refunds at given times, fire timers, and read
//! balances and outputs.

use super::*;
use crate::state::MemoryStore;

pub(super) const DAY: i64 = 86_400_000;
/// 2026-11-01T12:00:00Z.
pub(super) const START: i64 = 1_793_534_400_000;

pub(super) struct Cafe {
    pub(super) store: Arc<MemoryStore>,
    pub(super) processor: Processor,
    offset: i64,
}

/// `ms` as RFC 3339.
pub(super) fn at(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

impl Cafe {
    /// Tenant `cafe` as `config` says, and `ann`, registered the day
    /// before [`START`], with or without marketing consent.
    pub(super) fn new(config: &str, consent: bool) -> Self {
        let tenant: TenantConfig = match toml::from_str(config) {
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
            "customer":"ann","occurred_at":"{}","body":{{"registered":true,"marketing_consent":{consent}}}}}"#,
            at(START - DAY)
        ));
        cafe
    }

    pub(super) fn send(&mut self, payload: &str) -> Applied {
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
    pub(super) fn order(&mut self, id: &str, ms: i64, total: &str, paid: &str) -> Applied {
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

    pub(super) fn refund(&mut self, id: &str, original: &str, ms: i64, amount: &str) -> Applied {
        self.send(&format!(
            r#"{{"schema_version":1,"event_id":"{id}","type":"order.refunded","tenant":"cafe","branch":"downtown",
            "customer":"ann","occurred_at":"{}","body":{{"refund_id":"{id}","original_event_id":"{original}","amount":"{amount}",
            "currency":"AZN"}}}}"#,
            at(ms)
        ))
    }

    pub(super) fn fire(&mut self, now: i64) -> usize {
        let mut batch = Batch::default();
        let fired = self.processor.fire_due(&mut batch, 2, now, 100).unwrap_or(usize::MAX);
        assert!(self.processor.commit(batch).is_ok());
        fired
    }

    pub(super) fn cashback(&self) -> Decimal {
        self.store
            .get(Family::Balances, &keys::balance(2, "cafe", "ann", "cashback"))
            .ok()
            .flatten()
            .and_then(|raw| keys::decode_decimal(&raw))
            .unwrap_or_default()
    }

    pub(super) fn reviews(&self) -> usize {
        let p = keys::partition_prefix(2);
        self.store.scan(Family::Reviews, &p, &p, 100).map_or(0, |v| v.len())
    }

    /// Every output published so far, in order.
    pub(super) fn outputs(&self) -> Vec<serde_json::Value> {
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

    pub(super) fn of_type(&self, entry_type: &str) -> Vec<serde_json::Value> {
        self.outputs()
            .into_iter()
            .filter(|o| o["entry_type"] == entry_type || o["type"] == entry_type)
            .collect()
    }
}
