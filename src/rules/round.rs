//! Rounding to decimal places, and percentages rounded, done on the
//! mantissa.
//!
//! The same results as `Decimal::round_dp_with_strategy` and as rounding
//! `base * percent / 100` computed with `Decimal` division (value, sign and
//! scale, bit for bit; the tests compare them over random values), at a
//! fraction of the cost: `Decimal` rescales and divides through 32-bit
//! limbs, and the rules round every accrual twice.

use rust_decimal::{Decimal, RoundingStrategy};

use super::checked::{self, Overflow};

/// How an amount is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rounding {
    /// Half to even: money.
    HalfEven,
    /// Towards zero: points.
    Down,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Down => RoundingStrategy::ToZero,
        }
    }
}

/// `value` rounded half-even to `dp` places (money).
pub(crate) fn half_even(value: Decimal, dp: u32) -> Decimal {
    round(value, dp, Rounding::HalfEven)
}

/// `value` rounded towards zero to `dp` places (points).
pub(crate) fn down(value: Decimal, dp: u32) -> Decimal {
    round(value, dp, Rounding::Down)
}

/// `base * percent / 100`, rounded to `dp` places: the rounding of
/// [`checked::percent`], without its division when the product's digits
/// say what the quotient is.
///
/// # Errors
/// [`Overflow::Amount`] if the product does not fit a decimal.
pub(crate) fn percent(base: Decimal, percent: Decimal, dp: u32, how: Rounding) -> Result<Decimal, Overflow> {
    let product = checked::mul(base, percent)?;
    let scale = product.scale();
    if product.is_sign_positive() && !product.is_zero() {
        let mantissa = product.mantissa().unsigned_abs();
        let (hundredths, remainder) = divide(mantissa, 100);
        if remainder == 0 {
            // Decimal's division by 100 leaves no remainder and keeps the
            // scale: the quotient is `mantissa / 100` at the same scale.
            return Ok(round(from_mantissa(hundredths, scale), dp, how));
        }
        if scale >= dp && scale <= 26 {
            // The exact quotient is `mantissa` at two more places, and
            // needs more than `dp` places however it is written, so its
            // rounding depends on its value alone.
            return Ok(round(from_mantissa(mantissa, scale.saturating_add(2)), dp, how));
        }
    }
    Ok(round(checked::percent(base, percent)?, dp, how))
}

/// `base * percent / 100`, equal in value to [`checked::percent`] (not
/// always written with the same scale): for comparisons, without the
/// division when the product has two places to spare.
///
/// # Errors
/// [`Overflow::Amount`] if the product does not fit a decimal.
pub(crate) fn percent_value(base: Decimal, percent: Decimal) -> Result<Decimal, Overflow> {
    let product = checked::mul(base, percent)?;
    let scale = product.scale();
    if product.is_sign_positive() && scale <= 26 {
        return Ok(from_mantissa(
            product.mantissa().unsigned_abs(),
            scale.saturating_add(2),
        ));
    }
    checked::percent(base, percent)
}

/// A non-negative `Decimal` of a mantissa below 2^96.
fn from_mantissa(mantissa: u128, scale: u32) -> Decimal {
    Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        (mantissa >> 64) as u32,
        false,
        scale,
    )
}

fn round(value: Decimal, dp: u32, how: Rounding) -> Decimal {
    let strategy = how.strategy();
    let scale = value.scale();
    if scale <= dp {
        return value;
    }
    let Some(divisor) = scale.checked_sub(dp).and_then(|places| 10u128.checked_pow(places)) else {
        return value.round_dp_with_strategy(dp, strategy);
    };
    let mantissa = value.mantissa().unsigned_abs();
    let (quotient, remainder) = divide(mantissa, divisor);
    let up = match how {
        Rounding::Down => false,
        // The divisor is a power of ten, so even: twice the remainder
        // against it is exact.
        Rounding::HalfEven => match remainder.checked_mul(2).map(|twice| twice.cmp(&divisor)) {
            Some(std::cmp::Ordering::Greater) => true,
            Some(std::cmp::Ordering::Equal) => quotient % 2 == 1,
            Some(std::cmp::Ordering::Less) => false,
            None => return value.round_dp_with_strategy(dp, strategy),
        },
    };
    let Some(rounded) = (if up { quotient.checked_add(1) } else { Some(quotient) }) else {
        return value.round_dp_with_strategy(dp, strategy);
    };
    // Below 2^96: the mantissa was, and the divisor is at least 10.
    let (lo, mid, hi) = (rounded as u32, (rounded >> 32) as u32, (rounded >> 64) as u32);
    Decimal::from_parts(lo, mid, hi, value.is_sign_negative(), dp)
}

/// `n / d` and `n % d`; in 64 bits when both fit (most money does).
fn divide(n: u128, d: u128) -> (u128, u128) {
    match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => match (n.checked_div(d), n.checked_rem(d)) {
            (Some(q), Some(r)) => (u128::from(q), u128::from(r)),
            _ => (0, n.into()),
        },
        _ => (n.checked_div(d).unwrap_or(0), n.checked_rem(d).unwrap_or(n)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn same(a: Decimal, b: Decimal) -> bool {
        a.serialize() == b.serialize()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, rng_seed: proptest::test_runner::RngSeed::Fixed(17), ..ProptestConfig::default() })]
        #[test]
        fn rounds_exactly_as_rust_decimal(
            lo in any::<u32>(),
            mid in prop_oneof![Just(0u32), any::<u32>()],
            hi in prop_oneof![Just(0u32), Just(0u32), any::<u32>()],
            negative in any::<bool>(),
            scale in 0u32..=28,
            dp in 0u32..=6,
        ) {
            let value = Decimal::from_parts(lo, mid, hi, negative, scale);
            let even = value.round_dp_with_strategy(dp, RoundingStrategy::MidpointNearestEven);
            let zero = value.round_dp_with_strategy(dp, RoundingStrategy::ToZero);
            prop_assert!(same(half_even(value, dp), even), "{value} to {dp}: {} != {even}", half_even(value, dp));
            prop_assert!(same(down(value, dp), zero), "{value} to {dp}: {} != {zero}", down(value, dp));
        }

        #[test]
        fn percentages_round_exactly_as_dividing(
            lo in any::<u32>(),
            mid in prop_oneof![Just(0u32), Just(0u32), any::<u32>()],
            negative in prop_oneof![Just(false), Just(false), Just(true)],
            scale in prop_oneof![Just(2u32), 0u32..=28],
            percent in prop_oneof![Just(5u32), Just(100u32), 0u32..=10_000],
            percent_scale in prop_oneof![Just(0u32), 0u32..=4],
            dp in 0u32..=4,
        ) {
            let base = Decimal::from_parts(lo, mid, 0, negative, scale);
            let percent = Decimal::from_parts(percent, 0, 0, false, percent_scale);
            prop_assert_eq!(percent_value(base, percent), checked::percent(base, percent), "{} * {}%", base, percent);
            for how in [Rounding::HalfEven, Rounding::Down] {
                let want = checked::percent(base, percent).map(|p| p.round_dp_with_strategy(dp, how.strategy()));
                let got = super::percent(base, percent, dp, how);
                prop_assert_eq!(got.map(|d| d.serialize()), want.map(|d| d.serialize()), "{} * {}% to {} ({:?})", base, percent, dp, how);
            }
        }
    }

    #[test]
    fn midpoints_negatives_and_zeros() {
        for (text, dp) in [
            ("2.345", 2),
            ("2.355", 2),
            ("-2.345", 2),
            ("-0.001", 2),
            ("-0.005", 2),
            ("0.005", 2),
            ("0.015", 2),
            ("0.00", 2),
            ("-0.0000", 2),
            ("12.5", 0),
            ("13.5", 0),
            ("54.2500000", 2),
            ("79228162514264337593543950335", 0),
            ("7.9228162514264337593543950335", 27),
            ("0.0000000000000000000000000005", 27),
        ] {
            let Ok(value) = text.parse::<Decimal>() else {
                panic!("{text}")
            };
            for how in [Rounding::HalfEven, Rounding::Down] {
                let want = value.round_dp_with_strategy(dp, how.strategy());
                let got = round(value, dp, how);
                assert!(same(got, want), "{text} to {dp} ({how:?}): {got} != {want}");
            }
        }
    }
}
