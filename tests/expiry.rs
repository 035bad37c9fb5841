//! Points expiry through the real broker: 300 customers earn points that
//! expire 40 s after each credit (and points of a second program that keep
//! for an hour), spend some of them, and the processor is killed with
//! SIGKILL before anything is due, again the moment the first overdue
//! expiry is booked, and again once the first of them reaches the broker.
//! Every expiry is published exactly once, for what was left of
//! its credit (computed here, oldest credits spent first), each warning
//! once, to consenting customers only; a refund after the expiry takes back
//! the accrual less what of it expired; balances equal their ledgers, the
//! read API lists what is still to expire, and only the reviews of credits
//! still to expire are left.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "expiry/model.rs"]
mod model;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use accrue::rules::loyalty::Lots;
use accrue::state::codec::StateValue;
use accrue::state::{keys, Family, RocksStore, Store};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use time::OffsetDateTime;

use common::{kill9, produce, producer, read_all, sample, scrape, terminate, wait_until, Env};
use model::{event, scenario};

const CUSTOMERS: usize = 300;
const EXPIRE_AFTER: i64 = 40;
const WARN_BEFORE: i64 = 20;
const KEEP_FOR: i64 = 3600;
const TOKEN: &str = "shop-token-expiry-0123";

/// `points` (10%, main) expires after 40 s with a warning 20 s before;
/// `keeper` (5%, mall) credits the same account but keeps for an hour.
fn shop() -> String {
    format!(
        r#"id = "shop"
currency = "EUR"
api_tokens_sha256 = ["{}"]
[branches.main]
payment_methods = ["bonus"]
[branches.mall]
[[programs]]
id = "points"
type = "bonus"
registered_only = false
percent = "10"
branches = {{ main = "active" }}
[[programs]]
id = "keeper"
type = "bonus"
registered_only = false
percent = "5"
branches = {{ mall = "active" }}
expiry = {{ after = "{KEEP_FOR}s" }}
[expiry.bonus]
after = "{EXPIRE_AFTER}s"
warn_before = "{WARN_BEFORE}s"
"#,
        accrue::api::hash_token(TOKEN)
    )
}

fn outputs(env: &Env) -> Vec<(String, Value)> {
    read_all(&env.accruals, env.partitions)
        .iter()
        .map(|r| (r.header("accrue-id").unwrap_or_default().to_owned(), r.json()))
        .collect()
}

fn expiries(env: &Env) -> usize {
    outputs(env).iter().filter(|(_, v)| v["entry_type"] == "expiry").count()
}

fn secs(text: &Value) -> i64 {
    let text = text.as_str().unwrap();
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

fn int(text: &Value) -> i64 {
    text.as_str().unwrap().parse().unwrap()
}

#[test]
fn each_expiry_is_published_once_for_what_was_left_across_sigkills() {
    let env = Env::new("expiry", 4);
    std::fs::write(env.dir.path().join("tenants/shop.toml"), shop()).unwrap();

    // The processor is up before the credits are stamped, so the whole
    // margin before the first warning (t0 + 16 s) is for applying them.
    let mut child = env.spawn();
    let up = wait_until(Duration::from_secs(60), || {
        common::http_get(env.http_port, "/health/ready").0 == 200
    });
    assert!(up, "not ready\n{}", env.logs());
    let t0 = OffsetDateTime::now_utc().unix_timestamp();
    let (input, mut customers) = scenario(t0);
    let before_burst: i64 = customers.values().map(|c| c.ledger.len() as i64).sum();
    let started = std::time::Instant::now();
    produce(&producer(), &env.input, &input);
    let applied = wait_until(Duration::from_secs(60), || {
        sample(&scrape(env.http_port), "accrue_events_processed_total", &[]) >= input.len() as f64
    });
    assert!(applied, "events not applied\n{}", env.logs());
    let applied_in = started.elapsed();
    let first_due = t0 - 4 + EXPIRE_AFTER - WARN_BEFORE;
    assert!(
        OffsetDateTime::now_utc().unix_timestamp() < first_due,
        "applying {} events took past the first warning: the expected values assume it did not",
        input.len()
    );
    assert_eq!(expiries(&env), 0, "nothing is due yet");
    kill9(&mut child); // first kill: before anything is due

    // Down past every expiry: on restart they are all due at once. Kill in
    // the middle of that burst, as soon as the first expiry is booked.
    let last_due = t0 - 1 + EXPIRE_AFTER;
    while OffsetDateTime::now_utc().unix_timestamp() <= last_due {
        std::thread::sleep(Duration::from_millis(200));
    }
    env.new_group();
    let mut child = env.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sample(
        &scrape(env.http_port),
        "accrue_ledger_entries_total",
        &["type=\"expiry\""],
    ) < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no expiry after restart\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(&mut child);
    let before_second_kill = expiries(&env);

    // Third kill: as soon as the broker has the first of the burst's
    // outputs (after every credit's and redemption's), while the publisher
    // works through the rest.
    let published = before_burst.max(common::high_watermark_sum(&env, &env.accruals));
    env.new_group();
    let mut child = env.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while common::high_watermark_sum(&env, &env.accruals) <= published {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing published after the second restart\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(&mut child);
    let before_third_kill = outputs(&env)
        .iter()
        .filter(|(_, v)| v["entry_type"] == "expiry" || v["type"] == "points.expiring")
        .count();

    // What must expire: what is left of each expiring credit.
    let mut want_expiry: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let mut want_warning: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    for (id, c) in &mut customers {
        let balance = c.balance();
        for lot in c.lots.iter().filter(|l| l.expires && l.remaining > 0) {
            want_expiry.insert(
                (id.clone(), lot.source.clone()),
                (lot.remaining, lot.credited + EXPIRE_AFTER),
            );
            if c.consent {
                want_warning.insert((id.clone(), lot.credited + EXPIRE_AFTER), (lot.remaining, balance));
            }
        }
        let expired: Vec<i64> = c
            .lots
            .iter()
            .filter(|l| l.expires && l.remaining > 0)
            .map(|l| -l.remaining)
            .collect();
        c.ledger.extend(expired);
        let (gone, kept) = c.lots.drain(..).partition(|l| l.expires);
        (c.expired, c.lots) = (gone, kept);
    }
    assert!(want_expiry.len() > CUSTOMERS, "a burst: {}", want_expiry.len());

    env.new_group();
    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(90), || expiries(&env) >= want_expiry.len());
    assert!(
        done,
        "expiries incomplete: {} of {}\n{}",
        expiries(&env),
        want_expiry.len(),
        env.logs()
    );
    std::thread::sleep(Duration::from_secs(3)); // anything extra would show now

    // Refunds after the expiry: order `a` of every fifth customer (who had
    // spent some of its credit) refunded in full. The reversal is the
    // accrual less what of it expired: what the customer had spent of it.
    let mut refunds = Vec::new();
    let mut want_reversal: HashMap<String, i64> = HashMap::new();
    let mut partly_expired = 0;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for (id, c) in &mut customers {
        let Some(a) = c.expired.iter().find(|l| l.source.ends_with("-a")).cloned() else {
            continue;
        };
        let spent = a.amount - a.remaining;
        if id.trim_start_matches("x-").parse::<usize>().unwrap() % 5 != 2 || spent == 0 {
            continue;
        }
        let body = json!({"refund_id": "r", "original_event_id": a.source, "amount": format!("{}.00", a.euros), "currency": "EUR"});
        refunds.push(event(&format!("{id}-refund"), id, "order.refunded", "main", now, body));
        c.take_back(spent);
        c.ledger.push(-spent);
        want_reversal.insert(id.clone(), spent);
        partly_expired += usize::from(a.remaining > 0);
    }
    produce(&producer(), &env.input, &refunds);
    let reversals = || {
        outputs(&env)
            .iter()
            .filter(|(_, v)| v["entry_type"] == "reversal")
            .count()
    };
    let refunded = wait_until(Duration::from_secs(60), || reversals() >= refunds.len());
    assert!(
        refunded,
        "reversals: {} of {}\n{}",
        reversals(),
        refunds.len(),
        env.logs()
    );
    assert!(partly_expired > 0, "some refunded accruals had partly expired");

    // The read API lists what will still expire, and the CSV has the expiries.
    let port = env.http_port;
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let mut listing = 0;
    for (id, c) in &customers {
        let path = format!("/v1/tenants/shop/customers/{id}/balances");
        let (status, _, body) = common::http_exchange(port, "GET", &path, &headers, b"");
        assert_eq!(status, 200, "{body}");
        let balances: Value = serde_json::from_str(&body).unwrap();
        let listed: Vec<(i64, i64)> = balances["balances"][0]["expiring"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (int(&e["amount"]), secs(&e["expires_at"])))
            .collect();
        let wanted: Vec<(i64, i64)> = c
            .lots
            .iter()
            .filter(|l| l.remaining > 0)
            .map(|l| (l.remaining, l.credited + KEEP_FOR))
            .collect();
        assert_eq!(listed, wanted, "{id}: {body}");
        assert_eq!(balances["tier"], Value::Null, "no tiers");
        listing += usize::from(!wanted.is_empty());
    }
    assert!(
        listing > CUSTOMERS / 4,
        "{listing} customers have credits still to expire"
    );
    let (status, _, csv) = common::http_exchange(port, "GET", "/v1/tenants/shop/balances.csv", &headers, b"");
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut exported = 0;
    for row in reader.records().map(Result::unwrap) {
        let c = &customers[&row[0]];
        let next = c.lots.iter().find(|l| l.remaining > 0);
        assert_eq!(&row[1], "bonus");
        assert_eq!(row[2].parse::<i64>().unwrap(), c.balance(), "{row:?}");
        assert_eq!(&row[4], "", "no tier");
        match next {
            Some(lot) => {
                assert_eq!(secs(&Value::from(&row[5])), lot.credited + KEEP_FOR, "{row:?}");
                assert_eq!(row[6].parse::<i64>().unwrap(), lot.remaining, "{row:?}");
            }
            None => assert_eq!((&row[5], &row[6]), ("", ""), "{row:?}"),
        }
        exported += 1;
    }
    assert_eq!(exported, CUSTOMERS, "one balances.csv row per customer");
    let (status, _, csv) = common::http_exchange(
        port,
        "GET",
        "/v1/tenants/shop/ledger.csv?entry_type=expiry",
        &headers,
        b"",
    );
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), want_expiry.len(), "every expiry in the ledger CSV");
    assert!(rows.iter().all(|r| &r[6] == "expiry"));

    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    // Published: each output once, each expiry and warning as computed.
    let outputs = outputs(&env);
    let mut ids = HashSet::new();
    let mut got_expiry: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let mut got_warning: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    let mut got_reversal: HashMap<String, i64> = HashMap::new();
    let mut ledgers: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, v) in &outputs {
        assert!(ids.insert(id.clone()), "output {id} published twice");
        let customer = v["customer"].as_str().unwrap().to_owned();
        match (v["type"].as_str().unwrap(), v["entry_type"].as_str()) {
            ("accrual.recorded", Some(entry_type)) => {
                ledgers.entry(customer.clone()).or_default().push(int(&v["amount"]));
                if entry_type == "reversal" {
                    assert_eq!(
                        v["source_event_id"].as_str(),
                        Some(format!("{customer}-refund").as_str())
                    );
                    assert!(got_reversal.insert(customer, -int(&v["amount"])).is_none());
                    continue;
                }
                if entry_type != "expiry" {
                    continue;
                }
                assert_eq!(v["program"], "points");
                assert_eq!(v["account"], "bonus");
                assert_eq!(v["source"]["topic"], "");
                assert_eq!(v["source"]["offset"], -1);
                let key = (customer, v["source_event_id"].as_str().unwrap().to_owned());
                let got = (-int(&v["amount"]), secs(&v["occurred_at"]));
                assert!(got_expiry.insert(key.clone(), got).is_none(), "{key:?} expired twice");
            }
            ("points.expiring", _) => {
                let key = (customer, secs(&v["expires_at"]));
                let got = (int(&v["amount"]), int(&v["balance"]));
                assert_eq!(secs(&v["occurred_at"]), key.1 - WARN_BEFORE);
                assert!(got_warning.insert(key.clone(), got).is_none(), "{key:?} warned twice");
            }
            (other, _) => panic!("unexpected output {other}: {v}"),
        }
    }
    assert_eq!(got_expiry, want_expiry, "expiries");
    assert_eq!(got_warning, want_warning, "warnings (consenting customers only)");
    assert_eq!(got_reversal, want_reversal, "refunds never take back what expired");

    // State: balances equal the ledger and the model; only the reviews of
    // the keeper credits are left, each due when its credit expires.
    let store = RocksStore::open_read_only(&env.state).unwrap();
    let mut reviews = HashSet::new();
    for p in 0..env.partitions as u32 {
        let prefix = keys::partition_prefix(p);
        for (key, _) in store.scan(Family::Reviews, &prefix, &prefix, usize::MAX).unwrap() {
            let (due, _, customer) = keys::parse_review(&key).unwrap();
            reviews.insert((customer, due));
        }
        assert!(store.scan(Family::Outbox, &prefix, &prefix, 1).unwrap().is_empty());
    }
    let mut want_reviews = HashSet::new();
    for (id, c) in &customers {
        let published: i64 = ledgers.get(id).map_or(0, |l| l.iter().sum());
        let mut want_ledger = c.ledger.clone();
        let mut got_ledger = ledgers.get(id).cloned().unwrap_or_default();
        want_ledger.sort_unstable();
        got_ledger.sort_unstable();
        assert_eq!(got_ledger, want_ledger, "ledger of {id}");
        let (mut balance, mut lots) = (None, None);
        for p in 0..env.partitions as u32 {
            if let Some(raw) = store
                .get(Family::Balances, &keys::balance(p, "shop", id, "bonus"))
                .unwrap()
            {
                balance = keys::decode_decimal(&raw);
            }
            if let Some(raw) = store.get(Family::Lots, &keys::loyalty(p, "shop", id)).unwrap() {
                lots = Some(Lots::decode(&raw).unwrap());
            }
        }
        assert_eq!(balance, Some(Decimal::from(c.balance())), "balance of {id}");
        assert_eq!(c.balance(), published, "balance of {id} = sum of its ledger");
        // No record once every credit is gone.
        let left: Vec<(String, Decimal)> = lots
            .unwrap_or_default()
            .lots
            .iter()
            .map(|l| (l.source.clone(), l.remaining))
            .collect();
        let model: Vec<(String, Decimal)> = c
            .lots
            .iter()
            .filter(|l| l.remaining > 0)
            .map(|l| (l.source.clone(), Decimal::from(l.remaining)))
            .collect();
        assert_eq!(left, model, "lots of {id}");
        if let Some(lot) = c.lots.iter().find(|l| l.remaining > 0) {
            want_reviews.insert((id.clone(), (lot.credited + KEEP_FOR) * 1000));
        }
    }
    assert_eq!(reviews, want_reviews, "review timers left: the keeper credits' only");
    eprintln!(
        "expiry test: {} events, {} expiries and {} warnings once each, {} refunds after them ({} of partly expired accruals, {} leaving a balance below zero), 3 SIGKILLs (expiries published before the second: {}; expiries and warnings before the third: {}); produced and applied in {:.1} s of the 16 s before the first warning",
        input.len(),
        want_expiry.len(),
        want_warning.len(),
        want_reversal.len(),
        partly_expired,
        customers.values().filter(|c| c.debt > 0).count(),
        before_second_kill,
        before_third_kill,
        applied_in.as_secs_f64()
    );
}
