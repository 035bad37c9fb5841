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
    free_port, half_even_percent, high_watermark_sum, kill9, produce, producer, purchase_body, read_all, rfc3339,
    sample, scrape, terminate, wait_until, Env,
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

fn event(event_id: &str, event_type: &str, customer: &str, body: serde_json::Value) -> (Option<String>, Vec<u8>) {
    let value = json!({
        "schema_version": 1, "event_id": event_id, "type": event_type, "tenant": "chain",
        "branch": "main", "customer": customer, "occurred_at": rfc3339(time::OffsetDateTime::now_utc()), "body": body
    });
    (Some(format!("chain:{customer}")), value.to_string().into_bytes())
}

fn purchase(cents: i64, extra: serde_json::Value) -> serde_json::Value {
    purchase_body(cents, "EUR", extra)
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
fn two_instances_share_partitions_and_state_follows_through_sigkills() {
    let env = Env::new("scaleout", PARTITIONS);
    common::write(&env.dir.path().join("tenants/chain.toml"), CHAIN);
    let mut rng = StdRng::seed_from_u64(0x5CA1_E0F7);
    let p = producer();

    let mut expected: HashMap<String, Expect> = HashMap::new();
    let mut credit = |customer: &str, account: &str, amount: i64| {
        let e = expected.entry(customer.to_owned()).or_default();
        *e.accounts.entry(account.to_owned()).or_default() += amount;
        e.entries += 1;
    };
    let mut outputs = 0usize;

    // Referrers with phones, in the directory before any referral visit.
    let phone = |i: usize| format!("+4930{i:07}");
    let referrers: Vec<String> = (0..REFERRERS).map(|i| format!("c-{i}")).collect();
    let upserts: Vec<_> = referrers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            event(
                &format!("up-{i}"),
                "customer.upserted",
                r,
                json!({"phone": phone(i), "registered": true, "marketing_consent": false}),
            )
        })
        .collect();
    produce(&p, &env.input, &upserts);

    let mut a = Instance::new(&env, "a");
    let mut b = Instance::new(&env, "b");
    let child_a = a.spawn(&env);
    let child_b = b.spawn(&env);
    let shared = wait_until(Duration::from_secs(120), || {
        a.owned() >= 1.0 && b.owned() >= 1.0 && a.owned() + b.owned() == 4.0
    });
    assert!(shared, "the two instances never shared the partitions\n{}", env.logs());
    let loaded = wait_until(Duration::from_secs(60), || {
        sample(&scrape(a.port), "accrue_directory_entries", &[]) >= REFERRERS as f64
    });
    assert!(loaded, "directory not loaded\n{}", env.logs());

    // The stream: orders over all customers, referral visits whose
    // referrer sits on another partition, bookings due 2 s after their end.
    let mut stream = Vec::new();
    for n in 0..ORDERS {
        let customer = format!("c-{}", rng.gen_range(0..CUSTOMERS));
        let cents = rng.gen_range(100..50_000);
        stream.push(event(
            &format!("o-{n}"),
            "order.paid",
            &customer,
            purchase(cents, json!({})),
        ));
        credit(&customer, "cashback", half_even_percent(cents, 5));
        outputs += 1;
    }
    let mut crossing = 0;
    for i in 0..INVITEES {
        let r = rng.gen_range(0..REFERRERS);
        let mut j = i;
        let invitee = loop {
            let id = format!("inv-{j}");
            if partition_of(&id) != partition_of(&referrers[r]) {
                break id;
            }
            j += INVITEES;
        };
        let visits = rng.gen_range(1..=3);
        for v in 0..visits {
            let cents = rng.gen_range(100..20_000);
            let (kind, extra) = if v == 0 {
                ("visit.completed", json!({"referrer_phone": phone(r)}))
            } else {
                ("order.paid", json!({}))
            };
            // Visits of one invitee stay in order: placed at increasing points.
            let at = (stream.len() * (v + 1) / 4).min(stream.len());
            stream.insert(
                at,
                event(&format!("inv-{i}-{v}"), kind, &invitee, purchase(cents, extra)),
            );
            credit(&invitee, "cashback", half_even_percent(cents, 5));
            credit(&referrers[r], "cashback", 100);
            outputs += 2;
            crossing += 1;
        }
        outputs += 1; // referral.applied
    }
    let now = time::OffsetDateTime::now_utc();
    let mut bookings = HashSet::new();
    for n in 0..BOOKINGS {
        let customer = format!("c-{}", rng.gen_range(0..CUSTOMERS));
        let at = rng.gen_range(0..stream.len());
        // Due at various moments during the run: before, between and after the kills.
        let ends = now + Duration::from_secs(rng.gen_range(0..40));
        stream.insert(
            at,
            event(
                &format!("bk-{n}"),
                "booking.created",
                &customer,
                json!({"booking_id": format!("b-{n}"), "service": "yoga",
                       "starts_at": rfc3339(ends - Duration::from_secs(3600)), "ends_at": rfc3339(ends)}),
            ),
        );
        credit(&customer, "service_points", 10);
        bookings.insert(format!("bk-{n}"));
        outputs += 1;
    }

    // Feed at a steady pace in the background, for about a minute.
    let total = stream.len();
    let topic = env.input.clone();
    let feeder = std::thread::spawn(move || {
        let p = producer();
        for chunk in stream.chunks(50) {
            produce(&p, &topic, chunk);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let processed = |i: &Instance| counter_total(i.port, "accrue_events_processed_total");

    // Kill one instance at a time, alternating, mid-stream; the survivor
    // takes over its partitions, restoring them; the victim comes back
    // (the first time with an empty state directory) and the group
    // rebalances back. tansu 0.6.0 does not rebalance when the member it
    // elected leader dies (the survivor waits until a member joins again);
    // such a kill still tests the restart, and the loop goes on until a
    // takeover by a survivor was seen too.
    let mut instances = [a, b];
    let mut children = [child_a, child_b];
    let mut kills = [0usize; 2];
    let mut takeovers = Vec::new();
    let mut emptied = false;
    let mut victim = 1;
    for _ in 0..8 {
        if kills.iter().all(|k| *k >= 2) && !takeovers.is_empty() && emptied {
            break;
        }
        let survivor = 1 - victim;
        let before = processed(&instances[victim]);
        let moving = wait_until(Duration::from_secs(60), || {
            processed(&instances[victim]) >= before + 300.0
        });
        assert!(
            moving,
            "instance {} made no progress\n{}",
            instances[victim].name,
            env.logs()
        );
        kill9(&mut children[victim]);
        kills[victim] += 1;
        let killed_at = Instant::now();
        if wait_until(Duration::from_secs(25), || instances[survivor].owned() == 4.0) {
            takeovers.push(killed_at.elapsed().as_secs_f64());
            eprintln!(
                "{} took over all partitions {:.1} s after the SIGKILL of {}",
                instances[survivor].name,
                killed_at.elapsed().as_secs_f64(),
                instances[victim].name
            );
        } else {
            eprintln!(
                "no takeover after the SIGKILL of {} (tansu: the leader died)",
                instances[victim].name
            );
        }
        let empty = !emptied;
        if empty {
            std::fs::remove_dir_all(&instances[victim].state).unwrap();
            emptied = true;
        }
        children[victim] = instances[victim].spawn(&env);
        let back = wait_until(Duration::from_secs(120), || {
            instances[victim].owned() >= 1.0 && instances[survivor].owned() >= 1.0
        });
        assert!(back, "the group never shared the partitions again\n{}", env.logs());
        let ready = wait_until(Duration::from_secs(120), || instances[victim].ready());
        assert!(ready, "{} never became ready\n{}", instances[victim].name, env.logs());
        if empty {
            assert!(
                counter_total(instances[victim].port, "accrue_restore_records_total") > 0.0,
                "the empty state directory was restored from the changelog"
            );
        }
        victim = survivor;
    }
    assert!(kills.iter().all(|k| *k >= 2), "each instance killed twice: {kills:?}");
    assert!(
        !takeovers.is_empty(),
        "no survivor ever took over all partitions\n{}",
        env.logs()
    );

    let [mut child_a, mut child_b] = children;
    feeder.join().unwrap();

    let complete = wait_until(Duration::from_secs(300), || {
        high_watermark_sum(&env, &env.accruals) >= outputs as i64
    });
    assert!(
        complete,
        "outputs incomplete: {} of {outputs}\n{}\n{}",
        high_watermark_sum(&env, &env.accruals),
        diagnose(&env, &instances),
        env.logs()
    );
    std::thread::sleep(Duration::from_secs(3)); // anything extra would show now
    for (name, child) in [("a", &mut child_a), ("b", &mut child_b)] {
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
