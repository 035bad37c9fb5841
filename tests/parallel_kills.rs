//! The parallel-apply kill test: four input partitions applied with
//! `[pipeline] workers = 4`, small batches and a short linger so the
//! partitions commit concurrently and often, and `accrue run` killed with
//! SIGKILL five times, each at a random point of the commit cycle after a
//! commit, spread over the stream while input is still arriving, and
//! restarted on the same state directory. Every accrual must
//! then be on the accruals topic exactly once, and every balance and ledger
//! read through the read API must equal what this test computes itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{
    half_even_percent, high_watermark_sum, http_request, kill9, money, order, produce, producer, read_all, sample,
    scrape, terminate, Env,
};

const PARTITIONS: i32 = 4;
const WORKERS: usize = 4;
const ORDERS: usize = 4_200;
const DUPLICATES: usize = 150;
const CUSTOMERS: usize = 240;
const KILLS: usize = 5;
/// The stream is fed in `KILLS + 2` parts; kill k happens in part k.
const PARTS: usize = KILLS + 2;
/// Records per produce call, and the pause between calls.
const CHUNK: usize = 25;
const PACE: Duration = Duration::from_millis(40);

/// Input records: key `tenant:customer`, value.
type Stream = Vec<(Option<String>, Vec<u8>)>;

/// The accrual one order must produce.
#[derive(Debug, Clone)]
struct Accrual {
    tenant: &'static str,
    customer: String,
    cents: i64,
}

/// Orders over customers of both tenants (some at a branch where cashback is
/// off, so they accrue nothing), with some re-sent later in the stream; and
/// the accrual of every order by event id, computed here.
fn scenario(rng: &mut StdRng) -> (Stream, HashMap<String, Accrual>) {
    let mut stream = Vec::with_capacity(ORDERS + DUPLICATES);
    let mut expected = HashMap::new();
    for n in 0..ORDERS {
        let c = rng.gen_range(0..CUSTOMERS);
        let (tenant, customer, currency) = if c % 4 == 3 {
            ("studio-flow", format!("pk-s-{c}"), "EUR")
        } else {
            ("cafe-central", format!("pk-c-{c}"), "AZN")
        };
        let cents = rng.gen_range(100..40_000);
        let (branch, percent) = match tenant {
            "studio-flow" => ("main", Some(3)),
            _ if rng.gen_bool(0.85) => ("downtown", Some(5)),
            _ => ("airport", None),
        };
        let id = format!("pk-order-{n}");
        if let Some(percent) = percent {
            let accrual = Accrual {
                tenant,
                customer: customer.clone(),
                cents: half_even_percent(cents, percent),
            };
            expected.insert(id.clone(), accrual);
        }
        let payload = order(&id, tenant, branch, &customer, cents, currency);
        stream.push((Some(format!("{tenant}:{customer}")), payload));
    }
    // Re-sent events (same id, same bytes), often after a kill: no change.
    for _ in 0..DUPLICATES {
        let i = rng.gen_range(0..ORDERS);
        let dup = stream[i].clone();
        let at = rng.gen_range(i + 1..=stream.len());
        stream.insert(at, dup);
    }
    (stream, expected)
}

/// Small batches, a short linger, four workers, a quick rejoin if tansu
/// leaves a restarted member without partitions, and a read API token.
fn configure(env: &Env) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let batch = "[batch]\nmax_events = 500\nlinger_ms = 10\n";
    assert!(text.contains(batch), "Env's [batch] section changed:\n{text}");
    let text = text.replace(
        batch,
        &format!(
            "[batch]\nmax_events = 50\nlinger_ms = 5\n[pipeline]\nworkers = {WORKERS}\n\
             [health]\nunassigned_grace = \"5s\"\npartition_stall = \"10s\"\n"
        ),
    );
    std::fs::write(&env.config, text).unwrap();
    for (file, _) in common::TENANTS {
        let tenant = file.trim_end_matches(".toml");
        let line = format!(
            "api_tokens_sha256 = [\"{}\"]\n",
            accrue::api::hash_token(&token(tenant))
        );
        let path = env.dir.path().join("tenants").join(file);
        let body = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{line}{body}")).unwrap();
    }
    assert!(env.accrue(&["check-config"]).success(), "the test's config is invalid");
}

/// Produces the stream in order, `CHUNK` records at a time, never beyond
/// `allowed`; `sent` is how far it got.
struct Feeder {
    allowed: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    fn start(topic: String, stream: Arc<Stream>) -> Feeder {
        let allowed = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let (limit, done) = (allowed.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let p = producer();
            let mut at = 0;
            while at < stream.len() {
                let until = limit.load(Ordering::SeqCst).min(stream.len());
                if at >= until {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let end = (at + CHUNK).min(until);
                produce(&p, &topic, &stream[at..end]);
                at = end;
                done.store(at, Ordering::SeqCst);
                std::thread::sleep(PACE);
            }
        });
        Feeder { allowed, sent, thread }
    }

    fn allow(&self, upto: usize) {
        self.allowed.fetch_max(upto, Ordering::SeqCst);
    }

    fn idle(&self) -> bool {
        self.sent.load(Ordering::SeqCst) >= self.allowed.load(Ordering::SeqCst)
    }
}

/// What the running process has done, by its own counters (from zero at
/// each start).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Progress {
    /// Batches committed.
    commits: f64,
    /// Seconds spent writing them.
    writing: f64,
    /// Events applied.
    applied: f64,
}

/// The process's counters; `None` while it does not answer.
fn progress(port: u16) -> Option<Progress> {
    let text = scrape(port);
    if text.is_empty() {
        return None;
    }
    Some(Progress {
        commits: sample(&text, "accrue_commit_seconds_count", &[]),
        writing: sample(&text, "accrue_commit_seconds_sum", &[]),
        applied: sample(&text, "accrue_events_processed_total", &[]),
    })
}

/// The moment chosen for a kill.
#[derive(Debug)]
struct KillPoint {
    /// Input records sent when the process was killed.
    sent: usize,
    /// Whether the feeder was still sending.
    feeding: bool,
    /// The process's counters just before.
    seen: Progress,
    /// The time between its last commits, over which the kill's delay was
    /// spread.
    cycle: Duration,
}

/// Waits until the running process has applied at least `applied` events
/// and has just committed a batch (its commit count moved since the last
/// look, a few milliseconds ago), and returns its counters and the recent
/// time per commit. Once the process commits, the feeder may go on to record
/// `then`, so input arrives while it works. While it is idle with every
/// allowed record sent, the feeder is allowed one more chunk, so there is
/// always something to commit; nothing here depends on how fast anything
/// runs.
fn wait_for_a_commit(env: &Env, feeder: &Feeder, applied: f64, then: usize, kill: usize) -> (Progress, Duration) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last: Option<Progress> = None;
    // The commit count and time of the last move seen.
    let mut moved: Option<(f64, Instant)> = None;
    let mut quiet_since = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "kill {kill}: no commit after {applied} applied events in 300 s (last seen {last:?})\n{}",
            env.logs()
        );
        let now = Instant::now();
        let seen = progress(env.http_port);
        if let (Some(seen), Some(before)) = (seen, last) {
            if seen.commits > before.commits {
                if let Some((commits, at)) = moved.filter(|_| seen.applied >= applied) {
                    return (seen, now.duration_since(at).div_f64(seen.commits - commits));
                }
                moved = Some((seen.commits, now));
                quiet_since = now;
                feeder.allow(then);
            }
        }
        if seen.is_none() {
            moved = None;
        }
        last = seen;
        if feeder.idle() && quiet_since.elapsed() > Duration::from_secs(3) {
            feeder.allow(feeder.sent.load(Ordering::SeqCst) + CHUNK);
            quiet_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the accruals topic holds `total` records, or until the
/// process has plainly finished without them (it owns every partition, has
/// no lag and an empty outbox, and the topic has not grown for 60 s), so that
/// the checks that follow name what is missing.
fn wait_for_the_end(env: &Env, total: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut count = -1;
    let mut since = Instant::now();
    loop {
        let now = high_watermark_sum(env, &env.accruals);
        if now >= total {
            return;
        }
        if now != count {
            (count, since) = (now, Instant::now());
        }
        let text = scrape(env.http_port);
        let settled = sample(&text, "accrue_partitions_owned", &[]) == f64::from(PARTITIONS)
            && text.contains("accrue_consumer_lag{")
            && sample(&text, "accrue_consumer_lag", &[]) == 0.0
            && sample(&text, "accrue_outbox_depth", &[]) == 0.0;
        if settled && since.elapsed() > Duration::from_secs(60) {
            eprintln!("the processor is idle with {count} of {total} accruals published");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "accruals did not complete in 300 s: {count} of {total}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The read API token of `tenant` (a token belongs to one tenant).
fn token(tenant: &str) -> String {
    format!("parallel-kills-token-{tenant}")
}

/// A GET of `tenant`'s read API: (status, JSON body).
fn api(port: u16, tenant: &str, path: &str) -> (u16, serde_json::Value) {
    let head = format!(
        "GET /v1/tenants/{tenant}/{path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token(tenant)
    );
    let (status, body) = http_request(port, &head);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn sigkills_during_concurrent_commits_of_four_partitions_lose_and_double_nothing() {
    let started = Instant::now();
    let env = Env::new("pkill", PARTITIONS);
    configure(&env);
    let mut rng = StdRng::seed_from_u64(0x0070_4B11);
    let (stream, expected) = scenario(&mut rng);
    let stream = Arc::new(stream);
    let part = stream.len().div_ceil(PARTS);

    // Kill k comes in part k of the stream, after a random number of events
    // applied by that run, right after it committed a batch.
    let feeder = Feeder::start(env.input.clone(), stream.clone());
    let mut child = env.spawn();
    let mut kill_points = Vec::new();
    for kill in 0..KILLS {
        // Half a part waits for the process as it starts (all four
        // partitions have a backlog), the rest arrives while it works; the
        // kill comes in either phase.
        feeder.allow(kill * part + part / 2);
        let applied = rng.gen_range(20..part * 4 / 5) as f64;
        let (seen, cycle) = wait_for_a_commit(&env, &feeder, applied, (kill + 1) * part, kill);
        // Anywhere in the next commit cycle: while a batch fills, while it
        // is written, while the outbox publishes.
        let cycle = cycle.min(Duration::from_millis(100));
        std::thread::sleep(cycle.mul_f64(rng.gen_range(0.0..1.0)));
        kill9(&mut child);
        let sent = feeder.sent.load(Ordering::SeqCst);
        let feeding = !feeder.idle();
        assert!(sent < stream.len(), "kill {kill} came after the whole stream was sent");
        kill_points.push(KillPoint {
            sent,
            feeding,
            seen,
            cycle,
        });
        child = env.spawn();
    }
    feeder.allow(stream.len());
    feeder.thread.join().unwrap();

    // The last run finishes the stream.
    wait_for_the_end(&env, expected.len() as i64);

    // Every expected accrual exactly once, with its amount; nothing else.
    let records = read_all(&env.accruals, PARTITIONS);
    let mut ids = HashSet::new();
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut home: HashMap<(String, String), i32> = HashMap::new();
    let mut partitions = BTreeSet::new();
    for record in &records {
        let event = record.json();
        let id = record.header("accrue-id").unwrap().to_owned();
        assert_eq!(event["id"].as_str(), Some(id.as_str()));
        assert!(ids.insert(id.clone()), "accrual id {id} published twice");
        assert_eq!(event["type"], "accrual.recorded", "{event}");
        let source = event["source_event_id"].as_str().unwrap().to_owned();
        *by_source.entry(source.clone()).or_default() += 1;
        let Some(want) = expected.get(&source) else {
            panic!("an accrual no order should have made: {event}")
        };
        assert_eq!(event["tenant"], want.tenant, "{event}");
        assert_eq!(event["customer"].as_str(), Some(want.customer.as_str()), "{event}");
        assert_eq!(event["amount"].as_str(), Some(money(want.cents).as_str()), "{event}");
        assert_eq!(event["source"]["partition"], record.partition, "{event}");
        let at = home
            .entry((want.tenant.to_owned(), want.customer.clone()))
            .or_insert(record.partition);
        assert_eq!(
            *at, record.partition,
            "a customer's accruals in two partitions: {event}"
        );
        partitions.insert(record.partition);
    }
    let doubled: Vec<_> = by_source.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "orders accrued more than once: {doubled:?}");
    let missing: Vec<_> = expected.keys().filter(|id| !by_source.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} orders never accrued, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(records.len(), expected.len(), "accrual count");
    assert_eq!(partitions.len(), PARTITIONS as usize, "customers in every partition");
    let dead = read_all(&env.dead_letter, PARTITIONS);
    assert!(dead.is_empty(), "{} dead letters of valid input", dead.len());

    // Every customer's balance and ledger, read through the read API.
    let mut customers: BTreeMap<(&str, &str), (i64, BTreeSet<&str>)> = BTreeMap::new();
    for (id, accrual) in &expected {
        let entry = customers
            .entry((accrual.tenant, accrual.customer.as_str()))
            .or_default();
        entry.0 += accrual.cents;
        entry.1.insert(id.as_str());
    }
    for ((tenant, customer), (cents, orders)) in &customers {
        let (status, body) = api(env.http_port, tenant, &format!("customers/{customer}/balances"));
        assert_eq!(status, 200, "balances of {tenant}:{customer}: {body}");
        let balances = body["balances"].as_array().unwrap();
        let cashback: Vec<_> = balances.iter().filter(|b| b["account"] == "cashback").collect();
        assert_eq!(balances.len(), 1, "{tenant}:{customer} has other accounts: {body}");
        assert_eq!(
            cashback[0]["balance"].as_str(),
            Some(money(*cents).as_str()),
            "balance of {tenant}:{customer}"
        );
        let mut entries = Vec::new();
        let mut cursor = String::new();
        loop {
            let path = format!("customers/{customer}/ledger?limit=1000{cursor}");
            let (status, page) = api(env.http_port, tenant, &path);
            assert_eq!(status, 200, "ledger of {tenant}:{customer}: {page}");
            entries.extend(page["entries"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let sources: Vec<&str> = entries.iter().filter_map(|e| e["source_event_id"].as_str()).collect();
        assert_eq!(sources.len(), entries.len(), "ledger entries without a source");
        let unique: BTreeSet<&str> = sources.iter().copied().collect();
        assert_eq!(
            unique.len(),
            sources.len(),
            "{tenant}:{customer}: an order in the ledger twice"
        );
        assert_eq!(&unique, orders, "ledger of {tenant}:{customer}");
    }

    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful stop failed: {status:?}\n{}",
        env.logs()
    );
    for (n, k) in kill_points.iter().enumerate() {
        eprintln!(
            "kill {n}: {} of {} records sent{}; that run had applied {} events in {} batches \
             (mean write {:.1} ms, last commit cycle {:.1} ms)",
            k.sent,
            stream.len(),
            if k.feeding { ", more arriving" } else { "" },
            k.seen.applied,
            k.seen.commits,
            k.seen.writing * 1000.0 / k.seen.commits.max(1.0),
            k.cycle.as_secs_f64() * 1000.0
        );
    }
    eprintln!(
        "parallel kills: {} records ({ORDERS} orders, {DUPLICATES} re-sent), {KILLS} SIGKILLs, {} accruals once \
         each, {} balances and ledgers checked, {:.1} s",
        stream.len(),
        records.len(),
        customers.len(),
        started.elapsed().as_secs_f64()
    );
}
