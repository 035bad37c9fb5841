//! At the till: what an order would do before the POS settles it (a
//! quote), and balance reserved for it (a hold), from the same rules the
//! stream applies, so a quote and the later `order.paid` agree.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::checked::{self, Overflow};
use super::{evaluate, round, scale_of, Customer, EntryType, Input, Notice, Outcome};
use crate::contract::{Body, OrderPaid};
use crate::programs::Hold;

/// Most holds one customer may have at once; an authorization beyond them
/// is refused (`too_many_holds`), so a broken till cannot grow a profile.
pub const MAX_HOLDS: usize = 16;

/// What limits the most an account may pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The spendable balance (less what other holds reserve).
    Balance,
    /// The branch's share of the bill this account may pay.
    Cap,
    /// The bill itself.
    Bill,
}

impl Limit {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Balance => "balance",
            Limit::Cap => "cap",
            Limit::Bill => "bill",
        }
    }
}

/// The most one balance account may pay of this order, on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payable {
    /// The account (`cashback`, `bonus`, `deposit`, a named bonus account).
    pub account: String,
    /// The balance.
    pub balance: Decimal,
    /// What active holds of other orders reserve of it.
    pub held: Decimal,
    /// The most it may pay, rounded down to what the account holds.
    pub max: Decimal,
    /// What limits `max`.
    pub limited_by: Limit,
}

/// A quote: the outcome the order would have now, and what each account
/// may pay.
#[derive(Debug, Clone)]
pub struct Quote {
    /// The outcome, exactly as the stream would compute it from this state.
    pub outcome: Outcome,
    /// Per balance payment method enabled in the branch.
    pub payable: Vec<Payable>,
}

/// Quotes the order in `input` (an `order.paid` or `visit.completed`).
///
/// # Errors
/// [`Overflow`] if a computation of the payable amounts does not fit.
pub fn quote(input: &Input<'_>) -> Result<Quote, Overflow> {
    let outcome = evaluate(input);
    let payable = match &input.event.body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) if order.partner.is_none() => payable(input, order)?,
        _ => Vec::new(),
    };
    Ok(Quote { outcome, payable })
}

fn payable(input: &Input<'_>, order: &OrderPaid) -> Result<Vec<Payable>, Overflow> {
    let tenant = input.tenant;
    let Some(branch) = tenant.branches.get(&input.event.branch) else {
        return Ok(Vec::new());
    };
    let total = order.total.value();
    let own = order.authorization_id.as_deref();
    let mut out = Vec::new();
    for account in branch.payment_methods.iter().filter(|a| tenant.has_account(a)) {
        let balance = input.balance(account);
        let held = input
            .customer
            .held(account, input.now_ms, own)
            .ok_or(Overflow::Amount)?;
        let spendable = checked::sub(balance, held)?.max(Decimal::ZERO);
        let cap = match tenant.redemption.max_percent.get(account.as_str()) {
            Some(cap) => Some(round::percent_value(total, cap.value())?),
            None => None,
        };
        let (mut max, mut limited_by) = (spendable, Limit::Balance);
        if let Some(cap) = cap.filter(|cap| *cap < max) {
            (max, limited_by) = (cap, Limit::Cap);
        }
        if account == "deposit" {
            // Seed 000: deposit accumulated at partners pays first, up to the
            // whole bill; only deposit accumulated here stays within the cap.
            for bucket in input.balances.keys().filter(|a| tenant.partner_bucket(a).is_some()) {
                let v = input.spendable(bucket, own)?;
                if v > Decimal::ZERO {
                    max = checked::add(max, v)?;
                }
            }
        }
        if total < max {
            (max, limited_by) = (total, Limit::Bill);
        }
        out.push(Payable {
            account: account.clone(),
            balance,
            held,
            max: round::down(max, scale_of(tenant, account)),
            limited_by,
        });
    }
    Ok(out)
}

/// Why an authorization holds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The order would be rejected: the rules' rejection.
    Rejected(Box<Outcome>),
    /// The order pays nothing from a balance.
    NothingToHold,
    /// A partner's customer: the payment is checked where the partner keeps
    /// the deposit, when the order is applied.
    Partner,
    /// The customer already has [`MAX_HOLDS`] active holds.
    TooManyHolds,
    /// A computation overflowed.
    Overflow(Overflow),
}

/// A hold made, and the profile that keeps it.
#[derive(Debug, Clone)]
pub struct Held {
    /// The hold (an earlier one for the same order, if still active).
    pub hold: Hold,
    /// The profile to store: `None` when the hold already existed.
    pub profile: Option<Customer>,
}

/// Authorizes the order in `input`: the same checks as the stream, against
/// the balance less every other active hold; on success a hold `id` for
/// its balance payments, until `expires_ms`. An active hold for the same
/// order id is returned as it is (a till may retry).
///
/// # Errors
/// [`Refusal`] when nothing is held.
pub fn authorize(input: &Input<'_>, id: &str, expires_ms: i64) -> Result<Held, Refusal> {
    let order = match &input.event.body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) => order,
        _ => return Err(Refusal::NothingToHold),
    };
    if order.partner.is_some() {
        return Err(Refusal::Partner);
    }
    let active = |h: &&Hold| h.active(input.now_ms);
    if let Some(earlier) = input
        .customer
        .holds
        .iter()
        .filter(active)
        .find(|h| h.order_id == order.order_id)
    {
        return Ok(Held {
            hold: earlier.clone(),
            profile: None,
        });
    }
    let outcome = evaluate(input);
    if outcome.rejection.is_some() {
        return Err(Refusal::Rejected(Box::new(outcome)));
    }
    let mut amounts: Vec<(Arc<str>, Decimal)> = Vec::new();
    for entry in outcome.entries.iter().filter(|e| e.entry_type == EntryType::Redemption) {
        let amount = checked::neg(entry.amount);
        if amount <= Decimal::ZERO {
            continue;
        }
        match amounts.iter_mut().find(|(a, _)| *a == entry.account) {
            Some((_, sum)) => *sum = checked::add(*sum, amount).map_err(Refusal::Overflow)?,
            None => amounts.push((Arc::clone(&entry.account), amount)),
        }
    }
    if amounts.is_empty() {
        return Err(Refusal::NothingToHold);
    }
    let mut profile = input.customer.clone();
    profile.holds.retain(|h| h.active(input.now_ms));
    if profile.holds.len() >= MAX_HOLDS {
        return Err(Refusal::TooManyHolds);
    }
    let hold = Hold {
        id: id.to_owned(),
        order_id: order.order_id.clone(),
        amounts,
        created_ms: input.now_ms,
        expires_ms,
    };
    profile.holds.push(hold.clone());
    Ok(Held {
        hold,
        profile: Some(profile),
    })
}

/// Releases hold `id`: the profile without it (and without expired
/// holds), or `None` if no active hold has that id.
pub fn release(customer: &Customer, id: &str, now_ms: i64) -> Option<Customer> {
    customer.hold(id, now_ms)?;
    let mut profile = customer.clone();
    profile.holds.retain(|h| h.id != id && h.active(now_ms));
    Some(profile)
}

/// The referral or partner discount the POS grants on this order, as a
/// percentage and an amount of the bill rounded to minor units.
///
/// # Errors
/// [`Overflow`] if the amount does not fit.
pub fn discount(outcome: &Outcome, total: Decimal, minor_units: u32) -> Result<Option<(Decimal, Decimal)>, Overflow> {
    let percent = match outcome.notice.as_deref() {
        Some(Notice::Referral {
            invitee_discount_percent,
            ..
        }) => *invitee_discount_percent,
        Some(Notice::Partner { discount_percent, .. }) => *discount_percent,
        None => return Ok(None),
    };
    if percent.is_zero() {
        return Ok(None);
    }
    Ok(Some((percent, super::percent_of(total, percent, minor_units)?)))
}
