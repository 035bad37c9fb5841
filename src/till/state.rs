//! What a quote reads: a customer's profile (with its holds) and balances,
//! as committed. On `accrue run` from one RocksDB snapshot, so the two are
//! of the same batch; tests read a [`Store`] directly.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::programs::TenantConfig;
use crate::rules::{Customer, Loyalty};
use crate::state::codec::StateValue;
use crate::state::{keys, Entry, Family, Snapshot, StateError, Store};

/// Most balance accounts read for one customer (a tenant has a handful).
const MAX_ACCOUNTS: usize = 256;

/// Point reads and prefix scans of committed state.
pub trait Reads {
    /// One key.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Up to `limit` entries under `prefix`, in key order.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    fn read_prefix(&self, family: Family, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StateError>;
}

impl Reads for Snapshot<'_> {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get(family, key)
    }

    fn read_prefix(&self, family: Family, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for item in self.iter_from(family, prefix)? {
            let (key, value) = item?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }
}

impl<S: Store + ?Sized> Reads for S {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.get(family, key)
    }

    fn read_prefix(&self, family: Family, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StateError> {
        self.scan(family, prefix, prefix, limit)
    }
}

/// The customer's loyalty record (tiers, limits, expiring credits), for
/// a tenant that keeps one; empty otherwise.
///
/// # Errors
/// A description of the failure if the store fails or the value is corrupt.
pub fn loyalty_state(
    reads: &(impl Reads + ?Sized),
    p: u32,
    tenant: &TenantConfig,
    customer: &str,
) -> Result<Loyalty, String> {
    if !tenant.keeps_loyalty() {
        return Ok(Loyalty::default());
    }
    match reads
        .read(Family::Loyalty, &keys::loyalty(p, &tenant.id, customer))
        .map_err(|e| e.to_string())?
    {
        Some(raw) => Loyalty::decode(&raw).map_err(|e| e.to_string()),
        None => Ok(Loyalty::default()),
    }
}

/// The profile (or the tenant's seeded one) and the balances of
/// `customer` in partition `p`.
///
/// # Errors
/// A description of the failure if the store fails or a value is corrupt.
pub fn customer_state(
    reads: &(impl Reads + ?Sized),
    p: u32,
    tenant: &TenantConfig,
    customer: &str,
) -> Result<(Customer, BTreeMap<String, Decimal>), String> {
    let profile = match reads
        .read(Family::Customers, &keys::customer(p, &tenant.id, customer))
        .map_err(|e| e.to_string())?
    {
        Some(raw) => Customer::decode(&raw).map_err(|e| e.to_string())?,
        None => tenant.seeded_customer(customer).cloned().unwrap_or_default(),
    };
    let prefix = keys::balance_prefix(p, &tenant.id, customer);
    let mut balances = BTreeMap::new();
    for (key, value) in reads
        .read_prefix(Family::Balances, &prefix, MAX_ACCOUNTS)
        .map_err(|e| e.to_string())?
    {
        let account = key.get(prefix.len()..).unwrap_or_default();
        let balance = keys::decode_decimal(&value).ok_or("a stored balance is not 16 bytes")?;
        balances.insert(String::from_utf8_lossy(account).into_owned(), balance);
    }
    Ok((profile, balances))
}
