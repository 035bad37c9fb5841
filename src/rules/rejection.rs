//! Refusals: what was refused ([`RejectionType`], the output's `type`) and
//! why ([`ReasonCode`], its `reason_code`). The wire strings are in
//! docs/events.md, §11.2.

/// A refused request: nothing is debited or credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The output type: `redemption.rejected`, `refund.rejected`, ...
    pub output_type: RejectionType,
    /// Machine-readable reason.
    pub code: ReasonCode,
    /// Human-readable reason with the numbers.
    pub reason: String,
}

/// The output type of a refusal, by what was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionType {
    /// `redemption.rejected`: an order's balance payment.
    Redemption,
    /// `refund.rejected`.
    Refund,
    /// `customer.rejected`: never sent (a profile moves no balance); named
    /// so that every event type has one.
    Customer,
    /// `adjustment.rejected`.
    Adjustment,
    /// `giftcard.rejected`.
    GiftCard,
    /// `booking.rejected`.
    Booking,
    /// `referral.rejected`: at the invitee's visit or at the referrer.
    Referral,
    /// `partner.rejected`: a partner's customer at the place of visit.
    Partner,
    /// `partner_payment.rejected`: at the partner keeping the deposit.
    PartnerPayment,
}

impl RejectionType {
    /// The output's `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionType::Redemption => "redemption.rejected",
            RejectionType::Refund => "refund.rejected",
            RejectionType::Customer => "customer.rejected",
            RejectionType::Adjustment => "adjustment.rejected",
            RejectionType::GiftCard => "giftcard.rejected",
            RejectionType::Booking => "booking.rejected",
            RejectionType::Referral => "referral.rejected",
            RejectionType::Partner => "partner.rejected",
            RejectionType::PartnerPayment => "partner_payment.rejected",
        }
    }
}

/// Why a request was refused: the output's `reason_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// The account is not one of the tenant's.
    UnknownAccount,
    /// Paying with this balance is not enabled in the branch.
    PaymentMethodDisabled,
    /// More decimals than the account holds.
    BadPrecision,
    /// The balance is too small.
    InsufficientBalance,
    /// More than the share of the bill this balance may pay.
    OverCap,
    /// A refund of an order nothing is recorded for.
    UnknownOrder,
    /// A refund of more than is left to refund.
    ExceedsRefundable,
    /// A computed amount does not fit a decimal.
    AmountOverflow,
    /// A computed time is out of range.
    DateOutOfRange,
    /// A balance would pass the contract's limit.
    BalanceLimit,
    /// The booking was already created.
    BookingExists,
    /// No such booking for this customer.
    UnknownBooking,
    /// Only a scheduled booking moves.
    NotScheduled,
    /// The booking was already cancelled or a no-show.
    NotActive,
    /// Not in the gift-card catalogue.
    UnknownGiftCard,
    /// Too few points for the gift card.
    InsufficientPoints,
    /// The tenant runs no referral program.
    NoReferralProgram,
    /// A referral applies only to a first visit.
    NotFirstVisit,
    /// No customer has the referrer's phone.
    ReferrerNotFound,
    /// The referrer's phone is the invitee's own.
    SelfReferral,
    /// No partnership active in both directions.
    NoActivePartnership,
    /// No customer of the partner has the phone.
    PartnerCustomerNotFound,
    /// A partner's customer pays with money or deposit only.
    UnsupportedPayment,
    /// A referral credit across tenants.
    CrossTenant,
}

impl ReasonCode {
    /// The `reason_code` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::UnknownAccount => "unknown_account",
            ReasonCode::PaymentMethodDisabled => "payment_method_disabled",
            ReasonCode::BadPrecision => "bad_precision",
            ReasonCode::InsufficientBalance => "insufficient_balance",
            ReasonCode::OverCap => "over_cap",
            ReasonCode::UnknownOrder => "unknown_order",
            ReasonCode::ExceedsRefundable => "exceeds_refundable",
            ReasonCode::AmountOverflow => "amount_overflow",
            ReasonCode::DateOutOfRange => "date_out_of_range",
            ReasonCode::BalanceLimit => "balance_limit",
            ReasonCode::BookingExists => "booking_exists",
            ReasonCode::UnknownBooking => "unknown_booking",
            ReasonCode::NotScheduled => "not_scheduled",
            ReasonCode::NotActive => "not_active",
            ReasonCode::UnknownGiftCard => "unknown_gift_card",
            ReasonCode::InsufficientPoints => "insufficient_points",
            ReasonCode::NoReferralProgram => "no_referral_program",
            ReasonCode::NotFirstVisit => "not_first_visit",
            ReasonCode::ReferrerNotFound => "referrer_not_found",
            ReasonCode::SelfReferral => "self_referral",
            ReasonCode::NoActivePartnership => "no_active_partnership",
            ReasonCode::PartnerCustomerNotFound => "partner_customer_not_found",
            ReasonCode::UnsupportedPayment => "unsupported_payment",
            ReasonCode::CrossTenant => "cross_tenant",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_documented_ones() {
        let events = include_str!("../../docs/events.md");
        let codes = [
            ReasonCode::UnknownAccount,
            ReasonCode::PaymentMethodDisabled,
            ReasonCode::BadPrecision,
            ReasonCode::InsufficientBalance,
            ReasonCode::OverCap,
            ReasonCode::UnknownOrder,
            ReasonCode::ExceedsRefundable,
            ReasonCode::AmountOverflow,
            ReasonCode::DateOutOfRange,
            ReasonCode::BalanceLimit,
            ReasonCode::BookingExists,
            ReasonCode::UnknownBooking,
            ReasonCode::NotScheduled,
            ReasonCode::NotActive,
            ReasonCode::UnknownGiftCard,
            ReasonCode::InsufficientPoints,
            ReasonCode::NoReferralProgram,
            ReasonCode::NotFirstVisit,
            ReasonCode::ReferrerNotFound,
            ReasonCode::SelfReferral,
            ReasonCode::NoActivePartnership,
            ReasonCode::PartnerCustomerNotFound,
            ReasonCode::UnsupportedPayment,
            ReasonCode::CrossTenant,
        ];
        for code in codes {
            assert!(events.contains(&format!("`{}`", code.as_str())), "{code:?}");
        }
        let types = [
            RejectionType::Redemption,
            RejectionType::Refund,
            RejectionType::Adjustment,
            RejectionType::GiftCard,
            RejectionType::Booking,
            RejectionType::Referral,
            RejectionType::Partner,
            RejectionType::PartnerPayment,
        ];
        for output in types {
            assert!(events.contains(&format!("| `{}` |", output.as_str())), "{output:?}");
        }
        assert_eq!(RejectionType::Customer.as_str(), "customer.rejected");
    }
}
