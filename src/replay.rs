//! `accrue replay FILE`: NDJSON events through the same processor, state and
//! outbox as `accrue run`, with durable (WAL-synced) batches and no broker.
//! For backfills and for measuring the core.
//!
//! Each line is routed to the partition librdkafka's default partitioner
//! would choose for its key (`tenant:customer`), so the state can later be
//! served by `accrue run` with the same partition count. Offsets are stored
//! under the topic name `replay`, never under a Kafka topic, so a later run
//! reads its input from the start and event-id dedupe drops what the replay
//! already applied. Outbox records stay in the state until a run publishes
//! them.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use crate::config::Config;
use crate::contract;
use crate::outbox::{Destination, OutboxRecord};
use crate::pipeline::batch::Routing;
use crate::pipeline::poison::Attempts;
use crate::pipeline::workers::{Chunk, Core, Cores, FlushError};
use crate::pipeline::{InputRecord, Limits, Processor};
use crate::state::{keys, Family, RocksStore, StateError, Store, StoreOptions};
use crate::tools::gen::Pacer;

/// The pseudo-topic internal commands are delivered under in a replay.
pub const REPLAY_INTERNAL_TOPIC: &str = "replay.internal";

/// The pseudo-topic replay offsets are stored under.
pub const REPLAY_TOPIC: &str = "replay";

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// An apply worker failed.
    #[error(transparent)]
    Workers(#[from] FlushError),
    /// A record's processing failed inside accrue (a bug): nothing of its
    /// batch was written; fix or remove the line and replay again.
    #[error("processing failed at {0}; nothing of its batch was written")]
    Processing(String),
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayStats {
    /// Lines read.
    pub records: u64,
    /// Events applied.
    pub processed: u64,
    /// Lines dead-lettered.
    pub dead_lettered: u64,
    /// Duplicate event ids.
    pub duplicates: u64,
    /// Durable batches committed.
    pub batches: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// CPU seconds of this process (user + system).
    pub cpu_seconds: f64,
}

#[derive(Deserialize)]
struct KeyProbe<'a> {
    #[serde(borrow)]
    tenant: Option<&'a str>,
    #[serde(borrow)]
    customer: Option<&'a str>,
}

pub use crate::contract::partition_for;

/// Replays `file` into the state directory `state`, on `workers` apply
/// workers (partition `p` on worker `p % workers`, as in `accrue run`).
///
/// # Errors
/// [`ReplayError`] if the file cannot be read or the state fails.
pub fn replay(
    config: &Config,
    file: &Path,
    state: &Path,
    partitions: u32,
    workers: usize,
    progress: bool,
) -> Result<ReplayStats, ReplayError> {
    let reader = std::fs::File::open(file).map_err(|e| ReplayError::Io(file.display().to_string(), e))?;
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    std::fs::create_dir_all(state).map_err(|e| ReplayError::Io(state.display().to_string(), e))?;
    let store: Arc<dyn Store> = Arc::new(RocksStore::open_with(
        state,
        StoreOptions {
            dedupe_retention: config.state.dedupe_retention,
        },
    )?);
    let key_file = state.join("giftcard.key");
    let code_key: Arc<[u8]> = std::fs::read(&key_file)
        .map(Arc::from)
        .unwrap_or_else(|_| Arc::from(&b"replay"[..]));
    let tenants = Arc::new(config.tenants.clone());
    let routing = Routing {
        internal_topic: REPLAY_INTERNAL_TOPIC.into(),
        partitions,
        ..Routing::seeded(&config.tenants)
    };
    let cores = (0..workers.max(1))
        .map(|_| {
            let mut processor = Processor::new(store.clone(), tenants.clone(), code_key.clone());
            // A later `run` publishes the changelog records, so another
            // instance can restore what the replay wrote.
            processor.set_changelog(config.state.changelog);
            processor.set_limits(Limits::of(config));
            processor.set_routing(routing.clone());
            Core {
                processor,
                attempts: Attempts::new(1),
                chunk: Chunk::default(),
                till: Vec::new(),
            }
        })
        .collect();
    let mut cores = Cores::new(cores).map_err(|e| ReplayError::Io("apply worker threads".into(), e))?;
    let mut stats = ReplayStats::default();
    let mut pacer = Pacer::new(0, total);
    let started = Instant::now();
    let cpu_start = cpu_seconds();
    for (n, line) in BufReader::with_capacity(1 << 20, reader).lines().enumerate() {
        let line = line.map_err(|e| ReplayError::Io(file.display().to_string(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        stats.records += 1;
        // The key chooses the partition (and so the worker); the worker
        // decodes the line. A line without one goes to the partition of
        // the empty key, as a record without a key would.
        let key = match serde_json::from_str::<KeyProbe<'_>>(&line) {
            Ok(KeyProbe {
                tenant: Some(t),
                customer: Some(c),
            }) => Some(contract::customer_key(t, c)),
            _ => None,
        };
        cores.push(&InputRecord {
            topic: REPLAY_TOPIC,
            partition: partition_for(key.as_deref().unwrap_or_default().as_bytes(), partitions),
            offset: n as i64,
            key: key.as_deref().map(str::as_bytes),
            payload: Some(line.as_bytes()),
        });
        if cores.buffered() >= config.batch.max_events {
            flush(&mut cores, store.as_ref(), &mut stats)?;
        }
        if progress {
            pacer.tick();
        }
    }
    flush(&mut cores, store.as_ref(), &mut stats)?;
    stats.seconds = started.elapsed().as_secs_f64();
    stats.cpu_seconds = cpu_seconds() - cpu_start;
    Ok(stats)
}

/// Applies and commits what the workers hold, then delivers the internal
/// commands (referral credits, partner orders) those batches wrote to their
/// target partitions, as `accrue run` does through the internal topic, and
/// commits them. The outbox records stay for a later run to publish; the
/// target then drops them as duplicates by command id.
fn flush(cores: &mut Cores, store: &dyn Store, stats: &mut ReplayStats) -> Result<(), ReplayError> {
    let none = BTreeSet::new();
    let mut commands = Vec::new();
    for done in cores.flush(None, &none)? {
        if let Some(failed) = done.failed {
            return Err(ReplayError::Processing(format!(
                "{}/{} offset {}: {}",
                failed.topic, failed.partition, failed.offset, failed.failed.cause
            )));
        }
        let counts = done.counts;
        stats.processed += counts.processed;
        stats.dead_lettered += counts.dead_lettered;
        stats.duplicates += counts.duplicates;
        if let Some(committed) = done.committed {
            stats.batches += 1;
            commands.extend(committed.commands);
        }
    }
    let mut offsets: HashMap<u32, i64> = HashMap::new();
    let mut delivered = false;
    for (p, seq) in commands {
        let Some(value) = store.get(Family::Outbox, &keys::outbox(p, seq))? else {
            continue;
        };
        let Some(record) = OutboxRecord::decode(&value) else {
            continue;
        };
        if record.destination != Destination::Internal {
            continue;
        }
        let target = record.partition.unwrap_or(p);
        let offset = match offsets.get(&target) {
            Some(next) => *next,
            None => cores
                .core(target)
                .processor
                .stored_offset(REPLAY_INTERNAL_TOPIC, target)?
                .unwrap_or(0),
        };
        offsets.insert(target, offset + 1);
        cores.push(&InputRecord {
            topic: REPLAY_INTERNAL_TOPIC,
            partition: target,
            offset,
            key: record.key.as_deref(),
            payload: Some(&record.payload),
        });
        delivered = true;
    }
    if delivered {
        for done in cores.flush(None, &none)? {
            if done.committed.is_some() {
                stats.batches += 1;
            }
        }
    }
    Ok(())
}

/// CPU seconds (user + system) of this process, from `/proc/self/stat`;
/// 0 where that is not available.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux reports clock ticks at USER_HZ, 100 on every mainstream build.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioner_matches_librdkafka_consistent_random() {
        // crc32("cafe-central:c-1001") is stable; spread over 4 partitions.
        let p = partition_for(b"cafe-central:c-1001", 4);
        assert!(p < 4);
        assert_eq!(p, crc32fast::hash(b"cafe-central:c-1001") % 4);
        assert_eq!(partition_for(b"", 4), crc32fast::hash(b"") % 4);
    }

    #[test]
    fn replays_a_generated_file_durably() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let Ok(dir) = tempfile::tempdir() else { return };
        let file = dir.path().join("events.ndjson");
        let settings = crate::tools::gen::Settings {
            events: 2_000,
            customers: 100,
            zipf: 1.1,
            mix: crate::tools::gen::Mix::default(),
            seed: 3,
            distinct: false,
        };
        let lines: Vec<String> =
            match crate::tools::gen::Generator::new(config.tenants.values().cloned().collect(), settings) {
                Ok(g) => g.map(|(_, json)| json).collect(),
                Err(e) => panic!("{e}"),
            };
        let mut text = lines.join("\n");
        text.push_str("\n{broken\n");
        assert!(std::fs::write(&file, text).is_ok());
        let stats = replay(&config, &file, &dir.path().join("state"), 4, 2, false);
        let Ok(stats) = stats else { panic!("{stats:?}") };
        assert_eq!(stats.records, 2_001);
        assert_eq!(stats.processed, 2_000);
        assert_eq!(stats.dead_lettered, 1);
        // Replaying the same file again changes nothing: offsets are stored.
        let again = replay(&config, &file, &dir.path().join("state"), 4, 1, false);
        assert_eq!(again.map(|s| s.processed).ok(), Some(0));
    }
}
