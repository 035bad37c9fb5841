//! Criterion bench of the durable path: 10,000 generated events applied by
//! the processor and committed as one WAL-synced RocksDB WriteBatch.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use accrue::config::Config;
use accrue::pipeline::{Batch, InputRecord, Processor};
use accrue::replay::partition_for;
use accrue::state::{RocksStore, Store};
use accrue::tools::gen::{Generator, Mix, Settings};

const EVENTS: usize = 10_000;

// The product's allocator (src/main.rs), so the benches measure what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let tenants: Vec<_> = config.tenants.values().cloned().collect();
    let settings = |seed| Settings {
        events: 1_000_000,
        customers: 50_000,
        zipf: 1.1,
        mix: Mix::ORDERS_ONLY,
        seed,
        distinct: false,
    };
    let events: Vec<(String, String)> = match Generator::new(tenants, settings(11)) {
        Ok(g) => g.take(EVENTS * 20).collect(),
        Err(e) => panic!("{e}"),
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let store: Arc<dyn Store> = match RocksStore::open(dir.path()) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("{e}"),
    };
    let mut processor = Processor::new(store, Arc::new(config.tenants.clone()), Arc::from(&b"bench"[..]));
    let mut offset = 0i64;
    let mut chunk = 0usize;

    let mut group = c.benchmark_group("durable_batch");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("apply_and_commit_10k_orders", |b| {
        b.iter_batched(
            || {
                // Fresh event ids each round (no dedupe hits), cycling the set.
                chunk = (chunk + 1) % 20;
                chunk
            },
            |chunk| {
                let mut batch = Batch::default();
                for (key, json) in &events[chunk * EVENTS..(chunk + 1) * EVENTS] {
                    let json = json.replace("gen-11-", &format!("b{offset}-"));
                    let record = InputRecord {
                        topic: "bench",
                        partition: partition_for(key.as_bytes(), 4),
                        offset,
                        key: Some(key.as_bytes()),
                        payload: Some(json.as_bytes()),
                    };
                    offset += 1;
                    if let Err(e) = processor.apply(&mut batch, &record) {
                        panic!("{e}");
                    }
                }
                if let Err(e) = processor.commit(batch) {
                    panic!("{e}");
                }
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
