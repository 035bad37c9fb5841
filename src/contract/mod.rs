//! The event contract, v1: the JSON envelope, the typed bodies, and decoding
//! with a classified error for every way an input can be wrong.
//!
//! The contract imports nothing else of accrue. It is documented for POS
//! developers in `docs/events.md`, with JSON Schema files in `docs/schemas/`.

mod birthday;
mod command;
pub mod limits;
mod money;
mod output;

pub use birthday::Birthday;
pub use command::{Command, CommandBody, PartnerOrder, ReferralCredit};
pub use money::Amount;
pub use output::*;

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The only envelope version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

use limits::{
    check_amount, check_count, check_time, MAX_DESCRIPTION_LEN, MAX_GROUPS, MAX_ID_LEN, MAX_LINES, MAX_PAYMENTS,
};

/// Why an input record was refused. Each kind is a stable, machine-readable
/// string, carried on the dead-letter record and on the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bytes are not JSON, or not a JSON object.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// An amount is not a decimal string.
    InvalidAmount,
    /// An amount, quantity or total is negative.
    NegativeAmount,
    /// `schema_version` is not one this build understands.
    UnsupportedSchemaVersion,
    /// `type` names no event type of this contract.
    UnknownType,
    /// `tenant` names no configured tenant.
    UnknownTenant,
    /// `branch` names no branch of the tenant.
    UnknownBranch,
    /// `currency` is not the tenant's currency, or has more decimals than it.
    BadCurrency,
    /// The Kafka key is not `tenant:customer` of the envelope.
    KeyMismatch,
    /// Totals do not add up (lines or payments against `total`).
    Unbalanced,
    /// Applying the record failed inside accrue `[batch] max_attempts`
    /// times (a bug, not bad input); dead-lettered so its partition moves on.
    ProcessingFailed,
    /// The value is larger than `[batch] max_input_bytes`; it is not parsed.
    TooLarge,
    /// `occurred_at` is older than `[state] dedupe_retention`: its dedupe
    /// record may have been dropped, so a duplicate could not be told apart.
    DedupeExpired,
    /// An output record (accrual, command, directory entry) is larger than
    /// the producer or the broker accepts; this dead letter stands in for it.
    OutputTooLarge,
    /// A value is beyond a contract limit ([`limits`]): an amount, a time,
    /// an array or an identifier too large.
    OutOfRange,
}

impl ErrorKind {
    /// The stable name used in headers, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::InvalidAmount => "invalid_amount",
            ErrorKind::NegativeAmount => "negative_amount",
            ErrorKind::UnsupportedSchemaVersion => "unsupported_schema_version",
            ErrorKind::UnknownType => "unknown_type",
            ErrorKind::UnknownTenant => "unknown_tenant",
            ErrorKind::UnknownBranch => "unknown_branch",
            ErrorKind::BadCurrency => "bad_currency",
            ErrorKind::ProcessingFailed => "processing_failed",
            ErrorKind::KeyMismatch => "key_mismatch",
            ErrorKind::Unbalanced => "unbalanced",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::DedupeExpired => "dedupe_expired",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::OutOfRange => "out_of_range",
        }
    }

    /// Every kind, for documentation and for pre-registering metric labels.
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::MalformedJson,
        ErrorKind::MissingField,
        ErrorKind::InvalidField,
        ErrorKind::InvalidAmount,
        ErrorKind::NegativeAmount,
        ErrorKind::UnsupportedSchemaVersion,
        ErrorKind::UnknownType,
        ErrorKind::UnknownTenant,
        ErrorKind::UnknownBranch,
        ErrorKind::BadCurrency,
        ErrorKind::KeyMismatch,
        ErrorKind::Unbalanced,
        ErrorKind::ProcessingFailed,
        ErrorKind::TooLarge,
        ErrorKind::DedupeExpired,
        ErrorKind::OutputTooLarge,
        ErrorKind::OutOfRange,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused input: what kind of problem, and a sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct ContractError {
    /// The machine-readable class of the problem.
    pub kind: ErrorKind,
    /// A human-readable reason that names the offending field.
    pub reason: String,
}

impl ContractError {
    /// Builds an error of `kind` with `reason`.
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        ContractError {
            kind,
            reason: reason.into(),
        }
    }
}

/// The event types of contract v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A paid order from a POS (`order.paid`).
    OrderPaid,
    /// A full or partial refund of an order (`order.refunded`).
    OrderRefunded,
    /// A customer's profile: groups, registration, consent (`customer.upserted`).
    CustomerUpserted,
    /// A manual balance adjustment by staff (`balance.adjust`).
    BalanceAdjust,
    /// A customer buys a gift card with points (`giftcard.exchange`).
    GiftCardExchange,
    /// A service or class was booked (`booking.created`).
    BookingCreated,
    /// A booking moved to another time (`booking.rescheduled`).
    BookingRescheduled,
    /// A booking was cancelled (`booking.cancelled`).
    BookingCancelled,
    /// The customer did not come (`booking.no_show`).
    BookingNoShow,
    /// A paid visit to a salon or studio (`visit.completed`).
    VisitCompleted,
}

impl EventType {
    /// Every type, for documentation and metric labels.
    pub const ALL: [EventType; 10] = [
        EventType::OrderPaid,
        EventType::OrderRefunded,
        EventType::CustomerUpserted,
        EventType::BalanceAdjust,
        EventType::GiftCardExchange,
        EventType::BookingCreated,
        EventType::BookingRescheduled,
        EventType::BookingCancelled,
        EventType::BookingNoShow,
        EventType::VisitCompleted,
    ];

    /// The wire name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPaid => "order.paid",
            EventType::OrderRefunded => "order.refunded",
            EventType::CustomerUpserted => "customer.upserted",
            EventType::BalanceAdjust => "balance.adjust",
            EventType::GiftCardExchange => "giftcard.exchange",
            EventType::BookingCreated => "booking.created",
            EventType::BookingRescheduled => "booking.rescheduled",
            EventType::BookingCancelled => "booking.cancelled",
            EventType::BookingNoShow => "booking.no_show",
            EventType::VisitCompleted => "visit.completed",
        }
    }

    /// Parses a wire name; `None` for a type this build does not know.
    pub fn parse(name: &str) -> Option<Self> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A decoded, structurally valid input event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Producer-assigned unique id; a second event with the same id is a no-op.
    pub event_id: String,
    /// The tenant (business or network) the event belongs to.
    pub tenant: String,
    /// The branch (location) where it happened.
    pub branch: String,
    /// The customer, unique within the tenant.
    pub customer: String,
    /// When it happened, as reported by the source system.
    pub occurred_at: OffsetDateTime,
    /// The typed body.
    pub body: Body,
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self.body {
            Body::OrderPaid(_) => EventType::OrderPaid,
            Body::OrderRefunded(_) => EventType::OrderRefunded,
            Body::CustomerUpserted(_) => EventType::CustomerUpserted,
            Body::BalanceAdjust(_) => EventType::BalanceAdjust,
            Body::GiftCardExchange(_) => EventType::GiftCardExchange,
            Body::BookingCreated(_) => EventType::BookingCreated,
            Body::BookingRescheduled(_) => EventType::BookingRescheduled,
            Body::BookingCancelled(_) => EventType::BookingCancelled,
            Body::BookingNoShow(_) => EventType::BookingNoShow,
            Body::VisitCompleted(_) => EventType::VisitCompleted,
        }
    }
}

/// The body of an event, one variant per type.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `order.paid`.
    OrderPaid(OrderPaid),
    /// `order.refunded`.
    OrderRefunded(OrderRefunded),
    /// `customer.upserted`.
    CustomerUpserted(CustomerUpserted),
    /// `balance.adjust`.
    BalanceAdjust(BalanceAdjust),
    /// `giftcard.exchange`.
    GiftCardExchange(GiftCardExchange),
    /// `booking.created`.
    BookingCreated(BookingCreated),
    /// `booking.rescheduled`.
    BookingRescheduled(BookingRescheduled),
    /// `booking.cancelled`.
    BookingCancelled(BookingRef),
    /// `booking.no_show`.
    BookingNoShow(BookingRef),
    /// `visit.completed`: decoded into the shape of an order (its
    /// `visit_id` as `order_id`, sale type `visit` unless given).
    VisitCompleted(OrderPaid),
}

impl Body {
    /// The order or visit of the event, if it is one.
    pub fn purchase(&self) -> Option<&OrderPaid> {
        match self {
            Body::OrderPaid(order) | Body::VisitCompleted(order) => Some(order),
            _ => None,
        }
    }
}

/// `booking.created`: a booked service or class (seed 004). Its points are
/// credited automatically a delay after the appointment ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingCreated {
    /// The booking system's id, unique within the tenant.
    pub booking_id: String,
    /// Service or class id, as in the tenant's points table.
    pub service: String,
    /// Start of the appointment.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// End of the appointment.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// `booking.rescheduled`: the appointment's new time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRescheduled {
    /// The booking.
    pub booking_id: String,
    /// New start.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// New end.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// `booking.cancelled` and `booking.no_show`: which booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRef {
    /// The booking.
    pub booking_id: String,
}

/// `order.refunded`: money returned for (part of) an earlier order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRefunded {
    /// The POS's refund id, for reference.
    pub refund_id: String,
    /// `event_id` of the `order.paid` event being refunded.
    pub original_event_id: String,
    /// Amount refunded; the order total for a full refund.
    pub amount: Amount,
    /// Currency of `amount`; the tenant's currency.
    pub currency: String,
}

/// `customer.upserted`: the whole profile of a customer (replaces the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerUpserted {
    /// Phone number, as the tenant records it.
    #[serde(default)]
    pub phone: Option<String>,
    /// Customer groups, e.g. `Regulars`, `VIP`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Signed up for the loyalty program; only registered customers earn.
    pub registered: bool,
    /// Agreed to marketing notifications.
    pub marketing_consent: bool,
    /// The customer's own discount percentage (client card). A partner that
    /// accepted an agreement with "copy privileges" grants it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent: Option<Amount>,
    /// The customer's own accrual percentage (client card), copied by
    /// partners like `discount_percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrual_percent: Option<Amount>,
    /// The customer's birthday, `"MM-DD"` or `"YYYY-MM-DD"`, for the
    /// tenant's birthday bonus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<Birthday>,
}

/// `balance.adjust`: staff add or subtract balance by hand (seed 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceAdjust {
    /// The account: `bonus`, `cashback`, `service_points`, ...
    pub account: String,
    /// Signed amount: negative subtracts. Not zero.
    pub amount: Amount,
    /// Shown to the customer.
    pub description: String,
    /// Who made the change, for the audit trail.
    #[serde(default)]
    pub operator: Option<String>,
}

/// `giftcard.exchange`: buy a catalogue gift card with points (seed 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GiftCardExchange {
    /// Catalogue id of the gift card.
    pub gift_card: String,
}

/// `order.paid`: a settled order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    /// The POS's order id, for reference.
    pub order_id: String,
    /// How it was sold: `dine_in`, `takeaway`, `delivery`, or a POS-specific name.
    pub sale_type: String,
    /// The order lines; at least one.
    pub lines: Vec<OrderLine>,
    /// How it was paid; at least one payment.
    pub payments: Vec<Payment>,
    /// The order total; equals the sum of line amounts and of payment amounts.
    pub total: Amount,
    /// ISO 4217 code; must be the tenant's currency.
    pub currency: String,
    /// Referral (seed 002): the phone of the customer who invited this one.
    /// Only on the invitee's first visit to the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_phone: Option<String>,
    /// Partnership (seed 000): the customer was identified as a customer of
    /// a partner tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerRef>,
    /// The till's authorization (`POST .../authorizations`) whose hold this
    /// order's balance payments consume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_id: Option<String>,
}

/// A customer of a partner tenant, identified by phone at the POS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerRef {
    /// The partner tenant the customer belongs to.
    pub tenant: String,
    /// The customer's phone, as the partner records it.
    pub phone: String,
}

/// `visit.completed` on the wire: an order with a `visit_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct VisitCompleted {
    visit_id: String,
    #[serde(default = "visit_sale_type")]
    sale_type: String,
    lines: Vec<OrderLine>,
    payments: Vec<Payment>,
    total: Amount,
    currency: String,
    #[serde(default)]
    referrer_phone: Option<String>,
    #[serde(default)]
    partner: Option<PartnerRef>,
    #[serde(default)]
    authorization_id: Option<String>,
}

fn visit_sale_type() -> String {
    "visit".into()
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Product id in the POS catalogue.
    pub product: String,
    /// Product category (product group).
    pub category: String,
    /// Quantity, a positive decimal string (weighted goods allowed).
    pub quantity: Amount,
    /// The line's amount after line discounts, in the order currency.
    pub amount: Amount,
}

/// One payment of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Payment method: `cash`, `card`, `bonus`, `cashback`, `discount`, `deposit`, ...
    pub method: String,
    /// Amount paid with this method.
    pub amount: Amount,
    /// For `method = "bonus"`: a named bonus account to pay from instead of
    /// the default `bonus` account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// Payment methods that pay from a customer balance.
pub const BALANCE_METHODS: [&str; 4] = ["bonus", "cashback", "discount", "deposit"];

impl Payment {
    /// The balance account this payment debits, or `None` for money.
    pub fn balance_account(&self) -> Option<&str> {
        if BALANCE_METHODS.contains(&self.method.as_str()) {
            Some(self.account.as_deref().unwrap_or(&self.method))
        } else {
            None
        }
    }
}

/// The wire envelope; the body is kept raw until the type is known.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    schema_version: u32,
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    tenant: String,
    branch: String,
    customer: String,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

/// Decodes one input record's bytes into an [`Event`].
///
/// Checks the envelope, the body of its type, identifiers, amounts (decimal
/// strings, not negative) and that totals add up. Tenant-specific checks
/// (tenant, branch, currency) belong to the caller, which knows the config.
///
/// # Errors
/// A [`ContractError`] whose kind says what is wrong and whose reason names
/// the field.
pub fn decode(bytes: &[u8]) -> Result<Event, ContractError> {
    // serde would also read a struct from a JSON array; the contract says object.
    if first_byte(bytes) != Some(b'{') {
        return Err(ContractError::new(
            ErrorKind::MalformedJson,
            "the event must be a JSON object",
        ));
    }
    // Validated once here; serde_json then reads a `str` and does not check
    // each string again.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(ContractError::new(
            ErrorKind::MalformedJson,
            "the event is not valid UTF-8 (JSON text must be UTF-8)",
        ));
    };
    let envelope: WireEnvelope<'_> = from_text(text, "")?;
    if envelope.schema_version != SCHEMA_VERSION {
        return Err(ContractError::new(
            ErrorKind::UnsupportedSchemaVersion,
            format!(
                "schema_version {} is not supported; this build reads version {SCHEMA_VERSION}",
                envelope.schema_version
            ),
        ));
    }
    check_id("event_id", &envelope.event_id)?;
    check_id("tenant", &envelope.tenant)?;
    check_id("branch", &envelope.branch)?;
    check_id("customer", &envelope.customer)?;
    check_time("occurred_at", envelope.occurred_at)?;
    let Some(event_type) = EventType::parse(&envelope.event_type) else {
        return Err(ContractError::new(
            ErrorKind::UnknownType,
            format!("type {:?} is not an event type of contract v1", envelope.event_type),
        ));
    };
    let raw = envelope.body.get();
    if first_byte(raw.as_bytes()) != Some(b'{') {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            "body must be a JSON object",
        ));
    }
    let body = match event_type {
        EventType::OrderPaid => {
            let order: OrderPaid = from_text(raw, "body.")?;
            validate_order(&order, "body.order_id")?;
            Body::OrderPaid(order)
        }
        EventType::VisitCompleted => {
            let visit: VisitCompleted = from_text(raw, "body.")?;
            let order = OrderPaid {
                order_id: visit.visit_id,
                sale_type: visit.sale_type,
                lines: visit.lines,
                payments: visit.payments,
                total: visit.total,
                currency: visit.currency,
                referrer_phone: visit.referrer_phone,
                authorization_id: visit.authorization_id,
                partner: visit.partner,
            };
            validate_order(&order, "body.visit_id")?;
            Body::VisitCompleted(order)
        }
        EventType::OrderRefunded => {
            let refund: OrderRefunded = from_text(raw, "body.")?;
            check_id("body.refund_id", &refund.refund_id)?;
            check_id("body.original_event_id", &refund.original_event_id)?;
            check_currency_code(&refund.currency)?;
            non_negative("body.amount", refund.amount.value())?;
            check_amount("body.amount", refund.amount.value())?;
            if refund.amount.value().is_zero() {
                return Err(ContractError::new(
                    ErrorKind::InvalidAmount,
                    "body.amount of a refund must be greater than zero",
                ));
            }
            Body::OrderRefunded(refund)
        }
        EventType::CustomerUpserted => {
            let customer: CustomerUpserted = from_text(raw, "body.")?;
            check_count("body.groups", customer.groups.len(), MAX_GROUPS)?;
            for (i, group) in customer.groups.iter().enumerate() {
                check_id(format_args!("body.groups[{i}]"), group)?;
            }
            if let Some(phone) = &customer.phone {
                check_id("body.phone", phone)?;
            }
            for (field, pct) in [
                ("body.discount_percent", customer.discount_percent),
                ("body.accrual_percent", customer.accrual_percent),
            ] {
                if let Some(pct) = pct {
                    check_percent(field, pct.value())?;
                }
            }
            Body::CustomerUpserted(customer)
        }
        EventType::BalanceAdjust => {
            let adjust: BalanceAdjust = from_text(raw, "body.")?;
            check_id("body.account", &adjust.account)?;
            if adjust.amount.value().is_zero() {
                return Err(ContractError::new(
                    ErrorKind::InvalidAmount,
                    "body.amount of an adjustment must not be zero",
                ));
            }
            check_amount("body.amount", adjust.amount.value())?;
            if adjust.description.trim().is_empty() {
                return Err(ContractError::new(
                    ErrorKind::InvalidField,
                    "body.description must not be empty: the customer sees it",
                ));
            }
            if adjust.description.len() > MAX_DESCRIPTION_LEN {
                return Err(ContractError::new(
                    ErrorKind::OutOfRange,
                    format!("body.description must be at most {MAX_DESCRIPTION_LEN} bytes: the customer sees it"),
                ));
            }
            Body::BalanceAdjust(adjust)
        }
        EventType::GiftCardExchange => {
            let exchange: GiftCardExchange = from_text(raw, "body.")?;
            check_id("body.gift_card", &exchange.gift_card)?;
            Body::GiftCardExchange(exchange)
        }
        EventType::BookingCreated => {
            let booking: BookingCreated = from_text(raw, "body.")?;
            check_id("body.booking_id", &booking.booking_id)?;
            check_id("body.service", &booking.service)?;
            check_time("body.starts_at", booking.starts_at)?;
            check_time("body.ends_at", booking.ends_at)?;
            check_span(booking.starts_at, booking.ends_at)?;
            Body::BookingCreated(booking)
        }
        EventType::BookingRescheduled => {
            let booking: BookingRescheduled = from_text(raw, "body.")?;
            check_id("body.booking_id", &booking.booking_id)?;
            check_time("body.starts_at", booking.starts_at)?;
            check_time("body.ends_at", booking.ends_at)?;
            check_span(booking.starts_at, booking.ends_at)?;
            Body::BookingRescheduled(booking)
        }
        EventType::BookingCancelled | EventType::BookingNoShow => {
            let booking: BookingRef = from_text(raw, "body.")?;
            check_id("body.booking_id", &booking.booking_id)?;
            if event_type == EventType::BookingCancelled {
                Body::BookingCancelled(booking)
            } else {
                Body::BookingNoShow(booking)
            }
        }
    };
    Ok(Event {
        event_id: envelope.event_id,
        tenant: envelope.tenant,
        branch: envelope.branch,
        customer: envelope.customer,
        occurred_at: envelope.occurred_at,
        body,
    })
}

/// Checks that a Kafka key is `tenant:customer` of the event.
///
/// # Errors
/// [`ErrorKind::KeyMismatch`] when the key is absent or names someone else.
pub fn check_key(key: Option<&[u8]>, event: &Event) -> Result<(), ContractError> {
    check_key_of(key, &event.tenant, &event.customer)
}

/// Checks that a Kafka key is `tenant:customer`.
///
/// # Errors
/// [`ErrorKind::KeyMismatch`] when the key is absent or names someone else.
pub fn check_key_of(key: Option<&[u8]>, tenant: &str, customer: &str) -> Result<(), ContractError> {
    let expected_len = tenant.len() + 1 + customer.len();
    let matches = key.is_some_and(|k| {
        k.len() == expected_len
            && k.starts_with(tenant.as_bytes())
            && k[tenant.len()] == b':'
            && k.ends_with(customer.as_bytes())
    });
    if matches {
        Ok(())
    } else {
        let shown = key.map_or_else(|| "no key".to_owned(), |k| format!("{:?}", String::from_utf8_lossy(k)));
        Err(ContractError::new(
            ErrorKind::KeyMismatch,
            format!("the Kafka key must be \"{tenant}:{customer}\" (tenant:customer), got {shown}"),
        ))
    }
}

/// The partition of a key, as librdkafka's default `consistent_random`
/// partitioner chooses it (CRC-32 of the key modulo the partition count).
/// Every topic of accrue is co-partitioned by this function.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    crc32fast::hash(key) % partitions.max(1)
}

/// The Kafka key of a customer's records: `tenant:customer`.
pub fn customer_key(tenant: &str, customer: &str) -> String {
    let mut key = String::with_capacity(tenant.len() + 1 + customer.len());
    key.push_str(tenant);
    key.push(':');
    key.push_str(customer);
    key
}

fn from_text<'a, T: Deserialize<'a>>(text: &'a str, prefix: &str) -> Result<T, ContractError> {
    // Fast path: plain serde_json. Tracking the field path costs more than
    // the decoding itself, so it runs only to explain a failure.
    if let Ok(value) = serde_json::from_str::<T>(text) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|err| classify(&err, prefix))?;
    de.end().map_err(|err| {
        ContractError::new(
            ErrorKind::MalformedJson,
            format!("trailing data after the event: {err}"),
        )
    })?;
    Ok(value)
}

fn classify(err: &serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> ContractError {
    let inner = err.inner();
    let path = err.path().to_string();
    let field = if path == "." {
        prefix.trim_end_matches('.').to_owned()
    } else {
        format!("{prefix}{path}")
    };
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            ContractError::new(ErrorKind::MalformedJson, format!("not valid JSON: {inner}"))
        }
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            // serde's derive reports an absent field as "missing field `name`".
            if let Some(rest) = message.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or_default();
                let at = if field.is_empty() {
                    String::new()
                } else {
                    format!("{field}.")
                };
                ContractError::new(ErrorKind::MissingField, format!("missing field {at}{name}"))
            } else if message.contains(money::NOT_A_DECIMAL) {
                ContractError::new(
                    ErrorKind::InvalidAmount,
                    format!("{field}: {}", strip_position(&message)),
                )
            } else if field.is_empty() {
                ContractError::new(
                    ErrorKind::MalformedJson,
                    format!("the event must be a JSON object: {message}"),
                )
            } else {
                ContractError::new(
                    ErrorKind::InvalidField,
                    format!("{field}: {}", strip_position(&message)),
                )
            }
        }
    }
}

fn first_byte(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(head, _)| head)
}

fn check_id(field: impl fmt::Display, value: &str) -> Result<(), ContractError> {
    if value.is_empty() {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            format!("{field} must be 1 to {MAX_ID_LEN} bytes long"),
        ));
    }
    if value.len() > MAX_ID_LEN {
        return Err(ContractError::new(
            ErrorKind::OutOfRange,
            format!(
                "{field} is {} bytes long; identifiers are at most {MAX_ID_LEN} bytes",
                value.len()
            ),
        ));
    }
    if value.chars().any(|c| c.is_control() || c == ':') {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            format!("{field} must not contain ':' or control characters"),
        ));
    }
    Ok(())
}

fn validate_order(order: &OrderPaid, id_field: &str) -> Result<(), ContractError> {
    check_id(id_field, &order.order_id)?;
    if let Some(id) = &order.authorization_id {
        check_id("body.authorization_id", id)?;
    }
    if let Some(phone) = &order.referrer_phone {
        check_id("body.referrer_phone", phone)?;
    }
    if let Some(partner) = &order.partner {
        check_id("body.partner.tenant", &partner.tenant)?;
        check_id("body.partner.phone", &partner.phone)?;
        if order.referrer_phone.is_some() {
            return Err(ContractError::new(
                ErrorKind::InvalidField,
                "body.referrer_phone and body.partner cannot both be set: a referral stays within one tenant",
            ));
        }
    }
    check_id("body.sale_type", &order.sale_type)?;
    check_currency_code(&order.currency)?;
    if order.lines.is_empty() {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            "body.lines must hold at least one line",
        ));
    }
    if order.payments.is_empty() {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            "body.payments must hold at least one payment",
        ));
    }
    check_count("body.lines", order.lines.len(), MAX_LINES)?;
    check_count("body.payments", order.payments.len(), MAX_PAYMENTS)?;
    non_negative("body.total", order.total.value())?;
    check_amount("body.total", order.total.value())?;
    let mut lines_sum = Decimal::ZERO;
    for (i, line) in order.lines.iter().enumerate() {
        check_id(format_args!("body.lines[{i}].product"), &line.product)?;
        check_id(format_args!("body.lines[{i}].category"), &line.category)?;
        non_negative(format_args!("body.lines[{i}].amount"), line.amount.value())?;
        check_amount(format_args!("body.lines[{i}].amount"), line.amount.value())?;
        if line.quantity.value() <= Decimal::ZERO {
            return Err(ContractError::new(
                ErrorKind::NegativeAmount,
                format!("body.lines[{i}].quantity must be greater than zero"),
            ));
        }
        check_amount(format_args!("body.lines[{i}].quantity"), line.quantity.value())?;
        lines_sum = checked_add(lines_sum, line.amount.value(), "body.lines")?;
    }
    let mut payments_sum = Decimal::ZERO;
    for (i, payment) in order.payments.iter().enumerate() {
        check_id(format_args!("body.payments[{i}].method"), &payment.method)?;
        if let Some(account) = &payment.account {
            check_id(format_args!("body.payments[{i}].account"), account)?;
            if payment.method != "bonus" {
                return Err(ContractError::new(
                    ErrorKind::InvalidField,
                    format!("body.payments[{i}].account is only for method \"bonus\" (a named bonus account)"),
                ));
            }
        }
        non_negative(format_args!("body.payments[{i}].amount"), payment.amount.value())?;
        check_amount(format_args!("body.payments[{i}].amount"), payment.amount.value())?;
        payments_sum = checked_add(payments_sum, payment.amount.value(), "body.payments")?;
    }
    let total = order.total.value();
    if lines_sum != total {
        return Err(ContractError::new(
            ErrorKind::Unbalanced,
            format!("the line amounts add up to {lines_sum}, but body.total is {total}"),
        ));
    }
    if payments_sum != total {
        return Err(ContractError::new(
            ErrorKind::Unbalanced,
            format!("the payments add up to {payments_sum}, but body.total is {total}"),
        ));
    }
    Ok(())
}

fn check_percent(field: &str, pct: Decimal) -> Result<(), ContractError> {
    if pct.is_sign_negative() && !pct.is_zero() {
        return Err(ContractError::new(
            ErrorKind::NegativeAmount,
            format!("{field} is {pct}; a percentage must not be negative"),
        ));
    }
    if pct > Decimal::ONE_HUNDRED {
        return Err(ContractError::new(
            ErrorKind::InvalidAmount,
            format!("{field} is {pct}; a percentage is at most 100"),
        ));
    }
    Ok(())
}

fn check_span(starts_at: OffsetDateTime, ends_at: OffsetDateTime) -> Result<(), ContractError> {
    if ends_at < starts_at {
        return Err(ContractError::new(
            ErrorKind::InvalidField,
            "body.ends_at must not be before body.starts_at",
        ));
    }
    Ok(())
}

fn check_currency_code(currency: &str) -> Result<(), ContractError> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ContractError::new(
            ErrorKind::BadCurrency,
            format!("body.currency {currency:?} is not an ISO 4217 code (three capital letters)"),
        ));
    }
    Ok(())
}

fn non_negative(field: impl fmt::Display, value: Decimal) -> Result<(), ContractError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(ContractError::new(
            ErrorKind::NegativeAmount,
            format!("{field} is {value}; amounts must not be negative"),
        ));
    }
    Ok(())
}

fn checked_add(sum: Decimal, value: Decimal, field: &str) -> Result<Decimal, ContractError> {
    sum.checked_add(value)
        .ok_or_else(|| ContractError::new(ErrorKind::InvalidAmount, format!("{field}: the amounts overflow")))
}

#[cfg(test)]
mod tests;
