//! Diagnostic: reads one partition from a given offset with a plain
//! rdkafka consumer (no group) and prints the offsets it gets, to tell a
//! broker that serves nothing at an offset from a client that stops asking.
//!
//!   cargo run --example fetch_at -- BROKERS TOPIC PARTITION OFFSET [COUNT] [SECONDS]

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: fetch_at BROKERS TOPIC PARTITION OFFSET [COUNT] [SECONDS]".into());
    }
    let (brokers, topic) = (&args[1], &args[2]);
    let partition: i32 = args[3].parse()?;
    let offset: i64 = args[4].parse()?;
    let count: usize = args.get(5).map_or(Ok(3), |s| s.parse())?;
    let seconds: u64 = args.get(6).map_or(Ok(5), |s| s.parse())?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "fetch-at")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut eof = false;
    while got.len() < count && start.elapsed() < Duration::from_secs(seconds) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(m.offset()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                eof = true;
                break;
            }
            Some(Err(e)) => eprintln!("error: {e}"),
            None => {}
        }
    }
    println!(
        "{{\"topic\":\"{topic}\",\"partition\":{partition},\"low\":{low},\"high\":{high},\"from\":{offset},\"offsets\":{got:?},\"eof\":{eof},\"ms\":{}}}",
        start.elapsed().as_millis()
    );
    Ok(())
}
