//! Outgoing events: what accrue publishes to the accruals topic, and the
//! headers of dead-letter records.

use serde::{Deserialize, Serialize};

/// Header carrying the deterministic id `partition-sequence` of every
/// published record; downstream consumers deduplicate by it.
pub const HEADER_ID: &str = "accrue-id";
/// Dead-letter header: the [`ErrorKind`](super::ErrorKind) name.
pub const HEADER_ERROR_KIND: &str = "accrue-error-kind";
/// Dead-letter header: the human-readable reason.
pub const HEADER_ERROR_REASON: &str = "accrue-error-reason";
/// Dead-letter header: the input topic.
pub const HEADER_SOURCE_TOPIC: &str = "accrue-source-topic";
/// Dead-letter header: the input partition.
pub const HEADER_SOURCE_PARTITION: &str = "accrue-source-partition";
/// Dead-letter header: the input offset.
pub const HEADER_SOURCE_OFFSET: &str = "accrue-source-offset";
/// Dead-letter header: the size in bytes of the original value, present when
/// the value carried is a truncated copy.
pub const HEADER_ORIGINAL_SIZE: &str = "accrue-original-size";
/// Dead-letter header: `"true"` when the value (and possibly the key and the
/// reason) is a truncated copy that fits the producer's `message.max.bytes`.
pub const HEADER_TRUNCATED: &str = "accrue-truncated";
/// Dead-letter header of an `output_too_large` record: the topic the
/// replaced output was meant for (its id is the record's `accrue-id`).
pub const HEADER_OUTPUT_TOPIC: &str = "accrue-output-topic";

/// The deterministic id of output record `seq` of input partition `p`.
pub fn output_id(partition: u32, seq: u64) -> String {
    format!("{partition}-{seq}")
}

/// Parses an id made by [`output_id`].
pub fn parse_output_id(id: &str) -> Option<(u32, u64)> {
    let (p, seq) = id.split_once('-')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

/// Where in the input an output came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: u32,
    /// Input offset.
    pub offset: i64,
}

/// An accrual event: one ledger entry, as published on the accruals topic
/// and stored in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccrualEvent {
    /// Id (`partition-sequence`), type (always `accrual.recorded` in v1:
    /// one per ledger entry, whatever its `entry_type`), customer and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The account that moved: `cashback`, `bonus`, ...
    pub account: String,
    /// Ledger entry type: `accrual`, `redemption`, `reversal`, ...
    pub entry_type: String,
    /// The program that decided the change.
    pub program: String,
    /// Signed amount, decimal string.
    pub amount: String,
    /// The account balance after this entry, decimal string.
    pub balance: String,
    /// The amount the program's percentage applied to, decimal string.
    pub base_amount: String,
    /// Currency of `amount` and `balance`.
    pub currency: String,
    /// Text the customer sees (manual adjustments, gift cards, service points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who made a manual adjustment (`balance.adjust`'s `operator`), for
    /// the audit trail; absent on other entries and on entries written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

impl AccrualEvent {
    /// The `type` of accrual events.
    pub const TYPE: &'static str = "accrual.recorded";
}

/// Common fields of the non-ledger outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputHeader {
    /// Deterministic id, `partition-sequence`.
    pub id: String,
    /// The output type, e.g. `redemption.rejected`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Envelope version of this output.
    pub schema_version: u32,
    /// Tenant of the customer.
    pub tenant: String,
    /// The customer.
    pub customer: String,
    /// Branch of the source event.
    pub branch: String,
    /// `event_id` of the input event.
    pub source_event_id: String,
    /// Where the input event was read.
    pub source: SourceRef,
    /// `occurred_at` of the input event (RFC 3339).
    pub occurred_at: String,
}

/// A valid request that the programs refused: `redemption.rejected`,
/// `refund.rejected`, `adjustment.rejected` or `giftcard.rejected`.
/// Nothing was debited or credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionEvent {
    /// Id, type and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// Machine-readable reason, e.g. `insufficient_balance`.
    pub reason_code: String,
    /// Human-readable reason with the numbers.
    pub reason: String,
}

/// `balance.manually_updated`: notification of a manual adjustment, sent
/// only for customers with marketing consent (seed 004).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceNotification {
    /// Id, type and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The account adjusted.
    pub account: String,
    /// Signed amount of the adjustment.
    pub amount: String,
    /// Balance after it.
    pub balance: String,
    /// The description the customer sees.
    pub description: String,
}

/// `points.expiring`: credits of an account expire soon; sent only to
/// customers with marketing consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsExpiring {
    /// Id, type and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The account.
    pub account: String,
    /// What is left of the credits that expire.
    pub amount: String,
    /// When the first of them expires (RFC 3339).
    pub expires_at: String,
    /// The account's balance now.
    pub balance: String,
}

/// `tier.changed`: the customer moved to another tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChanged {
    /// Id, type and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The tier before (`null`: below every level).
    pub from: Option<String>,
    /// The tier after (`null`: below every level).
    pub to: Option<String>,
    /// What the tiers count: `spend` or `visits`.
    pub metric: String,
    /// The window's spend or visits that decided it.
    pub value: String,
}

/// `giftcard.issued`: a gift card bought with points (seed 004).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftCardIssued {
    /// Id, type and source.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// Catalogue id.
    pub gift_card: String,
    /// The redeemable code: unique and unguessable.
    pub code: String,
    /// Value of the card in `currency`.
    pub value: String,
    /// Currency of `value`.
    pub currency: String,
    /// Points paid.
    pub points: String,
    /// Account the points came from.
    pub account: String,
}

/// `referral.applied`: an invitee's first visit with a referrer (seed 002).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralApplied {
    /// Id, type and source; the customer is the invitee.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The referral program.
    pub program: String,
    /// The referrer, found by phone within the tenant.
    pub referrer: String,
    /// The invitee's discount on this visit, percent.
    pub invitee_discount_percent: String,
    /// The account the referrer's reward is credited to.
    pub referrer_account: String,
    /// The referrer's reward (credited in the referrer's partition).
    pub referrer_amount: String,
    /// Id of the internal command that carries the reward, if any; the
    /// referrer's `accrual.recorded` has it as `source_event_id`'s command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// `partner.identified`: a partner tenant's customer at this tenant (seed 000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerIdentified {
    /// Id, type and source; tenant and customer are the event's.
    #[serde(flatten)]
    pub header: OutputHeader,
    /// The tenant the customer belongs to.
    pub partner_tenant: String,
    /// The customer's id there.
    pub partner_customer: String,
    /// Discount granted here, percent.
    pub discount_percent: String,
    /// Accrual here, percent.
    pub accrual_percent: String,
    /// Whether payment and accrual go to the shared deposit at the partner.
    pub shared_deposit: bool,
    /// Id of the internal command that carries the order to the partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_output_id(&output_id(3, 1234)), Some((3, 1234)));
        assert_eq!(parse_output_id("x-1"), None);
    }
}
