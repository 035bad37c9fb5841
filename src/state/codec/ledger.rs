//! Ledger entries: the record of every balance change, and the source of
//! the accrual event the publisher sends for it.
//!
//! Version 1 stores what the key does not hold: the key gives the
//! partition, tenant, customer and sequence, hence the event's id; its
//! `type` is always [`AccrualEvent::TYPE`]. Decoding renders exactly the
//! [`AccrualEvent`] that was stored as JSON before (version 0).

use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{format_of, CodecError, Format, Reader, Writer};
use crate::contract::{self, AccrualEvent, OutputHeader, SourceRef};
use crate::state::keys;

/// When the entry's source event occurred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurred<'a> {
    /// The time; rendered in RFC 3339 as the event's `occurred_at` was.
    At(OffsetDateTime),
    /// A text kept as it is (the empty text of a time RFC 3339 cannot
    /// render).
    Text(&'a str),
}

/// A ledger entry to store: the fields of its [`AccrualEvent`] that the
/// key does not hold, with money at the scale it is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry<'a> {
    /// The output's envelope version.
    pub schema_version: u32,
    /// Branch of the source event.
    pub branch: &'a str,
    /// `event_id` of the source event.
    pub source_event_id: &'a str,
    /// Where the source event was read.
    pub source: &'a SourceRef,
    /// When the source event occurred.
    pub occurred: Occurred<'a>,
    /// The account.
    pub account: &'a str,
    /// The entry type (`accrual`, `reversal`, ...).
    pub entry_type: &'a str,
    /// The program.
    pub program: &'a str,
    /// Signed amount, at the account's scale ([`super::at_scale`]).
    pub amount: Decimal,
    /// Balance after the entry, at the account's scale.
    pub balance: Decimal,
    /// The amount the program's percentage applied to, at the currency's
    /// scale; `None` renders as `""`.
    pub base_amount: Option<Decimal>,
    /// The tenant's currency.
    pub currency: &'a str,
    /// Text the customer sees.
    pub description: Option<&'a str>,
    /// Who made a manual adjustment.
    pub operator: Option<&'a str>,
}

impl LedgerEntry<'_> {
    /// The version 1 encoding.
    pub fn encode(&self) -> Vec<u8> {
        let text = self.branch.len()
            + self.source_event_id.len()
            + self.source.topic.len()
            + self.account.len()
            + self.entry_type.len()
            + self.program.len()
            + self.currency.len()
            + self.description.map_or(0, str::len)
            + self.operator.map_or(0, str::len);
        let mut w = Writer::new(64 + text);
        w.uint(u128::from(self.schema_version));
        w.str(self.branch);
        w.str(self.source_event_id);
        w.str(&self.source.topic);
        w.uint(u128::from(self.source.partition));
        w.int(self.source.offset);
        match self.occurred {
            Occurred::At(at) => {
                w.byte(1);
                w.time(at);
            }
            Occurred::Text(text) => {
                w.byte(0);
                w.str(text);
            }
        }
        w.str(self.account);
        w.str(self.entry_type);
        w.str(self.program);
        w.decimal(self.amount);
        w.decimal(self.balance);
        w.opt_decimal(self.base_amount);
        w.str(self.currency);
        w.opt_str(self.description);
        w.opt_str(self.operator);
        w.finish()
    }
}

/// The accrual event of the ledger entry stored under `key` (made by
/// [`keys::ledger`]) with `value`, of any version.
///
/// # Errors
/// [`CodecError`] if the value or the key is corrupt.
pub fn decode_ledger(key: &[u8], value: &[u8]) -> Result<AccrualEvent, CodecError> {
    if format_of(value)? == Format::Json {
        return Ok(serde_json::from_slice(value)?);
    }
    let at = keys::parse_ledger(key).ok_or(CodecError::Invalid("ledger key"))?;
    let mut r = Reader::v1(value)?;
    let schema_version = r.u32("schema_version")?;
    let branch = r.str("branch")?;
    let source_event_id = r.str("source_event_id")?;
    let source = SourceRef {
        topic: r.str("source topic")?,
        partition: r.u32("source partition")?,
        offset: r.int("source offset")?,
    };
    let occurred_at = if r.flag("occurred_at")? {
        r.time("occurred_at")?
            .format(&Rfc3339)
            .map_err(|_| CodecError::Invalid("occurred_at"))?
    } else {
        r.str("occurred_at")?
    };
    let account = r.str("account")?;
    let entry_type = r.str("entry_type")?;
    let program = r.str("program")?;
    let amount = r.decimal("amount")?.to_string();
    let balance = r.decimal("balance")?.to_string();
    let base_amount = r.opt_decimal("base_amount")?.map(|d| d.to_string()).unwrap_or_default();
    let currency = r.str("currency")?;
    let description = r.opt_str("description")?;
    let operator = r.opt_str("operator")?;
    r.end()?;
    Ok(AccrualEvent {
        header: OutputHeader {
            id: contract::output_id(at.p, at.seq),
            event_type: AccrualEvent::TYPE.to_owned(),
            schema_version,
            tenant: at.tenant,
            customer: at.customer,
            branch,
            source_event_id,
            source,
            occurred_at,
        },
        account,
        entry_type,
        program,
        amount,
        balance,
        base_amount,
        currency,
        description,
        operator,
    })
}
