//! Validation of a tenant's campaigns, birthday bonus and welcome bonus
//! (what serde cannot check: accounts, amounts, ranges, references).

use std::collections::BTreeSet;

use rust_decimal::Decimal;

use super::Issues;
use crate::programs::{FixedBonus, TenantConfig};

/// The largest campaign multiplier.
const MAX_MULTIPLIER: Decimal = Decimal::ONE_HUNDRED;

/// The most days a birthday window opens before or stays open after the
/// birthday: two windows of consecutive years never overlap.
const MAX_WINDOW_DAYS: u16 = 180;

/// The programs of entries no configured program decides.
const RESERVED: [&str; 6] = [
    "birthday",
    "welcome",
    "redemption",
    "manual",
    "gift_cards",
    "service_points",
];

/// Checks `[[campaigns]]`, `[birthday]` and `[welcome]` of `tenant`.
pub(super) fn validate(tenant: &TenantConfig, issues: &mut Issues<'_>) {
    let mut ids = BTreeSet::new();
    for (i, campaign) in tenant.campaigns.iter().enumerate() {
        let at = format!("campaigns[{i}]");
        if !super::tenant::valid_id(&campaign.id) || !ids.insert(&campaign.id) {
            issues.push(
                format!("{at}.id"),
                "write a unique campaign id of 1 to 64 characters of [a-zA-Z0-9_.-]",
            );
        }
        // The id is the program of the campaign's entries: it must name
        // nothing else that moves balances, or reports and refunds mix them.
        let referral = tenant.referral.as_ref().map(|r| r.id.as_str());
        if tenant.programs.iter().any(|p| p.id == campaign.id)
            || RESERVED.contains(&&*campaign.id)
            || referral == Some(&*campaign.id)
        {
            issues.push(
                format!("{at}.id"),
                format!(
                    "{:?} is already the program of other entries (a program, the referral, or one of {}); \
                     give the campaign its own id",
                    campaign.id,
                    RESERVED.join(", ")
                ),
            );
        }
        if campaign.multiplier.is_none() && campaign.bonus.is_none() {
            issues.push(
                at.clone(),
                "a campaign needs a multiplier (such as \"2\"), a bonus = { account, amount }, or both",
            );
        }
        if let Some(multiplier) = campaign.multiplier {
            let m = multiplier.value();
            if m <= Decimal::ONE || m > MAX_MULTIPLIER {
                issues.push(
                    format!("{at}.multiplier"),
                    format!("must be above 1 and at most {MAX_MULTIPLIER} (such as \"2\" or \"1.5\"), got {m}"),
                );
            }
        }
        if let Some(bonus) = &campaign.bonus {
            check_bonus(tenant, issues, &format!("{at}.bonus"), bonus);
        }
        if let (Some(from), Some(until)) = (campaign.from, campaign.until) {
            if from >= until {
                issues.push(
                    format!("{at}.until"),
                    "must be after from (until is exclusive); write the first instant the campaign no longer runs",
                );
            }
        }
        for branch in &campaign.branches {
            if !tenant.branches.contains_key(branch) {
                issues.push(
                    format!("{at}.branches"),
                    format!("{branch:?} is not a branch of this tenant; name branches of [branches], or none for all"),
                );
            }
        }
        for program in &campaign.programs {
            if !tenant.programs.iter().any(|p| &*p.id == program) {
                issues.push(
                    format!("{at}.programs"),
                    format!(
                        "{program:?} is not a program id of this tenant; name ids of [[programs]], or none for all"
                    ),
                );
            }
        }
        if !campaign.programs.is_empty() && campaign.multiplier.is_none() {
            issues.push(
                format!("{at}.programs"),
                "programs choose what a multiplier multiplies; set a multiplier or leave programs out",
            );
        }
        if let Some(min) = campaign.min_total {
            if min.value() <= Decimal::ZERO || min.value().normalize().scale() > tenant.minor_units {
                issues.push(
                    format!("{at}.min_total"),
                    format!(
                        "must be above zero with at most {} decimals (an amount in {}), got {min}; leave it out for any total",
                        tenant.minor_units, tenant.currency
                    ),
                );
            }
        }
    }
    if let Some(birthday) = &tenant.birthday {
        check_bonus(
            tenant,
            issues,
            "birthday",
            &FixedBonus {
                account: birthday.account.clone(),
                amount: birthday.amount,
            },
        );
        for (field, days) in [
            ("days_before", birthday.days_before),
            ("days_after", birthday.days_after),
        ] {
            if days > MAX_WINDOW_DAYS {
                issues.push(
                    format!("birthday.{field}"),
                    format!("must be at most {MAX_WINDOW_DAYS} days, got {days}"),
                );
            }
        }
    }
    if let Some(welcome) = &tenant.welcome {
        check_bonus(
            tenant,
            issues,
            "welcome",
            &FixedBonus {
                account: welcome.account.clone(),
                amount: welcome.amount,
            },
        );
    }
}

/// A fixed credit: an account of the tenant, an amount above zero within
/// the account's decimals.
fn check_bonus(tenant: &TenantConfig, issues: &mut Issues<'_>, at: &str, bonus: &FixedBonus) {
    if !tenant.has_account(&bonus.account) {
        issues.push(
            format!("{at}.account"),
            format!(
                "{:?} is not an account of this tenant; write a built-in account (bonus, cashback, discount, \
                 deposit, service_points) or one of bonus_accounts",
                bonus.account
            ),
        );
        return;
    }
    let v = bonus.amount.value();
    let scale = crate::rules::scale_of(tenant, &bonus.account);
    if v <= Decimal::ZERO || v.normalize().scale() > scale {
        let unit = if scale == 0 {
            "whole points".to_owned()
        } else {
            format!("at most {scale} decimals")
        };
        issues.push(
            format!("{at}.amount"),
            format!("must be above zero in {unit} for account {:?}, got {v}", bonus.account),
        );
    }
}
