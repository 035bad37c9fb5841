//! Pure rule evaluation: `(tenant programs, customer, balances, event) ->
//! Outcome`.
//!
//! No I/O, no Kafka, no RocksDB, no tokio. The pipeline gathers the inputs
//! (the customer's profile and balances, the refunded order's record) and
//! applies the outcome; this module only decides what the programs say.
//!
//! Every money, points and time operation is checked ([`checked`]): an
//! overflow is a rejection, never a panic. The lint below keeps it so.
#![deny(clippy::arithmetic_side_effects)]

mod booking;
mod campaigns;
mod checked;
mod giftcard;
pub mod limits;
pub mod loyalty;
mod network;
mod order;
mod rejection;
mod round;
pub mod tiers;
pub mod till;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::contract::{limits::MAX_BALANCE, BalanceAdjust, Body, CommandBody, CustomerUpserted, Event};
use crate::programs::{PartnerConditions, TenantConfig};

pub use booking::{fire, Booking, BookingState, TimerChange, SERVICE_POINTS};
pub use checked::Overflow;
pub use giftcard::gift_card_code;
pub use loyalty::{Loyalty, NO_LOYALTY};
pub use network::{apply_command, split_deposit, DepositSplit};
pub use rejection::{ReasonCode, Rejection, RejectionType};

/// A customer found by phone in the customer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The customer id within the tenant.
    pub customer: String,
    /// The customer's own discount percentage (client card), if any.
    pub discount_percent: Option<Decimal>,
    /// The customer's own accrual percentage (client card), if any.
    pub accrual_percent: Option<Decimal>,
}

/// What the rules may know beyond the event's own tenant: the customer
/// directory (every tenant's customers by phone) and partnerships.
pub trait Network: Sync {
    /// The customer of `tenant` with `phone`, if the directory has one.
    fn find(&self, tenant: &str, phone: &str) -> Option<Listed>;

    /// The conditions `place` grants customers of `home`, if their
    /// partnership is active in both directions.
    fn partnership(&self, place: &str, home: &str) -> Option<&PartnerConditions>;
}

/// A network with no directory and no partners: referrals and partner
/// orders are rejected (benchmarks and tests of single-tenant rules).
pub struct NoNetwork;

impl Network for NoNetwork {
    fn find(&self, _tenant: &str, _phone: &str) -> Option<Listed> {
        None
    }

    fn partnership(&self, _place: &str, _home: &str) -> Option<&PartnerConditions> {
        None
    }
}

/// The type of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    /// A program credited the customer for a purchase.
    Accrual,
    /// A payment from the balance.
    Redemption,
    /// A refund took back (part of) an accrual.
    Reversal,
    /// A refund gave back (part of) a payment made from the balance.
    RedemptionReversal,
    /// Staff changed the balance by hand.
    ManualAdjustment,
    /// Points paid for a gift card.
    GiftCardExchange,
    /// Points credited for a booked service or class, after the delay.
    ServicePoints,
    /// A referrer's reward for an invitee's visit (seed 002).
    ReferralAccrual,
    /// Accrued for a partner's customer (seed 000).
    PartnerAccrual,
    /// What was left of a credit when it expired.
    Expiry,
    /// A campaign's fixed bonus for an order.
    CampaignBonus,
    /// The birthday bonus.
    BirthdayBonus,
    /// The welcome bonus on registration.
    WelcomeBonus,
}

impl EntryType {
    /// The entry type's name in the ledger and events.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Accrual => "accrual",
            EntryType::Redemption => "redemption",
            EntryType::Reversal => "reversal",
            EntryType::RedemptionReversal => "redemption_reversal",
            EntryType::ManualAdjustment => "manual_adjustment",
            EntryType::GiftCardExchange => "gift_card_exchange",
            EntryType::ServicePoints => "service_points",
            EntryType::ReferralAccrual => "referral_accrual",
            EntryType::PartnerAccrual => "partner_accrual",
            EntryType::Expiry => "expiry",
            EntryType::CampaignBonus => "campaign_bonus",
            EntryType::BirthdayBonus => "birthday_bonus",
            EntryType::WelcomeBonus => "welcome_bonus",
        }
    }
}

// The names of the mechanisms that move balances besides configured
// programs, allocated once (an entry clones a reference count).
static REDEMPTION: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("redemption"));
static MANUAL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("manual"));
static GIFT_CARDS: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("gift_cards"));

/// One balance change decided by the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account it moves.
    pub account: Arc<str>,
    /// The ledger entry type.
    pub entry_type: EntryType,
    /// The program (or mechanism) that decided it.
    pub program: Arc<str>,
    /// Signed amount, already rounded per the account.
    pub amount: Decimal,
    /// The amount a percentage applied to, if any.
    pub base: Option<Decimal>,
    /// Text the customer sees (manual adjustments).
    pub description: Option<String>,
    /// Who made a manual adjustment, for the audit trail.
    pub operator: Option<String>,
}

/// A gift card the outcome issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCard {
    /// Catalogue id.
    pub gift_card: String,
    /// The code.
    pub code: String,
    /// Value in the tenant's currency.
    pub value: Decimal,
    /// Points paid.
    pub points: Decimal,
    /// Account debited.
    pub account: String,
}

/// A customer's profile, from `customer.upserted` or config.
pub use crate::programs::CustomerProfile as Customer;

impl Customer {
    /// The profile a `customer.upserted` body describes; what accrue keeps
    /// about the customer's history (`visited`, `referred_by`, the birthday
    /// and welcome bonuses credited) comes from `previous`.
    pub fn from_upsert(body: &CustomerUpserted, previous: &Customer) -> Self {
        Customer {
            phone: body.phone.clone(),
            groups: body.groups.iter().cloned().collect(),
            registered: body.registered,
            marketing_consent: body.marketing_consent,
            discount_percent: body.discount_percent,
            accrual_percent: body.accrual_percent,
            visited: previous.visited,
            referred_by: previous.referred_by.clone(),
            birthday: body.birthday,
            birthday_bonus_year: previous.birthday_bonus_year,
            welcomed: previous.welcomed,
            holds: previous.holds.clone(),
        }
    }
}

/// One account movement of an order, kept so refunds can reverse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// The account.
    pub account: Arc<str>,
    /// The program that accrued it (or `redemption`).
    pub program: Arc<str>,
    /// The amount accrued or redeemed (positive).
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// How much of it refunds have reversed so far.
    #[serde(with = "rust_decimal::serde::str")]
    pub reversed: Decimal,
    /// How much of an accrual expired before a refund took it back: a
    /// refund never reverses what already expired.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub expired: Decimal,
}

impl Movement {
    /// A movement of `amount` just made: nothing reversed or expired yet.
    pub fn new(account: Arc<str>, program: Arc<str>, amount: Decimal) -> Self {
        Movement {
            account,
            program,
            amount,
            reversed: Decimal::ZERO,
            expired: Decimal::ZERO,
        }
    }
}

/// What an order did, stored for refunds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order total.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    /// Sum of refunds so far.
    #[serde(with = "rust_decimal::serde::str")]
    pub refunded: Decimal,
    /// Accruals of the order.
    pub accruals: Vec<Movement>,
    /// Payments from balances.
    pub redemptions: Vec<Movement>,
}

/// What the rules decided for one event.
///
/// What few events carry (a gift card, a booking, a command, a notice) is
/// boxed: an outcome is moved several times on the way out of the rules,
/// and an order's should stay small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Balance changes, in order.
    pub entries: Vec<Entry>,
    /// Set when the request was refused; then `entries` is empty.
    pub rejection: Option<Rejection>,
    /// A notification about the first entry (`balance.manually_updated`,
    /// `points.auto_credited`); set only for customers with marketing consent.
    pub notify: Option<&'static str>,
    /// A gift card to issue.
    pub gift_card: Option<Box<IssuedCard>>,
    /// The customer's new profile, to store.
    pub customer: Option<Customer>,
    /// The order record to store, under `(event id)`: the new order's own
    /// record, or the refunded order's updated one.
    pub order_record: Option<(String, OrderRecord)>,
    /// Durable timers to delete or set.
    pub timers: TimerChange,
    /// The booking record to store, under its booking id.
    pub booking: Option<Box<(String, Booking)>>,
    /// An effect on another customer's balance, sent as an internal command.
    pub command: Option<Box<CommandOut>>,
    /// What the POS is told about a referral or a partner identification.
    pub notice: Option<Box<Notice>>,
    /// The customer's loyalty record as the rules left it (tiers' window,
    /// limit counters, tier), to store; the pipeline books the entries'
    /// lots on top of it.
    pub loyalty: Option<Box<Loyalty>>,
    /// The customer moved to another tier (`tier.changed`).
    pub tier_changed: Option<Box<TierChange>>,
}

/// A move from one tier to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChange {
    /// The tier before (`None`: below every level).
    pub from: Option<Arc<str>>,
    /// The tier after.
    pub to: Option<Arc<str>>,
    /// The window's spend or visits that decided it.
    pub value: Decimal,
}

/// A command to send to another customer's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOut {
    /// The target tenant.
    pub tenant: String,
    /// The target customer.
    pub customer: String,
    /// What to do there.
    pub body: CommandBody,
}

/// An informational output about the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `referral.applied`: the invitee's first visit with a referrer.
    Referral {
        /// The referral program.
        program: String,
        /// The referrer found by phone.
        referrer: String,
        /// The invitee's discount.
        invitee_discount_percent: Decimal,
        /// The referrer's reward: account and amount (zero if none).
        reward: (String, Decimal),
    },
    /// `partner.identified`: a partner's customer at this tenant.
    Partner {
        /// The partner tenant the customer belongs to.
        partner_tenant: String,
        /// The customer's id at the partner.
        partner_customer: String,
        /// Discount granted here.
        discount_percent: Decimal,
        /// Accrual percentage here.
        accrual_percent: Decimal,
        /// Whether the order goes to the shared deposit at the partner.
        shared_deposit: bool,
    },
}

impl Outcome {
    /// A refusal: nothing but the rejection output.
    pub fn rejected(output_type: RejectionType, code: ReasonCode, reason: String) -> Self {
        Outcome {
            rejection: Some(Rejection {
                output_type,
                code,
                reason,
            }),
            ..Outcome::default()
        }
    }
}

/// Everything evaluation reads.
pub struct Input<'a> {
    /// The event's tenant.
    pub tenant: &'a TenantConfig,
    /// The event, validated against the tenant.
    pub event: &'a Event,
    /// The customer's profile.
    pub customer: &'a Customer,
    /// The customer's balances by account (absent = zero).
    pub balances: &'a BTreeMap<String, Decimal>,
    /// For a refund: the referenced order's record, if known.
    pub original: Option<&'a OrderRecord>,
    /// For a booking event: the booking, if known.
    pub booking: Option<&'a Booking>,
    /// Key of gift-card codes.
    pub code_key: &'a [u8],
    /// The directory and partnerships.
    pub network: &'a dyn Network,
    /// The customer's loyalty record ([`NO_LOYALTY`] for a tenant
    /// without expiry, tiers or limits).
    pub loyalty: &'a Loyalty,
    /// The wall clock, Unix milliseconds: only which till holds are still
    /// active depends on it.
    pub now_ms: i64,
}

impl Input<'_> {
    fn balance(&self, account: &str) -> Decimal {
        self.balances.get(account).copied().unwrap_or_default()
    }

    /// What a payment may take from `account`: the balance less what active
    /// till holds reserve, except the hold `except` (the order's own).
    fn spendable(&self, account: &str, except: Option<&str>) -> Result<Decimal, Overflow> {
        let held = self
            .customer
            .held(account, self.now_ms, except)
            .ok_or(Overflow::Amount)?;
        checked::sub(self.balance(account), held)
    }
}

/// Evaluates the tenant's programs against one event. A computation that
/// overflows rejects the event (`amount_overflow`, `date_out_of_range`).
pub fn evaluate(input: &Input<'_>) -> Outcome {
    let checked = match &input.event.body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) => network::purchase(input, order),
        Body::OrderRefunded(refund) => order::refunded(input, refund),
        Body::CustomerUpserted(body) => Ok(campaigns::upserted(input, body)),
        Body::BalanceAdjust(adjust) => adjust_balance(input, adjust),
        Body::GiftCardExchange(exchange) => Ok(giftcard::exchange(input, &exchange.gift_card)),
        Body::BookingCreated(body) => booking::created(input, body),
        Body::BookingRescheduled(body) => booking::rescheduled(input, body),
        Body::BookingCancelled(body) => Ok(booking::ended(input, &body.booking_id, false)),
        Body::BookingNoShow(body) => Ok(booking::ended(input, &body.booking_id, true)),
    };
    match checked {
        Ok(outcome) => outcome,
        Err(overflow) => Outcome::rejected(rejection_type(&input.event.body), overflow.code(), overflow.reason()),
    }
}

/// `balance.adjust`: staff add or subtract by hand (seed 004).
fn adjust_balance(input: &Input<'_>, adjust: &BalanceAdjust) -> Result<Outcome, Overflow> {
    let tenant = input.tenant;
    let amount = adjust.amount.value();
    let Some(account) = tenant.account_name(&adjust.account) else {
        return Ok(Outcome::rejected(
            RejectionType::Adjustment,
            ReasonCode::UnknownAccount,
            format!("{:?} is not an account of tenant {:?}", adjust.account, tenant.id),
        ));
    };
    if scale_of(tenant, &adjust.account) < amount.normalize().scale() {
        return Ok(Outcome::rejected(
            RejectionType::Adjustment,
            ReasonCode::BadPrecision,
            format!("{amount} has more decimals than account {:?} holds", adjust.account),
        ));
    }
    let balance = input.balance(&adjust.account);
    if amount < Decimal::ZERO && checked::add(balance, amount)? < Decimal::ZERO {
        return Ok(Outcome::rejected(
            RejectionType::Adjustment,
            ReasonCode::InsufficientBalance,
            format!(
                "cannot subtract {} from a {} balance of {balance}",
                amount.abs(),
                adjust.account
            ),
        ));
    }
    Ok(Outcome {
        entries: vec![Entry {
            account,
            entry_type: EntryType::ManualAdjustment,
            program: Arc::clone(&MANUAL),
            amount,
            base: None,
            description: Some(adjust.description.clone()),
            operator: adjust.operator.clone(),
        }],
        notify: input.customer.marketing_consent.then_some("balance.manually_updated"),
        ..Outcome::default()
    })
}

/// The output type that refuses an event of this body.
pub fn rejection_type(body: &Body) -> RejectionType {
    match body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) if order.partner.is_some() => RejectionType::Partner,
        Body::OrderPaid(_) | Body::VisitCompleted(_) => RejectionType::Redemption,
        Body::OrderRefunded(_) => RejectionType::Refund,
        // A profile moves no balance but a welcome bonus, refused only if
        // that would pass the balance limit.
        Body::CustomerUpserted(_) => RejectionType::Customer,
        Body::BalanceAdjust(_) => RejectionType::Adjustment,
        Body::GiftCardExchange(_) => RejectionType::GiftCard,
        Body::BookingCreated(_) | Body::BookingRescheduled(_) | Body::BookingCancelled(_) | Body::BookingNoShow(_) => {
            RejectionType::Booking
        }
    }
}

/// The output type that refuses an internal command of this body.
pub fn command_rejection_type(body: &CommandBody) -> RejectionType {
    match body {
        CommandBody::ReferralCredit(_) => RejectionType::Referral,
        CommandBody::PartnerOrder(_) => RejectionType::PartnerPayment,
    }
}

/// The balance of `account` after adding `amount` to `balance`: the
/// pipeline computes every new balance of an outcome with this before it
/// writes any, so that an outcome that does not fit is refused whole.
///
/// # Errors
/// `(reason_code, reason)`: `amount_overflow` if the sum does not fit a
/// decimal, `balance_limit` if its absolute value would pass the contract's
/// [`MAX_BALANCE`].
pub fn next_balance(account: &str, balance: Decimal, amount: Decimal) -> Result<Decimal, (ReasonCode, String)> {
    let Ok(next) = checked::add(balance, amount) else {
        return Err((Overflow::Amount.code(), Overflow::Amount.reason()));
    };
    if next.abs() > MAX_BALANCE {
        return Err((
            ReasonCode::BalanceLimit,
            format!(
                "{amount} on a {account} balance of {balance} would make it {next}; \
                 a balance is at most {MAX_BALANCE} in absolute value, so nothing was applied"
            ),
        ));
    }
    Ok(next)
}

/// Decimal places an account holds: the currency's minor units for money,
/// whole points for points.
pub fn scale_of(tenant: &TenantConfig, account: &str) -> u32 {
    if tenant.is_points(account) {
        0
    } else {
        tenant.minor_units
    }
}

/// Rounds an accrual for `account`: money half-even to minor units, points
/// down to whole points.
pub fn round_for(tenant: &TenantConfig, account: &str, value: Decimal) -> Decimal {
    if tenant.is_points(account) {
        round::down(value, 0)
    } else {
        round::half_even(value, tenant.minor_units)
    }
}

/// `base * percent / 100` for `account`, rounded as [`round_for`] rounds.
fn percent_for(tenant: &TenantConfig, account: &str, base: Decimal, percent: Decimal) -> Result<Decimal, Overflow> {
    if tenant.is_points(account) {
        round::percent(base, percent, 0, round::Rounding::Down)
    } else {
        round::percent(base, percent, tenant.minor_units, round::Rounding::HalfEven)
    }
}

/// `base * percent / 100`, rounded half-even to `minor_units`.
///
/// # Errors
/// [`Overflow::Amount`] if the product does not fit a decimal.
pub fn percent_of(base: Decimal, percent: Decimal, minor_units: u32) -> Result<Decimal, Overflow> {
    round::percent(base, percent, minor_units, round::Rounding::HalfEven)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod network_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::unwrap_used)]
mod till_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod loyalty_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tiers_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod limits_tests;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod campaign_tests;
