//! Durable timers (delayed booking credits) fired into the open batch: they
//! go through the same evaluate, emit and write stages as events.

use super::*;

impl Processor {
    /// Fires up to `limit` booking timers and `limit` review timers of
    /// partition `p` due at `now_ms` or earlier, into `batch`: each credit or
    /// review, its outputs and the timer's deletion commit together.
    /// Returns how many fired.
    ///
    /// # Errors
    /// [`StateError`] if the store fails; the batch must then be dropped.
    pub fn fire_due(&mut self, batch: &mut Batch, p: u32, now_ms: i64, limit: usize) -> Result<usize, StateError> {
        let prefix = keys::partition_prefix(p);
        let due = self.store.scan(Family::Timers, &prefix, &prefix, limit)?;
        let mut fired: usize = 0;
        for (key, _) in due {
            let Some(keys::TimerKey {
                due_ms,
                tenant: tenant_id,
                customer: customer_id,
                booking_id,
            }) = keys::parse_timer(&key)
            else {
                continue;
            };
            if due_ms > now_ms {
                break;
            }
            self.open_cursor(batch, p)?;
            let tenants = self.tenants.clone();
            let booking_key = keys::booking(p, &tenant_id, &customer_id, &booking_id);
            let booking = self.booking(batch, &booking_key)?;
            let live = booking.as_ref().is_some_and(|b| b.due_ms == Some(due_ms));
            let (Some(tenant), Some(booking), true) = (tenants.get(&tenant_id), booking, live) else {
                // Moved, cancelled, fired in this batch, or of a removed
                // tenant: the timer is stale.
                if batch.timers_deleted.insert(key.clone()) {
                    batch.set.delete(Family::Timers, key);
                    add_timers(batch, p, -1);
                }
                continue;
            };
            let customer = self.customer(batch, p, tenant, &booking.customer)?;
            let prefix = keys::balance_prefix(p, &tenant_id, &booking.customer);
            self.load_balances(batch, &prefix)?;
            let mut outcome = rules::fire(&booking_id, &booking, customer.marketing_consent);
            if let Err(refused) = balances_after(batch.balances.get(&prefix), &outcome, rules::RejectionType::Booking) {
                // The credit does not fit the balance: refuse it once and drop
                // the timer, or it would fire (and be refused) forever. The
                // booking stays scheduled, without a credit to come.
                let mut kept = booking.clone();
                kept.due_ms = None;
                outcome = Outcome {
                    timers: rules::TimerChange {
                        delete: Some(due_ms),
                        set: None,
                    },
                    booking: Some(Box::new((booking_id.clone(), kept))),
                    ..*refused
                };
            }
            let due_at = at_of_ms(due_ms);
            let out = Emitter {
                p,
                tenant,
                customer: &booking.customer,
                branch: &booking.branch,
                event_id: &booking.event_id,
                source: SourceRef {
                    topic: booking.source_topic.clone(),
                    partition: p,
                    offset: booking.source_offset,
                },
                occurred_at: due_at.format(&Rfc3339).unwrap_or_default(),
                occurred: due_at,
                reject_as: rules::RejectionType::Booking,
                visited: None,
            };
            batch.timers_deleted.insert(key.clone());
            self.apply_outcome(batch, &out, &prefix, &outcome)?;
            telemetry::timer_fired(now_ms.saturating_sub(due_ms).max(0));
            // At most `limit` timers are scanned.
            fired = fired.saturating_add(1);
        }
        // Then the customers' reviews (expiries, warnings, tiers).
        let reviewed = self.fire_reviews(batch, p, now_ms, limit)?;
        Ok(fired.saturating_add(reviewed))
    }

    /// The due time of the earliest timer of partition `p` in state, if any.
    ///
    /// # Errors
    /// [`StateError`] if the store fails.
    pub fn earliest_due(&self, p: u32) -> Result<Option<i64>, StateError> {
        let prefix = keys::partition_prefix(p);
        let booking = self.store.scan(Family::Timers, &prefix, &prefix, 1)?;
        let booking = booking
            .first()
            .and_then(|(key, _)| keys::parse_timer(key))
            .map(|t| t.due_ms);
        let review = self.store.scan(Family::Reviews, &prefix, &prefix, 1)?;
        let review = review.first().and_then(|(key, _)| keys::parse_review(key)).map(|r| r.0);
        Ok(match (booking, review) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Pending timers of every partition this processor has committed.
    pub fn timers_pending(&self) -> i64 {
        self.committed.values().map(|c| c.timers).sum()
    }
}
