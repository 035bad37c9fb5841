//! The scenario of the expiry test and its model: credits as lots, spent
//! oldest first, computed here without accrue's code.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::common::rfc3339;
use crate::CUSTOMERS;

/// One credit as this test books it: FIFO lots, independent of accrue.
#[derive(Debug, Clone)]
pub(crate) struct Lot {
    pub(crate) source: String,
    pub(crate) expires: bool,
    pub(crate) credited: i64,
    /// The order's total, and the points it credited.
    pub(crate) euros: i64,
    pub(crate) amount: i64,
    pub(crate) remaining: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Customer {
    pub(crate) consent: bool,
    pub(crate) lots: Vec<Lot>,
    /// The expiring credits once due, with what was left of each.
    pub(crate) expired: Vec<Lot>,
    /// What a reversal took beyond every credit (the balance below zero).
    pub(crate) debt: i64,
    /// Every ledger amount expected (accruals, redemptions, expiries,
    /// reversals).
    pub(crate) ledger: Vec<i64>,
}

impl Customer {
    pub(crate) fn balance(&self) -> i64 {
        self.lots.iter().map(|l| l.remaining).sum::<i64>() - self.debt
    }

    /// A reversal: spends the oldest credits, and what is left of it
    /// takes the balance below zero (refunds allow it by default).
    pub(crate) fn take_back(&mut self, mut amount: i64) {
        for lot in &mut self.lots {
            let take = amount.min(lot.remaining);
            lot.remaining -= take;
            amount -= take;
        }
        self.debt += amount;
    }

    fn spend(&mut self, mut amount: i64) {
        for lot in &mut self.lots {
            let take = amount.min(lot.remaining);
            lot.remaining -= take;
            amount -= take;
        }
        assert_eq!(amount, 0, "the scenario never overspends");
    }
}

/// A Kafka record of the input: key and payload.
pub(crate) type Input = (Option<String>, Vec<u8>);

pub(crate) fn event(id: &str, customer: &str, event_type: &str, branch: &str, at: i64, body: Value) -> Input {
    let value = json!({
        "schema_version": 1, "event_id": id, "type": event_type, "tenant": "shop", "branch": branch,
        "customer": customer, "occurred_at": rfc3339(at_of(at)), "body": body,
    });
    (Some(format!("shop:{customer}")), value.to_string().into_bytes())
}

fn at_of(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

/// An order of `euros`, `bonus` of it paid with points.
fn order_body(euros: i64, bonus: i64) -> Value {
    let mut payments = Vec::new();
    if euros > bonus {
        payments.push(json!({"method": "card", "amount": format!("{}.00", euros - bonus)}));
    }
    if bonus > 0 {
        payments.push(json!({"method": "bonus", "amount": bonus.to_string()}));
    }
    json!({
        "order_id": "o", "sale_type": "dine_in",
        "lines": [{"product": "p", "category": "food", "quantity": "1", "amount": format!("{euros}.00")}],
        "payments": payments, "total": format!("{euros}.00"), "currency": "EUR"
    })
}

/// The scenario, from `t0` (whole seconds): per customer an upsert, three
/// expiring credits and one that keeps, and up to two redemptions.
pub(crate) fn scenario(t0: i64) -> (Vec<Input>, BTreeMap<String, Customer>) {
    let mut input = Vec::new();
    let mut customers = BTreeMap::new();
    for i in 0..CUSTOMERS as i64 {
        let id = format!("x-{i}");
        let mut c = Customer {
            consent: i % 2 == 0,
            ..Customer::default()
        };
        input.push(event(
            &format!("{id}-upsert"),
            &id,
            "customer.upserted",
            "main",
            t0 - 5,
            json!({"registered": true, "marketing_consent": c.consent}),
        ));
        let credit = |c: &mut Customer, input: &mut Vec<Input>, name: &str, branch: &str, euros: i64, at: i64| {
            let source = format!("{id}-{name}");
            input.push(event(&source, &id, "order.paid", branch, at, order_body(euros, 0)));
            // 10% or 5% of whole euros, rounded down to whole points.
            let points = if branch == "main" { euros / 10 } else { euros * 5 / 100 };
            c.lots.push(Lot {
                source,
                expires: branch == "main",
                credited: at,
                euros,
                amount: points,
                remaining: points,
            });
            c.ledger.push(points);
        };
        let redeem = |c: &mut Customer, input: &mut Vec<Input>, name: &str, points: i64, at: i64| {
            if points == 0 {
                return;
            }
            input.push(event(
                &format!("{id}-{name}"),
                &id,
                "order.paid",
                "main",
                at,
                order_body(points, points),
            ));
            c.spend(points);
            c.ledger.push(-points);
        };
        credit(&mut c, &mut input, "a", "main", 50 + (i * 37) % 150, t0 - 4);
        credit(&mut c, &mut input, "b", "mall", 40 + (i * 53) % 200, t0 - 3);
        credit(&mut c, &mut input, "c", "main", 30 + (i * 29) % 120, t0 - 2);
        if i % 3 != 0 {
            let r = (i * 7) % (c.balance() + 1);
            redeem(&mut c, &mut input, "r1", r, t0 - 2);
        }
        credit(&mut c, &mut input, "d", "main", 20 + (i * 17) % 90, t0 - 1);
        if i % 4 != 1 {
            let r = (i * 11) % (c.balance() + 1);
            redeem(&mut c, &mut input, "r2", r, t0 - 1);
        }
        customers.insert(id, c);
    }
    (input, customers)
}
