//! The RocksDB store: one column family per key family, WAL always on.
//! Expired dedupe records are dropped by a compaction filter.

use std::path::Path;
use std::time::Duration;

use rocksdb::{
    ColumnFamilyDescriptor, CompactionDecision, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use super::keys::DedupeValue;
use super::{Entry, Family, Op, StateError, Store, WriteSet};

/// How the store treats its data; the defaults keep everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Drop dedupe records whose event occurred longer ago than this plus
    /// [`DEDUPE_GRACE`] (`[state] dedupe_retention`); `None` keeps them.
    pub dedupe_retention: Option<Duration>,
}

/// How long after leaving the retention window a dedupe record is kept.
/// Events are refused at the window itself, so a clock that steps back by
/// up to this much (or an instance whose clock runs behind another's, after
/// a partition moves) never meets a duplicate whose record is gone.
pub const DEDUPE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Whether a dedupe record with this value may be dropped at `now_ms` when
/// records are kept `keep_ms` after their event occurred. Records without
/// an `occurred_at` (written by an older version) are kept.
fn dedupe_expired(value: &[u8], now_ms: i64, keep_ms: i64) -> bool {
    DedupeValue::decode(value)
        .and_then(|v| v.occurred_ms)
        .is_some_and(|occurred| occurred < now_ms.saturating_sub(keep_ms))
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The production store.
pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// [`StateError::Rocks`] if the directory cannot be opened, for example
    /// because another `accrue` process holds its lock.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the database in `dir` with `options`.
    ///
    /// # Errors
    /// As [`RocksStore::open`].
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // All families' memtables together stay under 64 MiB (RocksDB
        // flushes the largest when they pass it): otherwise each of the
        // thirteen may grow to its own 64 MiB, and the process's memory with
        // the total written since start (500 MiB at 200,000 events).
        opts.set_db_write_buffer_size(64 << 20);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // One block cache for every family; bloom filters make the common
        // point-read misses (new event ids, unknown customers) cheap.
        let cache = rocksdb::Cache::new_lru_cache(256 << 20);
        let cfs = Family::ALL.iter().map(|f| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            table.set_cache_index_and_filter_blocks(true);
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf_opts.set_block_based_table_factory(&table);
            if let (Family::Dedupe, Some(retention)) = (f, options.dedupe_retention) {
                let keep_ms = i64::try_from(retention.saturating_add(DEDUPE_GRACE).as_millis()).unwrap_or(i64::MAX);
                cf_opts.set_compaction_filter(
                    "accrue-dedupe-retention",
                    move |_level: u32, _key: &[u8], value: &[u8]| {
                        if dedupe_expired(value, now_ms(), keep_ms) {
                            CompactionDecision::Remove
                        } else {
                            CompactionDecision::Keep
                        }
                    },
                );
                // Files that no write reaches are still rewritten, so expired
                // records go within a fraction of the window.
                let period = (retention / 4).clamp(Duration::from_secs(3600), Duration::from_secs(7 * 24 * 3600));
                cf_opts.set_periodic_compaction_seconds(period.as_secs());
            }
            ColumnFamilyDescriptor::new(f.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(RocksStore { db })
    }

    /// Opens an existing database for reading while another process may own
    /// it (operators' `balance` and `ledger` commands, tests).
    ///
    /// # Errors
    /// [`StateError::Rocks`] if the directory holds no accrue database.
    pub fn open_read_only(dir: &Path) -> Result<Self, StateError> {
        let opts = Options::default();
        // A directory written by an older version may lack newer families;
        // open the ones it has (reads of the others fail with a message).
        let existing = DB::list_cf(&opts, dir)?;
        let names = Family::ALL
            .iter()
            .map(|f| f.name())
            .filter(|name| existing.iter().any(|e| e == name));
        let db = DB::open_cf_for_read_only(&opts, dir, names, false)?;
        Ok(RocksStore { db })
    }

    /// A consistent point-in-time view for reads that must not see a batch
    /// half-way (the read API). It never blocks writers; while it lives,
    /// RocksDB keeps the versions it needs, so keep it short or streaming.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            store: self,
            snap: self.db.snapshot(),
        }
    }

    /// Compacts every family now, running the compaction filters (for
    /// operators and measurements; RocksDB compacts on its own otherwise).
    ///
    /// # Errors
    /// [`StateError`] if a family is missing.
    pub fn compact(&self) -> Result<(), StateError> {
        for family in Family::ALL {
            self.db.compact_range_cf(self.cf(family)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// RocksDB's estimate of the live data of each family, in bytes
    /// (`rocksdb.estimate-live-data-size`: on-disk SST bytes that are not
    /// garbage; memtables not included).
    ///
    /// # Errors
    /// [`StateError`] if a family is missing or the property cannot be read.
    pub fn live_data_sizes(&self) -> Result<Vec<(Family, u64)>, StateError> {
        let mut out = Vec::with_capacity(Family::ALL.len());
        for family in Family::ALL {
            let size = self
                .db
                .property_int_value_cf(self.cf(family)?, rocksdb::properties::ESTIMATE_LIVE_DATA_SIZE)?;
            out.push((family, size.unwrap_or(0)));
        }
        Ok(out)
    }

    fn cf(&self, family: Family) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(family.name()).ok_or_else(|| StateError::Corrupt {
            family: family.name(),
            detail: "column family missing".into(),
        })
    }
}

impl Store for RocksStore {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.db.get_cf(self.cf(family)?, key)?)
    }

    fn multi_get(&self, family: Family, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
        self.db
            .batched_multi_get_cf(self.cf(family)?, keys, sorted)
            .into_iter()
            .map(|found| Ok(found?.map(|value| value.to_vec())))
            .collect()
    }

    fn scan(&self, family: Family, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(family)?, IteratorMode::From(from, Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    fn write(&self, set: &WriteSet, durability: Durability) -> Result<(), StateError> {
        // Sized once: growing the batch's buffer copied it several times
        // (4% of a replay). Per operation: a tag, the family id and two
        // length prefixes, at most 12 bytes besides key and value.
        let bytes = set
            .ops()
            .iter()
            .map(|(_, op)| match op {
                Op::Put(k, v) => k.len().saturating_add(v.len()),
                Op::Delete(k) => k.len(),
            })
            .fold(12usize.saturating_mul(set.len()), usize::saturating_add);
        let mut batch = WriteBatch::with_capacity_bytes(bytes.saturating_add(12));
        // One handle lookup per family, not per operation.
        let mut handles: [Option<&rocksdb::ColumnFamily>; Family::ALL.len()] = [None; Family::ALL.len()];
        // In key order, each memtable insert starts where the previous one
        // ended instead of descending the skip list from the top: memtable
        // work falls to about a quarter, which more than pays for the sort
        // (docs/benchmarks.md). The index keeps operations on one key in
        // their original order, so the outcome is unchanged.
        let mut ops: Vec<(u8, &[u8], u32)> = set
            .ops()
            .iter()
            .enumerate()
            .map(|(i, (f, op))| (*f as u8, op_key(op), i as u32))
            .collect();
        ops.sort_unstable();
        for (_, _, i) in ops {
            let (family, op) = &set.ops()[i as usize];
            let cf = match handles[*family as usize] {
                Some(cf) => cf,
                None => *handles[*family as usize].insert(self.cf(*family)?),
            };
            match op {
                Op::Put(k, v) => batch.put_cf(cf, k, v),
                Op::Delete(k) => batch.delete_cf(cf, k),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Synced);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
    fn delete_partition(&self, p: u32) -> Result<(), StateError> {
        let from = p.to_be_bytes();
        let mut batch = WriteBatch::default();
        for family in Family::ALL {
            let cf = self.cf(family)?;
            match p.checked_add(1) {
                Some(next) => batch.delete_range_cf(cf, from, next.to_be_bytes()),
                None => batch.delete_range_cf(cf, &from[..], &[0xFFu8; 5][..]),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }
}

use super::Durability;

fn op_key(op: &Op) -> &[u8] {
    match op {
        Op::Put(k, _) | Op::Delete(k) => k,
    }
}

/// A point-in-time view of a [`RocksStore`]; see [`RocksStore::snapshot`].
pub struct Snapshot<'a> {
    store: &'a RocksStore,
    snap: rocksdb::Snapshot<'a>,
}

impl Snapshot<'_> {
    /// Reads one key as of the snapshot.
    ///
    /// # Errors
    /// [`StateError`] if the store fails or the family is missing.
    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        Ok(self.snap.get_cf_opt(self.store.cf(family)?, key, opts)?)
    }

    /// Iterates `family` forward from the first key at or after `from`, as
    /// of the snapshot. The caller stops at the end of its prefix.
    ///
    /// # Errors
    /// [`StateError`] if the family is missing; items carry read errors.
    pub fn iter_from(
        &self,
        family: Family,
        from: &[u8],
    ) -> Result<impl Iterator<Item = Result<Entry, StateError>> + '_, StateError> {
        // A long scan (an export) must not evict the processor's hot blocks,
        // nor grow this process by the cache's size.
        let mut opts = rocksdb::ReadOptions::default();
        opts.fill_cache(false);
        let iter = self.snap.iterator_cf_opt(
            self.store.cf(family)?,
            opts,
            IteratorMode::From(from, Direction::Forward),
        );
        Ok(iter.map(|item| {
            item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                .map_err(StateError::from)
        }))
    }

    /// The partitions holding at least one key of `family`, found with one
    /// seek per partition.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn partitions(&self, family: Family) -> Result<Vec<u32>, StateError> {
        let mut found = Vec::new();
        let mut next: u64 = 0;
        while next <= u64::from(u32::MAX) {
            let from = (next as u32).to_be_bytes();
            let Some(item) = self.iter_from(family, &from)?.next() else {
                break;
            };
            let (key, _) = item?;
            let Some(p) = key
                .get(0..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
            else {
                break;
            };
            found.push(p);
            next = u64::from(p) + 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keys;

    #[test]
    fn only_dated_dedupe_records_past_the_window_expire() {
        let day = 86_400_000;
        let now = 100 * day;
        assert!(dedupe_expired(&DedupeValue::encode(1, now - 31 * day), now, 30 * day));
        assert!(!dedupe_expired(&DedupeValue::encode(1, now - 29 * day), now, 30 * day));
        // Events from the future, and records of an older version, stay.
        assert!(!dedupe_expired(&DedupeValue::encode(1, now + day), now, 30 * day));
        assert!(!dedupe_expired(&keys::encode_u64(1), now, 30 * day));
        assert!(!dedupe_expired(b"garbage", now, 30 * day));
    }

    #[test]
    fn compaction_drops_expired_dedupe_records_and_nothing_else() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let options = StoreOptions {
            dedupe_retention: Some(Duration::from_secs(30 * 86_400)),
        };
        let store = match RocksStore::open_with(dir.path(), options) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let now = now_ms();
        let day = 86_400_000;
        let old = keys::dedupe(0, "t", "old");
        let recent = keys::dedupe(0, "t", "recent");
        let legacy = keys::dedupe(0, "t", "legacy");
        // Within the window plus grace: kept, although past the window.
        let in_grace = keys::dedupe(0, "t", "in-grace");
        let mut set = WriteSet::new();
        set.put(
            Family::Dedupe,
            old.clone(),
            DedupeValue::encode(1, now - 40 * day).to_vec(),
        );
        set.put(
            Family::Dedupe,
            recent.clone(),
            DedupeValue::encode(2, now - day).to_vec(),
        );
        set.put(Family::Dedupe, legacy.clone(), keys::encode_u64(3).to_vec());
        set.put(
            Family::Dedupe,
            in_grace.clone(),
            DedupeValue::encode(4, now - 30 * day - 3_600_000).to_vec(),
        );
        // Another family with a value that would look expired is untouched.
        set.put(
            Family::Meta,
            old.clone(),
            DedupeValue::encode(1, now - 40 * day).to_vec(),
        );
        assert!(store.write(&set, Durability::Synced).is_ok());
        assert!(store.compact().is_ok());
        let has = |f, k: &[u8]| store.get(f, k).ok().flatten().is_some();
        assert!(!has(Family::Dedupe, &old), "expired record kept");
        assert!(has(Family::Dedupe, &recent));
        assert!(has(Family::Dedupe, &legacy));
        assert!(has(Family::Dedupe, &in_grace));
        assert!(has(Family::Meta, &old));
        let sizes = store.live_data_sizes().unwrap_or_default();
        assert_eq!(sizes.len(), Family::ALL.len());
    }

    #[test]
    fn operations_on_one_key_apply_in_their_order() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let store = match RocksStore::open(dir.path()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let mut set = WriteSet::new();
        set.put(Family::Meta, b"b".to_vec(), b"1".to_vec());
        set.put(Family::Meta, b"a".to_vec(), b"1".to_vec());
        set.put(Family::Meta, b"b".to_vec(), b"2".to_vec());
        set.delete(Family::Meta, b"a".to_vec());
        set.put(Family::Ledger, b"a".to_vec(), b"x".to_vec());
        set.delete(Family::Ledger, b"c".to_vec());
        set.put(Family::Ledger, b"c".to_vec(), b"y".to_vec());
        assert!(store.write(&set, Durability::Synced).is_ok());
        let get = |f, k: &[u8]| store.get(f, k).ok().flatten();
        assert_eq!(get(Family::Meta, b"b"), Some(b"2".to_vec()));
        assert_eq!(get(Family::Meta, b"a"), None);
        assert_eq!(get(Family::Ledger, b"a"), Some(b"x".to_vec()));
        assert_eq!(get(Family::Ledger, b"c"), Some(b"y".to_vec()));
    }
}
