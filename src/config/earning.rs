//! Validation of a tenant's tiers (`[tiers]`) and of the programs' tier
//! percents and earning limits.

use std::collections::BTreeSet;
use std::time::Duration;

use rust_decimal::Decimal;

use super::tenant::valid_id;
use super::Issues;
use crate::programs::{ProgramType, TenantConfig, TierMetric};

/// The longest tiers window: the record keeps one bucket per day in it.
const MAX_WINDOW_DAYS: u64 = 1096;

const DAY: u64 = 86_400;

/// Checks `[tiers]`, every program's `tier_percent` and `limits`.
pub(super) fn validate(tenant: &TenantConfig, issues: &mut Issues<'_>) {
    let mut levels: BTreeSet<&str> = BTreeSet::new();
    if let Some(tiers) = &tenant.tiers {
        let window = tiers.window;
        if window < Duration::from_secs(DAY)
            || window > Duration::from_secs(MAX_WINDOW_DAYS * DAY)
            || window.as_secs() % DAY != 0
            || window.subsec_nanos() != 0
        {
            issues.push(
                "tiers.window",
                format!(
                    "must be whole days from 1d to {MAX_WINDOW_DAYS}d (write it in days, such as \"365d\"); \
                     the window counts spend and visits per day"
                ),
            );
        }
        if tiers.levels.is_empty() {
            issues.push(
                "tiers.levels",
                "list at least one level: [[tiers.levels]] with id and threshold",
            );
        }
        let scale = match tiers.metric {
            TierMetric::Spend => tenant.minor_units,
            TierMetric::Visits => 0,
        };
        let mut previous: Option<Decimal> = None;
        for (i, level) in tiers.levels.iter().enumerate() {
            let at = format!("tiers.levels[{i}]");
            if !valid_id(&level.id) || !levels.insert(&level.id) {
                issues.push(
                    format!("{at}.id"),
                    "must be a unique id of 1 to 64 characters of [a-zA-Z0-9_.-]",
                );
            }
            let threshold = level.threshold.value();
            if threshold < Decimal::ZERO || threshold.normalize().scale() > scale {
                let what = match tiers.metric {
                    TierMetric::Spend => format!("an amount of money with at most {scale} decimals"),
                    TierMetric::Visits => "a whole number of visits".to_owned(),
                };
                issues.push(
                    format!("{at}.threshold"),
                    format!("must be zero or more, {what}; got {threshold}"),
                );
            }
            if previous.is_some_and(|p| threshold <= p) {
                issues.push(
                    format!("{at}.threshold"),
                    format!(
                        "list levels by strictly ascending threshold; {threshold} does not exceed the level before"
                    ),
                );
            }
            previous = Some(threshold);
        }
    }
    for (i, program) in tenant.programs.iter().enumerate() {
        let at = format!("programs[{i}]");
        if !program.tier_percent.is_empty() {
            if tenant.tiers.is_none() {
                issues.push(
                    format!("{at}.tier_percent"),
                    "needs a [tiers] table with the levels it names; add one or remove tier_percent",
                );
            }
            if program.program_type == ProgramType::GroupBonus {
                issues.push(
                    format!("{at}.tier_percent"),
                    "applies to cashback, bonus and discount programs; a group_bonus program sets its percents in rules",
                );
            }
        }
        for (level, pct) in &program.tier_percent {
            if tenant.tiers.is_some() && !levels.contains(level.as_str()) {
                issues.push(
                    format!("{at}.tier_percent.{level}"),
                    format!("{level:?} is not a level id of [tiers]; use one of {levels:?}"),
                );
            }
            let v = pct.value();
            if v < Decimal::ONE || v > Decimal::ONE_HUNDRED {
                issues.push(
                    format!("{at}.tier_percent.{level}"),
                    format!("must be between 1 and 100, got {v}"),
                );
            }
        }
        let Some(limits) = &program.limits else {
            continue;
        };
        let scale = if tenant.is_points(program.account()) {
            0
        } else {
            tenant.minor_units
        };
        let set = [
            ("per_order", limits.per_order),
            ("per_day", limits.per_day),
            ("per_month", limits.per_month),
        ];
        if set.iter().all(|(_, v)| v.is_none()) {
            issues.push(
                format!("{at}.limits"),
                "set at least one of per_order, per_day and per_month, or remove limits",
            );
        }
        for (name, limit) in set {
            let Some(v) = limit.map(|l| l.value()) else {
                continue;
            };
            if v <= Decimal::ZERO || v.normalize().scale() > scale {
                issues.push(
                    format!("{at}.limits.{name}"),
                    format!(
                        "must be above zero with at most {scale} decimals (account {:?}), got {v}",
                        program.account()
                    ),
                );
            }
        }
    }
}
