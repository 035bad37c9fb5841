//! How credits expire, tiers by spend or visits over a rolling window, and
//! earning limits per program.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::contract::Amount;

/// When a credit expires: a period after it was credited, or at the end of
/// the calendar period it was credited in (tenant's time zone). One of the
/// two.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryRule {
    /// How long after the credit's `occurred_at` it expires (`"365d"`).
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    /// Expire at the end of the month, quarter or year it was credited in.
    #[serde(default)]
    pub at_end_of: Option<CalendarPeriod>,
    /// Tell the customer (`points.expiring`, with marketing consent only)
    /// this long before a credit expires (`"14d"`).
    #[serde(default, with = "humantime_serde")]
    pub warn_before: Option<Duration>,
}

/// A calendar period in the tenant's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarPeriod {
    /// The calendar month.
    Month,
    /// The calendar quarter (January, April, July, October).
    Quarter,
    /// The calendar year.
    Year,
}

/// What a tier counts over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierMetric {
    /// Money paid (not with balances), refunds taken off.
    Spend,
    /// Orders and visits.
    Visits,
}

/// One level of the tiers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLevel {
    /// Level id, used in `tier_percent` and `tier.changed`.
    pub id: Arc<str>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The window's spend or visits from which the customer is at this level.
    pub threshold: Amount,
}

/// `[tiers]`: levels by cumulative spend or visits over a rolling window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersConfig {
    /// What the window counts.
    pub metric: TierMetric,
    /// The rolling window (`"365d"`, the default).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Levels by ascending threshold.
    pub levels: Vec<TierLevel>,
}

fn default_window() -> Duration {
    Duration::from_secs(365 * 86_400)
}

/// A program's earning limits (each optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarningLimits {
    /// Most one order earns from the program.
    #[serde(default)]
    pub per_order: Option<Amount>,
    /// Most a customer earns from it per calendar day (tenant's zone).
    #[serde(default)]
    pub per_day: Option<Amount>,
    /// Most a customer earns from it per calendar month (tenant's zone).
    #[serde(default)]
    pub per_month: Option<Amount>,
}

/// Expiry rules by account.
pub type ExpiryRules = BTreeMap<Arc<str>, ExpiryRule>;
