//! The totals index against the ledger, with no broker: a generated
//! workload (orders, refunds, bookings, adjustments, gift cards, plus
//! partner orders across tenants) spread over six weeks goes through
//! `accrue replay` on four partitions and two workers; then, for every
//! tenant and every grouping, `read::totals` must equal the sums computed
//! from the tenant's ledger, and the outstanding balances the sum of every
//! customer's balances.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use accrue::config::Config;
use accrue::contract::AccrualEvent;
use accrue::read::{self, LedgerQuery, TotalsQuery};
use accrue::state::RocksStore;
use accrue::tools::gen::{Generator, Mix, Settings};

/// Spreads event `n` over six weeks from 2026-10-28 (across month and ISO
/// week boundaries), at times that are not midnight.
fn spread(n: usize) -> String {
    let start = time::macros::datetime!(2026-10-28 06:30 UTC);
    let at = start + time::Duration::minutes(i64::try_from(n).unwrap() * 37);
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn workload(config: &Config, path: &Path) -> usize {
    let tenants: Vec<_> = config.tenants.values().cloned().collect();
    let settings = Settings {
        events: 1_500,
        customers: 60,
        zipf: 1.0,
        mix: Mix {
            orders: 70,
            refunds: 8,
            bookings: 8,
            adjustments: 6,
            upserts: 4,
            gift_cards: 4,
        },
        distinct: false,
        seed: 19,
    };
    let mut lines: Vec<Value> = Generator::new(tenants, settings)
        .unwrap()
        .map(|(_, text)| serde_json::from_str(&text).unwrap())
        .collect();
    // Partner orders: cafe-central's seeded customer at bistro-nord, which
    // shares its deposit (seed 000).
    for i in 0..40 {
        let cents = 1_000 + i * 35;
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        lines.push(json!({
            "schema_version": 1, "event_id": format!("partner-{i}"), "type": "order.paid",
            "tenant": "bistro-nord", "branch": "center", "customer": format!("walk-in-{i}"),
            "occurred_at": "", "body": {
                "visit_id": "v", "order_id": format!("po-{i}"), "sale_type": "dine_in",
                "lines": [{"product": "p", "category": "food", "quantity": "1", "amount": amount}],
                "payments": [{"method": "card", "amount": amount}],
                "total": amount, "currency": "AZN",
                "partner": {"tenant": "cafe-central", "phone": "+994501110001"}
            }
        }));
    }
    let mut text = String::new();
    for (n, line) in lines.iter_mut().enumerate() {
        line["occurred_at"] = Value::String(spread(n));
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    lines.len()
}

/// The dimensions of an entry as the place `tenant` reports it.
fn dims(config: &Config, tenant: &str, e: &AccrualEvent) -> BTreeMap<&'static str, String> {
    let home = &config.tenants[&e.header.tenant];
    let unit = if home.is_points(&e.account) {
        "points".to_owned()
    } else {
        e.currency.clone()
    };
    let at = time::OffsetDateTime::parse(&e.header.occurred_at, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .to_offset(time::UtcOffset::UTC)
        .date();
    let monday = at - time::Duration::days(i64::from(at.weekday().number_days_from_monday()));
    let date = |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    let partner = if e.header.tenant == tenant {
        String::new()
    } else {
        e.header.tenant.clone()
    };
    BTreeMap::from([
        ("entry_type", e.entry_type.clone()),
        ("program", e.program.clone()),
        ("account", e.account.clone()),
        ("branch", e.header.branch.clone()),
        ("partner", partner),
        ("day", date(at)),
        ("week", date(monday)),
        ("month", format!("{:04}-{:02}", at.year(), u8::from(at.month()))),
        ("unit", unit),
    ])
}

#[test]
fn totals_equal_the_sums_over_the_ledger_for_every_grouping() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("config/local/accrue.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    let lines = workload(&config, &input);
    let state = dir.path().join("state");
    let stats = accrue::replay::replay(&config, &input, &state, 4, 2, false).unwrap();
    assert_eq!(stats.records, lines as u64);
    assert!(stats.processed > 1_000, "{stats:?}");

    let store = RocksStore::open_read_only(&state).unwrap();
    let snap = store.snapshot();
    let groupings: [&[&str]; 7] = [
        &[],
        &["entry_type"],
        &["program", "account"],
        &["branch", "day"],
        &["week", "partner"],
        &["month", "entry_type", "branch"],
        &["entry_type", "program", "account", "branch", "partner", "day"],
    ];
    let mut partner_rows = 0;
    for tenant in config.tenants.keys() {
        let (query, _) = LedgerQuery::parse(tenant, std::iter::empty()).unwrap();
        let mut entries = Vec::new();
        read::each(&snap, &query, |e| {
            entries.push(e);
            Ok(true)
        })
        .unwrap();
        assert!(!entries.is_empty(), "{tenant} has a ledger");
        partner_rows += entries.iter().filter(|e| &e.header.tenant != tenant).count();
        let dims: Vec<_> = entries.iter().map(|e| dims(&config, tenant, e)).collect();
        for group in groupings {
            let mut want: BTreeMap<(Vec<String>, String), (Decimal, u64)> = BTreeMap::new();
            for (e, d) in entries.iter().zip(&dims) {
                let key = group.iter().map(|g| d[g].clone()).collect();
                let slot = want.entry((key, d["unit"].clone())).or_default();
                slot.0 += e.amount.parse::<Decimal>().unwrap();
                slot.1 += 1;
            }
            let joined = group.join(",");
            let params: Vec<(&str, &str)> = if group.is_empty() {
                vec![]
            } else {
                vec![("group_by", joined.as_str())]
            };
            let query = TotalsQuery::parse(tenant, params).unwrap();
            let got = read::totals(&snap, &query).unwrap();
            let got: BTreeMap<(Vec<String>, String), (Decimal, u64)> = got
                .rows
                .iter()
                .map(|r| {
                    let row = serde_json::to_value(r).unwrap();
                    let key = group.iter().map(|g| row[g].as_str().unwrap().to_owned()).collect();
                    ((key, r.unit.clone()), (r.amount.parse().unwrap(), r.count))
                })
                .collect();
            assert_eq!(got, want, "{tenant} grouped by {group:?}");
        }
        // A period and filters: the day buckets of the period only.
        let query = TotalsQuery::parse(
            tenant,
            [
                ("from", "2026-11-01"),
                ("to", "2026-11-15T00:00:00Z"),
                ("entry_type", "accrual,redemption,reversal"),
                ("group_by", "entry_type"),
            ],
        )
        .unwrap();
        let got = read::totals(&snap, &query).unwrap();
        let mut want: BTreeMap<String, Decimal> = BTreeMap::new();
        for (e, d) in entries.iter().zip(&dims) {
            let keep = ["accrual", "redemption", "reversal"].contains(&e.entry_type.as_str())
                && ("2026-11-01".."2026-11-15").contains(&d["day"].as_str());
            if keep {
                *want.entry(format!("{} {}", e.entry_type, d["unit"])).or_default() +=
                    e.amount.parse::<Decimal>().unwrap();
            }
        }
        let got: BTreeMap<String, Decimal> = got
            .rows
            .iter()
            .map(|r| {
                (
                    format!("{} {}", r.entry_type.clone().unwrap(), r.unit),
                    r.amount.parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{tenant}: a period and a filter");

        // Outstanding balances: the sum of every customer's balances.
        let mut customers: Vec<&str> = entries
            .iter()
            .filter(|e| &e.header.tenant == tenant)
            .map(|e| e.header.customer.as_str())
            .collect();
        customers.sort_unstable();
        customers.dedup();
        let mut want: BTreeMap<String, Decimal> = BTreeMap::new();
        for customer in customers {
            let found = read::balances(&snap, &config.tenants[tenant], customer)
                .unwrap()
                .unwrap();
            for b in found.balances {
                *want.entry(b.account).or_default() += b.balance.parse::<Decimal>().unwrap();
            }
        }
        let got: BTreeMap<String, Decimal> = read::outstanding(&snap, tenant)
            .unwrap()
            .balances
            .into_iter()
            .map(|o| (o.account, o.amount.parse().unwrap()))
            .collect();
        assert_eq!(got, want, "{tenant}: outstanding balances");
    }
    assert!(partner_rows > 0, "a partner's visits are in the place's ledger query");
}
