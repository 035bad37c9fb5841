//! Turns an outbox value into the record to publish. An accrual is stored
//! once, as its ledger entry: its outbox value is an [`AccrualRef`], and
//! its JSON is rendered here, on the publisher's thread, byte for byte what
//! the apply thread used to store.

use super::record::{AccrualRef, Destination, OutboxRecord, Stored};
use crate::contract;
use crate::state::codec::decode_ledger;
use crate::state::{keys, Family, StateError, Store};

/// The record to publish for outbox value `value`, record `seq` of
/// partition `p`.
///
/// # Errors
/// [`StateError::Corrupt`] if the value does not decode, or it refers to a
/// ledger entry that is missing or does not decode; [`StateError`] if the
/// store fails.
pub fn load(store: &dyn Store, p: u32, seq: u64, value: &[u8]) -> Result<OutboxRecord, StateError> {
    match Stored::decode(value) {
        Some(Stored::Record(record)) => Ok(record),
        Some(Stored::Accrual(reference)) => render(store, p, seq, &reference),
        None => Err(corrupt(
            Family::Outbox,
            format!("outbox record {p}-{seq} cannot be decoded"),
        )),
    }
}

fn render(store: &dyn Store, p: u32, seq: u64, reference: &AccrualRef) -> Result<OutboxRecord, StateError> {
    let key = keys::ledger(p, &reference.tenant, &reference.customer, seq);
    let Some(value) = store.get(Family::Ledger, &key)? else {
        return Err(corrupt(
            Family::Ledger,
            format!("outbox record {p}-{seq} refers to a ledger entry that is missing"),
        ));
    };
    let event = decode_ledger(&key, &value)
        .map_err(|e| corrupt(Family::Ledger, format!("ledger entry of outbox record {p}-{seq}: {e}")))?;
    let payload = serde_json::to_vec(&event)
        .map_err(|e| corrupt(Family::Ledger, format!("ledger entry of outbox record {p}-{seq}: {e}")))?;
    Ok(OutboxRecord {
        destination: Destination::Accruals,
        partition: None,
        key: Some(contract::customer_key(&reference.tenant, &reference.customer).into_bytes()),
        headers: Vec::new(),
        payload,
    })
}

fn corrupt(family: Family, detail: String) -> StateError {
    StateError::Corrupt {
        family: family.name(),
        detail,
    }
}
