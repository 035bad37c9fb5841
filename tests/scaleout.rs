//! Scale-out through the real broker: two `accrue run` instances with
//! separate state directories share 4 partitions in one consumer group.
//! One is SIGKILLed mid-stream and the survivor takes its partitions over,
//! restoring their state from the changelog; the killed one comes back with
//! an **empty** state directory and restores what the group gives back;
//! then each instance is SIGKILLed once more. The input holds 20,000 orders
//! over 600 customers, bookings whose timers fall due during the run, and
//! referral visits whose credits cross partitions.
//!
//! At the end a third instance with an empty state directory restores all
//! four partitions from the changelog alone; its balances and ledger counts
//! must equal values computed here, no timer may be left, every booking is
//! credited once, and no output id appears twice on the accruals topic.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accrue::contract::partition_for;
use accrue::state::{keys, Family, RocksStore, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::json;

use common::{
    free_port, high_watermark_sum, kill9, produce, producer, read_all, sample, scrape, terminate, wait_until, Env,
};

const PARTITIONS: i32 = 4;
const CUSTOMERS: usize = 600;
const ORDERS: usize = 20_000;
const REFERRERS: usize = 20;
const INVITEES: usize = 100;
const BOOKINGS: usize = 300;

const CHAIN: &str = r#"
id = "chain"
currency = "EUR"
[branches.main]
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "5"
branches = { main = "active" }
[referral]
invitee_discount_percent = "10"
referrer_account = "cashback"
referrer_amount = "1.00"
reward = "every_visit"
[bookings]
credit_delay = "2s"
points = { yoga = "10" }
"#;

fn partition_of(customer: &str) -> u32 {
    partition_for(format!("chain:{customer}").as_bytes(), PARTITIONS as u32)
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn half_even_percent(cents: i64, percent: i64) -> i64 {
    let scaled = cents * percent;
    let (q, r) = (scaled / 100, scaled % 100);
    match r.cmp(&50) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
        std::cmp::Ordering::Less => q,
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn event(event_id: &str, event_type: &str, customer: &str, body: serde_json::Value) -> (Option<String>, Vec<u8>) {
    let value = json!({
        "schema_version": 1, "event_id": event_id, "type": event_type, "tenant": "chain",
        "branch": "main", "customer": customer, "occurred_at": rfc3339(time::OffsetDateTime::now_utc()), "body": body
    });
    (Some(format!("chain:{customer}")), value.to_string().into_bytes())
}

fn purchase(cents: i64, extra: serde_json::Value) -> serde_json::Value {
    let amount = money(cents);
    let mut body = json!({
        "visit_id": "v", "order_id": "o", "sale_type": "dine_in",
        "lines": [{"product": "p", "category": "food", "quantity": "1", "amount": amount}],
        "payments": [{"method": "card", "amount": amount}],
        "total": amount, "currency": "EUR"
    });
    if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct Expect {
    /// Balance in cents (or points) by account.
    accounts: BTreeMap<String, i64>,
    entries: usize,
}

/// One `accrue run` instance: its own config (state directory, HTTP port),
/// sharing the topics and the consumer group of `env`.
struct Instance {
    name: &'static str,
    config: PathBuf,
    state: PathBuf,
    port: u16,
    runs: u32,
}

impl Instance {
    fn new(env: &Env, name: &'static str) -> Instance {
        let state = env.dir.path().join(format!("state-{name}"));
        let port = free_port();
        let config = env.dir.path().join(format!("accrue-{name}.toml"));
        let instance = Instance {
            name,
            config,
            state,
            port,
            runs: 0,
        };
        instance.write_config(env);
        instance
    }

    /// The shared config with this instance's state directory and port.
    fn write_config(&self, env: &Env) {
        let text = std::fs::read_to_string(&env.config).unwrap();
        let text = text
            .replace(
                &format!("dir = \"{}\"", env.state.display()),
                &format!("dir = \"{}\"", self.state.display()),
            )
            .replace(
                &format!("listen = \"127.0.0.1:{}\"", env.http_port),
                &format!("listen = \"127.0.0.1:{}\"", self.port),
            );
        assert!(text.contains(&self.state.display().to_string()));
        std::fs::write(&self.config, text).unwrap();
    }

    fn spawn(&mut self, env: &Env) -> Child {
        let log = env.dir.path().join(format!("run-{}-{}.log", self.name, self.runs));
        self.runs += 1;
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        Command::new(env!("CARGO_BIN_EXE_accrue"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap()
    }

    fn owned(&self) -> f64 {
        sample(&scrape(self.port), "accrue_partitions_owned", &[])
    }

    fn ready(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = "GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }
}

fn counter_total(port: u16, name: &str) -> f64 {
    sample(&scrape(port), name, &[])
}

fn log_lines(env: &Env, needle: &str) -> usize {
    std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
        })
        .sum()
}

#[test]
        let status = terminate(child, Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not stop cleanly\n{}",
            env.logs()
        );
    }

    // Output: every record once, every booking credited once.
    let records = read_all(&env.accruals, PARTITIONS);
    let mut ids = HashSet::new();
    let mut credited = HashSet::new();
    let mut by_command = HashSet::new();
    for record in &records {
        let id = record.header("accrue-id").unwrap().to_owned();
        assert!(ids.insert(id.clone()), "output id {id} published twice");
        let value = record.json();
        match value["entry_type"].as_str() {
            Some("service_points") => {
                let source = value["source_event_id"].as_str().unwrap().to_owned();
                assert!(bookings.contains(&source), "{source} is not a booking");
                assert!(credited.insert(source.clone()), "{source} credited twice");
            }
            Some("referral_accrual") => {
                let key = (
                    value["source"]["partition"].as_u64().unwrap(),
                    value["source"]["offset"].as_i64().unwrap(),
                );
                assert!(by_command.insert(key), "a command credited twice: {value}");
            }
            _ => {}
        }
    }
    assert_eq!(records.len(), outputs, "accruals topic record count");
    assert_eq!(credited.len(), BOOKINGS, "every timer fired once");
    assert_eq!(by_command.len(), crossing, "crossing referral credits");
    assert!(
        read_all(&env.dead_letter, PARTITIONS).is_empty(),
        "nothing dead-lettered"
    );

    // State: a third instance with an empty state directory restores all
    // four partitions from the changelog; it must equal the computed values.
    env.new_group();
    let mut c = Instance::new(&env, "c");
    let mut child_c = c.spawn(&env);
    let ready = wait_until(Duration::from_secs(180), || c.owned() == 4.0 && c.ready());
    assert!(ready, "c never restored all partitions\n{}", env.logs());
    let status = terminate(&mut child_c, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "c did not stop cleanly\n{}",
        env.logs()
    );
    assert_eq!(
        high_watermark_sum(&env, &env.accruals),
        outputs as i64,
        "the restored instance published nothing new"
    );
    check_state(&c.state, &expected);

    let restores = log_lines(&env, "partition restored");
    eprintln!(
        "scale-out test: {total} events, {} outputs once, {BOOKINGS} timers once, {crossing} crossing credits, \
         SIGKILLs {kills:?}, takeovers after {takeovers:?} s, {restores} partition restores, {} customers checked",
        outputs,
        expected.len()
    );
}

/// Where the pipeline stands, for a failure message: each topic's high
/// watermark per partition and each instance's partition metrics.
fn diagnose(env: &Env, instances: &[Instance]) -> String {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &common::broker().address)
        .create()
        .unwrap();
    let mut out = String::new();
    let changelog = format!("{}.changelog", env.internal);
    for topic in [&env.input, &env.internal, &env.accruals, &changelog] {
        let marks: Vec<i64> = (0..env.partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map_or(-1, |(_, h)| h)
            })
            .collect();
        out.push_str(&format!("high watermarks of {topic}: {marks:?}\n"));
    }
    for i in instances {
        let text = scrape(i.port);
        out.push_str(&format!("--- {} metrics\n", i.name));
        for line in text.lines().filter(|l| {
            [
                "accrue_partitions_owned",
                "accrue_consumer_lag",
                "accrue_outbox_depth",
                "accrue_events_consumed_total",
                "accrue_partition_assignments_total",
                "accrue_ready",
            ]
            .iter()
            .any(|m| l.starts_with(m))
        }) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn check_state(state: &Path, expected: &HashMap<String, Expect>) {
    let store = RocksStore::open_read_only(state).unwrap();
    let mut found: HashMap<String, Expect> = HashMap::new();
    for p in 0..PARTITIONS as u32 {
        let prefix = keys::partition_prefix(p);
        assert!(
            store.scan(Family::Timers, &prefix, &prefix, 10).unwrap().is_empty(),
            "timers left in partition {p}"
        );
        for (key, value) in store.scan(Family::Balances, &prefix, &prefix, usize::MAX).unwrap() {
            let mut parts = key[4..]
                .splitn(3, |b| *b == 0)
                .map(|s| String::from_utf8(s.to_vec()).unwrap());
            let (tenant, customer, account) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(tenant, "chain");
            assert_eq!(p, partition_of(&customer), "{customer} in partition {p}");
            let balance = keys::decode_decimal(&value).unwrap();
            let units = if account == "service_points" {
                balance.to_i64().unwrap()
            } else {
                (balance * Decimal::ONE_HUNDRED).to_i64().unwrap()
            };
            found.entry(customer).or_default().accounts.insert(account, units);
        }
        for (key, _) in store.scan(Family::Ledger, &prefix, &prefix, usize::MAX).unwrap() {
            let mut parts = key[4..]
                .splitn(3, |b| *b == 0)
                .map(|s| String::from_utf8(s.to_vec()).unwrap());
            let (_, customer) = (parts.next().unwrap(), parts.next().unwrap());
            found.entry(customer).or_default().entries += 1;
        }
    }
    for (customer, want) in expected {
        assert_eq!(found.get(customer), Some(want), "{customer}");
    }
    assert_eq!(found.len(), expected.len(), "only the expected customers have balances");
}
