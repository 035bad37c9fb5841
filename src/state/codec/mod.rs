//! The binary encoding of state values: ledger entries, order records,
//! bookings and customer profiles.
//!
//! # Versions
//!
//! Every value starts with its format version:
//!
//! | first byte | version | written by |
//! | --- | --- | --- |
//! | `{` | 0: JSON | accrue before the binary state |
//! | `1` | 1: binary, this module | now |
//!
//! Decoders read every version, so a state directory or a changelog written
//! by an older accrue is used as it is: nothing is migrated, and old values
//! are replaced by new ones only when their key is written again. A new
//! layout takes the next number; the old decoder stays.
//!
//! # Layout of version 1
//!
//! Hand-written, not a serde format: the rules' types carry their decimals
//! as strings for JSON, so a serde-based binary format would either keep the
//! strings or need a mirror of every type; the layout here is a few dozen
//! lines per value and states exactly what is stored.
//!
//! - Unsigned integers are LEB128 varints; signed ones are zigzag varints.
//! - A string is its length (varint) and its UTF-8 bytes.
//! - An option is a byte, 0 (absent) or 1, then the value.
//! - Money is integer minor units at the value's own scale: one byte
//!   `scale | sign << 7`, then the magnitude as a varint (`4.00` is
//!   `02 90 03`). The scale travels with the value, so decoding needs no
//!   config, a later change of a tenant's `minor_units` never reinterprets
//!   stored values, and every `rust_decimal` value (negative zero, an
//!   order total sent as `12.5`) comes back exactly as it was.
//! - A time is its Unix seconds (zigzag), nanoseconds (varint) and UTC
//!   offset in seconds (zigzag).
//!
//! A value must be read to its last byte: trailing bytes are corruption.

mod giftcard;
mod ledger;
mod loyalty;
mod records;

#[cfg(test)]
mod tests;

pub use giftcard::GiftCardRecord;
pub use ledger::{decode_ledger, LedgerEntry, Occurred};
pub use records::StateValue;

use rust_decimal::Decimal;
use time::{OffsetDateTime, UtcOffset};

/// The format version this build writes.
pub const VERSION: u8 = 1;

/// The first byte of a version 0 (JSON) value.
const JSON: u8 = b'{';

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value is empty.
    #[error("empty value; restore the state directory from a backup or the changelog")]
    Empty,
    /// The value has a version this build does not know.
    #[error("format version {0} is not known to this build; run the accrue version that wrote it (or a newer one)")]
    UnknownVersion(u8),
    /// The value ends before its last field.
    #[error("value ends early; restore the state directory from a backup or the changelog")]
    Truncated,
    /// A field holds what it cannot hold.
    #[error("invalid {0}; restore the state directory from a backup or the changelog")]
    Invalid(&'static str),
    /// Bytes follow the last field.
    #[error("{0} unexpected bytes after the value; restore the state directory from a backup or the changelog")]
    Trailing(usize),
    /// A version 0 (JSON) value does not parse.
    #[error("JSON value does not parse ({0}); restore the state directory from a backup or the changelog")]
    Json(#[from] serde_json::Error),
}

impl CodecError {
    /// The state error of a value of `family` that did not decode.
    pub fn in_family(self, family: crate::state::Family) -> crate::state::StateError {
        crate::state::StateError::Corrupt {
            family: family.name(),
            detail: self.to_string(),
        }
    }
}

/// The format of a stored value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Version 0.
    Json,
    /// Version 1.
    V1,
}

fn format_of(value: &[u8]) -> Result<Format, CodecError> {
    match value.first() {
        None => Err(CodecError::Empty),
        Some(&JSON) => Ok(Format::Json),
        Some(&VERSION) => Ok(Format::V1),
        Some(&other) => Err(CodecError::UnknownVersion(other)),
    }
}

/// `value` at `scale` decimal places (rust_decimal's `rescale`): how money
/// is stored in a ledger entry and rendered (`4` at scale 2 is `4.00`).
pub fn at_scale(value: Decimal, scale: u32) -> Decimal {
    let mut v = value;
    v.rescale(scale);
    v
}

/// Appends `value` as a LEB128 varint.
pub(crate) fn put_uint(buf: &mut Vec<u8>, value: u128) {
    let mut v = value;
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends the fields of a value.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A value of the current version, with room for `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(VERSION);
        Writer { buf }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    pub(crate) fn uint(&mut self, value: u128) {
        put_uint(&mut self.buf, value);
    }

    pub(crate) fn int(&mut self, value: i64) {
        // Zigzag: small magnitudes of either sign take few bytes.
        self.uint(u128::from(((value << 1) ^ (value >> 63)) as u64));
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.uint(n as u128);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
            None => self.byte(0),
        }
    }

    pub(crate) fn decimal(&mut self, value: Decimal) {
        // The scale is at most 28: it fits the low seven bits.
        let sign = if value.is_sign_negative() { 0x80 } else { 0 };
        self.byte(value.scale() as u8 | sign);
        self.uint(value.mantissa().unsigned_abs());
    }

    pub(crate) fn opt_decimal(&mut self, value: Option<Decimal>) {
        match value {
            Some(v) => {
                self.byte(1);
                self.decimal(v);
            }
            None => self.byte(0),
        }
    }

    pub(crate) fn time(&mut self, at: OffsetDateTime) {
        self.int(at.unix_timestamp());
        self.uint(u128::from(at.nanosecond()));
        self.int(i64::from(at.offset().whole_seconds()));
    }
}

/// Reads the fields of a value, after its version byte.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads a version 1 value.
    pub(crate) fn v1(bytes: &'a [u8]) -> Result<Self, CodecError> {
        match format_of(bytes)? {
            Format::V1 => Ok(Reader { bytes, pos: 1 }),
            Format::Json => Err(CodecError::UnknownVersion(JSON)),
        }
    }

    /// Reads `bytes` from `pos` on (a field of a larger encoding).
    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Self {
        Reader { bytes, pos }
    }

    /// Whether every byte was read (an optional trailing section is absent).
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Fails unless every byte was read.
    pub(crate) fn end(&self) -> Result<(), CodecError> {
        match self.bytes.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }

    pub(crate) fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self.bytes.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid(what)),
        }
    }

    pub(crate) fn uint(&mut self, what: &'static str) -> Result<u128, CodecError> {
        let mut value = 0u128;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let bits = u128::from(b & 0x7f);
            // 19 bytes of 7 bits hold any u128; a longer varint is corrupt.
            if shift >= 128 || (shift > 0 && bits >> (128 - shift) != 0) {
                return Err(CodecError::Invalid(what));
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift = shift.saturating_add(7);
        }
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        u64::try_from(self.uint(what)?).map_err(|_| CodecError::Invalid(what))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        u32::try_from(self.uint(what)?).map_err(|_| CodecError::Invalid(what))
    }

    pub(crate) fn int(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let z = self.u64(what)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let out = self.bytes.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn len(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let n = usize::try_from(self.uint(what)?).map_err(|_| CodecError::Invalid(what))?;
        // A count or length never exceeds the bytes left: a corrupt length
        // fails here instead of reserving memory for it.
        if n > self.bytes.len().saturating_sub(self.pos) {
            return Err(CodecError::Truncated);
        }
        Ok(n)
    }

    pub(crate) fn str(&mut self, what: &'static str) -> Result<String, CodecError> {
        let n = self.len(what)?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| CodecError::Invalid(what))
    }

    pub(crate) fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, CodecError> {
        Ok(if self.flag(what)? { Some(self.str(what)?) } else { None })
    }

    pub(crate) fn decimal(&mut self, what: &'static str) -> Result<Decimal, CodecError> {
        let head = self.byte()?;
        let scale = u32::from(head & 0x7f);
        let magnitude = self.uint(what)?;
        if scale > Decimal::MAX_SCALE || magnitude >> 96 != 0 {
            return Err(CodecError::Invalid(what));
        }
        // rust_decimal's own 16-byte layout keeps every value exactly,
        // negative zero included (its constructors drop that sign).
        let flags = (scale << 16) | (u32::from(head >> 7) << 31);
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&flags.to_le_bytes());
        raw[4..].copy_from_slice(&magnitude.to_le_bytes()[..12]);
        Ok(Decimal::deserialize(raw))
    }

    pub(crate) fn opt_decimal(&mut self, what: &'static str) -> Result<Option<Decimal>, CodecError> {
        Ok(if self.flag(what)? {
            Some(self.decimal(what)?)
        } else {
            None
        })
    }

    pub(crate) fn time(&mut self, what: &'static str) -> Result<OffsetDateTime, CodecError> {
        let secs = self.int(what)?;
        let nanos = self.u32(what)?;
        let offset = i32::try_from(self.int(what)?).map_err(|_| CodecError::Invalid(what))?;
        let offset = UtcOffset::from_whole_seconds(offset).map_err(|_| CodecError::Invalid(what))?;
        OffsetDateTime::from_unix_timestamp(secs)
            .and_then(|t| t.replace_nanosecond(nanos))
            .ok()
            .and_then(|t| t.checked_to_offset(offset))
            .ok_or(CodecError::Invalid(what))
    }
}
