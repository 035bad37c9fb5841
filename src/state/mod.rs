//! State: the key families, the encoding of their values ([`codec`]), a
//! small store trait, and its RocksDB and in-memory implementations.
//!
//! The pipeline builds a [`WriteSet`] per batch and hands it to
//! [`Store::write`] as one atomic, WAL-synced write: balances, ledger,
//! dedupe records, input offsets and outbox records land together or not at
//! all.

pub mod codec;
pub mod keys;
mod memory;
mod rocks;

pub use keys::Family;
pub use memory::MemoryStore;
pub use rocks::{RocksStore, Snapshot, StoreOptions, DEDUPE_GRACE};

/// A state-store failure. Fatal for the processor: it stops rather than
/// continue with state it cannot trust.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("RocksDB error: {0}; check the state directory's disk space and permissions")]
    Rocks(#[from] rocksdb::Error),
    /// A stored value is not what its family holds.
    #[error("corrupt value in family {family}: {detail}; restore the state directory from a backup")]
    Corrupt {
        /// The family the value was read from.
        family: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// How durable a write must be before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The WAL is fsynced: the write survives a power loss.
    Synced,
    /// Written to the WAL without fsync: survives a process crash only.
    /// Used for outbox deletions, which recovery can redo.
    Buffered,
}

/// One operation of a [`WriteSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// The operations of one atomic write.
#[derive(Debug, Default, Clone)]
pub struct WriteSet {
    ops: Vec<(Family, Op)>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        WriteSet::default()
    }

    /// Adds a put.
    pub fn put(&mut self, family: Family, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((family, Op::Put(key, value)));
    }

    /// Adds a delete.
    pub fn delete(&mut self, family: Family, key: Vec<u8>) {
        self.ops.push((family, Op::Delete(key)));
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[(Family, Op)] {
        &self.ops
    }
}

/// A key and its value, as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The state store: point reads, prefix scans and atomic writes.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Reads many keys of one family; the answer is in the order of `keys`.
    /// Faster in key order (the prefetch stage sorts them).
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn multi_get(&self, family: Family, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        keys.iter().map(|key| self.get(family, key)).collect()
    }

    /// Reads up to `limit` entries whose keys start with `prefix`, from the
    /// first key at or after `from`, in key order.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn scan(&self, family: Family, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError>;

    /// Applies every operation of `set` atomically.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; then nothing of `set` was applied.
    fn write(&self, set: &WriteSet, durability: Durability) -> Result<(), StateError>;

    /// Removes everything of partition `p` in every family, atomically and
    /// WAL-synced (before a restore replaces it).
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn delete_partition(&self, p: u32) -> Result<(), StateError>;
}

/// The next input offset to apply for `topic`/`partition`, if any was stored.
///
/// # Errors
/// [`StateError`] if the store fails or the value is corrupt.
pub fn read_offset(store: &dyn Store, topic: &str, partition: u32) -> Result<Option<i64>, StateError> {
    match store.get(Family::Offsets, &keys::offset(partition, topic))? {
        Some(raw) => keys::decode_u64(&raw)
            .map(|v| Some(v as i64))
            .ok_or_else(|| StateError::Corrupt {
                family: Family::Offsets.name(),
                detail: "offset is not 8 bytes".into(),
            }),
        None => Ok(None),
    }
}

/// The next output sequence of `partition` (0 if it never wrote one).
///
/// # Errors
/// [`StateError`] if the store fails or the value is corrupt.
pub fn read_next_seq(store: &dyn Store, partition: u32) -> Result<u64, StateError> {
    match store.get(Family::Meta, &keys::next_seq(partition))? {
        Some(raw) => keys::decode_u64(&raw).ok_or_else(|| StateError::Corrupt {
            family: Family::Meta.name(),
            detail: "next_seq is not 8 bytes".into(),
        }),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Store) {
        let mut set = WriteSet::new();
        set.put(Family::Outbox, keys::outbox(1, 1), b"a".to_vec());
        set.put(Family::Outbox, keys::outbox(1, 2), b"b".to_vec());
        set.put(Family::Outbox, keys::outbox(2, 1), b"c".to_vec());
        set.put(Family::Meta, keys::next_seq(1), keys::encode_u64(3).to_vec());
        assert!(store.write(&set, Durability::Synced).is_ok());

        let p1 = store
            .scan(Family::Outbox, &keys::partition_prefix(1), &keys::outbox(1, 0), 10)
            .unwrap_or_default();
        assert_eq!(p1.len(), 2);
        assert_eq!(p1[0].1, b"a");
        let from_two = store
            .scan(Family::Outbox, &keys::partition_prefix(1), &keys::outbox(1, 2), 10)
            .unwrap_or_default();
        assert_eq!(from_two.len(), 1);
        assert_eq!(from_two[0].1, b"b");
        // Families are separate namespaces.
        assert_eq!(store.get(Family::Balances, &keys::next_seq(1)).ok().flatten(), None);

        let mut del = WriteSet::new();
        del.delete(Family::Outbox, keys::outbox(1, 1));
        assert!(store.write(&del, Durability::Buffered).is_ok());
        assert_eq!(store.get(Family::Outbox, &keys::outbox(1, 1)).ok().flatten(), None);
        assert_eq!(
            store.get(Family::Outbox, &keys::outbox(1, 2)).ok().flatten(),
            Some(b"b".to_vec())
        );
    }

    #[test]
    fn memory_store_behaves() {
        exercise(&MemoryStore::default());
    }

    #[test]
    fn rocks_store_behaves_and_persists() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        {
            let store = RocksStore::open(dir.path());
            assert!(store.is_ok(), "{:?}", store.err());
            if let Ok(store) = store {
                exercise(&store);
            }
        }
        let reopened = RocksStore::open(dir.path());
        assert!(reopened.is_ok());
        if let Ok(store) = reopened {
            assert_eq!(
                store.get(Family::Outbox, &keys::outbox(1, 2)).ok().flatten(),
                Some(b"b".to_vec())
            );
        }
    }
}
