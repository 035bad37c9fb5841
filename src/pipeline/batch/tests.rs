use super::*;
use crate::state::MemoryStore;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
[branches.airport]
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "5"
branches = { downtown = "active" }
"#;

/// A memory store and a processor over the tenant `cafe` (also used by
/// the sibling test modules).
pub(super) fn setup() -> (Arc<MemoryStore>, Processor) {
    let tenant: TenantConfig = match toml::from_str(TENANT) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    };
    let store = Arc::new(MemoryStore::default());
    let tenants = Arc::new(Tenants::from([("cafe".to_owned(), tenant)]));
    let processor = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
    (store, processor)
}

fn order(event_id: &str, customer: &str, total: &str, branch: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{event_id}","type":"order.paid","tenant":"cafe","branch":"{branch}",
        "customer":"{customer}","occurred_at":"2026-11-23T12:00:00Z","body":{{"order_id":"o","sale_type":"dine_in",
        "lines":[{{"product":"p","category":"food","quantity":"1","amount":"{total}"}}],
        "payments":[{{"method":"card","amount":"{total}"}}],"total":"{total}","currency":"AZN"}}}}"#
    )
}

fn record<'a>(offset: i64, key: &'a str, payload: &'a str) -> InputRecord<'a> {
    InputRecord {
        topic: "orders",
        partition: 3,
        offset,
        key: Some(key.as_bytes()),
        payload: Some(payload.as_bytes()),
    }
}

fn balance(store: &MemoryStore, customer: &str) -> Option<Decimal> {
    store
        .get(Family::Balances, &keys::balance(3, "cafe", customer, "cashback"))
        .ok()
        .flatten()
        .and_then(|raw| keys::decode_decimal(&raw))
}

fn outbox(store: &MemoryStore) -> Vec<(u64, OutboxRecord)> {
    store
        .scan(Family::Outbox, &keys::partition_prefix(3), &keys::outbox(3, 0), 1000)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let seq = keys::parse_outbox(&k)?.1;
            Some((seq, crate::outbox::load(store, 3, seq, &v).ok()?))
        })
        .collect()
}

#[test]
fn seed_example_credits_four_and_writes_everything_in_one_batch() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let payload = order("e1", "c1", "80.00", "downtown");
    let applied = processor.apply(&mut batch, &record(10, "cafe:c1", &payload));
    assert_eq!(applied.ok(), Some(Applied::Processed(1)));
    // Nothing is visible before the commit.
    assert_eq!(balance(&store, "c1"), None);
    let committed = processor.commit(batch);
    let Ok(committed) = committed else {
        panic!("commit failed")
    };
    assert_eq!(committed.durable_seq, vec![(3, 1)]);
    assert_eq!(balance(&store, "c1"), Some(Decimal::new(400, 2)));
    assert_eq!(processor.stored_offset("orders", 3).ok().flatten(), Some(11));
    assert!(store
        .get(Family::Dedupe, &keys::dedupe(3, "cafe", "e1"))
        .ok()
        .flatten()
        .is_some());

    let out = outbox(&store);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.destination, Destination::Accruals);
    assert_eq!(out[0].1.key.as_deref(), Some(&b"cafe:c1"[..]));
    let event: Option<AccrualEvent> = serde_json::from_slice(&out[0].1.payload).ok();
    let Some(event) = event else {
        panic!("accrual payload must be an AccrualEvent")
    };
    assert_eq!(event.header.id, "3-0");
    assert_eq!(event.amount, "4.00");
    assert_eq!(event.balance, "4.00");
    assert_eq!(event.entry_type, "accrual");
    assert_eq!(event.header.source.offset, 10);
    let ledger = store
        .scan(
            Family::Ledger,
            &keys::ledger_prefix(3, "cafe", "c1"),
            &keys::ledger_prefix(3, "cafe", "c1"),
            10,
        )
        .unwrap_or_default();
    assert_eq!(ledger.len(), 1);
}

#[test]
fn duplicate_event_ids_change_nothing_within_and_across_batches() {
    let (store, mut processor) = setup();
    let payload = order("e1", "c1", "80.00", "downtown");
    let mut batch = Batch::default();
    assert_eq!(
        processor.apply(&mut batch, &record(0, "cafe:c1", &payload)).ok(),
        Some(Applied::Processed(1))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(1, "cafe:c1", &payload)).ok(),
        Some(Applied::Duplicate)
    );
    assert!(processor.commit(batch).is_ok());
    let mut batch = Batch::default();
    assert_eq!(
        processor.apply(&mut batch, &record(2, "cafe:c1", &payload)).ok(),
        Some(Applied::Duplicate)
    );
    assert!(processor.commit(batch).is_ok());
    assert_eq!(balance(&store, "c1"), Some(Decimal::new(400, 2)));
    assert_eq!(outbox(&store).len(), 1);
    assert_eq!(processor.stored_offset("orders", 3).ok().flatten(), Some(3));
}

#[test]
fn redelivered_offsets_are_skipped() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let a = order("e1", "c1", "10.00", "downtown");
    let b = order("e2", "c1", "20.00", "downtown");
    assert!(processor.apply(&mut batch, &record(0, "cafe:c1", &a)).is_ok());
    assert!(processor.apply(&mut batch, &record(1, "cafe:c1", &b)).is_ok());
    assert!(processor.commit(batch).is_ok());
    // A restart replays from an older position (e.g. Kafka's advisory offset).
    let tenants = processor.tenants.clone();
    let mut restarted = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
    let mut batch = Batch::default();
    assert_eq!(
        restarted.apply(&mut batch, &record(0, "cafe:c1", &a)).ok(),
        Some(Applied::AlreadyApplied)
    );
    assert_eq!(
        restarted.apply(&mut batch, &record(1, "cafe:c1", &b)).ok(),
        Some(Applied::AlreadyApplied)
    );
    assert!(restarted.commit(batch).is_ok());
    assert_eq!(balance(&store, "c1"), Some(Decimal::new(150, 2)));
}

#[test]
fn a_dropped_batch_leaves_no_trace() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let payload = order("e1", "c1", "80.00", "downtown");
    assert!(processor.apply(&mut batch, &record(0, "cafe:c1", &payload)).is_ok());
    drop(batch);
    assert_eq!(balance(&store, "c1"), None);
    assert!(outbox(&store).is_empty());
    // Re-applying after the drop works as if it never happened.
    let mut batch = Batch::default();
    assert_eq!(
        processor.apply(&mut batch, &record(0, "cafe:c1", &payload)).ok(),
        Some(Applied::Processed(1))
    );
}

#[test]
fn bad_input_is_dead_lettered_with_reason_and_source() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let good = order("e1", "c1", "80.00", "downtown");
    let cases: Vec<(String, &str, ErrorKind)> = vec![
        ("{oops".into(), "cafe:c1", ErrorKind::MalformedJson),
        (
            good.replace("\"cafe\"", "\"nobody\""),
            "nobody:c1",
            ErrorKind::UnknownTenant,
        ),
        (good.clone(), "cafe:c2", ErrorKind::KeyMismatch),
        (good.replace("downtown", "moon"), "cafe:c1", ErrorKind::UnknownBranch),
        (good.replace("AZN", "USD"), "cafe:c1", ErrorKind::BadCurrency),
        (good.replace("80.00", "80.001"), "cafe:c1", ErrorKind::BadCurrency),
        (
            good.replace("\"80.00\"", "\"-80.00\""),
            "cafe:c1",
            ErrorKind::NegativeAmount,
        ),
        (
            good.replace("\"80.00\"", "\"8O.00\""),
            "cafe:c1",
            ErrorKind::InvalidAmount,
        ),
    ];
    for (i, (payload, key, kind)) in cases.iter().enumerate() {
        let applied = processor.apply(&mut batch, &record(i as i64, key, payload));
        assert_eq!(applied.ok(), Some(Applied::DeadLettered(*kind)), "case {i}: {payload}");
    }
    assert!(processor.commit(batch).is_ok());
    assert_eq!(balance(&store, "c1"), None);
    let out = outbox(&store);
    assert_eq!(out.len(), cases.len());
    for ((_, rec), (payload, key, kind)) in out.iter().zip(&cases) {
        assert_eq!(rec.destination, Destination::DeadLetter);
        assert_eq!(rec.payload, payload.as_bytes(), "original bytes are kept");
        assert_eq!(rec.key.as_deref(), Some(key.as_bytes()));
        let header = |name: &str| {
            rec.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header(contract::HEADER_ERROR_KIND).as_deref(), Some(kind.as_str()));
        assert_eq!(header(contract::HEADER_SOURCE_TOPIC).as_deref(), Some("orders"));
        assert_eq!(header(contract::HEADER_SOURCE_PARTITION).as_deref(), Some("3"));
        assert!(header(contract::HEADER_ERROR_REASON).is_some_and(|r| !r.is_empty()));
    }
    // The partition moved on past every bad record.
    assert_eq!(
        processor.stored_offset("orders", 3).ok().flatten(),
        Some(cases.len() as i64)
    );
}

#[test]
fn inactive_branch_consumes_the_event_without_a_ledger_entry() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let payload = order("e1", "c1", "80.00", "airport");
    assert_eq!(
        processor.apply(&mut batch, &record(0, "cafe:c1", &payload)).ok(),
        Some(Applied::Processed(0))
    );
    assert!(processor.commit(batch).is_ok());
    assert_eq!(balance(&store, "c1"), None);
    assert!(outbox(&store).is_empty());
    assert!(store
        .get(Family::Dedupe, &keys::dedupe(3, "cafe", "e1"))
        .ok()
        .flatten()
        .is_some());
}

#[test]
fn sequences_continue_across_batches_and_balances_accumulate() {
    let (store, mut processor) = setup();
    for (i, total) in ["10.00", "20.00", "30.00"].iter().enumerate() {
        let mut batch = Batch::default();
        let payload = order(&format!("e{i}"), "c1", total, "downtown");
        assert!(processor
            .apply(&mut batch, &record(i as i64, "cafe:c1", &payload))
            .is_ok());
        assert!(processor.commit(batch).is_ok());
    }
    let seqs: Vec<u64> = outbox(&store).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(balance(&store, "c1"), Some(Decimal::new(300, 2)));
}

const STUDIO: &str = r#"
id = "studio"
currency = "EUR"
[branches.main]
[bookings]
credit_delay = "3h"
points = { yoga = "10", massage = "25" }
[customers.ann]
registered = true
marketing_consent = true
"#;

const HOUR: i64 = 3_600_000;
/// 2026-11-23T12:00:00Z in Unix milliseconds.
const NOON: i64 = 1_795_435_200_000;

fn studio() -> (Arc<MemoryStore>, Processor) {
    let tenant: TenantConfig = match toml::from_str(STUDIO) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    };
    let store = Arc::new(MemoryStore::default());
    let tenants = Arc::new(Tenants::from([("studio".to_owned(), tenant)]));
    (store.clone(), Processor::new(store, tenants, Arc::from(&b"key"[..])))
}

fn booking_event(event_id: &str, event_type: &str, body: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{event_id}","type":"{event_type}","tenant":"studio","branch":"main",
        "customer":"ann","occurred_at":"2026-11-23T09:00:00Z","body":{body}}}"#
    )
}

fn book(id: &str, service: &str) -> String {
    booking_event(
        &format!("create-{id}"),
        "booking.created",
        &format!(
            r#"{{"booking_id":"{id}","service":"{service}","starts_at":"2026-11-23T11:00:00Z","ends_at":"2026-11-23T12:00:00Z"}}"#
        ),
    )
}

struct Studio {
    store: Arc<MemoryStore>,
    processor: Processor,
    offset: i64,
}

impl Studio {
    fn new() -> Self {
        let (store, processor) = studio();
        Studio {
            store,
            processor,
            offset: 0,
        }
    }

    fn send(&mut self, payload: &str) -> Applied {
        let mut batch = Batch::default();
        let record = InputRecord {
            topic: "bookings",
            partition: 1,
            offset: self.offset,
            key: Some(b"studio:ann"),
            payload: Some(payload.as_bytes()),
        };
        self.offset += 1;
        let applied = self.processor.apply(&mut batch, &record);
        assert!(self.processor.commit(batch).is_ok());
        applied.unwrap_or(Applied::AlreadyApplied)
    }

    /// Fires timers due at `now`, in one committed batch.
    fn fire(&mut self, now: i64) -> usize {
        let mut batch = Batch::default();
        let fired = self.processor.fire_due(&mut batch, 1, now, 100).unwrap_or(usize::MAX);
        assert!(self.processor.commit(batch).is_ok());
        fired
    }

    fn points(&self) -> Decimal {
        self.store
            .get(Family::Balances, &keys::balance(1, "studio", "ann", "service_points"))
            .ok()
            .flatten()
            .and_then(|raw| keys::decode_decimal(&raw))
            .unwrap_or_default()
    }

    fn timers(&self) -> usize {
        self.store
            .scan(
                Family::Timers,
                &keys::partition_prefix(1),
                &keys::partition_prefix(1),
                100,
            )
            .map_or(0, |v| v.len())
    }

    fn outputs(&self) -> Vec<serde_json::Value> {
        self.store
            .scan(Family::Outbox, &keys::partition_prefix(1), &keys::outbox(1, 0), 1000)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| crate::outbox::load(self.store.as_ref(), 1, keys::parse_outbox(&k)?.1, &v).ok())
            .filter_map(|r| serde_json::from_slice(&r.payload).ok())
            .collect()
    }
}

#[test]
fn a_booking_credits_its_points_once_after_the_delay() {
    let mut s = Studio::new();
    assert_eq!(s.send(&book("b1", "yoga")), Applied::Processed(0));
    assert_eq!(s.timers(), 1, "the timer is written with the booking");
    assert_eq!(s.fire(NOON + 3 * HOUR - 1), 0, "not due before end + 3h");
    assert_eq!(s.points(), Decimal::ZERO);
    assert_eq!(s.fire(NOON + 3 * HOUR), 1);
    assert_eq!(s.points(), Decimal::from(10));
    assert_eq!(s.timers(), 0, "the timer is deleted with the credit");
    assert_eq!(s.fire(NOON + 10 * HOUR), 0, "never twice");
    assert_eq!(s.points(), Decimal::from(10));
    let out = s.outputs();
    let types: Vec<&str> = out.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, vec!["accrual.recorded", "points.auto_credited"]);
    assert_eq!(out[0]["entry_type"], "service_points");
    assert_eq!(out[0]["amount"], "10");
    assert_eq!(out[0]["source_event_id"], "create-b1");
    assert_eq!(out[0]["source"]["topic"], "bookings");
    assert_eq!(s.processor.timers_pending(), 0);
}

#[test]
fn a_timer_missed_while_down_fires_late_exactly_once() {
    let mut s = Studio::new();
    s.send(&book("b1", "massage"));
    s.send(&book("b2", "yoga"));
    // Down for a day: both fire on the first check after start.
    assert_eq!(s.fire(NOON + 24 * HOUR), 2);
    assert_eq!(s.points(), Decimal::from(35));
    assert_eq!(s.fire(NOON + 25 * HOUR), 0);
}

#[test]
fn a_dropped_firing_batch_fires_again() {
    let mut s = Studio::new();
    s.send(&book("b1", "yoga"));
    let mut batch = Batch::default();
    assert_eq!(s.processor.fire_due(&mut batch, 1, NOON + 4 * HOUR, 100).ok(), Some(1));
    drop(batch); // kill -9 before the commit
    assert_eq!(s.points(), Decimal::ZERO);
    assert_eq!(s.timers(), 1);
    assert_eq!(s.fire(NOON + 4 * HOUR), 1);
    assert_eq!(s.points(), Decimal::from(10));
}

#[test]
fn reschedule_moves_the_timer_and_cancel_or_no_show_remove_it() {
    let mut s = Studio::new();
    s.send(&book("b1", "yoga"));
    s.send(&booking_event(
        "move-b1",
        "booking.rescheduled",
        r#"{"booking_id":"b1","starts_at":"2026-11-24T11:00:00Z","ends_at":"2026-11-24T12:00:00Z"}"#,
    ));
    assert_eq!(s.timers(), 1);
    assert_eq!(s.fire(NOON + 4 * HOUR), 0, "the old due time no longer fires");
    assert_eq!(s.fire(NOON + 27 * HOUR), 1, "the new one does");

    s.send(&book("b2", "yoga"));
    s.send(&booking_event(
        "cancel-b2",
        "booking.cancelled",
        r#"{"booking_id":"b2"}"#,
    ));
    s.send(&book("b3", "massage"));
    s.send(&booking_event("noshow-b3", "booking.no_show", r#"{"booking_id":"b3"}"#));
    assert_eq!(s.timers(), 0);
    assert_eq!(s.fire(NOON + 48 * HOUR), 0);
    assert_eq!(s.points(), Decimal::from(10), "only b1 earned");
}

#[test]
fn a_cancellation_after_the_credit_reverses_it() {
    let mut s = Studio::new();
    s.send(&book("b1", "massage"));
    assert_eq!(s.fire(NOON + 4 * HOUR), 1);
    assert_eq!(s.points(), Decimal::from(25));
    s.send(&booking_event(
        "cancel-b1",
        "booking.cancelled",
        r#"{"booking_id":"b1"}"#,
    ));
    assert_eq!(s.points(), Decimal::ZERO);
    let last = s.outputs().into_iter().last().unwrap_or_default();
    assert_eq!(last["entry_type"], "reversal");
    assert_eq!(last["amount"], "-25");
    // A second cancellation is refused, not applied twice.
    s.send(&booking_event(
        "cancel-b1-again",
        "booking.cancelled",
        r#"{"booking_id":"b1"}"#,
    ));
    assert_eq!(s.points(), Decimal::ZERO);
    let last = s.outputs().into_iter().last().unwrap_or_default();
    assert_eq!(last["type"], "booking.rejected");
    assert_eq!(last["reason_code"], "not_active");
}

#[test]
fn unknown_services_earn_nothing_and_unknown_bookings_are_rejected() {
    let mut s = Studio::new();
    s.send(&book("b1", "sauna"));
    assert_eq!(s.timers(), 0);
    s.send(&booking_event("x", "booking.cancelled", r#"{"booking_id":"nope"}"#));
    let last = s.outputs().into_iter().last().unwrap_or_default();
    assert_eq!(last["reason_code"], "unknown_booking");
    s.send(&book("b1", "yoga").replace("create-b1", "create-b1-again"));
    let last = s.outputs().into_iter().last().unwrap_or_default();
    assert_eq!(last["reason_code"], "booking_exists");
}

#[test]
fn a_refund_only_finds_the_same_customers_order() {
    let (store, mut processor) = setup();
    let mut batch = Batch::default();
    let paid = order("e1", "c1", "80.00", "downtown");
    let refund = |customer: &str| {
        format!(
            r#"{{"schema_version":1,"event_id":"r-{customer}","type":"order.refunded","tenant":"cafe","branch":"downtown",
            "customer":"{customer}","occurred_at":"2026-11-23T13:00:00Z","body":{{"refund_id":"r","original_event_id":"e1",
            "amount":"80.00","currency":"AZN"}}}}"#
        )
    };
    let other = refund("c2");
    let own = refund("c1");
    assert!(processor.apply(&mut batch, &record(0, "cafe:c1", &paid)).is_ok());
    assert!(processor.apply(&mut batch, &record(1, "cafe:c2", &other)).is_ok());
    assert!(processor.commit(batch).is_ok());
    assert_eq!(
        balance(&store, "c1"),
        Some(Decimal::new(400, 2)),
        "another customer's refund changes nothing"
    );
    let last = outbox(&store).pop().map(|(_, r)| r.payload).unwrap_or_default();
    assert!(String::from_utf8_lossy(&last).contains("unknown_order"));
    let mut batch = Batch::default();
    assert!(processor.apply(&mut batch, &record(2, "cafe:c1", &own)).is_ok());
    assert!(processor.commit(batch).is_ok());
    assert_eq!(balance(&store, "c1"), Some(Decimal::new(0, 2)));
}

/// A tenant with a referral program and a referrer with a phone.
fn referral_setup() -> (Arc<MemoryStore>, Processor) {
    let text = format!(
        "{TENANT}\n[referral]\ninvitee_discount_percent = \"10\"\nreferrer_amount = \"2.00\"\n\
         [customers.ref]\nphone = \"+1\"\nregistered = true\n"
    );
    let tenant: TenantConfig = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    };
    let store = Arc::new(MemoryStore::default());
    let tenants = Arc::new(Tenants::from([("cafe".to_owned(), tenant)]));
    let mut processor = Processor::new(store.clone(), tenants.clone(), Arc::from(&b"key"[..]));
    let mut routing = Routing::seeded(&tenants);
    routing.partitions = 4;
    processor.set_routing(routing);
    (store, processor)
}

#[test]
fn a_referral_command_crosses_partitions_and_applies_once_whatever_the_redeliveries() {
    let (store, mut processor) = referral_setup();
    let visit = order("v1", "inv", "30.00", "downtown")
        .replace(r#""currency":"AZN"}"#, r#""currency":"AZN","referrer_phone":"+1"}"#);
    let mut batch = Batch::default();
    let applied = processor.apply(&mut batch, &record(0, "cafe:inv", &visit));
    assert_eq!(applied.ok(), Some(Applied::Processed(1)));
    let Ok(committed) = processor.commit(batch) else {
        panic!("commit failed")
    };
    assert_eq!(committed.commands.len(), 1);
    // The command is an outbox record routed to the referrer's partition.
    let (_, command) = outbox(&store)
        .into_iter()
        .find(|(_, r)| r.destination == Destination::Internal)
        .unwrap_or_else(|| panic!("no command in the outbox"));
    let target = contract::partition_for(b"cafe:ref", 4);
    assert_eq!(command.partition, Some(target));
    assert_eq!(command.key.as_deref(), Some(&b"cafe:ref"[..]));
    // Delivered three times (a re-send after a crash, and a redelivery of
    // the same offset): credited once.
    let deliver = |processor: &mut Processor, offset: i64| {
        let mut batch = Batch::default();
        let result = processor.apply(
            &mut batch,
            &InputRecord {
                topic: "internal",
                partition: target,
                offset,
                key: command.key.as_deref(),
                payload: Some(&command.payload),
            },
        );
        let _ = processor.commit(batch);
        result.ok()
    };
    assert_eq!(deliver(&mut processor, 0), Some(Applied::Processed(1)));
    assert_eq!(deliver(&mut processor, 1), Some(Applied::Duplicate));
    assert_eq!(deliver(&mut processor, 1), Some(Applied::AlreadyApplied));
    let credited = store
        .get(Family::Balances, &keys::balance(target, "cafe", "ref", "cashback"))
        .ok()
        .flatten()
        .and_then(|raw| keys::decode_decimal(&raw));
    assert_eq!(credited, Some(Decimal::new(200, 2)));
    // A second first visit of the invitee is refused: it has visited.
    let again = visit.replace("\"v1\"", "\"v2\"");
    let mut batch = Batch::default();
    let _ = processor.apply(&mut batch, &record(1, "cafe:inv", &again));
    let _ = processor.commit(batch);
    let rejected = outbox(&store)
        .into_iter()
        .any(|(_, r)| String::from_utf8_lossy(&r.payload).contains("not_first_visit"));
    assert!(rejected, "a second referral of the same invitee is refused");
}

#[test]
fn an_adjustments_operator_reaches_the_accrual_event_and_the_ledger() {
    let (store, mut processor) = setup();
    let adjust = |event_id: &str, operator: &str| {
        format!(
            r#"{{"schema_version":1,"event_id":"{event_id}","type":"balance.adjust","tenant":"cafe","branch":"downtown",
            "customer":"c1","occurred_at":"2026-11-23T12:00:00Z","body":{{"account":"cashback","amount":"5.00",
            "description":"Sorry for the wait"{operator}}}}}"#
        )
    };
    let with = adjust("a1", r#","operator":"front-desk-anna""#);
    let without = adjust("a2", "");
    let mut batch = Batch::default();
    assert_eq!(
        processor.apply(&mut batch, &record(0, "cafe:c1", &with)).ok(),
        Some(Applied::Processed(1))
    );
    assert_eq!(
        processor.apply(&mut batch, &record(1, "cafe:c1", &without)).ok(),
        Some(Applied::Processed(1))
    );
    assert!(processor.commit(batch).is_ok());
    let published: Vec<AccrualEvent> = outbox(&store)
        .iter()
        .filter_map(|(_, r)| serde_json::from_slice(&r.payload).ok())
        .filter(|e: &AccrualEvent| e.header.event_type == AccrualEvent::TYPE)
        .collect();
    let operators: Vec<Option<&str>> = published.iter().map(|e| e.operator.as_deref()).collect();
    assert_eq!(operators, [Some("front-desk-anna"), None]);
    let stored: Vec<AccrualEvent> = store
        .scan(
            Family::Ledger,
            &keys::ledger_prefix(3, "cafe", "c1"),
            &keys::ledger_prefix(3, "cafe", "c1"),
            10,
        )
        .unwrap_or_default()
        .iter()
        .filter_map(|(key, raw)| crate::state::codec::decode_ledger(key, raw).ok())
        .collect();
    assert_eq!(stored, published, "the ledger holds what was published");
    let raw = String::from_utf8_lossy(&outbox(&store)[0].1.payload).into_owned();
    assert!(raw.contains(r#""operator":"front-desk-anna""#), "{raw}");
    let none = outbox(&store)
        .iter()
        .filter(|(_, r)| String::from_utf8_lossy(&r.payload).contains("\"a2\""))
        .all(|(_, r)| !String::from_utf8_lossy(&r.payload).contains("operator"));
    assert!(none, "no operator field when the adjustment named none");
}
