//! One partition's changes of one committed batch, as the outbox stores
//! them until the publisher expands them into changelog records.
//!
//! Both versions share a header: version, [`BatchTag`] (24 bytes), the
//! batch's first and next output sequence (`u64` each) and the number of
//! changes (`u32`), all big-endian. Then each change is its family tag and
//! kind (1 put, 0 delete), and
//! - version 1: the key and the value, each with a `u32` length;
//! - version 2 (written now): the length of the prefix the key shares with
//!   the previous change's key, the rest of the key, and the value, each
//!   length a varint. Keys of one partition share at least its 4-byte
//!   prefix, and usually the tenant after it.
//!
//! A batch written by an older accrue may wait in a restored or same-disk
//! outbox: both versions decode.

use super::{marker_key, u64_at, BatchTag, LogRecord, Marker};
use crate::state::codec::{put_uint, Reader};
use crate::state::{Family, Op};

const V1: u8 = 1;
const V2: u8 = 2;
/// Where the change count sits in the header.
const COUNT_AT: usize = 1 + 24 + 16;
const HEADER: usize = COUNT_AT + 4;

/// One state change: a put (`Some`) or a delete (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The family.
    pub family: Family,
    /// The state key (starts with the partition).
    pub key: Vec<u8>,
    /// The new value; `None` deletes.
    pub value: Option<Vec<u8>>,
}

/// One partition's changes of one committed batch, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The writer and batch number.
    pub tag: BatchTag,
    /// The first output sequence of the batch (its own outbox record).
    pub from_seq: u64,
    /// The partition's next output sequence after the batch.
    pub to_seq: u64,
    /// The changes, in write order.
    pub changes: Vec<Change>,
}

/// Builds a [`ChangeBatch`]'s encoding (version 2) without materialising
/// its changes.
pub struct ChangeBatchWriter {
    buf: Vec<u8>,
    count: u32,
    last_key: Vec<u8>,
}

impl ChangeBatchWriter {
    /// Starts the batch `tag` covering output sequences `from_seq..to_seq`.
    pub fn new(tag: BatchTag, from_seq: u64, to_seq: u64) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.push(V2);
        buf.extend_from_slice(&tag.encode());
        buf.extend_from_slice(&from_seq.to_be_bytes());
        buf.extend_from_slice(&to_seq.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes()); // count, patched in finish
        ChangeBatchWriter {
            buf,
            count: 0,
            last_key: Vec::new(),
        }
    }

    /// Appends one operation.
    pub fn push(&mut self, family: Family, op: &Op) {
        let (key, value) = match op {
            Op::Put(key, value) => (key, Some(value)),
            Op::Delete(key) => (key, None),
        };
        self.buf.push(family.tag());
        self.buf.push(u8::from(value.is_some()));
        let shared = key.iter().zip(&self.last_key).take_while(|(a, b)| a == b).count();
        let rest = key.get(shared..).unwrap_or_default();
        put_uint(&mut self.buf, shared as u128);
        put_uint(&mut self.buf, rest.len() as u128);
        self.buf.extend_from_slice(rest);
        if let Some(value) = value {
            put_uint(&mut self.buf, value.len() as u128);
            self.buf.extend_from_slice(value);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        // A batch holds far fewer than 2^32 changes (its input is bounded).
        self.count = self.count.saturating_add(1);
    }

    /// The encoding.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(count) = self.buf.get_mut(COUNT_AT..HEADER) {
            count.copy_from_slice(&self.count.to_be_bytes());
        }
        self.buf
    }
}

impl ChangeBatch {
    /// Decodes a [`ChangeBatchWriter`]'s output, of either version; `None`
    /// if corrupt.
    pub fn decode(bytes: &[u8]) -> Option<ChangeBatch> {
        let version = *bytes.first()?;
        let tag = BatchTag::decode(bytes.get(1..25)?)?;
        let from_seq = u64_at(bytes, 25)?;
        let to_seq = u64_at(bytes, 33)?;
        let count = u32::from_be_bytes(bytes.get(COUNT_AT..HEADER)?.try_into().ok()?) as usize;
        let changes = match version {
            V1 => changes_v1(bytes, count)?,
            V2 => changes_v2(bytes, count)?,
            _ => return None,
        };
        Some(ChangeBatch {
            tag,
            from_seq,
            to_seq,
            changes,
        })
    }

    /// The Kafka records of partition `p`'s batch, in send order: one per
    /// change, then the commit marker.
    pub fn records(&self, p: u32) -> Vec<LogRecord> {
        let mut out = Vec::with_capacity(self.changes.len() + 1);
        for change in &self.changes {
            let mut key = Vec::with_capacity(1 + change.key.len());
            key.push(change.family.tag());
            key.extend_from_slice(&change.key);
            out.push(LogRecord {
                key,
                value: change.value.clone(),
            });
        }
        out.push(LogRecord {
            key: marker_key(p, self.tag.owner.token),
            value: Some(
                Marker {
                    tag: self.tag,
                    from_seq: self.from_seq,
                    to_seq: self.to_seq,
                }
                .encode(),
            ),
        });
        out
    }
}

fn changes_v1(bytes: &[u8], count: usize) -> Option<Vec<Change>> {
    let mut pos = HEADER;
    let mut changes = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let family = Family::from_tag(*bytes.get(pos)?)?;
        let kind = *bytes.get(pos.checked_add(1)?)?;
        pos = pos.checked_add(2)?;
        let key = take_bytes(bytes, &mut pos)?.to_vec();
        let value = match kind {
            1 => Some(take_bytes(bytes, &mut pos)?.to_vec()),
            0 => None,
            _ => return None,
        };
        changes.push(Change { family, key, value });
    }
    Some(changes)
}

fn changes_v2(bytes: &[u8], count: usize) -> Option<Vec<Change>> {
    let mut r = Reader::at(bytes, HEADER);
    let mut changes: Vec<Change> = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let family = Family::from_tag(r.byte().ok()?)?;
        let kind = r.byte().ok()?;
        let shared = usize::try_from(r.uint("shared").ok()?).ok()?;
        let previous = changes.last().map_or(&[][..], |c| c.key.as_slice());
        let mut key = previous.get(..shared)?.to_vec();
        let n = r.len("key").ok()?;
        key.extend_from_slice(r.take(n).ok()?);
        let value = match kind {
            1 => {
                let n = r.len("value").ok()?;
                Some(r.take(n).ok()?.to_vec())
            }
            0 => None,
            _ => return None,
        };
        changes.push(Change { family, key, value });
    }
    r.end().ok()?;
    Some(changes)
}

fn take_bytes<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let start = pos.checked_add(4)?;
    let n = u32::from_be_bytes(bytes.get(*pos..start)?.try_into().ok()?) as usize;
    let end = start.checked_add(n)?;
    let out = bytes.get(start..end)?;
    *pos = end;
    Some(out)
}
