//! Quotes and holds: a hold reserves balance for its own order only, an
//! expired one reserves nothing, and an authorized order always passes
//! with exactly what was held (a property over random balances and holds).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::till::{self, Limit, Refusal};
use super::*;
use crate::contract::{self, Event};
use crate::programs::Hold;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
payment_methods = ["cashback", "bonus"]
[redemption]
max_percent = { cashback = "50" }
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
registered_only = false
branches = { downtown = "active" }
"#;

const NOW: i64 = 1_800_000_000_000;

fn tenant() -> TenantConfig {
    match toml::from_str(TENANT) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    }
}

/// An order of `total` paying `cashback` from the balance, the rest by card.
fn order(order_id: &str, total: Decimal, cashback: Decimal, authorization: Option<&str>) -> Event {
    let card = total - cashback;
    let authorization = authorization
        .map(|a| format!(r#","authorization_id":"{a}""#))
        .unwrap_or_default();
    let json = format!(
        r#"{{"schema_version":1,"event_id":"e-{order_id}","type":"order.paid","tenant":"cafe","branch":"downtown",
        "customer":"c","occurred_at":"2026-11-23T12:00:00Z","body":{{"order_id":"{order_id}","sale_type":"dine_in",
        "lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],
        "payments":[{{"method":"cashback","amount":"{cashback}"}},{{"method":"card","amount":"{card}"}}],
        "total":"{total}","currency":"AZN"{authorization}}}}}"#
    );
    match contract::decode(json.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fixture order: {e}\n{json}"),
    }
}

fn input<'a>(
    tenant: &'a TenantConfig,
    event: &'a Event,
    customer: &'a Customer,
    balances: &'a BTreeMap<String, Decimal>,
) -> Input<'a> {
    Input {
        tenant,
        event,
        customer,
        balances,
        original: None,
        booking: None,
        code_key: b"k",
        network: &NoNetwork,
        loyalty: &NO_LOYALTY,
        now_ms: NOW,
    }
}

fn cents(n: i64) -> Decimal {
    Decimal::new(n, 2)
}

fn balances(cashback: Decimal) -> BTreeMap<String, Decimal> {
    BTreeMap::from([("cashback".to_owned(), cashback)])
}

fn held(outcome: &Outcome) -> Decimal {
    -outcome
        .entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Redemption)
        .map(|e| e.amount)
        .sum::<Decimal>()
}

#[test]
fn a_hold_reserves_balance_for_its_own_order_only() {
    let t = tenant();
    let b = balances(cents(4000));
    let a = order("a", cents(4600), cents(2300), None);
    let made = match till::authorize(&input(&t, &a, &Customer::default(), &b), "au_1", NOW + 60_000) {
        Ok(made) => made,
        Err(refusal) => panic!("refused: {refusal:?}"),
    };
    assert_eq!(made.hold.amounts, vec![("cashback".into(), cents(2300))]);
    let profile = made.profile.unwrap_or_default();

    // Another order cannot spend what is held: 17.00 is left.
    let other = order("b", cents(4600), cents(2000), None);
    let refused = evaluate(&input(&t, &other, &profile, &b));
    assert_eq!(refused.rejection.map(|r| r.code), Some(ReasonCode::InsufficientBalance));
    let fits = order("b", cents(4600), cents(1700), None);
    assert!(evaluate(&input(&t, &fits, &profile, &b)).rejection.is_none());

    // Its own order spends it and consumes the hold.
    let own = order("a", cents(4600), cents(2300), Some("au_1"));
    let settled = evaluate(&input(&t, &own, &profile, &b));
    assert!(settled.rejection.is_none(), "{:?}", settled.rejection);
    assert_eq!(held(&settled), cents(2300));
    assert_eq!(settled.customer.map(|c| c.holds.len()), Some(0));

    // A retry for the same order returns the same hold and writes nothing.
    let again = till::authorize(&input(&t, &a, &profile, &b), "au_2", NOW + 60_000);
    assert!(matches!(again, Ok(ref h) if h.hold.id == "au_1" && h.profile.is_none()));
}

#[test]
fn an_expired_hold_reserves_nothing_and_a_released_one_is_gone() {
    let t = tenant();
    let b = balances(cents(4000));
    let mut profile = Customer::default();
    profile.holds.push(Hold {
        id: "old".into(),
        order_id: "x".into(),
        amounts: vec![("cashback".into(), cents(4000))],
        created_ms: NOW - 1_000,
        expires_ms: NOW,
    });
    let spend = order("b", cents(4600), cents(2300), None);
    assert!(evaluate(&input(&t, &spend, &profile, &b)).rejection.is_none());
    assert!(
        till::release(&profile, "old", NOW).is_none(),
        "an expired hold cannot be released"
    );
    profile.holds[0].expires_ms = NOW + 1;
    assert!(evaluate(&input(&t, &spend, &profile, &b)).rejection.is_some());
    assert_eq!(till::release(&profile, "old", NOW).map(|p| p.holds.len()), Some(0));
}

#[test]
fn what_an_account_may_pay_is_the_least_of_balance_cap_and_bill() {
    let t = tenant();
    let profile = Customer::default();
    for (balance, total, max, limit) in [
        (cents(4000), cents(4600), cents(2300), Limit::Cap),
        (cents(1000), cents(4600), cents(1000), Limit::Balance),
        (cents(0), cents(4600), cents(0), Limit::Balance),
    ] {
        let b = balances(balance);
        let e = order("q", total, cents(0), None);
        let quote = till::quote(&input(&t, &e, &profile, &b)).unwrap_or_else(|o| panic!("{o:?}"));
        let cashback = quote.payable.iter().find(|p| p.account == "cashback");
        assert_eq!(
            cashback.map(|p| (p.max, p.limited_by)),
            Some((max, limit)),
            "balance {balance}"
        );
    }
}

#[test]
fn orders_without_balance_payments_and_full_profiles_are_refused() {
    let t = tenant();
    let b = balances(cents(100_000));
    let cash = order("cash", cents(1000), cents(0), None);
    assert!(matches!(
        till::authorize(&input(&t, &cash, &Customer::default(), &b), "au", NOW + 1),
        Err(Refusal::NothingToHold)
    ));
    let mut full = Customer::default();
    for i in 0..till::MAX_HOLDS {
        full.holds.push(Hold {
            id: format!("h{i}"),
            order_id: format!("o{i}"),
            amounts: vec![("cashback".into(), cents(1))],
            created_ms: NOW,
            expires_ms: NOW + 1_000,
        });
    }
    let one_more = order("new", cents(1000), cents(100), None);
    assert!(matches!(
        till::authorize(&input(&t, &one_more, &full, &b), "au", NOW + 1),
        Err(Refusal::TooManyHolds)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Holds of other orders, random; an order authorized against them is
    /// always accepted when it names its hold, spending exactly what was
    /// held; any order that does not name a hold is accepted only within
    /// the balance less the active holds. And a quote is the stream's
    /// outcome: the same entries, the same refusal.
    #[test]
    fn authorized_orders_pass_and_holds_are_never_spent_twice(
        balance in 0i64..20_000,
        others in proptest::collection::vec((1i64..5_000, any::<bool>()), 0..5),
        total in 1i64..20_000,
        pay in 0i64..20_000,
    ) {
        let t = tenant();
        let b = balances(cents(balance));
        let mut profile = Customer::default();
        for (i, (amount, active)) in others.iter().enumerate() {
            profile.holds.push(Hold {
                id: format!("other-{i}"),
                order_id: format!("other-{i}"),
                amounts: vec![("cashback".into(), cents(*amount))],
                created_ms: NOW - 10,
                expires_ms: if *active { NOW + 10 } else { NOW },
            });
        }
        let active: i64 = others.iter().filter(|(_, a)| *a).map(|(v, _)| *v).sum();
        let pay = pay.min(total);
        let plain = order("o", cents(total), cents(pay), None);
        let quote = till::quote(&input(&t, &plain, &profile, &b)).map_err(|o| TestCaseError::fail(o.reason()))?;
        let applied = evaluate(&input(&t, &plain, &profile, &b));
        prop_assert_eq!(&quote.outcome.entries, &applied.entries);
        prop_assert_eq!(quote.outcome.rejection.map(|r| r.code), applied.rejection.as_ref().map(|r| r.code));
        if applied.rejection.is_none() {
            prop_assert!(pay <= balance - active, "spent {} of {} with {} held", pay, balance, active);
        }
        if let Ok(made) = till::authorize(&input(&t, &plain, &profile, &b), "mine", NOW + 1_000) {
            prop_assert_eq!(made.hold.amounts.iter().map(|(_, v)| *v).sum::<Decimal>(), cents(pay));
            let with_hold = made.profile.unwrap_or_default();
            let settled = order("o", cents(total), cents(pay), Some("mine"));
            let outcome = evaluate(&input(&t, &settled, &with_hold, &b));
            prop_assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
            prop_assert_eq!(held(&outcome), cents(pay));
            // Nobody else can take what this hold reserves.
            let rival = order("r", cents(total), cents(pay), None);
            if pay > 0 && balance - active - pay < pay {
                prop_assert!(evaluate(&input(&t, &rival, &with_hold, &b)).rejection.is_some());
            }
        }
    }
}
