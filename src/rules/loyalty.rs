//! What accrue keeps about a customer's earning history, besides balances:
//! the credits that may expire (lots), the spend and visits of the tiers'
//! rolling window, what each program earned per limit period, the current
//! tier, and the review timer. One record per customer, in the `loyalty`
//! family, read only for tenants that use expiry, tiers or limits.

use std::sync::Arc;

use rust_decimal::Decimal;

/// A customer's loyalty record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loyalty {
    /// Credits of accounts with an expiry rule, oldest first, while any of
    /// them is left.
    pub lots: Vec<Lot>,
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
    lots: Vec::new(),
    window: Vec::new(),
    earned: Vec::new(),
    tier: None,
    review_ms: None,
};
