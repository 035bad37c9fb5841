use super::*;
use crate::read::outstanding;
use crate::state::{RocksStore, Store, WriteSet};

fn parse(params: &[(&str, &str)]) -> Result<TotalsQuery, QueryError> {
    TotalsQuery::parse("cafe", params.iter().copied())
}

#[test]
fn parses_lists_days_and_groups() {
    let parsed = parse(&[
        ("from", "2026-11-01"),
        ("to", "2026-12-01T00:00:00Z"),
        ("group_by", "entry_type,day"),
        ("entry_type", "accrual,reversal"),
        ("branch", "downtown"),
        ("origin", "own"),
    ]);
    let Ok(q) = parsed else { panic!("{parsed:?}") };
    assert_eq!(q.from_day, Some(20_758));
    assert_eq!(q.to_day, Some(20_788));
    assert_eq!(q.group_by, [Dim::EntryType, Dim::Day]);
    assert_eq!(q.entry_type, ["accrual", "reversal"]);
    assert_eq!(q.branch, ["downtown"]);
    assert_eq!(q.origin, Origin::Own);
    assert_eq!(day_text(20_758), "2026-11-01");
}

#[test]
fn midnight_in_another_offset_is_refused_and_a_plus_that_became_a_space_is_read() {
    // Midnight UTC written with a `+00:00` that arrived as a space.
    assert_eq!(
        parse(&[("from", "2026-11-01T00:00:00 00:00")]).map(|q| q.from_day),
        Ok(Some(20_758))
    );
    for (params, name) in [
        (vec![("from", "2026-11-01T00:00:00+04:00")], "from"),
        (vec![("to", "2026-11-01T10:00:00Z")], "to"),
        (vec![("from", "2026-13-01")], "from"),
        (vec![("from", "2026-11-02"), ("to", "2026-11-02")], "to"),
        (vec![("group_by", "colour")], "group_by"),
        (vec![("group_by", "day,day")], "group_by"),
        (vec![("entry_type", "accrual,")], "entry_type"),
        (vec![("origin", "mine")], "origin"),
        (vec![("branch", "a"), ("branch", "b")], "branch"),
        (vec![("limit", "5")], "limit"),
    ] {
        match parse(&params) {
            Err(err) => assert_eq!(err.name, name, "{params:?}: {err}"),
            Ok(ok) => panic!("{params:?} was accepted: {ok:?}"),
        }
    }
}

fn bucket(set: &mut WriteSet, p: u32, tenant: &str, day: u32, dims: [&str; 6], sum: Decimal, count: u64) {
    let dims = TotalsDims {
        entry_type: dims[0].into(),
        account: dims[1].into(),
        program: dims[2].into(),
        branch: dims[3].into(),
        partner: dims[4].into(),
        unit: dims[5].into(),
    };
    set.put(
        Family::Totals,
        keys::totals(p, tenant, day, &dims),
        TotalsValue { sum, count }.encode().to_vec(),
    );
}

#[test]
fn buckets_group_by_week_and_month_and_units_never_mix() {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = RocksStore::open(dir.path()) else {
        panic!("open")
    };
    let mut set = WriteSet::new();
    let d = |text: &str| parse_date(text).and_then(day_of_date).unwrap_or_default();
    // Tuesday 2026-11-03 and Sunday 2026-11-08 share the week of Monday the 2nd.
    bucket(
        &mut set,
        0,
        "cafe",
        d("2026-11-03"),
        ["accrual", "cashback", "p1", "b1", "", "AZN"],
        Decimal::new(450, 2),
        2,
    );
    bucket(
        &mut set,
        1,
        "cafe",
        d("2026-11-08"),
        ["accrual", "cashback", "p1", "b2", "", "AZN"],
        Decimal::new(100, 2),
        1,
    );
    bucket(
        &mut set,
        1,
        "cafe",
        d("2026-11-09"),
        ["accrual", "bonus", "p2", "b1", "", "points"],
        Decimal::new(30, 0),
        3,
    );
    bucket(
        &mut set,
        1,
        "cafe",
        d("2026-12-01"),
        ["redemption", "cashback", "redemption", "b1", "", "AZN"],
        Decimal::new(-200, 2),
        1,
    );
    bucket(
        &mut set,
        0,
        "cafe",
        d("2026-11-04"),
        ["partner_accrual", "deposit@cafe", "partner:cafe", "b1", "bar", "AZN"],
        Decimal::new(500, 2),
        1,
    );
    bucket(
        &mut set,
        0,
        "cafe",
        RUNNING_DAY,
        ["", "cashback", "", "", "", "AZN"],
        Decimal::new(350, 2),
        4,
    );
    bucket(
        &mut set,
        1,
        "cafe",
        RUNNING_DAY,
        ["", "cashback", "", "", "", "AZN"],
        Decimal::new(100, 2),
        1,
    );
    bucket(
        &mut set,
        0,
        "other",
        d("2026-11-03"),
        ["accrual", "cashback", "p1", "b1", "", "AZN"],
        Decimal::new(999, 2),
        9,
    );
    assert!(store.write(&set, crate::state::Durability::Synced).is_ok());
    let snap = store.snapshot();
    let run = |params: &[(&str, &str)]| match parse(params).map(|q| totals(&snap, &q)) {
        Ok(Ok(t)) => t,
        other => panic!("{params:?}: {other:?}"),
    };

    let by_week = run(&[("group_by", "week"), ("from", "2026-11-01"), ("to", "2026-12-01")]);
    let weeks: Vec<(Option<&str>, &str, &str, u64)> = by_week
        .rows
        .iter()
        .map(|r| (r.week.as_deref(), r.unit.as_str(), r.amount.as_str(), r.count))
        .collect();
    assert_eq!(
        weeks,
        [
            (Some("2026-11-02"), "AZN", "10.50", 4),
            (Some("2026-11-09"), "points", "30", 3)
        ]
    );
    assert_eq!(by_week.rows[0].entry_type, None, "only grouped keys are set");
    assert_eq!(by_week.totals.len(), 2, "one total per unit");
    assert_eq!(by_week.from.as_deref(), Some("2026-11-01"));

    let by_month = run(&[("group_by", "month,entry_type"), ("unit", "AZN"), ("origin", "own")]);
    let months: Vec<(Option<&str>, Option<&str>, &str)> = by_month
        .rows
        .iter()
        .map(|r| (r.month.as_deref(), r.entry_type.as_deref(), r.amount.as_str()))
        .collect();
    assert_eq!(
        months,
        [
            (Some("2026-11"), Some("accrual"), "5.50"),
            (Some("2026-12"), Some("redemption"), "-2.00")
        ]
    );
    assert_eq!(by_month.totals[0].amount, "3.50");

    let partners = run(&[("group_by", "partner,branch"), ("origin", "partners")]);
    assert_eq!(partners.rows.len(), 1);
    assert_eq!(partners.rows[0].partner.as_deref(), Some("bar"));
    assert_eq!(partners.rows[0].amount, "5.00");

    let filtered = run(&[("branch", "b2,b9"), ("entry_type", "accrual")]);
    assert_eq!(filtered.totals[0].amount, "1.00");
    assert!(filtered.rows[0].branch.is_none());

    let outstanding = outstanding(&snap, "cafe");
    let Ok(outstanding) = outstanding else {
        panic!("{outstanding:?}")
    };
    assert_eq!(outstanding.balances.len(), 1);
    assert_eq!(outstanding.balances[0].amount, "4.50");
    assert_eq!(outstanding.balances[0].count, 5);
}
