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

#[cfg(test)]
pub(super) mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::contract::SourceRef;
    use crate::state::codec::{LedgerEntry, Occurred};
    use crate::state::{Durability, MemoryStore, WriteSet};

    /// Writes ledger entry `seq` of customer `t`/`c` in partition `p` (with
    /// a description of `len` bytes) and its outbox reference.
    pub(crate) fn accrual_with_entry(set: &mut WriteSet, p: u32, seq: u64, len: usize) {
        let source = SourceRef {
            topic: "orders".into(),
            partition: p,
            offset: 7,
        };
        let description = "d".repeat(len);
        let entry = LedgerEntry {
            schema_version: 1,
            branch: "b",
            source_event_id: "e",
            source: &source,
            occurred: Occurred::Text("2026-01-01T00:00:00Z"),
            account: "cashback",
            entry_type: "accrual",
            program: "p",
            amount: Decimal::new(120, 2),
            balance: Decimal::new(-5, 0),
            base_amount: Some(Decimal::new(4010, 2)),
            currency: "EUR",
            description: (len > 0).then_some(description.as_str()),
            operator: None,
        };
        set.put(Family::Ledger, keys::ledger(p, "t", "c", seq), entry.encode());
        set.put(Family::Outbox, keys::outbox(p, seq), AccrualRef::encode("t", "c"));
    }

    #[test]
    fn a_reference_is_rendered_from_its_ledger_entry() {
        let store = MemoryStore::default();
        let mut set = WriteSet::new();
        accrual_with_entry(&mut set, 1, 9, 0);
        assert!(store.write(&set, Durability::Synced).is_ok());
        let value = AccrualRef::encode("t", "c");
        let record = load(&store, 1, 9, &value);
        let Ok(record) = record else { panic!("{record:?}") };
        assert_eq!(record.destination, Destination::Accruals);
        assert_eq!(record.key.as_deref(), Some(&b"t:c"[..]));
        assert_eq!(
            String::from_utf8_lossy(&record.payload),
            concat!(
                r#"{"id":"1-9","type":"accrual.recorded","schema_version":1,"tenant":"t","customer":"c","#,
                r#""branch":"b","source_event_id":"e","source":{"topic":"orders","partition":1,"offset":7},"#,
                r#""occurred_at":"2026-01-01T00:00:00Z","account":"cashback","entry_type":"accrual","#,
                r#""program":"p","amount":"1.20","balance":"-5","base_amount":"40.10","currency":"EUR"}"#
            )
        );
        // A record stored whole (every earlier accrual) is published as it is.
        let whole = OutboxRecord {
            destination: Destination::Accruals,
            partition: None,
            key: Some(b"t:c".to_vec()),
            headers: Vec::new(),
            payload: b"{}".to_vec(),
        };
        assert_eq!(load(&store, 1, 3, &whole.encode()).ok(), Some(whole));
    }

    #[test]
    fn a_reference_whose_entry_is_missing_is_corrupt() {
        let store = MemoryStore::default();
        let got = load(&store, 1, 9, &AccrualRef::encode("t", "c"));
        assert!(
            matches!(got, Err(StateError::Corrupt { family: "ledger", .. })),
            "{got:?}"
        );
        let got = load(&store, 1, 9, &[9, 9]);
        assert!(
            matches!(got, Err(StateError::Corrupt { family: "outbox", .. })),
            "{got:?}"
        );
    }
}
