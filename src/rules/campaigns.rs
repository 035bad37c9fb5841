//! Campaigns, the birthday bonus and the welcome bonus: what an order or a
//! registration earns besides the programs' accruals.
//!
//! Whether a campaign or the birthday window applies is decided from the
//! event's `occurred_at` (in the tenant's time zone) and branch, never
//! from the wall clock, so a replay credits the same.

use std::sync::{Arc, LazyLock};

use jiff::civil::Date;
use rust_decimal::Decimal;

use super::checked::{self, Overflow};
use super::{round_for, Customer, Entry, EntryType, Input, Movement, OrderRecord, Outcome};
use crate::contract::{Body, CustomerUpserted, OrderPaid};
use crate::programs::{BirthdayConfig, CampaignConfig, ProgramConfig};

/// The program of birthday bonus entries.
static BIRTHDAY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("birthday"));
/// The program of welcome bonus entries.
static WELCOME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("welcome"));

/// Whether `campaign` applies to this purchase of `total`: a registered
/// customer, the order's time and branch, its minimum total.
fn qualifies(input: &Input<'_>, campaign: &CampaignConfig, total: Decimal) -> Result<bool, Overflow> {
    if !input.customer.registered || campaign.min_total.is_some_and(|min| total < min.value()) {
        return Ok(false);
    }
    campaign
        .runs_at(&input.tenant.timezone, input.event.occurred_at, &input.event.branch)
        .ok_or(Overflow::Date)
}

/// The total of the event's order or visit, if it is one.
fn purchase_total(input: &Input<'_>) -> Option<Decimal> {
    match &input.event.body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) => Some(order.total.value()),
        _ => None,
    }
}

/// `amount`, as `program` accrues it on this order, times the multipliers
/// of every campaign that applies (they multiply), rounded per the account
/// like any accrual.
pub(super) fn boost(input: &Input<'_>, program: &ProgramConfig, amount: Decimal) -> Result<Decimal, Overflow> {
    let tenant = input.tenant;
    if tenant.campaigns.is_empty() || amount <= Decimal::ZERO {
        return Ok(amount);
    }
    let Some(total) = purchase_total(input) else {
        return Ok(amount);
    };
    let mut factor: Option<Decimal> = None;
    for campaign in &tenant.campaigns {
        let Some(multiplier) = campaign.multiplier else {
            continue;
        };
        if campaign.boosts(&program.id) && qualifies(input, campaign, total)? {
            factor = Some(checked::mul(factor.unwrap_or(Decimal::ONE), multiplier.value())?);
        }
    }
    match factor {
        Some(factor) => Ok(round_for(tenant, program.account(), checked::mul(amount, factor)?)),
        None => Ok(amount),
    }
}

/// Appends the bonuses of an order or visit: each campaign bonus that
/// applies (kept in the order's `record`, so a refund reverses it like an
/// accrual), then the birthday bonus if this is the customer's first
/// purchase in the window around the birthday (not kept: a refund leaves
/// the birthday's gift). The profile that records the birthday bonus goes
/// to `outcome.customer`.
pub(super) fn bonuses(
    input: &Input<'_>,
    order: &OrderPaid,
    outcome: &mut Outcome,
    record: &mut OrderRecord,
) -> Result<(), Overflow> {
    let tenant = input.tenant;
    let total = order.total.value();
    for campaign in &tenant.campaigns {
        // A free order (total zero) earns no fixed bonus.
        let Some(bonus) = campaign.bonus.as_ref().filter(|_| total > Decimal::ZERO) else {
            continue;
        };
        // The account is validated with the tenant file.
        let Some(account) = tenant.account_name(&bonus.account) else {
            continue;
        };
        if !qualifies(input, campaign, total)? {
            continue;
        }
        let amount = bonus.amount.value();
        outcome.entries.push(bonus_entry(
            Arc::clone(&account),
            EntryType::CampaignBonus,
            &campaign.id,
            amount,
        ));
        record
            .accruals
            .push(Movement::new(account, Arc::clone(&campaign.id), amount));
    }
    let Some(config) = &tenant.birthday else {
        return Ok(());
    };
    if !input.customer.registered {
        return Ok(());
    }
    let Some(year) = birthday_year(input, config)? else {
        return Ok(());
    };
    if input.customer.birthday_bonus_year.is_some_and(|last| last >= year) {
        return Ok(());
    }
    let Some(account) = tenant.account_name(&config.account) else {
        return Ok(());
    };
    outcome.entries.push(bonus_entry(
        account,
        EntryType::BirthdayBonus,
        &BIRTHDAY,
        config.amount.value(),
    ));
    let mut profile = outcome.customer.take().unwrap_or_else(|| input.customer.clone());
    profile.birthday_bonus_year = Some(year);
    outcome.customer = Some(profile);
    Ok(())
}

/// The year of the birthday whose window holds the event's date (tenant's
/// time zone): a window that crosses New Year counts for the birthday's
/// year. `None` when the customer has no birthday or the date is outside
/// every window.
fn birthday_year(input: &Input<'_>, config: &BirthdayConfig) -> Result<Option<i16>, Overflow> {
    let Some(birthday) = input.customer.birthday else {
        return Ok(None);
    };
    let today = input
        .tenant
        .timezone
        .local(input.event.occurred_at)
        .ok_or(Overflow::Date)?
        .date();
    let (month, day) = (birthday.month(), birthday.day());
    let days = |n: u16| jiff::Span::new().try_days(i64::from(n)).map_err(|_| Overflow::Date);
    let (before, after) = (days(config.days_before)?, days(config.days_after)?);
    for offset in [-1i16, 0, 1] {
        let year = today.year().checked_add(offset).ok_or(Overflow::Date)?;
        let Some(date) = birthday_in(year, month, day) else {
            continue;
        };
        let opens = date.checked_sub(before).map_err(|_| Overflow::Date)?;
        let closes = date.checked_add(after).map_err(|_| Overflow::Date)?;
        if opens <= today && today <= closes {
            return Ok(Some(year));
        }
    }
    Ok(None)
}

/// The birthday `month`-`day` in `year`; 29 February is 28 February in a
/// year without it. `None` outside jiff's calendar.
fn birthday_in(year: i16, month: u8, day: u8) -> Option<Date> {
    let (month, day) = (i8::try_from(month).ok()?, i8::try_from(day).ok()?);
    match Date::new(year, month, day) {
        Ok(date) => Some(date),
        Err(_) if (month, day) == (2, 29) => Date::new(year, 2, 28).ok(),
        Err(_) => None,
    }
}

/// `customer.upserted`: the new profile and, when it registers a customer
/// who was not registered before and never welcomed, the welcome bonus.
/// `welcomed` is kept in the profile, so a re-registration or another
/// upsert never credits it twice (a replay of the same event is a
/// duplicate anyway).
pub(super) fn upserted(input: &Input<'_>, body: &CustomerUpserted) -> Outcome {
    let previous = input.customer;
    let mut profile = Customer::from_upsert(body, previous);
    let mut entries = Vec::new();
    if let Some(welcome) = &input.tenant.welcome {
        let registers = body.registered && !previous.registered && !previous.welcomed;
        // The account is validated with the tenant file.
        if let (true, Some(account)) = (registers, input.tenant.account_name(&welcome.account)) {
            entries.push(bonus_entry(
                account,
                EntryType::WelcomeBonus,
                &WELCOME,
                welcome.amount.value(),
            ));
            profile.welcomed = true;
        }
    }
    Outcome {
        entries,
        customer: Some(profile),
        ..Outcome::default()
    }
}

fn bonus_entry(account: Arc<str>, entry_type: EntryType, program: &Arc<str>, amount: Decimal) -> Entry {
    Entry {
        account,
        entry_type,
        program: Arc::clone(program),
        amount,
        base: None,
        description: None,
        operator: None,
    }
}
