//! The birthday bonus (window edges, New Year, 29 February, once per
//! birthday) and the welcome bonus (once), with the tenant and helpers of
//! the campaign tests.

use super::*;

const BIRTHDAY: &str = "[birthday]\naccount = \"bonus\"\namount = \"100\"\ndays_before = 3\n";

fn born(text: &str) -> Customer {
    Customer {
        birthday: text.parse::<Birthday>().ok(),
        ..member()
    }
}

/// The year whose birthday bonus an 80.00 order at `at` credits, if any.
fn birthday_bonus(t: &TenantConfig, at: &str, customer: &Customer) -> Option<i16> {
    let got = run(t, &order(at, "80.00"), customer);
    let bonus = got
        .entries
        .iter()
        .find(|e| e.entry_type == EntryType::BirthdayBonus)
        .map(|e| (e.account.to_string(), e.program.to_string(), e.amount.to_string()));
    let year = got.customer.as_ref().and_then(|c| c.birthday_bonus_year);
    match bonus {
        Some(b) => {
            assert_eq!(b, ("bonus".into(), "birthday".into(), "100".into()));
            assert!(
                got.customer.as_ref().is_some_and(|c| c.visited),
                "the visit is kept too"
            );
            // A gift for the birthday, not the order's: refunds leave it.
            let record = got.order_record.as_ref().map(|(_, r)| r.accruals.len());
            assert_eq!(record, Some(2), "only the programs' accruals are recorded");
            year
        }
        None => {
            assert_eq!(year, customer.birthday_bonus_year, "no bonus, no new year");
            None
        }
    }
}

#[test]
fn the_birthday_window_runs_from_days_before_to_days_after_in_the_tenant_zone() {
    let t = tenant(BIRTHDAY);
    let june = born("1990-06-15");
    for (at, local, want) in [
        ("2026-06-11T20:59:59Z", "06-11 23:59:59", None),
        ("2026-06-11T21:00:00Z", "06-12 00:00, three days before", Some(2026)),
        ("2026-06-15T09:00:00Z", "the birthday", Some(2026)),
        ("2026-06-22T20:59:59Z", "06-22 23:59:59, seven days after", Some(2026)),
        ("2026-06-22T21:00:00Z", "06-23 00:00", None),
    ] {
        assert_eq!(birthday_bonus(&t, at, &june), want, "{local}");
    }
    let unregistered = Customer {
        registered: false,
        ..june.clone()
    };
    assert_eq!(birthday_bonus(&t, "2026-06-15T09:00:00Z", &unregistered), None);
    assert_eq!(
        birthday_bonus(&t, "2026-06-15T09:00:00Z", &member()),
        None,
        "no birthday known"
    );
    assert_eq!(
        birthday_bonus(&tenant(""), "2026-06-15T09:00:00Z", &june),
        None,
        "no [birthday]"
    );
}

#[test]
fn the_birthday_bonus_is_credited_once_per_birthday() {
    let t = tenant(BIRTHDAY);
    let credited = Customer {
        birthday_bonus_year: Some(2026),
        ..born("06-15")
    };
    assert_eq!(birthday_bonus(&t, "2026-06-16T09:00:00Z", &credited), None);
    assert_eq!(birthday_bonus(&t, "2027-06-16T09:00:00Z", &credited), Some(2027));
    // A late event of an earlier birthday never takes the year back.
    let later = Customer {
        birthday_bonus_year: Some(2027),
        ..born("06-15")
    };
    assert_eq!(birthday_bonus(&t, "2026-06-16T09:00:00Z", &later), None);
}

#[test]
fn a_window_across_new_year_counts_for_the_birthday_s_year() {
    let t = tenant("[birthday]\naccount = \"bonus\"\namount = \"100\"\ndays_before = 7\ndays_after = 7\n");
    let january = born("01-02");
    assert_eq!(birthday_bonus(&t, "2026-12-27T09:00:00Z", &january), Some(2027));
    assert_eq!(
        birthday_bonus(&t, "2026-12-25T09:00:00Z", &january),
        None,
        "eight days before"
    );
    let december = born("12-30");
    assert_eq!(birthday_bonus(&t, "2027-01-06T09:00:00Z", &december), Some(2026));
    let credited = Customer {
        birthday_bonus_year: Some(2027),
        ..january
    };
    assert_eq!(birthday_bonus(&t, "2027-01-05T09:00:00Z", &credited), None);
}

#[test]
fn the_29th_of_february_is_the_28th_in_other_years() {
    let t = tenant("[birthday]\naccount = \"bonus\"\namount = \"100\"\ndays_after = 0\n");
    let leap = born("2000-02-29");
    assert_eq!(
        birthday_bonus(&t, "2027-02-27T21:59:59Z", &leap),
        None,
        "02-27 23:59:59"
    );
    assert_eq!(birthday_bonus(&t, "2027-02-28T09:00:00Z", &leap), Some(2027));
    assert_eq!(birthday_bonus(&t, "2027-03-01T09:00:00Z", &leap), None);
    assert_eq!(
        birthday_bonus(&t, "2028-02-28T09:00:00Z", &leap),
        None,
        "2028 has a 29th"
    );
    assert_eq!(birthday_bonus(&t, "2028-02-29T09:00:00Z", &leap), Some(2028));
}

fn upsert(registered: bool) -> Event {
    event(
        "customer.upserted",
        "downtown",
        "2026-01-15T10:00:00Z",
        &format!(r#"{{"registered":{registered},"marketing_consent":false,"birthday":"1990-06-15"}}"#),
    )
}

#[test]
fn the_welcome_bonus_is_credited_once_when_a_customer_registers() {
    let t = tenant("[welcome]\naccount = \"bonus\"\namount = \"200\"\n");
    let got = run(&t, &upsert(true), &Customer::default());
    assert_eq!(
        entries(&got),
        vec![("welcome_bonus", "welcome".into(), "bonus".into(), "200".into())]
    );
    let Some(profile) = got.customer else {
        panic!("the profile is stored")
    };
    assert!(profile.welcomed && profile.registered);
    assert_eq!(profile.birthday.map(|b| b.to_string()).as_deref(), Some("1990-06-15"));
    // The same upsert again, or after leaving and registering again: nothing.
    assert!(run(&t, &upsert(true), &profile).entries.is_empty());
    let left = Customer {
        registered: false,
        ..profile.clone()
    };
    let again = run(&t, &upsert(true), &left);
    assert!(again.entries.is_empty());
    assert!(again.customer.is_some_and(|c| c.welcomed), "welcomed is kept");
    // Not registering, or registered before the tenant had [welcome]: nothing.
    assert!(run(&t, &upsert(false), &Customer::default()).entries.is_empty());
    assert!(run(&t, &upsert(true), &member()).entries.is_empty());
    assert!(run(&tenant(""), &upsert(true), &Customer::default()).entries.is_empty());
}

#[test]
fn upserts_keep_what_accrue_tracks_about_the_bonuses() {
    let t = tenant("");
    let before = Customer {
        birthday_bonus_year: Some(2025),
        welcomed: true,
        ..born("03-03")
    };
    let got = run(&t, &upsert(true), &before);
    let Some(profile) = got.customer else {
        panic!("the profile is stored")
    };
    assert_eq!(profile.birthday_bonus_year, Some(2025));
    assert!(profile.welcomed);
    assert_eq!(
        profile.birthday.map(|b| (b.month(), b.day())),
        Some((6, 15)),
        "the upsert's birthday"
    );
}
