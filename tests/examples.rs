//! The documented examples (docs/examples) through the processor core with
//! the shipped local config, without a broker: valid ones accrue, each
//! invalid one is dead-lettered with the kind its file is named after.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use accrue::config::Config;
use accrue::pipeline::{Applied, Batch, InputRecord, Processor};
use accrue::state::MemoryStore;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn processor() -> Processor {
    let config = Config::load(&root().join("config/local/accrue.toml")).unwrap();
    Processor::new(
        Arc::new(MemoryStore::default()),
        Arc::new(config.tenants),
        Arc::from(&b"example key"[..]),
    )
}

fn key_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(format!("{}:{}", v["tenant"].as_str()?, v["customer"].as_str()?))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    out
}

#[test]
fn valid_examples_decode_and_accrue() {
    let mut processor = processor();
    let mut batch = Batch::default();
    let valid = files(&root().join("docs/examples"));
    assert!(valid.len() >= 3, "expected the documented examples");
    for (i, path) in valid.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let key = key_of(&bytes).unwrap();
        let record = InputRecord {
            topic: "orders",
            partition: 0,
            offset: i as i64,
            key: Some(key.as_bytes()),
            payload: Some(&bytes),
        };
        let applied = processor.apply(&mut batch, &record).unwrap();
        assert!(
            matches!(applied, Applied::Processed(_)),
            "{}: {applied:?}",
            path.display()
        );
    }
}

#[test]
fn every_invalid_example_is_dead_lettered_with_its_kind() {
    let mut processor = processor();
    let mut batch = Batch::default();
    let invalid = files(&root().join("docs/examples/invalid"));
    assert!(invalid.len() >= 10, "expected one example per error kind");
    for (i, path) in invalid.iter().enumerate() {
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let key = key_of(&bytes).unwrap_or_else(|| "cafe-central:c-1001".into());
        let record = InputRecord {
            topic: "orders",
            partition: 0,
            offset: i as i64,
            key: Some(key.as_bytes()),
            payload: Some(&bytes),
        };
        match processor.apply(&mut batch, &record).unwrap() {
            Applied::DeadLettered(got) => assert_eq!(got.as_str(), kind, "{}", path.display()),
            other => panic!("{} was not dead-lettered: {other:?}", path.display()),
        }
    }
}

#[test]
fn schemas_are_valid_json() {
    for path in files(&root().join("docs/schemas")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(value.get("$schema").is_some(), "{} has no $schema", path.display());
    }
}

/// The bistro's examples show the loyalty features of its local config: a
/// welcome bonus on registration, then an order of 350.00 that reaches the
/// silver level (300.00 over the last year) and earns its 4%, and the
/// birthday bonus (the birthday is two days later).
#[test]
fn the_bistro_examples_show_the_welcome_bonus_a_tier_and_the_birthday_bonus() {
    use accrue::state::{keys, Family, Store};
    let store = Arc::new(MemoryStore::default());
    let config = Config::load(&root().join("config/local/accrue.toml")).unwrap();
    let mut processor = Processor::new(store.clone(), Arc::new(config.tenants), Arc::from(&b"k"[..]));
    let mut batch = Batch::default();
    for (i, name) in ["customer.upserted.bistro.json", "order.paid.bistro.json"]
        .iter()
        .enumerate()
    {
        let bytes = std::fs::read(root().join("docs/examples").join(name)).unwrap();
        let key = key_of(&bytes).unwrap();
        let record = InputRecord {
            topic: "orders",
            partition: 0,
            offset: i as i64,
            key: Some(key.as_bytes()),
            payload: Some(&bytes),
        };
        assert!(matches!(
            processor.apply(&mut batch, &record).unwrap(),
            Applied::Processed(_)
        ));
    }
    processor.commit(batch).unwrap();
    let outputs: Vec<serde_json::Value> = store
        .scan(Family::Outbox, &keys::partition_prefix(0), &keys::outbox(0, 0), 100)
        .unwrap()
        .into_iter()
        .filter_map(|(k, v)| accrue::outbox::load(store.as_ref(), 0, keys::parse_outbox(&k)?.1, &v).ok())
        .filter_map(|r| serde_json::from_slice(&r.payload).ok())
        .collect();
    let seen: Vec<(String, String)> = outputs
        .iter()
        .map(|o| {
            let what = o["entry_type"].as_str().or(o["type"].as_str()).unwrap_or_default();
            let amount = o["amount"].as_str().or(o["to"].as_str()).unwrap_or_default();
            (what.to_owned(), amount.to_owned())
        })
        .filter(|(what, _)| what != "directory")
        .collect();
    let want = [
        ("welcome_bonus", "2.00"),
        ("accrual", "14.00"),
        ("birthday_bonus", "5.00"),
        ("tier.changed", "silver"),
    ];
    for (what, amount) in want {
        assert!(
            seen.iter().any(|(w, a)| w == what && a == amount),
            "no {what} of {amount} in {seen:?}"
        );
    }
    let balance = store
        .get(Family::Balances, &keys::balance(0, "bistro-nord", "b-2001", "cashback"))
        .unwrap()
        .and_then(|raw| keys::decode_decimal(&raw))
        .unwrap();
    assert_eq!(balance.to_string(), "21.00");
}
