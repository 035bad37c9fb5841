//! Every event type of the rules engine through the real broker: customer
//! upserts, manual adjustments, orders with accruals and redemption
//! (accepted and rejected), partial refunds and gift-card exchanges.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{produce, producer, read_all, terminate, wait_until, Env};

const SHOP: &str = r#"
id = "shop"
currency = "AZN"
bonus_accounts = ["coffee-bonus"]
[branches.downtown]
payment_methods = ["cashback", "coffee-bonus"]
[redemption]
max_percent = { cashback = "50" }
[refunds]
negative_balance = "allow"

[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }

[[programs]]
id = "coffee-for-regulars"
type = "group_bonus"
account = "coffee-bonus"
groups = ["Regulars"]
branches = { downtown = "active" }
rules = [{ category = "coffee", percent = "10" }]

[[gift_cards]]
id = "gc-50"
name = "Gift card 50"
points = "500"
value = "50.00"
"#;

fn event(id: &str, event_type: &str, body: Value) -> (Option<String>, Vec<u8>) {
    let value = json!({
        "schema_version": 1,
        "event_id": id,
        "type": event_type,
        "tenant": "shop",
        "branch": "downtown",
        "customer": "c-9",
        "occurred_at": "2026-11-23T12:00:00Z",
        "body": body,
    });
    (Some("shop:c-9".into()), value.to_string().into_bytes())
}

fn order(id: &str, lines: Value, payments: Value, total: &str) -> (Option<String>, Vec<u8>) {
    event(
        id,
        "order.paid",
        json!({"order_id": id, "sale_type": "dine_in", "lines": lines, "payments": payments, "total": total, "currency": "AZN"}),
    )
}

#[test]
fn every_event_type_through_kafka() {
    let env = Env::new("programs", 2);
    std::fs::write(env.dir.path().join("tenants/shop.toml"), SHOP).unwrap();
    let input = vec![
        event(
            "u-1",
            "customer.upserted",
            json!({"phone": "+994500000009", "groups": ["Regulars"], "registered": true, "marketing_consent": true}),
        ),
        event(
            "adj-1",
            "balance.adjust",
            json!({"account": "service_points", "amount": "600", "description": "Welcome points"}),
        ),
        order(
            "o-1",
            json!([{"product": "latte", "category": "coffee", "quantity": "2", "amount": "20.00"},
                   {"product": "kebab", "category": "food", "quantity": "1", "amount": "60.00"}]),
            json!([{"method": "card", "amount": "80.00"}]),
            "80.00",
        ),
        order(
            "o-2",
            json!([{"product": "kebab", "category": "food", "quantity": "1", "amount": "10.00"}]),
            json!([{"method": "cashback", "amount": "4.00"}, {"method": "card", "amount": "6.00"}]),
            "10.00",
        ),
        order(
            "o-3",
            json!([{"product": "kebab", "category": "food", "quantity": "1", "amount": "10.00"}]),
            json!([{"method": "cashback", "amount": "5.00"}, {"method": "card", "amount": "5.00"}]),
            "10.00",
        ),
        event(
            "r-1",
            "order.refunded",
            json!({"refund_id": "R1", "original_event_id": "o-1", "amount": "40.00", "currency": "AZN"}),
        ),
        event("g-1", "giftcard.exchange", json!({"gift_card": "gc-50"})),
        event("g-2", "giftcard.exchange", json!({"gift_card": "gc-50"})),
    ];
    produce(&producer(), &env.input, &input);

    let mut child = env.spawn();
    let expected = 12;
    let done = wait_until(Duration::from_secs(60), || {
        read_all(&env.accruals, env.partitions).len() >= expected
    });
    assert!(done, "outputs incomplete\n{}", env.logs());
    std::thread::sleep(Duration::from_millis(500));
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
    assert!(read_all(&env.dead_letter, env.partitions).is_empty(), "no dead letters");

    let mut out: Vec<common::Record> = read_all(&env.accruals, env.partitions);
    out.sort_by_key(|r| r.offset);
    let events: Vec<Value> = out.iter().map(common::Record::json).collect();
    assert_eq!(events.len(), expected, "{events:#?}");
    let summary: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap_or_default().to_owned();
            let what = e["entry_type"]
                .as_str()
                .or(e["reason_code"].as_str())
                .unwrap_or_default()
                .to_owned();
            (
                kind,
                what,
                e["account"].as_str().unwrap_or_default().to_owned(),
                e["amount"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(&str, &str, &str, &str)> = vec![
        ("accrual.recorded", "manual_adjustment", "service_points", "600"),
        ("balance.manually_updated", "", "service_points", "600"),
        ("accrual.recorded", "accrual", "cashback", "4.00"),
        ("accrual.recorded", "accrual", "coffee-bonus", "2"),
        ("accrual.recorded", "redemption", "cashback", "-4.00"),
        ("accrual.recorded", "accrual", "cashback", "0.30"),
        ("redemption.rejected", "insufficient_balance", "", ""),
        ("accrual.recorded", "reversal", "cashback", "-2.00"),
        ("accrual.recorded", "reversal", "coffee-bonus", "-1"),
        ("accrual.recorded", "gift_card_exchange", "service_points", "-500"),
        ("giftcard.issued", "", "service_points", ""),
        ("giftcard.rejected", "insufficient_points", "", ""),
    ];
    let want: Vec<(String, String, String, String)> = want
        .into_iter()
        .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
        .collect();
    assert_eq!(summary, want);

    // Balances after each entry, and the details customers and POS see.
    assert_eq!(events[0]["description"], "Welcome points");
    assert_eq!(events[1]["balance"], "600");
    assert_eq!(events[2]["program"], "cashback");
    assert_eq!(events[3]["program"], "coffee-for-regulars");
    assert_eq!(events[5]["balance"], "0.30");
    assert!(events[6]["reason"].as_str().unwrap().contains("balance is 0.30"));
    assert_eq!(
        events[7]["balance"], "-1.70",
        "refund after spending: allowed below zero by policy"
    );
    assert_eq!(events[8]["balance"], "1");
    assert_eq!(events[9]["balance"], "100");
    let code = events[10]["code"].as_str().unwrap();
    assert_eq!(code.len(), 19, "{code}");
    assert_eq!(events[10]["value"], "50.00");
    for e in &events {
        assert_eq!(e["source"]["topic"], env.input.as_str());
        assert!(e["id"].as_str().is_some());
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()));
}

#[test]
fn sighup_reloads_programs_and_a_broken_reload_keeps_the_old_ones() {
    let env = Env::new("reload", 1);
    let tenant_file = env.dir.path().join("tenants/shop.toml");
    std::fs::write(&tenant_file, SHOP).unwrap();
    let p = producer();
    let line = json!([{"product": "kebab", "category": "food", "quantity": "1", "amount": "100.00"}]);
    let card = json!([{"method": "card", "amount": "100.00"}]);
    let mut child = env.spawn();
    let upsert = event(
        "u",
        "customer.upserted",
        json!({"registered": true, "marketing_consent": false}),
    );
    produce(
        &p,
        &env.input,
        &[upsert, order("o-1", line.clone(), card.clone(), "100.00")],
    );
    assert!(
        wait_until(Duration::from_secs(60), || read_all(&env.accruals, 1).len() == 1),
        "{}",
        env.logs()
    );

    // 5% -> 10%, applied from the next batch after SIGHUP.
    std::fs::write(&tenant_file, SHOP.replacen("percent = \"5\"", "percent = \"10\"", 1)).unwrap();
    signal(&child, "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || env.logs().contains("programs reloaded")),
        "{}",
        env.logs()
    );
    produce(&p, &env.input, &[order("o-2", line.clone(), card.clone(), "100.00")]);
    assert!(
        wait_until(Duration::from_secs(60), || read_all(&env.accruals, 1).len() == 2),
        "{}",
        env.logs()
    );

    // A broken file: the 10% programs stay in force.
    std::fs::write(&tenant_file, SHOP.replacen("percent = \"5\"", "percent = \"500\"", 1)).unwrap();
    signal(&child, "HUP");
    assert!(
        wait_until(Duration::from_secs(20), || env.logs().contains("reload failed")),
        "{}",
        env.logs()
    );
    produce(&p, &env.input, &[order("o-3", line, card, "100.00")]);
    assert!(
        wait_until(Duration::from_secs(60), || read_all(&env.accruals, 1).len() == 3),
        "{}",
        env.logs()
    );
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    let mut out = read_all(&env.accruals, 1);
    out.sort_by_key(|r| r.offset);
    let amounts: Vec<String> = out
        .iter()
        .map(|r| r.json()["amount"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(amounts, vec!["5.00", "10.00", "10.00"]);
    assert!(env.logs().contains("programs[0].percent"), "the failed reload says why");
}
