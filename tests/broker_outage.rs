//! The broker dies for 60 s mid-stream. `/health/ready` must say so while it
//! is down and while the outbox cannot drain, and `true` again once it
//! drains; `accrue_outbox_depth` counts the backlog; no accrual is lost or
//! doubled. Its own test binary: it kills the broker every test of the
//! binary shares.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{half_even_percent, order, produce, producer, read_all, sample, scrape, terminate, wait_until, Env};

const PARTITIONS: i32 = 4;
const ORDERS: usize = 6_000;
const OUTAGE: Duration = Duration::from_secs(60);

/// An order: its event id, its amount in cents, and its Kafka record.
type Order = (String, i64, (Option<String>, Vec<u8>));

/// A tansu this test can kill and start again on the same port and database.
struct ControlledBroker {
    port: u16,
    url: String,
    db: std::path::PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ControlledBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let db = dir.path().join("tansu.db");
        common::prepare_tansu_db(&common::tansu_binary(), &db, &url, port);
        let mut broker = ControlledBroker {
            port,
            url,
            db,
            dir,
            child: None,
        };
        broker.up();
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let child = Command::new(common::tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &self.url,
                "--advertised-listener-url",
                &self.url,
            ])
            .arg("--storage-engine")
            .arg(format!("sqlite:///{}", self.db.display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        common::wait_for_port(&self.address(), Duration::from_secs(30));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ControlledBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/health/ready`: whether it answered 200, and its body.
fn ready(port: u16) -> (bool, String) {
    let (status, body) = common::http_get(port, "/health/ready");
    (status == 200, body)
}

#[test]
fn a_60_s_broker_outage_is_unready_then_ready_and_loses_or_doubles_nothing() {
    let mut broker = ControlledBroker::start();
    // Every helper of tests/common uses this broker (set before first use).
    std::env::set_var("ACCRUE_TEST_BROKERS", broker.address());
    let env = Env::new("outage", PARTITIONS);
    let producer = producer();
    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| {
            let customer = format!("out-{}", i % 200);
            let cents = 150 + (i as i64 * 53) % 7_000;
            let id = format!("out-order-{i}");
            let record = (
                Some(format!("cafe-central:{customer}")),
                order(&id, "cafe-central", "downtown", &customer, cents, "AZN"),
            );
            (id, cents, record)
        })
        .collect();
    let records: Vec<_> = orders.iter().map(|(_, _, r)| r.clone()).collect();

    let mut child = env.spawn();
    assert!(
        wait_until(Duration::from_secs(90), || ready(env.http_port).0),
        "not ready before the outage: {}\n{}",
        ready(env.http_port).1,
        env.logs()
    );
    produce(&producer, &env.input, &records);
    // Mid-stream: some accruals are out, not all.
    let started = wait_until(Duration::from_secs(60), || {
        sample(&scrape(env.http_port), "accrue_outbox_published_total", &[]) > 0.0
    });
    assert!(started, "nothing published\n{}", env.logs());
    broker.kill();
    let down_at = Instant::now();

    // While it is down: not ready (after librdkafka notices, a few seconds)
    // and never ready again until it is back.
    let noticed = wait_until(Duration::from_secs(20), || !ready(env.http_port).0);
    assert!(noticed, "still ready 20 s into the outage: {}", ready(env.http_port).1);
    let mut readings = Vec::new();
    while down_at.elapsed() < OUTAGE {
        let (ok, body) = ready(env.http_port);
        assert!(
            !ok,
            "ready while the broker is down ({:?} in): {body}",
            down_at.elapsed()
        );
        readings.push(body);
        std::thread::sleep(Duration::from_secs(2));
    }
    let last = readings.last().cloned().unwrap_or_default();
    assert!(
        last.contains("\"broker_reachable\":false") || last.contains("\"publisher_ok\":false"),
        "the readiness body does not say the broker is unreachable: {last}"
    );
    let depth = sample(&scrape(env.http_port), "accrue_outbox_depth", &[]);
    eprintln!("after {OUTAGE:?} down: outbox depth {depth}, ready says {last}");

    broker.up();
    let back = Instant::now();
    let recovered = wait_until(Duration::from_secs(180), || ready(env.http_port).0);
    assert!(recovered, "not ready again: {}\n{}", ready(env.http_port).1, env.logs());
    eprintln!("ready {:.1} s after the broker came back", back.elapsed().as_secs_f64());

    // Everything arrives, once.
    let complete = wait_until(Duration::from_secs(180), || {
        read_all(&env.accruals, PARTITIONS)
            .iter()
            .filter(|r| r.json()["type"] == "accrual.recorded")
            .count()
            >= ORDERS
    });
    assert!(complete, "not every accrual arrived\n{}", env.logs());
    assert_eq!(sample(&scrape(env.http_port), "accrue_outbox_depth", &[]), 0.0);
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    let mut by_source: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for record in read_all(&env.accruals, PARTITIONS) {
        *ids.entry(record.header("accrue-id").unwrap_or_default().to_owned())
            .or_default() += 1;
        let json = record.json();
        by_source
            .entry(json["source_event_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(json);
    }
    let doubled: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "published twice: {doubled:?}");
    for (id, cents, _) in &orders {
        let got = by_source.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.len(), 1, "order {id}: {} accruals", got.len());
        assert_eq!(got[0]["amount"], common::money(half_even_percent(*cents, 5)).as_str());
    }
}
