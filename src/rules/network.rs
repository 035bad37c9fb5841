//! Effects across customers and tenants: referrals (seed 002) and
//! partnerships (seed 000).
//!
//! The origin side decides and emits one internal command; the target
//! side ([`apply_command`]) applies it to the target customer's balances.
//! Both sides re-check what isolation depends on: a referral never leaves
//! its tenant, and a partner order only moves a balance of another tenant
//! while the partnership is active in both directions.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::checked::{self, Overflow};
use super::{
    order, percent_of, round_for, CommandOut, Entry, EntryType, Input, Movement, Notice, OrderRecord, Outcome,
    ReasonCode, RejectionType,
};
use crate::contract::{Amount, Command, CommandBody, OrderPaid, PartnerOrder, PartnerRef, ReferralCredit};
use crate::programs::{deposit_at, ReferralReward, TenantConfig, DEPOSIT_NAME};

/// How a deposit payment splits between the two buckets of a shared deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositSplit {
    /// From deposit accumulated at the partner of the place of payment.
    pub from_elsewhere: Decimal,
    /// From deposit accumulated at the place of payment itself.
    pub from_here: Decimal,
}

/// The shared-deposit rule (seed 000), in one place.
///
/// Paying `amount` of a `bill` from a deposit whose money was accumulated
/// partly at the partner of the place of payment (`elsewhere`) and partly at
/// the place itself (`here`):
/// 1. deposit accumulated at the partner pays first, up to the whole bill
///    (the seed: "up to 100% of the bill with a deposit accumulated in a
///    partner restaurant");
/// 2. the rest comes from deposit accumulated here, and that part may not
///    exceed `cap_percent` of the bill (the place's payment percentage).
///
/// # Errors
/// `(code, reason)`: `insufficient_balance`, `over_cap`, or
/// `amount_overflow` if a sum does not fit a decimal.
pub fn split_deposit(
    bill: Decimal,
    amount: Decimal,
    elsewhere: Decimal,
    here: Decimal,
    cap_percent: Option<Decimal>,
) -> Result<DepositSplit, (ReasonCode, String)> {
    let overflow = |o: Overflow| (o.code(), o.reason());
    let from_elsewhere = amount.min(elsewhere.max(Decimal::ZERO));
    let from_here = checked::sub(amount, from_elsewhere).map_err(overflow)?;
    if from_here > here {
        return Err((
            ReasonCode::InsufficientBalance,
            format!(
                "{amount} paid from deposit, but the deposit holds {} ({elsewhere} accumulated at the partner, {here} here)",
                checked::add(elsewhere, here).map_err(overflow)?
            ),
        ));
    }
    if let Some(cap) = cap_percent {
        let limit = checked::percent(bill, cap).map_err(overflow)?;
        if from_here > limit {
            return Err((
                ReasonCode::OverCap,
                format!(
                    "{from_here} of the payment comes from deposit accumulated here, more than {cap}% of the bill \
                     ({limit}); deposit accumulated at the partner ({elsewhere}) is used first and may pay the whole bill"
                ),
            ));
        }
    }
    Ok(DepositSplit {
        from_elsewhere,
        from_here,
    })
}

/// `order.paid` and `visit.completed`: a partner's customer, a referral, or
/// a plain purchase; every accepted one marks the customer as visited.
pub(super) fn purchase(input: &Input<'_>, order: &OrderPaid) -> Result<Outcome, Overflow> {
    if let Some(partner) = &order.partner {
        return partner_order(input, order, partner);
    }
    let tenant = input.tenant;
    let first_visit = !input.customer.visited && input.balances.is_empty();
    let referrer = match &order.referrer_phone {
        Some(phone) => match find_referrer(input, phone, first_visit) {
            Ok(referrer) => Some(referrer),
            Err(rejection) => return Ok(*rejection),
        },
        None => None,
    };
    let mut outcome = order::paid(input, order)?;
    if outcome.rejection.is_some() {
        return Ok(outcome);
    }
    // The till's hold for this order is consumed (and expired ones go).
    let consumed = order
        .authorization_id
        .as_deref()
        .filter(|id| input.customer.holds.iter().any(|h| h.id == *id));
    // The order's rules may have changed the profile (a birthday bonus).
    if !input.customer.visited || referrer.is_some() || consumed.is_some() || outcome.customer.is_some() {
        let mut profile = outcome.customer.take().unwrap_or_else(|| input.customer.clone());
        profile.visited = true;
        if let Some(referrer) = &referrer {
            profile.referred_by = Some(referrer.clone());
        }
        if let Some(id) = consumed {
            profile.holds.retain(|h| h.id != id && h.active(input.now_ms));
        }
        outcome.customer = Some(profile);
    }
    let Some(referral) = &tenant.referral else {
        return Ok(outcome);
    };
    // The referrer is rewarded for this visit: the first (with the phone),
    // or any later one when the tenant rewards every visit.
    let rewarded = match (&referrer, &input.customer.referred_by, referral.reward) {
        (Some(found), _, _) => Some(found.clone()),
        (None, Some(earlier), ReferralReward::EveryVisit) => Some(earlier.clone()),
        _ => None,
    };
    let Some(rewarded) = rewarded else {
        return Ok(outcome);
    };
    let account = &referral.referrer_account;
    let amount = match (referral.referrer_amount, referral.referrer_percent) {
        (Some(fixed), _) => fixed.value(),
        (None, Some(pct)) => super::percent_for(tenant, account, money_paid(order)?, pct.value())?,
        (None, None) => Decimal::ZERO,
    };
    if amount > Decimal::ZERO {
        outcome.command = Some(Box::new(CommandOut {
            tenant: tenant.id.clone(),
            customer: rewarded.clone(),
            body: CommandBody::ReferralCredit(ReferralCredit {
                program: referral.id.clone(),
                account: account.clone(),
                amount: Amount::new(amount),
            }),
        }));
    }
    if referrer.is_some() {
        outcome.notice = Some(Box::new(Notice::Referral {
            program: referral.id.clone(),
            referrer: rewarded,
            invitee_discount_percent: referral.invitee_discount_percent.value(),
            reward: (account.clone(), amount.max(Decimal::ZERO)),
        }));
    }
    Ok(outcome)
}

/// The referrer of a first visit, found by phone within the tenant.
fn find_referrer(input: &Input<'_>, phone: &str, first_visit: bool) -> Result<String, Box<Outcome>> {
    let tenant = input.tenant;
    let reject = |code, reason| Err(Box::new(Outcome::rejected(RejectionType::Referral, code, reason)));
    if tenant.referral.is_none() {
        return reject(
            ReasonCode::NoReferralProgram,
            format!("tenant {:?} has no [referral] program", tenant.id),
        );
    }
    if !first_visit {
        return reject(
            ReasonCode::NotFirstVisit,
            format!(
                "customer {:?} has visited {:?} before; a referral applies only to a first visit",
                input.event.customer, tenant.id
            ),
        );
    }
    match input.network.find(&tenant.id, phone) {
        None => reject(
            ReasonCode::ReferrerNotFound,
            format!("no customer of tenant {:?} has the phone {phone:?}", tenant.id),
        ),
        Some(found) if found.customer == input.event.customer => reject(
            ReasonCode::SelfReferral,
            format!("the phone {phone:?} is the invitee's own"),
        ),
        Some(found) => Ok(found.customer),
    }
}

/// The part of the bill paid with money (not from balances).
fn money_paid(order: &OrderPaid) -> Result<Decimal, Overflow> {
    checked::sum(
        order
            .payments
            .iter()
            .filter(|p| p.balance_account().is_none())
            .map(|p| p.amount.value()),
    )
}

/// A customer of partner `partner.tenant` identified at this tenant.
fn partner_order(input: &Input<'_>, order: &OrderPaid, partner: &PartnerRef) -> Result<Outcome, Overflow> {
    let tenant = input.tenant;
    let place = &tenant.id;
    let reject = |code, reason| Ok(Outcome::rejected(RejectionType::Partner, code, reason));
    let Some(conditions) = input.network.partnership(place, &partner.tenant) else {
        return reject(
            ReasonCode::NoActivePartnership,
            format!(
                "{place:?} and {:?} have no partnership active in both directions",
                partner.tenant
            ),
        );
    };
    let Some(listed) = input.network.find(&partner.tenant, &partner.phone) else {
        return reject(
            ReasonCode::PartnerCustomerNotFound,
            format!(
                "no customer of partner {:?} has the phone {:?}",
                partner.tenant, partner.phone
            ),
        );
    };
    let (discount, accrual) = if conditions.copy_privileges {
        (
            listed.discount_percent.unwrap_or_default(),
            listed.accrual_percent.unwrap_or_default(),
        )
    } else {
        (conditions.discount_percent.value(), conditions.accrual_percent.value())
    };
    let total = order.total.value();
    let mut deposit = Decimal::ZERO;
    for payment in &order.payments {
        match payment.balance_account() {
            None => {}
            Some("deposit") => deposit = checked::add(deposit, payment.amount.value())?,
            Some(other) => {
                return reject(
                    ReasonCode::UnsupportedPayment,
                    format!("a partner's customer pays with money or deposit, not with {other}"),
                )
            }
        }
    }
    if deposit > Decimal::ZERO
        && !tenant
            .branches
            .get(&input.event.branch)
            .is_some_and(|b| b.payment_methods.contains("deposit"))
    {
        return reject(
            ReasonCode::PaymentMethodDisabled,
            format!("paying with deposit is not enabled in branch {:?}", input.event.branch),
        );
    }
    let base = if tenant.redemption.accrue_on_balance_payments {
        total
    } else {
        checked::sub(total, deposit)?
    };
    let notice = Box::new(Notice::Partner {
        partner_tenant: partner.tenant.clone(),
        partner_customer: listed.customer.clone(),
        discount_percent: discount,
        accrual_percent: accrual,
        shared_deposit: conditions.shared_deposit,
    });
    if conditions.shared_deposit {
        // The deposit lives with the partner: pay and accrue there.
        return Ok(Outcome {
            command: Some(Box::new(CommandOut {
                tenant: partner.tenant.clone(),
                customer: listed.customer,
                body: CommandBody::PartnerOrder(PartnerOrder {
                    total: Amount::new(total),
                    deposit: Amount::new(deposit),
                    base: Amount::new(base),
                    accrual_percent: Amount::new(accrual),
                }),
            })),
            notice: Some(notice),
            ..Outcome::default()
        });
    }
    // No shared deposit: the customer's own deposit here, all of it
    // accumulated here, within the payment percentage.
    let program: Arc<str> = Arc::from(format!("partner:{}", partner.tenant));
    let deposit_name = &*DEPOSIT_NAME;
    let mut outcome = Outcome {
        notice: Some(notice),
        ..Outcome::default()
    };
    let mut record = OrderRecord {
        total,
        refunded: Decimal::ZERO,
        accruals: Vec::new(),
        redemptions: Vec::new(),
    };
    if deposit > Decimal::ZERO {
        let cap = Some(conditions.payment_percent.value());
        if let Err((code, reason)) = split_deposit(total, deposit, Decimal::ZERO, input.balance("deposit"), cap) {
            return reject(code, reason);
        }
        outcome.entries.push(debit(deposit_name, &program, deposit));
        record.redemptions.push(movement(deposit_name, &program, deposit));
    }
    let amount = percent_of(base, accrual, tenant.minor_units)?;
    if amount > Decimal::ZERO {
        outcome.entries.push(Entry {
            account: Arc::clone(deposit_name),
            entry_type: EntryType::PartnerAccrual,
            program: Arc::clone(&program),
            amount,
            base: Some(base),
            description: None,
            operator: None,
        });
        record.accruals.push(movement(deposit_name, &program, amount));
    }
    if !outcome.entries.is_empty() {
        outcome.order_record = Some((input.event.event_id.clone(), record));
    }
    Ok(outcome)
}

fn debit(account: &Arc<str>, program: &Arc<str>, amount: Decimal) -> Entry {
    Entry {
        account: Arc::clone(account),
        entry_type: EntryType::Redemption,
        program: Arc::clone(program),
        amount: checked::neg(amount),
        base: None,
        description: None,
        operator: None,
    }
}

fn movement(account: &Arc<str>, program: &Arc<str>, amount: Decimal) -> Movement {
    Movement::new(Arc::clone(account), Arc::clone(program), amount)
}

/// Applies an internal command to its target customer, whose balances are
/// `balances`, in `tenant` (the command's tenant). A computation that
/// overflows rejects the command (`amount_overflow`).
pub fn apply_command(
    tenant: &TenantConfig,
    balances: &BTreeMap<String, Decimal>,
    network: &dyn super::Network,
    command: &Command,
) -> Outcome {
    apply_command_checked(tenant, balances, network, command).unwrap_or_else(|overflow| {
        Outcome::rejected(
            super::command_rejection_type(&command.body),
            overflow.code(),
            overflow.reason(),
        )
    })
}

fn apply_command_checked(
    tenant: &TenantConfig,
    balances: &BTreeMap<String, Decimal>,
    network: &dyn super::Network,
    command: &Command,
) -> Result<Outcome, Overflow> {
    let balance = |account: &str| balances.get(account).copied().unwrap_or_default();
    match &command.body {
        CommandBody::ReferralCredit(credit) => {
            let reject = |code, reason| Ok(Outcome::rejected(RejectionType::Referral, code, reason));
            if command.source_tenant != command.tenant {
                return reject(
                    ReasonCode::CrossTenant,
                    format!(
                        "a referral of tenant {:?} cannot credit a customer of tenant {:?}",
                        command.source_tenant, command.tenant
                    ),
                );
            }
            let Some(account) = tenant.account_name(&credit.account) else {
                return reject(
                    ReasonCode::UnknownAccount,
                    format!("{:?} is not an account of tenant {:?}", credit.account, tenant.id),
                );
            };
            let amount = round_for(tenant, &credit.account, credit.amount.value());
            if amount <= Decimal::ZERO {
                return Ok(Outcome::default());
            }
            Ok(Outcome {
                entries: vec![Entry {
                    account,
                    entry_type: EntryType::ReferralAccrual,
                    program: Arc::from(credit.program.as_str()),
                    amount,
                    base: None,
                    description: None,
                    operator: None,
                }],
                ..Outcome::default()
            })
        }
        CommandBody::PartnerOrder(order) => {
            let reject = |code, reason| Ok(Outcome::rejected(RejectionType::PartnerPayment, code, reason));
            let place = &command.source_tenant;
            // Re-checked here: the agreement may have ended since the origin
            // decided, and this is the balance of another tenant.
            let Some(conditions) = network.partnership(place, &tenant.id).filter(|c| c.shared_deposit) else {
                return reject(
                    ReasonCode::NoActivePartnership,
                    format!(
                        "{place:?} and {:?} have no active partnership with a shared deposit",
                        tenant.id
                    ),
                );
            };
            let program: Arc<str> = Arc::from(format!("partner:{place}"));
            let here_account: Arc<str> = Arc::from(deposit_at(place));
            let bill = order.total.value();
            let amount = order.deposit.value();
            let mut entries = Vec::new();
            if amount > Decimal::ZERO {
                let split = match split_deposit(
                    bill,
                    amount,
                    balance("deposit"),
                    balance(&here_account),
                    Some(conditions.payment_percent.value()),
                ) {
                    Ok(split) => split,
                    Err((code, reason)) => return reject(code, reason),
                };
                if split.from_elsewhere > Decimal::ZERO {
                    entries.push(debit(&DEPOSIT_NAME, &program, split.from_elsewhere));
                }
                if split.from_here > Decimal::ZERO {
                    entries.push(debit(&here_account, &program, split.from_here));
                }
            }
            let accrued = percent_of(order.base.value(), order.accrual_percent.value(), tenant.minor_units)?;
            if accrued > Decimal::ZERO {
                entries.push(Entry {
                    account: here_account,
                    entry_type: EntryType::PartnerAccrual,
                    program,
                    amount: accrued,
                    base: Some(order.base.value()),
                    description: None,
                    operator: None,
                });
            }
            Ok(Outcome {
                entries,
                ..Outcome::default()
            })
        }
    }
}
