//! The totals index (`Family::Totals`, see [`keys::totals`]): each ledger
//! entry's amount is added to its day bucket and to the account's running
//! total in the batch, in memory; the commit reads every touched bucket
//! once (one `multi_get`) and puts the new sums in the batch's WriteBatch.

use super::*;
use crate::state::keys::{TotalsValue, RUNNING_DAY};

/// Where one ledger entry counts.
pub(super) struct Counted<'a> {
    pub(super) p: u32,
    pub(super) tenant: &'a TenantConfig,
    /// The tenant where the visit took place when it is not `tenant` (a
    /// partner's customer): its buckets count the entry too.
    pub(super) visited: Option<&'a str>,
    pub(super) occurred_ms: i64,
    pub(super) branch: &'a str,
}

/// Adds `entry` to its buckets in `batch`: the day bucket of its tenant,
/// its account's running total, and the day bucket of the visited tenant
/// (marked with the home tenant as `partner`) for a partner's customer.
/// Keys are built in one reused buffer: a bucket the batch touched before
/// costs no allocation.
pub(super) fn count_entry(batch: &mut Batch, at: &Counted<'_>, entry: &rules::Entry) {
    let day = keys::day_of_ms(at.occurred_ms);
    let delta = TotalsValue {
        sum: entry.amount,
        count: 1,
    };
    let (tenant, account) = (at.tenant.id.as_str(), &*entry.account);
    let (entry_type, program) = (entry.entry_type.as_str(), &*entry.program);
    let unit = at.tenant.unit_of(account);
    let mut key = std::mem::take(&mut batch.totals_key);
    keys::totals_into(
        &mut key,
        at.p,
        tenant,
        day,
        [entry_type, account, program, at.branch, "", unit],
    );
    add(&mut batch.totals, &key, delta);
    if let Some(visited) = at.visited {
        let parts = [entry_type, account, program, at.branch, tenant, unit];
        keys::totals_into(&mut key, at.p, visited, day, parts);
        add(&mut batch.totals, &key, delta);
    }
    keys::totals_into(&mut key, at.p, tenant, RUNNING_DAY, ["", account, "", "", "", unit]);
    add(&mut batch.totals, &key, delta);
    batch.totals_key = key;
}

fn add(totals: &mut HashMap<Vec<u8>, TotalsValue>, key: &[u8], delta: TotalsValue) {
    let Some(slot) = totals.get_mut(key) else {
        totals.insert(key.to_vec(), delta);
        return;
    };
    match slot.checked_add(&delta) {
        Some(sum) => *slot = sum,
        // Beyond 7.9e28 in one bucket: cannot happen under the contract's
        // amount limits; say so rather than stop the pipeline.
        None => tracing::error!("a totals bucket overflowed; its totals are wrong (see docs/api.md)"),
    }
}

impl Processor {
    /// Puts the new sum of every bucket `totals` touched into `set`: the
    /// stored value (one `multi_get`, in key order) plus the batch's delta.
    pub(super) fn write_totals(
        &self,
        set: &mut WriteSet,
        totals: HashMap<Vec<u8>, TotalsValue>,
    ) -> Result<(), StateError> {
        if totals.is_empty() {
            return Ok(());
        }
        let mut deltas: Vec<(Vec<u8>, TotalsValue)> = totals.into_iter().collect();
        deltas.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<Vec<u8>> = deltas.iter().map(|(k, _)| k.clone()).collect();
        let stored = self.store.multi_get(Family::Totals, &keys)?;
        for ((key, delta), raw) in deltas.into_iter().zip(stored) {
            let before = match raw {
                Some(raw) => {
                    TotalsValue::decode(&raw).ok_or_else(|| corrupt(Family::Totals, "totals value is not 24 bytes"))?
                }
                None => TotalsValue::default(),
            };
            let after = before.checked_add(&delta).unwrap_or_else(|| {
                tracing::error!("a totals bucket overflowed; its totals are wrong (see docs/api.md)");
                before
            });
            set.put(Family::Totals, key, after.encode().to_vec());
        }
        Ok(())
    }
}
