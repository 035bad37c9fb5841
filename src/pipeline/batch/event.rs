//! Stage 3, evaluate: one admitted event or command against the state the
//! prefetch stage loaded, through the pure rules.

use super::*;

impl Processor {
    pub(super) fn apply_event(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        event: &Event,
    ) -> Result<Applied, StateError> {
        let p = record.partition;
        let event_type = event.event_type().as_str();
        let dedupe_key = keys::dedupe(p, &event.tenant, &event.event_id);
        if self.applied_before(batch, &dedupe_key)? {
            telemetry::duplicate(event_type);
            return Ok(Applied::Duplicate);
        }
        let tenants = self.tenants.clone();
        // The event was validated against this tenant in `decode`.
        let Some(tenant) = tenants.get(&event.tenant) else {
            return Ok(Applied::Processed(0));
        };
        // Read in place, not cloned: the profile is in the batch's overlay
        // (the prefetch stage put it there; a record applied alone loads it).
        let customer_key = keys::customer(p, &event.tenant, &event.customer);
        if !batch.customers.contains_key(&customer_key) {
            self.customer(batch, p, tenant, &event.customer)?;
        }
        let prefix = keys::balance_prefix(p, &event.tenant, &event.customer);
        self.load_balances(batch, &prefix)?;
        let original_key = match &event.body {
            Body::OrderRefunded(refund) => Some(keys::order(
                p,
                &event.tenant,
                &event.customer,
                &refund.original_event_id,
            )),
            _ => None,
        };
        let original = match &original_key {
            Some(key) => self.order(batch, key)?,
            None => None,
        };
        let booking_id = match &event.body {
            Body::BookingCreated(b) => Some(&b.booking_id),
            Body::BookingRescheduled(b) => Some(&b.booking_id),
            Body::BookingCancelled(b) | Body::BookingNoShow(b) => Some(&b.booking_id),
            _ => None,
        };
        let booking = match booking_id {
            Some(id) => self.booking(batch, &keys::booking(p, &event.tenant, &event.customer, id))?,
            None => None,
        };
        let loyalty_key = tenant
            .keeps_loyalty()
            .then(|| keys::loyalty(p, &event.tenant, &event.customer));
        if let Some(key) = &loyalty_key {
            self.load_loyalty(batch, key)?;
        }
        let mut outcome = {
            let empty = BTreeMap::new();
            let unregistered = Customer::default();
            let loyalty = loyalty_key
                .as_ref()
                .and_then(|key| batch.loyalty.get(key))
                .unwrap_or(&rules::NO_LOYALTY);
            let balances = batch.balances.get(&prefix).unwrap_or(&empty);
            let customer = batch.customers.get(&customer_key).unwrap_or(&unregistered);
            rules::evaluate(&rules::Input {
                tenant,
                event,
                customer,
                balances,
                original: original.as_ref(),
                booking: booking.as_ref(),
                code_key: &self.code_key,
                network: &NetworkView {
                    directory: &self.routing.directory,
                    tenants: &tenants,
                },
                loyalty,
                // Only till holds depend on the clock: read it only if any.
                now_ms: if customer.holds.is_empty() {
                    0
                } else {
                    crate::timers::Clock::now_ms(&crate::timers::SystemClock)
                },
            })
        };
        if let (Body::BookingCreated(_), Some((_, created))) = (&event.body, outcome.booking.as_deref_mut()) {
            created.source_topic = record.topic.to_owned();
            created.source_offset = record.offset;
        }
        let out = Emitter::for_event(p, tenant, record, event);
        let first_seq = peek_seq(batch, p);
        let entries = self.apply_outcome(batch, &out, &prefix, &outcome)?.entries;
        if let (Body::CustomerUpserted(_), Some(profile)) = (&event.body, &outcome.customer) {
            self.publish_directory_entry(batch, p, tenant, &event.customer, profile)?;
        }
        record_applied(batch, p, dedupe_key, first_seq, unix_ms(event.occurred_at));
        telemetry::processed(event_type);
        telemetry::tenant_processed(&event.tenant);
        if batch.oldest_occurred_at.is_none_or(|t| event.occurred_at < t) {
            batch.oldest_occurred_at = Some(event.occurred_at);
        }
        Ok(Applied::Processed(entries))
    }

    /// Applies an internal command to its target customer, exactly once:
    /// its dedupe record (`cmd:` + origin partition-sequence) is written in
    /// the same batch as its effect.
    pub(super) fn apply_command(
        &mut self,
        batch: &mut Batch,
        record: &InputRecord<'_>,
        command: &Command,
    ) -> Result<Applied, StateError> {
        let p = record.partition;
        let command_type = command.type_name();
        // ':' never occurs in an input event_id, so no event can take this key.
        let dedupe_key = keys::dedupe(p, &command.tenant, &format!("cmd:{}", command.id));
        if self.applied_before(batch, &dedupe_key)? {
            telemetry::command_applied(command_type, "duplicate");
            return Ok(Applied::Duplicate);
        }
        let tenants = self.tenants.clone();
        let Some(tenant) = tenants.get(&command.tenant) else {
            return Ok(Applied::Processed(0));
        };
        let prefix = keys::balance_prefix(p, &command.tenant, &command.customer);
        self.load_balances(batch, &prefix)?;
        let outcome = {
            let empty = BTreeMap::new();
            let balances = batch.balances.get(&prefix).unwrap_or(&empty);
            let network = NetworkView {
                directory: &self.routing.directory,
                tenants: &tenants,
            };
            rules::apply_command(tenant, balances, &network, command)
        };
        let out = Emitter {
            p,
            tenant,
            customer: &command.customer,
            branch: &command.branch,
            event_id: &command.source_event_id,
            source: SourceRef {
                topic: record.topic.to_owned(),
                partition: p,
                offset: record.offset,
            },
            occurred_at: command.occurred_at.format(&Rfc3339).unwrap_or_default(),
            occurred: command.occurred_at,
            reject_as: rules::command_rejection_type(&command.body),
            // A partner's order paid here: the place sees it in its report.
            visited: (command.source_tenant != command.tenant).then_some(command.source_tenant.as_str()),
        };
        let first_seq = peek_seq(batch, p);
        let written = self.apply_outcome(batch, &out, &prefix, &outcome)?;
        let entries = written.entries;
        record_applied(batch, p, dedupe_key, first_seq, unix_ms(command.occurred_at));
        let result = if written.rejected { "rejected" } else { "applied" };
        telemetry::command_applied(command_type, result);
        Ok(Applied::Processed(entries))
    }
}
