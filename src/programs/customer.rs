//! A customer's profile as the rules read it.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::contract::{Amount, Birthday};

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
    /// The customer's birthday, from `customer.upserted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<Birthday>,
    /// The birthday year whose birthday bonus was credited last (kept by
    /// accrue): a bonus is credited once per birthday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday_bonus_year: Option<i16>,
    /// The welcome bonus was credited (kept by accrue); set it in config for
    /// customers imported as already welcomed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub welcomed: bool,
    /// Balance reserved at the till for orders not yet settled
    /// (`POST .../authorizations`). Kept by accrue, never configured.
    #[serde(skip)]
    pub holds: Vec<Hold>,
}

/// A reservation of balance payments for one order: made at the till,
/// consumed by the `order.paid` that names it, released when it expires
/// or is cancelled. Expired holds are ignored at once and dropped the next
/// time the profile is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The authorization id the POS puts in the order (`authorization_id`).
    pub id: String,
    /// The POS's order id, for reference.
    pub order_id: String,
    /// What it reserves, by account (positive amounts).
    pub amounts: Vec<(Arc<str>, rust_decimal::Decimal)>,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
    /// When it stops reserving, Unix milliseconds.
    pub expires_ms: i64,
}

impl Hold {
    /// Whether it still reserves anything at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms
    }
}

impl CustomerProfile {
    /// Balance of `account` reserved by holds active at `now_ms`, other than
    /// the hold `except` (the order consuming it may spend what it reserves).
    /// `None` if the sum overflows (it cannot: each hold was within a balance).
    pub fn held(&self, account: &str, now_ms: i64, except: Option<&str>) -> Option<rust_decimal::Decimal> {
        let mut sum = rust_decimal::Decimal::ZERO;
        for hold in &self.holds {
            if !hold.active(now_ms) || except == Some(hold.id.as_str()) {
                continue;
            }
            for (held, amount) in &hold.amounts {
                if &**held == account {
                    sum = sum.checked_add(*amount)?;
                }
            }
        }
        Some(sum)
    }

    /// The active hold `id`, if any.
    pub fn hold(&self, id: &str, now_ms: i64) -> Option<&Hold> {
        self.holds.iter().find(|h| h.id == id && h.active(now_ms))
    }

    /// Whether any hold has expired by `now_ms` (the profile may drop it).
    pub fn has_expired_holds(&self, now_ms: i64) -> bool {
        self.holds.iter().any(|h| !h.active(now_ms))
    }
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
