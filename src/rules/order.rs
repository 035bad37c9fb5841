//! Orders: redemption checks, accruals of every program type, and refunds.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::checked::{self, Overflow};
use super::{
    round_for, Entry, EntryType, Input, Movement, OrderRecord, Outcome, ReasonCode, RejectionType, REDEMPTION,
};
use crate::contract::{OrderLine, OrderPaid, OrderRefunded};
use crate::programs::{NegativeBalance, ProgramConfig, ProgramType, SalesConfig, TenantConfig};

/// `order.paid`: check and debit balance payments, then accrue.
pub(super) fn paid(input: &Input<'_>, order: &OrderPaid) -> Result<Outcome, Overflow> {
    let tenant = input.tenant;
    let total = order.total.value();

    // 1. Redemption: every balance payment must pass, or nothing happens.
    let mut redeemed: BTreeMap<&str, Decimal> = BTreeMap::new();
    for payment in &order.payments {
        if let Some(account) = payment.balance_account() {
            let sum = redeemed.entry(account).or_default();
            *sum = checked::add(*sum, payment.amount.value())?;
        }
    }
    let branch = tenant.branches.get(&input.event.branch);
    // At most one entry per balance and per program: allocated once. A
    // refusal below drops what was built and refuses the whole order.
    let programs = tenant.programs.len();
    let mut outcome = Outcome {
        entries: Vec::with_capacity(redeemed.len().saturating_add(programs)),
        ..Outcome::default()
    };
    let mut record = OrderRecord {
        total,
        refunded: Decimal::ZERO,
        accruals: Vec::with_capacity(programs),
        redemptions: Vec::with_capacity(redeemed.len()),
    };
    // What each balance payment debits: the account itself, or for
    // `deposit`, first the buckets accumulated at partners (seed 000).
    let mut debit = |account: Arc<str>, amount: Decimal| {
        outcome.entries.push(Entry {
            account: Arc::clone(&account),
            entry_type: EntryType::Redemption,
            program: Arc::clone(&REDEMPTION),
            amount: checked::neg(amount),
            base: None,
            description: None,
            operator: None,
        });
        record
            .redemptions
            .push(Movement::new(account, Arc::clone(&REDEMPTION), amount));
    };
    for (account, amount) in &redeemed {
        let reject = |code, reason| Ok(Outcome::rejected(RejectionType::Redemption, code, reason));
        let Some(name) = tenant.account_name(account) else {
            return reject(
                ReasonCode::UnknownAccount,
                format!("{account:?} is not an account of tenant {:?}", tenant.id),
            );
        };
        if !branch.is_some_and(|b| b.payment_methods.contains(*account)) {
            return reject(
                ReasonCode::PaymentMethodDisabled,
                format!(
                    "paying with {account} is not enabled in branch {:?}",
                    input.event.branch
                ),
            );
        }
        if amount.normalize().scale() > super::scale_of(tenant, account) {
            return reject(
                ReasonCode::BadPrecision,
                format!("{amount} has more decimals than the {account} account holds (points are whole)"),
            );
        }
        let hold = order.authorization_id.as_deref();
        let balance = input.spendable(account, hold)?;
        let mut buckets: Vec<(&String, Decimal)> = Vec::new();
        if *account == "deposit" {
            for a in input.balances.keys().filter(|a| tenant.partner_bucket(a).is_some()) {
                let v = input.spendable(a, hold)?;
                if v > Decimal::ZERO {
                    buckets.push((a, v));
                }
            }
        }
        if !buckets.is_empty() {
            // Seed 000: deposit accumulated at a partner pays up to the
            // whole bill; deposit accumulated here stays within the cap.
            let elsewhere = checked::sum(buckets.iter().map(|(_, v)| *v))?;
            let cap = tenant.redemption.max_percent.get(*account).map(|c| c.value());
            let split = match super::split_deposit(total, *amount, elsewhere, balance, cap) {
                Ok(split) => split,
                Err((code, reason)) => return reject(code, reason),
            };
            let mut left = split.from_elsewhere;
            for (bucket, available) in buckets {
                let take = left.min(available);
                if take > Decimal::ZERO {
                    debit(Arc::from(bucket.as_str()), take);
                    left = checked::sub(left, take)?;
                }
            }
            if split.from_here > Decimal::ZERO {
                debit(name, split.from_here);
            }
            continue;
        }
        if balance < *amount {
            return reject(
                ReasonCode::InsufficientBalance,
                if input.customer.holds.is_empty() {
                    format!("{amount} paid with {account}, but the balance is {balance}")
                } else {
                    format!(
                        "{amount} paid with {account}, but {balance} is available: the balance less what till authorizations hold"
                    )
                },
            );
        }
        if let Some(cap) = tenant.redemption.max_percent.get(*account) {
            if *amount > super::round::percent_value(total, cap.value())? {
                // As the bill's share is written in the reason.
                let limit = checked::percent(total, cap.value())?;
                return reject(
                    ReasonCode::OverCap,
                    format!(
                        "{amount} paid with {account} is more than {}% of the bill ({limit})",
                        cap.value()
                    ),
                );
            }
        }
        debit(name, *amount);
    }

    // 2. Accruals of every program version in force at the event time.
    // Programs that accept every sale share one payment share; a division
    // is made once per eligible amount (most orders have one).
    let mut share_of_all: Option<Decimal> = None;
    let mut last_share: Option<(Decimal, Decimal)> = None;
    // The tiers' window and level, then the limit counters (tiers.rs).
    let mut standing = super::tiers::Standing::purchase(input, order)?;
    for program in tenant.programs_at(input.event.occurred_at) {
        if !program.active_in(&input.event.branch) || (program.registered_only && !input.customer.registered) {
            continue;
        }
        let share = match (&program.sales, share_of_all) {
            (SalesConfig::All(_), Some(share)) => share,
            _ if total.is_zero() => Decimal::ZERO,
            (sales, _) => {
                let eligible = eligible_payments(tenant, program, order)?;
                let share = match last_share {
                    // The same operands, bit for bit, divide to the same share.
                    Some((before, share)) if before.serialize() == eligible.serialize() => share,
                    _ => checked::div(eligible, total)?,
                };
                last_share = Some((eligible, share));
                if matches!(sales, SalesConfig::All(_)) {
                    share_of_all = Some(share);
                }
                share
            }
        };
        if share.is_zero() {
            continue;
        }
        let account = program.account_name();
        let (base, amount) = match program.program_type {
            ProgramType::GroupBonus => {
                if program.groups.is_disjoint(&input.customer.groups) {
                    continue;
                }
                let mut base = Decimal::ZERO;
                let mut raw = Decimal::ZERO;
                for rule in &program.rules {
                    let lines = checked::sum(
                        order
                            .lines
                            .iter()
                            .filter(|l| l.category == rule.category && eligible_line(program, l))
                            .map(|l| l.amount.value()),
                    )?;
                    let part = checked::mul(lines, share)?;
                    base = checked::add(base, part)?;
                    raw = checked::add(raw, checked::percent(part, rule.percent.value())?)?;
                }
                // Rounded once, after the rules' shares are added up.
                (base, round_for(tenant, &account, raw))
            }
            _ => {
                let Some(pct) = standing.percent(program) else { continue };
                let lines = checked::sum(
                    order
                        .lines
                        .iter()
                        .filter(|l| eligible_line(program, l))
                        .map(|l| l.amount.value()),
                )?;
                let base = checked::mul(lines, share)?;
                (base, super::percent_for(tenant, &account, base, pct)?)
            }
        };
        // A campaign's boost first, so that a limit covers what it adds.
        let amount = super::campaigns::boost(input, program, amount)?;
        let (amount, capped) = standing.cap(tenant, program, input.event.occurred_at, amount)?;
        if amount <= Decimal::ZERO {
            continue;
        }
        outcome.entries.push(Entry {
            account: Arc::clone(&account),
            entry_type: EntryType::Accrual,
            program: Arc::clone(&program.id),
            amount,
            base: Some(round_for_money(tenant, base)),
            description: capped,
            operator: None,
        });
        record
            .accruals
            .push(Movement::new(account, Arc::clone(&program.id), amount));
    }
    standing.finish(&mut outcome);
    super::campaigns::bonuses(input, order, &mut outcome, &mut record)?;
    // With tiers, a refund takes the order's money off the window: it
    // needs the record even if the order accrued nothing.
    if !outcome.entries.is_empty() || tenant.tiers.is_some() {
        outcome.order_record = Some((input.event.event_id.clone(), record));
    }
    Ok(outcome)
}

fn round_for_money(tenant: &TenantConfig, value: Decimal) -> Decimal {
    super::round::half_even(value, tenant.minor_units)
}

/// The payments `program` accrues on: those of an eligible (sale type,
/// method) pair, without balance payments unless the tenant accrues on them.
fn eligible_payments(tenant: &TenantConfig, program: &ProgramConfig, order: &OrderPaid) -> Result<Decimal, Overflow> {
    checked::sum(
        order
            .payments
            .iter()
            .filter(|p| tenant.redemption.accrue_on_balance_payments || p.balance_account().is_none())
            .filter(|p| match &program.sales {
                SalesConfig::All(_) => true,
                SalesConfig::Specific(pairs) => pairs.iter().any(|pair| {
                    pair.sale_type == order.sale_type
                        && (pair.methods.contains("*") || pair.methods.contains(&p.method))
                }),
            })
            .map(|p| p.amount.value()),
    )
}

/// Category and product exclusions, or "exclude all, then include a few".
fn eligible_line(program: &ProgramConfig, line: &OrderLine) -> bool {
    if program.exclude_all {
        return program.include_categories.contains(&line.category) || program.include_products.contains(&line.product);
    }
    !program.exclude_categories.contains(&line.category) && !program.exclude_products.contains(&line.product)
}

/// `order.refunded`: reverse accruals and give back redeemed balance in
/// proportion to the refunded share, never more than the order moved.
pub(super) fn refunded(input: &Input<'_>, refund: &OrderRefunded) -> Result<Outcome, Overflow> {
    let tenant = input.tenant;
    let Some(original) = input.original else {
        return Ok(Outcome::rejected(
            RejectionType::Refund,
            ReasonCode::UnknownOrder,
            format!(
                "no accrual or redemption is recorded for order event {:?} of this customer",
                refund.original_event_id
            ),
        ));
    };
    let amount = refund.amount.value();
    let remaining = checked::sub(original.total, original.refunded)?;
    if amount > remaining {
        return Ok(Outcome::rejected(
            RejectionType::Refund,
            ReasonCode::ExceedsRefundable,
            format!(
                "refund of {amount} exceeds what is left to refund ({remaining} of {})",
                original.total
            ),
        ));
    }
    let mut record = original.clone();
    record.refunded = checked::add(record.refunded, amount)?;
    // Cumulative share refunded; 1 exactly for a full refund.
    let share = if original.total.is_zero() || record.refunded >= original.total {
        Decimal::ONE
    } else {
        checked::div(record.refunded, original.total)?
    };
    let mut outcome = Outcome::default();
    // Balances as this refund's entries leave them, by account.
    let mut balances: BTreeMap<Arc<str>, Decimal> = BTreeMap::new();
    let clamp = tenant.refunds.negative_balance == NegativeBalance::Clamp;
    // Accruals come back out of the balance (within the policy); redeemed
    // balance goes back in.
    for (movements, entry_type, sign, limit) in [
        (&mut record.accruals, EntryType::Reversal, Decimal::NEGATIVE_ONE, clamp),
        (
            &mut record.redemptions,
            EntryType::RedemptionReversal,
            Decimal::ONE,
            false,
        ),
    ] {
        for movement in movements.iter_mut() {
            // What expired of an accrual is gone already: a refund takes
            // back the refunded share, but never what expired.
            let unexpired = checked::sub(movement.amount, movement.expired)?.max(Decimal::ZERO);
            let target = round_for(tenant, &movement.account, checked::mul(movement.amount, share)?).min(unexpired);
            let mut delta = checked::sub(target, movement.reversed)?.max(Decimal::ZERO);
            if limit {
                let available = match balances.get(&movement.account) {
                    Some(running) => *running,
                    None => input.balance(&movement.account),
                };
                delta = delta.min(available.max(Decimal::ZERO));
            }
            if delta.is_zero() {
                continue;
            }
            movement.reversed = checked::add(movement.reversed, delta)?;
            let signed = checked::mul(sign, delta)?;
            let balance = balances
                .entry(Arc::clone(&movement.account))
                .or_insert_with(|| input.balance(&movement.account));
            *balance = checked::add(*balance, signed)?;
            outcome.entries.push(Entry {
                account: movement.account.clone(),
                entry_type,
                program: movement.program.clone(),
                amount: signed,
                base: None,
                description: None,
                operator: None,
            });
        }
    }
    super::tiers::refunded(input, original, &record, &mut outcome)?;
    outcome.order_record = Some((refund.original_event_id.clone(), record));
    Ok(outcome)
}
