//! Quote, then apply: for random balances, holds and orders, what a quote
//! computed from the committed state says each balance will be is what the
//! processor then leaves in the store, and a refused quote means an order
//! that changes nothing. Through the real processor core and its state
//! encoding (no broker: the broker test is tests/till.rs).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use rust_decimal::Decimal;

use accrue::config::Config;
use accrue::contract::{self, Event};
use accrue::directory::{Directory, NetworkView};
use accrue::pipeline::{Batch, InputRecord, Processor};
use accrue::programs::TenantConfig;
use accrue::rules::{self, till};
use accrue::state::{MemoryStore, Store};
use accrue::till::state::customer_state;
use accrue::till::{TillAnswer, TillOp, TillRequest};
use accrue::timers::{Clock, SystemClock};

const TENANT: &str = "cafe-central";
const CUSTOMER: &str = "prop-c";
const KEY: &[u8] = b"example key";

fn tenants() -> std::collections::HashMap<String, TenantConfig> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
    Config::load(&path).unwrap().tenants
}

fn event(event_id: &str, event_type: &str, body: serde_json::Value) -> Event {
    let json = serde_json::json!({
        "schema_version": 1, "event_id": event_id, "type": event_type, "tenant": TENANT,
        "branch": "downtown", "customer": CUSTOMER, "occurred_at": "2026-11-23T12:00:00Z", "body": body
    });
    contract::decode(json.to_string().as_bytes()).unwrap()
}

fn order_body(order_id: &str, total: i64, cashback: i64, authorization: Option<&str>) -> serde_json::Value {
    let (total, cashback) = (Decimal::new(total, 2), Decimal::new(cashback, 2));
    let mut payments = vec![serde_json::json!({"method": "card", "amount": (total - cashback).to_string()})];
    if !cashback.is_zero() {
        payments.push(serde_json::json!({"method": "cashback", "amount": cashback.to_string()}));
    }
    let mut body = serde_json::json!({
        "order_id": order_id, "sale_type": "dine_in",
        "lines": [{"product": "latte", "category": "coffee", "quantity": "1", "amount": total.to_string()}],
        "payments": payments, "total": total.to_string(), "currency": "AZN"
    });
    if let Some(id) = authorization {
        body["authorization_id"] = serde_json::json!(id);
    }
    body
}

struct Core {
    store: Arc<MemoryStore>,
    processor: Processor,
    tenants: std::collections::HashMap<String, TenantConfig>,
    offset: i64,
}

impl Core {
    fn new() -> Core {
        let store = Arc::new(MemoryStore::default());
        let tenants = tenants();
        let processor = Processor::new(store.clone(), Arc::new(tenants.clone()), Arc::from(KEY));
        Core {
            store,
            processor,
            tenants,
            offset: 0,
        }
    }

    fn apply(&mut self, event_id: &str, event_type: &str, body: serde_json::Value) {
        let json = serde_json::json!({
            "schema_version": 1, "event_id": event_id, "type": event_type, "tenant": TENANT,
            "branch": "downtown", "customer": CUSTOMER, "occurred_at": "2026-11-23T12:00:00Z", "body": body
        })
        .to_string();
        let key = format!("{TENANT}:{CUSTOMER}");
        let mut batch = Batch::default();
        let record = InputRecord {
            topic: "orders",
            partition: 0,
            offset: self.offset,
            key: Some(key.as_bytes()),
            payload: Some(json.as_bytes()),
        };
        self.offset += 1;
        self.processor.apply(&mut batch, &record).unwrap();
        self.processor.commit(batch).unwrap();
    }

    fn hold(&mut self, id: &str, body: serde_json::Value) -> bool {
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let request = TillRequest {
            partition: 0,
            tenant: TENANT.into(),
            customer: CUSTOMER.into(),
            op: TillOp::Authorize {
                event: Box::new(event(&format!("hold-{id}"), "order.paid", body)),
                id: id.into(),
                expires_ms: SystemClock.now_ms() + 600_000,
            },
            reply,
        };
        let mut batch = Batch::default();
        let answer = self.processor.apply_till(&mut batch, &request).unwrap();
        if !batch.is_empty() {
            self.processor.commit(batch).unwrap();
        }
        matches!(answer, TillAnswer::Held(_))
    }

    fn state(&self) -> (rules::Customer, BTreeMap<String, Decimal>) {
        let store: &dyn Store = self.store.as_ref();
        customer_state(store, 0, &self.tenants[TENANT], CUSTOMER).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_quote_is_what_the_stream_then_does(
        start in 0i64..6_000,
        holds in proptest::collection::vec(1i64..2_500, 0..3),
        orders in proptest::collection::vec((100i64..8_000, 0i64..8_000, any::<bool>()), 1..6),
    ) {
        let mut core = Core::new();
        core.apply("seed", "balance.adjust", serde_json::json!({
            "account": "cashback", "amount": Decimal::new(start, 2).to_string(), "description": "seed"}));
        let mut held_ids = Vec::new();
        for (i, amount) in holds.iter().enumerate() {
            let id = format!("au_{i}");
            if core.hold(&id, order_body(&format!("held-{i}"), amount * 2, *amount, None)) {
                held_ids.push((id, format!("held-{i}"), *amount));
            }
        }
        let directory = Directory::standalone();
        for (i, (total, pay, named)) in orders.iter().enumerate() {
            let pay = (*pay).min(*total);
            // Some orders settle a hold: its order id and amount, its id.
            let (order_id, pay, authorization) = match (named, held_ids.get(i)) {
                (true, Some((id, order_id, amount))) => (order_id.clone(), (*amount).min(*total), Some(id.clone())),
                _ => (format!("o-{i}"), pay, None),
            };
            let body = order_body(&order_id, *total, pay, authorization.as_deref());
            let quoted_event = event(&format!("e-{i}"), "order.paid", body.clone());
            let (customer, before) = core.state();
            let tenant = &core.tenants[TENANT];
            let network = NetworkView { directory: &directory, tenants: &core.tenants };
            let quote = till::quote(&rules::Input {
                tenant,
                event: &quoted_event,
                customer: &customer,
                balances: &before,
                original: None,
                booking: None,
                code_key: KEY,
                network: &network,
                loyalty: &rules::NO_LOYALTY,
                now_ms: SystemClock.now_ms(),
            })
            .unwrap();
            let mut expected = before.clone();
            for entry in &quote.outcome.entries {
                *expected.entry(entry.account.to_string()).or_default() += entry.amount;
            }
            core.apply(&format!("e-{i}"), "order.paid", body);
            let (_, after) = core.state();
            let nonzero = |m: &BTreeMap<String, Decimal>| -> BTreeMap<String, Decimal> {
                m.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (k.clone(), v.normalize())).collect()
            };
            prop_assert_eq!(nonzero(&expected), nonzero(&after), "order {} quote {:?}", i, quote.outcome.rejection);
            if quote.outcome.rejection.is_some() {
                prop_assert_eq!(nonzero(&before), nonzero(&after));
            }
        }
    }
}
