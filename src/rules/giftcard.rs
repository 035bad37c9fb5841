//! Gift-card exchange (seed 004) and its codes.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{checked, Entry, EntryType, Input, IssuedCard, Outcome, ReasonCode, RejectionType};

/// The code of the gift card bought by `event_id` of `tenant`: an HMAC of
/// both under the deployment's secret key, in groups of Crockford-style
/// base32. Replaying the same event gives the same code (exactly-once); no
/// one without the key can guess a code. 80 bits of entropy.
pub fn gift_card_code(key: &[u8], tenant: &str, event_id: &str) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm cannot run.
        Err(_) => return String::new(),
    };
    mac.update(tenant.as_bytes());
    mac.update(&[0]);
    mac.update(event_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..10]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

pub(super) fn exchange(input: &Input<'_>, card_id: &str) -> Outcome {
    let tenant = input.tenant;
    let Some(card) = tenant.gift_card(card_id) else {
        return Outcome::rejected(
            RejectionType::GiftCard,
            ReasonCode::UnknownGiftCard,
            format!(
                "{card_id:?} is not in the gift-card catalogue of tenant {:?}",
                tenant.id
            ),
        );
    };
    let points = card.points.value();
    let balance = input.balance(&card.account);
    if balance < points {
        return Outcome::rejected(
            RejectionType::GiftCard,
            ReasonCode::InsufficientPoints,
            format!(
                "{card_id:?} costs {points} points; the {} balance is {balance}",
                card.account
            ),
        );
    }
    Outcome {
        entries: vec![Entry {
            account: card.account.clone(),
            entry_type: EntryType::GiftCardExchange,
            program: Arc::clone(&super::GIFT_CARDS),
            amount: checked::neg(points),
            base: None,
            description: Some(format!("gift card {}", card.name.as_str().trim()).trim().to_owned()),
            operator: None,
        }],
        gift_card: Some(Box::new(IssuedCard {
            gift_card: card.id.clone(),
            code: gift_card_code(input.code_key, &tenant.id, &input.event.event_id),
            value: card.value.value(),
            points,
            account: card.account.to_string(),
        })),
        ..Outcome::default()
    }
}
