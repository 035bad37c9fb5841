//! Stage 4, emit: an [`Outcome`] becomes balances, ledger entries, outbox
//! records and the records kept for refunds and bookings, in the open batch.

use super::*;
use crate::outbox::AccrualRef;
use crate::rules::RejectionType;
use crate::state::codec::{self, at_scale, LedgerEntry, Occurred, StateValue};

use super::totals::{count_entry, Counted};

impl Processor {
    /// Writes an outcome's ledger entries, outputs and records. Every new
    /// balance is computed first: if one would overflow or pass the
    /// contract's balance limit, the outcome is replaced by a rejection
    /// (`amount_overflow`, `balance_limit`) before anything of it is written.
    pub(super) fn apply_outcome(
        &self,
        batch: &mut Batch,
        out: &Emitter<'_>,
        prefix: &[u8],
        outcome: &Outcome,
    ) -> Result<Written, StateError> {
        let (p, tenant, customer) = (out.p, out.tenant, out.customer);
        let refused;
        let (outcome, after) = match balances_after(batch.balances.get(prefix), outcome, out.reject_as) {
            Ok(after) => (outcome, after),
            Err(rejection) => {
                refused = *rejection;
                (&refused, Vec::new())
            }
        };
        let loyalty_before = self.loyalty_before(batch, tenant, prefix, outcome);
        let mut last_balance = Decimal::ZERO;
        for (entry, new_balance) in outcome.entries.iter().zip(after) {
            // Loaded by the prefetch (or `load_balances`): no key copy per entry.
            match batch.balances.get_mut(prefix) {
                Some(balances) => {
                    balances.insert(entry.account.to_string(), new_balance);
                }
                None => {
                    let mut balances = BTreeMap::new();
                    balances.insert(entry.account.to_string(), new_balance);
                    batch.balances.insert(prefix.to_vec(), balances);
                }
            }
            last_balance = new_balance;
            batch.dirty.insert((prefix.to_vec(), entry.account.to_string()));
            let seq = next_seq(batch, p);
            let scale = rules::scale_of(tenant, &entry.account);
            let (occurred, text) = (out.occurred, out.occurred_at.as_str());
            // The accrual event is stored once, as the ledger entry; the
            // outbox holds a reference the publisher renders from it.
            let ledger_entry = LedgerEntry {
                schema_version: contract::SCHEMA_VERSION,
                branch: out.branch,
                source_event_id: out.event_id,
                source: &out.source,
                occurred: if text.is_empty() {
                    Occurred::Text(text)
                } else {
                    Occurred::At(occurred)
                },
                account: &entry.account,
                entry_type: entry.entry_type.as_str(),
                program: &entry.program,
                amount: at_scale(entry.amount, scale),
                balance: at_scale(new_balance, scale),
                base_amount: entry.base.map(|b| at_scale(b, tenant.minor_units)),
                currency: &tenant.currency,
                description: entry.description.as_deref(),
                operator: entry.operator.as_deref(),
            };
            let value = ledger_entry.encode();
            let ledger_key = keys::ledger(p, &tenant.id, customer, seq);
            debug_assert_eq!(
                codec::decode_ledger(&ledger_key, &value).ok(),
                Some(accrual_as_before(out, seq, entry, new_balance)),
                "a ledger entry renders the accrual event as it was stored in JSON"
            );
            // The read API's index by time, in the same atomic write.
            // The time the text says (none: 0), without parsing it back.
            let occurred_ms = if text.is_empty() { 0 } else { unix_ms(occurred) };
            batch.set.put(
                Family::LedgerByTime,
                keys::ledger_by_time(p, &tenant.id, occurred_ms, seq),
                ledger_key.clone(),
            );
            if let Some(visited) = out.visited {
                // The place of a partner's visit finds the entry in its own index too.
                batch.set.put(
                    Family::LedgerByTime,
                    keys::ledger_by_time(p, visited, occurred_ms, seq),
                    ledger_key.clone(),
                );
            }
            batch.set.put(Family::Ledger, ledger_key, value);
            let counted = Counted {
                p,
                tenant,
                visited: out.visited,
                occurred_ms,
                branch: out.branch,
            };
            count_entry(batch, &counted, entry);
            out.push_accrual(batch, seq);
            telemetry::ledger_entry(entry.entry_type.as_str());
        }
        if let Some(rejection) = &outcome.rejection {
            let seq = next_seq(batch, p);
            let payload = to_json(&RejectionEvent {
                header: out.header(seq, rejection.output_type.as_str()),
                reason_code: rejection.code.as_str().to_owned(),
                reason: rejection.reason.clone(),
            })?;
            out.push(batch, seq, payload);
            telemetry::rejected(rejection.output_type.as_str(), rejection.code.as_str());
        }
        if let (Some(notification), Some(entry)) = (outcome.notify, outcome.entries.first()) {
            let seq = next_seq(batch, p);
            let scale = rules::scale_of(tenant, &entry.account);
            let payload = to_json(&BalanceNotification {
                header: out.header(seq, notification),
                account: entry.account.to_string(),
                amount: money(entry.amount, scale),
                balance: money(last_balance, scale),
                description: entry.description.clone().unwrap_or_default(),
            })?;
            out.push(batch, seq, payload);
        }
        let mut command_id = None;
        if let Some(command) = &outcome.command {
            // The command's id is the outbox position `push_routed` takes below.
            let id = contract::output_id(p, peek_seq(batch, p));
            let body = Command {
                schema_version: contract::SCHEMA_VERSION,
                id: id.clone(),
                tenant: command.tenant.clone(),
                customer: command.customer.clone(),
                source_tenant: tenant.id.clone(),
                source_customer: customer.to_owned(),
                branch: out.branch.to_owned(),
                source_event_id: out.event_id.to_owned(),
                occurred_at: out.occurred,
                body: command.body.clone(),
            };
            let seq = self.push_routed(
                batch,
                p,
                Destination::Internal,
                &command.tenant,
                &command.customer,
                to_json(&body)?,
            );
            telemetry::command_sent(body.type_name());
            batch.commands.push((p, seq));
            command_id = Some(id);
        }
        match outcome.notice.as_deref() {
            Some(Notice::Referral {
                program,
                referrer,
                invitee_discount_percent,
                reward,
            }) => {
                let seq = next_seq(batch, p);
                let scale = rules::scale_of(tenant, &reward.0);
                let payload = to_json(&ReferralApplied {
                    header: out.header(seq, "referral.applied"),
                    program: program.clone(),
                    referrer: referrer.clone(),
                    invitee_discount_percent: invitee_discount_percent.normalize().to_string(),
                    referrer_account: reward.0.clone(),
                    referrer_amount: money(reward.1, scale),
                    command_id: command_id.clone(),
                })?;
                out.push(batch, seq, payload);
            }
            Some(Notice::Partner {
                partner_tenant,
                partner_customer,
                discount_percent,
                accrual_percent,
                shared_deposit,
            }) => {
                let seq = next_seq(batch, p);
                let payload = to_json(&PartnerIdentified {
                    header: out.header(seq, "partner.identified"),
                    partner_tenant: partner_tenant.clone(),
                    partner_customer: partner_customer.clone(),
                    discount_percent: discount_percent.normalize().to_string(),
                    accrual_percent: accrual_percent.normalize().to_string(),
                    shared_deposit: *shared_deposit,
                    command_id: command_id.clone(),
                })?;
                out.push(batch, seq, payload);
            }
            None => {}
        }
        if let Some(card) = &outcome.gift_card {
            let seq = next_seq(batch, p);
            let payload = to_json(&GiftCardIssued {
                header: out.header(seq, "giftcard.issued"),
                gift_card: card.gift_card.clone(),
                code: card.code.clone(),
                value: money(card.value, tenant.minor_units),
                currency: tenant.currency.clone(),
                points: money(card.points, 0),
                account: card.account.clone(),
            })?;
            out.push(batch, seq, payload);
            let record = codec::GiftCardRecord {
                gift_card: card.gift_card.clone(),
                code: card.code.clone(),
                value: card.value,
                currency: tenant.currency.clone(),
                points: card.points,
                account: card.account.clone(),
                bought_at: out.occurred,
            };
            let key = keys::gift_card(p, &tenant.id, customer, out.event_id);
            batch.set.put(Family::GiftCards, key, record.encode());
        }
        if let Some(profile) = &outcome.customer {
            let key = keys::customer(p, &tenant.id, customer);
            batch.set.put(Family::Customers, key.clone(), profile.encode());
            batch.customers.insert(key, profile.clone());
        }
        if let Some((order_event, order)) = &outcome.order_record {
            let key = keys::order(p, &tenant.id, customer, order_event);
            batch.set.put(Family::Orders, key.clone(), order.encode());
            batch.orders.insert(key, Some(order.clone()));
        }
        if let Some((booking_id, booking)) = outcome.booking.as_deref() {
            let key = keys::booking(p, &tenant.id, customer, booking_id);
            batch.set.put(Family::Bookings, key.clone(), booking.encode());
            batch.bookings.insert(key, Some(booking.clone()));
            if let Some(due) = outcome.timers.delete {
                batch
                    .set
                    .delete(Family::Timers, keys::timer(p, due, &tenant.id, customer, booking_id));
                add_timers(batch, p, -1);
            }
            if let Some(due) = outcome.timers.set {
                batch.set.put(
                    Family::Timers,
                    keys::timer(p, due, &tenant.id, customer, booking_id),
                    Vec::new(),
                );
                add_timers(batch, p, 1);
            }
        }
        if let Some(before) = &loyalty_before {
            self.book_loyalty(batch, out, outcome, before)?;
        }
        Ok(Written {
            entries: outcome.entries.len(),
            rejected: outcome.rejection.is_some(),
        })
    }

    /// Writes a customer's directory entry to the outbox (for every
    /// instance) and remembers it for this instance's copy at commit.
    pub(super) fn publish_directory_entry(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        profile: &Customer,
    ) -> Result<(), StateError> {
        let entry = DirectoryEntry {
            tenant: tenant.id.clone(),
            customer: customer.to_owned(),
            phone: profile.phone.clone(),
            discount_percent: profile.discount_percent,
            accrual_percent: profile.accrual_percent,
        };
        self.push_routed(batch, p, Destination::Directory, &tenant.id, customer, to_json(&entry)?);
        batch.directory.push(entry);
        Ok(())
    }

    /// Queues `payload` as the next outbox record of partition `p`, for
    /// `destination`, keyed `tenant:customer` and routed to the partition of
    /// that key; returns its sequence.
    pub(super) fn push_routed(
        &self,
        batch: &mut Batch,
        p: u32,
        destination: Destination,
        tenant: &str,
        customer: &str,
        payload: Vec<u8>,
    ) -> u64 {
        let key = contract::customer_key(tenant, customer).into_bytes();
        let record = OutboxRecord {
            destination,
            partition: Some(contract::partition_for(&key, self.routing.partitions)),
            key: Some(key),
            headers: Vec::new(),
            payload,
        };
        let seq = next_seq(batch, p);
        batch.set.put(Family::Outbox, keys::outbox(p, seq), record.encode());
        seq
    }

    /// Writes the dead letter of `record`, cut to fit the producer's
    /// `message.max.bytes` (a truncated copy, with the original size).
    pub(super) fn dead_letter(&self, batch: &mut Batch, record: &InputRecord<'_>, err: &ContractError) {
        let p = record.partition;
        let seq = next_seq(batch, p);
        let out = OutboxRecord {
            destination: Destination::DeadLetter,
            partition: None,
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
        let out = fit_dead_letter(out, self.limits.max_message_bytes);
        batch.set.put(Family::Outbox, keys::outbox(p, seq), out.encode());
        telemetry::dead_lettered(err.kind.as_str());
        tracing::debug!(partition = p, offset = record.offset, topic = record.topic, reason = %err, "dead-lettered");
    }
}

/// Records `dedupe_key` as applied in `batch`. Its value is the sequence of
/// the first output written since `first_seq` (or `u64::MAX` if none was)
/// and when the event occurred, which the retention compaction reads.
pub(super) fn record_applied(batch: &mut Batch, p: u32, dedupe_key: Vec<u8>, first_seq: u64, occurred_ms: i64) {
    let marker = if peek_seq(batch, p) > first_seq {
        first_seq
    } else {
        u64::MAX
    };
    batch.set.put(
        Family::Dedupe,
        dedupe_key.clone(),
        keys::DedupeValue::encode(marker, occurred_ms).to_vec(),
    );
    batch.seen.insert(dedupe_key);
}

/// What [`Processor::apply_outcome`] wrote.
pub(super) struct Written {
    /// Ledger entries.
    pub(super) entries: usize,
    /// Whether it wrote a rejection (the rules' or the balance check's).
    pub(super) rejected: bool,
}

/// The balance after each entry of `outcome`, in order, from the
/// customer's `current` balances; or, if one would overflow or pass the
/// contract's balance limit, the rejection (of type `reject_as`) that
/// replaces the whole outcome.
pub(super) fn balances_after(
    current: Option<&BTreeMap<String, Decimal>>,
    outcome: &Outcome,
    reject_as: RejectionType,
) -> Result<Vec<Decimal>, Box<Outcome>> {
    let mut running: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut after = Vec::with_capacity(outcome.entries.len());
    for entry in &outcome.entries {
        let balance = running
            .get(&*entry.account)
            .or_else(|| current.and_then(|c| c.get(&*entry.account)))
            .copied()
            .unwrap_or_default();
        match rules::next_balance(&entry.account, balance, entry.amount) {
            Ok(next) => {
                running.insert(&entry.account, next);
                after.push(next);
            }
            Err((code, reason)) => return Err(Box::new(Outcome::rejected(reject_as, code, reason))),
        }
    }
    Ok(after)
}

/// Writes the outputs of one event.
pub(super) struct Emitter<'a> {
    pub(super) p: u32,
    pub(super) tenant: &'a TenantConfig,
    pub(super) customer: &'a str,
    pub(super) branch: &'a str,
    pub(super) event_id: &'a str,
    pub(super) source: SourceRef,
    pub(super) occurred_at: String,
    pub(super) occurred: time::OffsetDateTime,
    /// The output type that refuses this source's effect.
    pub(super) reject_as: RejectionType,
    /// The tenant where the visit took place, when it is not `tenant` (a
    /// partner's customer, seed 000): its report shows the entries too.
    pub(super) visited: Option<&'a str>,
}

impl<'a> Emitter<'a> {
    pub(super) fn for_event(p: u32, tenant: &'a TenantConfig, record: &InputRecord<'_>, event: &'a Event) -> Self {
        Emitter {
            p,
            tenant,
            customer: &event.customer,
            branch: &event.branch,
            event_id: &event.event_id,
            source: SourceRef {
                topic: record.topic.to_owned(),
                partition: p,
                offset: record.offset,
            },
            occurred_at: event.occurred_at.format(&Rfc3339).unwrap_or_default(),
            occurred: event.occurred_at,
            reject_as: rules::rejection_type(&event.body),
            visited: None,
        }
    }

    pub(super) fn header(&self, seq: u64, output_type: &str) -> OutputHeader {
        OutputHeader {
            id: contract::output_id(self.p, seq),
            event_type: output_type.to_owned(),
            schema_version: contract::SCHEMA_VERSION,
            tenant: self.tenant.id.clone(),
            customer: self.customer.to_owned(),
            branch: self.branch.to_owned(),
            source_event_id: self.event_id.to_owned(),
            source: self.source.clone(),
            occurred_at: self.occurred_at.clone(),
        }
    }

    /// Queues the accrual of ledger entry `seq` for the accruals topic, as
    /// a reference to the entry ([`AccrualRef`]).
    pub(super) fn push_accrual(&self, batch: &mut Batch, seq: u64) {
        let value = AccrualRef::encode(&self.tenant.id, self.customer);
        batch.set.put(Family::Outbox, keys::outbox(self.p, seq), value);
    }

    /// Queues `payload` for the accruals topic as outbox record `seq`.
    pub(super) fn push(&self, batch: &mut Batch, seq: u64, payload: Vec<u8>) {
        let out = OutboxRecord {
            destination: Destination::Accruals,
            partition: None,
            key: Some(contract::customer_key(&self.tenant.id, self.customer).into_bytes()),
            headers: Vec::new(),
            payload,
        };
        batch.set.put(Family::Outbox, keys::outbox(self.p, seq), out.encode());
    }
}

pub(super) fn to_json(value: &impl Serialize) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| corrupt(Family::Outbox, &e.to_string()))
}

/// A money amount at the currency's scale: `4` becomes `"4.00"`.
pub(super) fn money(value: Decimal, minor_units: u32) -> String {
    at_scale(value, minor_units).to_string()
}

/// The accrual event of a ledger entry as it was built and stored in JSON
/// before the binary ledger (a debug check that the entry renders it).
fn accrual_as_before(out: &Emitter<'_>, seq: u64, entry: &rules::Entry, balance: Decimal) -> AccrualEvent {
    let tenant = out.tenant;
    let scale = rules::scale_of(tenant, &entry.account);
    AccrualEvent {
        header: out.header(seq, AccrualEvent::TYPE),
        account: entry.account.to_string(),
        entry_type: entry.entry_type.as_str().to_owned(),
        program: entry.program.to_string(),
        amount: money(entry.amount, scale),
        balance: money(balance, scale),
        base_amount: entry.base.map(|b| money(b, tenant.minor_units)).unwrap_or_default(),
        currency: tenant.currency.clone(),
        description: entry.description.clone(),
        operator: entry.operator.clone(),
    }
}
