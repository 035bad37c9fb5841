//! What accrue keeps about a customer's earning history, besides balances,
//! in two records per customer:
//!
//! - [`Loyalty`] (family `loyalty`): the spend and visits of the tiers'
//!   rolling window, what each program earned per limit period, the tier,
//!   and the review timer. Bounded in size; the rules read it.
//! - [`Lots`] (family `lots`): the credits that may expire, while any of
//!   them is left. It grows with a customer's unspent credits, so only the
//!   pipeline touches it, in place, and writes it once per batch.
//!
//! Both are read only for tenants that use expiry, tiers or limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::checked::{self, Overflow};
use super::{Entry, EntryType, TierChange};
use crate::programs::{CalendarPeriod, ExpiryRule, TenantConfig};

/// A customer's loyalty record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loyalty {
    /// Spend and visits per day of the tiers' window, oldest first.
    pub window: Vec<Bucket>,
    /// What programs earned in the current limit periods.
    pub earned: Vec<Earned>,
    /// The customer's tier (level id), if the tenant has tiers and the
    /// customer reached one.
    pub tier: Option<Arc<str>>,
    /// The due time of the customer's review timer in state (expiries,
    /// expiry warnings, tier review), Unix milliseconds.
    pub review_ms: Option<i64>,
}

/// Most credits kept apart per account of a customer: beyond it a credit
/// joins the newest one of its program (see [`book`]), so a customer who
/// never spends costs a bounded record.
pub const MAX_LOTS: usize = 1_000;

/// A customer's credits of accounts with an expiry rule, oldest first,
/// while any of them is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lots {
    /// The credits.
    pub lots: Vec<Lot>,
}

/// One credit of an account with an expiry rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    /// The account credited.
    pub account: Arc<str>,
    /// The program (or mechanism) that credited it.
    pub program: Arc<str>,
    /// The `event_id` that credited it (a refund of that order takes back
    /// from this lot first).
    pub source: String,
    /// When it was credited (the event's `occurred_at`), Unix milliseconds.
    pub credited_ms: i64,
    /// When what is left of it expires; `None`: never.
    pub expires_ms: Option<i64>,
    /// Whether the customer was told it is about to expire.
    pub warned: bool,
    /// What was credited.
    pub amount: Decimal,
    /// What is left of it: credits are spent oldest first.
    pub remaining: Decimal,
}

/// Spend and visits of one day (UTC) in the tiers' window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The day's start, Unix milliseconds (UTC midnight).
    pub day_ms: i64,
    /// Money spent that day (refunds taken off).
    pub spend: Decimal,
    /// Orders and visits that day.
    pub visits: u32,
}

/// The period of an earning limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitPeriod {
    /// A calendar day in the tenant's time zone.
    Day,
    /// A calendar month in the tenant's time zone.
    Month,
}

/// What one program earned in one limit period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    /// The program id.
    pub program: Arc<str>,
    /// Day or month.
    pub period: LimitPeriod,
    /// The period's start in the tenant's time zone, Unix milliseconds.
    pub start_ms: i64,
    /// Accrued in it.
    pub amount: Decimal,
}

/// The empty record: a customer with no history, or of a tenant without
/// expiry, tiers and limits.
pub static NO_LOYALTY: Loyalty = Loyalty {
    window: Vec::new(),
    earned: Vec::new(),
    tier: None,
    review_ms: None,
};

/// A warning that credits are about to expire (`points.expiring`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// The account.
    pub account: Arc<str>,
    /// What is left of the credits that expire, together.
    pub amount: Decimal,
    /// When the first of them expires, Unix milliseconds.
    pub expires_ms: i64,
}

/// What expired of one credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The credit (its `remaining` before it expired).
    pub lot: Lot,
    /// The ledger entry: `expiry`, minus what was left of the credit (less
    /// if the balance was lower, as after a refund that took it below).
    pub entry: Entry,
}

/// What one review of a customer's record did at one due time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    /// The credits that expired, in credit order.
    pub expired: Vec<Expired>,
    /// Warnings to send (empty unless the customer agreed to marketing).
    pub expiring: Vec<Expiring>,
    /// The tier the review moved the customer to.
    pub tier_changed: Option<TierChange>,
    /// The record after the review.
    pub loyalty: Loyalty,
    /// The credits after the review.
    pub lots: Lots,
}

/// When a credit made at `credited_ms` under `rule` expires.
///
/// # Errors
/// [`Overflow::Date`] if the time leaves the calendar.
pub fn expires_at(tenant: &TenantConfig, rule: &ExpiryRule, credited_ms: i64) -> Result<Option<i64>, Overflow> {
    if let Some(after) = rule.after {
        let after = i64::try_from(after.as_millis()).map_err(|_| Overflow::Date)?;
        return credited_ms.checked_add(after).map(Some).ok_or(Overflow::Date);
    }
    let Some(period) = rule.at_end_of else {
        return Ok(None);
    };
    let local = tenant.timezone.local_ms(credited_ms).ok_or(Overflow::Date)?;
    let months: i8 = match period {
        CalendarPeriod::Month => 1,
        CalendarPeriod::Quarter => 3,
        CalendarPeriod::Year => 12,
    };
    // The first day of the period, then the first instant of the next one.
    let first_month = match period {
        CalendarPeriod::Month => local.month(),
        CalendarPeriod::Quarter => match local.month() {
            1..=3 => 1,
            4..=6 => 4,
            7..=9 => 7,
            _ => 10,
        },
        CalendarPeriod::Year => 1,
    };
    let start = jiff::civil::date(local.year(), first_month, 1);
    let next = start
        .checked_add(jiff::Span::new().months(months))
        .map_err(|_| Overflow::Date)?;
    let end = next
        .to_zoned(tenant.timezone.tz().clone())
        .map_err(|_| Overflow::Date)?;
    Ok(Some(end.timestamp().as_millisecond()))
}

/// When the customer is told a lot under `rule` expires.
fn warn_at(rule: &ExpiryRule, expires_ms: i64) -> Option<i64> {
    let before = i64::try_from(rule.warn_before?.as_millis()).ok()?;
    Some(expires_ms.saturating_sub(before))
}

/// Books one outcome's entries on the customer's lots: a credit to an
/// account with an expiry rule becomes a lot; a debit spends lots oldest
/// first. A balance the lots do not explain (credited before the rule
/// existed) counts as the oldest credit and never expires, so it is spent
/// first. A credit to a balance below zero pays the debt first. Beyond
/// [`MAX_LOTS`] credits left of an account, a credit joins the newest one
/// of its program. A
/// reversal of an order's accrual (`refund_of`) takes back from
/// that order's own lot first. Expiry entries were booked by [`review`].
///
/// `balances` are the customer's balances before the entries.
///
/// # Errors
/// [`Overflow`] if a sum or a time does not fit.
pub fn book(
    tenant: &TenantConfig,
    lots: &mut Lots,
    entries: &[Entry],
    balances: &BTreeMap<String, Decimal>,
    at: time::OffsetDateTime,
    source: &str,
    refund_of: Option<&str>,
) -> Result<(), Overflow> {
    let at_ms = checked::unix_ms(at)?;
    let mut running: BTreeMap<&str, Decimal> = BTreeMap::new();
    for entry in entries {
        let account = &*entry.account;
        let before = match running.get(account) {
            Some(b) => *b,
            None => balances.get(account).copied().unwrap_or_default(),
        };
        running.insert(account, checked::add(before, entry.amount)?);
        if entry.entry_type == EntryType::Expiry || !tenant.tracks_lots(account) {
            continue;
        }
        if entry.amount > Decimal::ZERO {
            // A credit to a balance below zero pays the debt first; only
            // what it leaves above zero can be spent or expire.
            let remaining = entry.amount.min(checked::add(before, entry.amount)?);
            if remaining <= Decimal::ZERO {
                continue;
            }
            let expires_ms = match tenant.expiry_rule(account, &entry.program) {
                Some(rule) => expires_at(tenant, rule, at_ms)?,
                None => None,
            };
            if lots.lots.iter().filter(|l| &*l.account == account).count() >= MAX_LOTS {
                // The record stays bounded: the credit joins the newest one of
                // its program, which then expires with the later of the two.
                if let Some(newest) = lots
                    .lots
                    .iter_mut()
                    .rev()
                    .find(|l| &*l.account == account && l.program == entry.program)
                {
                    newest.amount = checked::add(newest.amount, entry.amount)?;
                    newest.remaining = checked::add(newest.remaining, remaining)?;
                    newest.expires_ms = match (newest.expires_ms, expires_ms) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    newest.warned = false;
                    continue;
                }
            }
            lots.lots.push(Lot {
                account: Arc::clone(&entry.account),
                program: Arc::clone(&entry.program),
                source: source.to_owned(),
                credited_ms: at_ms,
                expires_ms,
                warned: false,
                amount: entry.amount,
                remaining,
            });
            continue;
        }
        let in_lots = checked::sum(lots.lots.iter().filter(|l| &*l.account == account).map(|l| l.remaining))?;
        let opening = checked::sub(before, in_lots)?.max(Decimal::ZERO);
        let mut left = checked::sub(entry.amount.abs(), opening)?.max(Decimal::ZERO);
        let own = |lot: &Lot| {
            entry.entry_type == EntryType::Reversal
                && refund_of == Some(lot.source.as_str())
                && lot.program == entry.program
        };
        for first in [true, false] {
            for lot in lots
                .lots
                .iter_mut()
                .filter(|l| &*l.account == account && (!first || own(l)))
            {
                let take = left.min(lot.remaining);
                lot.remaining = checked::sub(lot.remaining, take)?;
                left = checked::sub(left, take)?;
            }
        }
        lots.lots.retain(|l| l.remaining > Decimal::ZERO);
    }
    Ok(())
}

/// The next time the customer's record needs a review: a lot expires, a
/// warning is due, or the tier may drop.
pub fn next_review(tenant: &TenantConfig, loyalty: &Loyalty, lots: &Lots) -> Option<i64> {
    let mut next: Option<i64> = None;
    let mut consider = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
    for lot in &lots.lots {
        let Some(expires) = lot.expires_ms else { continue };
        if !tenant.tracks_lots(&lot.account) {
            // Dropped at its review (see `review`), without an expiry.
            consider(expires);
            continue;
        }
        consider(expires);
        if !lot.warned {
            if let Some(warn) = tenant
                .expiry_rule(&lot.account, &lot.program)
                .and_then(|rule| warn_at(rule, expires))
            {
                consider(warn.min(expires));
            }
        }
    }
    if let Some(at) = super::tiers::next_review(tenant, loyalty) {
        consider(at);
    }
    next
}

/// Reviews the customer's record at `at_ms`: expires every lot due by
/// then (what is left of it, never more than the balance), marks the
/// warnings due by then (returned only with `consent`), and reviews the
/// tier.
///
/// # Errors
/// [`Overflow`] if a sum does not fit.
pub fn review(
    tenant: &TenantConfig,
    loyalty: &Loyalty,
    lots: &Lots,
    balances: &BTreeMap<String, Decimal>,
    at_ms: i64,
    consent: bool,
) -> Result<Review, Overflow> {
    let mut out = Review {
        loyalty: loyalty.clone(),
        ..Review::default()
    };
    let mut running: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut kept = Vec::with_capacity(lots.lots.len());
    for lot in &lots.lots {
        if !tenant.tracks_lots(&lot.account) {
            // The account's rule was removed: its credits no longer expire,
            // and debits no longer spend lots, so the lot is dropped.
            continue;
        }
        if lot.expires_ms.is_none_or(|e| e > at_ms) {
            kept.push(lot.clone());
            continue;
        }
        let balance = match running.get(&*lot.account) {
            Some(b) => *b,
            None => balances.get(&*lot.account).copied().unwrap_or_default(),
        };
        let amount = lot.remaining.min(balance.max(Decimal::ZERO));
        running.insert(&lot.account, checked::sub(balance, amount)?);
        if amount.is_zero() {
            continue;
        }
        out.expired.push(Expired {
            lot: lot.clone(),
            entry: Entry {
                account: Arc::clone(&lot.account),
                entry_type: EntryType::Expiry,
                program: Arc::clone(&lot.program),
                amount: checked::neg(amount),
                base: None,
                description: Some(format!("expiry of {} credited by {}", lot.amount, lot.source)),
                operator: None,
            },
        });
    }
    // Warnings: lots whose warning time has come, by account.
    for lot in &mut kept {
        let (Some(expires), false) = (lot.expires_ms, lot.warned) else {
            continue;
        };
        let due = tenant
            .expiry_rule(&lot.account, &lot.program)
            .and_then(|rule| warn_at(rule, expires));
        if due.is_none_or(|w| w > at_ms) {
            continue;
        }
        lot.warned = true;
        if !consent {
            continue;
        }
        match out.expiring.iter_mut().find(|e| e.account == lot.account) {
            Some(warning) => {
                warning.amount = checked::add(warning.amount, lot.remaining)?;
                warning.expires_ms = warning.expires_ms.min(expires);
            }
            None => out.expiring.push(Expiring {
                account: Arc::clone(&lot.account),
                amount: lot.remaining,
                expires_ms: expires,
            }),
        }
    }
    out.lots.lots = kept;
    if let Some((record, change)) = super::tiers::review(tenant, &out.loyalty, at_ms) {
        out.loyalty = record;
        out.tier_changed = change;
    }
    Ok(out)
}
