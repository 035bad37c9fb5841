//! Prints the live size of each state family after a full compaction, for
//! the "State growth per million events" figures in `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --example state_size -- STATE_DIR [DEDUPE_RETENTION]
//! ```
//!
//! With a retention (`"29d"`), the dedupe compaction filter runs during the
//! compaction, as it would in `accrue run` with `[state] dedupe_retention`.

use std::path::PathBuf;
use std::time::Duration;

use accrue::state::{RocksStore, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: state_size STATE_DIR [DEDUPE_RETENTION]")?);
    let retention: Option<Duration> = match args.next() {
        Some(text) => Some(humantime_serde::re::humantime::parse_duration(&text)?),
        None => None,
    };
    let store = RocksStore::open_with(
        &dir,
        StoreOptions {
            dedupe_retention: retention,
        },
    )?;
    store.compact()?;
    let snapshot = store.snapshot();
    let mut total = 0;
    println!("{:<16} {:>12} {:>14}", "family", "keys", "live bytes");
    for (family, bytes) in store.live_data_sizes()? {
        let keys = snapshot.iter_from(family, &[])?.count();
        total += bytes;
        println!("{:<16} {:>12} {:>14}", family.name(), keys, bytes);
    }
    println!("{:<16} {:>12} {:>14}", "total", "", total);
    Ok(())
}
