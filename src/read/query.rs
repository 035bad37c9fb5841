//! Pure parts of a ledger query: the filters, their parsing from query
//! parameters, the opaque pagination cursor and the CSV row format.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::totals::list_param;
use crate::contract::AccrualEvent;
use crate::state::keys;

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;

/// A parameter the caller got wrong. The message names the parameter and
/// never echoes stored data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{name}`: {reason}")]
pub struct QueryError {
    /// The parameter.
    pub name: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

fn bad(name: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Filters of a ledger query within one tenant. Every filter that is set
/// must match; `from` is inclusive and `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerQuery {
    /// The tenant (from the token or the command line, never from the query).
    pub tenant: String,
    /// Only this customer: narrows the scan to the customer's ledger prefix.
    pub customer: Option<String>,
    /// Only these entry types, e.g. `referral_accrual` (empty: all).
    pub entry_type: Vec<String>,
    /// Only these programs (promotions; empty: all).
    pub program: Vec<String>,
    /// Only these branches (the source; empty: all).
    pub branch: Vec<String>,
    /// Only these accounts, e.g. `cashback` (empty: all).
    pub account: Vec<String>,
    /// Earliest `occurred_at`, Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Latest `occurred_at`, Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
}

/// Where a page starts: after this position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A customer's ledger: partition and sequence of the last row seen.
    Customer {
        /// Partition.
        p: u32,
        /// Sequence.
        seq: u64,
    },
    /// A tenant's ledger by time: the last row seen, in (time, partition,
    /// sequence) order.
    Time {
        /// `occurred_at`, Unix milliseconds.
        ms: i64,
        /// Partition.
        p: u32,
        /// Sequence.
        seq: u64,
    },
}

impl Cursor {
    /// The opaque text form: URL-safe base64 of a tagged binary position.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(21);
        match *self {
            Cursor::Customer { p, seq } => {
                raw.push(b'c');
                raw.extend_from_slice(&p.to_be_bytes());
                raw.extend_from_slice(&seq.to_be_bytes());
            }
            Cursor::Time { ms, p, seq } => {
                raw.push(b't');
                raw.extend_from_slice(&ms.to_be_bytes());
                raw.extend_from_slice(&p.to_be_bytes());
                raw.extend_from_slice(&seq.to_be_bytes());
            }
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses [`Cursor::encode`]'s output; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Cursor> {
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        let u32_at = |i: usize| {
            raw.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
        };
        let u64_at = |i: usize| {
            raw.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        match (raw.first(), raw.len()) {
            (Some(b'c'), 13) => Some(Cursor::Customer {
                p: u32_at(1)?,
                seq: u64_at(5)?,
            }),
            (Some(b't'), 21) => Some(Cursor::Time {
                ms: i64::try_from(u64_at(1)?).ok()?,
                p: u32_at(9)?,
                seq: u64_at(13)?,
            }),
            _ => None,
        }
    }
}

/// Paging of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageParams {
    /// Rows per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
}

impl Default for PageParams {
    fn default() -> Self {
        PageParams {
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl LedgerQuery {
    /// Builds a query of `tenant` from decoded query parameters: `customer`,
    /// `entry_type`, `program`, `branch`, `account` (each a comma-separated
    /// list of accepted values), `from`, `to` (RFC 3339; a `+` of the offset
    /// that arrived as a space is read back as `+`), `limit` and `cursor`.
    ///
    /// # Errors
    /// [`QueryError`] naming the first bad, repeated or unknown parameter.
    pub fn parse<'a>(
        tenant: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(LedgerQuery, PageParams), QueryError> {
        let mut query = LedgerQuery {
            tenant: tenant.to_owned(),
            ..LedgerQuery::default()
        };
        let mut page = PageParams::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            if seen.contains(&name) {
                return Err(bad(name, "given more than once"));
            }
            seen.push(name);
            let text = || -> Result<Option<String>, QueryError> {
                if value.is_empty() || value.len() > 256 || value.contains('\0') {
                    Err(bad(name, "must be 1 to 256 characters, without NUL"))
                } else {
                    Ok(Some(value.to_owned()))
                }
            };
            match name {
                "customer" => query.customer = text()?,
                "entry_type" => query.entry_type = list_param(name, value)?,
                "program" => query.program = list_param(name, value)?,
                "branch" => query.branch = list_param(name, value)?,
                "account" => query.account = list_param(name, value)?,
                "from" => query.from_ms = Some(time_param(name, value)?),
                "to" => query.to_ms = Some(time_param(name, value)?),
                "limit" => {
                    page.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad(name, format!("must be a whole number from 1 to {MAX_LIMIT}")))?;
                }
                "cursor" => {
                    page.cursor =
                        Some(Cursor::decode(value).ok_or_else(|| bad(name, "is not a cursor this API returned"))?);
                }
                _ => {
                    return Err(bad(
                        name,
                        "unknown; use customer, entry_type, program, branch, account, from, to, limit or cursor",
                    ))
                }
            }
        }
        if let (Some(from), Some(to)) = (query.from_ms, query.to_ms) {
            if from >= to {
                return Err(bad("to", "must be later than `from`"));
            }
        }
        let kind_ok = match page.cursor {
            None => true,
            Some(Cursor::Customer { .. }) => query.customer.is_some(),
            Some(Cursor::Time { .. }) => query.customer.is_none(),
        };
        if !kind_ok {
            return Err(bad(
                "cursor",
                "belongs to a query with different filters; keep the filters of the first page",
            ));
        }
        Ok((query, page))
    }

    /// Whether `entry` is a partner's customer's entry for a visit to this
    /// query's tenant (seed 000; its program is `partner:<this tenant>`):
    /// the place's index points at it, and its report shows it.
    pub fn is_partner_visit(&self, entry: &AccrualEvent) -> bool {
        entry.header.tenant != self.tenant
            && entry
                .program
                .strip_prefix("partner:")
                .is_some_and(|place| place == self.tenant)
    }

    /// Whether `entry`, which occurred at `occurred_ms`, passes every filter.
    pub fn matches(&self, entry: &AccrualEvent, occurred_ms: i64) -> bool {
        let eq = |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        let any = |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f == value);
        (entry.header.tenant == self.tenant || self.is_partner_visit(entry))
            && eq(&self.customer, &entry.header.customer)
            && any(&self.entry_type, &entry.entry_type)
            && any(&self.program, &entry.program)
            && any(&self.branch, &entry.header.branch)
            && any(&self.account, &entry.account)
            && self.from_ms.is_none_or(|from| occurred_ms >= from)
            && self.to_ms.is_none_or(|to| occurred_ms < to)
    }
}

/// Unix milliseconds of an RFC 3339 time. A query string's `+` decodes as
/// a space, so `2026-11-01T00:00:00+04:00` sent unescaped arrives as
/// `...00 04:00`: a space is read as the `+` it was (RFC 3339 has none).
pub(crate) fn time_param(name: &str, value: &str) -> Result<i64, QueryError> {
    let restored;
    let text = if value.contains(' ') {
        restored = value.replace(' ', "+");
        &restored
    } else {
        value
    };
    keys::rfc3339_ms(text)
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| bad(name, "must be an RFC 3339 time after 1970, e.g. 2026-11-01T00:00:00Z"))
}

/// Splits a raw query string into percent-decoded pairs (`+` is a space).
///
/// # Errors
/// [`QueryError`] if a name or value is not valid percent-encoded UTF-8.
pub fn split_query(raw: Option<&str>) -> Result<Vec<(String, String)>, QueryError> {
    let mut out = Vec::new();
    for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = percent_decode(name).ok_or_else(|| bad("?", "the query string is not valid percent-encoding"))?;
        let value = percent_decode(value).ok_or_else(|| bad(&name, "is not valid percent-encoded UTF-8"))?;
        out.push((name, value));
    }
    Ok(out)
}

/// Decodes `%XX` escapes and `+`; `None` if the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The CSV columns, in order. New columns are added at the end, so that
/// readers that go by position keep working.
pub const CSV_HEADER: &str = "id,occurred_at,tenant,customer,branch,account,entry_type,program,amount,balance,base_amount,currency,source_event_id,description,operator\r\n";

/// Appends one CSV row (RFC 4180, CRLF) of `entry` to `out`.
///
/// Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, tab or CR) is prefixed with `'`; amounts are numbers and left as
/// they are.
pub fn csv_row(entry: &AccrualEvent, out: &mut Vec<u8>) {
    let text = [
        (&entry.header.id, false),
        (&entry.header.occurred_at, false),
        (&entry.header.tenant, true),
        (&entry.header.customer, true),
        (&entry.header.branch, true),
        (&entry.account, true),
        (&entry.entry_type, true),
        (&entry.program, true),
        (&entry.amount, false),
        (&entry.balance, false),
        (&entry.base_amount, false),
        (&entry.currency, true),
        (&entry.header.source_event_id, true),
    ];
    for (value, guard) in text {
        csv_field(value, guard, out);
        out.push(b',');
    }
    csv_field(entry.description.as_deref().unwrap_or_default(), true, out);
    out.push(b',');
    csv_field(entry.operator.as_deref().unwrap_or_default(), true, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends one CSV text field (quoted as needed, formulas defused).
pub(crate) fn csv_text(value: &str, out: &mut Vec<u8>) {
    csv_field(value, true, out);
}

fn csv_field(value: &str, guard_formula: bool, out: &mut Vec<u8>) {
    let formula = guard_formula && value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for b in value.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quote {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests;
