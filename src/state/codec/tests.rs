//! Every format version decodes (fixtures under `tests/fixtures/state/`),
//! and version 1 round-trips every value exactly.

use proptest::prelude::*;
use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::*;
use crate::contract::{AccrualEvent, Amount, Birthday, OutputHeader, SourceRef};
use crate::rules::{Booking, BookingState, Customer, Movement, OrderRecord};
use crate::state::keys;

const LEDGER_V0: &[u8] = include_bytes!("../../../tests/fixtures/state/ledger-v0.json");
const LEDGER_V1: &[u8] = include_bytes!("../../../tests/fixtures/state/ledger-v1.bin");
const ORDER_V0: &[u8] = include_bytes!("../../../tests/fixtures/state/order-v0.json");
const ORDER_V1: &[u8] = include_bytes!("../../../tests/fixtures/state/order-v1.bin");
const BOOKING_V0: &[u8] = include_bytes!("../../../tests/fixtures/state/booking-v0.json");
const BOOKING_V1: &[u8] = include_bytes!("../../../tests/fixtures/state/booking-v1.bin");
const CUSTOMER_V0: &[u8] = include_bytes!("../../../tests/fixtures/state/customer-v0.json");
const CUSTOMER_V1: &[u8] = include_bytes!("../../../tests/fixtures/state/customer-v1.bin");

fn d(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn fixture_source() -> SourceRef {
    SourceRef {
        topic: "replay".into(),
        partition: 0,
        offset: 2,
    }
}

/// The entry of the fixtures: a manual adjustment with a description and
/// an operator, as accrue wrote it in JSON before version 1.
fn fixture_accrual() -> AccrualEvent {
    AccrualEvent {
        header: OutputHeader {
            id: "0-3".into(),
            event_type: AccrualEvent::TYPE.into(),
            schema_version: 1,
            tenant: "studio-flow".into(),
            customer: "stu-fix".into(),
            branch: "main".into(),
            source_event_id: "fix-a1".into(),
            source: fixture_source(),
            occurred_at: "2026-11-01T08:02:00.123456789Z".into(),
        },
        account: "service_points".into(),
        entry_type: "manual_adjustment".into(),
        program: "manual".into(),
        amount: "3".into(),
        balance: "3".into(),
        base_amount: String::new(),
        currency: "EUR".into(),
        description: Some("Goodwill \"points\"".into()),
        operator: Some("desk-1".into()),
    }
}

fn fixture_ledger_entry(source: &SourceRef) -> LedgerEntry<'_> {
    let at = OffsetDateTime::parse("2026-11-01T08:02:00.123456789Z", &Rfc3339);
    let Ok(at) = at else { panic!("{at:?}") };
    LedgerEntry {
        schema_version: 1,
        branch: "main",
        source_event_id: "fix-a1",
        source,
        occurred: Occurred::At(at),
        account: "service_points",
        entry_type: "manual_adjustment",
        program: "manual",
        amount: d("3"),
        balance: d("3"),
        base_amount: None,
        currency: "EUR",
        description: Some("Goodwill \"points\""),
        operator: Some("desk-1"),
    }
}

fn fixture_order() -> OrderRecord {
    OrderRecord {
        total: d("40.10"),
        refunded: d("0"),
        accruals: vec![Movement {
            account: "cashback".into(),
            program: "cashback".into(),
            amount: d("1.20"),
            reversed: d("0"),
            expired: d("0"),
        }],
        redemptions: Vec::new(),
    }
}

fn fixture_booking() -> Booking {
    Booking {
        customer: "stu-fix".into(),
        branch: "main".into(),
        service: "yoga-class".into(),
        points: d("10"),
        due_ms: Some(1_793_597_587_000),
        state: BookingState::Scheduled,
        event_id: "fix-b1".into(),
        source_topic: "replay".into(),
        source_offset: 3,
    }
}

fn hold() -> crate::programs::Hold {
    crate::programs::Hold {
        id: "au_1".into(),
        order_id: "o-1".into(),
        amounts: vec![("bonus".into(), d("120"))],
        created_ms: 1_793_597_587_000,
        expires_ms: 1_793_598_487_000,
    }
}

fn fixture_customer() -> Customer {
    Customer {
        phone: Some("+10000000001".into()),
        groups: ["morning".to_owned(), "yoga".to_owned()].into_iter().collect(),
        registered: true,
        marketing_consent: true,
        discount_percent: Some(Amount::new(d("5.5"))),
        accrual_percent: None,
        visited: true,
        referred_by: None,
        birthday: None,
        birthday_bonus_year: None,
        welcomed: false,
        holds: Vec::new(),
    }
}

#[test]
fn every_version_of_a_ledger_entry_decodes_to_the_same_event() {
    let key = keys::ledger(0, "studio-flow", "stu-fix", 3);
    for (version, value) in [(0, LEDGER_V0), (1, LEDGER_V1)] {
        let decoded = decode_ledger(&key, value);
        assert_eq!(decoded.ok(), Some(fixture_accrual()), "version {version}");
    }
    // Version 0 rendered again is the JSON accrue published for it.
    let json = decode_ledger(&key, LEDGER_V0)
        .ok()
        .and_then(|e| serde_json::to_vec(&e).ok());
    assert_eq!(json.as_deref(), Some(LEDGER_V0));
    let json = decode_ledger(&key, LEDGER_V1)
        .ok()
        .and_then(|e| serde_json::to_vec(&e).ok());
    assert_eq!(json.as_deref(), Some(LEDGER_V0), "version 1 renders the same bytes");
}

#[test]
fn every_version_of_the_records_decodes() {
    assert_eq!(OrderRecord::decode(ORDER_V0).ok(), Some(fixture_order()));
    assert_eq!(OrderRecord::decode(ORDER_V1).ok(), Some(fixture_order()));
    assert_eq!(Booking::decode(BOOKING_V0).ok(), Some(fixture_booking()));
    assert_eq!(Booking::decode(BOOKING_V1).ok(), Some(fixture_booking()));
    assert_eq!(Customer::decode(CUSTOMER_V0).ok(), Some(fixture_customer()));
    assert_eq!(Customer::decode(CUSTOMER_V1).ok(), Some(fixture_customer()));
}

/// The version 1 fixtures are what this build writes: a change of layout
/// fails here and must take a new version number (and keep this decoder).
#[test]
fn version_1_layout_is_stable() {
    let source = fixture_source();
    assert_eq!(fixture_ledger_entry(&source).encode(), LEDGER_V1);
    assert_eq!(fixture_order().encode(), ORDER_V1);
    assert_eq!(fixture_booking().encode(), BOOKING_V1);
    assert_eq!(fixture_customer().encode(), CUSTOMER_V1);
    for v1 in [LEDGER_V1, ORDER_V1, BOOKING_V1, CUSTOMER_V1] {
        assert_eq!(v1.first(), Some(&VERSION));
    }
    // Money as minor units with its scale: 40.10 is scale 2, 4010.
    assert_eq!(ORDER_V1.get(1..4), Some(&[2u8, 0xAA, 0x1F][..]));
}

#[test]
fn unknown_versions_and_damage_are_errors() {
    let key = keys::ledger(0, "t", "c", 1);
    assert!(matches!(
        decode_ledger(&key, &[7, 1]),
        Err(CodecError::UnknownVersion(7))
    ));
    assert!(matches!(decode_ledger(&key, &[]), Err(CodecError::Empty)));
    assert!(matches!(OrderRecord::decode(b"{\"total\":"), Err(CodecError::Json(_))));
    // A byte after the last field starts the section of what expired,
    // which then ends early; after that section a byte is trailing.
    let mut long = ORDER_V1.to_vec();
    long.push(0);
    assert!(matches!(OrderRecord::decode(&long), Err(CodecError::Truncated)));
    let mut expired = fixture_order();
    for m in &mut expired.accruals {
        m.expired = Decimal::ONE;
    }
    let mut long = expired.encode();
    assert_eq!(OrderRecord::decode(&long).ok(), Some(expired));
    long.push(0);
    assert!(matches!(OrderRecord::decode(&long), Err(CodecError::Trailing(1))));
    // A version 1 entry needs its key: the id and customer come from it.
    assert!(matches!(
        decode_ledger(b"short", LEDGER_V1),
        Err(CodecError::Invalid(_))
    ));
    for cut in 1..LEDGER_V1.len() {
        let key = keys::ledger(0, "studio-flow", "stu-fix", 3);
        assert!(decode_ledger(&key, &LEDGER_V1[..cut]).is_err(), "cut at {cut}");
    }
    for cut in 1..CUSTOMER_V1.len() {
        assert!(Customer::decode(&CUSTOMER_V1[..cut]).is_err(), "cut at {cut}");
    }
}

/// Any `rust_decimal` value, negative zero and every scale included.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    (any::<[u8; 12]>(), any::<bool>(), 0u32..=28).prop_map(|(m, negative, scale)| {
        let flags = (scale << 16) | (u32::from(negative) << 31);
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&flags.to_le_bytes());
        raw[4..].copy_from_slice(&m);
        Decimal::deserialize(raw)
    })
}

/// Amounts as the rules produce them: up to 15 digits at up to 6 places.
fn rule_amount() -> impl Strategy<Value = Decimal> {
    (-999_999_999_999_999i64..=999_999_999_999_999, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
}

/// A time, and its RFC 3339 text as the pipeline renders `occurred_at`
/// (empty when it cannot be rendered: an offset with seconds).
fn any_time() -> impl Strategy<Value = (OffsetDateTime, String)> {
    (
        0i64..253_402_300_799,
        0u32..1_000_000_000,
        -86_399i32..=86_399,
        any::<bool>(),
    )
        .prop_filter_map("representable", |(secs, nanos, offset, whole_minutes)| {
            let offset = if whole_minutes { offset / 60 * 60 } else { offset };
            let at = OffsetDateTime::from_unix_timestamp(secs)
                .ok()?
                .replace_nanosecond(nanos)
                .ok()?
                .checked_to_offset(UtcOffset::from_whole_seconds(offset).ok()?)?;
            Some((at, at.format(&Rfc3339).unwrap_or_default()))
        })
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

/// How the pipeline rendered a money field in JSON before version 1.
fn rendered_before(value: Decimal, scale: u32) -> String {
    let mut v = value;
    v.rescale(scale);
    v.to_string()
}

proptest! {
    #[test]
    fn decimals_round_trip_bit_for_bit(value in any_decimal()) {
        let mut w = Writer::new(20);
        w.decimal(value);
        let bytes = w.finish();
        let mut r = Reader::v1(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = r.decimal("value").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.serialize(), value.serialize());
        prop_assert!(r.end().is_ok());
    }

    #[test]
    fn integers_round_trip(u in any::<u128>(), i in any::<i64>()) {
        let mut w = Writer::new(32);
        w.uint(u);
        w.int(i);
        let bytes = w.finish();
        let mut r = Reader::v1(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.uint("u").ok(), Some(u));
        prop_assert_eq!(r.int("i").ok(), Some(i));
        prop_assert!(r.end().is_ok());
    }

    /// A ledger entry decodes to the event the pipeline built and stored
    /// as JSON before: same text for every amount (rescaled as before),
    /// time, option and id, hence the same JSON bytes on the topic.
    #[test]
    fn ledger_entries_render_what_was_stored_before(
        (p, seq) in (any::<u32>(), any::<u64>()),
        (tenant, customer, branch, event_id, topic) in (id(), id(), id(), id(), id()),
        (source_offset, schema_version) in (any::<i64>(), any::<u32>()),
        (occurred, occurred_at) in any_time(),
        (account, entry_type, program) in (id(), id(), id()),
        (amount, balance, base) in (rule_amount(), rule_amount(), proptest::option::of(any_decimal())),
        (scale, minor_units) in (0u32..=4, 0u32..=4),
        currency in "[A-Z]{3}",
        (description, operator) in (proptest::option::of(text()), proptest::option::of(text())),
    ) {
        let source = SourceRef { topic, partition: p, offset: source_offset };
        let entry = LedgerEntry {
            schema_version,
            branch: &branch,
            source_event_id: &event_id,
            source: &source,
            occurred: if occurred_at.is_empty() { Occurred::Text("") } else { Occurred::At(occurred) },
            account: &account,
            entry_type: &entry_type,
            program: &program,
            amount: at_scale(amount, scale),
            balance: at_scale(balance, scale),
            base_amount: base.map(|b| at_scale(b, minor_units)),
            currency: &currency,
            description: description.as_deref(),
            operator: operator.as_deref(),
        };
        let before = AccrualEvent {
            header: OutputHeader {
                id: crate::contract::output_id(p, seq),
                event_type: AccrualEvent::TYPE.into(),
                schema_version,
                tenant: tenant.clone(),
                customer: customer.clone(),
                branch: branch.clone(),
                source_event_id: event_id.clone(),
                source: source.clone(),
                occurred_at: occurred_at.clone(),
            },
            account: account.clone(),
            entry_type: entry_type.clone(),
            program: program.clone(),
            amount: rendered_before(amount, scale),
            balance: rendered_before(balance, scale),
            base_amount: base.map(|b| rendered_before(b, minor_units)).unwrap_or_default(),
            currency: currency.clone(),
            description: description.clone(),
            operator: operator.clone(),
        };
        let key = keys::ledger(p, &tenant, &customer, seq);
        let decoded = decode_ledger(&key, &entry.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(serde_json::to_vec(&decoded).ok(), serde_json::to_vec(&before).ok());
        prop_assert_eq!(decoded, before.clone());
        // The JSON of before still decodes (version 0).
        let json = serde_json::to_vec(&before).unwrap_or_default();
        prop_assert_eq!(decode_ledger(&key, &json).ok(), Some(before));
    }

    #[test]
    fn order_records_round_trip_in_both_versions(
        total in any_decimal(),
        refunded in any_decimal(),
        moves in proptest::collection::vec((id(), id(), any_decimal(), any_decimal(), any::<bool>()), 0..6),
    ) {
        let (mut accruals, mut redemptions) = (Vec::new(), Vec::new());
        for (account, program, amount, reversed, redeemed) in moves {
            let m = Movement { account: account.into(), program: program.into(), amount, reversed, expired: Decimal::ZERO };
            if redeemed { redemptions.push(m) } else { accruals.push(m) }
        }
        let order = OrderRecord { total, refunded, accruals, redemptions };
        let back = OrderRecord::decode(&order.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.total.serialize(), order.total.serialize());
        prop_assert_eq!(&back, &order);
        let json = serde_json::to_vec(&order).unwrap_or_default();
        prop_assert_eq!(OrderRecord::decode(&json).ok(), Some(order));
    }

    #[test]
    fn bookings_round_trip_in_both_versions(
        (customer, branch, service, event_id, topic) in (id(), id(), id(), id(), id()),
        points in rule_amount(),
        due_ms in proptest::option::of(any::<i64>()),
        state in 0u8..4,
        source_offset in any::<i64>(),
    ) {
        let booking = Booking {
            customer,
            branch,
            service,
            points,
            due_ms,
            state: records_state(state),
            event_id,
            source_topic: topic,
            source_offset,
        };
        prop_assert_eq!(Booking::decode(&booking.encode()).ok(), Some(booking.clone()));
        let json = serde_json::to_vec(&booking).unwrap_or_default();
        prop_assert_eq!(Booking::decode(&json).ok(), Some(booking));
    }

    #[test]
    fn profiles_round_trip_in_both_versions(
        phone in proptest::option::of("[+0-9]{3,15}"),
        groups in proptest::collection::btree_set(text(), 0..5),
        (registered, marketing_consent, visited) in (any::<bool>(), any::<bool>(), any::<bool>()),
        discount in proptest::option::of(rule_amount()),
        accrual in proptest::option::of(rule_amount()),
        referred_by in proptest::option::of(id()),
        birthday in proptest::option::of((proptest::option::of(1900u16..2030), 1u8..=12, 1u8..=28)),
        (birthday_bonus_year, welcomed, with_hold) in (proptest::option::of(2000i16..2100), any::<bool>(), any::<bool>()),
    ) {
        let profile = Customer {
            phone,
            groups: groups.into_iter().collect(),
            registered,
            marketing_consent,
            discount_percent: discount.map(Amount::new),
            accrual_percent: accrual.map(Amount::new),
            visited,
            referred_by,
            birthday: birthday.and_then(|(year, month, day)| Birthday::new(year, month, day)),
            birthday_bonus_year,
            welcomed,
            holds: if with_hold { vec![hold()] } else { Vec::new() },
        };
        prop_assert_eq!(Customer::decode(&profile.encode()).ok(), Some(profile.clone()));
        // Holds are never JSON (version 0 predates them).
        let profile = Customer { holds: Vec::new(), ..profile };
        let json = serde_json::to_vec(&profile).unwrap_or_default();
        prop_assert_eq!(Customer::decode(&json).ok(), Some(profile));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut v1 = vec![VERSION];
        v1.extend_from_slice(&tail);
        for value in [&bytes, &v1] {
            let _ = decode_ledger(&keys::ledger(1, "t", "c", 2), value);
            let _ = OrderRecord::decode(value);
            let _ = Booking::decode(value);
            let _ = Customer::decode(value);
        }
    }
}

fn records_state(tag: u8) -> BookingState {
    match tag {
        0 => BookingState::Scheduled,
        1 => BookingState::Credited,
        2 => BookingState::Cancelled,
        _ => BookingState::NoShow,
    }
}
