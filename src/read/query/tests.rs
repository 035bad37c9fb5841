use super::*;
use proptest::prelude::*;

fn parse(params: &[(&str, &str)]) -> Result<(LedgerQuery, PageParams), QueryError> {
    LedgerQuery::parse("t", params.iter().copied())
}

#[test]
fn parses_every_filter() {
    let parsed = parse(&[
        ("customer", "c-1"),
        ("entry_type", "referral_accrual"),
        ("program", "invite"),
        ("branch", "downtown"),
        ("account", "cashback"),
        ("from", "2026-11-01T00:00:00Z"),
        ("to", "2026-12-01T00:00:00+04:00"),
        ("limit", "5"),
    ]);
    let Ok((q, page)) = parsed else { panic!("{parsed:?}") };
    assert_eq!(q.customer.as_deref(), Some("c-1"));
    assert_eq!(q.entry_type, ["referral_accrual"]);
    assert_eq!(q.from_ms, Some(1_793_491_200_000));
    assert_eq!(q.to_ms, Some(1_796_083_200_000 - 4 * 3_600_000));
    assert_eq!(page.limit, 5);
}

#[test]
fn filters_take_lists_and_a_plus_that_became_a_space() {
    let parsed = parse(&[
        ("entry_type", "accrual,reversal"),
        ("branch", "downtown"),
        // `+04:00` sent unescaped: the query string decoded it as a space.
        ("from", "2026-11-01T00:00:00 04:00"),
    ]);
    let Ok((q, _)) = parsed else { panic!("{parsed:?}") };
    assert_eq!(q.entry_type, ["accrual", "reversal"]);
    assert_eq!(q.from_ms, Some(1_793_491_200_000 - 4 * 3_600_000));
    let mut e = entry(None, None);
    e.header.tenant = "t".into();
    for (entry_type, kept) in [("accrual", true), ("reversal", true), ("redemption", false)] {
        e.entry_type = entry_type.into();
        assert_eq!(q.matches(&e, q.from_ms.unwrap_or_default()), kept, "{entry_type}");
    }
    assert!(parse(&[("entry_type", "accrual,,reversal")]).is_err(), "an empty item");
    let pairs = split_query(Some("from=2026-11-01T00:00:00+04:00"));
    let Ok(pairs) = pairs else { panic!("{pairs:?}") };
    let got = parse(&[("from", pairs[0].1.as_str())]).map(|(q, _)| q.from_ms);
    assert_eq!(got, Ok(Some(1_793_491_200_000 - 4 * 3_600_000)));
}

#[test]
fn a_partner_visit_is_in_the_report_of_its_place_only() {
    let mut e = entry(None, None);
    e.header.tenant = "cafe".into();
    e.program = "partner:bistro".into();
    let query = |tenant: &str| LedgerQuery {
        tenant: tenant.into(),
        ..LedgerQuery::default()
    };
    assert!(query("bistro").matches(&e, 0));
    assert!(query("cafe").matches(&e, 0), "and in its own tenant's");
    assert!(!query("studio").matches(&e, 0));
    e.program = "partner:studio".into();
    assert!(!query("bistro").matches(&e, 0));
}

#[test]
fn bad_parameters_are_named() {
    for (params, name) in [
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "1001")], "limit"),
        (vec![("from", "yesterday")], "from"),
        (
            vec![("from", "2026-11-02T00:00:00Z"), ("to", "2026-11-01T00:00:00Z")],
            "to",
        ),
        (vec![("colour", "red")], "colour"),
        (vec![("branch", "a"), ("branch", "b")], "branch"),
        (vec![("cursor", "!!")], "cursor"),
        (vec![("customer", "")], "customer"),
        (
            vec![
                ("cursor", Cursor::Time { ms: 1, p: 0, seq: 0 }.encode().leak() as &str),
                ("customer", "c"),
            ],
            "cursor",
        ),
    ] {
        match parse(&params) {
            Err(err) => assert_eq!(err.name, name, "{params:?}: {err}"),
            Ok(ok) => panic!("{params:?} was accepted: {ok:?}"),
        }
    }
}

#[test]
fn query_strings_are_percent_decoded() {
    let pairs = split_query(Some(
        "branch=down%20town&program=a+b&to=2026-11-01T00%3A00%3A00%2B04%3A00",
    ));
    assert_eq!(
        pairs,
        Ok(vec![
            ("branch".into(), "down town".into()),
            ("program".into(), "a b".into()),
            ("to".into(), "2026-11-01T00:00:00+04:00".into())
        ])
    );
    assert!(split_query(Some("branch=%ZZ")).is_err());
    assert!(split_query(Some("branch=%ff")).is_err());
}

#[test]
fn csv_fields_are_quoted_and_formulas_defused() {
    let mut out = Vec::new();
    csv_field("plain", true, &mut out);
    out.push(b'|');
    csv_field("a,\"b\"\nc", true, &mut out);
    out.push(b'|');
    csv_field("=HYPERLINK(1)", true, &mut out);
    out.push(b'|');
    csv_field("-4.00", false, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "plain|\"a,\"\"b\"\"\nc\"|\"'=HYPERLINK(1)\"|-4.00"
    );
}

fn entry(description: Option<&str>, operator: Option<&str>) -> AccrualEvent {
    let text = serde_json::json!({
        "id": "3-7", "type": "accrual.recorded", "schema_version": 1, "tenant": "cafe",
        "customer": "c-1", "branch": "downtown", "source_event_id": "e-1",
        "source": {"topic": "commands", "partition": 3, "offset": 7},
        "occurred_at": "2026-11-23T12:00:00Z", "account": "bonus",
        "entry_type": "manual_adjustment", "program": "manual", "amount": "-5",
        "balance": "10", "base_amount": "", "currency": "AZN",
        "description": description, "operator": operator,
    });
    match serde_json::from_value(text) {
        Ok(entry) => entry,
        Err(err) => panic!("fixture entry: {err}"),
    }
}

#[test]
fn csv_rows_end_with_description_and_operator() {
    let columns = CSV_HEADER.trim_end().split(',').count();
    let mut out = Vec::new();
    csv_row(&entry(Some("Correction"), Some("=anna")), &mut out);
    csv_row(&entry(None, None), &mut out);
    let text = String::from_utf8_lossy(&out);
    let rows: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(
        rows,
        [
            "3-7,2026-11-23T12:00:00Z,cafe,c-1,downtown,bonus,manual_adjustment,manual,-5,10,,AZN,e-1,Correction,\"'=anna\"",
            "3-7,2026-11-23T12:00:00Z,cafe,c-1,downtown,bonus,manual_adjustment,manual,-5,10,,AZN,e-1,,",
        ]
    );
    assert!(CSV_HEADER.trim_end().ends_with(",description,operator"));
    assert_eq!(rows[1].split(',').count(), columns, "one field per column");
}

#[test]
fn ledger_entries_written_before_the_operator_field_still_read() {
    let mut old = serde_json::to_value(entry(Some("d"), None)).unwrap_or_default();
    assert!(old.get("operator").is_none(), "absent, not null, when there is none");
    if let Some(map) = old.as_object_mut() {
        map.remove("description");
    }
    let read: Result<AccrualEvent, _> = serde_json::from_value(old);
    assert!(
        matches!(&read, Ok(e) if e.operator.is_none() && e.description.is_none()),
        "{read:?}"
    );
    let with = serde_json::to_value(entry(None, Some("anna"))).unwrap_or_default();
    assert_eq!(with["operator"], "anna");
}

proptest! {
    #[test]
    fn cursors_round_trip(ms in 0i64..i64::MAX, p in any::<u32>(), seq in any::<u64>()) {
        for cursor in [Cursor::Customer { p, seq }, Cursor::Time { ms, p, seq }] {
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    #[test]
    fn garbage_is_never_a_cursor_that_panics(text in ".{0,40}") {
        let _ = Cursor::decode(&text);
    }
}
