//! Till requests (holds) in the partition's batch: applied after the
//! batch's records, so they see the balances those records leave, and
//! written with them in one WAL-synced WriteBatch.

use super::*;
use crate::rules::till::{self, Refusal};
use crate::state::codec::StateValue;
use crate::till::{TillAnswer, TillOp, TillRequest};
use crate::timers::{Clock, SystemClock};

impl Processor {
    /// Applies `request` to `batch`; the answer may be sent once the batch
    /// is committed. A panic in the rules (a bug) refuses only this request.
    ///
    /// # Errors
    /// [`StateError`] if the state cannot be read.
    pub fn apply_till(&mut self, batch: &mut Batch, request: &TillRequest) -> Result<TillAnswer, StateError> {
        let p = request.partition;
        let tenants = self.tenants.clone();
        let Some(tenant) = tenants.get(&request.tenant) else {
            return Ok(TillAnswer::NotOwner);
        };
        let customer_key = keys::customer(p, &tenant.id, &request.customer);
        let profile = self.customer(batch, p, tenant, &request.customer)?;
        let prefix = keys::balance_prefix(p, &tenant.id, &request.customer);
        self.load_balances(batch, &prefix)?;
        let loyalty_key = keys::loyalty(p, &tenant.id, &request.customer);
        if tenant.keeps_loyalty() {
            self.load_loyalty(batch, &loyalty_key)?;
        }
        let now_ms = SystemClock.now_ms();
        // Offset -1: no input record; the hook logs the partition.
        let decided = crate::pipeline::poison::Attempts::catch((p, -1), || match &request.op {
            TillOp::Authorize { event, id, expires_ms } => {
                let empty = BTreeMap::new();
                let balances = batch.balances.get(&prefix).unwrap_or(&empty);
                let input = rules::Input {
                    tenant,
                    event,
                    customer: &profile,
                    balances,
                    original: None,
                    booking: None,
                    code_key: &self.code_key,
                    network: &NetworkView {
                        directory: &self.routing.directory,
                        tenants: &tenants,
                    },
                    loyalty: batch.loyalty.get(&loyalty_key).unwrap_or(&rules::NO_LOYALTY),
                    now_ms,
                };
                match till::authorize(&input, id, *expires_ms) {
                    Ok(held) => (TillAnswer::Held(held.hold), held.profile),
                    Err(refusal) => (TillAnswer::Refused(refusal), None),
                }
            }
            TillOp::Release { id } => match till::release(&profile, id, now_ms) {
                Some(profile) => (TillAnswer::Released, Some(profile)),
                None => (TillAnswer::NoSuchHold, None),
            },
        });
        let (answer, profile) = match decided {
            Ok(decided) => decided,
            Err(cause) => {
                tracing::error!(partition = p, %cause, "a till request panicked in the rules; refused");
                return Ok(TillAnswer::Refused(Refusal::Overflow(rules::Overflow::Amount)));
            }
        };
        if let Some(profile) = profile {
            self.open_cursor(batch, p)?;
            batch.set.put(Family::Customers, customer_key.clone(), profile.encode());
            batch.customers.insert(customer_key, profile);
        }
        Ok(answer)
    }
}
