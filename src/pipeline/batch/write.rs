//! Stage 5, write: per-partition cursors (output sequence, input offsets),
//! the changelog record, and the commit of the batch as one WAL-synced
//! RocksDB WriteBatch.

use super::*;

impl Processor {
    /// A batch that writes each of `keys` of partition `p` again with its
    /// current value (a tombstone if it has none), so that its changelog
    /// batch supersedes records a restore dropped (see
    /// [`crate::changelog::RestoreStats::shadowed`]). Commit it like any batch.
    ///
    /// # Errors
    /// [`StateError`] if the store cannot be read.
    pub fn repair_batch(&self, p: u32, keys: &[(Family, Vec<u8>)]) -> Result<Batch, StateError> {
        let mut batch = Batch::default();
        self.open_cursor(&mut batch, p)?;
        for (family, key) in keys {
            match self.store.get(*family, key)? {
                Some(value) => batch.set.put(*family, key.clone(), value),
                None => batch.set.delete(*family, key.clone()),
            }
        }
        Ok(batch)
    }

    /// Opens partition `p` in `batch`: loads its progress and reserves the
    /// sequence of the batch's changelog record, which precedes its outputs.
    pub(super) fn open_cursor(&self, batch: &mut Batch, p: u32) -> Result<(), StateError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = batch.cursors.entry(p) {
            let mut cursor = self.load_cursor(p)?;
            if self.changelog {
                cursor.changelog_seq = Some(cursor.next_seq);
                cursor.next_seq = seq_after(cursor.next_seq);
            }
            slot.insert(cursor);
        }
        Ok(())
    }

    /// Writes `batch` as one WAL-synced write and returns what became durable.
    ///
    /// # Errors
    /// [`StateError`] if the write fails; nothing of the batch is then stored.
    pub fn commit(&mut self, mut batch: Batch) -> Result<Committed, StateError> {
        self.write_loyalty(&mut batch);
        let Batch {
            mut set,
            balances,
            dirty,
            mut cursors,
            events,
            oldest_occurred_at,
            first_applied,
            directory,
            commands,
            totals,
            ..
        } = batch;
        self.write_totals(&mut set, totals)?;
        for (prefix, account) in dirty {
            let balance = balances
                .get(&prefix)
                .and_then(|b| b.get(&account))
                .copied()
                .unwrap_or_default();
            let mut key = prefix;
            key.extend_from_slice(account.as_bytes());
            set.put(Family::Balances, key, keys::encode_decimal(balance).to_vec());
        }
        let mut committed = Committed {
            commands,
            ..Committed::default()
        };
        for (p, cursor) in &cursors {
            set.put(
                Family::Meta,
                keys::next_seq(*p),
                keys::encode_u64(cursor.next_seq).to_vec(),
            );
            for (topic, off) in &cursor.offsets {
                set.put(
                    Family::Offsets,
                    keys::offset(*p, topic),
                    keys::encode_u64(*off as u64).to_vec(),
                );
                committed.offsets.push((topic.clone(), *p, *off));
            }
            committed.durable_seq.push((*p, cursor.next_seq));
        }
        if self.changelog {
            self.add_changelog(&mut set, &mut cursors)?;
        }
        let started = Instant::now();
        self.store.write(&set, Durability::Synced)?;
        for entry in &directory {
            self.routing.directory.upsert(entry);
        }
        telemetry::batch_committed(events, started.elapsed());
        telemetry::batch_latency(oldest_occurred_at, first_applied);
        self.committed.extend(cursors);
        Ok(committed)
    }

    pub(super) fn load_cursor(&self, p: u32) -> Result<Cursor, StateError> {
        if let Some(cursor) = self.committed.get(&p) {
            return Ok(cursor.clone());
        }
        let prefix = keys::partition_prefix(p);
        let timers = count(self.store.as_ref(), Family::Timers, &prefix)?;
        let reviews = count(self.store.as_ref(), Family::Reviews, &prefix)?;
        let changelog_last = self
            .store
            .get(Family::Meta, &keys::changelog_cursor(p))?
            .and_then(|v| Some((keys::decode_u64(v.get(..8)?)?, keys::decode_u64(v.get(8..)?)?)));
        Ok(Cursor {
            next_seq: read_next_seq(self.store.as_ref(), p)?,
            offsets: HashMap::new(),
            timers: timers.saturating_add(reviews),
            changelog_seq: None,
            changelog_last,
        })
    }

    /// Adds each partition's changelog record to `set`: every operation of
    /// the batch on the partition, tombstones for the outbox records of the
    /// previous batch (published before this record is sent), and the
    /// partition's batch number. See [`crate::changelog`].
    pub(super) fn add_changelog(
        &self,
        set: &mut WriteSet,
        cursors: &mut HashMap<u32, Cursor>,
    ) -> Result<(), StateError> {
        let mut writers: HashMap<u32, ChangeBatchWriter> = HashMap::with_capacity(cursors.len());
        for (p, cursor) in cursors.iter_mut() {
            let Some(seq) = cursor.changelog_seq.take() else {
                continue;
            };
            // One batch number per commit: u64 cannot run out.
            let n = cursor.changelog_last.map_or(1, |(n, _)| n.saturating_add(1));
            let mut value = keys::encode_u64(n).to_vec();
            value.extend_from_slice(&keys::encode_u64(seq));
            set.put(Family::Meta, keys::changelog_cursor(*p), value);
            let owner = self.owners.get(p).copied().unwrap_or_default();
            let mut writer = ChangeBatchWriter::new(BatchTag { owner, n }, seq, cursor.next_seq);
            if let Some((_, prev)) = cursor.changelog_last {
                for old in prev..seq {
                    writer.push(Family::Outbox, &crate::state::Op::Delete(keys::outbox(*p, old)));
                }
            }
            cursor.changelog_last = Some((n, seq));
            writers.insert(*p, writer);
        }
        for (family, op) in set.ops() {
            let key = match op {
                crate::state::Op::Put(k, _) | crate::state::Op::Delete(k) => k,
            };
            if let Some(writer) = keys::partition_of(key).and_then(|p| writers.get_mut(&p)) {
                writer.push(*family, op);
            }
        }
        for (p, writer) in writers {
            let Some(seq) = cursors.get(&p).and_then(|c| c.changelog_last).map(|(_, seq)| seq) else {
                continue;
            };
            let record = OutboxRecord {
                destination: Destination::Changelog,
                partition: None,
                key: None,
                headers: Vec::new(),
                payload: writer.finish(),
            };
            set.put(Family::Outbox, keys::outbox(p, seq), record.encode());
        }
        Ok(())
    }
}

/// How many keys of `family` start with `prefix`, read a page at a time
/// (a partition may hold a review timer per customer).
pub(super) fn count(store: &dyn Store, family: Family, prefix: &[u8]) -> Result<i64, StateError> {
    const PAGE: usize = 10_000;
    let mut total: i64 = 0;
    let mut from = prefix.to_vec();
    loop {
        let page = store.scan(family, prefix, &from, PAGE)?;
        total = total.saturating_add(page.len() as i64);
        match page.last() {
            Some((last, _)) if page.len() == PAGE => {
                from.clone_from(last);
                // The smallest key after `last`.
                from.push(0);
            }
            _ => return Ok(total),
        }
    }
}

/// The sequence the next output of partition `p` will take.
pub(super) fn peek_seq(batch: &Batch, p: u32) -> u64 {
    batch.cursors.get(&p).map_or(0, |c| c.next_seq)
}

pub(super) fn add_timers(batch: &mut Batch, p: u32, delta: i64) {
    // A count of stored timers, for a gauge: far below i64::MAX.
    let timers = &mut batch.cursors.entry(p).or_default().timers;
    *timers = timers.saturating_add(delta);
}

pub(super) fn next_seq(batch: &mut Batch, p: u32) -> u64 {
    let cursor = batch.cursors.entry(p).or_default();
    let seq = cursor.next_seq;
    cursor.next_seq = seq_after(seq);
    seq
}

/// The output sequence after `seq`. A partition would need 2^64 outputs,
/// 584 years at a billion a second, to reach the end, so the saturation
/// that keeps this free of overflow never happens.
pub(super) fn seq_after(seq: u64) -> u64 {
    seq.saturating_add(1)
}

/// Unix milliseconds of `at` (saturating: the contract bounds dates).
pub(super) fn unix_ms(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time of Unix milliseconds `ms` (a due time; 1970 if out of range).
pub(super) fn at_of_ms(ms: i64) -> time::OffsetDateTime {
    keys::time_of_ms(ms).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub(super) fn corrupt(family: Family, detail: &str) -> StateError {
    StateError::Corrupt {
        family: family.name(),
        detail: detail.to_owned(),
    }
}
