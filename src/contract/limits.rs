//! Contract limits: the largest values an input may carry. They keep every
//! accepted event far from what `Decimal` and the calendar can hold, so no
//! sum, percentage or due time computed from it can overflow. An input
//! beyond one is dead-lettered as `out_of_range` (docs/events.md §2,
//! "Limits").

use rust_decimal::Decimal;
use time::macros::datetime;
use time::OffsetDateTime;

use super::{ContractError, ErrorKind};

/// The largest absolute amount or quantity accepted: 10^12 (one trillion)
/// major units.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// The largest absolute balance an account may reach: 10^15 major units
/// (or points). An effect that would pass it is rejected (`balance_limit`).
pub const MAX_BALANCE: Decimal = Decimal::from_parts(0xA4C6_8000, 0x3_8D7E, 0, false, 0);

/// The earliest `occurred_at`, `starts_at` or `ends_at` accepted.
pub const EARLIEST: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);

/// The first instant no longer accepted for `occurred_at`, `starts_at` or
/// `ends_at`: times must be before it.
pub const END_OF_RANGE: OffsetDateTime = datetime!(2100-01-01 0:00 UTC);

/// Most lines in one order or visit.
pub const MAX_LINES: usize = 1_000;

/// Most payments in one order or visit.
pub const MAX_PAYMENTS: usize = 100;

/// Most groups in one customer profile.
pub const MAX_GROUPS: usize = 100;

/// Longest identifier (tenant, branch, customer, product, ...), in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Longest `balance.adjust` description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// Checks that `|value| <= MAX_AMOUNT`.
pub(super) fn check_amount(field: impl std::fmt::Display, value: Decimal) -> Result<(), ContractError> {
    if value.abs() > MAX_AMOUNT {
        return Err(ContractError::new(
            ErrorKind::OutOfRange,
            format!("{field} is {value}; amounts and quantities are at most {MAX_AMOUNT} in absolute value"),
        ));
    }
    Ok(())
}

/// Checks that `time` is within `[EARLIEST, END_OF_RANGE)`.
pub(super) fn check_time(field: &str, time: OffsetDateTime) -> Result<(), ContractError> {
    if time < EARLIEST || time >= END_OF_RANGE {
        return Err(ContractError::new(
            ErrorKind::OutOfRange,
            format!("{field} must be from 2000-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z"),
        ));
    }
    Ok(())
}

/// Checks that an array `field` holds at most `max` items.
pub(super) fn check_count(field: &str, len: usize, max: usize) -> Result<(), ContractError> {
    if len > max {
        return Err(ContractError::new(
            ErrorKind::OutOfRange,
            format!("{field} holds {len} items; at most {max} are accepted"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_documented_powers_of_ten() {
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000_i64));
        assert_eq!(MAX_BALANCE, Decimal::from(1_000_000_000_000_000_i64));
        assert_eq!(EARLIEST.unix_timestamp(), 946_684_800);
        assert_eq!(END_OF_RANGE.unix_timestamp(), 4_102_444_800);
    }

    #[test]
    fn the_bounds_are_inclusive_for_amounts_and_half_open_for_times() {
        assert!(check_amount("a", MAX_AMOUNT).is_ok());
        assert!(check_amount("a", -MAX_AMOUNT).is_ok());
        let over = check_amount("a", MAX_AMOUNT + Decimal::new(1, 2));
        assert_eq!(over.err().map(|e| e.kind), Some(ErrorKind::OutOfRange));
        assert!(check_time("t", EARLIEST).is_ok());
        assert!(check_time("t", END_OF_RANGE).is_err());
        assert!(check_time("t", EARLIEST - time::Duration::nanoseconds(1)).is_err());
        assert!(check_count("body.lines", MAX_LINES, MAX_LINES).is_ok());
        assert!(check_count("body.lines", MAX_LINES + 1, MAX_LINES).is_err());
    }
}
