//! A tenant's outstanding balances: per account, the sum of every
//! customer's balance, read from the running totals of the `totals` index
//! (see [`crate::state::keys::totals`]), never from a scan of balances.

use std::collections::BTreeMap;

use serde::Serialize;

use super::scan::ReadError;
use super::totals::{amount_text, corrupt, overflow, UnitTotal};
use crate::state::keys::{self, TotalsValue, RUNNING_DAY};
use crate::state::{Family, Snapshot};

/// One account's outstanding balance: the sum of every customer's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outstanding {
    /// Account.
    pub account: String,
    /// `points` or a currency code.
    pub unit: String,
    /// Sum of every customer's balance of the account, exact decimal text.
    pub amount: String,
    /// Ledger entries that made it.
    pub count: u64,
}

/// A tenant's outstanding balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutstandingBalances {
    /// Tenant.
    pub tenant: String,
    /// One per account, by account name.
    pub balances: Vec<Outstanding>,
    /// One per unit.
    pub totals: Vec<UnitTotal>,
}

/// The outstanding balances of `tenant`: the running totals of the index,
/// one short range read (one key per account) per partition.
///
/// # Errors
/// [`ReadError`] if the store fails or a bucket is corrupt.
pub fn outstanding(snap: &Snapshot<'_>, tenant: &str) -> Result<OutstandingBalances, ReadError> {
    let mut accounts: BTreeMap<(String, String), TotalsValue> = BTreeMap::new();
    for p in snap.partitions(Family::Totals)? {
        let prefix = keys::totals_prefix(p, tenant);
        let start = keys::totals_day(p, tenant, RUNNING_DAY);
        for item in snap.iter_from(Family::Totals, &start)? {
            let (key, value) = item?;
            if !key.starts_with(&start) {
                break;
            }
            let (_, dims) = keys::parse_totals(&key, prefix.len()).ok_or_else(|| corrupt("totals key"))?;
            let value = TotalsValue::decode(&value).ok_or_else(|| corrupt("totals value is not 24 bytes"))?;
            let slot = accounts.entry((dims.account, dims.unit)).or_default();
            *slot = slot.checked_add(&value).ok_or_else(overflow)?;
        }
    }
    let mut units: BTreeMap<String, TotalsValue> = BTreeMap::new();
    let mut balances = Vec::with_capacity(accounts.len());
    for ((account, unit), value) in accounts {
        let slot = units.entry(unit.clone()).or_default();
        *slot = slot.checked_add(&value).ok_or_else(overflow)?;
        balances.push(Outstanding {
            account,
            unit,
            amount: amount_text(value.sum),
            count: value.count,
        });
    }
    Ok(OutstandingBalances {
        tenant: tenant.to_owned(),
        balances,
        totals: units
            .into_iter()
            .map(|(unit, v)| UnitTotal {
                unit,
                amount: amount_text(v.sum),
                count: v.count,
            })
            .collect(),
    })
}
