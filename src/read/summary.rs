//! A customer's summary for a customer app: balances, the programs in
//! force at the customer's tenant with their descriptions, and the gift
//! cards the customer bought, with their codes.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::scan::{balances, Balance};
use crate::programs::{ProgramConfig, ProgramType, TenantConfig};
use crate::state::codec::GiftCardRecord;
use crate::state::{keys, Family, Snapshot, StateError};

/// A program in force, as a customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramSummary {
    /// Program id.
    pub id: String,
    /// `cashback`, `bonus`, `discount` or `group_bonus`.
    #[serde(rename = "type")]
    pub program_type: &'static str,
    /// The public description from the tenant file.
    pub description: String,
    /// The account it credits.
    pub account: String,
    /// Its percentage, if it has one.
    pub percent: Option<String>,
    /// The branches where it accrues.
    pub branches: Vec<String>,
    /// When this version took effect (RFC 3339), if it has a start.
    pub valid_from: Option<String>,
}

/// A gift card the customer bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GiftCardSummary {
    /// Catalogue id.
    pub gift_card: String,
    /// The code to redeem it.
    pub code: String,
    /// Its value.
    pub value: String,
    /// Currency of the value.
    pub currency: String,
    /// Points paid.
    pub points: String,
    /// Account the points came from.
    pub account: String,
    /// When it was bought (RFC 3339).
    pub bought_at: String,
}

/// Everything a customer app shows on its first screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Tenant.
    pub tenant: String,
    /// Customer.
    pub customer: String,
    /// Every account that ever moved, each with its credits that will
    /// expire.
    pub balances: Vec<Balance>,
    /// The customer's tier (level id); `null` without tiers or below every
    /// level.
    pub tier: Option<String>,
    /// Programs in force now, by id.
    pub programs: Vec<ProgramSummary>,
    /// Gift cards bought, oldest first.
    pub gift_cards: Vec<GiftCardSummary>,
}

fn type_name(t: ProgramType) -> &'static str {
    match t {
        ProgramType::Cashback => "cashback",
        ProgramType::Bonus => "bonus",
        ProgramType::Discount => "discount",
        ProgramType::GroupBonus => "group_bonus",
    }
}

fn program_summary(p: &ProgramConfig) -> ProgramSummary {
    ProgramSummary {
        id: p.id.to_string(),
        program_type: type_name(p.program_type),
        description: p.description.clone(),
        account: p.account().to_owned(),
        percent: p.percent.as_ref().map(|a| a.value().normalize().to_string()),
        branches: p.branches.keys().filter(|b| p.active_in(b)).cloned().collect(),
        valid_from: p.valid_from.and_then(|at| at.format(&Rfc3339).ok()),
    }
}

/// The summary of `customer` of `tenant` at `now`, or `None` if the tenant
/// has no such customer.
///
/// # Errors
/// [`StateError`] if the store fails or a record is corrupt.
pub fn summary(
    snap: &Snapshot<'_>,
    tenant: &TenantConfig,
    customer: &str,
    now: OffsetDateTime,
) -> Result<Option<Summary>, StateError> {
    let Some(found) = balances(snap, tenant, customer)? else {
        return Ok(None);
    };
    let mut gift_cards = Vec::new();
    for p in snap.partitions(Family::GiftCards)? {
        let prefix = keys::gift_card_prefix(p, &tenant.id, customer);
        for item in snap.iter_from(Family::GiftCards, &prefix)? {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let card = GiftCardRecord::decode(&value).map_err(|e| e.in_family(Family::GiftCards))?;
            gift_cards.push(card);
        }
    }
    gift_cards.sort_by_key(|c| c.bought_at);
    let mut programs: Vec<ProgramSummary> = tenant.programs_at(now).map(program_summary).collect();
    programs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(Summary {
        tenant: tenant.id.clone(),
        customer: customer.to_owned(),
        balances: found.balances,
        tier: found.tier,
        programs,
        gift_cards: gift_cards
            .into_iter()
            .map(|c| GiftCardSummary {
                gift_card: c.gift_card,
                code: c.code,
                value: c.value.to_string(),
                currency: c.currency,
                points: c.points.to_string(),
                account: c.account,
                bought_at: c.bought_at.format(&Rfc3339).unwrap_or_default(),
            })
            .collect(),
    }))
}
