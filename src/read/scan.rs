//! Reads against a RocksDB snapshot: balances, one page of the ledger, and
//! the whole ledger as a stream of CSV or JSON lines.

use std::io::Write;

use rust_decimal::Decimal;
use serde::Serialize;

use super::loyalty::{self, ExpiringCredit};
use super::query::{csv_row, Cursor, LedgerQuery, PageParams, CSV_HEADER};
use crate::contract::AccrualEvent;
use crate::programs::TenantConfig;
use crate::state::codec::decode_ledger;
use crate::state::{keys, Family, Snapshot, StateError};

/// Rows examined for one page at most. A page that reaches it ends early
/// with a cursor, so a very selective filter never makes one request scan
/// the whole ledger.
pub const SCAN_BUDGET: u64 = 100_000;

/// A read failure.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The state store failed or holds a value it should not.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing the export failed (the client went away, or stdout closed).
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// One balance of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// The account, e.g. `cashback`.
    pub account: String,
    /// The balance, decimal string.
    pub balance: String,
    /// The tenant's currency (points accounts count points).
    pub currency: String,
    /// `points` for a points account, else the currency: what the balance
    /// counts.
    pub unit: String,
    /// The credits of the account that will expire, soonest first (empty
    /// for an account without an expiry rule).
    pub expiring: Vec<ExpiringCredit>,
}

/// A customer's balances, every account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balances {
    /// Tenant.
    pub tenant: String,
    /// Customer.
    pub customer: String,
    /// One per account that ever moved, by account name.
    pub balances: Vec<Balance>,
    /// The customer's tier (level id); `null` without tiers or below every
    /// level.
    pub tier: Option<String>,
}

/// One page of the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The matching entries, in page order.
    pub entries: Vec<AccrualEvent>,
    /// Pass as `cursor` for the next page; `null` when there is no more.
    pub next_cursor: Option<String>,
    /// Rows examined to build this page (the query's cost).
    pub scanned: u64,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON ledger entry per line.
    JsonLines,
}

/// A customer's balances in every partition, or `None` if the tenant has
/// no such customer (no balance and no profile). The partition of a
/// customer is not known here, so every partition holding balances is
/// probed with one prefix seek.
///
/// # Errors
/// [`StateError`] if the store fails or holds a corrupt balance.
pub fn balances(snap: &Snapshot<'_>, tenant: &TenantConfig, customer: &str) -> Result<Option<Balances>, StateError> {
    let mut found: std::collections::BTreeMap<String, Decimal> = Default::default();
    for p in snap.partitions(Family::Balances)? {
        let prefix = keys::balance_prefix(p, &tenant.id, customer);
        for item in snap.iter_from(Family::Balances, &prefix)? {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let account = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let balance = keys::decode_decimal(&value).ok_or_else(|| StateError::Corrupt {
                family: Family::Balances.name(),
                detail: "balance is not 16 bytes".into(),
            })?;
            *found.entry(account).or_default() += balance;
        }
    }
    if found.is_empty() && !has_profile(snap, &tenant.id, customer)? {
        return Ok(None);
    }
    let records = loyalty::records(snap, tenant, customer)?;
    Ok(Some(Balances {
        tenant: tenant.id.clone(),
        customer: customer.to_owned(),
        balances: found
            .into_iter()
            .map(|(account, mut balance)| {
                balance.rescale(crate::rules::scale_of(tenant, &account));
                Balance {
                    unit: tenant.unit_of(&account).to_owned(),
                    expiring: loyalty::expiring(tenant, records.lots.as_ref(), &account),
                    account,
                    balance: balance.to_string(),
                    currency: tenant.currency.clone(),
                }
            })
            .collect(),
        tier: loyalty::tier(records.loyalty.as_ref()),
    }))
}

fn has_profile(snap: &Snapshot<'_>, tenant: &str, customer: &str) -> Result<bool, StateError> {
    for p in snap.partitions(Family::Customers)? {
        if snap
            .get(Family::Customers, &keys::customer(p, tenant, customer))?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One page of `query`'s entries after `page.cursor`.
///
/// Rows come in sequence order for a customer's ledger and in
/// (`occurred_at`, partition, sequence) order otherwise. The cursor is the
/// position of the last row examined, so pages never overlap or skip, and
/// entries written between two requests appear only if they sort after the
/// cursor.
///
/// # Errors
/// [`StateError`] if the store fails or an entry is corrupt.
pub fn page(snap: &Snapshot<'_>, query: &LedgerQuery, page: PageParams) -> Result<Page, StateError> {
    let mut out = Page {
        entries: Vec::new(),
        next_cursor: None,
        scanned: 0,
    };
    let mut last: Option<Cursor> = None;
    let mut last_returned: Option<Cursor> = None;
    walk(snap, query, page.cursor, |pos, entry| {
        if let Some(entry) = entry {
            if out.entries.len() == page.limit {
                // One more match exists: the next page starts after the last row returned.
                out.next_cursor = last_returned.map(|c| c.encode());
                return Ok(false);
            }
            out.entries.push(entry);
            last_returned = Some(pos);
        }
        out.scanned += 1;
        last = Some(pos);
        if out.scanned >= SCAN_BUDGET {
            out.next_cursor = last.map(|c| c.encode());
            return Ok::<_, StateError>(false);
        }
        Ok::<_, StateError>(true)
    })?;
    Ok(out)
}

/// Writes every entry matching `query` to `out`, streaming: memory does not
/// grow with the number of rows. Returns the number of rows written.
///
/// # Errors
/// [`ReadError`] if the store or the writer fails; `out` then holds a
/// truncated export.
pub fn export(snap: &Snapshot<'_>, query: &LedgerQuery, format: Format, out: &mut dyn Write) -> Result<u64, ReadError> {
    let mut rows = 0u64;
    let mut buf = Vec::with_capacity(1024);
    if format == Format::Csv {
        out.write_all(CSV_HEADER.as_bytes())?;
    }
    walk(snap, query, None, |_, entry| {
        if let Some(entry) = entry {
            buf.clear();
            match format {
                Format::Csv => csv_row(&entry, &mut buf),
                Format::JsonLines => {
                    serde_json::to_writer(&mut buf, &entry).map_err(|e| ReadError::Write(e.into()))?;
                    buf.push(b'\n');
                }
            }
            out.write_all(&buf)?;
            rows += 1;
        }
        Ok::<_, ReadError>(true)
    })?;
    out.flush()?;
    Ok(rows)
}

/// Calls `visit` with every entry matching `query`, in export order, until
/// it returns `false`.
///
/// # Errors
/// [`ReadError`] if the store fails, or what `visit` returns.
pub fn each(
    snap: &Snapshot<'_>,
    query: &LedgerQuery,
    mut visit: impl FnMut(AccrualEvent) -> Result<bool, ReadError>,
) -> Result<(), ReadError> {
    walk(snap, query, None, |_, entry| match entry {
        Some(entry) => visit(entry),
        None => Ok(true),
    })
}

/// Visits every row in the narrowed range after `cursor`, in page order,
/// with the entry if it matches the filters; stops when `visit` returns
/// `false`.
fn walk<E: From<StateError>>(
    snap: &Snapshot<'_>,
    query: &LedgerQuery,
    cursor: Option<Cursor>,
    mut visit: impl FnMut(Cursor, Option<AccrualEvent>) -> Result<bool, E>,
) -> Result<(), E> {
    let mut judge = |key: &[u8], raw: &[u8]| -> Result<Option<AccrualEvent>, StateError> {
        let mut entry = decode_ledger(key, raw).map_err(|e| e.in_family(Family::Ledger))?;
        let ms = keys::rfc3339_ms(&entry.header.occurred_at).unwrap_or_default();
        if query.is_partner_visit(&entry) {
            // The balance is the partner's customer's, not the place's business.
            entry.balance.clear();
        }
        Ok(query.matches(&entry, ms).then_some(entry))
    };
    match &query.customer {
        Some(customer) => {
            let (start_p, start_seq) = match cursor {
                Some(Cursor::Customer { p, seq }) => (p, seq.checked_add(1)),
                _ => (0, Some(0)),
            };
            for p in snap.partitions(Family::Ledger)? {
                let from_seq = match p.cmp(&start_p) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => match start_seq {
                        Some(seq) => seq,
                        None => continue,
                    },
                    std::cmp::Ordering::Greater => 0,
                };
                let prefix = keys::ledger_prefix(p, &query.tenant, customer);
                let from = keys::ledger(p, &query.tenant, customer, from_seq);
                for item in snap.iter_from(Family::Ledger, &from)? {
                    let (key, value) = item?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let seq = keys::decode_u64(&key[prefix.len()..]).unwrap_or_default();
                    if !visit(Cursor::Customer { p, seq }, judge(&key, &value)?)? {
                        return Ok(());
                    }
                }
            }
            Ok(())
        }
        None => walk_by_time(snap, query, cursor, &mut judge, &mut visit),
    }
}

/// The head of one partition's index range.
struct Head {
    ms: i64,
    p: u32,
    seq: u64,
    ledger_key: Vec<u8>,
}

/// Merges every partition's index range by (time, partition, sequence).
fn walk_by_time<E: From<StateError>>(
    snap: &Snapshot<'_>,
    query: &LedgerQuery,
    cursor: Option<Cursor>,
    judge: &mut impl FnMut(&[u8], &[u8]) -> Result<Option<AccrualEvent>, StateError>,
    visit: &mut impl FnMut(Cursor, Option<AccrualEvent>) -> Result<bool, E>,
) -> Result<(), E> {
    let from_ms = query.from_ms.unwrap_or(0);
    let to_ms = query.to_ms.unwrap_or(i64::MAX);
    let mut iters = Vec::new();
    for p in snap.partitions(Family::LedgerByTime)? {
        // The first key after the cursor in (time, partition, seq) order.
        let (ms, seq) = match cursor {
            Some(Cursor::Time { ms, p: cp, seq }) => match p.cmp(&cp) {
                std::cmp::Ordering::Less => (ms.saturating_add(1), 0),
                std::cmp::Ordering::Equal => match seq.checked_add(1) {
                    Some(next) => (ms, next),
                    None => (ms.saturating_add(1), 0),
                },
                std::cmp::Ordering::Greater => (ms, 0),
            },
            _ => (0, 0),
        };
        let (ms, seq) = if ms < from_ms { (from_ms, 0) } else { (ms, seq) };
        let prefix = keys::ledger_by_time_prefix(p, &query.tenant);
        let iter = snap.iter_from(Family::LedgerByTime, &keys::ledger_by_time(p, &query.tenant, ms, seq))?;
        iters.push((p, prefix, iter));
    }
    let mut heads: Vec<Option<Head>> = Vec::with_capacity(iters.len());
    for (p, prefix, iter) in &mut iters {
        heads.push(next_head(*p, prefix, iter, to_ms)?);
    }
    loop {
        let Some(i) = (0..heads.len())
            .filter_map(|i| heads[i].as_ref().map(|h| (h.ms, h.p, h.seq, i)))
            .min()
            .map(|(.., i)| i)
        else {
            return Ok(());
        };
        let Some(head) = heads[i].take() else { return Ok(()) };
        let (p, prefix, iter) = &mut iters[i];
        heads[i] = next_head(*p, prefix, iter, to_ms)?;
        let entry = match snap.get(Family::Ledger, &head.ledger_key)? {
            Some(raw) => judge(&head.ledger_key, &raw)?,
            None => None,
        };
        let pos = Cursor::Time {
            ms: head.ms,
            p: head.p,
            seq: head.seq,
        };
        if !visit(pos, entry)? {
            return Ok(());
        }
    }
}

fn next_head(
    p: u32,
    prefix: &[u8],
    iter: &mut impl Iterator<Item = Result<crate::state::Entry, StateError>>,
    to_ms: i64,
) -> Result<Option<Head>, StateError> {
    let Some(item) = iter.next() else { return Ok(None) };
    let (key, ledger_key) = item?;
    if !key.starts_with(prefix) {
        return Ok(None);
    }
    let (ms, seq) = keys::parse_ledger_by_time(&key, prefix.len()).ok_or_else(|| StateError::Corrupt {
        family: Family::LedgerByTime.name(),
        detail: "index key too short".into(),
    })?;
    if ms >= to_ms {
        return Ok(None);
    }
    Ok(Some(Head { ms, p, seq, ledger_key }))
}
