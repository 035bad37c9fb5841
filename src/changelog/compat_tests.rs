//! A restore from a changelog written before the binary state (JSON
//! values, accruals inline in the outbox) still works, and the processor
//! and the publisher go on from it. The fixture is the changelog batch
//! accrue wrote for the first four events of
//! `tests/fixtures/state/changelog-v0-events.ndjson` (replayed into one
//! partition); `changelog-v0-refund-accrual.json` is what that accrue then
//! published for the fifth, a refund.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::contract::AccrualEvent;
use crate::outbox::{self, Destination, Stored};
use crate::pipeline::{Applied, Batch, InputRecord, Processor};
use crate::rules::{Booking, BookingState, Customer, OrderRecord};
use crate::state::codec::{decode_ledger, StateValue};
use crate::state::MemoryStore;

const OLD_BATCH: &[u8] = include_bytes!("../../tests/fixtures/state/changelog-v0-batch.bin");
const EVENTS: &str = include_str!("../../tests/fixtures/state/changelog-v0-events.ndjson");
const OLD_REFUND_ACCRUAL: &[u8] = include_bytes!("../../tests/fixtures/state/changelog-v0-refund-accrual.json");

/// Restores the changelog batches `batches` (outbox payloads, in order) of
/// partition 0 into `store` as [`Restorer::restore`] does: through the
/// records the publisher sends and a [`Replayer`].
fn restore(store: &dyn Store, batches: &[&[u8]]) -> Replayer {
    let mut replayer = Replayer::default();
    let mut out = Vec::new();
    let mut set = WriteSet::new();
    for bytes in batches {
        let Some(batch) = ChangeBatch::decode(bytes) else {
            panic!("a changelog batch does not decode")
        };
        for rec in batch.records(0) {
            let Some(item) = parse(0, &rec.key, rec.value.as_deref()) else {
                panic!("a changelog record does not parse")
            };
            replayer.push(batch.tag, item, &mut out);
            for change in out.drain(..) {
                match change.value {
                    Some(v) => set.put(change.family, change.key, v),
                    None => set.delete(change.family, change.key),
                }
            }
        }
    }
    replayer.finish();
    assert!(store.write(&set, Durability::Synced).is_ok());
    replayer
}

fn get(store: &dyn Store, family: Family, key: &[u8]) -> Vec<u8> {
    match store.get(family, key) {
        Ok(Some(v)) => v,
        other => panic!("{} {key:?}: {other:?}", family.name()),
    }
}

fn published(store: &dyn Store, seq: u64) -> outbox::OutboxRecord {
    let raw = get(store, Family::Outbox, &keys::outbox(0, seq));
    match outbox::load(store, 0, seq, &raw) {
        Ok(record) => record,
        Err(e) => panic!("outbox record {seq}: {e}"),
    }
}

fn processor(store: Arc<dyn Store>) -> Processor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let mut processor = Processor::new(store, Arc::new(config.tenants.clone()), Arc::from(&b"replay"[..]));
    processor.set_changelog(true);
    processor
}

#[test]
fn a_changelog_written_in_json_restores_and_the_pipeline_goes_on_from_it() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let replayer = restore(store.as_ref(), &[OLD_BATCH]);
    assert_eq!(replayer.last.map(|m| m.tag.n), Some(1));
    assert_eq!(replayer.incomplete + replayer.fenced, 0);

    // Every old value decodes.
    let (tenant, customer) = ("studio-flow", "stu-fix");
    let profile = Customer::decode(&get(
        store.as_ref(),
        Family::Customers,
        &keys::customer(0, tenant, customer),
    ));
    let profile = profile.ok();
    assert!(profile
        .as_ref()
        .is_some_and(|c| c.registered && c.visited && c.groups.len() == 2));
    let order_key = keys::order(0, tenant, customer, "fix-o1");
    let order = OrderRecord::decode(&get(store.as_ref(), Family::Orders, &order_key)).ok();
    assert_eq!(order.map(|o| o.total.to_string()), Some("40.10".to_owned()));
    let booking_key = keys::booking(0, tenant, customer, "b-fix");
    let booking = Booking::decode(&get(store.as_ref(), Family::Bookings, &booking_key)).ok();
    assert_eq!(booking.map(|b| b.state), Some(BookingState::Scheduled));
    let ledger_key = keys::ledger(0, tenant, customer, 2);
    let entry = decode_ledger(&ledger_key, &get(store.as_ref(), Family::Ledger, &ledger_key)).ok();
    assert_eq!(entry.as_ref().map(|e| e.amount.as_str()), Some("1.20"));

    // The restored outbox holds the old records, accruals inline: they are
    // published as they were stored.
    let old_accrual = published(store.as_ref(), 2);
    assert_eq!(old_accrual.destination, Destination::Accruals);
    assert_eq!(old_accrual.payload, get(store.as_ref(), Family::Ledger, &ledger_key));
    assert_eq!(published(store.as_ref(), 1).destination, Destination::Directory);

    // The refund reverses what the JSON order record says, and its accrual
    // renders exactly what accrue published for it before.
    let mut processor = processor(store.clone());
    let mut batch = Batch::default();
    let Some(refund) = EVENTS.lines().nth(4) else {
        panic!("the fixture has five events")
    };
    let record = InputRecord {
        topic: "replay",
        partition: 0,
        offset: 4,
        key: Some(b"studio-flow:stu-fix"),
        payload: Some(refund.as_bytes()),
    };
    assert_eq!(processor.apply(&mut batch, &record).ok(), Some(Applied::Processed(1)));
    assert!(processor.commit(batch).is_ok());
    let raw = get(store.as_ref(), Family::Outbox, &keys::outbox(0, 6));
    assert!(
        matches!(Stored::decode(&raw), Some(Stored::Accrual(_))),
        "the new accrual is a reference"
    );
    let refund_accrual = published(store.as_ref(), 6);
    assert_eq!(
        String::from_utf8_lossy(&refund_accrual.payload),
        String::from_utf8_lossy(OLD_REFUND_ACCRUAL)
    );
    assert_eq!(refund_accrual.key.as_deref(), Some(&b"studio-flow:stu-fix"[..]));
    let order = OrderRecord::decode(&get(store.as_ref(), Family::Orders, &order_key)).ok();
    assert_eq!(
        order.map(|o| o.accruals[0].reversed.to_string()),
        Some("0.60".to_owned())
    );

    // A partition restored from the old batch and the new one (binary
    // values, an accrual reference) publishes the same accrual.
    let new_batch = published(store.as_ref(), 5);
    assert_eq!(new_batch.destination, Destination::Changelog);
    let fresh: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let replayer = restore(fresh.as_ref(), &[OLD_BATCH, &new_batch.payload]);
    assert_eq!(replayer.last.map(|m| m.tag.n), Some(2));
    assert_eq!(published(fresh.as_ref(), 6).payload, OLD_REFUND_ACCRUAL);
    // The old batch's outbox records were published before the new batch
    // was written: its tombstones remove them.
    assert_eq!(fresh.get(Family::Outbox, &keys::outbox(0, 2)).ok().flatten(), None);
    let event: Option<AccrualEvent> = serde_json::from_slice(OLD_REFUND_ACCRUAL).ok();
    let restored = keys::ledger(0, tenant, customer, 6);
    let entry = decode_ledger(&restored, &get(fresh.as_ref(), Family::Ledger, &restored)).ok();
    assert_eq!(entry, event, "the read API sees the restored entry as published");
}
