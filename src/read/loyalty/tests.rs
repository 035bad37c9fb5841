use std::sync::Arc;

use super::*;
use crate::read::{balances, summary};
use crate::rules::loyalty::{Lot, Lots};
use crate::state::{Durability, RocksStore, Store, WriteSet};

const SHOP: &str = r#"
id = "shop"
currency = "AZN"
[branches.main]
[[programs]]
id = "points"
type = "bonus"
percent = "10"
branches = { main = "active" }
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { main = "active" }
[expiry.bonus]
after = "30d"
"#;

/// 2026-12-01T00:00:00Z and 2026-12-15T00:00:00Z.
const DEC_1: i64 = 1_796_083_200_000;
const DEC_15: i64 = 1_797_292_800_000;

fn lot(source: &str, expires_ms: Option<i64>, remaining: i64) -> Lot {
    Lot {
        account: Arc::from(if source.starts_with('k') { "cashback" } else { "bonus" }),
        program: Arc::from("points"),
        source: source.to_owned(),
        credited_ms: 0,
        expires_ms,
        warned: false,
        amount: Decimal::from(remaining.max(1)),
        remaining: Decimal::from(remaining),
    }
}

fn tenant() -> TenantConfig {
    match toml::from_str(SHOP) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    }
}

/// Ann (partition 1): 10 bonus points in three credits, one that never
/// expires, one spent, and 4.50 cashback; tier gold. Bob (partition 2):
/// 3 points, no record.
fn store(dir: &std::path::Path) -> RocksStore {
    let Ok(store) = RocksStore::open(dir) else {
        panic!("open")
    };
    let mut set = WriteSet::new();
    let mut balance = |p: u32, customer: &str, account: &str, value: Decimal| {
        set.put(
            Family::Balances,
            keys::balance(p, "shop", customer, account),
            keys::encode_decimal(value).to_vec(),
        );
    };
    balance(1, "ann", "bonus", Decimal::from(10));
    balance(1, "ann", "cashback", Decimal::new(45, 1));
    balance(2, "bob", "bonus", Decimal::from(3));
    let lots = Lots {
        lots: vec![
            lot("o1", None, 1),
            lot("o2", Some(DEC_15), 4),
            lot("o3", Some(DEC_1), 5),
            lot("o4", Some(DEC_1), 0),
            // A cashback credit booked while cashback had a rule, since
            // removed: it is dropped at its review, never expires.
            lot("k1", Some(DEC_1), 2),
        ],
    };
    set.put(Family::Lots, keys::loyalty(1, "shop", "ann"), lots.encode());
    let record = Loyalty {
        tier: Some(Arc::from("gold")),
        ..Loyalty::default()
    };
    set.put(Family::Loyalty, keys::loyalty(1, "shop", "ann"), record.encode());
    assert!(store.write(&set, Durability::Synced).is_ok());
    store
}

#[test]
fn balances_and_summary_list_what_expires_soonest_first_and_the_tier() {
    let Ok(dir) = tempfile::tempdir() else { return };
    let store = store(dir.path());
    let tenant = tenant();
    let snap = store.snapshot();
    let Ok(Some(ann)) = balances(&snap, &tenant, "ann") else {
        panic!("ann's balances")
    };
    assert_eq!(ann.tier.as_deref(), Some("gold"));
    let bonus = &ann.balances[0];
    assert_eq!((bonus.account.as_str(), bonus.balance.as_str()), ("bonus", "10"));
    let listed: Vec<(&str, &str)> = bonus
        .expiring
        .iter()
        .map(|e| (e.amount.as_str(), e.expires_at.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("5", "2026-12-01T00:00:00Z"), ("4", "2026-12-15T00:00:00Z")],
        "soonest first; the spent credit and the one that never expires are not listed"
    );
    assert_eq!(ann.balances[1].account, "cashback");
    assert!(ann.balances[1].expiring.is_empty(), "no rule (any more) for cashback");
    let Ok(Some(bob)) = balances(&snap, &tenant, "bob") else {
        panic!("bob's balances")
    };
    assert_eq!(bob.tier, None);
    assert!(bob.balances[0].expiring.is_empty());
    let json = serde_json::to_value(&bob).unwrap_or_default();
    assert_eq!(json["tier"], serde_json::Value::Null, "tier is null, not absent");
    assert_eq!(json["balances"][0]["expiring"], serde_json::json!([]));

    let now = time::OffsetDateTime::UNIX_EPOCH;
    let Ok(Some(found)) = summary(&snap, &tenant, "ann", now) else {
        panic!("ann's summary")
    };
    assert_eq!(found.tier.as_deref(), Some("gold"));
    assert_eq!(found.balances, ann.balances);
}

#[test]
fn balances_csv_has_a_row_per_customer_and_account_with_tier_and_next_expiry() {
    let Ok(dir) = tempfile::tempdir() else { return };
    let store = store(dir.path());
    let mut out = Vec::new();
    let rows = balances_csv(&store.snapshot(), &tenant(), &mut out);
    assert_eq!(rows.ok(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "customer,account,balance,unit,tier,next_expiry,next_expiry_amount\r\n\
         ann,bonus,10,points,gold,2026-12-01T00:00:00Z,5\r\n\
         ann,cashback,4.50,AZN,gold,,\r\n\
         bob,bonus,3,points,,,\r\n"
    );
    // Another tenant's balances never show.
    let mut other = tenant();
    other.id = "sho".into();
    let mut out = Vec::new();
    assert_eq!(balances_csv(&store.snapshot(), &other, &mut out).ok(), Some(0));
}

const BISTRO: &str = r#"
id = "bistro"
currency = "AZN"
[branches.center]
[[programs]]
id = "cashback"
type = "cashback"
percent = "3"
registered_only = false
branches = { center = "active" }
[expiry.cashback]
after = "365d"
[tiers]
metric = "spend"
[[tiers.levels]]
id = "silver"
threshold = "300.00"
"#;

/// From the event to the read: an order of 400.00 through the processor
/// (RocksDB) makes the customer silver and books 12.00 that expires a year
/// later; the balances read shows both.
#[test]
fn the_processor_s_record_is_what_the_read_shows() {
    use crate::pipeline::{Batch, InputRecord, Processor, Tenants};

    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = RocksStore::open(dir.path()) else {
        panic!("open")
    };
    let store = Arc::new(store);
    let tenant: TenantConfig = match toml::from_str(BISTRO) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}"),
    };
    let tenants = Arc::new(Tenants::from([("bistro".to_owned(), tenant.clone())]));
    let mut processor = Processor::new(store.clone(), tenants, Arc::from(&b"key"[..]));
    // A day ago, so the tiers' window holds it whatever the clock says.
    let at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        - time::Duration::days(1);
    let payload = format!(
        r#"{{"schema_version":1,"event_id":"o1","type":"order.paid","tenant":"bistro","branch":"center",
        "customer":"ann","occurred_at":"{}","body":{{"order_id":"o1","sale_type":"dine_in",
        "lines":[{{"product":"p","category":"food","quantity":"1","amount":"400.00"}}],
        "payments":[{{"method":"card","amount":"400.00"}}],"total":"400.00","currency":"AZN"}}}}"#,
        at.format(&Rfc3339).unwrap_or_default()
    );
    let mut batch = Batch::default();
    let record = InputRecord {
        topic: "orders",
        partition: 0,
        offset: 0,
        key: Some(b"bistro:ann"),
        payload: Some(payload.as_bytes()),
    };
    assert!(processor.apply(&mut batch, &record).is_ok());
    assert!(processor.commit(batch).is_ok());

    let snap = store.snapshot();
    let Ok(Some(ann)) = balances(&snap, &tenant, "ann") else {
        panic!("ann's balances")
    };
    assert_eq!(ann.tier.as_deref(), Some("silver"));
    let expires = (at + time::Duration::days(365)).format(&Rfc3339).unwrap_or_default();
    assert_eq!(
        ann.balances[0].expiring,
        [ExpiringCredit {
            amount: "12.00".into(),
            expires_at: expires
        }]
    );
}
