//! A record the broker accepted but will not serve back (tansu 0.6.0 serves
//! at most 5 MiB per fetch; a larger record stops its partition whatever the
//! consumer's settings) must not leave a silent partition behind: after
//! `[health] partition_stall` `/health/ready` is false, the partition is
//! named by `accrue_partition_stalled` and a log line, and the other
//! partitions go on.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use common::{http_get, order, produce, producer, read_all, sample, scrape, terminate, wait_until, Env};

/// The key of the record too large to be served.
const HUGE_KEY: &str = "cafe-central:huge";

/// Every line of every `accrue run` log of the test.
fn full_logs(env: &Env) -> String {
    let mut out = String::new();
    for n in 0..4 {
        out.push_str(&std::fs::read_to_string(env.dir.path().join(format!("run-{n}.log"))).unwrap_or_default());
    }
    out
}

#[test]
fn a_partition_the_broker_will_not_serve_is_reported_not_silent() {
    let env = Env::new("stall", 2);
    {
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text.push_str("[health]\npartition_stall = \"5s\"\n");
        std::fs::write(&env.config, text).unwrap();
    }
    let mut child = env.spawn();
    let ready = wait_until(Duration::from_secs(60), || {
        http_get(env.http_port, "/health/ready").0 == 200
    });
    assert!(ready, "not ready at start\n{}", env.logs());

    // A 6 MiB record, then ordinary orders for both partitions.
    let big: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &common::broker().address)
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    let payload = vec![b'x'; 6 << 20];
    big.send(BaseRecord::to(&env.input).key(HUGE_KEY).payload(&payload))
        .map_err(|(e, _)| e)
        .unwrap();
    big.flush(Duration::from_secs(60)).unwrap();
    let orders: Vec<(Option<String>, Vec<u8>)> = (0..40)
        .map(|i| {
            let customer = format!("st-{i}");
            (
                Some(format!("cafe-central:{customer}")),
                order(
                    &format!("st-order-{i}"),
                    "cafe-central",
                    "downtown",
                    &customer,
                    1_000,
                    "AZN",
                ),
            )
        })
        .collect();
    produce(&producer(), &env.input, &orders);
    // librdkafka's default partitioner, as accrue computes it.
    let stuck = accrue::contract::partition_for(HUGE_KEY.as_bytes(), 2);
    let other = 1 - stuck as i32;

    // The other partition goes on.
    let flowing = wait_until(Duration::from_secs(60), || {
        read_all(&env.accruals, 2).iter().any(|r| r.partition == other)
    });
    assert!(flowing, "the healthy partition did not go on\n{}", env.logs());

    // The stuck one is reported: readiness, metric, log line.
    let reported = wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(env.http_port, "/health/ready");
        status == 503 && body.contains("\"partitions_progressing\":false")
    });
    assert!(
        reported,
        "a stuck partition left readiness true: {}\n{}",
        http_get(env.http_port, "/health/ready").1,
        env.logs()
    );
    let metrics = scrape(env.http_port);
    assert_eq!(
        sample(
            &metrics,
            "accrue_partition_stalled",
            &[&format!("partition=\"{stuck}\"")]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "accrue_ready_condition",
            &["condition=\"partitions_progressing\""]
        ),
        0.0
    );
    let logs = full_logs(&env);
    assert!(
        logs.lines()
            .any(|l| l.contains("partition stalled") && l.contains(&format!("partition={stuck}"))),
        "{logs}"
    );

    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}
