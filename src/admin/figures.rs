//! The dashboard's numbers, read from the totals index ([`crate::read::totals`],
//! [`crate::read::outstanding`]) on a RocksDB snapshot: a period's entries
//! summed by entry type, branch, day and unit, and the outstanding balance
//! of every account.
//!
//! Cost: the period's day buckets (one key per distinct day, entry type,
//! account, program, branch and unit), whatever the number of entries; the
//! outstanding balances are one running-total key per account and
//! partition. See docs/api.md, "Totals".

use std::str::FromStr;

use rust_decimal::Decimal;
use time::Date;

use crate::programs::TenantConfig;
use crate::read::{self, ReadError, TotalsQuery};

/// Why the figures could not be computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FigureError {
    /// The store failed, or holds a corrupt bucket.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A bucket's text does not read back.
    #[error("a total cannot be read back ({0}); check the state with `accrue ledger`")]
    Text(String),
}

/// One group of the period's entries: the totals API's row with
/// `group_by=entry_type,branch,day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Ledger entry type, e.g. `accrual`.
    pub(crate) entry_type: String,
    /// Branch of the source event.
    pub(crate) branch: String,
    /// Day of `occurred_at`, UTC.
    pub(crate) day: Date,
    /// The tenant's currency for money accounts, `points` for points.
    pub(crate) unit: String,
    /// Sum of the signed amounts.
    pub(crate) amount: Decimal,
    /// Entries summed.
    pub(crate) count: u64,
}

/// The decimal places amounts of `unit` are shown with.
pub(crate) fn scale_of(tenant: &TenantConfig, unit: &str) -> u32 {
    if unit == "points" {
        0
    } else {
        tenant.minor_units
    }
}

/// `amount` as text with `unit`'s decimal places.
pub(crate) fn show(tenant: &TenantConfig, unit: &str, amount: Decimal) -> String {
    let mut shown = amount;
    shown.rescale(scale_of(tenant, unit));
    shown.to_string()
}

fn decimal(text: &str) -> Result<Decimal, FigureError> {
    Decimal::from_str(text).map_err(|e| FigureError::Text(format!("{text}: {e}")))
}

/// The totals query of the UTC days `from` to `to` inclusive, grouped by
/// entry type, branch and day, narrowed by `filters` (`entry_type`,
/// `branch`, `unit`: comma-separated lists; empty ones are left out).
///
/// # Errors
/// [`read::QueryError`] naming a bad filter.
pub(crate) fn query(
    tenant: &TenantConfig,
    from: Date,
    to: Date,
    filters: &[(&str, &str)],
) -> Result<TotalsQuery, read::QueryError> {
    let end = to.next_day().unwrap_or(to).to_string();
    let start = from.to_string();
    let mut params = vec![
        ("from", start.as_str()),
        ("to", end.as_str()),
        ("group_by", "entry_type,branch,day"),
    ];
    params.extend(filters.iter().copied().filter(|(_, v)| !v.is_empty()));
    TotalsQuery::parse(&tenant.id, params)
}

/// The rows of `query` (see [`query`]): the tenant's own customers' entries
/// and its partners' customers' served here.
///
/// # Errors
/// [`FigureError`] if the store fails or a bucket is corrupt.
pub(crate) fn period_rows(snap: &crate::state::Snapshot<'_>, query: &TotalsQuery) -> Result<Vec<Row>, FigureError> {
    let found = read::totals(snap, query)?;
    found
        .rows
        .into_iter()
        .map(|row| {
            let day_text = row.day.unwrap_or_default();
            let day = Date::parse(&day_text, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|e| FigureError::Text(format!("{day_text}: {e}")))?;
            Ok(Row {
                entry_type: row.entry_type.unwrap_or_default(),
                branch: row.branch.unwrap_or_default(),
                day,
                amount: decimal(&row.amount)?,
                unit: row.unit,
                count: row.count,
            })
        })
        .collect()
}

/// The sum of one account's balances over the tenant's customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outstanding {
    /// The account, e.g. `cashback`.
    pub(crate) account: String,
    /// Its unit.
    pub(crate) unit: String,
    /// The sum of the balances.
    pub(crate) total: Decimal,
}

/// Every account's outstanding balance, by account name.
///
/// # Errors
/// [`FigureError`] if the store fails or holds a corrupt running total.
pub(crate) fn outstanding(
    snap: &crate::state::Snapshot<'_>,
    tenant: &TenantConfig,
) -> Result<Vec<Outstanding>, FigureError> {
    read::outstanding(snap, &tenant.id)?
        .balances
        .into_iter()
        .map(|b| {
            Ok(Outstanding {
                total: decimal(&b.amount)?,
                account: b.account,
                unit: b.unit,
            })
        })
        .collect()
}
