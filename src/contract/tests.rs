use super::*;
use proptest::prelude::*;

fn order_json(body: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"e-1","type":"order.paid","tenant":"cafe","branch":"downtown",
        "customer":"c-1","occurred_at":"2026-11-23T12:00:00+04:00","body":{body}}}"#
    )
}

const GOOD_BODY: &str = r#"{"order_id":"o-1","sale_type":"dine_in",
    "lines":[{"product":"latte","category":"coffee","quantity":"2","amount":"10.00"},
             {"product":"cake","category":"dessert","quantity":"1","amount":"70.00"}],
    "payments":[{"method":"card","amount":"50.00"},{"method":"cash","amount":"30.00"}],
    "total":"80.00","currency":"AZN"}"#;

fn kind_of(json: &str) -> Option<ErrorKind> {
    decode(json.as_bytes()).err().map(|e| e.kind)
}

#[test]
fn decodes_a_valid_order() {
    let event = decode(order_json(GOOD_BODY).as_bytes());
    let Ok(event) = event else {
        panic!("valid order refused: {event:?}");
    };
    assert_eq!(event.event_type(), EventType::OrderPaid);
    assert_eq!(event.tenant, "cafe");
    let Body::OrderPaid(order) = &event.body else {
        panic!("not an order")
    };
    assert_eq!(order.total.value(), Decimal::new(8000, 2));
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.payments[1].method, "cash");
}

#[test]
fn ignores_unknown_fields_for_forward_compatibility() {
    let body = GOOD_BODY.replacen("\"order_id\"", "\"future_field\":{\"x\":1},\"order_id\"", 1);
    assert!(decode(order_json(&body).as_bytes()).is_ok());
}

#[test]
fn refuses_bytes_that_are_not_utf8_as_malformed_json() {
    // A Latin-1 "é" inside a product name: valid JSON structure, invalid UTF-8.
    let mut bytes = order_json(GOOD_BODY).into_bytes();
    let at = bytes.windows(5).position(|w| w == b"latte").unwrap_or(0);
    bytes[at + 4] = 0xE9;
    let err = decode(&bytes).err();
    assert_eq!(err.as_ref().map(|e| e.kind), Some(ErrorKind::MalformedJson), "{err:?}");
    assert!(err.is_some_and(|e| e.reason.contains("UTF-8")));
}

#[test]
fn classifies_every_kind_of_bad_input() {
    let cases: Vec<(String, ErrorKind)> = vec![
        ("{not json".into(), ErrorKind::MalformedJson),
        ("[1,2]".into(), ErrorKind::MalformedJson),
        ("".into(), ErrorKind::MalformedJson),
        (
            order_json(GOOD_BODY).replace("\"customer\":\"c-1\",", ""),
            ErrorKind::MissingField,
        ),
        (
            order_json(&GOOD_BODY.replace("\"total\":\"80.00\",", "")),
            ErrorKind::MissingField,
        ),
        (
            order_json(GOOD_BODY).replace("2026-11-23T12:00:00+04:00", "yesterday"),
            ErrorKind::InvalidField,
        ),
        (
            order_json(GOOD_BODY).replace("\"schema_version\":1", "\"schema_version\":2"),
            ErrorKind::UnsupportedSchemaVersion,
        ),
        (
            order_json(GOOD_BODY).replace("order.paid", "order.teleported"),
            ErrorKind::UnknownType,
        ),
        (
            order_json(&GOOD_BODY.replace("\"10.00\"", "\"10,00\"")),
            ErrorKind::InvalidAmount,
        ),
        (
            order_json(&GOOD_BODY.replace("\"10.00\"", "10.00")),
            ErrorKind::InvalidAmount,
        ),
        (
            order_json(&GOOD_BODY.replace("\"10.00\"", "\"ten\"")),
            ErrorKind::InvalidAmount,
        ),
        (
            order_json(
                &GOOD_BODY
                    .replace("\"10.00\"", "\"-10.00\"")
                    .replace("\"70.00\"", "\"90.00\""),
            ),
            ErrorKind::NegativeAmount,
        ),
        (
            order_json(&GOOD_BODY.replace("\"quantity\":\"2\"", "\"quantity\":\"0\"")),
            ErrorKind::NegativeAmount,
        ),
        (
            order_json(&GOOD_BODY.replace("\"50.00\"", "\"55.00\"")),
            ErrorKind::Unbalanced,
        ),
        (
            order_json(&GOOD_BODY.replace("\"70.00\"", "\"71.00\"")),
            ErrorKind::Unbalanced,
        ),
        (
            order_json(&GOOD_BODY.replace("\"AZN\"", "\"azn\"")),
            ErrorKind::BadCurrency,
        ),
        (
            order_json(GOOD_BODY).replace("\"c-1\"", "\"a:b\""),
            ErrorKind::InvalidField,
        ),
        (
            order_json(GOOD_BODY).replace("\"c-1\"", "\"\""),
            ErrorKind::InvalidField,
        ),
        (order_json(GOOD_BODY).replace("\"c-1\"", "42"), ErrorKind::InvalidField),
    ];
    for (json, expected) in cases {
        let got = decode(json.as_bytes());
        assert_eq!(
            got.as_ref().err().map(|e| e.kind),
            Some(expected),
            "input: {json}\ngot: {got:?}"
        );
    }
}

fn event_json(event_type: &str, body: &str) -> String {
    order_json(body).replace("order.paid", event_type)
}

#[test]
fn values_beyond_the_contract_limits_are_out_of_range() {
    let line = r#"{"product":"p","category":"c","quantity":"1","amount":"0"}"#;
    let many_lines = GOOD_BODY.replace(
        r#""lines":["#,
        &format!(r#""lines":[{}"#, format!("{line},").repeat(limits::MAX_LINES)),
    );
    let payment = r#"{"method":"card","amount":"0"},"#;
    let many_payments = GOOD_BODY.replace(
        r#""payments":["#,
        &format!(r#""payments":[{}"#, payment.repeat(limits::MAX_PAYMENTS)),
    );
    let huge = "1000000000000.01";
    let huge_order = GOOD_BODY
        .replace("\"10.00\"", &format!("\"{huge}\""))
        .replace("\"50.00\"", &format!("\"{huge}\""))
        .replace("\"70.00\"", "\"70\"")
        .replace("\"30.00\"", "\"70\"")
        .replace("\"80.00\"", "\"1000000000070.01\"");
    let long_id = "x".repeat(limits::MAX_ID_LEN + 1);
    let groups = format!(r#"["{}"]"#, vec!["g"; limits::MAX_GROUPS + 1].join(r#"",""#));
    let cases: Vec<String> = vec![
        order_json(&many_lines),
        order_json(&many_payments),
        order_json(&huge_order),
        order_json(&GOOD_BODY.replace("\"quantity\":\"2\"", "\"quantity\":\"1000000000001\"")),
        order_json(GOOD_BODY).replace("\"c-1\"", &format!("\"{long_id}\"")),
        order_json(GOOD_BODY).replace("2026-11-23T12:00:00+04:00", "1999-12-31T23:59:59Z"),
        order_json(GOOD_BODY).replace("2026-11-23T12:00:00+04:00", "2000-01-01T00:30:00+01:00"),
        order_json(GOOD_BODY).replace("2026-11-23T12:00:00+04:00", "2100-01-01T00:00:00Z"),
        order_json(GOOD_BODY).replace("2026-11-23T12:00:00+04:00", "9999-12-31T23:59:59Z"),
        event_json(
            "order.refunded",
            r#"{"refund_id":"r","original_event_id":"e","amount":"79228162514264337593543950335","currency":"AZN"}"#,
        ),
        event_json(
            "balance.adjust",
            r#"{"account":"bonus","amount":"-1000000000000.5","description":"x"}"#,
        ),
        event_json(
            "balance.adjust",
            &format!(
                r#"{{"account":"bonus","amount":"1","description":"{}"}}"#,
                "d".repeat(501)
            ),
        ),
        event_json(
            "customer.upserted",
            &format!(r#"{{"registered":true,"marketing_consent":false,"groups":{groups}}}"#),
        ),
        event_json(
            "booking.created",
            r#"{"booking_id":"b","service":"s","starts_at":"9999-12-31T22:00:00Z","ends_at":"9999-12-31T23:59:59Z"}"#,
        ),
        event_json(
            "booking.rescheduled",
            r#"{"booking_id":"b","starts_at":"0001-01-01T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"}"#,
        ),
    ];
    for json in cases {
        let got = decode(json.as_bytes());
        assert_eq!(
            got.as_ref().err().map(|e| e.kind),
            Some(ErrorKind::OutOfRange),
            "input: {}\ngot: {got:?}",
            json.get(..400).unwrap_or(&json)
        );
    }
    // The limits themselves are accepted.
    let at_limit = GOOD_BODY
        .replace("\"10.00\"", "\"1000000000000\"")
        .replace("\"70.00\"", "\"0\"")
        .replace("\"50.00\"", "\"1000000000000.00\"")
        .replace("\"30.00\"", "\"0\"")
        .replace("\"80.00\"", "\"1000000000000\"");
    let ok = order_json(&at_limit).replace("2026-11-23T12:00:00+04:00", "2099-12-31T23:59:59.999999999Z");
    assert!(decode(ok.as_bytes()).is_ok(), "{:?}", decode(ok.as_bytes()));
    let negative_zero = GOOD_BODY.replace("\"quantity\":\"1\"", "\"quantity\":\"-0.00\"");
    assert_eq!(kind_of(&order_json(&negative_zero)), Some(ErrorKind::NegativeAmount));
}

#[test]
fn missing_field_reason_names_the_field() {
    let json = order_json(&GOOD_BODY.replace("\"total\":\"80.00\",", ""));
    let err = decode(json.as_bytes()).err();
    assert_eq!(err.map(|e| e.reason), Some("missing field body.total".to_owned()));
    let json = order_json(GOOD_BODY).replace("\"customer\":\"c-1\",", "");
    assert_eq!(kind_of(&json), Some(ErrorKind::MissingField));
}

#[test]
fn invalid_amount_reason_names_the_path() {
    let json = order_json(&GOOD_BODY.replace("\"10.00\"", "\"10,00\""));
    let reason = decode(json.as_bytes()).err().map(|e| e.reason).unwrap_or_default();
    assert!(reason.starts_with("body.lines[0].amount"), "{reason}");
}

#[test]
fn key_must_be_tenant_and_customer() {
    let Ok(event) = decode(order_json(GOOD_BODY).as_bytes()) else {
        panic!("fixture must decode");
    };
    assert!(check_key(Some(b"cafe:c-1"), &event).is_ok());
    for bad in [&b"cafe:c-2"[..], b"other:c-1", b"cafe", b"cafe:c-1:x", b"cafec-1!"] {
        assert_eq!(
            check_key(Some(bad), &event).err().map(|e| e.kind),
            Some(ErrorKind::KeyMismatch)
        );
    }
    assert_eq!(
        check_key(None, &event).err().map(|e| e.kind),
        Some(ErrorKind::KeyMismatch)
    );
}

#[test]
fn error_kind_names_are_unique() {
    let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ErrorKind::ALL.len());
}

fn cents() -> impl Strategy<Value = i64> {
    0i64..10_000_000
}

proptest! {
    /// Any well-formed order survives encode -> decode unchanged, and its
    /// amounts keep their exact decimal value.
    #[test]
    fn orders_round_trip(amounts in proptest::collection::vec(cents(), 1..8), split in 0usize..8) {
        let lines: Vec<OrderLine> = amounts
            .iter()
            .enumerate()
            .map(|(i, c)| OrderLine {
                product: format!("p{i}"),
                category: "food".into(),
                quantity: Amount::new(Decimal::ONE),
                amount: Amount::new(Decimal::new(*c, 2)),
            })
            .collect();
        let total: Decimal = lines.iter().map(|l| l.amount.value()).sum();
        let first = lines.iter().take(split).map(|l| l.amount.value()).sum::<Decimal>();
        let payments = vec![
            Payment { method: "card".into(), amount: Amount::new(first), account: None },
            Payment { method: "cash".into(), amount: Amount::new(total - first), account: None },
        ];
        let order = OrderPaid {
            order_id: "o".into(),
            sale_type: "delivery".into(),
            lines,
            payments,
            total: Amount::new(total),
            currency: "AZN".into(),
            referrer_phone: None,
            partner: None,
            authorization_id: None,
        };
        let body = serde_json::to_string(&order).unwrap_or_default();
        let decoded = decode(order_json(&body).as_bytes());
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        if let Ok(event) = decoded {
            let Body::OrderPaid(back) = event.body else { panic!("not an order") };
            prop_assert_eq!(back, order);
        }
    }

    /// Arbitrary bytes never panic the decoder; they get a classified error.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }
}
