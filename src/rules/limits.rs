//! Earning limits: what one program may accrue per order, and per customer
//! per calendar day and month in the tenant's time zone.
//!
//! What a program earned per period is counted in the loyalty record
//! ([`Earned`]). A late event counts in its own period. Counters are kept
//! for the last [`KEEP_DAYS`] days and the last two months before the
//! newest period seen; an accrual in an older period (an event that
//! arrives later than that) earns nothing from a program with that limit,
//! so a limit is never exceeded whatever the order of events. A refund
//! does not give headroom back.

use jiff::ToSpan;
use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::checked::{self, Overflow};
use super::loyalty::{Earned, LimitPeriod, Loyalty};
use crate::programs::{EarningLimits, ProgramConfig, TenantConfig};

/// Days whose counters are kept, the newest day seen included.
pub const KEEP_DAYS: i64 = 7;

/// `amount` (positive) accrued by `program` at `at`, reduced to what its
/// `limits` leave, with the reason it was reduced; counts it in `record`.
pub(super) fn cap(
    tenant: &TenantConfig,
    program: &ProgramConfig,
    limits: &EarningLimits,
    record: &mut Loyalty,
    at: OffsetDateTime,
    amount: Decimal,
) -> Result<(Decimal, Option<String>), Overflow> {
    let mut capped = amount;
    let mut note = None;
    if let Some(max) = limits.per_order.map(|m| m.value()) {
        if capped > max {
            capped = max;
            note = Some(format!("capped by per_order limit {max}"));
        }
    }
    // The periods with a limit, their starts, and whether they are still
    // counted (not older than what the record keeps).
    let mut periods: Vec<(LimitPeriod, i64)> = Vec::with_capacity(2);
    for (period, limit, name) in [
        (LimitPeriod::Day, limits.per_day, "per_day"),
        (LimitPeriod::Month, limits.per_month, "per_month"),
    ] {
        let Some(limit) = limit.map(|l| l.value()) else {
            continue;
        };
        let start = period_start(tenant, period, at)?;
        let newest = record
            .earned
            .iter()
            .filter(|e| e.program == program.id && e.period == period)
            .map(|e| e.start_ms)
            .fold(start, i64::max);
        let kept_from = kept_from(tenant, period, newest)?;
        record
            .earned
            .retain(|e| !(e.program == program.id && e.period == period && e.start_ms < kept_from));
        let headroom = if start < kept_from {
            // Too late to know what that period earned: nothing.
            Decimal::ZERO
        } else {
            let earned = record
                .earned
                .iter()
                .find(|e| e.program == program.id && e.period == period && e.start_ms == start)
                .map_or(Decimal::ZERO, |e| e.amount);
            checked::sub(limit, earned)?.max(Decimal::ZERO)
        };
        if capped > headroom {
            capped = headroom;
            note = Some(format!("capped by {name} limit {limit}"));
        }
        periods.push((period, start));
        // The newest period's counter stays even at zero: it marks how far
        // the counters reach, so a pruned period is never counted afresh.
        if newest == start && start >= kept_from {
            counter(record, program, period, start);
        }
    }
    if capped < amount {
        // Written with the accrual's decimals (a limit of "8" credits 8.00).
        capped.rescale(amount.scale().max(capped.scale()));
    }
    // Every period had headroom if anything is left: each is counted.
    if capped > Decimal::ZERO {
        for (period, start) in periods {
            match find(record, program, period, start).and_then(|i| record.earned.get_mut(i)) {
                Some(e) => e.amount = checked::add(e.amount, capped)?,
                None => record.earned.push(Earned {
                    program: program.id.clone(),
                    period,
                    start_ms: start,
                    amount: capped,
                }),
            }
        }
    }
    record
        .earned
        .sort_by(|a, b| (&a.program, a.period, a.start_ms).cmp(&(&b.program, b.period, b.start_ms)));
    Ok((capped, note))
}

fn find(record: &Loyalty, program: &ProgramConfig, period: LimitPeriod, start: i64) -> Option<usize> {
    record
        .earned
        .iter()
        .position(|e| e.program == program.id && e.period == period && e.start_ms == start)
}

/// Makes sure the counter of `(program, period, start)` exists.
fn counter(record: &mut Loyalty, program: &ProgramConfig, period: LimitPeriod, start: i64) {
    if find(record, program, period, start).is_none() {
        record.earned.push(Earned {
            program: program.id.clone(),
            period,
            start_ms: start,
            amount: Decimal::ZERO,
        });
    }
}

/// The start of the day or month of `at` in the tenant's time zone, Unix
/// milliseconds.
pub fn period_start(tenant: &TenantConfig, period: LimitPeriod, at: OffsetDateTime) -> Result<i64, Overflow> {
    let local = tenant.timezone.local(at).ok_or(Overflow::Date)?;
    let start = match period {
        LimitPeriod::Day => local.start_of_day(),
        LimitPeriod::Month => local.first_of_month().and_then(|z| z.start_of_day()),
    }
    .map_err(|_| Overflow::Date)?;
    Ok(start.timestamp().as_millisecond())
}

/// The oldest period start still counted when the newest period seen
/// starts at `newest_ms`: [`KEEP_DAYS`] days, or this and the previous
/// month.
fn kept_from(tenant: &TenantConfig, period: LimitPeriod, newest_ms: i64) -> Result<i64, Overflow> {
    let newest = tenant.timezone.local_ms(newest_ms).ok_or(Overflow::Date)?;
    let date = match period {
        LimitPeriod::Day => newest.date().checked_sub(KEEP_DAYS.saturating_sub(1).days()),
        LimitPeriod::Month => newest.date().first_of_month().checked_sub(1.month()),
    }
    .map_err(|_| Overflow::Date)?;
    let start = date
        .to_zoned(tenant.timezone.tz().clone())
        .and_then(|z| z.start_of_day())
        .map_err(|_| Overflow::Date)?;
    Ok(start.timestamp().as_millisecond())
}
