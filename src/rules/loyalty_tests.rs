//! Expiry in the pure rules: when credits expire, how lots are spent, what
//! a review expires and warns, and the invariants over any sequence.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::loyalty::{book, expires_at, next_review, review, Lot, Lots};
use super::*;
use crate::programs::{CalendarPeriod, ExpiryRule};

const DAY: i64 = 86_400_000;

fn tenant(extra: &str) -> TenantConfig {
    let text = format!(
        r#"id = "cafe"
currency = "EUR"
timezone = "Europe/Kyiv"
bonus_accounts = ["stars"]
[branches.main]
[[programs]]
id = "bonus"
type = "bonus"
percent = "5"
branches = {{ main = "active" }}
[[programs]]
id = "promo"
type = "bonus"
percent = "1"
branches = {{ main = "active" }}
expiry = {{ after = "7d" }}
[expiry.bonus]
after = "30d"
warn_before = "5d"
{extra}"#
    );
    match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    }
}

fn ms(text: &str) -> i64 {
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(at) => (at.unix_timestamp_nanos() / 1_000_000) as i64,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn at(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn entry(account: &str, program: &str, entry_type: EntryType, amount: i64) -> Entry {
    Entry {
        account: Arc::from(account),
        entry_type,
        program: Arc::from(program),
        amount: Decimal::from(amount),
        base: None,
        description: None,
        operator: None,
    }
}

fn rule(after_days: Option<u64>, at_end_of: Option<CalendarPeriod>) -> ExpiryRule {
    ExpiryRule {
        after: after_days.map(|d| std::time::Duration::from_secs(d * 86_400)),
        at_end_of,
        warn_before: None,
    }
}

#[test]
fn a_credit_expires_after_its_period_or_at_the_end_of_its_calendar_period_in_the_tenants_zone() {
    let t = tenant("");
    let credited = ms("2026-03-31T22:30:00Z"); // 1 April 01:30 in Kyiv (UTC+3)
    assert_eq!(
        expires_at(&t, &rule(Some(30), None), credited),
        Ok(Some(credited + 30 * DAY))
    );
    // The end of April, of the second quarter and of 2026, in Kyiv.
    assert_eq!(
        expires_at(&t, &rule(None, Some(CalendarPeriod::Month)), credited),
        Ok(Some(ms("2026-04-30T21:00:00Z")))
    );
    assert_eq!(
        expires_at(&t, &rule(None, Some(CalendarPeriod::Quarter)), credited),
        Ok(Some(ms("2026-06-30T21:00:00Z")))
    );
    assert_eq!(
        expires_at(&t, &rule(None, Some(CalendarPeriod::Year)), credited),
        Ok(Some(ms("2026-12-31T22:00:00Z"))),
        "winter time (UTC+2) at the end of the year"
    );
    // In UTC the same instant is still in March and the first quarter.
    let utc = tenant("").clone();
    let utc = TenantConfig {
        timezone: crate::programs::Zone::default(),
        ..utc
    };
    assert_eq!(
        expires_at(&utc, &rule(None, Some(CalendarPeriod::Month)), credited),
        Ok(Some(ms("2026-04-01T00:00:00Z")))
    );
    assert_eq!(
        expires_at(&utc, &rule(None, Some(CalendarPeriod::Quarter)), credited),
        Ok(Some(ms("2026-04-01T00:00:00Z")))
    );
    assert_eq!(expires_at(&t, &rule(None, None), credited), Ok(None));
    assert_eq!(
        expires_at(&t, &rule(Some(30), None), i64::MAX - 1),
        Err(Overflow::Date),
        "an expiry past the end of time is an error, not a panic"
    );
}

#[test]
fn credits_become_lots_and_debits_spend_the_unexplained_balance_then_the_oldest_lots() {
    let t = tenant("");
    let mut record = Lots::default();
    let mut balances = BTreeMap::from([("bonus".to_owned(), Decimal::from(10))]);
    let day0 = ms("2026-05-01T10:00:00Z");
    let credits = [
        entry("bonus", "bonus", EntryType::Accrual, 40),
        entry("bonus", "promo", EntryType::Accrual, 8),
        entry("cashback", "cashback", EntryType::Accrual, 3),
    ];
    assert_eq!(book(&t, &mut record, &credits, &balances, at(day0), "o1", None), Ok(()));
    assert_eq!(record.lots.len(), 2, "cashback has no expiry rule: no lot");
    assert_eq!(record.lots[0].expires_ms, Some(day0 + 30 * DAY));
    assert_eq!(
        record.lots[1].expires_ms,
        Some(day0 + 7 * DAY),
        "the program's own rule"
    );
    balances.insert("bonus".into(), Decimal::from(58));
    // 15 spent: 10 from the balance from before the rule, 5 from o1's first lot.
    let spend = [entry("bonus", "redemption", EntryType::Redemption, -15)];
    assert_eq!(
        book(&t, &mut record, &spend, &balances, at(day0 + DAY), "o2", None),
        Ok(())
    );
    assert_eq!(record.lots[0].remaining, Decimal::from(35));
    assert_eq!(record.lots[1].remaining, Decimal::from(8));
    balances.insert("bonus".into(), Decimal::from(43));
    let spend = [entry("bonus", "redemption", EntryType::Redemption, -36)];
    assert_eq!(
        book(&t, &mut record, &spend, &balances, at(day0 + DAY), "o3", None),
        Ok(())
    );
    assert_eq!(record.lots.len(), 1, "a spent lot goes");
    assert_eq!(record.lots[0].program.as_ref(), "promo");
    assert_eq!(record.lots[0].remaining, Decimal::from(7));
}

#[test]
fn a_reversal_takes_back_from_its_own_orders_lot_first() {
    let t = tenant("");
    let mut record = Lots::default();
    let day0 = ms("2026-05-01T10:00:00Z");
    let none = BTreeMap::new();
    book(
        &t,
        &mut record,
        &[entry("bonus", "bonus", EntryType::Accrual, 10)],
        &none,
        at(day0),
        "o1",
        None,
    )
    .ok();
    let ten = BTreeMap::from([("bonus".to_owned(), Decimal::from(10))]);
    book(
        &t,
        &mut record,
        &[entry("bonus", "bonus", EntryType::Accrual, 20)],
        &ten,
        at(day0 + DAY),
        "o2",
        None,
    )
    .ok();
    let thirty = BTreeMap::from([("bonus".to_owned(), Decimal::from(30))]);
    let reversal = [entry("bonus", "bonus", EntryType::Reversal, -15)];
    assert_eq!(
        book(
            &t,
            &mut record,
            &reversal,
            &thirty,
            at(day0 + 2 * DAY),
            "r2",
            Some("o2")
        ),
        Ok(())
    );
    let left: Vec<(String, Decimal)> = record.lots.iter().map(|l| (l.source.clone(), l.remaining)).collect();
    assert_eq!(
        left,
        vec![("o1".into(), Decimal::from(10)), ("o2".into(), Decimal::from(5))]
    );
}

#[test]
fn a_review_expires_what_is_left_never_more_than_the_balance_and_warns_only_with_consent() {
    let t = tenant("");
    let day0 = ms("2026-05-01T10:00:00Z");
    let lot = |source: &str, remaining: i64, expires: i64| Lot {
        account: Arc::from("bonus"),
        program: Arc::from("bonus"),
        source: source.to_owned(),
        credited_ms: day0,
        expires_ms: Some(expires),
        warned: false,
        amount: Decimal::from(50),
        remaining: Decimal::from(remaining),
    };
    let record = Lots {
        lots: vec![lot("o1", 30, day0 + 30 * DAY), lot("o2", 50, day0 + 40 * DAY)],
    };
    let none = Loyalty::default();
    // The first warning is due 5 days before o1 expires.
    assert_eq!(next_review(&t, &none, &record), Some(day0 + 25 * DAY));
    let balances = BTreeMap::from([("bonus".to_owned(), Decimal::from(20))]);
    let warned = review(&t, &none, &record, &balances, day0 + 25 * DAY, true).unwrap_or_default();
    assert!(warned.expired.is_empty());
    assert_eq!(warned.expiring.len(), 1);
    assert_eq!(warned.expiring[0].amount, Decimal::from(30));
    assert_eq!(
        next_review(&t, &none, &warned.lots),
        Some(day0 + 30 * DAY),
        "warned once"
    );
    let silent = review(&t, &none, &record, &balances, day0 + 25 * DAY, false).unwrap_or_default();
    assert!(silent.expiring.is_empty(), "no consent, no warning");
    assert_eq!(silent.lots, warned.lots, "but it counts as given");
    // A refund took the balance to 20: o1's 30 left expire as 20.
    let expired = review(&t, &none, &warned.lots, &balances, day0 + 30 * DAY, true).unwrap_or_default();
    assert_eq!(expired.expired.len(), 1);
    assert_eq!(expired.expired[0].entry.amount, Decimal::from(-20));
    assert_eq!(expired.expired[0].entry.entry_type, EntryType::Expiry);
    assert_eq!(expired.lots.lots.len(), 1);
    assert_eq!(next_review(&t, &none, &expired.lots), Some(day0 + 35 * DAY));
}

/// One step of a customer's history on the `bonus` account.
#[derive(Debug, Clone)]
enum Step {
    Credit(i64, &'static str),
    Spend(i64),
    Refund(i64),
    Wait(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1i64..500, prop_oneof![Just("bonus"), Just("promo")]).prop_map(|(a, p)| Step::Credit(a, p)),
        (1i64..400).prop_map(Step::Spend),
        (1i64..100).prop_map(Step::Refund),
        (1i64..20).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Over any history, the balance is the sum of its ledger; what the
    /// lots hold never exceeds a positive balance; each expiry takes no
    /// more than what was left of its credit, and no credit loses more
    /// than it gave.
    #[test]
    fn expiry_never_takes_more_than_is_left_and_the_balance_is_its_ledger(steps in prop::collection::vec(step(), 1..60)) {
        let t = tenant("");
        let mut record = Lots::default();
        let mut ledger: Vec<Decimal> = Vec::new();
        let mut now = ms("2026-05-01T10:00:00Z");
        let mut taken: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut credited: BTreeMap<String, Decimal> = BTreeMap::new();
        for (i, s) in steps.iter().enumerate() {
            let balance: Decimal = ledger.iter().sum();
            let balances = BTreeMap::from([("bonus".to_owned(), balance)]);
            let entries = match s {
                Step::Credit(a, program) => {
                    credited.insert(format!("e{i}"), Decimal::from(*a));
                    vec![entry("bonus", program, EntryType::Accrual, *a)]
                }
                // Spending is checked against the balance; a refund may take it below zero.
                Step::Spend(a) => vec![entry("bonus", "redemption", EntryType::Redemption, -(*a).min(balance.max(Decimal::ZERO).try_into().unwrap_or(0)))],
                Step::Refund(a) => vec![entry("bonus", "bonus", EntryType::Reversal, -a)],
                Step::Wait(days) => {
                    now += days * DAY;
                    while let Some(due) = next_review(&t, &Loyalty::default(), &record).filter(|d| *d <= now) {
                        let balance: Decimal = ledger.iter().sum();
                        let balances = BTreeMap::from([("bonus".to_owned(), balance)]);
                        let r = review(&t, &Loyalty::default(), &record, &balances, due, true);
                        prop_assert!(r.is_ok());
                        let r = r.unwrap_or_default();
                        for e in &r.expired {
                            prop_assert!(e.entry.amount < Decimal::ZERO);
                            prop_assert!(e.entry.amount.abs() <= e.lot.remaining);
                            let sum = taken.entry(e.lot.source.clone()).or_default();
                            *sum += e.entry.amount.abs();
                            prop_assert!(*sum <= credited[&e.lot.source]);
                            ledger.push(e.entry.amount);
                        }
                        record = r.lots;
                    }
                    continue;
                }
            };
            prop_assert_eq!(book(&t, &mut record, &entries, &balances, at(now), &format!("e{i}"), None), Ok(()));
            ledger.extend(entries.iter().map(|e| e.amount));
            let balance: Decimal = ledger.iter().sum();
            let in_lots: Decimal = record.lots.iter().map(|l| l.remaining).sum();
            prop_assert!(in_lots <= balance.max(Decimal::ZERO), "lots {} > balance {}", in_lots, balance);
            prop_assert!(record.lots.iter().all(|l| l.remaining > Decimal::ZERO && l.remaining <= l.amount));
        }
    }
}

#[test]
fn credits_of_an_account_whose_rule_was_removed_never_expire() {
    let day0 = ms("2026-05-01T10:00:00Z");
    let mut record = Lots::default();
    let none = BTreeMap::new();
    let t = tenant("");
    book(
        &t,
        &mut record,
        &[entry("bonus", "bonus", EntryType::Accrual, 10)],
        &none,
        at(day0),
        "o1",
        None,
    )
    .ok();
    assert_eq!(record.lots.len(), 1);
    // The same tenant without [expiry.bonus] and without the program
    // that has its own rule.
    let without = TenantConfig {
        expiry: Default::default(),
        programs: crate::programs::ProgramVersions::new(Vec::new()),
        ..t
    };
    let balances = BTreeMap::from([("bonus".to_owned(), Decimal::from(10))]);
    let r = review(&without, &Loyalty::default(), &record, &balances, day0 + 31 * DAY, true).unwrap_or_default();
    assert!(r.expired.is_empty());
    assert!(r.lots.lots.is_empty(), "the lot is dropped");
    assert_eq!(next_review(&without, &r.loyalty, &r.lots), None);
}

#[test]
fn beyond_the_most_credits_kept_apart_a_credit_joins_the_newest_of_its_program() {
    let t = tenant("");
    let day0 = ms("2026-05-01T10:00:00Z");
    let mut lots = Lots::default();
    let mut balance = Decimal::ZERO;
    let total = super::loyalty::MAX_LOTS as i64 + 5;
    for i in 0..total {
        let balances = BTreeMap::from([("bonus".to_owned(), balance)]);
        let credit = [entry("bonus", "bonus", EntryType::Accrual, 2)];
        assert_eq!(
            book(
                &t,
                &mut lots,
                &credit,
                &balances,
                at(day0 + i * 60_000),
                &format!("o{i}"),
                None
            ),
            Ok(())
        );
        balance += Decimal::from(2);
    }
    assert_eq!(lots.lots.len(), super::loyalty::MAX_LOTS);
    let newest = &lots.lots[lots.lots.len() - 1];
    assert_eq!(newest.amount, Decimal::from(12), "the last six credits in one");
    assert_eq!(
        newest.expires_ms,
        Some(day0 + (total - 1) * 60_000 + 30 * DAY),
        "with the later expiry"
    );
    let in_lots: Decimal = lots.lots.iter().map(|l| l.remaining).sum();
    assert_eq!(in_lots, balance, "nothing is lost");
}
