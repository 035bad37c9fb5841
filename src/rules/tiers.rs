//! Tiers (levels): the customer's spend and visits per UTC day over the
//! tenant's rolling window, the level they reach, the percent a program
//! gives at that level, and the review of the level when days leave the
//! window.
//!
//! A day's bucket counts while its start (UTC midnight) is inside the
//! window `(reference - window, reference]`, where the reference is the
//! latest time seen: the newest of the event's time and the newest bucket.
//! Events arrive out of order, so the window never moves back for a late
//! event, and a late event never moves the level back in time.

use std::borrow::Cow;
use std::sync::Arc;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::checked::{self, Overflow};
use super::loyalty::{Bucket, Loyalty};
use super::{Input, OrderRecord, Outcome, TierChange};
use crate::contract::OrderPaid;
use crate::programs::{ProgramConfig, TenantConfig, TierLevel, TierMetric, TiersConfig};

/// One day in Unix milliseconds.
const DAY_MS: i64 = 86_400_000;

/// The customer's loyalty record as one order changes it: the tiers'
/// window and level first (so the order that reaches a level already
/// earns at it), then the limit counters program by program.
pub(super) struct Standing<'a> {
    before: &'a Loyalty,
    record: Cow<'a, Loyalty>,
    change: Option<TierChange>,
}

impl<'a> Standing<'a> {
    /// The record after `order` (an accepted `order.paid` or
    /// `visit.completed`) is added to the tiers' window.
    pub(super) fn purchase(input: &Input<'a>, order: &OrderPaid) -> Result<Self, Overflow> {
        let mut standing = Standing {
            before: input.loyalty,
            record: Cow::Borrowed(input.loyalty),
            change: None,
        };
        if let Some(tiers) = &input.tenant.tiers {
            let money = checked::sum(
                order
                    .payments
                    .iter()
                    .filter(|p| p.balance_account().is_none())
                    .map(|p| p.amount.value()),
            )?;
            let record = standing.record.to_mut();
            add(tiers, record, input.event.occurred_at, money)?;
            standing.change = settle(tiers, record)?;
        }
        Ok(standing)
    }

    /// The percent `program` gives this customer: its `tier_percent` of
    /// the customer's level, else its `percent`.
    pub(super) fn percent(&self, program: &ProgramConfig) -> Option<Decimal> {
        tier_percent(program, self.record.tier.as_deref()).or_else(|| program.percent.map(|p| p.value()))
    }

    /// `amount` accrued by `program` at `at`, within the program's earning
    /// limits, and why it was reduced (the entry's description).
    pub(super) fn cap(
        &mut self,
        tenant: &TenantConfig,
        program: &ProgramConfig,
        at: OffsetDateTime,
        amount: Decimal,
    ) -> Result<(Decimal, Option<String>), Overflow> {
        match &program.limits {
            Some(limits) if amount > Decimal::ZERO => {
                super::limits::cap(tenant, program, limits, self.record.to_mut(), at, amount)
            }
            _ => Ok((amount, None)),
        }
    }

    /// Puts the new record (if it changed) and the tier change into
    /// `outcome`.
    pub(super) fn finish(self, outcome: &mut Outcome) {
        if let Cow::Owned(record) = self.record {
            if record != *self.before {
                outcome.loyalty = Some(Box::new(record));
            }
        }
        outcome.tier_changed = self.change.map(Box::new);
    }
}

/// `order.refunded` of `original` (now `updated`): the refunded money
/// comes off the window, most recent days first (never below zero), and
/// the order's visit too once the order is refunded in full; the level is
/// recomputed and may go down.
pub(super) fn refunded(
    input: &Input<'_>,
    original: &OrderRecord,
    updated: &OrderRecord,
    outcome: &mut Outcome,
) -> Result<(), Overflow> {
    let Some(tiers) = &input.tenant.tiers else {
        return Ok(());
    };
    let total = original.total;
    let redeemed = checked::sum(original.redemptions.iter().map(|m| m.amount))?;
    let money = checked::sub(total, redeemed)?.max(Decimal::ZERO);
    // The money part of the refunds so far, cumulative, so that a full
    // refund takes off exactly the money the order added.
    let refunded_money = |refunded: Decimal| -> Result<Decimal, Overflow> {
        if total.is_zero() {
            return Ok(Decimal::ZERO);
        }
        if refunded >= total {
            return Ok(money);
        }
        let share = checked::div(checked::mul(money, refunded)?, total)?;
        Ok(super::round::half_even(share, input.tenant.minor_units))
    };
    let take = checked::sub(refunded_money(updated.refunded)?, refunded_money(original.refunded)?)?;
    let visit = updated.refunded >= total && original.refunded < total && !total.is_zero();
    let mut record = input.loyalty.clone();
    let at_ms = checked::unix_ms(input.event.occurred_at)?;
    prune(tiers, &mut record, at_ms);
    take_off(&mut record, take, visit)?;
    let change = settle(tiers, &mut record)?;
    if record != *input.loyalty {
        outcome.loyalty = Some(Box::new(record));
    }
    outcome.tier_changed = change.map(Box::new);
    Ok(())
}

/// When the customer's level could next change with time: the earliest
/// time a day leaves the window such that the window's total no longer
/// reaches the customer's level. `None` when the level cannot drop (no
/// tiers, below every level, or a level no bucket holds up). A due time in
/// the past (the level is already stale, for example after the thresholds
/// changed) means "review now".
pub fn next_review(tenant: &TenantConfig, loyalty: &Loyalty) -> Option<i64> {
    let tiers = tenant.tiers.as_ref()?;
    let tier = loyalty.tier.as_deref()?;
    let window = window_ms(tiers);
    let mut value = total(tiers, &loyalty.window).ok()?;
    if level_of(tiers, value).map(|l| &*l.id) != Some(tier) {
        return Some(loyalty.window.last().map_or(0, |b| b.day_ms));
    }
    for bucket in &loyalty.window {
        value = checked::sub(value, metric_of(tiers, bucket)).ok()?;
        if level_of(tiers, value).map(|l| &*l.id) != Some(tier) {
            return bucket.day_ms.checked_add(window);
        }
    }
    None
}

/// The review at `at_ms` (Unix milliseconds): the days that left the
/// window by then are dropped and the level recomputed. `None` if nothing
/// changes; else the new record and the tier change, if any.
pub fn review(tenant: &TenantConfig, loyalty: &Loyalty, at_ms: i64) -> Option<(Loyalty, Option<TierChange>)> {
    let tiers = tenant.tiers.as_ref()?;
    let mut record = loyalty.clone();
    prune(tiers, &mut record, at_ms);
    // Totals are sums of contract-bounded amounts: an overflow cannot
    // happen, and if it did, leaving the record as it is is the safe answer.
    let change = settle(tiers, &mut record).ok()?;
    (record != *loyalty).then_some((record, change))
}

/// The window's total of the tiers' metric.
pub fn window_value(tiers: &TiersConfig, window: &[Bucket]) -> Result<Decimal, Overflow> {
    total(tiers, window)
}

/// The `tier_percent` of `program` at `tier`.
fn tier_percent(program: &ProgramConfig, tier: Option<&str>) -> Option<Decimal> {
    program.tier_percent.get(tier?).map(|p| p.value())
}

/// The highest level whose threshold the value reaches.
fn level_of(tiers: &TiersConfig, value: Decimal) -> Option<&TierLevel> {
    tiers.levels.iter().rev().find(|l| l.threshold.value() <= value)
}

fn metric_of(tiers: &TiersConfig, bucket: &Bucket) -> Decimal {
    match tiers.metric {
        TierMetric::Spend => bucket.spend,
        TierMetric::Visits => Decimal::from(bucket.visits),
    }
}

fn total(tiers: &TiersConfig, window: &[Bucket]) -> Result<Decimal, Overflow> {
    checked::sum(window.iter().map(|b| metric_of(tiers, b)))
}

/// The window in milliseconds (validation keeps it within a few years).
fn window_ms(tiers: &TiersConfig) -> i64 {
    i64::try_from(tiers.window.as_millis()).unwrap_or(i64::MAX)
}

/// The start (UTC midnight) of the day of `at_ms`.
fn day_of(at_ms: i64) -> i64 {
    at_ms.saturating_sub(at_ms.rem_euclid(DAY_MS))
}

/// The start of the window at the latest day seen (the day of `at_ms` or
/// the newest bucket): a bucket whose day starts at or before it has left.
fn window_start(tiers: &TiersConfig, record: &Loyalty, at_ms: i64) -> i64 {
    let today = day_of(at_ms);
    let reference = record.window.last().map_or(today, |b| b.day_ms.max(today));
    reference.saturating_sub(window_ms(tiers))
}

/// Drops the buckets that left the window as of `at_ms`.
fn prune(tiers: &TiersConfig, record: &mut Loyalty, at_ms: i64) {
    let start = window_start(tiers, record, at_ms);
    record.window.retain(|b| b.day_ms > start);
}

/// Adds one purchase at `at` that paid `money` (not from balances) to the
/// window; a purchase whose day already left the window counts nowhere.
fn add(tiers: &TiersConfig, record: &mut Loyalty, at: OffsetDateTime, money: Decimal) -> Result<(), Overflow> {
    let at_ms = checked::unix_ms(at)?;
    prune(tiers, record, at_ms);
    let day_ms = day_of(at_ms);
    if day_ms <= window_start(tiers, record, at_ms) {
        return Ok(());
    }
    // Buckets stay sorted by day: a late event lands in its own day.
    let i = record.window.partition_point(|b| b.day_ms < day_ms);
    match record.window.get_mut(i) {
        Some(bucket) if bucket.day_ms == day_ms => {
            bucket.spend = checked::add(bucket.spend, money)?;
            bucket.visits = bucket.visits.checked_add(1).ok_or(Overflow::Amount)?;
        }
        _ => record.window.insert(
            i,
            Bucket {
                day_ms,
                spend: money,
                visits: 1,
            },
        ),
    }
    Ok(())
}

/// Takes `money` (and one visit if `visit`) off the most recent buckets
/// first, never below zero; what the window no longer holds is not taken.
fn take_off(record: &mut Loyalty, money: Decimal, visit: bool) -> Result<(), Overflow> {
    let mut left = money;
    let mut visit = visit;
    for bucket in record.window.iter_mut().rev() {
        if left > Decimal::ZERO {
            let take = left.min(bucket.spend.max(Decimal::ZERO));
            bucket.spend = checked::sub(bucket.spend, take)?;
            left = checked::sub(left, take)?;
        }
        if visit && bucket.visits > 0 {
            bucket.visits = bucket.visits.saturating_sub(1);
            visit = false;
        }
        if left <= Decimal::ZERO && !visit {
            break;
        }
    }
    // Emptied buckets stay until they leave the window: the newest one
    // marks the latest day seen.
    Ok(())
}

/// Recomputes the level from the window; a different level than the
/// record's is set and returned as a change.
fn settle(tiers: &TiersConfig, record: &mut Loyalty) -> Result<Option<TierChange>, Overflow> {
    let value = total(tiers, &record.window)?;
    let level: Option<Arc<str>> = level_of(tiers, value).map(|l| Arc::clone(&l.id));
    if level == record.tier {
        return Ok(None);
    }
    let from = std::mem::replace(&mut record.tier, level.clone());
    Ok(Some(TierChange { from, to: level, value }))
}
