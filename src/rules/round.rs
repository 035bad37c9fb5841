//! Rounding to decimal places, done on the mantissa.
//!
//! The same results as `Decimal::round_dp_with_strategy` (value, sign and
//! scale, bit for bit; the tests compare them over random values), at a
//! fraction of its cost: it rescales through 32-bit limbs, and the rules
//! round every accrual twice.

use rust_decimal::{Decimal, RoundingStrategy};

/// `value` rounded half-even to `dp` places (money).
pub(crate) fn half_even(value: Decimal, dp: u32) -> Decimal {
    round(value, dp, RoundingStrategy::MidpointNearestEven)
}

/// `value` rounded towards zero to `dp` places (points).
pub(crate) fn down(value: Decimal, dp: u32) -> Decimal {
    round(value, dp, RoundingStrategy::ToZero)
}

fn round(value: Decimal, dp: u32, strategy: RoundingStrategy) -> Decimal {
    let scale = value.scale();
    if scale <= dp {
        return value;
    }
    let Some(divisor) = scale.checked_sub(dp).and_then(|places| 10u128.checked_pow(places)) else {
        return value.round_dp_with_strategy(dp, strategy);
    };
    let mantissa = value.mantissa().unsigned_abs();
    let (quotient, remainder) = divide(mantissa, divisor);
    let up = match strategy {
        RoundingStrategy::ToZero => false,
        // The divisor is a power of ten, so even: twice the remainder
        // against it is exact.
        _ => match remainder.checked_mul(2).map(|twice| twice.cmp(&divisor)) {
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
            for strategy in [RoundingStrategy::MidpointNearestEven, RoundingStrategy::ToZero] {
                let want = value.round_dp_with_strategy(dp, strategy);
                let got = round(value, dp, strategy);
                assert!(same(got, want), "{text} to {dp} ({strategy:?}): {got} != {want}");
            }
        }
    }
}
