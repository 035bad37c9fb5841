//! Tiers: the window, the level and its boundaries, late events, refunds,
//! `tier_percent`, the review; and the shared fixture of the earning tests
//! (a customer whose loyalty record, orders and balances carry over from
//! one event to the next).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::tiers::{next_review, review};
use super::*;
use crate::contract;

pub(super) const DAY: i64 = 86_400_000;

/// 2026-03-01T00:00:00Z, Unix milliseconds.
pub(super) const MARCH_1: i64 = 1_772_323_200_000;

const BASE: &str = r#"
id = "cafe"
currency = "AZN"
timezone = "Europe/Kyiv"
[branches.downtown]
payment_methods = ["cashback", "bonus"]
"#;

const SPEND_TIERS: &str = r#"
[tiers]
metric = "spend"
window = "30d"
[[tiers.levels]]
id = "silver"
name = "Silver"
threshold = "100"
[[tiers.levels]]
id = "gold"
name = "Gold"
threshold = "500"
"#;

const CASHBACK: &str = r#"
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
tier_percent = { silver = "7", gold = "10" }
"#;

/// A tenant of `BASE` plus `rest` (tiers, programs).
pub(super) fn tenant(rest: &str) -> TenantConfig {
    let text = format!("{BASE}\n{rest}");
    match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}\n{text}"),
    }
}

/// `ms` as RFC 3339.
pub(super) fn rfc3339(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    match at.map(|t| t.format(&Rfc3339)) {
        Ok(Ok(s)) => s,
        _ => panic!("bad fixture time {ms}"),
    }
}

fn event(id: &str, event_type: &str, at_ms: i64, body: &str) -> Event {
    let json = format!(
        r#"{{"schema_version":1,"event_id":"{id}","type":"{event_type}","tenant":"cafe","branch":"downtown",
        "customer":"c","occurred_at":"{}","body":{body}}}"#,
        rfc3339(at_ms)
    );
    match contract::decode(json.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fixture event: {e}\n{json}"),
    }
}

/// An `order.paid` of `card` paid by card and `bonus` from the bonus balance.
pub(super) fn paid(id: &str, at_ms: i64, card: Decimal, bonus: Decimal) -> Event {
    let total = card + bonus;
    let mut payments = vec![format!(r#"{{"method":"card","amount":"{card}"}}"#)];
    if !bonus.is_zero() {
        payments.push(format!(r#"{{"method":"bonus","amount":"{bonus}"}}"#));
    }
    let body = format!(
        r#"{{"order_id":"{id}","sale_type":"dine_in","lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],"payments":[{}],"total":"{total}","currency":"AZN"}}"#,
        payments.join(",")
    );
    event(id, "order.paid", at_ms, &body)
}

/// A `visit.completed` paid `card` by card.
fn visit(id: &str, at_ms: i64, card: Decimal) -> Event {
    let body = format!(
        r#"{{"visit_id":"{id}","lines":[{{"product":"p","category":"food","quantity":"1","amount":"{card}"}}],"payments":[{{"method":"card","amount":"{card}"}}],"total":"{card}","currency":"AZN"}}"#
    );
    event(id, "visit.completed", at_ms, &body)
}

/// An `order.refunded` of `amount` of the order event `original`.
pub(super) fn refund(id: &str, original: &str, at_ms: i64, amount: Decimal) -> Event {
    let body =
        format!(r#"{{"refund_id":"{id}","original_event_id":"{original}","amount":"{amount}","currency":"AZN"}}"#);
    event(id, "order.refunded", at_ms, &body)
}

pub(super) fn d(s: &str) -> Decimal {
    match s.parse() {
        Ok(v) => v,
        Err(e) => panic!("{s}: {e}"),
    }
}

/// One registered customer, with what the pipeline stores between events.
pub(super) struct Sim {
    pub(super) tenant: TenantConfig,
    pub(super) loyalty: Loyalty,
    pub(super) orders: BTreeMap<String, OrderRecord>,
    pub(super) balances: BTreeMap<String, Decimal>,
    customer: Customer,
}

impl Sim {
    pub(super) fn new(tenant: TenantConfig) -> Self {
        Sim {
            tenant,
            loyalty: Loyalty::default(),
            orders: BTreeMap::new(),
            balances: [("bonus".to_owned(), Decimal::from(1_000_000))].into_iter().collect(),
            customer: Customer {
                registered: true,
                ..Customer::default()
            },
        }
    }

    /// Evaluates `event` and stores what the outcome says to store.
    pub(super) fn run(&mut self, event: &Event) -> Outcome {
        let original = match &event.body {
            contract::Body::OrderRefunded(r) => self.orders.get(&r.original_event_id),
            _ => None,
        };
        let outcome = evaluate(&Input {
            tenant: &self.tenant,
            event,
            customer: &self.customer,
            balances: &self.balances,
            original,
            booking: None,
            code_key: b"k",
            network: &NoNetwork,
            loyalty: &self.loyalty,
            now_ms: 0,
        });
        if let Some(loyalty) = &outcome.loyalty {
            self.loyalty = (**loyalty).clone();
        }
        if let Some((id, record)) = &outcome.order_record {
            self.orders.insert(id.clone(), record.clone());
        }
        for entry in &outcome.entries {
            let balance = self.balances.entry(entry.account.to_string()).or_default();
            *balance += entry.amount;
        }
        outcome
    }
}

fn accrued(outcome: &Outcome) -> Decimal {
    outcome
        .entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Accrual)
        .map(|e| e.amount)
        .sum()
}

fn change(outcome: &Outcome) -> Option<(Option<&str>, Option<&str>, Decimal)> {
    outcome
        .tier_changed
        .as_deref()
        .map(|c| (c.from.as_deref(), c.to.as_deref(), c.value))
}

fn spend_sim() -> Sim {
    Sim::new(tenant(&format!("{SPEND_TIERS}{CASHBACK}")))
}

#[test]
fn a_threshold_exactly_met_reaches_the_level_and_the_order_earns_at_it() {
    let mut sim = spend_sim();
    let below = sim.run(&paid("o1", MARCH_1, d("99.99"), Decimal::ZERO));
    assert_eq!(accrued(&below), d("5.00"), "5% below every level");
    assert_eq!(change(&below), None);
    assert_eq!(sim.loyalty.tier, None);
    // 0.01 more: exactly 100 in the window. The crossing order earns 7%.
    let crossing = sim.run(&paid("o2", MARCH_1 + 3_600_000, d("0.01"), Decimal::ZERO));
    assert_eq!(change(&crossing), Some((None, Some("silver"), d("100.00"))));
    assert_eq!(sim.loyalty.tier.as_deref(), Some("silver"));
    assert_eq!(accrued(&crossing), Decimal::ZERO, "7% of 0.01 rounds to nothing");
    let next = sim.run(&paid("o3", MARCH_1 + 7_200_000, d("50.00"), Decimal::ZERO));
    assert_eq!(accrued(&next), d("3.50"), "7% at silver");
    assert_eq!(change(&next), None, "no change, no event");
    let gold = sim.run(&paid("o4", MARCH_1 + DAY, d("350.00"), Decimal::ZERO));
    assert_eq!(change(&gold), Some((Some("silver"), Some("gold"), d("500.00"))));
    assert_eq!(accrued(&gold), d("35.00"), "10% at gold, for the crossing order too");
    assert_eq!(sim.loyalty.window.len(), 2, "one bucket per UTC day");
}

#[test]
fn balance_payments_are_not_spend_and_balances_do_not_decide_the_level() {
    let mut sim = spend_sim();
    // 120 paid, 30 of it from the bonus balance: 90 of spend.
    let outcome = sim.run(&paid("o1", MARCH_1, d("90.00"), d("30")));
    assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
    assert_eq!(sim.loyalty.tier, None);
    assert_eq!(sim.loyalty.window.first().map(|b| b.spend), Some(d("90.00")));
    // The customer holds a million bonus points and still has no level.
    assert!(sim.balances.get("bonus").is_some_and(|b| *b > d("500")));
}

#[test]
fn a_day_leaves_the_window_exactly_window_days_later() {
    let mut sim = spend_sim();
    let noon = MARCH_1 + DAY / 2;
    sim.run(&paid("o1", noon, d("100.00"), Decimal::ZERO));
    assert_eq!(sim.loyalty.tier.as_deref(), Some("silver"));
    // The last minute of the 30th day: the first day still counts.
    let still = sim.run(&paid("o2", MARCH_1 + 30 * DAY - 60_000, d("1.00"), Decimal::ZERO));
    assert_eq!(change(&still), None);
    assert_eq!(accrued(&still), d("0.07"));
    // Midnight of day 31: 30 days of window no longer hold March 1.
    let left = sim.run(&paid("o3", MARCH_1 + 30 * DAY, d("1.00"), Decimal::ZERO));
    assert_eq!(change(&left), Some((Some("silver"), None, d("2.00"))));
    assert_eq!(
        accrued(&left),
        d("0.05"),
        "the order earns at the level it leaves the customer at"
    );
    assert!(sim.loyalty.window.iter().all(|b| b.day_ms > MARCH_1));
}

#[test]
fn late_events_count_in_their_own_day_and_never_drop_newer_days() {
    let mut sim = spend_sim();
    sim.run(&paid("o1", MARCH_1 + 10 * DAY, d("60.00"), Decimal::ZERO));
    let late = sim.run(&paid("o2", MARCH_1 + 5 * DAY, d("50.00"), Decimal::ZERO));
    assert_eq!(change(&late), Some((None, Some("silver"), d("110.00"))));
    let days: Vec<i64> = sim.loyalty.window.iter().map(|b| b.day_ms).collect();
    assert_eq!(days, vec![MARCH_1 + 5 * DAY, MARCH_1 + 10 * DAY], "kept by day");
    // Older than the window of the newest day: counts nowhere, changes nothing.
    let stale = sim.run(&paid("o3", MARCH_1 - 25 * DAY, d("900.00"), Decimal::ZERO));
    assert_eq!(change(&stale), None);
    assert_eq!(accrued(&stale), d("63.00"), "earns at the customer's level (7%)");
    assert_eq!(sim.loyalty.window.len(), 2);
    assert_eq!(window_value(&sim), d("110.00"));
}

fn window_value(sim: &Sim) -> Decimal {
    match &sim.tenant.tiers {
        Some(t) => tiers::window_value(t, &sim.loyalty.window).unwrap_or(Decimal::MIN),
        None => Decimal::ZERO,
    }
}

#[test]
fn a_refund_takes_money_off_and_may_lower_the_tier() {
    let mut sim = spend_sim();
    // 200 paid: 150 by card, 50 from the bonus balance. Spend 150.
    sim.run(&paid("o1", MARCH_1, d("150.00"), d("50")));
    assert_eq!(sim.loyalty.tier.as_deref(), Some("silver"));
    // Half the order back: half of its money (75) leaves the window.
    let half = sim.run(&refund("r1", "o1", MARCH_1 + DAY, d("100.00")));
    assert!(half.rejection.is_none(), "{:?}", half.rejection);
    assert_eq!(change(&half), Some((Some("silver"), None, d("75.00"))));
    assert_eq!(window_value(&sim), d("75.00"));
    // The rest back: exactly the order's money is gone, never below zero.
    let rest = sim.run(&refund("r2", "o1", MARCH_1 + DAY, d("100.00")));
    assert_eq!(change(&rest), None);
    assert_eq!(window_value(&sim), Decimal::ZERO);
    assert!(sim.loyalty.window.iter().all(|b| b.spend >= Decimal::ZERO));
}

#[test]
fn a_refund_of_an_order_that_accrued_nothing_still_comes_off_the_window() {
    // No programs: nothing accrues, the spend counts all the same.
    let mut sim = Sim::new(tenant(SPEND_TIERS));
    let order = sim.run(&paid("o1", MARCH_1, d("120.00"), Decimal::ZERO));
    assert!(order.entries.is_empty());
    assert_eq!(change(&order), Some((None, Some("silver"), d("120.00"))));
    let back = sim.run(&refund("r1", "o1", MARCH_1 + DAY, d("120.00")));
    assert!(back.rejection.is_none(), "{:?}", back.rejection);
    assert_eq!(change(&back), Some((Some("silver"), None, Decimal::ZERO)));
}

#[test]
fn visits_count_orders_and_visits_and_a_full_refund_takes_its_visit_back() {
    let mut sim = Sim::new(tenant(
        r#"
[tiers]
metric = "visits"
[[tiers.levels]]
id = "regular"
threshold = "2"
"#,
    ));
    sim.run(&visit("v1", MARCH_1, d("10.00")));
    assert_eq!(sim.loyalty.tier, None);
    let second = sim.run(&paid("o2", MARCH_1 + DAY, d("20.00"), Decimal::ZERO));
    assert_eq!(change(&second), Some((None, Some("regular"), d("2"))));
    // A partial refund keeps the visit; the full refund takes it back.
    let partial = sim.run(&refund("r1", "o2", MARCH_1 + DAY, d("5.00")));
    assert_eq!(change(&partial), None);
    let full = sim.run(&refund("r2", "o2", MARCH_1 + DAY, d("15.00")));
    assert_eq!(change(&full), Some((Some("regular"), None, d("1"))));
}

#[test]
fn tier_percent_applies_at_its_level_only() {
    let mut sim = Sim::new(tenant(&format!(
        r#"{SPEND_TIERS}
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
branches = {{ downtown = "active" }}
tier_percent = {{ gold = "10" }}
[[programs]]
id = "points"
type = "bonus"
percent = "2"
branches = {{ downtown = "active" }}
"#
    )));
    let silver = sim.run(&paid("o1", MARCH_1, d("200.00"), Decimal::ZERO));
    let by_program = |o: &Outcome, p: &str| o.entries.iter().find(|e| &*e.program == p).map(|e| e.amount);
    assert_eq!(by_program(&silver, "cb"), Some(d("10.00")), "no silver percent: 5%");
    assert_eq!(by_program(&silver, "points"), Some(d("4")));
    let gold = sim.run(&paid("o2", MARCH_1 + 1, d("300.00"), Decimal::ZERO));
    assert_eq!(by_program(&gold, "cb"), Some(d("30.00")), "10% at gold");
    assert_eq!(by_program(&gold, "points"), Some(d("6")), "no tier_percent: always 2%");
}

#[test]
fn next_review_is_when_the_level_would_drop_and_review_applies_it() {
    let mut sim = spend_sim();
    sim.run(&paid("o1", MARCH_1, d("450.00"), Decimal::ZERO));
    sim.run(&paid("o2", MARCH_1 + 10 * DAY, d("60.00"), Decimal::ZERO));
    sim.run(&paid("o3", MARCH_1 + 20 * DAY, d("50.00"), Decimal::ZERO));
    assert_eq!(sim.loyalty.tier.as_deref(), Some("gold"));
    // Without March 1 the window holds 110: silver. That is the review.
    let due = next_review(&sim.tenant, &sim.loyalty);
    assert_eq!(due, Some(MARCH_1 + 30 * DAY));
    assert_eq!(
        review(&sim.tenant, &sim.loyalty, MARCH_1 + 30 * DAY - 1),
        None,
        "nothing left yet"
    );
    let Some((after, change)) = review(&sim.tenant, &sim.loyalty, MARCH_1 + 30 * DAY) else {
        panic!("the review drops March 1");
    };
    assert_eq!(
        change.map(|c| (c.from, c.to, c.value)),
        Some((Some("gold".into()), Some("silver".into()), d("110.00")))
    );
    assert_eq!(after.tier.as_deref(), Some("silver"));
    assert_eq!(after.window.len(), 2);
    // Silver holds until day 11's 60 leaves (50 < 100).
    assert_eq!(next_review(&sim.tenant, &after), Some(MARCH_1 + 40 * DAY));
    // A review that only drops a day, level unchanged, is still a change.
    let mut quiet = after.clone();
    quiet.window.insert(
        0,
        loyalty::Bucket {
            day_ms: MARCH_1 + DAY,
            spend: Decimal::ZERO,
            visits: 1,
        },
    );
    let pruned = review(&sim.tenant, &quiet, MARCH_1 + 31 * DAY);
    assert_eq!(pruned.map(|(l, c)| (l.window.len(), c)), Some((2, None)));
}

#[test]
fn no_review_below_every_level_or_without_tiers() {
    let mut sim = spend_sim();
    sim.run(&paid("o1", MARCH_1, d("50.00"), Decimal::ZERO));
    assert_eq!(next_review(&sim.tenant, &sim.loyalty), None);
    let plain = tenant("");
    assert_eq!(next_review(&plain, &sim.loyalty), None);
    assert_eq!(review(&plain, &sim.loyalty, MARCH_1 + 100 * DAY), None);
    // A level the window no longer supports (thresholds changed): review now.
    let mut stale = sim.loyalty.clone();
    stale.tier = Some("gold".into());
    assert_eq!(next_review(&sim.tenant, &stale), Some(MARCH_1));
}

#[test]
fn a_rejected_order_leaves_the_window_alone() {
    let mut sim = spend_sim();
    sim.balances.clear();
    let outcome = sim.run(&paid("o1", MARCH_1, d("100.00"), d("10")));
    assert!(outcome.rejection.is_some());
    assert_eq!(outcome.loyalty, None);
    assert_eq!(outcome.tier_changed, None);
}

/// (day offset, millisecond of the day, cents paid by card).
fn purchases(max_days: i64) -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    proptest::collection::vec((0..max_days, 0..DAY, 1i64..100_000), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(20), ..ProptestConfig::default() })]

    /// Inside a window that holds every event: the window's spend is what
    /// the orders paid less what refunds took back, in any arrival order,
    /// and the tier is the level of that total.
    #[test]
    fn the_window_is_orders_less_refunds(
        orders in purchases(60),
        refunds in proptest::collection::vec((any::<prop::sample::Index>(), 1i64..=100), 0..12),
    ) {
        let mut sim = Sim::new(tenant(&format!("{}{CASHBACK}", SPEND_TIERS.replace("30d", "365d"))));
        let mut paid_cents = 0i64;
        for (i, (day, ms, cents)) in orders.iter().enumerate() {
            let outcome = sim.run(&paid(&format!("o{i}"), MARCH_1 + day * DAY + ms, Decimal::new(*cents, 2), Decimal::ZERO));
            prop_assert!(outcome.rejection.is_none());
            paid_cents += cents;
        }
        let mut refunded = Decimal::ZERO;
        for (j, (index, percent)) in refunds.iter().enumerate() {
            let i = index.index(orders.len());
            let Some(record) = sim.orders.get(&format!("o{i}")).cloned() else { continue };
            let left = record.total - record.refunded;
            let amount = (left * Decimal::from(*percent) / Decimal::ONE_HUNDRED).round_dp(2);
            if amount.is_zero() { continue; }
            let outcome = sim.run(&refund(&format!("r{j}"), &format!("o{i}"), MARCH_1 + 70 * DAY, amount));
            prop_assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
            refunded += amount;
        }
        let expected = Decimal::new(paid_cents, 2) - refunded;
        prop_assert_eq!(window_value(&sim), expected);
        prop_assert!(sim.loyalty.window.iter().all(|b| b.spend >= Decimal::ZERO));
        let level = sim.tenant.tiers.as_ref().and_then(|t| t.levels.iter().rev().find(|l| l.threshold.value() <= expected));
        prop_assert_eq!(sim.loyalty.tier.as_deref(), level.map(|l| &*l.id));
    }

    /// With days leaving the window, in any arrival order: the window holds
    /// exactly the orders of the 30 days up to the newest day seen.
    #[test]
    fn the_window_holds_the_days_up_to_the_newest(orders in purchases(120)) {
        let mut sim = spend_sim();
        for (i, (day, ms, cents)) in orders.iter().enumerate() {
            sim.run(&paid(&format!("o{i}"), MARCH_1 + day * DAY + ms, Decimal::new(*cents, 2), Decimal::ZERO));
        }
        let newest = orders.iter().map(|o| o.0).max().unwrap_or_default();
        let inside: i64 = orders.iter().filter(|o| o.0 > newest - 30).map(|o| o.2).sum();
        prop_assert_eq!(window_value(&sim), Decimal::new(inside, 2));
        prop_assert!(sim.loyalty.window.windows(2).all(|w| w[0].day_ms < w[1].day_ms));
    }
}

#[test]
fn a_tenant_without_tiers_or_limits_keeps_no_record_and_no_order_without_entries() {
    let mut sim = Sim::new(tenant(
        &CASHBACK.replace(r#"tier_percent = { silver = "7", gold = "10" }"#, ""),
    ));
    let outcome = sim.run(&paid("o1", MARCH_1, d("1000.00"), Decimal::ZERO));
    assert_eq!(accrued(&outcome), d("50.00"));
    assert_eq!((outcome.loyalty, outcome.tier_changed), (None, None));
    let mut bare = Sim::new(tenant(""));
    let nothing = bare.run(&paid("o1", MARCH_1, d("10.00"), Decimal::ZERO));
    assert_eq!(nothing.order_record, None, "as before tiers: nothing to refund");
}

#[test]
fn the_records_review_lowers_the_tier_when_a_day_leaves() {
    let mut sim = spend_sim();
    sim.run(&paid("o1", MARCH_1, d("80.00"), Decimal::ZERO));
    sim.run(&paid("o2", MARCH_1 + 5 * DAY, d("30.00"), Decimal::ZERO));
    assert_eq!(sim.loyalty.tier.as_deref(), Some("silver"));
    let due = loyalty::next_review(&sim.tenant, &sim.loyalty, &loyalty::Lots::default());
    assert_eq!(due, Some(MARCH_1 + 30 * DAY), "the record's review includes the tier's");
    let Some(due) = due else { return };
    let reviewed = loyalty::review(
        &sim.tenant,
        &sim.loyalty,
        &loyalty::Lots::default(),
        &sim.balances,
        due,
        false,
    );
    let Ok(reviewed) = reviewed else { panic!("{reviewed:?}") };
    assert_eq!(
        reviewed.tier_changed.map(|c| (c.from, c.to, c.value)),
        Some((Some("silver".into()), None, d("30.00")))
    );
    assert_eq!(reviewed.loyalty.tier, None);
    assert_eq!(
        loyalty::next_review(&sim.tenant, &reviewed.loyalty, &reviewed.lots),
        None
    );
}
