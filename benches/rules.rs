//! Criterion benches of the pure core: decoding `order.paid` and evaluating
//! the cashback program.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use accrue::config::TenantConfig;
use accrue::contract;
use accrue::rules;

const ORDER: &str = r#"{"schema_version":1,"event_id":"ord-1","type":"order.paid","tenant":"cafe-central",
"branch":"downtown","customer":"c-1001","occurred_at":"2026-11-23T12:00:00Z","body":{"order_id":"o-1",
"sale_type":"dine_in","lines":[{"product":"latte","category":"coffee","quantity":"2","amount":"10.00"},
{"product":"cake","category":"dessert","quantity":"1","amount":"70.00"}],
"payments":[{"method":"card","amount":"80.00"}],"total":"80.00","currency":"AZN"}}"#;

const TENANT: &str = r#"
id = "cafe-central"
currency = "AZN"
[branches.downtown]
[programs.cashback]
percent = "5"
branches = { downtown = "active" }
"#;

fn bench(c: &mut Criterion) {
    let tenant: TenantConfig = match toml::from_str(TENANT) {
        Ok(t) => t,
        Err(e) => panic!("bench tenant: {e}"),
    };
    let event = match contract::decode(ORDER.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("bench order: {e}"),
    };
    let mut group = c.benchmark_group("order.paid");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode", |b| {
        b.iter(|| contract::decode(std::hint::black_box(ORDER.as_bytes())))
    });
    group.bench_function("evaluate_cashback", |b| {
        b.iter(|| rules::evaluate(&tenant, std::hint::black_box(&event)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
