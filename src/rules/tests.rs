//! Table-driven tests of every worked example in seeds 001, 003 and 004,
//! and property tests of the money invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::contract::{self, Event};

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
bonus_accounts = ["coffee-bonus"]
[branches.downtown]
payment_methods = ["cashback", "bonus", "deposit", "coffee-bonus"]
[branches.airport]
payment_methods = []
[redemption]
max_percent = { cashback = "50" }
[[gift_cards]]
id = "gc-50"
name = "Gift card 50"
points = "500"
value = "50.00"
[customers.regular]
groups = ["Regulars"]
registered = true
marketing_consent = true
"#;

fn tenant(programs: &str, extra: &str) -> TenantConfig {
    let text = format!("{TENANT}\n{extra}\n{programs}");
    match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}\n{text}"),
    }
}

fn cashback(percent: &str, more: &str) -> String {
    format!("[[programs]]\nid = \"cb\"\ntype = \"cashback\"\npercent = \"{percent}\"\nbranches = {{ downtown = \"active\" }}\n{more}\n")
}

fn event(event_type: &str, body: &str, occurred_at: &str) -> Event {
    let json = format!(
        r#"{{"schema_version":1,"event_id":"e-1","type":"{event_type}","tenant":"cafe","branch":"downtown",
        "customer":"regular","occurred_at":"{occurred_at}","body":{body}}}"#
    );
    match contract::decode(json.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fixture event: {e}\n{json}"),
    }
}

/// An order: `lines` as (product, category, amount), `payments` as (method, amount).
fn order(sale_type: &str, lines: &[(&str, &str, &str)], payments: &[(&str, &str)]) -> Event {
    let total: Decimal = lines.iter().map(|l| l.2.parse::<Decimal>().unwrap_or_default()).sum();
    let lines: Vec<String> = lines
        .iter()
        .map(|(p, c, a)| format!(r#"{{"product":"{p}","category":"{c}","quantity":"1","amount":"{a}"}}"#))
        .collect();
    let payments: Vec<String> = payments
        .iter()
        .map(|(m, a)| format!(r#"{{"method":"{m}","amount":"{a}"}}"#))
        .collect();
    let body = format!(
        r#"{{"order_id":"o","sale_type":"{sale_type}","lines":[{}],"payments":[{}],"total":"{total}","currency":"AZN"}}"#,
        lines.join(","),
        payments.join(",")
    );
    event("order.paid", &body, "2026-11-23T12:00:00Z")
}

fn registered() -> Customer {
    Customer {
        registered: true,
        marketing_consent: true,
        groups: ["Regulars".to_owned()].into_iter().collect(),
        ..Customer::default()
    }
}

fn run(tenant: &TenantConfig, event: &Event, customer: &Customer, balances: &[(&str, &str)]) -> Outcome {
    run_with(tenant, event, customer, balances, None)
}

fn run_with(
    tenant: &TenantConfig,
    event: &Event,
    customer: &Customer,
    balances: &[(&str, &str)],
    original: Option<&OrderRecord>,
) -> Outcome {
    let balances: BTreeMap<String, Decimal> = balances
        .iter()
        .map(|(a, v)| ((*a).to_owned(), v.parse().unwrap_or_default()))
        .collect();
    evaluate(&Input {
        tenant,
        event,
        customer,
        balances: &balances,
        original,
        booking: None,
        code_key: b"test key of thirty-two bytes....",
        network: &NoNetwork,
        loyalty: &NO_LOYALTY,
        now_ms: 0,
    })
}

fn credits(outcome: &Outcome) -> Vec<(String, String)> {
    outcome
        .entries
        .iter()
        .map(|e| (e.account.to_string(), e.amount.to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn seed_003_program_types_and_eligibility() {
    let card80 = order("dine_in", &[("kebab", "food", "80.00")], &[("card", "80.00")]);
    let mixed = order(
        "delivery",
        &[
            ("burger", "burgers", "30.00"),
            ("water", "drinks", "2.00"),
            ("tea", "drinks", "3.00"),
            ("salad", "food", "45.00"),
        ],
        &[("card", "50.00"), ("cash", "30.00")],
    );
    let delivery_card_only =
        "sales = [{ sale_type = \"delivery\", methods = [\"card\"] }, { sale_type = \"dine_in\", methods = [\"*\"] }]";
    type Case<'a> = (&'a str, String, &'a Event, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            "cashback 5% of 80 is 4.00",
            cashback("5", ""),
            &card80,
            vec![("cashback", "4.00")],
        ),
        (
            "bonus 5% of 80 is 4 points",
            "[[programs]]\nid = \"b\"\ntype = \"bonus\"\npercent = \"5\"\nbranches = { downtown = \"active\" }".into(),
            &card80,
            vec![("bonus", "4")],
        ),
        (
            "bonus points round down: 7% of 80 = 5.6 -> 5",
            "[[programs]]\nid = \"b\"\ntype = \"bonus\"\npercent = \"7\"\nbranches = { downtown = \"active\" }".into(),
            &card80,
            vec![("bonus", "5")],
        ),
        (
            "discount 3% of 80 is 2.40",
            "[[programs]]\nid = \"d\"\ntype = \"discount\"\npercent = \"3\"\nbranches = { downtown = \"active\" }"
                .into(),
            &card80,
            vec![("discount", "2.40")],
        ),
        (
            "all sales: 10% of 80",
            cashback("10", ""),
            &mixed,
            vec![("cashback", "8.00")],
        ),
        // Delivery paid by card only: the cash part does not accrue.
        (
            "delivery by card only",
            cashback("10", delivery_card_only),
            &mixed,
            vec![("cashback", "5.00")],
        ),
        // Excluded categories (drinks, burgers): 45 of 80 is eligible.
        (
            "excluded categories",
            cashback("10", "exclude_categories = [\"drinks\", \"burgers\"]"),
            &mixed,
            vec![("cashback", "4.50")],
        ),
        // Excluded product (only water out of drinks): 78 eligible.
        (
            "excluded product",
            cashback("10", "exclude_products = [\"water\"]"),
            &mixed,
            vec![("cashback", "7.80")],
        ),
        // Exclude all, then include tea and the food category: 48.
        (
            "exclude all then include",
            cashback(
                "10",
                "exclude_all = true\ninclude_categories = [\"food\"]\ninclude_products = [\"tea\"]",
            ),
            &mixed,
            vec![("cashback", "4.80")],
        ),
    ];
    for (name, programs, event, want) in cases {
        let t = tenant(&programs, "");
        let got = run(&t, event, &registered(), &[]);
        assert_eq!(credits(&got), pairs(&want), "{name}");
        assert!(got.rejection.is_none(), "{name}");
    }
}

#[test]
fn seed_003_status_registration_and_disabled_programs() {
    let t = tenant(&cashback("5", ""), "");
    let at_airport = {
        let json = r#"{"schema_version":1,"event_id":"e","type":"order.paid","tenant":"cafe","branch":"airport",
        "customer":"regular","occurred_at":"2026-11-23T12:00:00Z","body":{"order_id":"o","sale_type":"dine_in",
        "lines":[{"product":"p","category":"food","quantity":"1","amount":"80.00"}],
        "payments":[{"method":"card","amount":"80.00"}],"total":"80.00","currency":"AZN"}}"#;
        contract::decode(json.as_bytes()).ok()
    };
    let Some(at_airport) = at_airport else {
        panic!("fixture")
    };
    assert!(
        run(&t, &at_airport, &registered(), &[]).entries.is_empty(),
        "inactive branch"
    );
    let order80 = order("dine_in", &[("p", "food", "80.00")], &[("card", "80.00")]);
    let guest = Customer::default();
    assert!(
        run(&t, &order80, &guest, &[]).entries.is_empty(),
        "unregistered customers do not earn"
    );
    let open = tenant(&cashback("5", "registered_only = false"), "");
    assert_eq!(
        credits(&run(&open, &order80, &guest, &[])),
        pairs(&[("cashback", "4.00")])
    );
    // Turning the program off stops accrual only: the balance is still spendable.
    let off = tenant(
        &cashback("5", "").replace("downtown = \"active\"", "downtown = \"inactive\""),
        "",
    );
    let pay = order(
        "dine_in",
        &[("p", "food", "20.00")],
        &[("cashback", "10.00"), ("card", "10.00")],
    );
    assert_eq!(
        credits(&run(&off, &pay, &registered(), &[("cashback", "12.00")])),
        pairs(&[("cashback", "-10.00")])
    );
}

#[test]
fn seed_001_ten_percent_on_coffee_for_regulars() {
    let programs = r#"
[[programs]]
id = "coffee-cashback"
type = "group_bonus"
account = "coffee-bonus"
groups = ["Regulars"]
branches = { downtown = "active" }
rules = [{ category = "coffee", percent = "10" }]
"#;
    let t = tenant(programs, "");
    let coffee = order(
        "dine_in",
        &[
            ("latte", "coffee", "20.00"),
            ("flat-white", "coffee", "15.00"),
            ("cake", "dessert", "30.00"),
        ],
        &[("card", "65.00")],
    );
    let got = run(&t, &coffee, &registered(), &[]);
    assert_eq!(
        credits(&got),
        pairs(&[("coffee-bonus", "3")]),
        "10% of 35.00 of coffee, in whole points"
    );
    assert_eq!(&*got.entries[0].program, "coffee-cashback");
    let stranger = Customer {
        registered: true,
        ..Customer::default()
    };
    assert!(
        run(&t, &coffee, &stranger, &[]).entries.is_empty(),
        "only the group earns"
    );
    let no_coffee = order("dine_in", &[("cake", "dessert", "30.00")], &[("card", "30.00")]);
    assert!(run(&t, &no_coffee, &registered(), &[]).entries.is_empty());
    // Bonuses pay for all or part of an order.
    let paid_with_bonus = {
        let json = r#"{"schema_version":1,"event_id":"e","type":"order.paid","tenant":"cafe","branch":"downtown",
        "customer":"regular","occurred_at":"2026-11-23T12:00:00Z","body":{"order_id":"o","sale_type":"dine_in",
        "lines":[{"product":"latte","category":"coffee","quantity":"1","amount":"5.00"}],
        "payments":[{"method":"bonus","account":"coffee-bonus","amount":"3.00"},{"method":"card","amount":"2.00"}],
        "total":"5.00","currency":"AZN"}}"#;
        contract::decode(json.as_bytes()).ok()
    };
    let Some(paid_with_bonus) = paid_with_bonus else {
        panic!("fixture")
    };
    let got = run(&t, &paid_with_bonus, &registered(), &[("coffee-bonus", "3")]);
    assert_eq!(
        credits(&got),
        pairs(&[("coffee-bonus", "-3.00")]),
        "2.00 by card at 10% rounds down to 0 points"
    );
}

#[test]
fn redemption_is_checked_and_partly_paid_orders_accrue_on_money_only() {
    let t = tenant(&cashback("5", ""), "");
    let pay = order(
        "dine_in",
        &[("p", "food", "80.00")],
        &[("cashback", "10.00"), ("card", "70.00")],
    );
    let got = run(&t, &pay, &registered(), &[("cashback", "15.00")]);
    assert_eq!(
        credits(&got),
        pairs(&[("cashback", "-10.00"), ("cashback", "3.50")]),
        "5% of the 70.00 paid by card"
    );
    let record = got.order_record.as_ref().map(|(_, r)| r.clone());
    assert_eq!(record.map(|r| (r.accruals.len(), r.redemptions.len())), Some((1, 1)));

    let generous = tenant(&cashback("5", ""), "");
    let mut generous = generous;
    generous.redemption.accrue_on_balance_payments = true;
    let got = run(&generous, &pay, &registered(), &[("cashback", "15.00")]);
    assert_eq!(credits(&got), pairs(&[("cashback", "-10.00"), ("cashback", "4.00")]));

    type Case<'a> = (&'a str, Event, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "balance too low",
            pay.clone(),
            vec![("cashback", "9.99")],
            "insufficient_balance",
        ),
        (
            "over the 50% cap",
            order(
                "dine_in",
                &[("p", "food", "80.00")],
                &[("cashback", "40.01"), ("card", "39.99")],
            ),
            vec![("cashback", "100.00")],
            "over_cap",
        ),
        (
            "discount not enabled in the branch",
            order(
                "dine_in",
                &[("p", "food", "80.00")],
                &[("discount", "5.00"), ("card", "75.00")],
            ),
            vec![("discount", "100.00")],
            "payment_method_disabled",
        ),
    ];
    for (name, event, balances, code) in cases {
        let got = run(&t, &event, &registered(), &balances);
        assert!(got.entries.is_empty(), "{name}: nothing is debited or credited");
        assert_eq!(
            got.rejection
                .as_ref()
                .map(|r| (r.output_type.as_str(), r.code.as_str())),
            Some(("redemption.rejected", code)),
            "{name}"
        );
        assert!(got.order_record.is_none());
    }
    // Exactly at the cap is allowed.
    let at_cap = order(
        "dine_in",
        &[("p", "food", "80.00")],
        &[("cashback", "40.00"), ("card", "40.00")],
    );
    assert!(run(&t, &at_cap, &registered(), &[("cashback", "40.00")])
        .rejection
        .is_none());
}

fn refund(original: &str, amount: &str) -> Event {
    event(
        "order.refunded",
        &format!(r#"{{"refund_id":"r","original_event_id":"{original}","amount":"{amount}","currency":"AZN"}}"#),
        "2026-11-24T12:00:00Z",
    )
}

#[test]
fn refunds_reverse_in_proportion_and_never_more_than_accrued() {
    let t = tenant(&cashback("5", ""), "");
    let pay = order(
        "dine_in",
        &[("p", "food", "80.00")],
        &[("cashback", "10.00"), ("card", "70.00")],
    );
    let paid = run(&t, &pay, &registered(), &[("cashback", "15.00")]);
    let Some((_, record)) = paid.order_record else {
        panic!("order record")
    };

    let half = run_with(
        &t,
        &refund("e-1", "40.00"),
        &registered(),
        &[("cashback", "8.50")],
        Some(&record),
    );
    assert_eq!(
        credits(&half),
        pairs(&[("cashback", "-1.75"), ("cashback", "5.00")]),
        "half of 3.50 back, half of 10.00 returned"
    );
    let Some((key, record)) = half.order_record else {
        panic!("updated record")
    };
    assert_eq!(key, "e-1");
    let rest = run_with(
        &t,
        &refund("e-1", "40.00"),
        &registered(),
        &[("cashback", "11.75")],
        Some(&record),
    );
    assert_eq!(credits(&rest), pairs(&[("cashback", "-1.75"), ("cashback", "5.00")]));
    let Some((_, record)) = rest.order_record else {
        panic!("updated record")
    };
    assert_eq!(record.accruals[0].reversed, record.accruals[0].amount);
    let again = run_with(
        &t,
        &refund("e-1", "0.01"),
        &registered(),
        &[("cashback", "15.00")],
        Some(&record),
    );
    assert_eq!(again.rejection.map(|r| r.code.as_str()), Some("exceeds_refundable"));
    let unknown = run_with(&t, &refund("nope", "1.00"), &registered(), &[], None);
    assert_eq!(unknown.rejection.map(|r| r.code.as_str()), Some("unknown_order"));
}

#[test]
fn spent_accruals_follow_the_negative_balance_policy() {
    let order80 = order("dine_in", &[("p", "food", "80.00")], &[("card", "80.00")]);
    let allow = tenant(&cashback("5", ""), "");
    let Some((_, record)) = run(&allow, &order80, &registered(), &[]).order_record else {
        panic!("record")
    };
    // 4.00 accrued, 3.00 already spent: a full refund.
    let full = refund("e-1", "80.00");
    let got = run_with(&allow, &full, &registered(), &[("cashback", "1.00")], Some(&record));
    assert_eq!(
        credits(&got),
        pairs(&[("cashback", "-4.00")]),
        "allow: balance goes to -3.00"
    );
    let clamp = tenant(&cashback("5", ""), "[refunds]\nnegative_balance = \"clamp\"");
    let got = run_with(&clamp, &full, &registered(), &[("cashback", "1.00")], Some(&record));
    assert_eq!(
        credits(&got),
        pairs(&[("cashback", "-1.00")]),
        "clamp: never below zero"
    );
}

#[test]
fn seed_004_manual_adjustments_and_notifications() {
    let t = tenant("", "");
    let add = event(
        "balance.adjust",
        r#"{"account":"service_points","amount":"50","description":"Welcome gift"}"#,
        "2026-11-23T12:00:00Z",
    );
    let got = run(&t, &add, &registered(), &[]);
    assert_eq!(credits(&got), pairs(&[("service_points", "50")]));
    assert_eq!(got.entries[0].entry_type, EntryType::ManualAdjustment);
    assert_eq!(got.entries[0].description.as_deref(), Some("Welcome gift"));
    assert!(
        got.notify == Some("balance.manually_updated"),
        "consenting customers are notified"
    );
    let quiet = Customer::default();
    assert!(
        run(&t, &add, &quiet, &[]).notify.is_none(),
        "no consent, no notification"
    );

    let take = event(
        "balance.adjust",
        r#"{"account":"service_points","amount":"-60","description":"Correction"}"#,
        "2026-11-23T12:00:00Z",
    );
    assert_eq!(
        credits(&run(&t, &take, &registered(), &[("service_points", "60")])),
        pairs(&[("service_points", "-60")])
    );
    let too_much = run(&t, &take, &registered(), &[("service_points", "59")]);
    assert_eq!(
        too_much.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("adjustment.rejected", "insufficient_balance"))
    );
    let fractional = event(
        "balance.adjust",
        r#"{"account":"service_points","amount":"1.5","description":"x"}"#,
        "2026-11-23T12:00:00Z",
    );
    assert_eq!(
        run(&t, &fractional, &registered(), &[])
            .rejection
            .map(|r| r.code.as_str()),
        Some("bad_precision")
    );
}

/// Amounts beyond the contract limits never reach the rules through
/// decode; these bypass it, as a bad configuration or an older stored
/// record could, and get a rejection instead of a panic.
#[test]
fn overflowing_computations_are_rejections_not_panics() {
    let t = tenant(&cashback("5", ""), "");
    let mut huge = order("dine_in", &[("p", "food", "80.00")], &[("card", "80.00")]);
    if let Body::OrderPaid(o) = &mut huge.body {
        let max = contract::Amount::new(Decimal::MAX);
        o.total = max;
        o.lines[0].amount = max;
        o.payments[0].amount = max;
    }
    let got = run(&t, &huge, &registered(), &[]);
    assert!(got.entries.is_empty() && got.order_record.is_none());
    assert_eq!(
        got.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("redemption.rejected", "amount_overflow"))
    );

    let record = OrderRecord {
        total: Decimal::MAX,
        refunded: Decimal::MIN,
        accruals: Vec::new(),
        redemptions: Vec::new(),
    };
    let got = run_with(&t, &refund("e-1", "1.00"), &registered(), &[], Some(&record));
    assert_eq!(
        got.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("refund.rejected", "amount_overflow"))
    );

    let take = event(
        "balance.adjust",
        r#"{"account":"cashback","amount":"-1.00","description":"x"}"#,
        "2026-11-23T12:00:00Z",
    );
    let min = Decimal::MIN.to_string();
    let got = run(&t, &take, &registered(), &[("cashback", min.as_str())]);
    assert_eq!(
        got.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("adjustment.rejected", "amount_overflow"))
    );

    let mut slow = tenant("", "[bookings]\npoints = { yoga = \"10\" }");
    slow.bookings.credit_delay = std::time::Duration::MAX;
    let book = event(
        "booking.created",
        r#"{"booking_id":"b","service":"yoga","starts_at":"2099-12-31T22:00:00Z","ends_at":"2099-12-31T23:00:00Z"}"#,
        "2026-11-23T12:00:00Z",
    );
    let got = run(&slow, &book, &registered(), &[]);
    assert!(got.booking.is_none() && got.timers.set.is_none());
    assert_eq!(
        got.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("booking.rejected", "date_out_of_range"))
    );
}

#[test]
fn balances_stay_within_the_limit() {
    let max = crate::contract::limits::MAX_BALANCE;
    assert_eq!(next_balance("bonus", max - Decimal::ONE, Decimal::ONE), Ok(max));
    assert_eq!(next_balance("bonus", -max, Decimal::ZERO), Ok(-max));
    let over = next_balance("bonus", max, Decimal::ONE).map_err(|(code, _)| code.as_str());
    assert_eq!(over, Err("balance_limit"));
    let under = next_balance("bonus", -max, Decimal::NEGATIVE_ONE).map_err(|(code, _)| code.as_str());
    assert_eq!(under, Err("balance_limit"));
    let overflow = next_balance("bonus", Decimal::MAX, Decimal::MAX).map_err(|(code, _)| code.as_str());
    assert_eq!(overflow, Err("amount_overflow"));
}

#[test]
fn seed_004_gift_cards_cost_points_and_get_unguessable_codes() {
    let t = tenant("", "");
    let buy = event("giftcard.exchange", r#"{"gift_card":"gc-50"}"#, "2026-11-23T12:00:00Z");
    let got = run(&t, &buy, &registered(), &[("service_points", "600")]);
    assert_eq!(credits(&got), pairs(&[("service_points", "-500")]));
    let Some(card) = got.gift_card else {
        panic!("a gift card")
    };
    assert_eq!(card.value, Decimal::new(5000, 2));
    assert_eq!(card.code.len(), 19, "{}", card.code);
    assert_eq!(
        card.code,
        gift_card_code(b"test key of thirty-two bytes....", "cafe", "e-1"),
        "deterministic on replay"
    );
    assert_ne!(
        card.code,
        gift_card_code(b"test key of thirty-two bytes....", "cafe", "e-2")
    );
    assert_ne!(
        card.code,
        gift_card_code(b"another key.....................", "cafe", "e-1")
    );
    let poor = run(&t, &buy, &registered(), &[("service_points", "499")]);
    assert_eq!(
        poor.rejection.map(|r| (r.output_type.as_str(), r.code.as_str())),
        Some(("giftcard.rejected", "insufficient_points"))
    );
    let unknown = event("giftcard.exchange", r#"{"gift_card":"gc-x"}"#, "2026-11-23T12:00:00Z");
    assert_eq!(
        run(&t, &unknown, &registered(), &[("service_points", "999")])
            .rejection
            .map(|r| r.code.as_str()),
        Some("unknown_gift_card")
    );
}

#[test]
fn program_versions_apply_by_occurred_at() {
    let programs = format!(
        "{}{}",
        cashback("5", ""),
        cashback("10", "valid_from = \"2026-06-01T00:00:00Z\"")
    );
    let t = tenant(&programs, "");
    let body = r#"{"order_id":"o","sale_type":"dine_in","lines":[{"product":"p","category":"food","quantity":"1","amount":"80.00"}],
        "payments":[{"method":"card","amount":"80.00"}],"total":"80.00","currency":"AZN"}"#;
    let before = event("order.paid", body, "2026-05-31T23:59:59Z");
    let after = event("order.paid", body, "2026-06-01T00:00:00Z");
    assert_eq!(
        credits(&run(&t, &before, &registered(), &[])),
        pairs(&[("cashback", "4.00")])
    );
    assert_eq!(
        credits(&run(&t, &after, &registered(), &[])),
        pairs(&[("cashback", "8.00")])
    );
}

#[test]
fn customer_upserts_replace_the_profile() {
    let t = tenant("", "");
    let up = event(
        "customer.upserted",
        r#"{"phone":"+994501234567","groups":["VIP"],"registered":true,"marketing_consent":false}"#,
        "2026-11-23T12:00:00Z",
    );
    let got = run(&t, &up, &Customer::default(), &[]);
    let Some(profile) = got.customer else { panic!("profile") };
    assert!(profile.registered && !profile.marketing_consent);
    assert!(profile.groups.contains("VIP"));
    assert!(got.entries.is_empty());
}

#[test]
fn rounding_helpers() {
    // 5% of 0.50 = 0.025 -> 0.02 (half-even), 5% of 0.70 = 0.035 -> 0.04.
    assert_eq!(
        percent_of(Decimal::new(50, 2), Decimal::from(5), 2),
        Ok(Decimal::new(2, 2))
    );
    assert_eq!(
        percent_of(Decimal::new(70, 2), Decimal::from(5), 2),
        Ok(Decimal::new(4, 2))
    );
    let t = tenant("", "");
    assert_eq!(round_for(&t, "bonus", Decimal::new(499, 2)), Decimal::from(4));
    assert_eq!(round_for(&t, "cashback", Decimal::new(4995, 3)), Decimal::new(500, 2));
}

/// One step of a random customer history.
#[derive(Debug, Clone)]
enum Step {
    Order { cents: i64, pay_cents: i64 },
    Refund { index: usize, cents: i64 },
    Adjust { cents: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (100i64..100_000, 0i64..5_000).prop_map(|(cents, pay_cents)| Step::Order { cents, pay_cents }),
        (0usize..8, 1i64..100_000).prop_map(|(index, cents)| Step::Refund { index, cents }),
        (-5_000i64..5_000).prop_map(|cents| Step::Adjust { cents }),
    ]
}

fn money(cents: i64) -> String {
    Decimal::new(cents, 2).to_string()
}

proptest! {
    /// Replaying rule outcomes over a random history: the ledger sums to the
    /// balance, the balance never goes negative under `clamp`, no refund
    /// reverses more than its order accrued, and no float is involved
    /// anywhere (every amount is a Decimal with at most 2 places).
    #[test]
    fn ledger_invariants_hold(steps in proptest::collection::vec(step(), 1..40), clamp in any::<bool>()) {
        let policy = if clamp { "[refunds]\nnegative_balance = \"clamp\"" } else { "" };
        let t = tenant(&cashback("5", ""), policy);
        let mut balances: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut ledger_sum = Decimal::ZERO;
        let mut orders: Vec<(String, OrderRecord)> = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            let id = format!("e-{n}");
            let event = match step {
                Step::Order { cents, pay_cents } => {
                    let pay = (*pay_cents).min(*cents / 2);
                    let mut payments = format!(r#"{{"method":"card","amount":"{}"}}"#, money(cents - pay));
                    if pay > 0 {
                        payments = format!(r#"{{"method":"cashback","amount":"{}"}},{payments}"#, money(pay));
                    }
                    format!(
                        r#"{{"schema_version":1,"event_id":"{id}","type":"order.paid","tenant":"cafe","branch":"downtown","customer":"c","occurred_at":"2026-11-23T12:00:00Z","body":{{"order_id":"o","sale_type":"dine_in","lines":[{{"product":"p","category":"food","quantity":"1","amount":"{a}"}}],"payments":[{payments}],"total":"{a}","currency":"AZN"}}}}"#,
                        a = money(*cents)
                    )
                }
                Step::Refund { index, cents } => {
                    let original = orders.get(*index % orders.len().max(1)).map(|(k, _)| k.clone()).unwrap_or_default();
                    format!(
                        r#"{{"schema_version":1,"event_id":"{id}","type":"order.refunded","tenant":"cafe","branch":"downtown","customer":"c","occurred_at":"2026-11-23T12:00:00Z","body":{{"refund_id":"r","original_event_id":"{}","amount":"{}","currency":"AZN"}}}}"#,
                        if original.is_empty() { "none".to_owned() } else { original },
                        money(*cents)
                    )
                }
                Step::Adjust { cents } => {
                    if *cents == 0 { continue; }
                    format!(
                        r#"{{"schema_version":1,"event_id":"{id}","type":"balance.adjust","tenant":"cafe","branch":"downtown","customer":"c","occurred_at":"2026-11-23T12:00:00Z","body":{{"account":"cashback","amount":"{}","description":"d"}}}}"#,
                        money(*cents)
                    )
                }
            };
            let event = contract::decode(event.as_bytes());
            prop_assert!(event.is_ok(), "{:?}", event);
            let Ok(event) = event else { continue };
            let original = match &event.body {
                contract::Body::OrderRefunded(r) => orders.iter().find(|(k, _)| *k == r.original_event_id).map(|(_, o)| o.clone()),
                _ => None,
            };
            let outcome = evaluate(&Input {
                tenant: &t,
                event: &event,
                customer: &registered(),
                balances: &balances,
                original: original.as_ref(),
                booking: None,
                code_key: b"k",
                network: &NoNetwork,
                loyalty: &NO_LOYALTY,
                now_ms: 0,
            });
            for entry in &outcome.entries {
                prop_assert!(entry.amount.scale() <= 2);
                *balances.entry(entry.account.to_string()).or_default() += entry.amount;
                ledger_sum += entry.amount;
            }
            if clamp {
                prop_assert!(balances.values().all(|b| *b >= Decimal::ZERO), "negative under clamp: {:?}", balances);
            }
            if let Some((key, record)) = outcome.order_record {
                for m in record.accruals.iter().chain(&record.redemptions) {
                    prop_assert!(m.reversed <= m.amount, "reversed {} of {}", m.reversed, m.amount);
                    prop_assert!(m.reversed >= Decimal::ZERO);
                }
                prop_assert!(record.refunded <= record.total);
                match orders.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = record,
                    None => orders.push((key, record)),
                }
            }
        }
        let total: Decimal = balances.values().copied().sum();
        prop_assert_eq!(total, ledger_sum);
    }
}
