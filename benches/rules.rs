//! Criterion benches of the pure core: decoding `order.paid`, and rule
//! evaluation of a 5-line order against a tenant with 5 programs.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;

use accrue::contract;
use accrue::programs::TenantConfig;
use accrue::rules::{self, Customer};

const ORDER: &str = r#"{"schema_version":1,"event_id":"ord-1","type":"order.paid","tenant":"cafe-central",
"branch":"downtown","customer":"c-1001","occurred_at":"2026-11-23T12:00:00Z","body":{"order_id":"o-1",
"sale_type":"dine_in","lines":[
{"product":"latte","category":"coffee","quantity":"2","amount":"10.00"},
{"product":"cake","category":"dessert","quantity":"1","amount":"7.50"},
{"product":"kebab","category":"food","quantity":"1","amount":"42.00"},
{"product":"water","category":"drinks","quantity":"2","amount":"4.00"},
{"product":"salad","category":"food","quantity":"1","amount":"16.50"}],
"payments":[{"method":"cashback","amount":"10.00"},{"method":"card","amount":"70.00"}],"total":"80.00","currency":"AZN"}}"#;

const TENANT: &str = r#"
id = "cafe-central"
currency = "AZN"
bonus_accounts = ["coffee-bonus"]
[branches.downtown]
payment_methods = ["cashback", "coffee-bonus"]
[redemption]
max_percent = { cashback = "50" }

[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
exclude_products = ["water"]

[[programs]]
id = "bonus"
type = "bonus"
percent = "3"
branches = { downtown = "active" }
sales = [{ sale_type = "dine_in", methods = ["card"] }]

[[programs]]
id = "discount"
type = "discount"
percent = "2"
branches = { downtown = "active" }
exclude_all = true
include_categories = ["food"]

[[programs]]
id = "coffee-for-regulars"
type = "group_bonus"
account = "coffee-bonus"
groups = ["Regulars"]
branches = { downtown = "active" }
rules = [{ category = "coffee", percent = "10" }, { category = "dessert", percent = "5" }]

[[programs]]
id = "cashback-v2"
type = "cashback"
percent = "4"
valid_from = "2027-01-01T00:00:00Z"
branches = { downtown = "active" }
"#;

// The product's allocator (src/main.rs), so the benches measure what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let tenant: TenantConfig = match toml::from_str(TENANT) {
        Ok(t) => t,
        Err(e) => panic!("bench tenant: {e}"),
    };
    let event = match contract::decode(ORDER.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("bench order: {e}"),
    };
    let customer = Customer {
        registered: true,
        groups: ["Regulars".to_owned()].into_iter().collect(),
        ..Customer::default()
    };
    let balances: BTreeMap<String, Decimal> = [("cashback".to_owned(), Decimal::from(25))].into_iter().collect();
    let input = rules::Input {
        tenant: &tenant,
        event: &event,
        customer: &customer,
        balances: &balances,
        original: None,
        booking: None,
        code_key: b"bench key",
        network: &rules::NoNetwork,
        loyalty: &rules::NO_LOYALTY,
        now_ms: 0,
    };
    assert_eq!(rules::evaluate(&input).entries.len(), 5, "redemption + 4 accruals");
    let mut group = c.benchmark_group("order.paid");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_5_lines", |b| {
        b.iter(|| contract::decode(std::hint::black_box(ORDER.as_bytes())))
    });
    group.bench_function("evaluate_5_lines_5_programs", |b| {
        b.iter(|| rules::evaluate(std::hint::black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
