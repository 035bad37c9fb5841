//! An in-memory store for tests of the pipeline logic without RocksDB.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Durability, Entry, Family, Op, StateError, Store, WriteSet};

/// Every family's keys, ordered as RocksDB orders them.
type Tree = BTreeMap<(Family, Vec<u8>), Vec<u8>>;

/// One ordered map behind a mutex; writes are atomic.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Tree>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tree> {
        // A panic while holding the lock can only come from a test; keep going.
        self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.lock().get(&(family, key.to_vec())).cloned())
    }

    fn scan(&self, family: Family, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        let data = self.lock();
        Ok(data
            .range((family, from.to_vec())..)
            .take_while(|((f, k), _)| *f == family && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, set: &WriteSet, _durability: Durability) -> Result<(), StateError> {
        let mut data = self.lock();
        for (family, op) in set.ops() {
            match op {
                Op::Put(k, v) => {
                    data.insert((*family, k.clone()), v.clone());
                }
                Op::Delete(k) => {
                    data.remove(&(*family, k.clone()));
                }
            }
        }
        Ok(())
    }

    fn delete_partition(&self, p: u32) -> Result<(), StateError> {
        let prefix = p.to_be_bytes();
        self.lock().retain(|(_, k), _| !k.starts_with(&prefix));
        Ok(())
    }
}
