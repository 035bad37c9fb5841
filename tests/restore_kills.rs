//! Restarts on a new disk and then on the same disk: `accrue run` is killed
//! with SIGKILL five times within seconds while it restores its partitions
//! from the changelog (6 s session timeout). The last restart must resume
//! processing within 30 s, a partition whose local state is complete must
//! never be restored again, and every accrual must appear exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::{half_even_percent, kill9, order, produce, producer, read_all, terminate, wait_until, Env};

const PARTITIONS: i32 = 4;
const CUSTOMERS: usize = 300;
const FIRST: usize = 8_000;
const SECOND: usize = 2_000;
const THIRD: usize = 3_000;
const TOTAL: usize = FIRST + SECOND + THIRD;
const KILLS: usize = 5;

fn orders(from: usize, to: usize) -> Vec<(Option<String>, Vec<u8>, String, i64)> {
    (from..to)
        .map(|i| {
            let customer = format!("rk-{}", i % CUSTOMERS);
            let cents = 100 + (i as i64 * 37) % 9_000;
            let id = format!("rk-order-{i}");
            (
                Some(format!("cafe-central:{customer}")),
                order(&id, "cafe-central", "downtown", &customer, cents, "AZN"),
                id,
                cents,
            )
        })
        .collect()
}

/// Accruals on the topic by source event id.
fn accruals(env: &Env) -> HashMap<String, Vec<serde_json::Value>> {
    let mut out: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for record in read_all(&env.accruals, PARTITIONS) {
        let json = record.json();
        if json["type"] == "accrual.recorded" {
            let source = json["source_event_id"].as_str().unwrap_or_default().to_owned();
            out.entry(source).or_default().push(json);
        }
    }
    out
}

/// The partitions named by lines of `log` that contain `message`.
fn partitions_logging(log: &str, message: &str) -> BTreeSet<u32> {
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            let at = l.find("partition=")? + "partition=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn run_log(env: &Env, n: usize) -> String {
    std::fs::read_to_string(env.dir.path().join(format!("run-{n}.log"))).unwrap_or_default()
}

/// Points the config at another state directory (a new disk).
fn use_state_dir(env: &Env, dir: &std::path::Path) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let old = format!("dir = \"{}\"", env.state.display());
    assert!(text.contains(&old), "state dir line");
    std::fs::write(&env.config, text.replace(&old, &format!("dir = \"{}\"", dir.display()))).unwrap();
}

#[test]
fn sigkills_during_a_restore_then_same_disk_restarts_restore_nothing_and_lose_nothing() {
    let env = Env::new("rkill", PARTITIONS);
    {
        // Quick rejoin if tansu leaves the group without an assignment
        // after a killed member (docs/operations.md, "Health").
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text.push_str("[health]\nunassigned_grace = \"5s\"\npartition_stall = \"10s\"\n");
        std::fs::write(&env.config, text).unwrap();
    }
    let producer = producer();
    let first = orders(0, FIRST);
    let second = orders(FIRST, FIRST + SECOND);
    let third = orders(FIRST + SECOND, TOTAL);
    let records: Vec<(Option<String>, Vec<u8>)> = first.iter().map(|(k, v, _, _)| (k.clone(), v.clone())).collect();
    produce(&producer, &env.input, &records);

    // A first instance builds the state and its changelog, then stops.
    let mut child = env.spawn();
    let built = wait_until(Duration::from_secs(180), || accruals(&env).len() >= FIRST);
    assert!(built, "first instance did not publish every accrual\n{}", env.logs());
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    // A new disk: every partition is restored from the changelog. Kill the
    // process 5 times within seconds while it restores.
    let new_disk = env.dir.path().join("state-b");
    use_state_dir(&env, &new_disk);
    let records: Vec<(Option<String>, Vec<u8>)> = second.iter().map(|(k, v, _, _)| (k.clone(), v.clone())).collect();
    produce(&producer, &env.input, &records);
    let mut run = 1;
    let mut completed: BTreeSet<u32> = BTreeSet::new();
    for kill in 0..KILLS {
        let mut child = env.spawn();
        // Until a restore runs (or, once earlier runs completed them all,
        // every partition is taken over as it is).
        let restoring = wait_until(Duration::from_secs(60), || {
            let log = run_log(&env, run);
            log.contains("restoring partition from the changelog")
                || partitions_logging(&log, "local state is current").len() == PARTITIONS as usize
        });
        assert!(restoring, "run {run} did not take its partitions over\n{}", env.logs());
        // Later kills come later, so that some restores complete and some
        // are cut short (a restore of this changelog takes about a second).
        std::thread::sleep(Duration::from_millis(200 + 250 * kill as u64));
        kill9(&mut child);
        completed.extend(partitions_logging(&run_log(&env, run), "partition restored"));
        run += 1;
    }

    // The last restart resumes processing within 30 s: new input waits.
    let records: Vec<(Option<String>, Vec<u8>)> = third.iter().map(|(k, v, _, _)| (k.clone(), v.clone())).collect();
    produce(&producer, &env.input, &records);
    let started = Instant::now();
    let before = accruals(&env).len();
    let mut child = env.spawn();
    let resumed = wait_until(Duration::from_secs(30), || accruals(&env).len() > before);
    assert!(
        resumed,
        "no accrual published within 30 s of the last restart (had {before})\n{}",
        env.logs()
    );
    eprintln!("resumed after {:.1} s", started.elapsed().as_secs_f64());
    let log = run_log(&env, run);
    let restored_again: BTreeSet<u32> = partitions_logging(&log, "restoring partition from the changelog");
    assert!(
        restored_again.is_disjoint(&completed),
        "partitions {completed:?} were restored completely before, but run {run} restored {restored_again:?}\n{}",
        env.logs()
    );
    // Let it work a little, then kill it mid-stream: the same disk again.
    let midway = wait_until(Duration::from_secs(120), || accruals(&env).len() > before + THIRD / 10);
    assert!(midway, "no progress after the last restart\n{}", env.logs());
    kill9(&mut child);
    run += 1;

    // Same disk, complete local state, whatever the epochs: nothing restored.
    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(180), || {
        let log = run_log(&env, run);
        partitions_logging(&log, "local state is current").len() == PARTITIONS as usize && accruals(&env).len() >= TOTAL
    });
    assert!(done, "the same-disk restart did not finish\n{}", env.logs());
    let log = run_log(&env, run);
    assert!(
        partitions_logging(&log, "restoring partition from the changelog").is_empty(),
        "a same-disk restart restored partitions\n{log}"
    );
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    // Every order's accrual exactly once, with the amount computed here.
    let published = accruals(&env);
    let mut ids = BTreeMap::new();
    for record in read_all(&env.accruals, PARTITIONS) {
        if let Some(id) = record.header("accrue-id") {
            *ids.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    let doubled: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "accrue-ids published twice: {doubled:?}");
    for (_, _, id, cents) in first.iter().chain(second.iter()).chain(third.iter()) {
        let got = published.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.len(), 1, "order {id} has {} accruals", got.len());
        let expected = common::money(half_even_percent(*cents, 5));
        assert_eq!(got[0]["amount"], expected.as_str(), "order {id}");
    }
    assert_eq!(published.len(), TOTAL, "accruals for unknown orders");
}
