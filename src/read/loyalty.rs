//! What a customer's loyalty records add to the read side: per account the
//! credits that will expire, and the customer's tier; and the tenant's
//! balances export (`balances.csv`), one row per customer and account with
//! both.

use std::io::Write;

use rust_decimal::Decimal;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use super::query::csv_text;
use super::scan::ReadError;
use crate::programs::TenantConfig;
use crate::rules::loyalty::Lots;
use crate::rules::Loyalty;
use crate::state::codec::StateValue;
use crate::state::{keys, Family, Snapshot, StateError};

/// A credit that will expire: what is left of it, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiringCredit {
    /// What is left of the credit, at the account's scale.
    pub amount: String,
    /// When it expires (RFC 3339, UTC).
    pub expires_at: String,
}

/// The columns of `balances.csv`, in order; new ones are added at the end.
pub const BALANCES_CSV_HEADER: &str = "customer,account,balance,unit,tier,next_expiry,next_expiry_amount\r\n";

/// A customer's two loyalty records, as far as they exist.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// The tier and the other bounded figures.
    pub(super) loyalty: Option<Loyalty>,
    /// The credits that may expire.
    pub(super) lots: Option<Lots>,
}

/// The customer's records in partition `p`.
fn records_in(snap: &Snapshot<'_>, p: u32, tenant: &str, customer: &str) -> Result<Records, StateError> {
    let loyalty = match snap.get(Family::Loyalty, &keys::loyalty(p, tenant, customer))? {
        Some(raw) => Some(Loyalty::decode(&raw).map_err(|e| e.in_family(Family::Loyalty))?),
        None => None,
    };
    let lots = match snap.get(Family::Lots, &keys::loyalty(p, tenant, customer))? {
        Some(raw) => Some(Lots::decode(&raw).map_err(|e| e.in_family(Family::Lots))?),
        None => None,
    };
    Ok(Records { loyalty, lots })
}

/// The customer's records in whichever partition holds them; none if the
/// tenant keeps none (no expiry, tiers or limits) or the customer has none.
///
/// # Errors
/// [`StateError`] if the store fails or a record is corrupt.
pub(super) fn records(snap: &Snapshot<'_>, tenant: &TenantConfig, customer: &str) -> Result<Records, StateError> {
    if !tenant.keeps_loyalty() {
        return Ok(Records::default());
    }
    let mut partitions = snap.partitions(Family::Loyalty)?;
    partitions.extend(snap.partitions(Family::Lots)?);
    partitions.sort_unstable();
    partitions.dedup();
    for p in partitions {
        let found = records_in(snap, p, &tenant.id, customer)?;
        if found.loyalty.is_some() || found.lots.is_some() {
            return Ok(found);
        }
    }
    Ok(Records::default())
}

/// The credits of `account` in `lots` that will expire, soonest first
/// (credits that expire together in credit order). None once the
/// account's rule is removed: its credits are then dropped, not expired.
pub(super) fn expiring(tenant: &TenantConfig, lots: Option<&Lots>, account: &str) -> Vec<ExpiringCredit> {
    let mut due: Vec<(i64, Decimal)> = due(tenant, lots, account).collect();
    due.sort_by_key(|(at, _)| *at);
    due.into_iter().map(|d| credit(tenant, account, d)).collect()
}

/// The first of [`expiring`], without sorting the rest.
fn next_expiring(tenant: &TenantConfig, lots: Option<&Lots>, account: &str) -> Option<ExpiringCredit> {
    // `min_by_key` keeps the first of equals, as the stable sort does.
    due(tenant, lots, account)
        .min_by_key(|(at, _)| *at)
        .map(|d| credit(tenant, account, d))
}

/// When each credit of `account` that will expire does, and what is left
/// of it, in credit order.
fn due<'a>(
    tenant: &TenantConfig,
    lots: Option<&'a Lots>,
    account: &'a str,
) -> impl Iterator<Item = (i64, Decimal)> + 'a {
    lots.filter(|_| tenant.tracks_lots(account))
        .into_iter()
        .flat_map(|lots| lots.lots.iter())
        .filter(move |l| &*l.account == account && l.remaining > Decimal::ZERO)
        .filter_map(|l| Some((l.expires_ms?, l.remaining)))
}

fn credit(tenant: &TenantConfig, account: &str, (at, mut amount): (i64, Decimal)) -> ExpiringCredit {
    amount.rescale(crate::rules::scale_of(tenant, account));
    ExpiringCredit {
        amount: amount.to_string(),
        expires_at: rfc3339_of_ms(at),
    }
}

/// The customer's tier in `loyalty`, if any.
pub(super) fn tier(loyalty: Option<&Loyalty>) -> Option<String> {
    loyalty.and_then(|l| l.tier.as_deref()).map(str::to_owned)
}

fn rfc3339_of_ms(ms: i64) -> String {
    keys::time_of_ms(ms)
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Writes every balance of `tenant` as CSV to `out` ([`BALANCES_CSV_HEADER`]):
/// per customer and account the balance, its unit, the customer's tier and
/// the next credit to expire with what is left of it (empty when none).
/// Streams: memory holds one customer at a time. Returns the rows written.
///
/// # Errors
/// [`ReadError`] if the store or the writer fails; `out` then holds a
/// truncated export.
pub fn balances_csv(snap: &Snapshot<'_>, tenant: &TenantConfig, out: &mut dyn Write) -> Result<u64, ReadError> {
    out.write_all(BALANCES_CSV_HEADER.as_bytes())?;
    let mut rows = 0u64;
    let mut buf = Vec::with_capacity(256);
    for p in snap.partitions(Family::Balances)? {
        let prefix = keys::balance_tenant_prefix(p, &tenant.id);
        // The customer whose records were read last: keys come by customer.
        let mut current: Option<(String, Records)> = None;
        for item in snap.iter_from(Family::Balances, &prefix)? {
            let (key, value) = item?;
            let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let Some(split) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let customer = String::from_utf8_lossy(&rest[..split]);
            let account = String::from_utf8_lossy(&rest[split.saturating_add(1)..]);
            if current.as_ref().is_none_or(|(c, _)| *c != customer) {
                let found = if tenant.keeps_loyalty() {
                    records_in(snap, p, &tenant.id, &customer)?
                } else {
                    Records::default()
                };
                current = Some((customer.into_owned(), found));
            }
            let Some((customer, found)) = current.as_ref() else {
                continue;
            };
            let mut balance = keys::decode_decimal(&value).ok_or_else(|| StateError::Corrupt {
                family: Family::Balances.name(),
                detail: "balance is not 16 bytes".into(),
            })?;
            balance.rescale(crate::rules::scale_of(tenant, &account));
            let next = next_expiring(tenant, found.lots.as_ref(), &account);
            buf.clear();
            csv_text(customer, &mut buf);
            buf.push(b',');
            csv_text(&account, &mut buf);
            buf.extend_from_slice(format!(",{balance},").as_bytes());
            csv_text(tenant.unit_of(&account), &mut buf);
            buf.push(b',');
            csv_text(tier(found.loyalty.as_ref()).as_deref().unwrap_or_default(), &mut buf);
            match next {
                Some(next) => buf.extend_from_slice(format!(",{},{}\r\n", next.expires_at, next.amount).as_bytes()),
                None => buf.extend_from_slice(b",,\r\n"),
            }
            out.write_all(&buf)?;
            rows = rows.saturating_add(1);
        }
    }
    out.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests;
