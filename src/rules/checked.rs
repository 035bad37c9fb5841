//! Checked arithmetic for money, points and time. The operators of
//! `Decimal` and `OffsetDateTime` panic on overflow; these return
//! [`Overflow`], which the rules turn into a rejection.
//!
//! The contract limits (`contract::limits`) keep every accepted event far
//! below what `Decimal` holds, so these errors are a second line: they keep
//! a bad configuration or an old stored balance from stopping a partition.

use std::time::Duration;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::ReasonCode;

/// A computation that does not fit its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// A money or points computation exceeds `Decimal` (about 7.9 × 10^28).
    Amount,
    /// A time computation leaves the calendar (or Unix milliseconds).
    Date,
}

impl Overflow {
    /// The rejection's `reason_code`.
    pub fn code(self) -> ReasonCode {
        match self {
            Overflow::Amount => ReasonCode::AmountOverflow,
            Overflow::Date => ReasonCode::DateOutOfRange,
        }
    }

    /// The rejection's human-readable reason.
    pub fn reason(self) -> String {
        match self {
            Overflow::Amount => "an amount computed for this event does not fit a decimal (about 7.9 × 10^28); \
                 nothing was applied. Keep amounts within the contract limits of docs/events.md"
                .to_owned(),
            Overflow::Date => "a time computed for this event (such as ends_at + credit_delay) is out of range; \
                 nothing was applied. Keep times within the contract limits of docs/events.md"
                .to_owned(),
        }
    }
}

/// `a + b`.
pub(crate) fn add(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_add(b).ok_or(Overflow::Amount)
}

/// `a - b`.
pub(crate) fn sub(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_sub(b).ok_or(Overflow::Amount)
}

/// `a * b`.
pub(crate) fn mul(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_mul(b).ok_or(Overflow::Amount)
}

/// `-a`: flips the sign, which cannot overflow a `Decimal`.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn neg(a: Decimal) -> Decimal {
    -a
}

/// `a / b`; a zero `b` is an error too, though every caller rules it out.
pub(crate) fn div(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_div(b).ok_or(Overflow::Amount)
}

/// `base * percent / 100`, unrounded.
pub(crate) fn percent(base: Decimal, percent: Decimal) -> Result<Decimal, Overflow> {
    div(mul(base, percent)?, Decimal::ONE_HUNDRED)
}

/// The sum of `values` (`Iterator::sum` of `Decimal` panics on overflow).
///
/// Non-negative values of one scale (order lines, payments) are added as
/// integers: the same `Decimal`, bit for bit, as adding them one by one
/// (the tests compare them), without rescaling at every step.
pub(crate) fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    let mut total = Sum::Empty;
    for value in values {
        total = match total {
            Sum::Empty if value.is_sign_positive() => Sum::Integer(value.mantissa().unsigned_abs(), value.scale()),
            Sum::Integer(sum, scale) if value.is_sign_positive() && value.scale() == scale => {
                match sum
                    .checked_add(value.mantissa().unsigned_abs())
                    .filter(|s| *s <= MAX_MANTISSA)
                {
                    Some(next) => Sum::Integer(next, scale),
                    None => Sum::Decimal(add(Sum::Integer(sum, scale).value(), value)?),
                }
            }
            other => Sum::Decimal(add(other.value(), value)?),
        };
    }
    Ok(total.value())
}

/// The largest mantissa of a `Decimal` (96 bits).
const MAX_MANTISSA: u128 = (1 << 96) - 1;

/// A running sum: nothing yet, non-negative mantissas of one scale, or any
/// `Decimal`.
enum Sum {
    Empty,
    Integer(u128, u32),
    Decimal(Decimal),
}

impl Sum {
    fn value(self) -> Decimal {
        match self {
            Sum::Empty => Decimal::ZERO,
            // Within 96 bits, checked when it was added.
            Sum::Integer(sum, scale) => {
                Decimal::from_parts(sum as u32, (sum >> 32) as u32, (sum >> 64) as u32, false, scale)
            }
            Sum::Decimal(value) => value,
        }
    }
}

/// `at + delay`, in Unix milliseconds.
pub(crate) fn due_ms(at: OffsetDateTime, delay: Duration) -> Result<i64, Overflow> {
    let delay = time::Duration::try_from(delay).map_err(|_| Overflow::Date)?;
    unix_ms(at.checked_add(delay).ok_or(Overflow::Date)?)
}

/// `at` in Unix milliseconds.
pub(crate) fn unix_ms(at: OffsetDateTime) -> Result<i64, Overflow> {
    let ms = at.unix_timestamp_nanos().checked_div(1_000_000).ok_or(Overflow::Date)?;
    i64::try_from(ms).map_err(|_| Overflow::Date)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, rng_seed: proptest::test_runner::RngSeed::Fixed(17), ..ProptestConfig::default() })]
        #[test]
        fn sums_exactly_as_adding_one_by_one(
            values in proptest::collection::vec(
                (any::<u32>(), prop_oneof![Just(0u32), any::<u32>()], prop_oneof![Just(0u32), Just(0u32), any::<u32>()],
                 prop_oneof![Just(false), Just(false), Just(true)], prop_oneof![Just(2u32), Just(2u32), 0u32..=28]),
                0..8,
            ),
        ) {
            let values: Vec<Decimal> = values
                .into_iter()
                .map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(lo, mid, hi, negative, scale))
                .collect();
            let one_by_one = values.iter().try_fold(Decimal::ZERO, |a, b| add(a, *b));
            let summed = sum(values.iter().copied());
            prop_assert_eq!(summed.map(|d| d.serialize()), one_by_one.map(|d| d.serialize()), "{:?}", values);
        }
    }

    #[test]
    fn overflows_are_errors_not_panics() {
        assert_eq!(add(Decimal::MAX, Decimal::ONE), Err(Overflow::Amount));
        assert_eq!(sub(Decimal::MIN, Decimal::ONE), Err(Overflow::Amount));
        assert_eq!(mul(Decimal::MAX, Decimal::TWO), Err(Overflow::Amount));
        assert_eq!(div(Decimal::ONE, Decimal::ZERO), Err(Overflow::Amount));
        assert_eq!(percent(Decimal::MAX, Decimal::ONE_HUNDRED), Err(Overflow::Amount));
        assert_eq!(sum([Decimal::MAX, Decimal::MAX]), Err(Overflow::Amount));
        assert_eq!(sum([Decimal::ONE, Decimal::TWO]), Ok(Decimal::from(3)));
        assert_eq!(percent(Decimal::from(80), Decimal::from(5)), Ok(Decimal::from(4)));
    }

    #[test]
    fn due_times_out_of_range_are_errors() {
        let end = time::macros::datetime!(9999-12-31 23:00 UTC);
        assert_eq!(due_ms(end, Duration::from_secs(7200)), Err(Overflow::Date));
        assert_eq!(due_ms(end, Duration::MAX), Err(Overflow::Date));
        let noon = time::macros::datetime!(2026-11-23 12:00 UTC);
        assert_eq!(due_ms(noon, Duration::from_secs(3 * 3600)), Ok(1_795_446_000_000));
    }
}
