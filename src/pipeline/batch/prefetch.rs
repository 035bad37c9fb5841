//! Stage 2, prefetch: everything the rules read for a record (dedupe
//! record, profile, balances, the original order, the booking, the
//! loyalty record), read once
//! per batch and kept in the batch's overlay, which the later stages update.

use super::*;
use crate::state::codec::StateValue;

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
        let profile = profile_of(self.store.get(Family::Customers, &key)?, tenant, customer)?;
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
        if batch.seen.contains(dedupe_key) {
            return Ok(true);
        }
        match batch.stored_dedupe.get(dedupe_key) {
            Some(stored) => Ok(*stored),
            None => Ok(self.store.get(Family::Dedupe, dedupe_key)?.is_some()),
        }
    }

    /// Stage 2 for a chunk of admitted records: reads, with one `multi_get`
    /// per family (in key order), every dedupe record, profile, original
    /// order and booking their events and commands will read, and every
    /// balance, into `batch`'s overlay. Values the batch holds already are
    /// not read: the overlay is newer than state.
    ///
    /// # Errors
    /// [`StateError`] if the store fails or a value is corrupt.
    pub fn prefetch(
        &self,
        batch: &mut Batch,
        records: &[InputRecord<'_>],
        admitted: &[Admission],
    ) -> Result<(), StateError> {
        let mut wanted = Wanted::default();
        for (record, admission) in records.iter().zip(admitted) {
            let p = record.partition;
            match &admission.0 {
                Ok(Target::Event(event)) => {
                    let (t, c) = (event.tenant.as_str(), event.customer.as_str());
                    wanted.dedupe.push(keys::dedupe(p, t, &event.event_id));
                    wanted.customers.push((keys::customer(p, t, c), t, c));
                    wanted.balances.push(keys::balance_prefix(p, t, c));
                    if let Some(tenant) = self.tenants.get(t).filter(|t| t.keeps_loyalty()) {
                        // Both records are kept under the same key.
                        let key = keys::loyalty(p, t, c);
                        if tenant.keeps_lots() {
                            wanted.lots.push(key.clone());
                        }
                        wanted.loyalty.push(key);
                    }
                    match &event.body {
                        Body::OrderRefunded(refund) => {
                            wanted.orders.push(keys::order(p, t, c, &refund.original_event_id));
                        }
                        Body::BookingCreated(b) => wanted.bookings.push(keys::booking(p, t, c, &b.booking_id)),
                        Body::BookingRescheduled(b) => wanted.bookings.push(keys::booking(p, t, c, &b.booking_id)),
                        Body::BookingCancelled(b) | Body::BookingNoShow(b) => {
                            wanted.bookings.push(keys::booking(p, t, c, &b.booking_id));
                        }
                        _ => {}
                    }
                }
                Ok(Target::Command(command)) => {
                    let (t, c) = (command.tenant.as_str(), command.customer.as_str());
                    wanted.dedupe.push(keys::dedupe(p, t, &format!("cmd:{}", command.id)));
                    wanted.balances.push(keys::balance_prefix(p, t, c));
                }
                Err(_) => {}
            }
        }
        let store = self.store.as_ref();
        let dedupe = missing(wanted.dedupe, |k| {
            batch.seen.contains(k) || batch.stored_dedupe.contains_key(k)
        });
        for (key, value) in dedupe.iter().zip(store.multi_get(Family::Dedupe, &dedupe)?) {
            batch.stored_dedupe.insert(key.clone(), value.is_some());
        }
        let mut customers = wanted.customers;
        customers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        customers.dedup_by(|a, b| a.0 == b.0);
        customers.retain(|(k, _, _)| !batch.customers.contains_key(k));
        let keys: Vec<Vec<u8>> = customers.iter().map(|(k, _, _)| k.clone()).collect();
        for ((key, tenant, customer), raw) in customers.into_iter().zip(store.multi_get(Family::Customers, &keys)?) {
            // Admitted events name configured tenants only.
            if let Some(config) = self.tenants.get(tenant) {
                batch.customers.insert(key, profile_of(raw, config, customer)?);
            }
        }
        let orders = missing(wanted.orders, |k| batch.orders.contains_key(k));
        for (key, raw) in orders.iter().zip(store.multi_get(Family::Orders, &orders)?) {
            batch.orders.insert(key.clone(), decode_value(Family::Orders, raw)?);
        }
        let bookings = missing(wanted.bookings, |k| batch.bookings.contains_key(k));
        for (key, raw) in bookings.iter().zip(store.multi_get(Family::Bookings, &bookings)?) {
            batch.bookings.insert(key.clone(), decode_value(Family::Bookings, raw)?);
        }
        let loyalty = missing(wanted.loyalty, |k| batch.loyalty.contains_key(k));
        for (key, raw) in loyalty.iter().zip(store.multi_get(Family::Loyalty, &loyalty)?) {
            let record = decode_value(Family::Loyalty, raw)?.unwrap_or_default();
            batch.loyalty.insert(key.clone(), record);
        }
        let lots = missing(wanted.lots, |k| batch.lots.contains_key(k));
        for (key, raw) in lots.iter().zip(store.multi_get(Family::Lots, &lots)?) {
            batch
                .lots
                .insert(key.clone(), decode_value(Family::Lots, raw)?.unwrap_or_default());
        }
        for prefix in missing(wanted.balances, |k| batch.balances.contains_key(k)) {
            self.load_balances(batch, &prefix)?;
        }
        Ok(())
    }

    /// Loads the customer's loyalty record at `key` into the batch once
    /// (an empty one if there is none yet).
    pub(super) fn load_loyalty(&self, batch: &mut Batch, key: &[u8]) -> Result<(), StateError> {
        load_or_default(self.store.as_ref(), &mut batch.loyalty, Family::Loyalty, key)
    }

    /// Loads the customer's credits at `key` into the batch once (none if
    /// there are none yet).
    pub(super) fn load_lots(&self, batch: &mut Batch, key: &[u8]) -> Result<(), StateError> {
        load_or_default(self.store.as_ref(), &mut batch.lots, Family::Lots, key)
    }

    pub(super) fn order(&self, batch: &mut Batch, key: &[u8]) -> Result<Option<OrderRecord>, StateError> {
        read_through(self.store.as_ref(), &mut batch.orders, Family::Orders, key)
    }
}

/// A record of `family`: this batch's copy if it has one, else the stored
/// one, remembered (absent too) for the rest of the batch.
pub(super) fn read_through<T: StateValue + Clone>(
    store: &dyn Store,
    cache: &mut HashMap<Vec<u8>, Option<T>>,
    family: Family,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    if let Some(found) = cache.get(key) {
        return Ok(found.clone());
    }
    let record = decode_value(family, store.get(family, key)?)?;
    cache.insert(key.to_vec(), record.clone());
    Ok(record)
}

/// Puts the record of `family` at `key` into `cache` unless it is there
/// (an empty one if none is stored).
fn load_or_default<T: StateValue + Default>(
    store: &dyn Store,
    cache: &mut HashMap<Vec<u8>, T>,
    family: Family,
    key: &[u8],
) -> Result<(), StateError> {
    if !cache.contains_key(key) {
        let record = decode_value(family, store.get(family, key)?)?.unwrap_or_default();
        cache.insert(key.to_vec(), record);
    }
    Ok(())
}

/// A stored record of `family` ([`StateValue`], any format version),
/// decoded; `None` if there is none.
pub(super) fn decode_value<T: StateValue>(family: Family, raw: Option<Vec<u8>>) -> Result<Option<T>, StateError> {
    match raw {
        Some(raw) => Ok(Some(T::decode(&raw).map_err(|e| e.in_family(family))?)),
        None => Ok(None),
    }
}

/// A customer's profile from its stored value, else from config, else an
/// unregistered customer with no groups.
pub(super) fn profile_of(raw: Option<Vec<u8>>, tenant: &TenantConfig, customer: &str) -> Result<Customer, StateError> {
    Ok(match decode_value(Family::Customers, raw)? {
        Some(profile) => profile,
        None => tenant.seeded_customer(customer).cloned().unwrap_or_default(),
    })
}

/// The keys a chunk reads, by family.
#[derive(Default)]
struct Wanted<'a> {
    dedupe: Vec<Vec<u8>>,
    customers: Vec<(Vec<u8>, &'a str, &'a str)>,
    balances: Vec<Vec<u8>>,
    orders: Vec<Vec<u8>>,
    bookings: Vec<Vec<u8>>,
    loyalty: Vec<Vec<u8>>,
    lots: Vec<Vec<u8>>,
}

/// `keys` sorted (RocksDB reads them in order), without repeats and
/// without those `known` already holds.
fn missing(mut keys: Vec<Vec<u8>>, known: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    keys.sort_unstable();
    keys.dedup();
    keys.retain(|k| !known(k));
    keys
}
