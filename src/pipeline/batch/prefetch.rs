//! Stage 2, prefetch: everything the rules read for a record (dedupe
//! record, profile, balances, the original order, the booking), read once
//! per batch and kept in the batch's overlay, which the later stages update.

use super::*;

impl Processor {
    /// The customer's profile: this batch, then state, then config, else an
    /// unregistered customer with no groups.
    pub(super) fn customer(
        &self,
        batch: &mut Batch,
        p: u32,
        tenant: &TenantConfig,
        customer: &str,
    ) -> Result<Customer, StateError> {
        let key = keys::customer(p, &tenant.id, customer);
        if let Some(found) = batch.customers.get(&key) {
            return Ok(found.clone());
        }
        let profile = match self.store.get(Family::Customers, &key)? {
            Some(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt(Family::Customers, &e.to_string()))?,
            None => tenant.seeded_customer(customer).cloned().unwrap_or_default(),
        };
        batch.customers.insert(key, profile.clone());
        Ok(profile)
    }

    /// Loads every balance of the customer at `prefix` into the batch once.
    pub(super) fn load_balances(&self, batch: &mut Batch, prefix: &[u8]) -> Result<(), StateError> {
        if batch.balances.contains_key(prefix) {
            return Ok(());
        }
        let mut found = BTreeMap::new();
        for (key, value) in self.store.scan(Family::Balances, prefix, prefix, 64)? {
            let account = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let balance =
                keys::decode_decimal(&value).ok_or_else(|| corrupt(Family::Balances, "balance is not 16 bytes"))?;
            found.insert(account, balance);
        }
        batch.balances.insert(prefix.to_vec(), found);
        Ok(())
    }

    pub(super) fn booking(&self, batch: &mut Batch, key: &[u8]) -> Result<Option<Booking>, StateError> {
        read_through(self.store.as_ref(), &mut batch.bookings, Family::Bookings, key)
    }

    /// Whether `dedupe_key` was applied before, in this batch or in state.
    /// Any value counts, old 8-byte ones too ([`keys::DedupeValue`]).
    pub(super) fn applied_before(&self, batch: &Batch, dedupe_key: &[u8]) -> Result<bool, StateError> {
        Ok(batch.seen.contains(dedupe_key) || self.store.get(Family::Dedupe, dedupe_key)?.is_some())
    }

    pub(super) fn order(&self, batch: &mut Batch, key: &[u8]) -> Result<Option<OrderRecord>, StateError> {
        read_through(self.store.as_ref(), &mut batch.orders, Family::Orders, key)
    }
}

/// A JSON record of `family`: this batch's copy if it has one, else the
/// stored one, remembered (absent too) for the rest of the batch.
pub(super) fn read_through<T: serde::de::DeserializeOwned + Clone>(
    store: &dyn Store,
    cache: &mut HashMap<Vec<u8>, Option<T>>,
    family: Family,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    if let Some(found) = cache.get(key) {
        return Ok(found.clone());
    }
    let record = match store.get(family, key)? {
        Some(raw) => Some(serde_json::from_slice(&raw).map_err(|e| corrupt(family, &e.to_string()))?),
        None => None,
    };
    cache.insert(key.to_vec(), record.clone());
    Ok(record)
}
