//! The resume point of a recovered lane (the broker side is covered by
//! tests/outbox_recovery.rs and tests/scaleout.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{resume, Resume};
use crate::outbox::record::{Destination, OutboxRecord};
use crate::pipeline::{Message, Progress};
use crate::state::{keys, Durability, Entry, Family, MemoryStore, StateError, Store, WriteSet};

const P: u32 = 2;

fn accrual(seq: u64) -> Vec<u8> {
    OutboxRecord {
        destination: Destination::Accruals,
        partition: None,
        key: Some(format!("t:c-{seq}").into_bytes()),
        headers: Vec::new(),
        payload: format!("{{\"seq\":{seq}}}").into_bytes(),
    }
    .encode()
}

fn commit(store: &dyn Store, progress: &Progress, seqs: std::ops::Range<u64>) -> Result<(), StateError> {
    let mut set = WriteSet::new();
    for seq in seqs.clone() {
        set.put(Family::Outbox, keys::outbox(P, seq), accrual(seq));
    }
    store.write(&set, Durability::Synced)?;
    progress.send(Message::Durable {
        partition: P,
        seq: seqs.end,
    });
    Ok(())
}

fn outbox_seqs(store: &dyn Store) -> Result<Vec<u64>, StateError> {
    Ok(store
        .scan(
            Family::Outbox,
            &keys::partition_prefix(P),
            &keys::outbox(P, 0),
            usize::MAX,
        )?
        .iter()
        .filter_map(|(k, _)| keys::parse_outbox(k).map(|(_, seq)| seq))
        .collect())
}

/// A store on which the consume loop commits seqs 3..6 just after the
/// publisher's scan found the end of the outbox, as it may at any time.
struct CommitDuringScan {
    inner: MemoryStore,
    progress: Arc<Progress>,
    done: AtomicBool,
}

impl Store for CommitDuringScan {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.get(family, key)
    }

    fn scan(&self, family: Family, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        let chunk = self.inner.scan(family, prefix, from, limit)?;
        if family == Family::Outbox && chunk.is_empty() && !self.done.swap(true, Ordering::SeqCst) {
            commit(&self.inner, &self.progress, 3..6)?;
        }
        Ok(chunk)
    }

    fn write(&self, set: &WriteSet, durability: Durability) -> Result<(), StateError> {
        self.inner.write(set, durability)
    }

    fn delete_partition(&self, p: u32) -> Result<(), StateError> {
        self.inner.delete_partition(p)
    }
}

#[test]
fn records_committed_during_the_scan_are_not_skipped() -> Result<(), Box<dyn std::error::Error>> {
    let progress = Arc::new(Progress::default());
    progress.send(Message::Owned {
        partition: P,
        durable: 0,
    });
    let store = CommitDuringScan {
        inner: MemoryStore::default(),
        progress: progress.clone(),
        done: AtomicBool::new(false),
    };
    commit(&store.inner, &progress, 0..3)?;
    // The broker holds 0..=2 already.
    let published = HashMap::from([(Destination::Accruals, 2)]);
    let got = resume(&store, &progress, P, &published, u64::MAX)?;
    assert_eq!(progress.durable(P), Some(6), "the commit happened during the scan");
    assert_eq!(
        got,
        Resume {
            next: 3,
            found: 3,
            already: 3
        },
        "resume at the first record committed during the scan, not at the durable mark after it"
    );
    assert_eq!(
        outbox_seqs(&store)?,
        vec![3, 4, 5],
        "only published records are deleted"
    );
    Ok(())
}

#[test]
fn resumes_at_the_first_unpublished_record() -> Result<(), Box<dyn std::error::Error>> {
    let progress = Progress::default();
    progress.send(Message::Owned {
        partition: P,
        durable: 0,
    });
    let store = MemoryStore::default();
    commit(&store, &progress, 0..10)?;
    let published = HashMap::from([(Destination::Accruals, 6)]);
    let got = resume(&store, &progress, P, &published, u64::MAX)?;
    assert_eq!(
        got,
        Resume {
            next: 7,
            found: 10,
            already: 7
        }
    );
    assert_eq!(outbox_seqs(&store)?, vec![7, 8, 9]);
    // Nothing published: everything stays and is sent from the start.
    let got = resume(&store, &progress, P, &HashMap::new(), u64::MAX)?;
    assert_eq!(got.next, 7);
    assert_eq!(got.already, 0);
    Ok(())
}

#[test]
fn an_oversized_record_is_looked_for_among_the_dead_letters() -> Result<(), Box<dyn std::error::Error>> {
    let progress = Progress::default();
    progress.send(Message::Owned {
        partition: P,
        durable: 0,
    });
    let store = MemoryStore::default();
    let big = OutboxRecord {
        destination: Destination::Accruals,
        partition: None,
        key: Some(b"t:c".to_vec()),
        headers: Vec::new(),
        payload: vec![b'x'; 70_000],
    };
    let mut set = WriteSet::new();
    set.put(Family::Outbox, keys::outbox(P, 0), big.encode());
    set.put(Family::Outbox, keys::outbox(P, 1), accrual(1));
    store.write(&set, Durability::Synced)?;
    progress.send(Message::Durable { partition: P, seq: 2 });
    // Its stand-in (a dead letter with id P-0) is on the broker; seq 1 is not.
    let published = HashMap::from([(Destination::DeadLetter, 0)]);
    let got = resume(&store, &progress, P, &published, 65_536)?;
    assert_eq!(
        got,
        Resume {
            next: 1,
            found: 2,
            already: 1
        }
    );
    assert_eq!(outbox_seqs(&store)?, vec![1]);
    Ok(())
}

#[test]
fn accrual_references_resume_like_whole_records() -> Result<(), Box<dyn std::error::Error>> {
    let progress = Progress::default();
    progress.send(Message::Owned {
        partition: P,
        durable: 0,
    });
    let store = MemoryStore::default();
    let mut set = WriteSet::new();
    for seq in 0..4 {
        // Seq 2 renders larger than the limit: it went out as a dead letter.
        crate::outbox::render::tests::accrual_with_entry(&mut set, P, seq, if seq == 2 { 2_000 } else { 0 });
    }
    store.write(&set, Durability::Synced)?;
    progress.send(Message::Durable { partition: P, seq: 4 });
    let published = HashMap::from([(Destination::Accruals, 1), (Destination::DeadLetter, 2)]);
    let got = resume(&store, &progress, P, &published, 1_500)?;
    assert_eq!(
        got,
        Resume {
            next: 3,
            found: 4,
            already: 3
        }
    );
    assert_eq!(outbox_seqs(&store)?, vec![3]);
    // The ledger keeps every entry: only the references go.
    let ledger = store.scan(
        Family::Ledger,
        &keys::partition_prefix(P),
        &keys::partition_prefix(P),
        10,
    )?;
    assert_eq!(ledger.len(), 4);
    Ok(())
}
