use super::*;
use crate::state::Op;
use proptest::prelude::*;

fn owner(epoch: u64, token: u64) -> Owner {
    Owner { epoch, token }
}

fn tag(o: Owner, n: u64) -> BatchTag {
    BatchTag { owner: o, n }
}

fn put(key: &str, value: &str) -> Item {
    Item::Change(Change {
        family: Family::Balances,
        key: key.as_bytes().to_vec(),
        value: Some(value.as_bytes().to_vec()),
    })
}

fn marker(t: BatchTag) -> Item {
    Item::Marker(Marker {
        tag: t,
        from_seq: 0,
        to_seq: 0,
    })
}

/// Feeds `log` and returns the final key -> value map.
fn replay(log: Vec<(BatchTag, Item)>) -> (std::collections::BTreeMap<String, String>, Replayer) {
    let mut r = Replayer::default();
    let mut out = Vec::new();
    let mut state = std::collections::BTreeMap::new();
    for (t, item) in log {
        r.push(t, item, &mut out);
        for c in out.drain(..) {
            let k = String::from_utf8(c.key).unwrap_or_default();
            match c.value {
                Some(v) => {
                    state.insert(k, String::from_utf8(v).unwrap_or_default());
                }
                None => {
                    state.remove(&k);
                }
            }
        }
    }
    r.finish();
    (state, r)
}

#[test]
fn a_batch_applies_only_once_its_marker_arrives() {
    let a = owner(1, 7);
    let (state, r) = replay(vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 1), marker(tag(a, 1))),
        (tag(a, 2), put("x", "2")),
        (tag(a, 2), put("y", "2")),
    ]);
    // Batch 2 never completed: x keeps batch 1's value, y does not exist.
    assert_eq!(state.get("x").map(String::as_str), Some("1"));
    assert_eq!(state.get("y"), None);
    assert_eq!(r.incomplete, 2);
    assert_eq!(r.last.map(|m| m.tag.n), Some(1));
}

#[test]
fn a_later_batch_of_the_same_owner_proves_the_earlier_complete() {
    // Compaction removed batch 1's marker (a later marker of the same
    // owner has the same key).
    let a = owner(1, 7);
    let (state, _) = replay(vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 2), put("y", "2")),
        (tag(a, 2), marker(tag(a, 2))),
    ]);
    assert_eq!(state.get("x").map(String::as_str), Some("1"));
    assert_eq!(state.get("y").map(String::as_str), Some("2"));
}

#[test]
fn a_new_owner_drops_the_dead_owners_incomplete_batch() {
    let a = owner(1, 7);
    let b = owner(2, 9);
    let (state, r) = replay(vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 1), marker(tag(a, 1))),
        // a died half-way through batch 2; b restored through batch 1.
        (tag(a, 2), put("x", "lost")),
        (tag(b, 2), put("x", "2")),
        (tag(b, 2), marker(tag(b, 2))),
    ]);
    assert_eq!(state.get("x").map(String::as_str), Some("2"));
    assert_eq!(r.incomplete, 1);
}

#[test]
fn a_fenced_former_owner_is_ignored_after_the_new_epoch_appears() {
    let a = owner(1, 7);
    let b = owner(2, 9);
    let (state, r) = replay(vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 1), marker(tag(a, 1))),
        (tag(b, 2), put("x", "2")),
        (tag(b, 2), marker(tag(b, 2))),
        // a woke up from a long pause and published a batch it had committed.
        (tag(a, 2), put("x", "zombie")),
        (tag(a, 2), marker(tag(a, 2))),
    ]);
    assert_eq!(state.get("x").map(String::as_str), Some("2"));
    assert_eq!(r.fenced, 2);
}

#[test]
fn same_epoch_different_token_is_another_owner() {
    let a = owner(3, 1);
    let b = owner(3, 2);
    let (state, _) = replay(vec![
        (tag(a, 4), put("x", "a")),
        (tag(b, 4), put("x", "b")),
        (tag(b, 4), marker(tag(b, 4))),
    ]);
    assert_eq!(state.get("x").map(String::as_str), Some("b"));
}

#[test]
fn writer_output_decodes_to_the_same_changes() {
    let t = tag(owner(5, 6), 9);
    let mut w = ChangeBatchWriter::new(t, 100, 140);
    w.push(Family::Ledger, &Op::Put(vec![0, 0, 0, 3, b'k'], b"v".to_vec()));
    w.push(Family::Timers, &Op::Delete(vec![0, 0, 0, 3, b't']));
    let bytes = w.finish();
    let decoded = ChangeBatch::decode(&bytes);
    assert_eq!(
        decoded,
        Some(ChangeBatch {
            tag: t,
            from_seq: 100,
            to_seq: 140,
            changes: vec![
                Change {
                    family: Family::Ledger,
                    key: vec![0, 0, 0, 3, b'k'],
                    value: Some(b"v".to_vec()),
                },
                Change {
                    family: Family::Timers,
                    key: vec![0, 0, 0, 3, b't'],
                    value: None,
                },
            ],
        })
    );
    // Its Kafka records parse back, marker last.
    let Some(batch) = decoded else { return };
    let records = batch.records(3);
    assert_eq!(records.len(), 3);
    let parsed: Vec<Option<Item>> = records.iter().map(|r| parse(3, &r.key, r.value.as_deref())).collect();
    assert!(matches!(&parsed[0], Some(Item::Change(c)) if c.family == Family::Ledger));
    assert!(matches!(&parsed[1], Some(Item::Change(c)) if c.value.is_none()));
    assert!(matches!(&parsed[2], Some(Item::Marker(m)) if m.tag == t && m.from_seq == 100 && m.to_seq == 140));
    // Another partition's records are not this partition's.
    assert_eq!(parse(4, &records[0].key, records[0].value.as_deref()), None);
}

/// The version 1 layout of a batch (`u32` lengths, whole keys), as accrue
/// wrote it before version 2.
fn encode_v1(t: BatchTag, from_seq: u64, to_seq: u64, changes: &[Change]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&t.encode());
    out.extend_from_slice(&from_seq.to_be_bytes());
    out.extend_from_slice(&to_seq.to_be_bytes());
    out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for c in changes {
        out.push(c.family.tag());
        out.push(u8::from(c.value.is_some()));
        out.extend_from_slice(&(c.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&c.key);
        if let Some(v) = &c.value {
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
    out
}

fn any_changes() -> impl Strategy<Value = Vec<Change>> {
    proptest::collection::vec(
        (
            0u8..16,
            0u32..3,
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        ),
        0..40,
    )
    .prop_map(|changes| {
        changes
            .into_iter()
            .map(|(family, p, rest, value)| {
                let mut key = p.to_be_bytes().to_vec();
                key.extend_from_slice(&rest);
                Change {
                    family: Family::from_tag(family).unwrap_or(Family::Balances),
                    key,
                    value,
                }
            })
            .collect()
    })
}

proptest! {
    /// Version 2 (written now) and version 1 (waiting in an outbox written
    /// by an older accrue) decode to the same batch.
    #[test]
    fn batches_of_both_versions_decode(changes in any_changes(), n in any::<u64>(), from in any::<u64>(), to in any::<u64>()) {
        let t = tag(owner(3, 4), n);
        let mut w = ChangeBatchWriter::new(t, from, to);
        for c in &changes {
            let op = match &c.value {
                Some(v) => Op::Put(c.key.clone(), v.clone()),
                None => Op::Delete(c.key.clone()),
            };
            w.push(c.family, &op);
        }
        let v2 = w.finish();
        let want = ChangeBatch { tag: t, from_seq: from, to_seq: to, changes: changes.clone() };
        prop_assert_eq!(ChangeBatch::decode(&v2), Some(want.clone()));
        let v1 = encode_v1(t, from, to, &changes);
        prop_assert!(v2.len() <= v1.len());
        prop_assert_eq!(ChangeBatch::decode(&v1), Some(want));
        for cut in [1, v2.len() / 2, v2.len().saturating_sub(1)] {
            if cut < v2.len() && !changes.is_empty() {
                prop_assert_eq!(ChangeBatch::decode(&v2[..cut]), None);
            }
        }
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = ChangeBatch::decode(&bytes);
        let mut v2 = bytes.clone();
        if let Some(first) = v2.first_mut() {
            *first = 2;
        }
        let _ = ChangeBatch::decode(&v2);
        let _ = parse(0, &bytes, Some(&bytes));
        let _ = BatchTag::decode(&bytes);
    }

    /// Whatever prefix of a log of complete batches survives a crash, the
    /// replayed state equals the state after the last batch known complete.
    #[test]
    fn any_cut_yields_a_batch_boundary(batches in proptest::collection::vec(proptest::collection::vec((0u8..6, 0u32..100), 1..5), 1..6), cut in 0usize..40) {
        let a = owner(1, 1);
        let mut log = Vec::new();
        let mut boundaries = vec![(0usize, std::collections::BTreeMap::new())];
        let mut state = std::collections::BTreeMap::new();
        for (i, batch) in batches.iter().enumerate() {
            let n = i as u64 + 1;
            for (k, v) in batch {
                log.push((tag(a, n), put(&format!("k{k}"), &v.to_string())));
                state.insert(format!("k{k}"), v.to_string());
            }
            log.push((tag(a, n), marker(tag(a, n))));
            boundaries.push((log.len(), state.clone()));
        }
        let cut = cut.min(log.len());
        let expected = boundaries.iter().rev().find(|(len, _)| *len <= cut).map(|(_, s)| s.clone()).unwrap_or_default();
        let (got, _) = replay(log[..cut].to_vec());
        prop_assert_eq!(got, expected);
    }
}

/// What log compaction leaves: the newest record of each key. Changes are
/// keyed by their key, markers by their owner token (as on the topic).
fn compact(log: Vec<(BatchTag, Item)>) -> Vec<(BatchTag, Item)> {
    let key = |item: &Item| match item {
        Item::Change(c) => format!("c:{}", String::from_utf8_lossy(&c.key)),
        Item::Marker(m) => format!("m:{}", m.tag.owner.token),
    };
    let mut newest = std::collections::HashMap::new();
    for (i, (_, item)) in log.iter().enumerate() {
        newest.insert(key(item), i);
    }
    log.into_iter()
        .enumerate()
        .filter(|(i, (_, item))| newest.get(&key(item)) == Some(i))
        .map(|(_, record)| record)
        .collect()
}

#[test]
fn keys_of_a_dropped_batch_are_written_again_so_compaction_keeps_their_values() {
    let a = owner(1, 7);
    let b = owner(2, 9);
    let mut log = vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 1), put("y", "1")),
        (tag(a, 1), marker(tag(a, 1))),
        // a died half-way through batch 2, after writing x.
        (tag(a, 2), put("x", "lost")),
    ];
    let (state, mut r) = replay(log.clone());
    assert_eq!(state.get("x").map(String::as_str), Some("1"));
    let shadowed = r.shadowed_keys();
    assert_eq!(
        shadowed,
        vec![(Family::Balances, b"x".to_vec())],
        "only x was overwritten"
    );

    // Without a repair, compaction deletes x's committed value: the only
    // record of x left is the dropped one.
    let (unrepaired, _) = replay(compact(log.clone()));
    assert_eq!(unrepaired.get("x"), None, "the hazard the repair exists for");

    // The new owner b writes every shadowed key again with its restored value.
    for (_, k) in &shadowed {
        let key = String::from_utf8_lossy(k).into_owned();
        log.push((tag(b, 2), put(&key, &state[&key])));
    }
    log.push((tag(b, 2), marker(tag(b, 2))));
    let (repaired, _) = replay(compact(log));
    assert_eq!(repaired, state, "compaction after the repair keeps the restored state");
}

#[test]
fn keys_a_fenced_owner_wrote_are_shadowed_too() {
    let a = owner(1, 7);
    let b = owner(2, 9);
    let (_, mut r) = replay(vec![
        (tag(a, 1), put("x", "1")),
        (tag(a, 1), marker(tag(a, 1))),
        (tag(b, 2), put("y", "2")),
        (tag(b, 2), marker(tag(b, 2))),
        (tag(a, 2), put("x", "zombie")),
    ]);
    assert_eq!(r.shadowed_keys(), vec![(Family::Balances, b"x".to_vec())]);
}

#[test]
fn local_state_is_current_when_nobody_wrote_the_log_since() {
    let head = tag(owner(4, 7), 120);
    assert!(
        is_current(None, None, None),
        "an empty changelog has nothing to restore"
    );
    assert!(!is_current(None, None, Some(head)), "no owner: missing or cut short");
    assert!(is_current(Some(owner(4, 7)), Some(120), Some(head)), "same owner");
    assert!(
        is_current(Some(owner(5, 9)), Some(120), Some(head)),
        "a newer local epoch that applied the head batch: killed before its first changelog batch"
    );
    assert!(
        is_current(Some(owner(6, 1)), Some(125), Some(head)),
        "several restarts on the same disk, batches not yet in the log"
    );
    assert!(
        !is_current(Some(owner(5, 9)), Some(119), Some(head)),
        "a newer epoch that never saw the head batch"
    );
    assert!(
        !is_current(Some(owner(4, 8)), Some(130), Some(head)),
        "same epoch, another token: another owner wrote the log"
    );
    assert!(
        !is_current(Some(owner(3, 7)), Some(130), Some(head)),
        "an older epoch: another owner has written since"
    );
}
