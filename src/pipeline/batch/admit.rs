//! Stage 1, admit: decode a record and classify it (an event, an internal
//! command, or a refusal with a dead-letter reason) against its tenant's
//! config, before anything reads state.

use super::*;

impl Processor {
    /// Stage 1 for one record: decodes and classifies it. Pure: reads no
    /// state, so a chunk's records are admitted before its prefetch.
    pub fn admit(&self, record: &InputRecord<'_>) -> Admission {
        Admission(self.target(record, Given::Raw))
    }

    /// What `record` asks for, from what the caller was `given` of it.
    pub(super) fn target(&self, record: &InputRecord<'_>, given: Given) -> Result<Target, ContractError> {
        match given {
            Given::Refused(err) => Err(err),
            Given::Admitted(target) => target,
            // Records of the internal topic are commands, not events.
            _ if record.topic == self.routing.internal_topic => self.decode_command(record).map(Target::Command),
            // The caller parsed it already; the size rule still holds.
            Given::Decoded(decoded) => self
                .check_size(record)
                .and(decoded)
                .and_then(|event| self.check_tenant(record, event))
                .map(Target::Event),
            Given::Raw => self.decode(record).map(Target::Event),
        }
    }

    pub(super) fn decode(&self, record: &InputRecord<'_>) -> Result<Event, ContractError> {
        self.check_size(record)?;
        let Some(payload) = record.payload else {
            return Err(ContractError::new(ErrorKind::MalformedJson, "the record has no value"));
        };
        self.check_tenant(record, contract::decode(payload)?)
    }

    /// Refuses a value over `max_input_bytes` before anything parses it.
    pub(super) fn check_size(&self, record: &InputRecord<'_>) -> Result<(), ContractError> {
        let size = record.payload.map_or(0, <[u8]>::len) as u64;
        if size > self.limits.max_input_bytes {
            return Err(ContractError::new(
                ErrorKind::TooLarge,
                format!(
                    "the value is {size} bytes, more than [batch] max_input_bytes ({}); it was not parsed",
                    self.limits.max_input_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Refuses an event (or command) that occurred longer ago than the
    /// dedupe retention: its dedupe record may have been dropped, so a
    /// duplicate could no longer be recognised.
    pub(super) fn check_retention(&self, occurred_at: time::OffsetDateTime) -> Result<(), ContractError> {
        let Some(retention) = self.limits.dedupe_retention else {
            return Ok(());
        };
        let window_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let oldest = unix_ms(time::OffsetDateTime::now_utc()).saturating_sub(window_ms);
        if unix_ms(occurred_at) < oldest {
            return Err(ContractError::new(
                ErrorKind::DedupeExpired,
                format!(
                    "occurred_at {} is older than [state] dedupe_retention ({}): a duplicate of it could no \
                     longer be recognised, so it is not applied",
                    occurred_at.format(&Rfc3339).unwrap_or_default(),
                    humantime_serde::re::humantime::format_duration(retention)
                ),
            ));
        }
        Ok(())
    }

    /// The checks of a decoded event against its tenant's config and the
    /// record's key.
    pub(super) fn check_tenant(&self, record: &InputRecord<'_>, event: Event) -> Result<Event, ContractError> {
        let Some(tenant) = self.tenants.get(&event.tenant) else {
            return Err(ContractError::new(
                ErrorKind::UnknownTenant,
                format!("tenant {:?} is not configured", event.tenant),
            ));
        };
        contract::check_key(record.key, &event)?;
        self.check_retention(event.occurred_at)?;
        check_for_tenant(tenant, &event)?;
        Ok(event)
    }

    pub(super) fn decode_command(&self, record: &InputRecord<'_>) -> Result<Command, ContractError> {
        let Some(payload) = record.payload else {
            return Err(ContractError::new(ErrorKind::MalformedJson, "the record has no value"));
        };
        let command = Command::decode(record.key, payload)?;
        self.check_retention(command.occurred_at)?;
        if !self.tenants.contains_key(&command.tenant) {
            return Err(ContractError::new(
                ErrorKind::UnknownTenant,
                format!("command for tenant {:?}, which is not configured", command.tenant),
            ));
        }
        Ok(command)
    }
}

/// The checks of a decoded event against its tenant's config: its branch,
/// its currency and the precision of its amounts. The till checks a quoted
/// order with the same function.
///
/// # Errors
/// [`ContractError`] as the stream would dead-letter the event.
pub fn check_for_tenant(tenant: &TenantConfig, event: &Event) -> Result<(), ContractError> {
    if !tenant.branches.contains_key(&event.branch) {
        return Err(ContractError::new(
            ErrorKind::UnknownBranch,
            format!("branch {:?} is not a branch of tenant {:?}", event.branch, event.tenant),
        ));
    }
    match &event.body {
        Body::OrderPaid(order) | Body::VisitCompleted(order) => {
            let amounts = order
                .lines
                .iter()
                .map(|l| l.amount)
                .chain(order.payments.iter().map(|p| p.amount))
                .chain(std::iter::once(order.total));
            check_money(tenant, &order.currency, amounts)?;
        }
        Body::OrderRefunded(refund) => check_money(tenant, &refund.currency, std::iter::once(refund.amount))?,
        Body::CustomerUpserted(_)
        | Body::BalanceAdjust(_)
        | Body::GiftCardExchange(_)
        | Body::BookingCreated(_)
        | Body::BookingRescheduled(_)
        | Body::BookingCancelled(_)
        | Body::BookingNoShow(_) => {}
    }
    Ok(())
}

pub(super) fn check_money(
    tenant: &TenantConfig,
    currency: &str,
    amounts: impl Iterator<Item = contract::Amount>,
) -> Result<(), ContractError> {
    if currency != tenant.currency {
        return Err(ContractError::new(
            ErrorKind::BadCurrency,
            format!(
                "body.currency is {currency:?}, but tenant {:?} keeps its balances in {}",
                tenant.id, tenant.currency
            ),
        ));
    }
    for amount in amounts {
        if amount.value().scale() > tenant.minor_units {
            return Err(ContractError::new(
                ErrorKind::BadCurrency,
                format!(
                    "amount {amount} has more decimals than {currency} has ({})",
                    tenant.minor_units
                ),
            ));
        }
    }
    Ok(())
}
