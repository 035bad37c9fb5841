//! Points expiry through the processor: lots booked with the credits,
//! spent oldest first, expired once by the review timer, warned with
//! consent, and refunds that never take back what expired.

use super::test_cafe::{at, Cafe, DAY, START};
use super::*;

const CAFE: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
payment_methods = ["cashback"]
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
[expiry.cashback]
after = "30d"
warn_before = "7d"
"#;

#[test]
fn what_is_left_of_each_credit_expires_once_oldest_spent_first() {
    let mut c = Cafe::new(CAFE, true);
    assert_eq!(c.order("o1", START, "80.00", "0"), Applied::Processed(1)); // +4.00, expires day 30
    assert_eq!(c.order("o2", START + 10 * DAY, "80.00", "0"), Applied::Processed(1)); // +4.00, day 40
    assert_eq!(c.reviews(), 1, "one review timer per customer");
    assert_eq!(c.processor.timers_pending(), 1);
    // 5.00 paid with cashback on day 15: all of o1's credit, 1.00 of o2's.
    assert_eq!(c.order("o3", START + 15 * DAY, "10.00", "5.00"), Applied::Processed(2)); // -5.00, +0.25
    assert_eq!(c.cashback(), Decimal::new(300, 2) + Decimal::new(25, 2));
    // Nothing is due before o3's credit warning (day 15 + 30 - 7).
    assert_eq!(c.fire(START + 30 * DAY), 0, "o1's credit was spent: nothing to expire");
    assert!(c.of_type("expiry").is_empty());
    // Down until day 50: one review runs every due time in order: the
    // warnings of o2 (day 33) and o3 (day 38), then their expiries (days 40, 45).
    assert_eq!(c.fire(START + 50 * DAY), 1);
    let expiries = c.of_type("expiry");
    assert_eq!(expiries.len(), 2, "{expiries:?}");
    assert_eq!(expiries[0]["amount"], "-3.00", "what was left of o2's 4.00");
    assert_eq!(expiries[0]["source_event_id"], "o2");
    assert_eq!(expiries[0]["occurred_at"], at(START + 40 * DAY));
    assert_eq!(expiries[1]["amount"], "-0.25");
    assert_eq!(expiries[1]["source_event_id"], "o3");
    let warnings = c.of_type("points.expiring");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["amount"], "3.00");
    assert_eq!(warnings[0]["expires_at"], at(START + 40 * DAY));
    assert_eq!(warnings[0]["occurred_at"], at(START + 33 * DAY));
    assert_eq!(warnings[1]["amount"], "0.25");
    assert_eq!(c.cashback(), Decimal::ZERO);
    assert_eq!(c.fire(START + 400 * DAY), 0, "never twice");
    assert_eq!(c.reviews(), 0, "no credit left: no timer");
    assert_eq!(c.processor.timers_pending(), 0, "the gauge counts review timers too");
    assert_eq!(c.of_type("expiry").len(), 2);
}

#[test]
fn a_refund_never_takes_back_what_expired() {
    let mut c = Cafe::new(CAFE, true);
    c.order("o1", START, "80.00", "0"); // +4.00
    c.order("o2", START + 20 * DAY, "40.00", "1.00"); // 1.00 of o1's spent, +1.95 (expires day 50)
    assert_eq!(c.fire(START + 31 * DAY), 1);
    assert_eq!(c.of_type("expiry")[0]["amount"], "-3.00");
    // The whole of o1 refunded: 3.00 of its 4.00 expired, so 1.00 is taken back.
    assert_eq!(c.refund("r1", "o1", START + 32 * DAY, "80.00"), Applied::Processed(1));
    let reversals = c.of_type("reversal");
    assert_eq!(reversals.len(), 1);
    assert_eq!(reversals[0]["amount"], "-1.00");
    assert_eq!(c.cashback(), Decimal::new(95, 2));
}

#[test]
fn a_dropped_review_batch_expires_again_and_a_committed_one_never() {
    let mut c = Cafe::new(CAFE, true);
    c.order("o1", START, "80.00", "0");
    let mut batch = Batch::default();
    assert_eq!(c.processor.fire_due(&mut batch, 2, START + 31 * DAY, 100).ok(), Some(1));
    drop(batch); // kill -9 before the commit
    assert_eq!(c.cashback(), Decimal::new(400, 2));
    assert_eq!(c.fire(START + 31 * DAY), 1);
    assert_eq!(c.cashback(), Decimal::ZERO);
    assert_eq!(c.fire(START + 32 * DAY), 0);
    assert_eq!(c.of_type("expiry").len(), 1);
}

#[test]
fn timers_are_counted_a_page_at_a_time_across_pages() {
    let store = crate::state::MemoryStore::default();
    let mut set = WriteSet::new();
    for i in 0..25_001i64 {
        set.put(
            Family::Reviews,
            keys::review(4, i, "cafe", &format!("c{i}")),
            Vec::new(),
        );
    }
    // Another partition's keys are not counted.
    set.put(Family::Reviews, keys::review(5, 1, "cafe", "x"), Vec::new());
    assert!(store.write(&set, crate::state::Durability::Synced).is_ok());
    let counted = super::write::count(&store, Family::Reviews, &keys::partition_prefix(4));
    assert_eq!(counted.ok(), Some(25_001));
}
