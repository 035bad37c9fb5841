//! A gift card a customer bought (seed 004): what the customer summary of
//! the read API shows, code included.

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::{CodecError, Reader, Writer};

/// One gift card bought with points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftCardRecord {
    /// The catalogue id.
    pub gift_card: String,
    /// The code the customer redeems.
    pub code: String,
    /// Its value in the tenant's currency.
    pub value: Decimal,
    /// The currency.
    pub currency: String,
    /// Points paid.
    pub points: Decimal,
    /// The points account paid from.
    pub account: String,
    /// When it was bought (the event's `occurred_at`).
    pub bought_at: OffsetDateTime,
}

impl GiftCardRecord {
    /// The version 1 encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(48 + self.gift_card.len() + self.code.len() + self.account.len());
        w.str(&self.gift_card);
        w.str(&self.code);
        w.decimal(self.value);
        w.str(&self.currency);
        w.decimal(self.points);
        w.str(&self.account);
        w.time(self.bought_at);
        w.finish()
    }

    /// Decodes [`GiftCardRecord::encode`]'s output.
    ///
    /// # Errors
    /// [`CodecError`] if the value is corrupt.
    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::v1(value)?;
        let record = GiftCardRecord {
            gift_card: r.str("gift card id")?,
            code: r.str("gift card code")?,
            value: r.decimal("gift card value")?,
            currency: r.str("gift card currency")?,
            points: r.decimal("gift card points")?,
            account: r.str("gift card account")?,
            bought_at: r.time("gift card bought_at")?,
        };
        r.end()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let record = GiftCardRecord {
            gift_card: "coffee".into(),
            code: "ABCD-EFGH".into(),
            value: Decimal::new(500, 2),
            currency: "AZN".into(),
            points: Decimal::new(50, 0),
            account: "bonus".into(),
            bought_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(GiftCardRecord::decode(&record.encode()).ok(), Some(record));
        assert!(GiftCardRecord::decode(&[1, 2]).is_err());
    }
}
