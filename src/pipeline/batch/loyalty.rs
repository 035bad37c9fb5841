//! Customers' loyalty records (the tiers' window, limit counters, the
//! tier) and credits (lots) in the open batch, written once per batch at
//! commit, and their review timers: each expiry, warning and tier review is
//! fired once into a batch, like a booking's credit, and commits with the
//! outputs it makes.

use super::*;
use crate::contract::{PointsExpiring, TierChanged};
use crate::rules::loyalty::{self, Expiring, Lots};
use crate::rules::{Loyalty, TierChange};
use crate::state::codec::StateValue;

/// Output records of a review that are not ledger entries: where they say
/// they come from (no input record: the topic is empty).
const REVIEW_SOURCE: &str = "";

impl Processor {
    /// What [`Self::book_loyalty`] needs of the state before `outcome`,
    /// if the outcome changes the customer's loyalty record or credits.
    pub(super) fn loyalty_before(
        &self,
        batch: &Batch,
        tenant: &TenantConfig,
        prefix: &[u8],
        outcome: &Outcome,
    ) -> Option<Before> {
        if !tenant.keeps_loyalty() {
            return None;
        }
        // Only booking credits reads the balances before the entries.
        let balances = books_lots(tenant, outcome).then(|| batch.balances.get(prefix).cloned().unwrap_or_default());
        (outcome.loyalty.is_some() || balances.is_some()).then_some(Before { balances })
    }

    /// Takes the record the rules decided, books `outcome`'s entries on the
    /// customer's credits in place, and publishes a tier change. Both are
    /// written once, at commit ([`Self::write_loyalty`]).
    pub(super) fn book_loyalty(
        &self,
        batch: &mut Batch,
        out: &Emitter<'_>,
        outcome: &Outcome,
        before: &Before,
    ) -> Result<(), StateError> {
        let (p, tenant, customer) = (out.p, out.tenant, out.customer);
        let key = keys::loyalty(p, &tenant.id, customer);
        let changed = Changed {
            record: outcome.loyalty.is_some(),
            lots: before.balances.is_some(),
        };
        self.touch_loyalty(batch, p, tenant, customer, changed)?;
        if let Some(decided) = &outcome.loyalty {
            // The rules started from the batch's record: theirs replaces it
            // (with the review timer it was given).
            batch.loyalty.insert(key.clone(), Loyalty::clone(decided));
        }
        if let Some(balances) = &before.balances {
            let refund_of = outcome
                .entries
                .iter()
                .any(|e| e.entry_type == rules::EntryType::Reversal)
                .then(|| outcome.order_record.as_ref().map(|(id, _)| id.as_str()))
                .flatten();
            let lots = batch.lots.entry(key).or_default();
            if let Err(overflow) = loyalty::book(
                tenant,
                lots,
                &outcome.entries,
                balances,
                out.occurred,
                out.event_id,
                refund_of,
            ) {
                // The balances took the entries; a lot that does not fit is
                // left as it was rather than stop the partition.
                tracing::warn!(partition = p, tenant = %tenant.id, customer, reason = %overflow.reason(), "credits not booked");
            }
        }
        if let Some(change) = outcome.tier_changed.as_deref() {
            self.emit_tier_changed(batch, out, change)?;
        }
        Ok(())
    }

    /// Loads the customer's records into the batch and marks what changed
    /// (`changed`: the loyalty record, the credits) to be written at commit.
    fn touch_loyalty(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
        changed: Changed,
    ) -> Result<(), StateError> {
        let key = keys::loyalty(p, &tenant.id, customer);
        self.load_loyalty(batch, &key)?;
        if tenant.keeps_lots() {
            self.load_lots(batch, &key)?;
        }
        let dirty = batch.loyalty_dirty.entry(key).or_insert_with(|| Dirty {
            p,
            tenant: tenant.id.clone(),
            customer: customer.to_owned(),
            changed: Changed::default(),
        });
        dirty.changed.record |= changed.record;
        dirty.changed.lots |= changed.lots;
        Ok(())
    }

    /// Writes every loyalty record and credit list the batch changed, once
    /// each, and moves each customer's review timer to its next review (a
    /// record whose timer moves is written for it).
    pub(super) fn write_loyalty(&self, batch: &mut Batch) {
        let dirty = std::mem::take(&mut batch.loyalty_dirty);
        for (
            key,
            Dirty {
                p,
                tenant: tenant_id,
                customer,
                changed,
            },
        ) in dirty
        {
            let Some(tenant) = self.tenants.get(&tenant_id) else {
                continue;
            };
            let empty = Lots::default();
            let lots = batch.lots.get(&key);
            let Some(record) = batch.loyalty.get_mut(&key) else {
                continue;
            };
            let due = loyalty::next_review(tenant, record, lots.unwrap_or(&empty));
            let moved = (due != record.review_ms).then_some((record.review_ms, due));
            record.review_ms = due;
            if changed.record || moved.is_some() {
                let encoded = record.encode();
                batch.set.put(Family::Loyalty, key.clone(), encoded);
            }
            if let (Some(lots), true) = (lots, changed.lots) {
                let encoded = lots.encode();
                batch.set.put(Family::Lots, key.clone(), encoded);
            }
            if let Some((old, new)) = moved {
                if let Some(old) = old {
                    let old = keys::review(p, old, &tenant_id, &customer);
                    if batch.timers_deleted.insert(old.clone()) {
                        batch.set.delete(Family::Reviews, old);
                        add_timers(batch, p, -1);
                    }
                }
                if let Some(new) = new {
                    batch
                        .set
                        .put(Family::Reviews, keys::review(p, new, &tenant_id, &customer), Vec::new());
                    add_timers(batch, p, 1);
                }
            }
        }
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
                // Moved, or of a removed tenant: stale. (A record's timer
                // moves at commit, so its key is not stale in its own batch.)
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
        let key = keys::loyalty(p, &tenant.id, customer);
        let balance_prefix = keys::balance_prefix(p, &tenant.id, customer);
        self.load_balances(batch, &balance_prefix)?;
        let both = Changed {
            record: true,
            lots: true,
        };
        self.touch_loyalty(batch, p, tenant, customer, both)?;
        let consent = self.customer(batch, p, tenant, customer)?.marketing_consent;
        let empty = Lots::default();
        // Each pass removes or moves what was due, so the next review is
        // later; the bound is a guard.
        for _ in 0..1_000 {
            let Some(record) = batch.loyalty.get(&key) else {
                return Ok(());
            };
            let lots = batch.lots.get(&key).unwrap_or(&empty);
            let Some(due_ms) = loyalty::next_review(tenant, record, lots).filter(|d| *d <= now_ms) else {
                return Ok(());
            };
            let no_balances = BTreeMap::new();
            let balances = batch.balances.get(&balance_prefix).unwrap_or(&no_balances);
            let review = match loyalty::review(tenant, record, lots, balances, due_ms, consent) {
                Ok(review) => review,
                Err(overflow) => {
                    tracing::warn!(partition = p, tenant = %tenant.id, customer, reason = %overflow.reason(), "review skipped");
                    let mut lots = lots.clone();
                    lots.lots.retain(|l| l.expires_ms.is_none_or(|e| e > due_ms));
                    batch.lots.insert(key.clone(), lots);
                    continue;
                }
            };
            let loyalty::Review {
                expired,
                expiring,
                tier_changed,
                loyalty: record,
                lots,
            } = review;
            batch.loyalty.insert(key.clone(), record);
            batch.lots.insert(key.clone(), lots);
            let due_at = at_of_ms(due_ms);
            for expired in &expired {
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
            for warning in &expiring {
                self.emit_expiring(batch, &out, &balance_prefix, warning)?;
            }
            if let Some(change) = &tier_changed {
                self.emit_tier_changed(batch, &out, change)?;
            }
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
        // A lot that other credits joined ([`loyalty::MAX_LOTS`]) may expire
        // more than this order credited: its accrual expired at most whole.
        movement.expired = movement
            .expired
            .checked_add(expired.entry.amount.abs())
            .unwrap_or(movement.amount)
            .min(movement.amount);
        batch.set.put(Family::Orders, key.clone(), order.encode());
        batch.orders.insert(key, Some(order));
        Ok(())
    }
}

/// What an outcome that changes a customer's loyalty records needs of the
/// state before it.
pub(super) struct Before {
    /// The customer's balances, if the outcome books credits (`None`: it
    /// only changes the loyalty record).
    balances: Option<BTreeMap<String, Decimal>>,
}

/// A customer whose loyalty records the batch touched: which partition,
/// tenant and customer (to move the review timer), and what changed.
pub(super) struct Dirty {
    p: u32,
    tenant: String,
    customer: String,
    changed: Changed,
}

/// Which of a customer's two records changed.
#[derive(Debug, Clone, Copy, Default)]
struct Changed {
    /// The loyalty record (window, counters, tier).
    record: bool,
    /// The credits.
    lots: bool,
}

/// Whether `outcome` credits or debits an account whose credits are kept
/// as lots (expiry entries were booked by the review that made them).
fn books_lots(tenant: &TenantConfig, outcome: &Outcome) -> bool {
    tenant.keeps_lots()
        && outcome
            .entries
            .iter()
            .any(|e| e.entry_type != rules::EntryType::Expiry && tenant.tracks_lots(&e.account))
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

fn rfc3339_of_ms(ms: i64) -> String {
    at_of_ms(ms).format(&Rfc3339).unwrap_or_default()
}
