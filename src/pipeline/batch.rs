//! The processor core: applies input records to an open batch and commits
//! the batch as one atomic, WAL-synced write.
//!
//! It knows nothing of Kafka: the consume loop (and `replay`) feed it
//! [`InputRecord`]s. Everything it writes is keyed by input partition.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;

use crate::config::TenantConfig;
use crate::contract::{self, AccrualEvent, ContractError, ErrorKind, Event, SourceRef};
use crate::outbox::{Destination, OutboxRecord};
use crate::rules;
use crate::state::{keys, read_next_seq, read_offset, Durability, Family, StateError, Store, WriteSet};
use crate::telemetry;

/// One record read from an input topic.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Partition, the unit of state ownership.
    pub partition: u32,
    /// Offset within the topic partition.
    pub offset: i64,
    /// Kafka key, `tenant:customer`.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub payload: Option<&'a [u8]>,
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Its offset was applied before (redelivery after a restart): nothing.
    AlreadyApplied,
    /// Its `event_id` was applied before: nothing but the offset moves.
    Duplicate,
    /// Applied; this many ledger entries were written.
    Processed(usize),
    /// Refused; a dead-letter record was written.
    DeadLettered(ErrorKind),
}

/// Per-partition progress: output sequence and input offsets.
#[derive(Debug, Clone, Default)]
struct Cursor {
    next_seq: u64,
    /// Next offset to apply per input topic; absent means none applied yet.
    offsets: HashMap<String, i64>,
}

/// An open batch: everything applied since the last commit.
#[derive(Default)]
pub struct Batch {
    set: WriteSet,
    balances: HashMap<Vec<u8>, Decimal>,
    seen: HashSet<Vec<u8>>,
    cursors: HashMap<u32, Cursor>,
    events: usize,
    /// For the latency metrics: the oldest `occurred_at` and the first apply.
    oldest_occurred_at: Option<time::OffsetDateTime>,
    first_applied: Option<Instant>,
}

impl Batch {
    /// Records applied to this batch (skipped redeliveries excluded).
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether nothing is waiting to be committed.
    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }
}

/// The result of a commit.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    /// Per partition: the next output sequence, so every record below it is
    /// durable and may be published.
    pub durable_seq: Vec<(u32, u64)>,
    /// Per (topic, partition): the next input offset.
    pub offsets: Vec<(String, u32, i64)>,
}

/// Applies records and commits batches against a [`Store`].
pub struct Processor {
    store: Arc<dyn Store>,
    tenants: Arc<HashMap<String, TenantConfig>>,
    committed: HashMap<u32, Cursor>,
}

impl Processor {
    /// A processor over `store` with the configured tenants.
    pub fn new(store: Arc<dyn Store>, tenants: Arc<HashMap<String, TenantConfig>>) -> Self {
        Processor {
            store,
            tenants,
            committed: HashMap::new(),
        }
    }

    /// The next offset to apply for `topic`/`partition`, from state.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn stored_offset(&self, topic: &str, partition: u32) -> Result<Option<i64>, StateError> {
        if let Some(off) = self.committed.get(&partition).and_then(|c| c.offsets.get(topic)) {
            return Ok(Some(*off));
        }
        read_offset(self.store.as_ref(), topic, partition)
    }

    /// Forgets cached progress of `partition` (it was revoked); the next
    /// touch reloads it from the store.
    pub fn forget(&mut self, partition: u32) {
        self.committed.remove(&partition);
    }

    /// Applies one record to `batch`.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; the batch must then be dropped.
    pub fn apply(&mut self, batch: &mut Batch, record: &InputRecord<'_>) -> Result<Applied, StateError> {
        let p = record.partition;
        if let std::collections::hash_map::Entry::Vacant(slot) = batch.cursors.entry(p) {
            slot.insert(self.load_cursor(p)?);
        }
        let expected = match batch.cursors.get(&p).and_then(|c| c.offsets.get(record.topic)) {
            Some(off) => Some(*off),
            None => {
                let stored = read_offset(self.store.as_ref(), record.topic, p)?;
                if let (Some(off), Some(cursor)) = (stored, batch.cursors.get_mut(&p)) {
                    cursor.offsets.insert(record.topic.to_owned(), off);
                }
                stored
            }
        };
        if expected.is_some_and(|next| record.offset < next) {
            telemetry::already_applied(1);
            return Ok(Applied::AlreadyApplied);
        }
        batch.events += 1;
        batch.first_applied.get_or_insert_with(Instant::now);
        let applied = match self.decode(record) {
            Err(err) => {
                self.dead_letter(batch, record, &err);
                Applied::DeadLettered(err.kind)
            }
            Ok(event) => self.apply_event(batch, record, &event)?,
        };
        if let Some(cursor) = batch.cursors.get_mut(&p) {
            cursor.offsets.insert(record.topic.to_owned(), record.offset + 1);
        }
        Ok(applied)
    }

    /// Writes `batch` as one WAL-synced write and returns what became durable.
    ///
    /// # Errors
    /// [`StateError`] if the write fails; nothing of the batch is then stored.
    pub fn commit(&mut self, batch: Batch) -> Result<Committed, StateError> {
        let Batch {
            mut set,
            balances,
            cursors,
            events,
            oldest_occurred_at,
            first_applied,
            ..
        } = batch;
        for (key, balance) in balances {
            set.put(Family::Balances, key, keys::encode_decimal(balance).to_vec());
        }
        let mut committed = Committed::default();
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
        let started = Instant::now();
        self.store.write(&set, Durability::Synced)?;
        telemetry::batch_committed(events, started.elapsed());
        telemetry::batch_latency(oldest_occurred_at, first_applied);
        self.committed.extend(cursors);
        Ok(committed)
    }

    fn load_cursor(&self, p: u32) -> Result<Cursor, StateError> {
        if let Some(cursor) = self.committed.get(&p) {
            return Ok(cursor.clone());
        }
        Ok(Cursor {
            next_seq: read_next_seq(self.store.as_ref(), p)?,
            offsets: HashMap::new(),
        })
    }

    fn decode(&self, record: &InputRecord<'_>) -> Result<Event, ContractError> {
        let Some(payload) = record.payload else {
            return Err(ContractError::new(ErrorKind::MalformedJson, "the record has no value"));
        };
        let event = contract::decode(payload)?;
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Err(ContractError::new(
                ErrorKind::UnknownTenant,
                format!("tenant {:?} is not configured", event.tenant),
            ));
        };
        contract::check_key(record.key, &event)?;
        if !tenant.branches.contains_key(&event.branch) {
            return Err(ContractError::new(
                ErrorKind::UnknownBranch,
                format!("branch {:?} is not a branch of tenant {:?}", event.branch, event.tenant),
            ));
        }
        match &event.body {
            contract::Body::OrderPaid(order) => check_currency(tenant, &order.currency, order)?,
        }
        Ok(event)
    }

    fn apply_event(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        event: &Event,
    ) -> Result<Applied, StateError> {
        let p = record.partition;
        let event_type = event.event_type().as_str();
        let dedupe_key = keys::dedupe(p, &event.tenant, &event.event_id);
        if batch.seen.contains(&dedupe_key) || self.store.get(Family::Dedupe, &dedupe_key)?.is_some() {
            telemetry::duplicate(event_type);
            return Ok(Applied::Duplicate);
        }
        // The event was validated against this tenant in `decode`.
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Ok(Applied::Processed(0));
        };
        let outcome = rules::evaluate(tenant, event);
        let mut first_seq = u64::MAX;
        let occurred_at = event.occurred_at.format(&Rfc3339).unwrap_or_default();
        for credit in &outcome.credits {
            let account = credit.account.as_str();
            let balance_key = keys::balance(p, &event.tenant, &event.customer, account);
            let balance = match batch.balances.get(&balance_key) {
                Some(b) => *b,
                None => match self.store.get(Family::Balances, &balance_key)? {
                    Some(raw) => keys::decode_decimal(&raw)
                        .ok_or_else(|| corrupt(Family::Balances, "balance is not 16 bytes"))?,
                    None => Decimal::ZERO,
                },
            };
            let new_balance = balance + credit.amount;
            let seq = next_seq(batch, p);
            first_seq = first_seq.min(seq);
            let accrual = AccrualEvent {
                id: contract::output_id(p, seq),
                event_type: AccrualEvent::TYPE.to_owned(),
                schema_version: contract::SCHEMA_VERSION,
                tenant: event.tenant.clone(),
                customer: event.customer.clone(),
                branch: event.branch.clone(),
                account: account.to_owned(),
                entry_type: credit.entry_type.as_str().to_owned(),
                program: credit.program.to_owned(),
                amount: money(credit.amount, tenant.minor_units),
                balance: money(new_balance, tenant.minor_units),
                base_amount: money(credit.base, tenant.minor_units),
                currency: tenant.currency.clone(),
                source_event_id: event.event_id.clone(),
                source: SourceRef {
                    topic: record.topic.to_owned(),
                    partition: p,
                    offset: record.offset,
                },
                occurred_at: occurred_at.clone(),
            };
            let payload = serde_json::to_vec(&accrual).map_err(|e| corrupt(Family::Ledger, &e.to_string()))?;
            batch.set.put(
                Family::Ledger,
                keys::ledger(p, &event.tenant, &event.customer, seq),
                payload.clone(),
            );
            let out = OutboxRecord {
                destination: Destination::Accruals,
                key: Some(contract::customer_key(&event.tenant, &event.customer).into_bytes()),
                headers: Vec::new(),
                payload,
            };
            batch.set.put(Family::Outbox, keys::outbox(p, seq), out.encode());
            batch.balances.insert(balance_key, new_balance);
            telemetry::ledger_entry(account);
        }
        batch
            .set
            .put(Family::Dedupe, dedupe_key.clone(), keys::encode_u64(first_seq).to_vec());
        batch.seen.insert(dedupe_key);
        telemetry::processed(event_type);
        telemetry::tenant_processed(&event.tenant);
        if batch.oldest_occurred_at.is_none_or(|t| event.occurred_at < t) {
            batch.oldest_occurred_at = Some(event.occurred_at);
        }
        Ok(Applied::Processed(outcome.credits.len()))
    }

    fn dead_letter(&self, batch: &mut Batch, record: &InputRecord<'_>, err: &ContractError) {
        let p = record.partition;
        let seq = next_seq(batch, p);
        let out = OutboxRecord {
            destination: Destination::DeadLetter,
            key: record.key.map(<[u8]>::to_vec),
            headers: vec![
                (
                    contract::HEADER_ERROR_KIND.into(),
                    err.kind.as_str().as_bytes().to_vec(),
                ),
                (contract::HEADER_ERROR_REASON.into(), err.reason.as_bytes().to_vec()),
                (contract::HEADER_SOURCE_TOPIC.into(), record.topic.as_bytes().to_vec()),
                (contract::HEADER_SOURCE_PARTITION.into(), p.to_string().into_bytes()),
                (
                    contract::HEADER_SOURCE_OFFSET.into(),
                    record.offset.to_string().into_bytes(),
                ),
            ],
            payload: record.payload.map(<[u8]>::to_vec).unwrap_or_default(),
        };
        batch.set.put(Family::Outbox, keys::outbox(p, seq), out.encode());
        telemetry::dead_lettered(err.kind.as_str());
        tracing::debug!(partition = p, offset = record.offset, topic = record.topic, reason = %err, "dead-lettered");
    }
}

fn next_seq(batch: &mut Batch, p: u32) -> u64 {
    let cursor = batch.cursors.entry(p).or_default();
    let seq = cursor.next_seq;
    cursor.next_seq += 1;
    seq
}

fn check_currency(tenant: &TenantConfig, currency: &str, order: &contract::OrderPaid) -> Result<(), ContractError> {
    if currency != tenant.currency {
        return Err(ContractError::new(
            ErrorKind::BadCurrency,
            format!(
                "body.currency is {currency:?}, but tenant {:?} keeps its balances in {}",
                tenant.id, tenant.currency
            ),
        ));
    }
    let amounts = order
        .lines
        .iter()
        .map(|l| l.amount)
        .chain(order.payments.iter().map(|p| p.amount))
        .chain(std::iter::once(order.total));
    for amount in amounts {
        if amount.value().scale() > tenant.minor_units {
            return Err(ContractError::new(
                ErrorKind::BadCurrency,
                format!(
                    "amount {amount} has more decimals than {currency} has ({})",
                    tenant.minor_units
                ),
            ));
        }
    }
    Ok(())
}

/// A money amount at the currency's scale: `4` becomes `"4.00"`.
fn money(value: Decimal, minor_units: u32) -> String {
    let mut v = value;
    v.rescale(minor_units);
    v.to_string()
}

fn corrupt(family: Family, detail: &str) -> StateError {
    StateError::Corrupt {
        family: family.name(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests;
