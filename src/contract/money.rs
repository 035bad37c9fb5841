//! `Amount`: a decimal that travels as a JSON string, never as a float.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an amount must be: serde's messages read "expected <this>".
const A_DECIMAL: &str = "a decimal string";

/// Marker in the error message of a value that is not a decimal string; the
/// decoder uses it to classify the error as `invalid_amount`.
pub(crate) const NOT_A_DECIMAL: &str = "expected a decimal string";

/// A decimal amount or quantity. On the wire it is a JSON string such as
/// `"80.00"`; JSON numbers are refused so that no float ever touches money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(Decimal);

impl Amount {
    /// Wraps a decimal.
    pub fn new(value: Decimal) -> Self {
        Amount(value)
    }

    /// The decimal value.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl From<Decimal> for Amount {
    fn from(value: Decimal) -> Self {
        Amount(value)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // serde writes "expected " before this.
        write!(f, "{A_DECIMAL} such as \"80.00\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        parse(v).ok_or_else(|| E::custom(format!("{NOT_A_DECIMAL} such as \"80.00\", got {v:?}")))
    }
}

/// Accepts plain decimal notation only: an optional sign, digits, an optional
/// fraction. No exponent, no spaces, no thousands separators.
fn parse(text: &str) -> Option<Amount> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    if !plain {
        return None;
    }
    // Exact or refused: more than 28 significant digits is an error, never a rounding.
    Decimal::from_str_exact(text).ok().map(Amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_only() {
        assert_eq!(parse("80.00").map(Amount::value), Some(Decimal::new(8000, 2)));
        assert_eq!(parse("-1.5").map(Amount::value), Some(Decimal::new(-15, 1)));
        assert_eq!(parse("0").map(Amount::value), Some(Decimal::ZERO));
        for bad in ["", "1e3", "1.", ".5", "1,000", " 1", "abc", "1.2.3", "--1", "NaN"] {
            assert!(parse(bad).is_none(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn refuses_json_numbers() {
        let err = serde_json::from_str::<Amount>("80.0").map(|_| ());
        assert!(err.is_err());
        assert_eq!(
            serde_json::from_str::<Amount>("\"80.10\"").ok().map(Amount::value),
            Some(Decimal::new(8010, 2))
        );
    }

    #[test]
    fn a_json_number_is_explained_once() {
        let err = serde_json::from_str::<Amount>("12.5")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("expected a decimal string such as \"80.00\""), "{err}");
        assert!(!err.contains("expected expected"), "{err}");
        assert!(
            err.contains(NOT_A_DECIMAL),
            "the decoder classifies by this marker: {err}"
        );
    }

    #[test]
    fn round_trips_as_string() {
        let a = Amount::new(Decimal::new(400, 2));
        let json = serde_json::to_string(&a).ok();
        assert_eq!(json.as_deref(), Some("\"4.00\""));
    }
}
