//! A customer's profile as the rules read it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::contract::Amount;

/// A customer's profile: from `customer.upserted`, or seeded in the
/// tenant file under `[customers.<id>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Customer groups.
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Signed up: only registered customers earn.
    #[serde(default)]
    pub registered: bool,
    /// Agreed to marketing notifications.
    #[serde(default)]
    pub marketing_consent: bool,
    /// The customer's own discount percentage (client card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent: Option<Amount>,
    /// The customer's own accrual percentage (client card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrual_percent: Option<Amount>,
    /// Has visited (an order or visit was applied). Kept by accrue; set it
    /// in config for customers imported with a history, so they do not count
    /// as first-time visitors for referrals.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub visited: bool,
    /// The customer who referred this one (kept by accrue), for referral
    /// rewards on every visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<String>,
}
