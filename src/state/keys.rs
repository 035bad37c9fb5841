//! Every key family and its encoding, in one place.
//!
//! All keys start with the input partition as a big-endian `u32`, so the
//! whole state of a partition is one contiguous range in every family and
//! can move to another instance (scale-out) or be dropped as a unit.

use rust_decimal::Decimal;

pub mod totals;
pub use totals::{
    day_of_ms, parse_totals, totals, totals_day, totals_into, totals_prefix, TotalsDims, TotalsValue, RUNNING_DAY,
};

/// A column family of the state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `p | tenant 0 customer 0 account` -> balance (16-byte decimal).
    Balances,
    /// `p | tenant 0 customer 0 seq` -> ledger entry ([`super::codec::LedgerEntry`]).
    Ledger,
    /// `p | tenant 0 event_id` -> [`DedupeValue`]: the sequence of the
    /// event's first output (or `u64::MAX`) and its `occurred_at`.
    Dedupe,
    /// `p | topic` -> next input offset to apply (`i64` big-endian).
    Offsets,
    /// `p | seq` -> outbox record waiting for the broker's acknowledgement
    /// (`crate::outbox::Stored`).
    Outbox,
    /// `p | name` -> per-partition counters (the output sequence).
    Meta,
    /// `p | tenant 0 customer` -> customer profile ([`super::codec`]).
    Customers,
    /// `p | tenant 0 customer 0 event_id` -> what an order accrued and redeemed ([`super::codec`]), for refunds.
    Orders,
    /// `p | tenant 0 customer 0 booking_id` -> a booking and its credit state ([`super::codec`]).
    Bookings,
    /// `p | due_ms | tenant 0 booking_id` -> empty: durable timers, in due order.
    Timers,
    /// `p | tenant 0 occurred_ms | seq` -> the ledger key: the read API's
    /// secondary index of a tenant's ledger by time (see `docs/api.md`).
    LedgerByTime,
    /// `p | tenant 0 day entry_type 0 account 0 program 0 branch 0 partner 0
    /// unit` -> sum and count ([`TotalsValue`]): the read API's totals by
    /// day, kept in the same write as the ledger (see [`totals`]).
    Totals,
    /// `p | tenant 0 customer 0 event_id` -> a gift card the customer
    /// bought ([`super::codec::GiftCardRecord`]), for the customer summary.
    GiftCards,
    /// `p | tenant 0 customer` -> the customer's loyalty record
    /// (`crate::rules::Loyalty`: expiring credits, the tiers' window, limit
    /// counters, the tier), for tenants that use them.
    Loyalty,
    /// `p | due_ms | tenant 0 customer` -> empty: each customer's review
    /// timer (expiries, expiry warnings, tier review), in due order.
    Reviews,
    /// `p | tenant 0 customer` ([`loyalty`], the same key as the loyalty
    /// record) -> the customer's credits that may expire
    /// (`crate::rules::loyalty::Lots`), oldest first.
    Lots,
}

impl Family {
    /// Every family, in creation order.
    pub const ALL: [Family; 16] = [
        Family::Balances,
        Family::Ledger,
        Family::Dedupe,
        Family::Offsets,
        Family::Outbox,
        Family::Meta,
        Family::Customers,
        Family::Orders,
        Family::Bookings,
        Family::Timers,
        Family::LedgerByTime,
        Family::Totals,
        Family::GiftCards,
        Family::Loyalty,
        Family::Reviews,
        Family::Lots,
    ];

    /// The family's number in the changelog's record keys (its index in
    /// [`Family::ALL`]; new families are appended, so numbers never change).
    pub fn tag(self) -> u8 {
        Family::ALL.iter().position(|f| *f == self).unwrap_or(0) as u8
    }

    /// The family numbered `tag` in the changelog.
    pub fn from_tag(tag: u8) -> Option<Family> {
        Family::ALL.get(usize::from(tag)).copied()
    }

    /// The RocksDB column-family name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Balances => "balances",
            Family::Ledger => "ledger",
            Family::Dedupe => "dedupe",
            Family::Offsets => "offsets",
            Family::Outbox => "outbox",
            Family::Meta => "meta",
            Family::Customers => "customers",
            Family::Orders => "orders",
            Family::Bookings => "bookings",
            Family::Timers => "timers",
            Family::LedgerByTime => "ledger_by_time",
            Family::Totals => "totals",
            Family::GiftCards => "gift_cards",
            Family::Loyalty => "loyalty",
            Family::Reviews => "reviews",
            Family::Lots => "lots",
        }
    }
}

/// The partition a key belongs to: its first four bytes.
pub fn partition_of(key: &[u8]) -> Option<u32> {
    key.get(0..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
}

/// The 4-byte prefix of everything belonging to partition `p`.
pub fn partition_prefix(p: u32) -> [u8; 4] {
    p.to_be_bytes()
}

fn with_parts(p: u32, parts: &[&[u8]], extra: usize) -> Vec<u8> {
    let len = 4 + parts.iter().map(|s| s.len() + 1).sum::<usize>() + extra;
    let mut key = Vec::with_capacity(len);
    key.extend_from_slice(&p.to_be_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

/// Balance of one account of one customer.
pub fn balance(p: u32, tenant: &str, customer: &str, account: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes(), account.as_bytes()], 0)
}

/// Prefix of all balances of one customer; the account name follows it.
pub fn balance_prefix(p: u32, tenant: &str, customer: &str) -> Vec<u8> {
    let mut key = with_parts(p, &[tenant.as_bytes(), customer.as_bytes()], 16);
    key.push(0);
    key
}

/// Prefix of every balance of a tenant in partition `p`; the customer, a
/// 0 byte and the account follow it.
pub fn balance_tenant_prefix(p: u32, tenant: &str) -> Vec<u8> {
    let mut key = with_parts(p, &[tenant.as_bytes()], 1);
    key.push(0);
    key
}

/// A customer's profile.
pub fn customer(p: u32, tenant: &str, customer: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes()], 0)
}

/// The record of a customer's order (by its `event_id`), for refunds. The
/// customer is part of the key: a refund sent for another customer finds
/// nothing.
pub fn order(p: u32, tenant: &str, customer: &str, event_id: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes(), event_id.as_bytes()], 0)
}

/// A gift card a customer bought with the event `event_id`.
pub fn gift_card(p: u32, tenant: &str, customer: &str, event_id: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes(), event_id.as_bytes()], 0)
}

/// Prefix of every gift card of one customer; the event id follows it.
pub fn gift_card_prefix(p: u32, tenant: &str, customer: &str) -> Vec<u8> {
    let mut key = with_parts(p, &[tenant.as_bytes(), customer.as_bytes()], 1);
    key.push(0);
    key
}

/// A customer's booking. The customer is part of the key: another
/// customer reusing the booking id can neither see nor overwrite it.
pub fn booking(p: u32, tenant: &str, customer: &str, booking_id: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes(), booking_id.as_bytes()], 0)
}

/// The timer of a customer's booking, due at `due_ms` (Unix milliseconds;
/// earlier than 1970 counts as 1970). Timers of a partition sort by due time.
pub fn timer(p: u32, due_ms: i64, tenant: &str, customer: &str, booking_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(14 + tenant.len() + customer.len() + booking_id.len());
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key.extend_from_slice(booking_id.as_bytes());
    key
}

/// A timer: when it is due and whose booking it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerKey {
    /// Due time, Unix milliseconds.
    pub due_ms: i64,
    /// Tenant id.
    pub tenant: String,
    /// Customer id.
    pub customer: String,
    /// Booking id.
    pub booking_id: String,
}

/// Splits a timer key made by [`timer`].
pub fn parse_timer(key: &[u8]) -> Option<TimerKey> {
    let due = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    let mut parts = key.get(12..)?.splitn(3, |b| *b == 0);
    let mut text = || parts.next().and_then(|p| String::from_utf8(p.to_vec()).ok());
    Some(TimerKey {
        due_ms: i64::try_from(due).ok()?,
        tenant: text()?,
        customer: text()?,
        booking_id: text()?,
    })
}

/// A customer's loyalty record, and (in family `lots`) the customer's
/// credits that may expire: the batch keeps both under this one key.
pub fn loyalty(p: u32, tenant: &str, customer: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), customer.as_bytes()], 0)
}

/// The review timer of a customer, due at `due_ms` (Unix milliseconds;
/// earlier than 1970 counts as 1970). Reviews of a partition sort by due time.
pub fn review(p: u32, due_ms: i64, tenant: &str, customer: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(13 + tenant.len() + customer.len());
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(customer.as_bytes());
    key
}

/// Splits a review key made by [`review`]: due time, tenant, customer. A
/// tenant id never holds a zero byte, so the first one ends it.
pub fn parse_review(key: &[u8]) -> Option<(i64, String, String)> {
    let due = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    let rest = key.get(12..)?;
    let at = rest.iter().position(|b| *b == 0)?;
    Some((
        i64::try_from(due).ok()?,
        String::from_utf8(rest.get(..at)?.to_vec()).ok()?,
        String::from_utf8(rest.get(at + 1..)?.to_vec()).ok()?,
    ))
}

/// Prefix of one customer's ledger entries, in sequence order.
pub fn ledger_prefix(p: u32, tenant: &str, customer: &str) -> Vec<u8> {
    let mut key = with_parts(p, &[tenant.as_bytes(), customer.as_bytes()], 9);
    key.push(0);
    key
}

/// One ledger entry.
pub fn ledger(p: u32, tenant: &str, customer: &str, seq: u64) -> Vec<u8> {
    let mut key = ledger_prefix(p, tenant, customer);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The parts of a ledger key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerKey {
    /// Partition.
    pub p: u32,
    /// Tenant id.
    pub tenant: String,
    /// Customer id.
    pub customer: String,
    /// Output sequence of the entry.
    pub seq: u64,
}

/// Splits a ledger key made by [`ledger`]: the tenant ends at the first
/// zero byte, the sequence is the last eight bytes.
pub fn parse_ledger(key: &[u8]) -> Option<LedgerKey> {
    let p = partition_of(key)?;
    let split = key.len().checked_sub(9)?;
    let (ids, tail) = (key.get(4..split)?, key.get(split..)?);
    let (&zero, seq) = tail.split_first()?;
    let at = ids.iter().position(|b| *b == 0)?;
    if zero != 0 {
        return None;
    }
    Some(LedgerKey {
        p,
        tenant: String::from_utf8(ids.get(..at)?.to_vec()).ok()?,
        customer: String::from_utf8(ids.get(at + 1..)?.to_vec()).ok()?,
        seq: decode_u64(seq)?,
    })
}

/// Prefix of a tenant's ledger index in partition `p`; the occurred time
/// (Unix milliseconds, big-endian) and the sequence follow it.
pub fn ledger_by_time_prefix(p: u32, tenant: &str) -> Vec<u8> {
    let mut key = with_parts(p, &[tenant.as_bytes()], 17);
    key.push(0);
    key
}

/// Index entry of ledger entry `seq`, which occurred at `occurred_ms`
/// (Unix milliseconds; earlier than 1970 sorts as 0).
pub fn ledger_by_time(p: u32, tenant: &str, occurred_ms: i64, seq: u64) -> Vec<u8> {
    let mut key = ledger_by_time_prefix(p, tenant);
    key.extend_from_slice(&(occurred_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The occurred time and sequence of an index key of `tenant`'s prefix
/// length `prefix_len`.
pub fn parse_ledger_by_time(key: &[u8], prefix_len: usize) -> Option<(i64, u64)> {
    let ms = u64::from_be_bytes(key.get(prefix_len..prefix_len + 8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(key.get(prefix_len + 8..prefix_len + 16)?.try_into().ok()?);
    Some((i64::try_from(ms).ok()?, seq))
}

/// Unix milliseconds of an RFC 3339 time (`occurred_at` of a ledger
/// entry); `None` if it is not one.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The time of Unix milliseconds `ms` (a due or expiry time); `None`
/// outside the calendar `time` holds.
pub fn time_of_ms(ms: i64) -> Option<time::OffsetDateTime> {
    // i64 milliseconds times 10^6 always fits an i128.
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms).saturating_mul(1_000_000)).ok()
}

/// Dedupe record of an input event id within a tenant.
pub fn dedupe(p: u32, tenant: &str, event_id: &str) -> Vec<u8> {
    with_parts(p, &[tenant.as_bytes(), event_id.as_bytes()], 0)
}

/// What a dedupe record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeValue {
    /// The sequence of the event's first output, or `u64::MAX` if it had none.
    pub first_seq: u64,
    /// The event's `occurred_at`, Unix milliseconds; `None` in records
    /// written before retention existed (8-byte values), which never expire.
    pub occurred_ms: Option<i64>,
}

impl DedupeValue {
    /// Encodes as 16 bytes: the sequence, then `occurred_at` (big-endian).
    pub fn encode(first_seq: u64, occurred_ms: i64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&first_seq.to_be_bytes());
        out[8..].copy_from_slice(&occurred_ms.to_be_bytes());
        out
    }

    /// Decodes a 16-byte value, or an 8-byte one of an older version;
    /// `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<DedupeValue> {
        match bytes.len() {
            8 => Some(DedupeValue {
                first_seq: decode_u64(bytes)?,
                occurred_ms: None,
            }),
            16 => Some(DedupeValue {
                first_seq: decode_u64(bytes.get(..8)?)?,
                occurred_ms: Some(i64::from_be_bytes(bytes.get(8..)?.try_into().ok()?)),
            }),
            _ => None,
        }
    }
}

/// Next offset to apply for one input topic's partition.
pub fn offset(p: u32, topic: &str) -> Vec<u8> {
    with_parts(p, &[topic.as_bytes()], 0)
}

/// Outbox record `seq` of partition `p`.
pub fn outbox(p: u32, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits an outbox key into partition and sequence.
pub fn parse_outbox(key: &[u8]) -> Option<(u32, u64)> {
    let p = u32::from_be_bytes(key.get(0..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(key.get(4..12)?.try_into().ok()?);
    Some((p, seq))
}

/// The next output sequence number of partition `p`.
pub fn next_seq(p: u32) -> Vec<u8> {
    with_parts(p, &[b"next_seq"], 0)
}

/// The owner of partition `p`'s state: epoch and token (see
/// `crate::changelog::Owner`).
pub fn owner(p: u32) -> Vec<u8> {
    with_parts(p, &[b"owner"], 0)
}

/// The last batch of partition `p` written to the changelog: its number and
/// the first output sequence it reserved.
pub fn changelog_cursor(p: u32) -> Vec<u8> {
    with_parts(p, &[b"changelog"], 0)
}

/// Encodes a balance value.
pub fn encode_decimal(value: Decimal) -> [u8; 16] {
    value.serialize()
}

/// Decodes a balance value; `None` if the bytes are not one.
pub fn decode_decimal(bytes: &[u8]) -> Option<Decimal> {
    let raw: [u8; 16] = bytes.try_into().ok()?;
    Some(Decimal::deserialize(raw))
}

/// Encodes a `u64` counter or offset.
pub fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// Decodes a `u64` counter or offset.
pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_prefix_groups_every_family() {
        let p = 7;
        for key in [
            balance(p, "t", "c", "cashback"),
            ledger(p, "t", "c", 1),
            dedupe(p, "t", "e"),
            offset(p, "orders"),
            outbox(p, 1),
            next_seq(p),
            customer(p, "t", "c"),
            order(p, "t", "c", "e"),
            booking(p, "t", "c", "b"),
            timer(p, 5, "t", "c", "b"),
            ledger_by_time(p, "t", 5, 1),
            totals(p, "t", 5, &TotalsDims::default()),
            gift_card(p, "t", "c", "e"),
            loyalty(p, "t", "c"),
            review(p, 5, "t", "c"),
        ] {
            assert!(key.starts_with(&partition_prefix(p)));
        }
    }

    #[test]
    fn ledger_keys_sort_by_sequence_within_a_customer() {
        let a = ledger(0, "t", "c", 9);
        let b = ledger(0, "t", "c", 10);
        assert!(a < b);
        assert!(a.starts_with(&ledger_prefix(0, "t", "c")));
        // A customer whose id extends another's does not share its prefix.
        assert!(!ledger(0, "t", "c2", 1).starts_with(&ledger_prefix(0, "t", "c")));
    }

    #[test]
    fn balance_keys_extend_the_customer_prefix() {
        let key = balance(1, "t", "c", "bonus");
        assert!(key.starts_with(&balance_prefix(1, "t", "c")));
        assert_eq!(&key[balance_prefix(1, "t", "c").len()..], b"bonus");
        assert!(!balance(1, "t", "c2", "bonus").starts_with(&balance_prefix(1, "t", "c")));
    }

    proptest! {
        #[test]
        fn decimal_round_trips(m in any::<i64>(), scale in 0u32..=10) {
            let d = Decimal::new(m, scale);
            prop_assert_eq!(decode_decimal(&encode_decimal(d)), Some(d));
        }

        #[test]
        fn timer_keys_round_trip_and_sort_by_due(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2, id in "[a-z0-9-]{1,20}") {
            let parsed = parse_timer(&timer(3, a, "t", "c", &id));
            prop_assert_eq!(parsed, Some(TimerKey { due_ms: a, tenant: "t".into(), customer: "c".into(), booking_id: id.clone() }));
            prop_assert_eq!(timer(3, a, "t", "c", &id) < timer(3, b, "t", "c", &id), a < b);
        }

        #[test]
        fn review_keys_round_trip_and_sort_by_due(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2, c in "[a-z0-9\\x00-]{1,20}") {
            prop_assert_eq!(parse_review(&review(3, a, "t", &c)), Some((a, "t".to_owned(), c.clone())));
            prop_assert_eq!(review(3, a, "t", &c) < review(3, b, "t", &c), a < b);
        }

        #[test]
        fn ledger_keys_parse_back(p in any::<u32>(), tenant in "[a-z-]{1,12}", customer in "[a-z0-9\\x01-]{1,12}", seq in any::<u64>()) {
            let parsed = parse_ledger(&ledger(p, &tenant, &customer, seq));
            prop_assert_eq!(parsed, Some(LedgerKey { p, tenant: tenant.clone(), customer: customer.clone(), seq }));
        }

        #[test]
        fn ledger_index_keys_round_trip_and_sort_by_time_then_seq(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2, s in any::<u64>(), t in any::<u64>()) {
            let n = ledger_by_time_prefix(2, "t").len();
            prop_assert_eq!(parse_ledger_by_time(&ledger_by_time(2, "t", a, s), n), Some((a, s)));
            prop_assert_eq!(ledger_by_time(2, "t", a, s) < ledger_by_time(2, "t", b, t), (a, s) < (b, t));
            prop_assert!(!ledger_by_time(2, "t2", a, s).starts_with(&ledger_by_time_prefix(2, "t")));
        }

        #[test]
        fn dedupe_values_round_trip_and_old_ones_still_read(seq in any::<u64>(), ms in any::<i64>()) {
            prop_assert_eq!(
                DedupeValue::decode(&DedupeValue::encode(seq, ms)),
                Some(DedupeValue { first_seq: seq, occurred_ms: Some(ms) })
            );
            prop_assert_eq!(
                DedupeValue::decode(&encode_u64(seq)),
                Some(DedupeValue { first_seq: seq, occurred_ms: None })
            );
            prop_assert_eq!(DedupeValue::decode(&[0u8; 5]), None);
        }

        #[test]
        fn outbox_key_round_trips(p in any::<u32>(), seq in any::<u64>()) {
            prop_assert_eq!(parse_outbox(&outbox(p, seq)), Some((p, seq)));
        }
    }
}
