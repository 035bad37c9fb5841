//! Earning limits: per order, per day and per month at the limit, days and
//! months in the tenant's time zone (Europe/Kyiv), late events, refunds,
//! overflow; and the property that no period ever earns more than its
//! limit.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::tiers_tests::{d, paid, refund, tenant, Sim, DAY, MARCH_1};
use super::*;

/// A 10% cashback program with `limits`.
fn limited(limits: &str) -> Sim {
    Sim::new(tenant(&format!(
        r#"
[[programs]]
id = "cb"
type = "cashback"
percent = "10"
branches = {{ downtown = "active" }}
limits = {{ {limits} }}
"#
    )))
}

/// The accrual entry of the outcome: (amount, description).
fn accrual(outcome: &Outcome) -> Option<(Decimal, Option<&str>)> {
    assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
    let mut accruals = outcome.entries.iter().filter(|e| e.entry_type == EntryType::Accrual);
    let found = accruals.next().map(|e| (e.amount, e.description.as_deref()));
    assert!(accruals.next().is_none(), "one program, one accrual");
    found
}

/// `2026-03-HH:MM` UTC of the given day of March, Unix milliseconds.
fn march(day: i64, hour: i64, minute: i64) -> i64 {
    MARCH_1 + (day - 1) * DAY + hour * 3_600_000 + minute * 60_000
}

fn order(sim: &mut Sim, id: &str, at: i64, card: &str) -> Option<(Decimal, Option<String>)> {
    let outcome = sim.run(&paid(id, at, d(card), Decimal::ZERO));
    accrual(&outcome).map(|(a, note)| (a, note.map(str::to_owned)))
}

fn capped(amount: &str, note: &str) -> Option<(Decimal, Option<String>)> {
    Some((d(amount), Some(note.to_owned())))
}

fn full(amount: &str) -> Option<(Decimal, Option<String>)> {
    Some((d(amount), None))
}

#[test]
fn per_order_caps_one_order_at_the_limit() {
    let mut sim = limited(r#"per_order = "8""#);
    assert_eq!(
        order(&mut sim, "o1", march(5, 10, 0), "80.00"),
        full("8.00"),
        "at the limit: whole"
    );
    assert_eq!(
        order(&mut sim, "o2", march(5, 11, 0), "80.10"),
        capped("8", "capped by per_order limit 8")
    );
    assert_eq!(
        order(&mut sim, "o3", march(5, 12, 0), "500.00"),
        capped("8", "capped by per_order limit 8")
    );
    assert!(sim.loyalty.earned.is_empty(), "per_order needs no counter");
}

#[test]
fn per_day_counts_days_in_the_tenants_time_zone() {
    // Kyiv is UTC+2 in early March: a local day runs 22:00Z to 22:00Z.
    let mut sim = limited(r#"per_day = "15""#);
    assert_eq!(order(&mut sim, "o1", march(5, 10, 0), "100.00"), full("10.00"));
    // 21:30Z is 23:30 the same local day: 5 left of 15.
    assert_eq!(
        order(&mut sim, "o2", march(5, 21, 30), "100.00"),
        capped("5.00", "capped by per_day limit 15")
    );
    // At the limit: nothing more that day, and no entry of zero.
    assert_eq!(order(&mut sim, "o3", march(5, 21, 59), "100.00"), None);
    // 22:00Z is local midnight: a new day, though still March 5 in UTC.
    assert_eq!(order(&mut sim, "o4", march(5, 22, 0), "100.00"), full("10.00"));
    assert_eq!(
        order(&mut sim, "o5", march(6, 12, 0), "100.00"),
        capped("5.00", "capped by per_day limit 15")
    );
}

#[test]
fn per_month_rolls_over_at_the_local_month() {
    // Kyiv moves to UTC+3 on March 29: April starts at 2026-03-31T21:00Z.
    let mut sim = limited(r#"per_month = "25""#);
    assert_eq!(order(&mut sim, "o1", march(31, 10, 0), "100.00"), full("10.00"));
    assert_eq!(order(&mut sim, "o2", march(31, 11, 0), "100.00"), full("10.00"));
    assert_eq!(
        order(&mut sim, "o3", march(31, 20, 59), "100.00"),
        capped("5.00", "capped by per_month limit 25")
    );
    assert_eq!(
        order(&mut sim, "o4", march(31, 21, 0), "100.00"),
        full("10.00"),
        "April in Kyiv"
    );
    let months: Vec<Decimal> = sim.loyalty.earned.iter().map(|e| e.amount).collect();
    assert_eq!(months, vec![d("25.00"), d("10.00")]);
}

#[test]
fn the_tightest_limit_decides_and_is_named() {
    let mut sim = limited(r#"per_order = "8", per_day = "12", per_month = "100""#);
    assert_eq!(
        order(&mut sim, "o1", march(5, 10, 0), "100.00"),
        capped("8", "capped by per_order limit 8")
    );
    assert_eq!(
        order(&mut sim, "o2", march(5, 11, 0), "100.00"),
        capped("4.00", "capped by per_day limit 12")
    );
    let counted: Vec<(loyalty::LimitPeriod, Decimal)> =
        sim.loyalty.earned.iter().map(|e| (e.period, e.amount)).collect();
    assert_eq!(
        counted,
        vec![
            (loyalty::LimitPeriod::Day, d("12.00")),
            (loyalty::LimitPeriod::Month, d("12.00"))
        ]
    );
}

#[test]
fn a_late_event_counts_in_its_own_period() {
    let mut sim = limited(r#"per_day = "15""#);
    assert_eq!(order(&mut sim, "o1", march(10, 10, 0), "100.00"), full("10.00"));
    assert_eq!(
        order(&mut sim, "o2", march(9, 10, 0), "100.00"),
        full("10.00"),
        "March 9 had nothing"
    );
    assert_eq!(
        order(&mut sim, "o3", march(9, 11, 0), "100.00"),
        capped("5.00", "capped by per_day limit 15")
    );
    assert_eq!(
        order(&mut sim, "o4", march(10, 11, 0), "100.00"),
        capped("5.00", "capped by per_day limit 15")
    );
}

#[test]
fn an_event_older_than_the_kept_counters_earns_nothing_from_a_limited_program() {
    let mut sim = limited(r#"per_day = "15", per_month = "1000""#);
    assert_eq!(order(&mut sim, "o1", march(20, 10, 0), "100.00"), full("10.00"));
    // Seven days are kept (March 14 to 20); March 13 is too old to check.
    assert_eq!(order(&mut sim, "o2", march(14, 10, 0), "100.00"), full("10.00"));
    assert_eq!(order(&mut sim, "o3", march(13, 10, 0), "100.00"), None);
    // A newer day prunes the old ones; a day once pruned is never counted afresh.
    assert_eq!(order(&mut sim, "o4", march(25, 10, 0), "100.00"), full("10.00"));
    assert_eq!(order(&mut sim, "o5", march(18, 10, 0), "100.00"), None);
    assert!(sim
        .loyalty
        .earned
        .iter()
        .all(|e| e.period == loyalty::LimitPeriod::Month || e.start_ms >= march(18, 22, 0)));
    // Months: this and the previous one are kept.
    let mut sim = limited(r#"per_month = "15""#);
    assert_eq!(order(&mut sim, "o1", march(20, 10, 0), "100.00"), full("10.00"));
    assert_eq!(
        order(&mut sim, "o2", MARCH_1 - 10 * DAY, "100.00"),
        full("10.00"),
        "February"
    );
    assert_eq!(order(&mut sim, "o3", MARCH_1 - 40 * DAY, "100.00"), None, "January");
}

#[test]
fn a_counter_at_zero_still_marks_the_newest_period() {
    let mut sim = limited(r#"per_day = "5", per_month = "10""#);
    let day = |amount: &str| capped(amount, "capped by per_day limit 5");
    assert_eq!(
        order(&mut sim, "o1", march(0, 10, 0), "100.00"),
        day("5"),
        "February 28"
    );
    assert_eq!(order(&mut sim, "o2", march(1, 10, 0), "100.00"), day("5"));
    assert_eq!(order(&mut sim, "o3", march(2, 10, 0), "100.00"), day("5"));
    // March is used up: March 20 earns nothing, but its day counter (at
    // zero) stays and drops February 28's, so February 28 (whose month
    // has 5 left) is not counted afresh.
    assert_eq!(order(&mut sim, "o4", march(20, 10, 0), "100.00"), None);
    assert_eq!(order(&mut sim, "o5", march(0, 11, 0), "100.00"), None);
}

#[test]
fn a_refund_gives_no_headroom_back() {
    let mut sim = limited(r#"per_day = "15""#);
    assert_eq!(order(&mut sim, "o1", march(5, 10, 0), "100.00"), full("10.00"));
    let back = sim.run(&refund("r1", "o1", march(5, 11, 0), d("100.00")));
    assert!(back.rejection.is_none(), "{:?}", back.rejection);
    assert_eq!(back.entries.first().map(|e| e.amount), Some(d("-10.00")));
    assert_eq!(
        order(&mut sim, "o2", march(5, 12, 0), "100.00"),
        capped("5.00", "capped by per_day limit 15")
    );
}

#[test]
fn limits_apply_to_what_the_tier_percent_gives() {
    let mut sim = Sim::new(tenant(
        r#"
[tiers]
metric = "spend"
[[tiers.levels]]
id = "gold"
threshold = "100"
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
tier_percent = { gold = "20" }
limits = { per_order = "15" }
"#,
    ));
    assert_eq!(order(&mut sim, "o1", march(5, 10, 0), "90.00"), full("4.50"));
    assert_eq!(
        order(&mut sim, "o2", march(5, 11, 0), "100.00"),
        capped("15", "capped by per_order limit 15")
    );
}

#[test]
fn a_counter_that_does_not_fit_rejects_the_order_and_never_panics() {
    let mut sim = limited(r#"per_day = "15""#);
    assert_eq!(order(&mut sim, "o1", march(5, 10, 0), "100.00"), full("10.00"));
    for e in &mut sim.loyalty.earned {
        e.amount = Decimal::MIN;
    }
    let outcome = sim.run(&paid("o2", march(5, 11, 0), d("100.00"), Decimal::ZERO));
    assert_eq!(
        outcome.rejection.map(|r| r.code),
        Some(ReasonCode::AmountOverflow),
        "a limit less a counter that does not fit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(20), ..ProptestConfig::default() })]

    /// In any arrival order, what the program credits per order, per local
    /// day and per local month never exceeds its limits.
    #[test]
    fn a_program_never_earns_more_than_its_limits(
        orders in proptest::collection::vec((0i64..75, 0..DAY, 1i64..40_000), 1..40),
    ) {
        let (per_order, per_day, per_month) = (d("30"), d("45"), d("200"));
        let mut sim = limited(r#"per_order = "30", per_day = "45", per_month = "200""#);
        let zone = sim.tenant.timezone.clone();
        let mut days: BTreeMap<jiff::civil::Date, Decimal> = BTreeMap::new();
        let mut months: BTreeMap<(i16, i8), Decimal> = BTreeMap::new();
        for (i, (day, ms, cents)) in orders.iter().enumerate() {
            let at = MARCH_1 + day * DAY + ms;
            let outcome = sim.run(&paid(&format!("o{i}"), at, Decimal::new(*cents, 2), Decimal::ZERO));
            prop_assert!(outcome.rejection.is_none(), "{:?}", outcome.rejection);
            let Some((amount, _)) = accrual(&outcome) else { continue };
            prop_assert!(amount > Decimal::ZERO && amount <= per_order);
            let local = zone.local_ms(at).map(|z| z.date());
            prop_assert!(local.is_some());
            let Some(date) = local else { continue };
            *days.entry(date).or_default() += amount;
            *months.entry((date.year(), date.month())).or_default() += amount;
        }
        for (date, sum) in &days {
            prop_assert!(*sum <= per_day, "{date}: {sum}");
        }
        for (month, sum) in &months {
            prop_assert!(*sum <= per_month, "{month:?}: {sum}");
        }
        // Counters of periods: at most the seven days and two months kept.
        let kept = sim.loyalty.earned.iter().filter(|e| e.period == loyalty::LimitPeriod::Day).count();
        prop_assert!(kept <= limits::KEEP_DAYS as usize, "{kept} day counters");
    }
}
