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
        let names = Family::ALL.iter().map(|f| f.name());
        let db = DB::open_cf_for_read_only(&opts, dir, names, false)?;
        Ok(RocksStore { db })
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
        for (family, op) in set.ops() {
            let cf = self.cf(*family)?;
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
}

use super::Durability;
