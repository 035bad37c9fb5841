//! `Birthday`: a customer's birthday as `customer.upserted` carries it,
//! `"MM-DD"`, or `"YYYY-MM-DD"` when the year is known. Only the month and
//! day decide the birthday bonus; the year is kept as it was sent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A birthday: a month and day, and the year of birth if it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Birthday {
    year: Option<u16>,
    month: u8,
    day: u8,
}

/// Why a birthday text was refused; serde's message for the field.
const EXPECTED: &str =
    "a birthday is \"MM-DD\" or \"YYYY-MM-DD\" and a real date (such as \"04-17\" or \"1990-04-17\")";

impl Birthday {
    /// The birthday `month`-`day` (of `year`, if given), if it is a date:
    /// 29 February needs a leap year when the year is given. Years are
    /// written with four digits (1000 to 9999).
    pub fn new(year: Option<u16>, month: u8, day: u8) -> Option<Birthday> {
        if year.is_some_and(|y| !(1000..=9999).contains(&y)) || !(1..=12).contains(&month) {
            return None;
        }
        // Without a year, 29 February is a birthday (leap-year born).
        let leap = year.is_none_or(is_leap);
        (day >= 1 && day <= days_in_month(month, leap)).then_some(Birthday { year, month, day })
    }

    /// The year of birth, if the customer gave it.
    pub fn year(self) -> Option<u16> {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1 to 31.
    pub fn day(self) -> u8 {
        self.day
    }
}

/// Whether `year` of the Gregorian calendar has a 29 February.
fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(month: u8, leap: bool) -> u8 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `digits` as a number, if it is exactly that many ASCII digits.
fn number(text: &str, digits: usize) -> Option<u16> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

impl FromStr for Birthday {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('-').collect();
        let (year, month, day) = match parts.as_slice() {
            [month, day] => (None, *month, *day),
            [year, month, day] => (Some(*year), *month, *day),
            _ => return Err(format!("{text:?}: {EXPECTED}")),
        };
        let year = match year {
            Some(y) => Some(number(y, 4).ok_or_else(|| format!("{text:?}: {EXPECTED}"))?),
            None => None,
        };
        let month = number(month, 2).and_then(|m| u8::try_from(m).ok());
        let day = number(day, 2).and_then(|d| u8::try_from(d).ok());
        month
            .zip(day)
            .and_then(|(month, day)| Birthday::new(year, month, day))
            .ok_or_else(|| format!("{text:?}: {EXPECTED}"))
    }
}

impl fmt::Display for Birthday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.year {
            Some(year) => write!(f, "{year:04}-{:02}-{:02}", self.month, self.day),
            None => write!(f, "{:02}-{:02}", self.month, self.day),
        }
    }
}

impl Serialize for Birthday {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Birthday {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_what_is_not_a_date() {
        let parse = |s: &str| s.parse::<Birthday>().ok().map(|b| b.to_string());
        assert_eq!(parse("04-17"), Some("04-17".to_owned()));
        assert_eq!(parse("1990-04-17"), Some("1990-04-17".to_owned()));
        assert_eq!(parse("02-29"), Some("02-29".to_owned()), "leap-year born, year unknown");
        assert_eq!(parse("2000-02-29"), Some("2000-02-29".to_owned()));
        for bad in [
            "1999-02-29",
            "1900-02-29",
            "13-01",
            "00-10",
            "04-31",
            "04-00",
            "4-17",
            "04-7",
            "90-04-17",
            "0990-04-17",
            "1990-04-17-1",
            "",
            "04/17",
            "+4-17",
            "１２-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?} must be refused");
        }
        let err = "04-31".parse::<Birthday>().err().unwrap_or_default();
        assert!(err.contains("MM-DD"), "{err}");
    }

    fn upsert(birthday: &str) -> Result<crate::contract::Event, crate::contract::ContractError> {
        let json = format!(
            r#"{{"schema_version":1,"event_id":"e","type":"customer.upserted","tenant":"t","branch":"b",
            "customer":"c","occurred_at":"2026-01-01T00:00:00Z",
            "body":{{"registered":true,"marketing_consent":false,"birthday":{birthday}}}}}"#
        );
        crate::contract::decode(json.as_bytes())
    }

    #[test]
    fn customer_upserted_carries_a_valid_birthday_and_refuses_others() {
        let Ok(event) = upsert("\"1990-04-17\"") else {
            panic!("a valid birthday decodes")
        };
        let crate::contract::Body::CustomerUpserted(body) = event.body else {
            panic!("an upsert")
        };
        assert_eq!(body.birthday, Birthday::new(Some(1990), 4, 17));
        for bad in ["\"1990-02-30\"", "\"17.04\"", "417", "null"] {
            match upsert(bad) {
                Err(err) if bad == "null" => panic!("null is no birthday: {err:?}"),
                Err(err) => {
                    assert_eq!(err.kind, crate::contract::ErrorKind::InvalidField, "{bad}");
                    assert!(err.reason.contains("body.birthday"), "{bad}: {}", err.reason);
                }
                Ok(event) if bad == "null" => {
                    assert!(
                        matches!(event.body, crate::contract::Body::CustomerUpserted(ref b) if b.birthday.is_none())
                    );
                }
                Ok(_) => panic!("{bad} must be refused"),
            }
        }
    }
}
