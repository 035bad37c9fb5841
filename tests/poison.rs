//! Poison records through a real broker: each of the three overflow classes
//! that used to panic the consume thread (an order total times a percent, a
//! balance adjusted past what it holds, a booking's `ends_at + credit_delay`)
//! sits in partition 0 among 5,000 normal orders over 4 partitions. Every
//! normal order is applied with the amount computed here, independently of
//! the rules code; each poison record is a dead letter or a rejection with
//! its expected kind or code; and the process never panics.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use accrue::contract::partition_for;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use common::{
    half_even_percent, high_watermark_sum, money, order, produce, producer, read_all, terminate, wait_until, Env,
};

const ORDERS: usize = 5_000;
const CUSTOMERS: usize = 400;
const PARTITIONS: i32 = 4;
/// `Decimal::MAX`: 5% of it cannot be computed in a `Decimal`.
const DECIMAL_MAX: &str = "79228162514264337593543950335";
/// The contract's largest amount, 10^12.
const MAX_AMOUNT: &str = "1000000000000";
/// Adjustments of `MAX_AMOUNT` that fill a balance to the 10^15 limit.
const TO_THE_LIMIT: usize = 1_000;

/// A customer id of `tenant` whose key maps to partition 0.
fn partition_zero_customer(tenant: &str, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|c| partition_for(format!("{tenant}:{c}").as_bytes(), PARTITIONS as u32) == 0)
        .unwrap()
}

fn envelope(
    event_id: &str,
    event_type: &str,
    tenant: &str,
    branch: &str,
    customer: &str,
    body: serde_json::Value,
) -> Vec<u8> {
    json!({
        "schema_version": 1, "event_id": event_id, "type": event_type, "tenant": tenant, "branch": branch,
        "customer": customer, "occurred_at": "2026-11-23T12:00:00Z", "body": body
    })
    .to_string()
    .into_bytes()
}

fn adjust(event_id: &str, customer: &str, amount: &str) -> Vec<u8> {
    envelope(
        event_id,
        "balance.adjust",
        "cafe-central",
        "downtown",
        customer,
        json!({"account": "cashback", "amount": amount, "description": "poison test"}),
    )
}

fn huge_order(event_id: &str, customer: &str, amount: &str) -> Vec<u8> {
    envelope(
        event_id,
        "order.paid",
        "cafe-central",
        "downtown",
        customer,
        json!({
            "order_id": "o", "sale_type": "dine_in",
            "lines": [{"product": "p", "category": "food", "quantity": "1", "amount": amount}],
            "payments": [{"method": "card", "amount": amount}],
            "total": amount, "currency": "AZN"
        }),
    )
}

/// How a poison record must end.
#[derive(Debug)]
enum Expected {
    DeadLetter(&'static str),
    Rejection(&'static str, &'static str),
}

#[test]
fn poison_records_end_as_dead_letters_or_rejections_and_never_stop_a_partition() {
    let env = Env::new("poison", PARTITIONS);
    // studio-flow's yoga class earns points, so a booking sets a timer due
    // at ends_at + credit_delay: the computation that used to overflow.
    let studio = env.dir.path().join("tenants/studio-flow.toml");
    let text = std::fs::read_to_string(&studio).unwrap();
    std::fs::write(
        &studio,
        format!("{text}\n[bookings]\ncredit_delay = \"3h\"\npoints = {{ yoga = \"10\" }}\n"),
    )
    .unwrap();

    let mut rng = StdRng::seed_from_u64(0x0B01_5011);
    let mut stream: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    // Normal orders, and their accruals computed in integers.
    let mut expected: HashMap<String, String> = HashMap::new();
    for n in 0..ORDERS {
        let i = rng.gen_range(0..CUSTOMERS);
        let (tenant, branch, currency, percent, customer) = if i % 4 == 3 {
            ("studio-flow", "main", "EUR", 3, format!("s-{i}"))
        } else {
            ("cafe-central", "downtown", "AZN", 5, format!("c-{i}"))
        };
        let cents = rng.gen_range(100..100_000);
        let id = format!("ord-{n}");
        expected.insert(id.clone(), money(half_even_percent(cents, percent)));
        stream.push((
            Some(format!("{tenant}:{customer}")),
            order(&id, tenant, branch, &customer, cents, currency),
        ));
    }

    // The poison, all in partition 0, spread through the stream.
    let whale = partition_zero_customer("cafe-central", "whale");
    let spender = partition_zero_customer("cafe-central", "spender");
    let yogi = partition_zero_customer("studio-flow", "yogi");
    let key = |tenant: &str, customer: &str| Some(format!("{tenant}:{customer}"));
    let mut poison: Vec<(String, Option<String>, Vec<u8>, Expected)> = vec![
        (
            "poison-order".into(),
            key("cafe-central", &whale),
            huge_order("poison-order", &whale, DECIMAL_MAX),
            Expected::DeadLetter("out_of_range"),
        ),
        (
            "poison-adjust-1".into(),
            key("cafe-central", &whale),
            adjust("poison-adjust-1", &whale, DECIMAL_MAX),
            Expected::DeadLetter("out_of_range"),
        ),
        (
            "poison-adjust-2".into(),
            key("cafe-central", &whale),
            adjust("poison-adjust-2", &whale, DECIMAL_MAX),
            Expected::DeadLetter("out_of_range"),
        ),
        (
            "poison-booking".into(),
            key("studio-flow", &yogi),
            envelope(
                "poison-booking",
                "booking.created",
                "studio-flow",
                "main",
                &yogi,
                json!({"booking_id": "b-1", "service": "yoga",
                       "starts_at": "9999-12-31T22:00:00Z", "ends_at": "9999-12-31T23:59:59Z"}),
            ),
            Expected::DeadLetter("out_of_range"),
        ),
    ];
    for (id, key, payload, _) in &poison {
        let at = rng.gen_range(0..=stream.len());
        stream.insert(at, (key.clone(), payload.clone()));
        assert!(!expected.contains_key(id));
    }
    // A balance filled to the 10^15 limit by adjustments within the amount
    // limit: the next adjustment, and an order that would accrue on it, are
    // rejected with balance_limit. They keep their order (one key).
    let mut filling: Vec<(Option<String>, Vec<u8>)> = (0..TO_THE_LIMIT)
        .map(|n| {
            (
                key("cafe-central", &spender),
                adjust(&format!("fill-{n}"), &spender, MAX_AMOUNT),
            )
        })
        .collect();
    for (id, payload, want) in [
        (
            "over-limit-adjust",
            adjust("over-limit-adjust", &spender, "1"),
            Expected::Rejection("adjustment.rejected", "balance_limit"),
        ),
        (
            "over-limit-order",
            huge_order("over-limit-order", &spender, "100.00"),
            Expected::Rejection("redemption.rejected", "balance_limit"),
        ),
    ] {
        filling.push((key("cafe-central", &spender), payload.clone()));
        poison.push((id.to_owned(), key("cafe-central", &spender), payload, want));
    }
    // Interleave the filling run with the rest, keeping its own order.
    let mut at = 0;
    for record in filling {
        at = rng.gen_range(at..=stream.len());
        stream.insert(at, record);
        at += 1;
    }

    let dead_letters = poison.iter().filter(|p| matches!(p.3, Expected::DeadLetter(_))).count();
    // Every order accrues once, every filling adjustment is one entry, and
    // each rejection is one record.
    let accrual_records = ORDERS + TO_THE_LIMIT + (poison.len() - dead_letters);

    let p = producer();
    produce(&p, &env.input, &stream);
    let mut child = env.spawn();
    let complete = wait_until(Duration::from_secs(240), || {
        high_watermark_sum(&env, &env.accruals) >= accrual_records as i64
            && high_watermark_sum(&env, &env.dead_letter) >= dead_letters as i64
    });
    let running = child.try_wait().unwrap().is_none();
    assert!(complete, "outputs incomplete (running: {running})\n{}", env.logs());
    assert!(running, "accrue run exited on poison input\n{}", env.logs());

    let accruals = read_all(&env.accruals, PARTITIONS);
    assert_eq!(accruals.len(), accrual_records, "accruals topic record count");
    let mut ids = HashSet::new();
    let mut by_source: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for record in &accruals {
        let event = record.json();
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_owned()),
            "id published twice: {event}"
        );
        by_source
            .entry(event["source_event_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(event);
    }
    // Every normal order: exactly one accrual, of the expected amount.
    for (id, amount) in &expected {
        let events = by_source.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(events.len(), 1, "order {id}: {events:?}");
        assert_eq!(events[0]["type"], "accrual.recorded", "{id}");
        assert_eq!(events[0]["amount"].as_str(), Some(amount.as_str()), "order {id}");
    }
    // The filling adjustments brought the balance to the limit exactly.
    let last_fill = &by_source[&format!("fill-{}", TO_THE_LIMIT - 1)][0];
    assert_eq!(last_fill["balance"], "1000000000000000.00");

    let dead = read_all(&env.dead_letter, PARTITIONS);
    assert_eq!(dead.len(), dead_letters, "dead-letter count");
    for (id, _, payload, want) in &poison {
        match want {
            Expected::DeadLetter(kind) => {
                let found = dead.iter().find(|r| &r.payload == payload);
                let Some(found) = found else {
                    panic!("no dead letter for {id}")
                };
                assert_eq!(found.partition, 0, "{id}");
                assert_eq!(found.header("accrue-error-kind"), Some(*kind), "{id}");
                assert!(!by_source.contains_key(id.as_str()), "{id} also has outputs");
            }
            Expected::Rejection(output_type, code) => {
                let events = by_source.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
                assert_eq!(events.len(), 1, "{id}: {events:?}");
                assert_eq!(events[0]["type"], *output_type, "{id}");
                assert_eq!(events[0]["reason_code"], *code, "{id}");
                assert_eq!(events[0]["source"]["partition"], 0, "{id}");
            }
        }
    }

    let logs = env.logs();
    assert!(child.try_wait().unwrap().is_none(), "accrue run exited\n{logs}");
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
    let full: String = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!full.contains("panicked"), "a thread panicked\n{full}");
    eprintln!(
        "poison: {} records, {} orders applied, {} poison records refused ({} dead letters, the rest rejections)",
        stream.len(),
        expected.len(),
        poison.len(),
        dead.len()
    );
}
