//! A customer's profile as the rules read it.

use std::collections::BTreeSet;
use std::sync::Arc;

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
    pub groups: CustomerGroups,
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

/// A customer's groups, shared: the rules copy a profile to mark a visit,
/// and copying the groups then counts a reference. Reads and serializes as
/// the set it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerGroups(Arc<BTreeSet<String>>);

impl std::ops::Deref for CustomerGroups {
    type Target = BTreeSet<String>;

    fn deref(&self) -> &BTreeSet<String> {
        &self.0
    }
}

impl FromIterator<String> for CustomerGroups {
    fn from_iter<I: IntoIterator<Item = String>>(groups: I) -> Self {
        CustomerGroups(Arc::new(groups.into_iter().collect()))
    }
}
