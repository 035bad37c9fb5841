//! Customers' loyalty records (expiring credits, the tiers' window, limit
//! counters, the tier) in the open batch, and their review timers: each
//! expiry, warning and tier review is fired once into a batch, like a
//! booking's credit, and commits with the outputs it makes.

use super::*;
use crate::contract::{PointsExpiring, TierChanged};
use crate::rules::loyalty::{self, Expiring};
use crate::rules::{Loyalty, TierChange};
use crate::state::codec::StateValue;

/// Output records of a review that are not ledger entries: where they say
/// they come from (no input record: the topic is empty).
const REVIEW_SOURCE: &str = "";

impl Processor {
    /// The customer's balances before `outcome`, if its entries or record
    /// change the customer's loyalty record (then [`Self::book_loyalty`]
    /// runs after the entries).
    pub(super) fn loyalty_before(
        &self,
        batch: &Batch,
        tenant: &TenantConfig,
        prefix: &[u8],
        outcome: &Outcome,
    ) -> Option<BTreeMap<String, Decimal>> {
        if !tenant.keeps_loyalty() {
            return None;
        }
        let books = outcome.loyalty.is_some()
            || outcome
                .entries
                .iter()
                .any(|e| e.entry_type != rules::EntryType::Expiry && tenant.tracks_lots(&e.account));
        books.then(|| batch.balances.get(prefix).cloned().unwrap_or_default())
    }

    /// Books `outcome`'s entries on the customer's lots, on top of the
    /// record the rules decided (or the stored one), stores it, and
    /// publishes a tier change.
    pub(super) fn book_loyalty(
        &self,
        batch: &mut Batch,
        out: &Emitter<'_>,
        outcome: &Outcome,
        before: &BTreeMap<String, Decimal>,
    ) -> Result<(), StateError> {
        let (p, tenant, customer) = (out.p, out.tenant, out.customer);
        let key = keys::loyalty(p, &tenant.id, customer);
        self.load_loyalty(batch, &key)?;
        let mut record = match &outcome.loyalty {
            Some(decided) => Loyalty::clone(decided),
            None => batch.loyalty.get(&key).cloned().unwrap_or_default(),
        };
        let refund_of = outcome
            .entries
            .iter()
            .any(|e| e.entry_type == rules::EntryType::Reversal)
            .then(|| outcome.order_record.as_ref().map(|(id, _)| id.as_str()))
            .flatten();
        if let Err(overflow) = loyalty::book(
            tenant,
            &mut record,
            &outcome.entries,
            before,
            out.occurred,
            out.event_id,
            refund_of,
        ) {
            // The balances took the entries; a lot that does not fit is
            // left as it was rather than stop the partition.
            tracing::warn!(partition = p, tenant = %tenant.id, customer, reason = %overflow.reason(), "loyalty record not booked");
        }
        self.put_loyalty(batch, p, tenant, customer, record);
        if let Some(change) = outcome.tier_changed.as_deref() {
            self.emit_tier_changed(batch, out, change)?;
        }
        Ok(())
    }

    /// Stores the customer's record and moves the review timer to the
    /// record's next review.
    pub(super) fn put_loyalty(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        mut record: Loyalty,
    ) {
        let due = loyalty::next_review(tenant, &record);
        if due != record.review_ms {
            // A key is deleted (and counted) once per batch, however often
            // the batch moves the customer's timer.
            if let Some(old) = record.review_ms {
                let key = keys::review(p, old, &tenant.id, customer);
                if batch.timers_deleted.insert(key.clone()) {
                    batch.set.delete(Family::Reviews, key);
                    add_timers(batch, p, -1);
                }
            }
            if let Some(new) = due {
                let key = keys::review(p, new, &tenant.id, customer);
                batch.timers_deleted.remove(&key);
                batch.set.put(Family::Reviews, key, Vec::new());
                add_timers(batch, p, 1);
            }
            record.review_ms = due;
        }
        let key = keys::loyalty(p, &tenant.id, customer);
        batch.set.put(Family::Loyalty, key.clone(), record.encode());
        batch.loyalty.insert(key, record);
    }

    fn emit_tier_changed(&self, batch: &mut Batch, out: &Emitter<'_>, change: &TierChange) -> Result<(), StateError> {
        // Spend is money, at the currency's decimals; visits are whole.
        let (metric, value) = match out.tenant.tiers.as_ref().map(|t| t.metric) {
            Some(crate::programs::TierMetric::Visits) => ("visits", change.value.normalize().to_string()),
            _ => ("spend", money(change.value, out.tenant.minor_units)),
        };
        let seq = next_seq(batch, out.p);
        let payload = to_json(&TierChanged {
            header: out.header(seq, "tier.changed"),
            from: change.from.as_deref().map(str::to_owned),
            to: change.to.as_deref().map(str::to_owned),
            metric: metric.to_owned(),
            value,
        })?;
        out.push(batch, seq, payload);
        Ok(())
    }

    fn emit_expiring(
        &self,
        batch: &mut Batch,
        out: &Emitter<'_>,
        prefix: &[u8],
        warning: &Expiring,
    ) -> Result<(), StateError> {
        let scale = rules::scale_of(out.tenant, &warning.account);
        let balance = batch
            .balances
            .get(prefix)
            .and_then(|b| b.get(&*warning.account))
            .copied()
            .unwrap_or_default();
        let seq = next_seq(batch, out.p);
        let payload = to_json(&PointsExpiring {
            header: out.header(seq, "points.expiring"),
            account: warning.account.to_string(),
            amount: money(warning.amount, scale),
            expires_at: rfc3339_of_ms(warning.expires_ms),
            balance: money(balance, scale),
        })?;
        out.push(batch, seq, payload);
        Ok(())
    }

    /// Fires up to `limit` review timers of partition `p` due at `now_ms`
    /// or earlier, into `batch`: each expiry and warning, its outputs, the
    /// record and the timer's move commit together. Returns how many
    /// reviews ran.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; the batch must then be dropped.
    pub fn fire_reviews(&mut self, batch: &mut Batch, p: u32, now_ms: i64, limit: usize) -> Result<usize, StateError> {
        let prefix = keys::partition_prefix(p);
        let due = self.store.scan(Family::Reviews, &prefix, &prefix, limit)?;
        let mut fired: usize = 0;
        for (key, _) in due {
            let Some((due_ms, tenant_id, customer_id)) = keys::parse_review(&key) else {
                continue;
            };
            if due_ms > now_ms {
                break;
            }
            self.open_cursor(batch, p)?;
            let tenants = self.tenants.clone();
            let loyalty_key = keys::loyalty(p, &tenant_id, &customer_id);
            let live = match tenants.get(&tenant_id) {
                Some(_) => {
                    self.load_loyalty(batch, &loyalty_key)?;
                    batch
                        .loyalty
                        .get(&loyalty_key)
                        .is_some_and(|r| r.review_ms == Some(due_ms))
                }
                None => false,
            };
            let Some(tenant) = tenants.get(&tenant_id).filter(|_| live) else {
                // Moved, fired in this batch, or of a removed tenant: stale.
                if batch.timers_deleted.insert(key.clone()) {
                    batch.set.delete(Family::Reviews, key);
                    add_timers(batch, p, -1);
                }
                continue;
            };
            self.review_customer(batch, p, tenant, &customer_id, now_ms)?;
            telemetry::timer_fired(now_ms.saturating_sub(due_ms).max(0));
            fired = fired.saturating_add(1);
        }
        Ok(fired)
    }

    /// Reviews one customer at every due time up to `now_ms`, in order:
    /// each review's outputs say it occurred at its due time.
    fn review_customer(
        &mut self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        now_ms: i64,
    ) -> Result<(), StateError> {
        let loyalty_key = keys::loyalty(p, &tenant.id, customer);
        let balance_prefix = keys::balance_prefix(p, &tenant.id, customer);
        self.load_balances(batch, &balance_prefix)?;
        let consent = self.customer(batch, p, tenant, customer)?.marketing_consent;
        // Each pass removes or moves what was due; a record always ends with
        // its next review after `now_ms`, or none. The bound is a guard.
        for _ in 0..1_000 {
            let record = batch.loyalty.get(&loyalty_key).cloned().unwrap_or_default();
            let Some(due_ms) = loyalty::next_review(tenant, &record).filter(|d| *d <= now_ms) else {
                // Nothing more is due: leave the timer at the next review.
                self.put_loyalty(batch, p, tenant, customer, record);
                return Ok(());
            };
            let empty = BTreeMap::new();
            let balances = batch.balances.get(&balance_prefix).unwrap_or(&empty);
            let review = match loyalty::review(tenant, &record, balances, due_ms, consent) {
                Ok(review) => review,
                Err(overflow) => {
                    tracing::warn!(partition = p, tenant = %tenant.id, customer, reason = %overflow.reason(), "review skipped");
                    let mut record = record;
                    record.lots.retain(|l| l.expires_ms.is_none_or(|e| e > due_ms));
                    self.put_loyalty(batch, p, tenant, customer, record);
                    continue;
                }
            };
            batch.loyalty.insert(loyalty_key.clone(), review.loyalty.clone());
            let due_at = at_of_ms(due_ms);
            for expired in &review.expired {
                let expires = expired.lot.expires_ms.map_or(due_at, at_of_ms);
                let out = review_emitter(p, tenant, customer, &expired.lot.source, expires);
                let outcome = Outcome {
                    entries: vec![expired.entry.clone()],
                    ..Outcome::default()
                };
                self.apply_outcome(batch, &out, &balance_prefix, &outcome)?;
                self.note_expired(batch, p, tenant, customer, expired)?;
            }
            let out = review_emitter(p, tenant, customer, "review", due_at);
            for warning in &review.expiring {
                self.emit_expiring(batch, &out, &balance_prefix, warning)?;
            }
            if let Some(change) = &review.tier_changed {
                self.emit_tier_changed(batch, &out, change)?;
            }
            self.put_loyalty(batch, p, tenant, customer, review.loyalty);
        }
        Ok(())
    }

    /// Remembers in the credited order's record what of its accrual
    /// expired: a refund never takes that back again.
    fn note_expired(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        expired: &loyalty::Expired,
    ) -> Result<(), StateError> {
        let key = keys::order(p, &tenant.id, customer, &expired.lot.source);
        let Some(mut order) = self.order(batch, &key)? else {
            return Ok(());
        };
        let Some(movement) = order
            .accruals
            .iter_mut()
            .find(|m| m.account == expired.lot.account && m.program == expired.lot.program)
        else {
            return Ok(());
        };
        movement.expired = movement
            .expired
            .checked_add(expired.entry.amount.abs())
            .unwrap_or(movement.amount);
        batch.set.put(Family::Orders, key.clone(), order.encode());
        batch.orders.insert(key, Some(order));
        Ok(())
    }
}

fn review_emitter<'a>(
    p: u32,
    tenant: &'a TenantConfig,
    customer: &'a str,
    event_id: &'a str,
    at: time::OffsetDateTime,
) -> Emitter<'a> {
    Emitter {
        p,
        tenant,
        customer,
        branch: "",
        event_id,
        source: SourceRef {
            topic: REVIEW_SOURCE.to_owned(),
            partition: p,
            offset: -1,
        },
        occurred_at: at.format(&Rfc3339).unwrap_or_default(),
        occurred: at,
        reject_as: rules::RejectionType::Adjustment,
        visited: None,
    }
}

/// The time of Unix milliseconds `ms` (1970 if out of range).
fn at_of_ms(ms: i64) -> time::OffsetDateTime {
    // i64 milliseconds times 10^6 always fits an i128.
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms).saturating_mul(1_000_000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339_of_ms(ms: i64) -> String {
    at_of_ms(ms).format(&Rfc3339).unwrap_or_default()
}
