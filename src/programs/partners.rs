//! Referrals (seed 002) and partnerships between tenants (seed 000).

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::TenantConfig;
use crate::contract::Amount;

/// `[referral]`: the invitee gets a discount on the first visit; the
/// referrer gets a fixed cashback on the invitee's first visit, or on every
/// visit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralConfig {
    /// Program id in the ledger and in reports (default `referral`).
    #[serde(default = "default_referral_id")]
    pub id: String,
    /// Public description.
    #[serde(default)]
    pub description: String,
    /// The invitee's discount on the first visit, reported to the POS.
    pub invitee_discount_percent: Amount,
    /// The account (card) the referrer's reward is credited to.
    #[serde(default = "default_referral_account")]
    pub referrer_account: String,
    /// A fixed reward per rewarded visit, at the account's scale.
    #[serde(default)]
    pub referrer_amount: Option<Amount>,
    /// Or: a percentage of the invitee's bill paid with money.
    #[serde(default)]
    pub referrer_percent: Option<Amount>,
    /// On the invitee's first visit only, or on every visit.
    #[serde(default)]
    pub reward: ReferralReward,
}

/// When the referrer is rewarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralReward {
    /// Only for the invitee's first visit.
    #[default]
    FirstVisit,
    /// For every visit of the invitee.
    EveryVisit,
}

fn default_referral_id() -> String {
    "referral".into()
}

fn default_referral_account() -> String {
    "cashback".into()
}

/// `[partners.<tenant>]`: one side of a partnership agreement (seed 000).
/// The partnership is active only when both tenants have `sent = true` and
/// an `[partners.<other>.accepted]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// This tenant sent its agreement to the partner.
    #[serde(default)]
    pub sent: bool,
    /// This tenant accepted the partner's agreement, with these conditions
    /// for the partner's customers here.
    #[serde(default)]
    pub accepted: Option<PartnerConditions>,
}

/// What a tenant grants the partner's customers (set by the accepting side).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConditions {
    /// The partner's customers keep their own discount and accrual
    /// percentages (their client card at the partner) here.
    #[serde(default)]
    pub copy_privileges: bool,
    /// Discount for the partner's customers (without `copy_privileges`).
    #[serde(default)]
    pub discount_percent: Amount,
    /// Accrual for the partner's customers (without `copy_privileges`).
    #[serde(default)]
    pub accrual_percent: Amount,
    /// The partner's customers pay from, and accrue into, their one deposit
    /// kept by the partner.
    #[serde(default)]
    pub shared_deposit: bool,
    /// Most of a bill here payable from deposit accumulated here (percent);
    /// deposit accumulated at the partner may pay up to the whole bill.
    #[serde(default = "hundred")]
    pub payment_percent: Amount,
}

fn hundred() -> Amount {
    Amount::new(Decimal::ONE_HUNDRED)
}

/// The conditions `place` grants customers of `home`, if their partnership
/// is active: both tenants sent an agreement and both accepted the other's.
/// Anything less (one direction only, a tenant not configured) is `None`.
pub fn partnership<'a>(
    tenants: &'a HashMap<String, TenantConfig>,
    place: &str,
    home: &str,
) -> Option<&'a PartnerConditions> {
    if place == home {
        return None;
    }
    let here = tenants.get(place)?.partners.get(home)?;
    let there = tenants.get(home)?.partners.get(place)?;
    if here.sent && there.sent && there.accepted.is_some() {
        here.accepted.as_ref()
    } else {
        None
    }
}
