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
