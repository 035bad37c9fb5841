//! Delayed service points through the real broker: bookings set durable
//! timers; the processor is killed with SIGKILL between booking and due
//! time, and again during the burst of due timers; every booking is still
//! credited exactly once, with the right points, and cancellations,
//! no-shows and reschedules are honoured.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use accrue::state::{keys, Family, RocksStore, Store};
use rust_decimal::Decimal;
use serde_json::json;

use common::{kill9, produce, producer, read_all, rfc3339, terminate, wait_until, Env};

const STUDIO: &str = r#"
id = "studio"
currency = "EUR"
[branches.main]
[bookings]
credit_delay = "10s"
points = { yoga = "10", massage = "25" }
"#;

const BOOKINGS: usize = 300;
const CUSTOMERS: usize = 60;

fn event(id: &str, customer: &str, event_type: &str, body: serde_json::Value) -> (Option<String>, Vec<u8>) {
    let value = json!({
        "schema_version": 1, "event_id": id, "type": event_type, "tenant": "studio", "branch": "main",
        "customer": customer, "occurred_at": rfc3339(time::OffsetDateTime::now_utc()), "body": body,
    });
    (Some(format!("studio:{customer}")), value.to_string().into_bytes())
}

fn counter(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn credits(env: &Env) -> Vec<serde_json::Value> {
    read_all(&env.accruals, env.partitions)
        .iter()
        .map(common::Record::json)
        .filter(|e| e["entry_type"] == "service_points")
        .collect()
}

#[test]
fn every_booking_is_credited_once_across_sigkills() {
    let env = Env::new("timers", 4);
    std::fs::write(env.dir.path().join("tenants/studio.toml"), STUDIO).unwrap();

    let now = time::OffsetDateTime::now_utc();
    let mut input = Vec::new();
    let mut expected: HashMap<String, (String, i64)> = HashMap::new(); // created event -> (customer, points)
    for n in 0..BOOKINGS {
        let customer = format!("m-{}", n % CUSTOMERS);
        let (service, points) = if n % 3 == 0 { ("massage", 25) } else { ("yoga", 10) };
        let created = format!("create-{n}");
        input.push(event(
            &created,
            &customer,
            "booking.created",
            json!({"booking_id": format!("bk-{n}"), "service": service,
                   "starts_at": rfc3339(now - Duration::from_secs(3600)), "ends_at": rfc3339(now)}),
        ));
        match n % 10 {
            // Cancelled or no-show before the due time: no credit.
            1 => input.push(event(
                &format!("cancel-{n}"),
                &customer,
                "booking.cancelled",
                json!({"booking_id": format!("bk-{n}")}),
            )),
            2 => input.push(event(
                &format!("noshow-{n}"),
                &customer,
                "booking.no_show",
                json!({"booking_id": format!("bk-{n}")}),
            )),
            // Moved 3 seconds later: credited once, at the new time.
            3 => {
                input.push(event(
                    &format!("move-{n}"),
                    &customer,
                    "booking.rescheduled",
                    json!({"booking_id": format!("bk-{n}"), "starts_at": rfc3339(now), "ends_at": rfc3339(now + Duration::from_secs(3))}),
                ));
                expected.insert(created, (customer, points));
            }
            _ => {
                expected.insert(created, (customer, points));
            }
        }
    }
    produce(&producer(), &env.input, &input);

    // Run until every booking event is applied, then kill before the due time
    // (10 s after `now`: joining the group and applying 300 bookings must fit
    // in it, also on a loaded machine; 4 s did not, once).
    let mut child = env.spawn();
    let applied = wait_until(Duration::from_secs(30), || {
        counter(&common::scrape(env.http_port), "accrue_events_processed_total") >= input.len() as f64
    });
    assert!(applied, "bookings not applied\n{}", env.logs());
    assert!(credits(&env).is_empty(), "nothing is due yet");
    kill9(&mut child);

    // Down past the due time: the timers fire late, on start-up. Kill again
    // in the middle of that burst.
    std::thread::sleep(Duration::from_secs(11));
    env.new_group();
    let mut child = env.spawn();
    // Kill the moment the first timers fire: before or just after their
    // batch commits, before everything is published.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counter(&common::scrape(env.http_port), "accrue_timers_fired_total") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no timer fired after restart\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(&mut child);
    let after_second_kill = credits(&env).len();

    env.new_group();
    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(60), || credits(&env).len() >= expected.len());
    assert!(
        done,
        "credits incomplete: {} of {}\n{}",
        credits(&env).len(),
        expected.len(),
        env.logs()
    );
    std::thread::sleep(Duration::from_secs(4)); // anything extra would show now
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    let credits = credits(&env);
    assert_eq!(credits.len(), expected.len(), "each booking credited exactly once");
    let mut seen = HashSet::new();
    let mut per_customer: HashMap<String, i64> = HashMap::new();
    for credit in &credits {
        let source = credit["source_event_id"].as_str().unwrap().to_owned();
        assert!(seen.insert(source.clone()), "{source} credited twice");
        let (customer, points) = expected
            .get(&source)
            .unwrap_or_else(|| panic!("{source} must not be credited"));
        assert_eq!(credit["customer"].as_str(), Some(customer.as_str()));
        assert_eq!(credit["amount"].as_str(), Some(points.to_string().as_str()));
        *per_customer.entry(customer.clone()).or_default() += points;
    }

    let store = RocksStore::open_read_only(&env.state).unwrap();
    for p in 0..env.partitions as u32 {
        let prefix = keys::partition_prefix(p);
        assert!(
            store.scan(Family::Timers, &prefix, &prefix, 10).unwrap().is_empty(),
            "timers left in partition {p}"
        );
    }
    let mut balances: HashMap<String, i64> = HashMap::new();
    for p in 0..env.partitions as u32 {
        for customer in per_customer.keys() {
            if let Some(raw) = store
                .get(
                    Family::Balances,
                    &keys::balance(p, "studio", customer, "service_points"),
                )
                .unwrap()
            {
                let b = keys::decode_decimal(&raw).unwrap();
                balances.insert(customer.clone(), b.trunc().to_string().parse().unwrap());
                assert_eq!(b.fract(), Decimal::ZERO);
            }
        }
    }
    assert_eq!(balances, per_customer, "service-point balances");
    eprintln!(
        "timers test: {BOOKINGS} bookings, {} credits expected and made once, 2 SIGKILLs ({} credits published before the second)",
        expected.len(),
        after_second_kill
    );
}
