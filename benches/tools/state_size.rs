//! Prints the live size of each state family after a full compaction, for
//! the "State growth per million events" figures in `docs/benchmarks.md`,
//! and the bytes an `accrue replay` wrote per event: the WAL files it left
//! and the changelog records waiting in its outbox.
//!
//! ```sh
//! cargo run --example state_size -- STATE_DIR [DEDUPE_RETENTION]
//! ```
//!
//! With a retention (`"29d"`), the dedupe compaction filter runs during the
//! compaction, as it would in `accrue run` with `[state] dedupe_retention`.
//! Run it right after the replay: opening the database replays and then
//! deletes the WAL files it measures first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accrue::changelog::ChangeBatch;
use accrue::outbox::{Destination, Stored};
use accrue::state::{keys, Family, RocksStore, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: state_size STATE_DIR [DEDUPE_RETENTION]")?);
    let retention: Option<Duration> = match args.next() {
        Some(text) => Some(humantime_serde::re::humantime::parse_duration(&text)?),
        None => None,
    };
    let wal = wal_bytes(&dir)?;
    let store = RocksStore::open_with(
        &dir,
        StoreOptions {
            dedupe_retention: retention,
        },
    )?;
    println!("{:<28} {:>14}", "WAL files (bytes)", wal);
    outbox_report(&store)?;
    store.compact()?;
    let snapshot = store.snapshot();
    let mut total = 0;
    println!();
    println!("{:<16} {:>12} {:>14}", "family", "keys", "live bytes");
    for (family, bytes) in store.live_data_sizes()? {
        let keys = snapshot.iter_from(family, &[])?.count();
        total += bytes;
        println!("{:<16} {:>12} {:>14}", family.name(), keys, bytes);
    }
    println!("{:<16} {:>12} {:>14}", "total", "", total);
    Ok(())
}

/// The size of the RocksDB write-ahead log files in `dir`.
fn wal_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "log") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The outbox by destination (stored bytes), and its changelog batches as
/// the records they expand to on the changelog topic (key and value bytes,
/// by family).
fn outbox_report(store: &RocksStore) -> Result<(), Box<dyn std::error::Error>> {
    let mut by_dest: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut by_family: BTreeMap<&'static str, (u64, u64, u64)> = BTreeMap::new();
    let mut batches = 0u64;
    for p in store.snapshot().partitions(Family::Outbox)? {
        let prefix = keys::partition_prefix(p);
        for (_, value) in store.scan(Family::Outbox, &prefix, &prefix, usize::MAX)? {
            let record = match Stored::decode(&value) {
                Some(Stored::Record(record)) => record,
                Some(Stored::Accrual(_)) => {
                    let slot = by_dest.entry("accruals (reference)").or_default();
                    slot.0 += 1;
                    slot.1 += value.len() as u64;
                    continue;
                }
                None => return Err("an outbox record does not decode".into()),
            };
            let slot = by_dest.entry(record.destination.as_str()).or_default();
            slot.0 += 1;
            slot.1 += value.len() as u64;
            if record.destination != Destination::Changelog {
                continue;
            }
            let Some(batch) = ChangeBatch::decode(&record.payload) else {
                return Err("a changelog batch does not decode".into());
            };
            batches += 1;
            for rec in batch.records(p) {
                let family = rec
                    .key
                    .first()
                    .and_then(|t| Family::from_tag(*t))
                    .map_or("(marker)", Family::name);
                let slot = by_family.entry(family).or_default();
                slot.0 += 1;
                slot.1 += rec.key.len() as u64;
                slot.2 += rec.value.as_ref().map_or(0, Vec::len) as u64;
            }
        }
    }
    println!();
    println!("{:<28} {:>10} {:>14}", "outbox destination", "records", "stored bytes");
    for (dest, (n, bytes)) in &by_dest {
        println!("{dest:<28} {n:>10} {bytes:>14}");
    }
    println!();
    println!("changelog batches: {batches}; their records on the changelog topic:");
    println!(
        "{:<28} {:>10} {:>12} {:>14}",
        "family", "records", "key bytes", "value bytes"
    );
    let (mut n, mut k, mut v) = (0, 0, 0);
    for (family, (records, key, value)) in &by_family {
        println!("{family:<28} {records:>10} {key:>12} {value:>14}");
        n += records;
        k += key;
        v += value;
    }
    println!("{:<28} {n:>10} {k:>12} {v:>14}", "total");
    Ok(())
}
