//! The dashboard's numbers, read from a RocksDB snapshot: a period's
//! entries summed by entry type, branch, day and unit, and the outstanding
//! balances of every account.
//!
//! Cost: [`period_rows`] walks the tenant's ledger-by-time index over the
//! period (one index key and one entry read per ledger entry in it, as a
//! ledger export does) and stops after [`MAX_ROWS`] entries, saying so.
//! [`outstanding`] reads every balance key of the tenant (one per customer
//! and account that ever moved).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use time::{Date, OffsetDateTime};

use crate::programs::TenantConfig;
use crate::read::{self, LedgerQuery, PageParams};
use crate::state::{keys, Family, Snapshot, StateError};

/// Ledger entries a dashboard sums at most; beyond it the figures are
/// marked incomplete.
pub(crate) const MAX_ROWS: u64 = 2_000_000;

/// Why the figures could not be computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FigureError {
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored amount is not a decimal, or a sum overflowed.
    #[error("a ledger amount cannot be summed ({0}); check the ledger with `accrue ledger`")]
    Amount(String),
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

/// A period's rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    /// Rows in (entry type, branch, day, unit) order.
    pub(crate) rows: Vec<Row>,
    /// Whether [`MAX_ROWS`] cut the sums short.
    pub(crate) truncated: bool,
}

/// The unit amounts of `account` are counted in.
pub(crate) fn unit_of(tenant: &TenantConfig, account: &str) -> String {
    if tenant.is_points(account) {
        "points".to_owned()
    } else {
        tenant.currency.clone()
    }
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

/// The tenant's entries that occurred in `[from_ms, to_ms)`, summed.
///
/// # Errors
/// [`FigureError`] if the store fails or an amount does not sum.
pub(crate) fn period_rows(
    snap: &Snapshot<'_>,
    tenant: &TenantConfig,
    from_ms: i64,
    to_ms: i64,
) -> Result<Figures, FigureError> {
    let query = LedgerQuery {
        tenant: tenant.id.clone(),
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        ..LedgerQuery::default()
    };
    let mut groups: BTreeMap<(String, String, Date, String), (Decimal, u64)> = BTreeMap::new();
    let mut cursor = None;
    let mut seen = 0u64;
    let mut truncated = false;
    loop {
        let page = read::page(
            snap,
            &query,
            PageParams {
                limit: read::MAX_LIMIT,
                cursor,
            },
        )?;
        for entry in page.entries {
            let ms = keys::rfc3339_ms(&entry.header.occurred_at).unwrap_or(from_ms);
            let day = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
                .map(OffsetDateTime::date)
                .map_err(|e| FigureError::Amount(e.to_string()))?;
            let amount = Decimal::from_str(&entry.amount).map_err(|e| FigureError::Amount(e.to_string()))?;
            let unit = unit_of(tenant, &entry.account);
            let group = groups
                .entry((entry.entry_type, entry.header.branch, day, unit))
                .or_default();
            group.0 = group
                .0
                .checked_add(amount)
                .ok_or_else(|| FigureError::Amount("the sum overflows".into()))?;
            group.1 = group.1.saturating_add(1);
            seen = seen.saturating_add(1);
        }
        if seen >= MAX_ROWS {
            truncated = page.next_cursor.is_some();
            break;
        }
        match page.next_cursor.as_deref().and_then(read::Cursor::decode) {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let rows = groups
        .into_iter()
        .map(|((entry_type, branch, day, unit), (amount, count))| Row {
            entry_type,
            branch,
            day,
            unit,
            amount,
            count,
        })
        .collect();
    Ok(Figures { rows, truncated })
}

/// The sum of one account's balances over the tenant's customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outstanding {
    /// The account, e.g. `cashback`.
    pub(crate) account: String,
    /// Its unit.
    pub(crate) unit: String,
    /// Customers whose balance is not zero.
    pub(crate) customers: u64,
    /// The sum of the balances.
    pub(crate) total: Decimal,
}

/// Every account's outstanding balance, by account name.
///
/// # Errors
/// [`FigureError`] if the store fails or holds a corrupt balance.
pub(crate) fn outstanding(snap: &Snapshot<'_>, tenant: &TenantConfig) -> Result<Vec<Outstanding>, FigureError> {
    let mut sums: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    for p in snap.partitions(Family::Balances)? {
        let prefix = keys::tenant_balances_prefix(p, &tenant.id);
        for item in snap.iter_from(Family::Balances, &prefix)? {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some((_, account)) = keys::parse_tenant_balance(&key, prefix.len()) else {
                continue;
            };
            let balance = keys::decode_decimal(&value).ok_or_else(|| StateError::Corrupt {
                family: Family::Balances.name(),
                detail: "balance is not 16 bytes".into(),
            })?;
            let sum = sums.entry(String::from_utf8_lossy(account).into_owned()).or_default();
            if !balance.is_zero() {
                sum.0 = sum.0.saturating_add(1);
            }
            sum.1 = sum
                .1
                .checked_add(balance)
                .ok_or_else(|| FigureError::Amount("the sum overflows".into()))?;
        }
    }
    Ok(sums
        .into_iter()
        .map(|(account, (customers, total))| Outstanding {
            unit: unit_of(tenant, &account),
            account,
            customers,
            total,
        })
        .collect())
}
