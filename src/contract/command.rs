//! Internal commands: effects of one customer's event on another customer's
//! balance (a referral credit, a partner's order paid from a shared
//! deposit). accrue writes them to the internal topic through the outbox,
//! keyed by the target `tenant:customer`, and applies each exactly once in
//! the target's partition, deduplicated by `id` (origin partition and
//! sequence). Only accrue writes this topic; its format is documented in
//! `docs/events.md` for operators, not for producers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::limits::{check_amount, check_time};
use super::{check_id, check_key_of, first_byte, parse_output_id, Amount, ContractError, ErrorKind, SCHEMA_VERSION};

/// One internal command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Envelope version.
    pub schema_version: u32,
    /// `partition-sequence` of the outbox record that carries it: unique and
    /// deterministic, the target's dedupe key.
    pub id: String,
    /// The tenant whose balance the command moves.
    pub tenant: String,
    /// The customer whose balance the command moves.
    pub customer: String,
    /// The tenant of the event that caused it.
    pub source_tenant: String,
    /// The customer of the event that caused it.
    pub source_customer: String,
    /// The branch of the event that caused it (of `source_tenant`).
    pub branch: String,
    /// `event_id` of the event that caused it.
    pub source_event_id: String,
    /// `occurred_at` of the event that caused it.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What to do.
    #[serde(flatten)]
    pub body: CommandBody,
}

/// The kinds of command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CommandBody {
    /// `referral.credit`: the referrer's reward for an invitee's visit.
    #[serde(rename = "referral.credit")]
    ReferralCredit(ReferralCredit),
    /// `partner.order`: a partner customer's order at `source_tenant`, paid
    /// (in part) from and accruing into the shared deposit.
    #[serde(rename = "partner.order")]
    PartnerOrder(PartnerOrder),
}

/// A referral reward, already computed at the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralCredit {
    /// The referral program id.
    pub program: String,
    /// The account credited.
    pub account: String,
    /// The amount, positive, at the account's scale.
    pub amount: Amount,
}

/// A partner customer's order at the tenant where they were identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerOrder {
    /// The bill.
    pub total: Amount,
    /// Paid from the shared deposit.
    pub deposit: Amount,
    /// The amount the accrual percentage applies to.
    pub base: Amount,
    /// Accrual percentage for this customer at `source_tenant`. The cap
    /// on paying from deposit is read from the target's configuration, where
    /// the agreement is re-checked.
    pub accrual_percent: Amount,
}

impl Command {
    /// The type's wire name.
    pub fn type_name(&self) -> &'static str {
        match self.body {
            CommandBody::ReferralCredit(_) => "referral.credit",
            CommandBody::PartnerOrder(_) => "partner.order",
        }
    }

    /// Origin partition and sequence, from `id`.
    pub fn origin(&self) -> Option<(u32, u64)> {
        parse_output_id(&self.id)
    }

    /// Decodes a record of the internal topic and checks its key.
    ///
    /// # Errors
    /// A [`ContractError`] naming what is wrong.
    pub fn decode(key: Option<&[u8]>, bytes: &[u8]) -> Result<Command, ContractError> {
        if first_byte(bytes) != Some(b'{') {
            return Err(ContractError::new(
                ErrorKind::MalformedJson,
                "the command must be a JSON object",
            ));
        }
        let command: Command = serde_json::from_slice(bytes).map_err(|err| {
            let kind = if err.is_data() {
                ErrorKind::InvalidField
            } else {
                ErrorKind::MalformedJson
            };
            ContractError::new(kind, format!("not an internal command: {err}"))
        })?;
        if command.schema_version != SCHEMA_VERSION {
            return Err(ContractError::new(
                ErrorKind::UnsupportedSchemaVersion,
                format!("command schema_version {} is not supported", command.schema_version),
            ));
        }
        for (field, value) in [
            ("tenant", &command.tenant),
            ("customer", &command.customer),
            ("source_tenant", &command.source_tenant),
            ("source_customer", &command.source_customer),
            ("branch", &command.branch),
            ("source_event_id", &command.source_event_id),
        ] {
            check_id(field, value)?;
        }
        check_time("occurred_at", command.occurred_at)?;
        if command.origin().is_none() {
            return Err(ContractError::new(
                ErrorKind::InvalidField,
                format!("id {:?} is not partition-sequence", command.id),
            ));
        }
        let amounts: Vec<(&str, Amount)> = match &command.body {
            CommandBody::ReferralCredit(c) => vec![("amount", c.amount)],
            CommandBody::PartnerOrder(o) => vec![
                ("total", o.total),
                ("deposit", o.deposit),
                ("base", o.base),
                ("accrual_percent", o.accrual_percent),
            ],
        };
        for (field, amount) in amounts {
            if amount.value().is_sign_negative() && !amount.value().is_zero() {
                return Err(ContractError::new(
                    ErrorKind::NegativeAmount,
                    format!("{field} is {amount}; must not be negative"),
                ));
            }
            check_amount(field, amount.value())?;
        }
        check_key_of(key, &command.tenant, &command.customer)?;
        Ok(command)
    }

    /// The JSON of the command.
    ///
    /// # Errors
    /// Only if serde fails, which a well-formed command never does.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn credit() -> Command {
        Command {
            schema_version: 1,
            id: "2-17".into(),
            tenant: "t".into(),
            customer: "referrer".into(),
            source_tenant: "t".into(),
            source_customer: "invitee".into(),
            branch: "b".into(),
            source_event_id: "e-1".into(),
            occurred_at: time::macros::datetime!(2026-11-23 12:00 UTC),
            body: CommandBody::ReferralCredit(ReferralCredit {
                program: "referral".into(),
                account: "cashback".into(),
                amount: Amount::new(Decimal::new(500, 2)),
            }),
        }
    }

    #[test]
    fn round_trips_and_checks_the_key() {
        let bytes = credit().encode().unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("\"type\":\"referral.credit\""), "{text}");
        assert!(text.contains("\"amount\":\"5.00\""), "{text}");
        let back = Command::decode(Some(b"t:referrer"), &bytes);
        assert_eq!(back.as_ref().ok(), Some(&credit()));
        assert_eq!(back.ok().and_then(|c| c.origin()), Some((2, 17)));
        let wrong = Command::decode(Some(b"other:referrer"), &bytes).err().map(|e| e.kind);
        assert_eq!(wrong, Some(ErrorKind::KeyMismatch));
    }

    #[test]
    fn refuses_amounts_and_times_beyond_the_limits() {
        let mut huge = credit();
        huge.body = CommandBody::ReferralCredit(ReferralCredit {
            program: "referral".into(),
            account: "cashback".into(),
            amount: Amount::new(Decimal::MAX),
        });
        let mut early = credit();
        early.occurred_at = OffsetDateTime::UNIX_EPOCH;
        for bad in [huge, early] {
            let bytes = bad.encode().unwrap_or_default();
            assert_eq!(
                Command::decode(Some(b"t:referrer"), &bytes).err().map(|e| e.kind),
                Some(ErrorKind::OutOfRange)
            );
        }
    }

    #[test]
    fn refuses_garbage_and_bad_ids() {
        assert_eq!(
            Command::decode(Some(b"t:x"), b"[1]").err().map(|e| e.kind),
            Some(ErrorKind::MalformedJson)
        );
        let mut bad = credit();
        bad.id = "not-an-id".into();
        let bytes = bad.encode().unwrap_or_default();
        assert_eq!(
            Command::decode(Some(b"t:referrer"), &bytes).err().map(|e| e.kind),
            Some(ErrorKind::InvalidField)
        );
    }
}
