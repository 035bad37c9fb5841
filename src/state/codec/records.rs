//! The records the rules read back: an order's movements (for refunds), a
//! booking, a customer's profile.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use super::{format_of, CodecError, Format, Reader, Writer};
use crate::contract::{Amount, Birthday};
use crate::programs::Hold;
use crate::rules::{Booking, BookingState, Customer, Movement, OrderRecord};

/// A value stored in one family, in the current version, and read from any.
pub trait StateValue: Sized {
    /// The version 1 encoding.
    fn encode(&self) -> Vec<u8>;

    /// Decodes a value of any version.
    ///
    /// # Errors
    /// [`CodecError`] if the value is corrupt or of an unknown version.
    fn decode(value: &[u8]) -> Result<Self, CodecError>;
}

/// Version 0 (JSON) or version 1 (`read`).
fn decode_with<T: DeserializeOwned>(
    value: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    if format_of(value)? == Format::Json {
        return Ok(serde_json::from_slice(value)?);
    }
    let mut r = Reader::v1(value)?;
    let out = read(&mut r)?;
    r.end()?;
    Ok(out)
}

impl StateValue for OrderRecord {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(16 + 24 * (self.accruals.len() + self.redemptions.len()));
        w.decimal(self.total);
        w.decimal(self.refunded);
        for list in [&self.accruals, &self.redemptions] {
            w.len(list.len());
            for m in list {
                w.str(&m.account);
                w.str(&m.program);
                w.decimal(m.amount);
                w.decimal(m.reversed);
            }
        }
        // What expired of each accrual is a trailing section, absent while
        // nothing expired, so older records read as they were written.
        if self.accruals.iter().any(|m| !m.expired.is_zero()) {
            for m in &self.accruals {
                w.decimal(m.expired);
            }
        }
        w.finish()
    }

    fn decode(value: &[u8]) -> Result<Self, CodecError> {
        decode_with(value, |r| {
            let total = r.decimal("order total")?;
            let refunded = r.decimal("order refunded")?;
            let mut accruals = movements(r)?;
            let redemptions = movements(r)?;
            if !r.at_end() {
                for m in &mut accruals {
                    m.expired = r.decimal("accrual expired")?;
                }
            }
            Ok(OrderRecord {
                total,
                refunded,
                accruals,
                redemptions,
            })
        })
    }
}

fn movements(r: &mut Reader<'_>) -> Result<Vec<Movement>, CodecError> {
    let n = r.len("movement count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Movement {
            account: r.str("movement account")?.into(),
            program: r.str("movement program")?.into(),
            amount: r.decimal("movement amount")?,
            reversed: r.decimal("movement reversed")?,
            expired: rust_decimal::Decimal::ZERO,
        });
    }
    Ok(out)
}

fn state_tag(state: BookingState) -> u8 {
    match state {
        BookingState::Scheduled => 0,
        BookingState::Credited => 1,
        BookingState::Cancelled => 2,
        BookingState::NoShow => 3,
    }
}

fn state_of(tag: u8) -> Result<BookingState, CodecError> {
    match tag {
        0 => Ok(BookingState::Scheduled),
        1 => Ok(BookingState::Credited),
        2 => Ok(BookingState::Cancelled),
        3 => Ok(BookingState::NoShow),
        _ => Err(CodecError::Invalid("booking state")),
    }
}

impl StateValue for Booking {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(48 + self.customer.len() + self.event_id.len());
        w.str(&self.customer);
        w.str(&self.branch);
        w.str(&self.service);
        w.decimal(self.points);
        match self.due_ms {
            Some(due) => {
                w.byte(1);
                w.int(due);
            }
            None => w.byte(0),
        }
        w.byte(state_tag(self.state));
        w.str(&self.event_id);
        w.str(&self.source_topic);
        w.int(self.source_offset);
        w.finish()
    }

    fn decode(value: &[u8]) -> Result<Self, CodecError> {
        decode_with(value, |r| {
            Ok(Booking {
                customer: r.str("booking customer")?,
                branch: r.str("booking branch")?,
                service: r.str("booking service")?,
                points: r.decimal("booking points")?,
                due_ms: if r.flag("booking due")? {
                    Some(r.int("booking due")?)
                } else {
                    None
                },
                state: state_of(r.byte()?)?,
                event_id: r.str("booking event_id")?,
                source_topic: r.str("booking source topic")?,
                source_offset: r.int("booking source offset")?,
            })
        })
    }
}

/// Bits of a profile's flags byte.
const REGISTERED: u8 = 1;
const MARKETING_CONSENT: u8 = 2;
const VISITED: u8 = 4;

impl StateValue for Customer {
    fn encode(&self) -> Vec<u8> {
        let groups: usize = self.groups.iter().map(|g| g.len() + 1).sum();
        let mut w = Writer::new(32 + groups);
        w.opt_str(self.phone.as_deref());
        w.len(self.groups.len());
        for group in self.groups.iter() {
            w.str(group);
        }
        let mut flags = 0;
        for (set, bit) in [
            (self.registered, REGISTERED),
            (self.marketing_consent, MARKETING_CONSENT),
            (self.visited, VISITED),
        ] {
            if set {
                flags |= bit;
            }
        }
        w.byte(flags);
        w.opt_decimal(self.discount_percent.map(Amount::value));
        w.opt_decimal(self.accrual_percent.map(Amount::value));
        w.opt_str(self.referred_by.as_deref());
        // Holds are a trailing section, absent when there are none, so a
        // profile without holds is byte for byte what it was before them;
        // the bonuses' section follows it the same way (holds then written
        // even when there are none).
        let bonuses = self.birthday.is_some() || self.birthday_bonus_year.is_some() || self.welcomed;
        if !self.holds.is_empty() || bonuses {
            w.len(self.holds.len());
            for hold in &self.holds {
                w.str(&hold.id);
                w.str(&hold.order_id);
                w.int(hold.created_ms);
                w.int(hold.expires_ms);
                w.len(hold.amounts.len());
                for (account, amount) in &hold.amounts {
                    w.str(account);
                    w.decimal(*amount);
                }
            }
        }
        if bonuses {
            write_bonuses(&mut w, self);
        }
        w.finish()
    }

    fn decode(value: &[u8]) -> Result<Self, CodecError> {
        decode_with(value, |r| {
            let phone = r.opt_str("phone")?;
            let n = r.len("group count")?;
            let mut groups = BTreeSet::new();
            for _ in 0..n {
                groups.insert(r.str("group")?);
            }
            let flags = r.byte()?;
            if flags & !(REGISTERED | MARKETING_CONSENT | VISITED) != 0 {
                return Err(CodecError::Invalid("profile flags"));
            }
            let mut profile = Customer {
                phone,
                groups: groups.into_iter().collect(),
                registered: flags & REGISTERED != 0,
                marketing_consent: flags & MARKETING_CONSENT != 0,
                discount_percent: r.opt_decimal("discount_percent")?.map(Amount::new),
                accrual_percent: r.opt_decimal("accrual_percent")?.map(Amount::new),
                visited: flags & VISITED != 0,
                referred_by: r.opt_str("referred_by")?,
                holds: if r.at_end() { Vec::new() } else { holds(r)? },
                birthday: None,
                birthday_bonus_year: None,
                welcomed: false,
            };
            if !r.at_end() {
                read_bonuses(r, &mut profile)?;
            }
            Ok(profile)
        })
    }
}

/// Bits of the bonuses section's flags byte.
const WELCOMED: u8 = 1;
const BIRTHDAY: u8 = 2;
const BIRTH_YEAR: u8 = 4;
const BONUS_YEAR: u8 = 8;

/// The birthday and what the birthday and welcome bonuses credited.
fn write_bonuses(w: &mut Writer, profile: &Customer) {
    let birth_year = profile.birthday.and_then(Birthday::year);
    let mut flags = 0;
    for (set, bit) in [
        (profile.welcomed, WELCOMED),
        (profile.birthday.is_some(), BIRTHDAY),
        (birth_year.is_some(), BIRTH_YEAR),
        (profile.birthday_bonus_year.is_some(), BONUS_YEAR),
    ] {
        if set {
            flags |= bit;
        }
    }
    w.byte(flags);
    if let Some(birthday) = profile.birthday {
        w.byte(birthday.month());
        w.byte(birthday.day());
    }
    if let Some(year) = birth_year {
        w.int(i64::from(year));
    }
    if let Some(year) = profile.birthday_bonus_year {
        w.int(i64::from(year));
    }
}

fn read_bonuses(r: &mut Reader<'_>, profile: &mut Customer) -> Result<(), CodecError> {
    let flags = r.byte()?;
    if flags & !(WELCOMED | BIRTHDAY | BIRTH_YEAR | BONUS_YEAR) != 0
        || (flags & BIRTH_YEAR != 0 && flags & BIRTHDAY == 0)
    {
        return Err(CodecError::Invalid("profile bonus flags"));
    }
    profile.welcomed = flags & WELCOMED != 0;
    if flags & BIRTHDAY != 0 {
        let (month, day) = (r.byte()?, r.byte()?);
        let year = if flags & BIRTH_YEAR != 0 {
            Some(u16::try_from(r.int("birth year")?).map_err(|_| CodecError::Invalid("birth year"))?)
        } else {
            None
        };
        profile.birthday = Some(Birthday::new(year, month, day).ok_or(CodecError::Invalid("birthday"))?);
    }
    if flags & BONUS_YEAR != 0 {
        let year = r.int("birthday bonus year")?;
        profile.birthday_bonus_year =
            Some(i16::try_from(year).map_err(|_| CodecError::Invalid("birthday bonus year"))?);
    }
    Ok(())
}

fn holds(r: &mut Reader<'_>) -> Result<Vec<Hold>, CodecError> {
    let n = r.len("hold count")?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let id = r.str("hold id")?;
        let order_id = r.str("hold order id")?;
        let created_ms = r.int("hold created")?;
        let expires_ms = r.int("hold expiry")?;
        let m = r.len("hold account count")?;
        let mut amounts = Vec::with_capacity(m.min(16));
        for _ in 0..m {
            let account: std::sync::Arc<str> = r.str("hold account")?.into();
            amounts.push((account, r.decimal("hold amount")?));
        }
        out.push(Hold {
            id,
            order_id,
            amounts,
            created_ms,
            expires_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::Hold;

    fn profile() -> Customer {
        Customer {
            phone: Some("+10000000001".into()),
            registered: true,
            visited: true,
            ..Customer::default()
        }
    }

    fn hold() -> Hold {
        Hold {
            id: "au_1".into(),
            order_id: "o-1".into(),
            amounts: vec![("bonus".into(), rust_decimal::Decimal::from(120))],
            created_ms: 1_000,
            expires_ms: 2_000,
        }
    }

    fn with_bonuses(mut p: Customer) -> Customer {
        p.birthday = Birthday::new(Some(1992), 2, 29);
        p.birthday_bonus_year = Some(2027);
        p.welcomed = true;
        p
    }

    #[test]
    fn a_profile_without_bonuses_is_written_as_before_them() {
        let plain = profile();
        let held = Customer {
            holds: vec![hold()],
            ..profile()
        };
        // Before the bonuses' section: the holds section only when there
        // are holds, and nothing after it.
        let plain_bytes = plain.encode();
        let held_bytes = held.encode();
        let bonus_bytes = with_bonuses(profile()).encode();
        assert!(held_bytes.starts_with(&plain_bytes));
        assert_eq!(bonus_bytes.get(..plain_bytes.len()), Some(&plain_bytes[..]));
        // A bonuses section without holds writes an empty holds count (0)
        // and then the flags: welcomed, birthday, birth year, bonus year.
        assert_eq!(
            bonus_bytes.get(plain_bytes.len()..plain_bytes.len() + 2),
            Some(&[0u8, 15][..])
        );
        for value in [plain, held] {
            assert_eq!(Customer::decode(&value.encode()).ok(), Some(value));
        }
    }

    #[test]
    fn bonuses_round_trip_with_and_without_holds_and_year() {
        let mut cases = vec![
            with_bonuses(profile()),
            with_bonuses(Customer {
                holds: vec![hold()],
                ..profile()
            }),
        ];
        let mut only_welcomed = profile();
        only_welcomed.welcomed = true;
        cases.push(only_welcomed);
        let mut no_birth_year = profile();
        no_birth_year.birthday = Birthday::new(None, 12, 31);
        cases.push(no_birth_year);
        let mut only_bonus_year = profile();
        only_bonus_year.birthday_bonus_year = Some(-3);
        cases.push(only_bonus_year);
        for value in cases {
            assert_eq!(Customer::decode(&value.encode()).ok(), Some(value.clone()), "{value:?}");
        }
    }

    #[test]
    fn damaged_bonus_sections_are_errors() {
        let mut bytes = profile().encode();
        let base = bytes.len();
        bytes.extend_from_slice(&[0, 16]);
        assert!(Customer::decode(&bytes).is_err(), "unknown flag");
        bytes.truncate(base);
        bytes.extend_from_slice(&[0, 4]);
        assert!(Customer::decode(&bytes).is_err(), "a birth year without a birthday");
        bytes.truncate(base);
        bytes.extend_from_slice(&[0, 2, 2, 30]);
        assert!(Customer::decode(&bytes).is_err(), "30 February");
        bytes.truncate(base);
        bytes.extend_from_slice(&[0, 2, 2]);
        assert!(Customer::decode(&bytes).is_err(), "a birthday cut short");
    }
}
