//! The crash test: 20,000+ orders over 500 customers and 4 partitions, the
//! processor killed with SIGKILL mid-stream several times, and every balance,
//! ledger count and published id checked against values computed here,
//! independently of accrue's rules code.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use accrue::state::{Family, RocksStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use common::{high_watermark_sum, kill9, order, produce, producer, read_all, terminate, wait_until, Env};

const ORDERS: usize = 20_000;
const CUSTOMERS: usize = 500;
const PARTITIONS: i32 = 4;
const KILLS: usize = 4;
const DUPLICATES: usize = 400;
const BAD: usize = 120;

/// Cashback in cents with half-even rounding, in integers: no Decimal, no
/// shared code with the rules module.
fn expected_cashback_cents(cents: i64, percent: i64) -> i64 {
    let scaled = cents * percent; // hundredths of a cent
    let (q, r) = (scaled / 100, scaled % 100);
    match r.cmp(&50) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
        std::cmp::Ordering::Less => q,
    }
}

struct Customer {
    tenant: &'static str,
    id: String,
    currency: &'static str,
}

#[derive(Default, Debug, PartialEq, Eq, Clone, Copy)]
struct Expect {
    cents: i64,
    entries: usize,
}

#[test]
fn sigkill_mid_stream_never_loses_or_doubles_an_accrual() {
    let env = Env::new("crash", PARTITIONS);
    let mut rng = StdRng::seed_from_u64(0x00AC_C20E);

    let customers: Vec<Customer> = (0..CUSTOMERS)
        .map(|i| {
            if i % 5 == 4 {
                Customer {
                    tenant: "studio-flow",
                    id: format!("s-{i}"),
                    currency: "EUR",
                }
            } else {
                Customer {
                    tenant: "cafe-central",
                    id: format!("c-{i}"),
                    currency: "AZN",
                }
            }
        })
        .collect();

    // The stream, and what it must produce, computed independently.
    let mut expected: HashMap<(String, String), Expect> = HashMap::new();
    let mut stream: Vec<(Option<String>, Vec<u8>)> = Vec::with_capacity(ORDERS + DUPLICATES + BAD);
    let mut valid: Vec<usize> = Vec::new();
    for n in 0..ORDERS {
        let c = &customers[rng.gen_range(0..CUSTOMERS)];
        let cents = rng.gen_range(100..50_000);
        let (branch, percent) = match c.tenant {
            "studio-flow" => ("main", Some(3)),
            _ if rng.gen_bool(0.8) => ("downtown", Some(5)),
            _ => ("airport", None), // cashback inactive there
        };
        let payload = order(&format!("ord-{n}"), c.tenant, branch, &c.id, cents, c.currency);
        if let Some(pct) = percent {
            let e = expected.entry((c.tenant.to_owned(), c.id.clone())).or_default();
            e.cents += expected_cashback_cents(cents, pct);
            e.entries += 1;
        }
        valid.push(stream.len());
        stream.push((Some(format!("{}:{}", c.tenant, c.id)), payload));
    }
    // Re-sent events (same id, same bytes) must change nothing.
    for _ in 0..DUPLICATES {
        let i = valid[rng.gen_range(0..valid.len())];
        let dup = stream[i].clone();
        let at = rng.gen_range(i + 1..=stream.len());
        stream.insert(at, dup);
    }
    // Bad input must be dead-lettered, one record each.
    for n in 0..BAD {
        let c = &customers[rng.gen_range(0..CUSTOMERS)];
        let key = Some(format!("{}:{}", c.tenant, c.id));
        let payload = match n % 4 {
            0 => b"{\"schema_version\":1,\"event_id\":".to_vec(),
            1 => order(&format!("bad-{n}"), "no-such-tenant", "x", &c.id, 1000, "AZN"),
            2 => String::from_utf8(order(&format!("bad-{n}"), c.tenant, "main", &c.id, 1000, c.currency))
                .unwrap()
                .replace("\"10.00\"", "\"-10.00\"")
                .into_bytes(),
            _ => order(
                &format!("bad-{n}"),
                c.tenant,
                "downtown",
                "someone-else",
                1000,
                c.currency,
            ),
        };
        let at = rng.gen_range(0..=stream.len());
        stream.insert(at, (key, payload));
    }
    let total_entries: usize = expected.values().map(|e| e.entries).sum();

    // Feed the stream in parts. During each of the first KILLS parts, once
    // the running processor has visibly published something of it, kill it
    // with SIGKILL at a random moment while input is still arriving, then
    // restart it.
    let stream = Arc::new(stream);
    let parts = KILLS + 2;
    let part_len = stream.len().div_ceil(parts);
    let feed = |index: usize| {
        let stream = stream.clone();
        let topic = env.input.clone();
        std::thread::spawn(move || {
            let p = producer();
            let end = ((index + 1) * part_len).min(stream.len());
            for chunk in stream[index * part_len..end].chunks(250) {
                produce(&p, &topic, chunk);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let mut child = env.spawn();
    let mut kills = 0;
    for index in 0..parts {
        let before = high_watermark_sum(&env, &env.accruals);
        let feeder = feed(index);
        if index < KILLS {
            let progressed = wait_until(Duration::from_secs(90), || {
                high_watermark_sum(&env, &env.accruals) > before
            });
            assert!(progressed, "no progress before kill {kills}\n{}", env.logs());
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            kill9(&mut child);
            kills += 1;
            assert!(
                high_watermark_sum(&env, &env.accruals) < total_entries as i64,
                "kill {kills} came after the stream was complete"
            );
            feeder.join().unwrap();
            child = env.spawn();
        } else {
            feeder.join().unwrap();
        }
    }

    let complete = wait_until(Duration::from_secs(180), || {
        high_watermark_sum(&env, &env.accruals) >= total_entries as i64
            && high_watermark_sum(&env, &env.dead_letter) >= BAD as i64
    });
    assert!(complete, "accruals did not complete\n{}", env.logs());
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop failed: {status:?}\n{}",
        env.logs()
    );

    // Output: each accrual exactly once, each bad record dead-lettered once.
    let accruals = read_all(&env.accruals, PARTITIONS);
    let mut ids = HashSet::new();
    let mut sources = HashSet::new();
    let mut published: HashMap<(String, String), Expect> = HashMap::new();
    for record in &accruals {
        let id = record.header("accrue-id").unwrap().to_owned();
        let event = record.json();
        assert_eq!(event["id"].as_str(), Some(id.as_str()));
        assert!(ids.insert(id.clone()), "accrual id {id} published twice");
        let source = event["source_event_id"].as_str().unwrap().to_owned();
        assert!(sources.insert(source.clone()), "event {source} accrued twice");
        // Output partition = source partition, and the id names it.
        assert!(id.starts_with(&format!("{}-", record.partition)));
        let amount: Decimal = event["amount"].as_str().unwrap().parse().unwrap();
        let e = published
            .entry((
                event["tenant"].as_str().unwrap().to_owned(),
                event["customer"].as_str().unwrap().to_owned(),
            ))
            .or_default();
        e.cents += to_cents(amount);
        e.entries += 1;
    }
    assert_eq!(accruals.len(), total_entries, "accrual count");
    assert_eq!(
        published, expected,
        "published accruals differ from the expected per customer"
    );

    let dead = read_all(&env.dead_letter, PARTITIONS);
    let dead_ids: HashSet<&str> = dead.iter().filter_map(|r| r.header("accrue-id")).collect();
    assert_eq!(dead.len(), BAD, "dead-letter count");
    assert_eq!(dead_ids.len(), BAD, "dead-letter ids unique");

    // State: every balance and ledger count equals the independent value.
    let store = RocksStore::open_read_only(&env.state).unwrap();
    let mut balances: HashMap<(String, String), i64> = HashMap::new();
    let mut ledger: HashMap<(String, String), usize> = HashMap::new();
    let mut owner: BTreeMap<(String, String), u32> = BTreeMap::new();
    for p in 0..PARTITIONS as u32 {
        let prefix = p.to_be_bytes();
        for (key, value) in store.scan(Family::Balances, &prefix, &prefix, usize::MAX).unwrap() {
            let (tenant, customer, account) = split3(&key[4..]);
            assert_eq!(account, "cashback");
            let balance = accrue::state::keys::decode_decimal(&value).unwrap();
            balances.insert((tenant.clone(), customer.clone()), to_cents(balance));
            assert!(
                owner.insert((tenant, customer), p).is_none(),
                "a customer's state lives in one partition"
            );
        }
        for (key, _) in store.scan(Family::Ledger, &prefix, &prefix, usize::MAX).unwrap() {
            let rest = &key[4..];
            let mut parts = rest.splitn(3, |b| *b == 0);
            let tenant = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
            let customer = String::from_utf8(parts.next().unwrap().to_vec()).unwrap();
            *ledger.entry((tenant, customer)).or_default() += 1;
        }
        let outbox_left = store.scan(Family::Outbox, &prefix, &prefix, usize::MAX).unwrap();
        assert!(outbox_left.is_empty(), "partition {p} outbox not drained at shutdown");
    }
    let mut checked = 0;
    for (customer, want) in &expected {
        assert_eq!(
            balances.get(customer).copied().unwrap_or(0),
            want.cents,
            "balance of {customer:?}"
        );
        assert_eq!(
            ledger.get(customer).copied().unwrap_or(0),
            want.entries,
            "ledger count of {customer:?}"
        );
        checked += 1;
    }
    assert_eq!(
        balances.len(),
        expected.len(),
        "no balance for a customer without accruals"
    );
    if std::env::var("ACCRUE_TEST_SHOW_LOGS").is_ok() {
        eprintln!("{}", env.logs());
    }
    eprintln!(
        "crash test: {} records ({} orders, {} duplicates, {} bad), {kills} SIGKILLs, {checked} balances and ledgers checked, {} accruals once each",
        stream.len(),
        ORDERS,
        DUPLICATES,
        BAD,
        accruals.len()
    );
}

fn to_cents(amount: Decimal) -> i64 {
    let cents = amount * Decimal::ONE_HUNDRED;
    assert!(cents.fract().is_zero(), "{amount} has sub-cent digits");
    cents.to_i64().unwrap()
}

fn split3(bytes: &[u8]) -> (String, String, String) {
    let mut parts = bytes
        .splitn(3, |b| *b == 0)
        .map(|s| String::from_utf8(s.to_vec()).unwrap());
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}
