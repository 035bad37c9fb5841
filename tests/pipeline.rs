//! End-to-end through a real broker: the seed example, the documented
//! examples, dead letters, duplicates, graceful shutdown and restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{order, produce, producer, read_all, terminate, wait_until, Env};

fn example(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples").join(name)).unwrap()
}

fn key_of(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(format!("{}:{}", v["tenant"].as_str()?, v["customer"].as_str()?))
}

fn metric(scrape: &str, name: &str, label: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn seed_example_dead_letters_duplicates_and_restart() {
    let env = Env::new("pipeline", 2);
    let p = producer();
    let seed = example("order.paid.json");
    let mut input = vec![(key_of(&seed), seed.clone())];
    // The same event again: a no-op.
    input.push((key_of(&seed), seed.clone()));
    // Every invalid example, keyed as its POS would key it.
    let mut invalid = Vec::new();
    let mut dir: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dir.sort();
    for path in dir {
        let kind = path.file_stem().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let key = key_of(&bytes).or_else(|| Some("cafe-central:c-1001".to_owned()));
        invalid.push((kind, bytes.clone()));
        input.push((key, bytes));
    }
    // A wrong key on a valid event.
    let mismatched = order("mismatch-1", "cafe-central", "downtown", "c-1", 1000, "AZN");
    input.push((Some("cafe-central:c-2".into()), mismatched.clone()));
    invalid.push(("key_mismatch".into(), mismatched));
    produce(&p, &env.input, &input);

    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(60), || {
        read_all(&env.accruals, env.partitions).len() == 1
            && read_all(&env.dead_letter, env.partitions).len() == invalid.len()
    });
    assert!(done, "outputs incomplete\n{}", env.logs());

    let accruals = read_all(&env.accruals, env.partitions);
    let event = accruals[0].json();
    assert_eq!(event["amount"], "4.00", "5% of 80.00");
    assert_eq!(event["balance"], "4.00");
    assert_eq!(event["account"], "cashback");
    assert_eq!(event["type"], "accrual.recorded");
    assert_eq!(accruals[0].key.as_deref(), key_of(&seed).as_deref());
    assert_eq!(accruals[0].header("accrue-id"), event["id"].as_str());

    let dead = read_all(&env.dead_letter, env.partitions);
    for (kind, bytes) in &invalid {
        let found = dead.iter().find(|r| r.payload == *bytes);
        let Some(found) = found else {
            panic!("no dead letter for {kind}")
        };
        assert_eq!(found.header("accrue-error-kind"), Some(kind.as_str()), "kind of {kind}");
        assert!(found.header("accrue-error-reason").is_some_and(|r| !r.is_empty()));
        assert_eq!(found.header("accrue-source-topic"), Some(env.input.as_str()));
        assert!(found.header("accrue-source-offset").is_some());
        assert!(found.header("accrue-id").is_some());
    }

    // Metrics counted what happened.
    let metrics = common::scrape(env.http_port);
    assert_eq!(
        metric(&metrics, "accrue_events_processed_total", "order.paid"),
        1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "accrue_events_duplicate_total", "order.paid"), 1.0);
    assert_eq!(
        metric(&metrics, "accrue_events_dead_lettered_total", "reason="),
        invalid.len() as f64
    );

    // Graceful stop: exit 0.
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    // Restart: nothing is re-published, and new work continues the balance.
    let second = order("ord-second", "cafe-central", "downtown", "c-1001", 2000, "AZN");
    produce(&p, &env.input, &[(key_of(&second), second)]);
    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(60), || {
        read_all(&env.accruals, env.partitions).len() >= 2
    });
    assert!(done, "second accrual missing\n{}", env.logs());
    std::thread::sleep(Duration::from_secs(1));
    let accruals = read_all(&env.accruals, env.partitions);
    assert_eq!(accruals.len(), 2, "a restart must not re-publish");
    let last = accruals
        .iter()
        .map(common::Record::json)
        .find(|e| e["source_event_id"] == "ord-second")
        .unwrap();
    assert_eq!(last["amount"], "1.00");
    assert_eq!(last["balance"], "5.00");
    assert_eq!(read_all(&env.dead_letter, env.partitions).len(), invalid.len());
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}

#[test]
fn refuses_to_start_when_topics_are_not_co_partitioned() {
    let env = Env::new("mismatch", 2);
    // A second environment's accruals topic has 3 partitions; point at it.
    let other = Env::new("mismatch3", 3);
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.accruals, &other.accruals);
    std::fs::write(&env.config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_accrue"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("same partition count"), "{stderr}");
}

#[test]
fn check_config_reports_file_and_field() {
    let env = Env::new("checkcfg", 1);
    let tenant = env.dir.path().join("tenants/cafe-central.toml");
    let text = std::fs::read_to_string(&tenant)
        .unwrap()
        .replace("percent = \"5\"", "percent = \"500\"");
    std::fs::write(&tenant, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_accrue"))
        .arg("--config")
        .arg(&env.config)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cafe-central.toml: programs[0].percent: must be between 1 and 100"),
        "{stderr}"
    );
}
