//! Property test: arbitrary envelopes of every event type, with extreme
//! decimals (up to `Decimal::MAX`, 28 decimal places, negative zero), extreme
//! dates, huge arrays and random bytes, against state seeded with extreme
//! balances, orders and bookings, through decode, rules, apply and commit,
//! then due timers and the internal commands the events sent.
//!
//! Nothing may panic, and each input must end exactly one way: applied
//! (ledger entries, nothing, or a no-op duplicate), rejected (one rejection
//! output and no entry) or dead-lettered (one dead letter and nothing else).

use std::cell::RefCell;
use std::path::Path;
use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::contract::limits::{MAX_AMOUNT, MAX_BALANCE, MAX_GROUPS, MAX_LINES, MAX_PAYMENTS};
use crate::rules::{BookingState, Movement};
use crate::state::MemoryStore;

const TOPIC: &str = "orders";
const P: u32 = 0;
/// 2026-11-23T12:00:00Z in Unix milliseconds: the seeded booking's due time.
const NOON: i64 = 1_795_435_200_000;
const CASES: u32 = 2_000;
/// The runner's seed (ChaCha takes 32 bytes).
const SEED: [u8; 32] = *b"accrue: poison never stops a run";

/// The shipped local tenants: every program type, a referral program, a
/// partnership with a shared deposit, bookings and gift cards.
fn tenants() -> Arc<Tenants> {
    static TENANTS: OnceLock<Arc<Tenants>> = OnceLock::new();
    TENANTS
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
            match Config::load(&path) {
                Ok(config) => Arc::new(config.tenants),
                Err(e) => panic!("config/local must load: {e}"),
            }
        })
        .clone()
}

fn extreme_decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        Just(Decimal::MAX),
        Just(Decimal::MIN),
        Just(MAX_AMOUNT),
        Just(MAX_AMOUNT + Decimal::new(1, 2)),
        Just(MAX_BALANCE),
        Just(Decimal::new(1, 28)),
        Just(Decimal::from_parts(0, 0, 0, true, 2)),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28)
            .prop_map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(lo, mid, hi, negative, scale)),
    ]
}

/// Mostly ordinary money, sometimes anything a `Decimal` holds.
fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        12 => (0i64..200_000, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s)),
        1 => extreme_decimal(),
    ]
}

/// Amount text, valid or not.
fn amount_text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => decimal().prop_map(|d| d.to_string()),
        1 => prop::sample::select(vec![
            "-0", "-0.00", "79228162514264337593543950336", "-79228162514264337593543950336",
            "0.00000000000000000000000000001", "1e28", "1E-28", "NaN", "", "1.", ".5", "+1", "1,000",
        ])
        .prop_map(str::to_owned),
        1 => "-?[0-9]{1,40}(\\.[0-9]{1,30})?",
    ]
}

/// An amount field: a string mostly, sometimes a JSON number or garbage.
fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        30 => amount_text().prop_map(Value::String),
        1 => amount_text().prop_map(|t| serde_json::from_str(&t).unwrap_or(Value::Null)),
        1 => Just(json!(["80.00"])),
    ]
}

fn date() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => (0i64..86_400 * 60).prop_map(|s| {
            let t = time::OffsetDateTime::from_unix_timestamp(1_795_435_200 + s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            t.format(&Rfc3339).unwrap_or_default()
        }),
        2 => prop::sample::select(vec![
            "0001-01-01T00:00:00Z", "0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-23:59", "1999-12-31T23:59:59.999999999Z", "2000-01-01T00:00:00Z",
            "2099-12-31T23:59:59.999999999Z", "2100-01-01T00:00:00Z", "2016-12-31T23:59:60Z",
            "2026-06-30T23:59:60+00:00", "2026-11-23T25:00:00Z", "2026-02-30T12:00:00Z", "1970-01-01T00:00:00Z",
            "yesterday", "",
        ])
        .prop_map(str::to_owned),
        1 => (0u32..=9999, 0u32..=13, 0u32..=32, 0u32..=24, 0u32..=61).prop_map(|(y, mo, d, h, s)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:00:{s:02}Z")
        }),
    ]
}

fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => "e[0-9]{1,3}",
        8 => Just("e0".to_owned()),
        1 => Just("x".repeat(129)),
    ]
}

#[derive(Debug, Clone)]
struct Line {
    product: &'static str,
    category: &'static str,
    quantity: String,
    amount: Decimal,
}

fn line() -> impl Strategy<Value = Line> {
    (
        prop::sample::select(vec![
            ("latte", "coffee"),
            ("cake", "dessert"),
            ("cigarettes", "tobacco"),
        ]),
        prop_oneof![4 => Just("1".to_owned()), 1 => amount_text()],
        decimal(),
    )
        .prop_map(|((product, category), quantity, amount)| Line {
            product,
            category,
            quantity,
            amount,
        })
}

/// An order or visit body. Most add up, so they reach the rules; `huge`
/// repeats the lines or payments past the contract's limits.
fn order_body(kind: &'static str) -> impl Strategy<Value = (String, Value)> {
    (
        prop_oneof![30 => vec(line(), 1..4), 1 => Just(Vec::new())],
        (0usize..6, decimal()),
        prop_oneof![40 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        prop_oneof![
            8 => Just(Value::Null),
            1 => Just(json!({"referrer_phone": "+994501110001"})),
            1 => Just(json!({"referrer_phone": "+000"})),
            1 => Just(json!({"partner": {"tenant": "bistro-nord", "phone": "+994501110001"}})),
            1 => Just(json!({"partner": {"tenant": "cafe-central", "phone": "+994501110001"}})),
        ],
        amount(),
    )
        .prop_map(move |(mut lines, (mode, split), shape, extra, odd_total)| {
            if shape == 1 && !lines.is_empty() {
                lines = vec![lines[0].clone(); MAX_LINES + 1];
            }
            let total = lines
                .iter()
                .try_fold(Decimal::ZERO, |sum, l| sum.checked_add(l.amount))
                .unwrap_or(Decimal::MAX);
            let x = split.min(total).max(Decimal::ZERO);
            let rest = total.checked_sub(x).unwrap_or_default();
            let method = ["cashback", "bonus", "deposit", "discount", "card"][mode % 5];
            let mut payments = if mode == 0 {
                vec![json!({"method": "card", "amount": total.to_string()})]
            } else {
                let mut first = json!({"method": method, "amount": x.to_string()});
                if mode == 5 {
                    first = json!({"method": "bonus", "account": "coffee-bonus", "amount": x.to_string()});
                }
                vec![first, json!({"method": "cash", "amount": rest.to_string()})]
            };
            if shape == 2 {
                let zero = json!({"method": "card", "amount": "0"});
                payments.extend(std::iter::repeat_n(zero, MAX_PAYMENTS));
            }
            let lines: Vec<Value> = lines
                .iter()
                .map(|l| {
                    json!({"product": l.product, "category": l.category, "quantity": l.quantity,
                           "amount": l.amount.to_string()})
                })
                .collect();
            let total = if shape == 3 {
                odd_total
            } else {
                Value::String(total.to_string())
            };
            let id = if kind == "visit.completed" {
                "visit_id"
            } else {
                "order_id"
            };
            let mut body = json!({id: "o-1", "sale_type": "dine_in", "lines": lines, "payments": payments,
                                  "total": total, "currency": "$CUR"});
            if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
                map.extend(more.clone());
            }
            (kind.to_owned(), body)
        })
}

fn refund_body() -> impl Strategy<Value = (String, Value)> {
    (
        prop_oneof![Just("seeded-order".to_owned()), Just("e0".to_owned()), "e[0-9]{1,3}"],
        amount(),
    )
        .prop_map(|(original, amount)| {
            (
                "order.refunded".to_owned(),
                json!({"refund_id": "r-1", "original_event_id": original, "amount": amount, "currency": "$CUR"}),
            )
        })
}

fn upsert_body() -> impl Strategy<Value = (String, Value)> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![10 => Just(vec!["Regulars".to_owned()]), 1 => Just(vec!["g".to_owned(); MAX_GROUPS + 1])],
        prop::option::of(amount()),
        prop::option::of(prop_oneof![Just("+994501110001"), Just("+1")]),
    )
        .prop_map(|(registered, consent, groups, percent, phone)| {
            let mut body = json!({"registered": registered, "marketing_consent": consent, "groups": groups,
                                  "phone": phone});
            if let (Some(p), Some(map)) = (percent, body.as_object_mut()) {
                map.insert("accrual_percent".into(), p);
            }
            ("customer.upserted".to_owned(), body)
        })
}

fn adjust_body() -> impl Strategy<Value = (String, Value)> {
    (
        prop::sample::select(vec![
            "cashback",
            "bonus",
            "coffee-bonus",
            "service_points",
            "deposit",
            "nope",
        ]),
        decimal(),
        any::<bool>(),
        prop_oneof![16 => Just("fix".to_owned()), 1 => Just(String::new()), 1 => Just("d".repeat(501))],
        amount(),
        0u8..8,
    )
        .prop_map(|(account, value, negative, description, odd, pick)| {
            let amount = if pick == 0 {
                odd
            } else {
                let signed = if negative { -value } else { value };
                Value::String(signed.to_string())
            };
            (
                "balance.adjust".to_owned(),
                json!({"account": account, "amount": amount, "description": description, "operator": "op"}),
            )
        })
}

/// A booking's start and end: mostly an hour-long appointment.
fn span() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        6 => (0i64..86_400 * 60).prop_map(|s| {
            let at = |secs: i64| {
                time::OffsetDateTime::from_unix_timestamp(1_795_435_200 + secs)
                    .ok()
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_default()
            };
            (at(s), at(s + 3_600))
        }),
        1 => (date(), date()),
    ]
}

fn booking_body() -> impl Strategy<Value = (String, Value)> {
    (
        0u8..4,
        prop::sample::select(vec!["b1", "b2", "seeded-b"]),
        prop::sample::select(vec!["yoga-class", "massage-60", "sauna"]),
        span(),
    )
        .prop_map(|(kind, id, service, (starts, ends))| match kind {
            0 => (
                "booking.created".to_owned(),
                json!({"booking_id": id, "service": service, "starts_at": starts, "ends_at": ends}),
            ),
            1 => (
                "booking.rescheduled".to_owned(),
                json!({"booking_id": id, "starts_at": starts, "ends_at": ends}),
            ),
            2 => ("booking.cancelled".to_owned(), json!({"booking_id": id})),
            _ => ("booking.no_show".to_owned(), json!({"booking_id": id})),
        })
}

fn body() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        8 => order_body("order.paid"),
        2 => order_body("visit.completed"),
        4 => refund_body(),
        3 => upsert_body(),
        6 => adjust_body(),
        2 => prop::sample::select(vec!["gc-25", "gc-50", "none"])
            .prop_map(|card| ("giftcard.exchange".to_owned(), json!({"gift_card": card}))),
        6 => booking_body(),
        1 => Just(("order.teleported".to_owned(), json!({}))),
    ]
}

/// One input record: its key and value bytes.
#[derive(Debug, Clone)]
struct Input {
    key: Option<String>,
    payload: Vec<u8>,
    /// Commit the batch after this record.
    commit: bool,
}

fn envelope() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    (
        event_id(),
        prop::sample::select(vec![
            ("cafe-central", "downtown", "AZN"),
            ("cafe-central", "downtown", "AZN"),
            ("cafe-central", "downtown", "AZN"),
            ("cafe-central", "downtown", "AZN"),
            ("cafe-central", "airport", "AZN"),
            ("studio-flow", "main", "EUR"),
            ("studio-flow", "main", "EUR"),
            ("studio-flow", "main", "EUR"),
            ("studio-flow", "main", "EUR"),
            ("bistro-nord", "center", "AZN"),
            ("bistro-nord", "center", "AZN"),
            ("cafe-central", "moon", "AZN"),
            ("nobody", "x", "XXX"),
        ]),
        prop::sample::select(vec!["c-1001", "c-1002", "s-77"]),
        date(),
        body(),
        prop_oneof![40 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
    )
        .prop_map(
            |(event_id, (tenant, branch, currency), customer, occurred_at, (event_type, mut body), mangle)| {
                if let Some(cur) = body.get_mut("currency") {
                    *cur = Value::String(if mangle == 3 { "azn".into() } else { currency.into() });
                }
                let envelope = json!({"schema_version": 1, "event_id": event_id, "type": event_type, "tenant": tenant,
                                  "branch": branch, "customer": customer, "occurred_at": occurred_at, "body": body});
                let key = match mangle {
                    1 => None,
                    2 => Some(format!("{tenant}:someone-else")),
                    _ => Some(format!("{tenant}:{customer}")),
                };
                let mut bytes = envelope.to_string().into_bytes();
                if mangle == 2 && bytes.len() > 40 {
                    // Truncated JSON as well as a wrong key.
                    bytes.truncate(bytes.len() / 2);
                }
                (key, bytes)
            },
        )
}

fn input() -> impl Strategy<Value = Input> {
    (
        prop_oneof![
            60 => envelope(),
            1 => vec(any::<u8>(), 0..200).prop_map(|b| (Some("cafe-central:c-1001".to_owned()), b)),
        ],
        any::<bool>(),
    )
        .prop_map(|((key, payload), commit)| Input { key, payload, commit })
}

/// Extreme state the case starts from, as an older build (or a bad
/// migration) could have left it: balances, an order to refund, a booking
/// whose credit is due.
#[derive(Debug, Clone)]
struct Seed {
    balances: Vec<(usize, Decimal)>,
    order_total: Decimal,
    order_accrual: Decimal,
    booking_points: Decimal,
}

const SLOTS: [(&str, &str, &str); 5] = [
    ("cafe-central", "c-1001", "cashback"),
    ("cafe-central", "c-1001", "coffee-bonus"),
    ("cafe-central", "c-1001", "deposit"),
    ("studio-flow", "s-77", "service_points"),
    ("bistro-nord", "c-1001", "deposit"),
];

fn seed() -> impl Strategy<Value = Seed> {
    let near = prop_oneof![
        2 => Just(Decimal::MAX),
        2 => Just(Decimal::MIN),
        1 => Just(MAX_BALANCE),
        1 => Just(-MAX_BALANCE),
        2 => Just(MAX_BALANCE - Decimal::ONE),
        1 => Just(Decimal::from(500)),
    ];
    (
        vec((0..SLOTS.len(), near), 0..5),
        prop_oneof![Just(Decimal::MAX), Just(MAX_AMOUNT), Just(Decimal::new(8000, 2))],
        prop_oneof![Just(Decimal::MAX), Just(MAX_BALANCE), Just(Decimal::new(400, 2))],
        prop_oneof![Just(Decimal::MAX), Just(MAX_BALANCE), Just(Decimal::from(10))],
    )
        .prop_map(|(balances, order_total, order_accrual, booking_points)| Seed {
            balances,
            order_total,
            order_accrual,
            booking_points,
        })
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn write_seed(store: &MemoryStore, seed: &Seed) {
    let mut set = WriteSet::new();
    for (slot, value) in &seed.balances {
        let (tenant, customer, account) = SLOTS[*slot];
        set.put(
            Family::Balances,
            keys::balance(P, tenant, customer, account),
            keys::encode_decimal(*value).to_vec(),
        );
    }
    let order = OrderRecord {
        total: seed.order_total,
        refunded: Decimal::ZERO,
        accruals: vec![Movement {
            account: "cashback".into(),
            program: "cashback".into(),
            amount: seed.order_accrual,
            reversed: Decimal::ZERO,
            expired: Decimal::ZERO,
        }],
        redemptions: vec![Movement {
            account: "deposit".into(),
            program: "redemption".into(),
            amount: seed.order_accrual,
            reversed: Decimal::ZERO,
            expired: Decimal::ZERO,
        }],
    };
    set.put(
        Family::Orders,
        keys::order(P, "cafe-central", "c-1001", "seeded-order"),
        json_bytes(&order),
    );
    let booking = Booking {
        customer: "s-77".into(),
        branch: "main".into(),
        service: "yoga-class".into(),
        points: seed.booking_points,
        due_ms: Some(NOON),
        state: BookingState::Scheduled,
        event_id: "seeded".into(),
        source_topic: TOPIC.into(),
        source_offset: -1,
    };
    set.put(
        Family::Bookings,
        keys::booking(P, "studio-flow", "s-77", "seeded-b"),
        json_bytes(&booking),
    );
    set.put(
        Family::Timers,
        keys::timer(P, NOON, "studio-flow", "s-77", "seeded-b"),
        Vec::new(),
    );
    if let Err(e) = store.write(&set, Durability::Synced) {
        panic!("seeding the memory store: {e}");
    }
}

/// How an input ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Applied,
    Rejected(String),
    DeadLettered(String),
}

/// The outbox records of partition `P` with sequences in `range`.
fn outputs(store: &MemoryStore, range: std::ops::Range<u64>) -> Vec<OutboxRecord> {
    let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX);
    store
        .scan(
            Family::Outbox,
            &keys::partition_prefix(P),
            &keys::outbox(P, range.start),
            len,
        )
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| crate::outbox::load(store, P, keys::parse_outbox(&k)?.1, &v).ok())
        .collect()
}

fn header<'a>(record: &'a OutboxRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// Classifies one applied record by what it wrote; an error names a broken
/// invariant.
fn classify(applied: &Applied, written: &[OutboxRecord]) -> Result<End, String> {
    let dead: Vec<&OutboxRecord> = written
        .iter()
        .filter(|r| r.destination == Destination::DeadLetter)
        .collect();
    let events: Vec<Value> = written
        .iter()
        .filter(|r| r.destination == Destination::Accruals)
        .map(|r| serde_json::from_slice(&r.payload).unwrap_or(Value::Null))
        .collect();
    let entries = events.iter().filter(|e| e["type"] == AccrualEvent::TYPE).count();
    let rejections: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.ends_with(".rejected")))
        .collect();
    match applied {
        Applied::DeadLettered(kind) => {
            let kinds: Vec<Option<&[u8]>> = dead.iter().map(|r| header(r, contract::HEADER_ERROR_KIND)).collect();
            if kinds != [Some(kind.as_str().as_bytes())] || written.len() != 1 {
                return Err(format!("dead letter {kind} wrote {} records: {kinds:?}", written.len()));
            }
            Ok(End::DeadLettered(kind.as_str().to_owned()))
        }
        Applied::Processed(n) => {
            if !dead.is_empty() || *n != entries || rejections.len() > 1 {
                return Err(format!(
                    "processed({n}) wrote {entries} entries, {} rejections, {} dead letters",
                    rejections.len(),
                    dead.len()
                ));
            }
            match rejections.first() {
                Some(_) if entries > 0 => Err(format!("a rejection came with {entries} entries")),
                Some(r) => Ok(End::Rejected(r["reason_code"].as_str().unwrap_or_default().to_owned())),
                None => Ok(End::Applied),
            }
        }
        Applied::Duplicate if written.is_empty() => Ok(End::Applied),
        other => Err(format!("{other:?} wrote {} records", written.len())),
    }
}

/// Runs one case; returns how each input (and each internal command) ended.
fn run_case(seed: &Seed, inputs: &[Input]) -> Result<Vec<End>, String> {
    let store = Arc::new(MemoryStore::default());
    write_seed(&store, seed);
    let mut processor = Processor::new(store.clone(), tenants(), Arc::from(&b"key"[..]));
    let mut ends = Vec::new();
    let mut batch = Batch::default();
    let mut pending: Vec<(Applied, std::ops::Range<u64>)> = Vec::new();
    let mut internal_offset = 0i64;
    for (offset, input) in (0i64..).zip(inputs) {
        let record = InputRecord {
            topic: TOPIC,
            partition: P,
            offset,
            key: input.key.as_deref().map(str::as_bytes),
            payload: Some(&input.payload),
        };
        let before = peek_seq(&batch, P).max(read_next_seq(store.as_ref(), P).unwrap_or(0));
        let applied = processor
            .apply(&mut batch, &record)
            .map_err(|e| format!("apply: {e}"))?;
        pending.push((applied, before..peek_seq(&batch, P)));
        if input.commit || offset + 1 == inputs.len() as i64 {
            processor
                .commit(std::mem::take(&mut batch))
                .map_err(|e| format!("commit: {e}"))?;
            for (applied, range) in pending.drain(..) {
                let written = outputs(&store, range.clone());
                ends.push(classify(&applied, &written)?);
                // The internal commands it sent, applied at their target.
                for command in written.iter().filter(|r| r.destination == Destination::Internal) {
                    let record = InputRecord {
                        topic: "internal",
                        partition: P,
                        offset: internal_offset,
                        key: command.key.as_deref(),
                        payload: Some(&command.payload),
                    };
                    internal_offset += 1;
                    let mut batch = Batch::default();
                    let start = peek_seq(&batch, P).max(read_next_seq(store.as_ref(), P).unwrap_or(0));
                    let applied = processor
                        .apply(&mut batch, &record)
                        .map_err(|e| format!("command: {e}"))?;
                    let end = peek_seq(&batch, P);
                    processor.commit(batch).map_err(|e| format!("commit: {e}"))?;
                    ends.push(classify(&applied, &outputs(&store, start..end))?);
                }
            }
            // Every due timer fires; one pass must leave none behind (a
            // refused credit drops its timer instead of firing forever).
            let mut timers = Batch::default();
            processor
                .fire_due(&mut timers, P, i64::MAX, 10_000)
                .map_err(|e| format!("fire: {e}"))?;
            processor.commit(timers).map_err(|e| format!("commit timers: {e}"))?;
            let left = store
                .scan(
                    Family::Timers,
                    &keys::partition_prefix(P),
                    &keys::partition_prefix(P),
                    10,
                )
                .unwrap_or_default();
            if !left.is_empty() {
                return Err(format!("{} timers due long ago are still pending", left.len()));
            }
        }
    }
    check_ledger(&store, seed)?;
    Ok(ends)
}

/// Every ledger entry left its balance within the limit, and every stored
/// balance is its seed plus its entries.
fn check_ledger(store: &MemoryStore, seed: &Seed) -> Result<(), String> {
    let mut sums: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for (slot, value) in &seed.balances {
        let (t, c, a) = SLOTS[*slot];
        sums.insert((t.into(), c.into(), a.into()), *value);
    }
    for record in outputs(store, 0..u64::MAX) {
        if record.destination != Destination::Accruals {
            continue;
        }
        let event: Value = serde_json::from_slice(&record.payload).unwrap_or(Value::Null);
        if event["type"] != AccrualEvent::TYPE {
            continue;
        }
        let field = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
        let parse = |name: &str| field(name).parse::<Decimal>().map_err(|e| format!("{name}: {e}"));
        let (amount, balance) = (parse("amount")?, parse("balance")?);
        if balance.abs() > MAX_BALANCE {
            return Err(format!("an entry left a balance of {balance}, beyond the limit"));
        }
        let sum = sums
            .entry((field("tenant"), field("customer"), field("account")))
            .or_default();
        *sum = sum.checked_add(amount).ok_or("ledger sum overflow")?;
        if *sum != balance {
            return Err(format!("entry balance {balance} is not the running sum {sum}"));
        }
    }
    for ((tenant, customer, account), sum) in sums {
        let stored = store
            .get(Family::Balances, &keys::balance(P, &tenant, &customer, &account))
            .ok()
            .flatten()
            .and_then(|raw| keys::decode_decimal(&raw))
            .unwrap_or_default();
        if stored != sum {
            return Err(format!(
                "{tenant}/{customer}/{account}: stored {stored}, ledger says {sum}"
            ));
        }
    }
    Ok(())
}

#[test]
fn every_input_is_applied_rejected_or_dead_lettered_and_nothing_panics() {
    // The nested strategies need more stack than a test thread has in a
    // debug build.
    let run = std::thread::Builder::new().stack_size(256 << 20).spawn(run_property);
    match run.map(std::thread::JoinHandle::join) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("cannot start the property thread: {e}"),
    }
}

fn run_property() {
    let tally: RefCell<BTreeMap<End, usize>> = RefCell::new(BTreeMap::new());
    // A fixed seed: the same 2,000 cases every run, so the coverage check
    // below cannot flake. Change the seed to explore others.
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases: CASES,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let result = runner.run(&(seed(), vec(input(), 1..10)), |(seed, inputs)| {
        let ends = run_case(&seed, &inputs).map_err(TestCaseError::fail)?;
        let mut tally = tally.borrow_mut();
        for end in ends {
            *tally.entry(end).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner();
    let count = |end: End| tally.get(&end).copied().unwrap_or_default();
    let total: usize = tally.values().sum();
    // The generator must reach every way an input can end, including the
    // new limits, or the property says little.
    for end in [
        End::Applied,
        End::Rejected("amount_overflow".into()),
        End::Rejected("balance_limit".into()),
        End::Rejected("insufficient_balance".into()),
        End::DeadLettered("out_of_range".into()),
        End::DeadLettered("malformed_json".into()),
        End::DeadLettered("unbalanced".into()),
    ] {
        assert!(
            count(end.clone()) > 0,
            "no input ended as {end:?} in {total}: {tally:?}"
        );
    }
    let rejected: usize = tally
        .iter()
        .filter(|(e, _)| matches!(e, End::Rejected(_)))
        .map(|(_, n)| n)
        .sum();
    assert!(
        count(End::Applied) * 10 > total,
        "too few inputs are applied: {tally:?}"
    );
    assert!(
        (count(End::Applied) + rejected) * 2 > total,
        "too few inputs reach the rules: {tally:?}"
    );
    eprintln!(
        "{total} inputs: {} applied, {rejected} rejected, the rest dead-lettered; {tally:?}",
        count(End::Applied)
    );
}
