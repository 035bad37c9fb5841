//! Campaigns, the birthday bonus and the welcome bonus, at their edges:
//! hours (also across midnight), days in the tenant's zone, a DST day,
//! date ranges, branches, multipliers and rounding, refunds, the birthday
//! window (New Year, 29 February), once per birthday, welcome once.

use std::collections::BTreeMap;

use super::*;
use crate::contract::{self, Birthday, Event};

/// A tenant in Kyiv (UTC+2 in winter, UTC+3 from the last Sunday of March)
/// with 5% cashback and 10% bonus points in both branches.
const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
timezone = "Europe/Kyiv"
[branches.downtown]
[branches.airport]
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
registered_only = false
branches = { downtown = "active", airport = "active" }
[[programs]]
id = "pts"
type = "bonus"
percent = "10"
branches = { downtown = "active", airport = "active" }
"#;

fn tenant(extra: &str) -> TenantConfig {
    let text = format!("{TENANT}\n{extra}");
    match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}\n{text}"),
    }
}

fn event(event_type: &str, branch: &str, at: &str, body: &str) -> Event {
    let json = format!(
        r#"{{"schema_version":1,"event_id":"e-1","type":"{event_type}","tenant":"cafe","branch":"{branch}",
        "customer":"c1","occurred_at":"{at}","body":{body}}}"#
    );
    match contract::decode(json.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fixture event: {e}\n{json}"),
    }
}

/// An order of `total` paid by card in `branch` at `at`.
fn order_in(branch: &str, at: &str, total: &str) -> Event {
    event(
        "order.paid",
        branch,
        at,
        &format!(
            r#"{{"order_id":"o","sale_type":"dine_in","lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],
            "payments":[{{"method":"card","amount":"{total}"}}],"total":"{total}","currency":"AZN"}}"#
        ),
    )
}

fn order(at: &str, total: &str) -> Event {
    order_in("downtown", at, total)
}

fn member() -> Customer {
    Customer {
        registered: true,
        ..Customer::default()
    }
}

fn run(tenant: &TenantConfig, event: &Event, customer: &Customer) -> Outcome {
    run_with(tenant, event, customer, None)
}

fn run_with(tenant: &TenantConfig, event: &Event, customer: &Customer, original: Option<&OrderRecord>) -> Outcome {
    let balances = BTreeMap::new();
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

/// `(entry type, program, account, amount)` of every entry.
fn entries(outcome: &Outcome) -> Vec<(&'static str, String, String, String)> {
    assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
    outcome
        .entries
        .iter()
        .map(|e| {
            (
                e.entry_type.as_str(),
                e.program.to_string(),
                e.account.to_string(),
                e.amount.to_string(),
            )
        })
        .collect()
}

/// The amount the program `program` accrued.
fn accrued(outcome: &Outcome, program: &str) -> Option<String> {
    outcome
        .entries
        .iter()
        .find(|e| e.entry_type == EntryType::Accrual && &*e.program == program)
        .map(|e| e.amount.to_string())
}

/// The cashback of an 80.00 order at `at` (4.00 unboosted).
fn cashback_at(t: &TenantConfig, at: &str) -> Option<String> {
    accrued(&run(t, &order(at, "80.00"), &member()), "cb")
}

#[test]
fn hours_include_the_start_and_exclude_the_end_in_the_tenant_zone() {
    let t = tenant("[[campaigns]]\nid = \"lunch\"\nhours = \"10:00-14:00\"\nmultiplier = \"2\"\n");
    // January: Kyiv is UTC+2, so 10:00 local is 08:00Z.
    for (at, want) in [
        ("2026-01-15T07:59:59Z", "4.00"),
        ("2026-01-15T08:00:00Z", "8.00"),
        ("2026-01-15T11:59:59Z", "8.00"),
        ("2026-01-15T12:00:00Z", "4.00"),
    ] {
        assert_eq!(cashback_at(&t, at).as_deref(), Some(want), "{at}");
    }
}

#[test]
fn hours_across_midnight_count_for_the_day_they_start() {
    let t = tenant("[[campaigns]]\nid = \"late\"\ndays = [\"fri\"]\nhours = \"22:00-02:00\"\nmultiplier = \"2\"\n");
    // 2026-01-16 is a Friday; local times are UTC+2.
    for (at, local, want) in [
        ("2026-01-16T19:59:00Z", "Fri 21:59", "4.00"),
        ("2026-01-16T20:00:00Z", "Fri 22:00", "8.00"),
        ("2026-01-16T21:59:59Z", "Fri 23:59:59", "8.00"),
        ("2026-01-16T22:00:00Z", "Sat 00:00", "8.00"),
        ("2026-01-16T23:59:00Z", "Sat 01:59", "8.00"),
        ("2026-01-17T00:00:00Z", "Sat 02:00", "4.00"),
        ("2026-01-15T23:00:00Z", "Fri 01:00, Thursday's night", "4.00"),
        ("2026-01-17T20:30:00Z", "Sat 22:30", "4.00"),
    ] {
        assert_eq!(cashback_at(&t, at).as_deref(), Some(want), "{local}");
    }
}

#[test]
fn days_of_the_week_are_the_tenant_zone_s_not_utc() {
    let t = tenant("[[campaigns]]\nid = \"weekend\"\ndays = [\"sat\", \"sun\"]\nmultiplier = \"2\"\n");
    for (at, local, want) in [
        ("2026-01-16T22:30:00Z", "Sat 00:30 (Friday in UTC)", "8.00"),
        ("2026-01-16T21:59:59Z", "Fri 23:59:59", "4.00"),
        ("2026-01-18T21:59:59Z", "Sun 23:59:59", "8.00"),
        ("2026-01-18T22:30:00Z", "Mon 00:30 (Sunday in UTC)", "4.00"),
    ] {
        assert_eq!(cashback_at(&t, at).as_deref(), Some(want), "{local}");
    }
}

#[test]
fn hours_follow_daylight_saving_time() {
    // Kyiv moves from UTC+2 to UTC+3 at 2026-03-29 01:00Z.
    let t = tenant("[[campaigns]]\nid = \"lunch\"\nhours = \"10:00-14:00\"\nmultiplier = \"2\"\n");
    for (at, local, want) in [
        ("2026-03-28T08:30:00Z", "Sat 10:30 (UTC+2)", "8.00"),
        ("2026-03-28T11:30:00Z", "Sat 13:30 (UTC+2)", "8.00"),
        ("2026-03-29T07:30:00Z", "Sun 10:30 (UTC+3)", "8.00"),
        ("2026-03-29T11:30:00Z", "Sun 14:30 (UTC+3)", "4.00"),
        ("2026-03-29T06:30:00Z", "Sun 09:30 (UTC+3)", "4.00"),
        (
            "2026-03-29T00:59:59Z",
            "Sun 02:59:59 (UTC+2), before the change",
            "4.00",
        ),
    ] {
        assert_eq!(cashback_at(&t, at).as_deref(), Some(want), "{local}");
    }
    let night = tenant("[[campaigns]]\nid = \"night\"\nhours = \"03:00-04:00\"\nmultiplier = \"2\"\n");
    // 03:00-04:00 local does not exist on the day of the change.
    assert_eq!(
        cashback_at(&night, "2026-03-29T01:00:00Z").as_deref(),
        Some("4.00"),
        "04:00 (UTC+3)"
    );
    assert_eq!(
        cashback_at(&night, "2026-03-28T01:30:00Z").as_deref(),
        Some("8.00"),
        "03:30 (UTC+2)"
    );
}

#[test]
fn from_is_inclusive_and_until_exclusive() {
    let t = tenant(
        "[[campaigns]]\nid = \"week\"\nfrom = \"2026-06-01T00:00:00+03:00\"\nuntil = \"2026-06-08T00:00:00+03:00\"\nmultiplier = \"2\"\n",
    );
    for (at, want) in [
        ("2026-05-31T20:59:59Z", "4.00"),
        ("2026-05-31T21:00:00Z", "8.00"),
        ("2026-06-07T20:59:59Z", "8.00"),
        ("2026-06-07T21:00:00Z", "4.00"),
    ] {
        assert_eq!(cashback_at(&t, at).as_deref(), Some(want), "{at}");
    }
}

#[test]
fn branches_programs_min_total_and_registration_choose_what_qualifies() {
    let t = tenant(
        "[[campaigns]]\nid = \"airport-pts\"\nbranches = [\"airport\"]\nprograms = [\"pts\"]\nmultiplier = \"3\"\nmin_total = \"50.00\"\n",
    );
    let at = "2026-01-15T10:00:00Z";
    let airport = run(&t, &order_in("airport", at, "80.00"), &member());
    assert_eq!(
        accrued(&airport, "pts").as_deref(),
        Some("24"),
        "10% of 80 is 8 points, times 3"
    );
    assert_eq!(
        accrued(&airport, "cb").as_deref(),
        Some("4.00"),
        "cb is not among the programs"
    );
    let downtown = run(&t, &order_in("downtown", at, "80.00"), &member());
    assert_eq!(accrued(&downtown, "pts").as_deref(), Some("8"));
    let at_min = run(&t, &order_in("airport", at, "50.00"), &member());
    assert_eq!(
        accrued(&at_min, "pts").as_deref(),
        Some("15"),
        "min_total itself qualifies"
    );
    let below = run(&t, &order_in("airport", at, "49.99"), &member());
    assert_eq!(accrued(&below, "pts").as_deref(), Some("4"));
    // cb accrues for guests too, but campaigns are for registered customers.
    let all =
        tenant("[[campaigns]]\nid = \"x2\"\nmultiplier = \"2\"\nbonus = { account = \"bonus\", amount = \"10\" }\n");
    let guest = run(&all, &order(at, "80.00"), &Customer::default());
    assert_eq!(
        entries(&guest),
        vec![("accrual", "cb".into(), "cashback".into(), "4.00".into())]
    );
    // A free order earns no fixed bonus (and no accrual to multiply).
    let free = run(&all, &order(at, "0.00"), &member());
    assert!(entries(&free).is_empty());
    assert_eq!(free.order_record, None);
}

#[test]
fn the_boosted_amount_is_rounded_per_the_account() {
    let t = tenant("[[campaigns]]\nid = \"half\"\nmultiplier = \"1.5\"\n");
    let at = "2026-01-15T10:00:00Z";
    // 5% of 33.33 is 1.6665, rounded 1.67; times 1.5 is 2.505, half-even 2.50.
    // 10% of 33.33 is 3.333 points, rounded down 3; times 1.5 is 4.5, down 4.
    let got = run(&t, &order(at, "33.33"), &member());
    assert_eq!(accrued(&got, "cb").as_deref(), Some("2.50"));
    assert_eq!(accrued(&got, "pts").as_deref(), Some("4"));
    // 10% of 7.00 is 0.7 points, rounded down 0: nothing to multiply.
    let small = run(&t, &order(at, "7.00"), &member());
    assert_eq!(accrued(&small, "pts"), None);
}

#[test]
fn two_campaigns_multiply_and_each_bonus_is_its_own_entry() {
    let t = tenant(
        r#"
[[campaigns]]
id = "double"
multiplier = "2"
bonus = { account = "bonus", amount = "50" }
[[campaigns]]
id = "half-more"
multiplier = "1.5"
bonus = { account = "cashback", amount = "1.25" }
"#,
    );
    let got = run(&t, &order("2026-01-15T10:00:00Z", "80.00"), &member());
    assert_eq!(
        entries(&got),
        vec![
            ("accrual", "cb".into(), "cashback".into(), "12.00".into()),
            ("accrual", "pts".into(), "bonus".into(), "24".into()),
            ("campaign_bonus", "double".into(), "bonus".into(), "50".into()),
            ("campaign_bonus", "half-more".into(), "cashback".into(), "1.25".into()),
        ]
    );
    let Some((id, record)) = &got.order_record else {
        panic!("the order is recorded")
    };
    assert_eq!(id, "e-1");
    let kept: Vec<(&str, String)> = record
        .accruals
        .iter()
        .map(|m| (&*m.program, m.amount.to_string()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("cb", "12.00".into()),
            ("pts", "24".into()),
            ("double", "50".into()),
            ("half-more", "1.25".into())
        ]
    );
}

#[test]
fn visits_qualify_and_refunds_reverse_boosts_and_bonuses_proportionally() {
    let t = tenant(
        "[[campaigns]]\nid = \"double\"\nmultiplier = \"2\"\nbonus = { account = \"bonus\", amount = \"50\" }\n",
    );
    let visit = event(
        "visit.completed",
        "downtown",
        "2026-01-15T10:00:00Z",
        r#"{"visit_id":"v","sale_type":"service","lines":[{"product":"cut","category":"hair","quantity":"1","amount":"80.00"}],
        "payments":[{"method":"card","amount":"80.00"}],"total":"80.00","currency":"AZN"}"#,
    );
    let paid = run(&t, &visit, &member());
    assert_eq!(accrued(&paid, "cb").as_deref(), Some("8.00"));
    let Some((_, record)) = paid.order_record else {
        panic!("the visit is recorded")
    };
    let refund = |amount: &str| {
        event(
            "order.refunded",
            "downtown",
            "2026-01-16T10:00:00Z",
            &format!(r#"{{"refund_id":"r","original_event_id":"e-1","amount":"{amount}","currency":"AZN"}}"#),
        )
    };
    let half = run_with(&t, &refund("40.00"), &member(), Some(&record));
    assert_eq!(
        entries(&half),
        vec![
            ("reversal", "cb".into(), "cashback".into(), "-4.00".into()),
            ("reversal", "pts".into(), "bonus".into(), "-8".into()),
            ("reversal", "double".into(), "bonus".into(), "-25".into()),
        ]
    );
    let Some((_, after_half)) = half.order_record else {
        panic!("the refund updates the record")
    };
    let rest = run_with(&t, &refund("40.00"), &member(), Some(&after_half));
    assert_eq!(
        entries(&rest),
        vec![
            ("reversal", "cb".into(), "cashback".into(), "-4.00".into()),
            ("reversal", "pts".into(), "bonus".into(), "-8".into()),
            ("reversal", "double".into(), "bonus".into(), "-25".into()),
        ]
    );
}

#[test]
fn an_overflowing_boost_is_a_rejection_not_a_panic() {
    let t = tenant(
        "[[campaigns]]\nid = \"a\"\nmultiplier = \"79228162514264337593543950335\"\n[[campaigns]]\nid = \"b\"\nmultiplier = \"79228162514264337593543950335\"\n",
    );
    let got = run(&t, &order("2026-01-15T10:00:00Z", "80.00"), &member());
    assert_eq!(got.rejection.map(|r| r.code), Some(ReasonCode::AmountOverflow));
    assert!(got.entries.is_empty());
}

/// The birthday and welcome bonuses, with this file's tenant and helpers.
mod bonuses;
