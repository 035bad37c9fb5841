//! A tenant's policies besides programs: branches, paying with balances,
//! refunds, the gift-card catalogue and booking points.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;

use crate::contract::Amount;

/// A branch (location) of a tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchConfig {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Balance payment methods enabled here (`cashback`, `bonus`, `discount`,
    /// `deposit`, or a named bonus account). Paying with any other balance
    /// here is rejected.
    #[serde(default)]
    pub payment_methods: BTreeSet<String>,
}

/// `[redemption]`: paying with balances.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionConfig {
    /// Largest share of a bill, in percent, payable from each account;
    /// an account not listed may pay 100%.
    #[serde(default)]
    pub max_percent: BTreeMap<String, Amount>,
    /// Whether the part of an order paid with balances also accrues
    /// (default false: only money paid otherwise accrues).
    #[serde(default)]
    pub accrue_on_balance_payments: bool,
}

/// What a refund does when the accrual to reverse was already spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeBalance {
    /// Reverse in full; the balance may go below zero.
    #[default]
    Allow,
    /// Reverse at most the current balance; the rest is written off.
    Clamp,
}

/// `[refunds]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundConfig {
    /// Policy for reversing accruals that were already spent.
    #[serde(default)]
    pub negative_balance: NegativeBalance,
}

/// One gift card of the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiftCardConfig {
    /// Catalogue id used in `giftcard.exchange`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Price in points.
    pub points: Amount,
    /// The gift card's value in the tenant's currency.
    pub value: Amount,
    /// Account the points are taken from (default `service_points`).
    #[serde(default = "default_giftcard_account")]
    pub account: Arc<str>,
}

fn default_giftcard_account() -> Arc<str> {
    Arc::from("service_points")
}

/// `[bookings]`: points per booked service or class, credited a delay
/// after the appointment ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingsConfig {
    /// How long after the appointment's end the points are credited
    /// (`"3h"`, `"90m"`, `"5s"`); default 3 hours.
    #[serde(default = "default_credit_delay", with = "humantime_serde")]
    pub credit_delay: std::time::Duration,
    /// Points per service or class id; a service not listed earns nothing.
    #[serde(default)]
    pub points: BTreeMap<String, Amount>,
}

impl Default for BookingsConfig {
    fn default() -> Self {
        BookingsConfig {
            credit_delay: default_credit_delay(),
            points: BTreeMap::new(),
        }
    }
}

fn default_credit_delay() -> std::time::Duration {
    std::time::Duration::from_secs(3 * 3600)
}
