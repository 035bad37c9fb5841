//! The RocksDB store: one column family per key family, WAL always on.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{Entry, Family, Op, StateError, Store, WriteSet};

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
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
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
        let mut batch = WriteBatch::default();
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
