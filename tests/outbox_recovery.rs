//! The crash window between "the broker has the record" and "the outbox
//! record is deleted", made deterministic: state is built with durable outbox
//! records, some of them are already on the accruals topic (as if the
//! process died before deleting them), and `accrue run` must publish only
//! the rest, each exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use accrue::config::Config;
use accrue::pipeline::{Batch, InputRecord, Processor};
use accrue::state::{keys, Family, RocksStore, Store};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use common::{order, producer, read_all, terminate, wait_until, Env};

const ORDERS: i64 = 10;
const ALREADY_PUBLISHED: u64 = 6;

#[test]
fn restart_publishes_only_what_the_broker_lacks() {
    let env = Env::new("recovery", 2);
    let config = Config::load(&env.config).unwrap();
    let p = producer();

    // Input: ten orders and one bad record, all on partition 0.
    let mut input: Vec<(String, Vec<u8>)> = (0..ORDERS)
        .map(|i| {
            let customer = format!("c-{i}");
            (
                format!("cafe-central:{customer}"),
                order(
                    &format!("rec-{i}"),
                    "cafe-central",
                    "downtown",
                    &customer,
                    1000 + i * 100,
                    "AZN",
                ),
            )
        })
        .collect();
    input.push(("cafe-central:c-0".into(), b"{not json".to_vec()));
    for (key, payload) in &input {
        p.send(
            BaseRecord::to(&env.input)
                .partition(0)
                .key(key.as_str())
                .payload(payload.as_slice()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    // State as a killed processor left it: everything applied and durable,
    // nothing deleted from the outbox.
    {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(&env.state).unwrap());
        let mut processor = Processor::new(store.clone(), Arc::new(config.tenants.clone()), Arc::from(&b"key"[..]));
        let mut batch = Batch::default();
        for (offset, (key, payload)) in input.iter().enumerate() {
            let record = InputRecord {
                topic: &env.input,
                partition: 0,
                offset: offset as i64,
                key: Some(key.as_bytes()),
                payload: Some(payload),
            };
            processor.apply(&mut batch, &record).unwrap();
        }
        processor.commit(batch).unwrap();

        // The broker already has the first records, published before the crash.
        for seq in 0..ALREADY_PUBLISHED {
            let raw = store.get(Family::Outbox, &keys::outbox(0, seq)).unwrap().unwrap();
            // As the publisher sends it: an accrual is rendered from its ledger entry.
            let record = accrue::outbox::load(store.as_ref(), 0, seq, &raw).unwrap();
            let id = format!("0-{seq}");
            let headers = OwnedHeaders::new().insert(Header {
                key: "accrue-id",
                value: Some(id.as_str()),
            });
            p.send(
                BaseRecord::to(&env.accruals)
                    .partition(0)
                    .key(record.key.as_deref().unwrap())
                    .payload(record.payload.as_slice())
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(60), || {
        read_all(&env.accruals, env.partitions).len() >= ORDERS as usize
            && !read_all(&env.dead_letter, env.partitions).is_empty()
    });
    assert!(done, "outputs incomplete\n{}", env.logs());
    std::thread::sleep(Duration::from_secs(1));
    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());

    let accruals = read_all(&env.accruals, env.partitions);
    let mut ids: Vec<String> = accruals
        .iter()
        .map(|r| r.header("accrue-id").unwrap().to_owned())
        .collect();
    ids.sort_by_key(|id| id[2..].parse::<u64>().unwrap());
    let expected: Vec<String> = (0..ORDERS).map(|s| format!("0-{s}")).collect();
    assert_eq!(ids, expected, "each accrual exactly once, none re-sent");
    let dead = read_all(&env.dead_letter, env.partitions);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header("accrue-id"), Some(format!("0-{ORDERS}").as_str()));
    assert_eq!(dead[0].header("accrue-error-kind"), Some("malformed_json"));

    let store = RocksStore::open_read_only(&env.state).unwrap();
    let left = store
        .scan(Family::Outbox, &keys::partition_prefix(0), &keys::outbox(0, 0), 100)
        .unwrap();
    assert!(left.is_empty(), "outbox drained");
    let log = env.logs();
    assert!(log.contains(&format!("already_published={ALREADY_PUBLISHED}")), "{log}");
}
