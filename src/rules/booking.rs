//! Bookings and delayed service points (seed 004): a booking schedules a
//! credit at `ends_at + credit_delay`; a reschedule moves it; a cancellation
//! or no-show before it removes it, and after it reverses the credit.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::checked::{self, Overflow};
use super::{Entry, EntryType, Input, Outcome, ReasonCode, RejectionType};
use crate::contract::{BookingCreated, BookingRescheduled};
use crate::programs::{NegativeBalance, TenantConfig, SERVICE_POINTS_NAME};

/// The account service points go to.
pub const SERVICE_POINTS: &str = "service_points";

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    /// Waiting for its credit (or earning nothing, with no timer).
    Scheduled,
    /// Points were credited.
    Credited,
    /// Cancelled (before or after the credit).
    Cancelled,
    /// The customer did not come.
    NoShow,
}

/// A booking as stored, keyed by tenant and booking id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The customer.
    pub customer: String,
    /// Branch of the booking.
    pub branch: String,
    /// Service or class id.
    pub service: String,
    /// Points it earns (0: no timer).
    #[serde(with = "rust_decimal::serde::str")]
    pub points: Decimal,
    /// When the credit is due, in Unix milliseconds, while scheduled.
    pub due_ms: Option<i64>,
    /// Lifecycle state.
    pub state: BookingState,
    /// `event_id` of `booking.created`.
    pub event_id: String,
    /// Where `booking.created` was read: the source of the credit's output.
    pub source_topic: String,
    /// Its offset.
    pub source_offset: i64,
}

/// Timer changes an outcome asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerChange {
    /// Delete the timer due at this time.
    pub delete: Option<i64>,
    /// Set a timer due at this time.
    pub set: Option<i64>,
}

fn due_ms(tenant: &TenantConfig, ends_at: OffsetDateTime) -> Result<i64, Overflow> {
    checked::due_ms(ends_at, tenant.bookings.credit_delay)
}

fn reject(code: ReasonCode, reason: String) -> Outcome {
    Outcome::rejected(RejectionType::Booking, code, reason)
}

/// The pipeline fills in `source_topic` and `source_offset` of the new
/// booking, which the rules do not see.
pub(super) fn created(input: &Input<'_>, body: &BookingCreated) -> Result<Outcome, Overflow> {
    if input.booking.is_some() {
        return Ok(reject(
            ReasonCode::BookingExists,
            format!("booking {:?} was already created", body.booking_id),
        ));
    }
    let points = input
        .tenant
        .bookings
        .points
        .get(&body.service)
        .map_or(Decimal::ZERO, |p| p.value());
    let due = if points > Decimal::ZERO {
        Some(due_ms(input.tenant, body.ends_at)?)
    } else {
        None
    };
    Ok(Outcome {
        booking: Some(Box::new((
            body.booking_id.clone(),
            Booking {
                customer: input.event.customer.clone(),
                branch: input.event.branch.clone(),
                service: body.service.clone(),
                points,
                due_ms: due,
                state: BookingState::Scheduled,
                event_id: input.event.event_id.clone(),
                source_topic: String::new(),
                source_offset: -1,
            },
        ))),
        timers: TimerChange { delete: None, set: due },
        ..Outcome::default()
    })
}

pub(super) fn rescheduled(input: &Input<'_>, body: &BookingRescheduled) -> Result<Outcome, Overflow> {
    let Some(booking) = input.booking else {
        return Ok(reject(
            ReasonCode::UnknownBooking,
            format!("no booking {:?} for this customer", body.booking_id),
        ));
    };
    if booking.state != BookingState::Scheduled {
        return Ok(reject(
            ReasonCode::NotScheduled,
            format!(
                "booking {:?} is {:?}; only a scheduled booking moves",
                body.booking_id, booking.state
            ),
        ));
    }
    let mut moved = booking.clone();
    if booking.due_ms.is_some() {
        moved.due_ms = Some(due_ms(input.tenant, body.ends_at)?);
    }
    Ok(Outcome {
        timers: TimerChange {
            delete: booking.due_ms,
            set: moved.due_ms,
        },
        booking: Some(Box::new((body.booking_id.clone(), moved))),
        ..Outcome::default()
    })
}

/// `booking.cancelled` (`no_show = false`) or `booking.no_show`.
pub(super) fn ended(input: &Input<'_>, booking_id: &str, no_show: bool) -> Outcome {
    let Some(booking) = input.booking else {
        return reject(
            ReasonCode::UnknownBooking,
            format!("no booking {booking_id:?} for this customer"),
        );
    };
    let mut closed = booking.clone();
    closed.state = if no_show {
        BookingState::NoShow
    } else {
        BookingState::Cancelled
    };
    closed.due_ms = None;
    match booking.state {
        BookingState::Scheduled => Outcome {
            timers: TimerChange {
                delete: booking.due_ms,
                set: None,
            },
            booking: Some(Box::new((booking_id.to_owned(), closed))),
            ..Outcome::default()
        },
        BookingState::Credited => {
            // After the credit: take the points back, within the tenant's
            // negative-balance policy.
            let mut points = booking.points;
            if input.tenant.refunds.negative_balance == NegativeBalance::Clamp {
                points = points.min(input.balance(SERVICE_POINTS).max(Decimal::ZERO));
            }
            let entries = if points > Decimal::ZERO {
                vec![Entry {
                    account: Arc::clone(&SERVICE_POINTS_NAME),
                    entry_type: EntryType::Reversal,
                    program: Arc::clone(&SERVICE_POINTS_NAME),
                    amount: checked::neg(points),
                    base: None,
                    description: Some(format!(
                        "{} {}",
                        if no_show { "no-show" } else { "cancelled" },
                        booking.service
                    )),
                    operator: None,
                }]
            } else {
                Vec::new()
            };
            Outcome {
                entries,
                booking: Some(Box::new((booking_id.to_owned(), closed))),
                ..Outcome::default()
            }
        }
        BookingState::Cancelled | BookingState::NoShow => reject(
            ReasonCode::NotActive,
            format!("booking {booking_id:?} was already {:?}", booking.state),
        ),
    }
}

/// A due timer of a scheduled booking: credit its points.
pub fn fire(booking_id: &str, booking: &Booking, marketing_consent: bool) -> Outcome {
    if booking.state != BookingState::Scheduled || booking.points <= Decimal::ZERO {
        return Outcome::default();
    }
    let mut credited = booking.clone();
    credited.state = BookingState::Credited;
    credited.due_ms = None;
    Outcome {
        entries: vec![Entry {
            account: Arc::clone(&SERVICE_POINTS_NAME),
            entry_type: EntryType::ServicePoints,
            program: Arc::clone(&SERVICE_POINTS_NAME),
            amount: booking.points,
            base: None,
            description: Some(format!("points for {}", booking.service)),
            operator: None,
        }],
        notify: marketing_consent.then_some("points.auto_credited"),
        timers: TimerChange {
            delete: booking.due_ms,
            set: None,
        },
        booking: Some(Box::new((booking_id.to_owned(), credited))),
        ..Outcome::default()
    }
}
