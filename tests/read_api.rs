//! The read API, black-box: events through the real broker and `accrue
//! run`, then balances, every ledger filter, pagination, the CSV export,
//! the CLI, and tenant isolation over HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use common::{order, produce, producer, terminate, wait_until, Env};

const CAFE_TOKEN: &str = "cafe-token-0123456789";
const STUDIO_TOKEN: &str = "studio-token-9876543210";

fn sha256_hex(token: &str) -> String {
    accrue::api::hash_token(token)
}

/// GET over HTTP/1.0: status, headers (lower-case names), body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, BTreeMap<String, String>, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    common::http_exchange(port, "GET", path, &headers, b"")
}

fn json(port: u16, path: &str, token: &str) -> Value {
    let (status, _, body) = get(port, path, Some(token));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every entry of a ledger query, page by page.
fn all_pages(port: u16, path: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json(port, &url, CAFE_TOKEN);
        let got = page["entries"].as_array().unwrap();
        assert!(got.len() <= limit);
        entries.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return entries,
        }
    }
}

fn at(event: Vec<u8>, occurred_at: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&event).unwrap();
    v["occurred_at"] = Value::String(occurred_at.into());
    v.to_string().into_bytes()
}

fn adjust(event_id: &str, customer: &str, amount: &str, occurred_at: &str) -> Vec<u8> {
    serde_json::json!({
        "schema_version": 1, "event_id": event_id, "type": "balance.adjust",
        "tenant": "cafe-central", "branch": "downtown", "customer": customer,
        "occurred_at": occurred_at,
        "body": {"account": "bonus", "amount": amount, "description": "=gift, \"thanks\"", "operator": "anna"}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn read_api_filters_pages_exports_and_isolates_tenants() {
    let env = Env::new("read", 3);
    let tenants = env.dir.path().join("tenants");
    common::write(
        &tenants.join("cafe-central.toml"),
        &format!(
            r#"api_tokens_sha256 = ["{}"]
id = "cafe-central"
currency = "AZN"
[branches.downtown]
[branches.airport]
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "5"
branches = {{ downtown = "active", airport = "active" }}
[[programs]]
id = "points"
type = "bonus"
registered_only = false
percent = "10"
branches = {{ downtown = "active" }}
"#,
            sha256_hex(CAFE_TOKEN)
        ),
    );
    let studio = std::fs::read_to_string(tenants.join("studio-flow.toml")).unwrap();
    common::write(
        &tenants.join("studio-flow.toml"),
        &format!("api_tokens_sha256 = [\"{}\"]\n{studio}", sha256_hex(STUDIO_TOKEN)),
    );

    // 24 cafe orders over 24 days, on both branches, for 4 customers, two
    // manual adjustments, and studio orders that the cafe must never see.
    let mut events: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    let mut expected = 0;
    for i in 0..24 {
        let customer = format!("c-{}", i % 4);
        let branch = if i % 3 == 0 { "airport" } else { "downtown" };
        expected += if branch == "downtown" { 2 } else { 1 };
        let day = format!("2026-11-{:02}T10:00:00Z", i + 1);
        events.push((
            Some(format!("cafe-central:{customer}")),
            at(
                order(
                    &format!("r-{i}"),
                    "cafe-central",
                    branch,
                    &customer,
                    10_000 + i * 100,
                    "AZN",
                ),
                &day,
            ),
        ));
    }
    events.push((
        Some("cafe-central:c-1".into()),
        adjust("adj-1", "c-1", "50", "2026-11-05T12:00:00Z"),
    ));
    events.push((
        Some("cafe-central:c-1".into()),
        adjust("adj-2", "c-1", "-20", "2026-11-20T12:00:00Z"),
    ));
    expected += 2;
    for i in 0..3 {
        events.push((
            Some("studio-flow:s-1".into()),
            order(&format!("s-{i}"), "studio-flow", "main", "s-1", 5000, "EUR"),
        ));
    }
    produce(&producer(), &env.input, &events);

    let mut child = env.spawn();
    let port = env.http_port;
    let ready = wait_until(Duration::from_secs(60), || {
        let (status, _, body) = get(port, "/v1/tenants/cafe-central/ledger?limit=1000", Some(CAFE_TOKEN));
        status == 200
            && serde_json::from_str::<Value>(&body)
                .map(|v| v["entries"].as_array().map_or(0, Vec::len) == expected)
                .unwrap_or(false)
    });
    assert!(
        ready,
        "the ledger never reached {expected} entries; logs:\n{}",
        env.logs()
    );

    // Pagination: small pages, no duplicates, no gaps, time order.
    let full = json(port, "/v1/tenants/cafe-central/ledger?limit=1000", CAFE_TOKEN)["entries"]
        .as_array()
        .unwrap()
        .clone();
    for limit in [1, 4, 7] {
        let paged = all_pages(port, "/v1/tenants/cafe-central/ledger", limit);
        assert_eq!(paged, full, "limit {limit}");
    }
    let ids: HashSet<&str> = full.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), expected);
    let times: Vec<&str> = full.iter().map(|e| e["occurred_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(full.iter().all(|e| e["tenant"] == "cafe-central"));
    // The audit trail: an adjustment's operator is in its ledger entry.
    let operators: Vec<(&str, &str)> = full
        .iter()
        .filter_map(|e| Some((e["entry_type"].as_str()?, e["operator"].as_str()?)))
        .collect();
    assert_eq!(operators, [("manual_adjustment", "anna"); 2]);
    let mut published = Vec::new();
    let all_published = wait_until(Duration::from_secs(60), || {
        published = common::read_all(&env.accruals, 3)
            .iter()
            .map(common::Record::json)
            .filter(|v| v["entry_type"] == "manual_adjustment")
            .map(|v| v["operator"].as_str().unwrap_or_default().to_owned())
            .collect();
        published.len() == 2
    });
    assert!(all_published, "the adjustments' accrual events: {published:?}");
    assert_eq!(
        published, ["anna"; 2],
        "the published accrual event carries the operator"
    );

    // Every filter, against the full ledger filtered here.
    let field_filters = [
        ("customer", "c-1"),
        ("entry_type", "manual_adjustment"),
        ("program", "points"),
        ("branch", "airport"),
        ("account", "cashback"),
    ];
    for (name, value) in field_filters {
        let want: Vec<Value> = full.iter().filter(|e| e[name] == value).cloned().collect();
        assert!(!want.is_empty() && want.len() < full.len(), "{name}");
        let got = all_pages(port, &format!("/v1/tenants/cafe-central/ledger?{name}={value}"), 3);
        let mut got_ids: Vec<&str> = got.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let mut want_ids: Vec<&str> = want.iter().map(|e| e["id"].as_str().unwrap()).collect();
        got_ids.sort_unstable();
        want_ids.sort_unstable();
        assert_eq!(got_ids, want_ids, "filter {name}={value}");
    }
    let (from, to) = ("2026-11-05T00:00:00Z", "2026-11-12T00:00:00Z");
    let want: Vec<Value> = full
        .iter()
        .filter(|e| {
            let t = e["occurred_at"].as_str().unwrap();
            (from..to).contains(&t)
        })
        .cloned()
        .collect();
    assert!(!want.is_empty() && want.len() < full.len());
    let period = all_pages(port, &format!("/v1/tenants/cafe-central/ledger?from={from}&to={to}"), 2);
    assert_eq!(period, want);
    // Combined: a customer's history for a period and program.
    let history = all_pages(
        port,
        &format!("/v1/tenants/cafe-central/customers/c-1/ledger?program=points&from={from}"),
        2,
    );
    let want: Vec<Value> = full
        .iter()
        .filter(|e| e["customer"] == "c-1" && e["program"] == "points" && e["occurred_at"].as_str().unwrap() >= from)
        .cloned()
        .collect();
    assert!(!want.is_empty());
    let mut got_ids: Vec<&str> = history.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut want_ids: Vec<&str> = want.iter().map(|e| e["id"].as_str().unwrap()).collect();
    got_ids.sort_unstable();
    want_ids.sort_unstable();
    assert_eq!(got_ids, want_ids);

    // Balances equal the last ledger balance of each account.
    let balances = json(port, "/v1/tenants/cafe-central/customers/c-1/balances", CAFE_TOKEN);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for e in full.iter().filter(|e| e["customer"] == "c-1") {
        last.insert(
            e["account"].as_str().unwrap().into(),
            e["balance"].as_str().unwrap().into(),
        );
    }
    let got: BTreeMap<String, String> = balances["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["account"].as_str().unwrap().into(),
                b["balance"].as_str().unwrap().into(),
            )
        })
        .collect();
    // The ledger is in time order, but balances follow apply order; compare
    // with the entry of the highest sequence per account instead.
    let mut by_seq: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for e in full.iter().filter(|e| e["customer"] == "c-1") {
        let seq: u64 = e["id"].as_str().unwrap().split('-').nth(1).unwrap().parse().unwrap();
        let account = e["account"].as_str().unwrap().to_owned();
        let slot = by_seq.entry(account).or_insert((0, String::new()));
        if seq >= slot.0 {
            *slot = (seq, e["balance"].as_str().unwrap().into());
        }
    }
    let want: BTreeMap<String, String> = by_seq.into_iter().map(|(k, (_, v))| (k, v)).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), last.keys().collect::<Vec<_>>());
    assert_eq!(got, want);

    // CSV export of a filtered query opens in a CSV parser, same rows.
    let (status, headers, body) = get(
        port,
        "/v1/tenants/cafe-central/ledger.csv?branch=downtown",
        Some(CAFE_TOKEN),
    );
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let want: Vec<&Value> = full.iter().filter(|e| e["branch"] == "downtown").collect();
    assert_eq!(rows.len(), want.len());
    for (row, entry) in rows.iter().zip(&want) {
        assert_eq!(&row[0], entry["id"].as_str().unwrap());
        assert_eq!(&row[8], entry["amount"].as_str().unwrap());
    }
    let described: Vec<&str> = rows.iter().map(|r| &r[13]).filter(|d| !d.is_empty()).collect();
    assert_eq!(
        described,
        vec!["'=gift, \"thanks\""; 2],
        "quotes, commas and formulas survive"
    );
    assert_eq!(header.last().map(String::as_str), Some("operator"));
    let operated: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (&r[6], &r[14]))
        .filter(|(_, o)| !o.is_empty())
        .collect();
    assert_eq!(operated, [("manual_adjustment", "anna"); 2], "the operator column");

    // The CLI reads the same state while the processor runs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args([
            "--config",
            env.config.to_str().unwrap(),
            "ledger",
            "--tenant",
            "cafe-central",
        ])
        .args(["--branch", "downtown", "--csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_rows = csv::Reader::from_reader(out.stdout.as_slice()).records().count();
    assert_eq!(cli_rows, want.len());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accrue"))
        .args([
            "--config",
            env.config.to_str().unwrap(),
            "balance",
            "--tenant",
            "cafe-central",
        ])
        .args(["--customer", "c-1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, balances);

    // Auth and isolation.
    let (status, headers, body) = get(port, "/v1/tenants/cafe-central/ledger", None);
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].starts_with("Bearer"));
    assert!(!body.contains("c-1"));
    let (status, _, _) = get(port, "/v1/tenants/cafe-central/ledger", Some("wrong-token"));
    assert_eq!(status, 401);
    let not_found = get(port, "/v1/tenants/studio-flow/customers/s-1/balances", Some(CAFE_TOKEN));
    let missing = get(port, "/v1/tenants/nobody/customers/s-1/balances", Some(CAFE_TOKEN));
    let unknown_customer = get(
        port,
        "/v1/tenants/cafe-central/customers/s-1/balances",
        Some(CAFE_TOKEN),
    );
    assert_eq!(not_found.0, 404);
    assert_eq!((not_found.0, &not_found.2), (missing.0, &missing.2), "no difference");
    assert_eq!((not_found.0, &not_found.2), (unknown_customer.0, &unknown_customer.2));
    for path in [
        "/v1/tenants/studio-flow/ledger",
        "/v1/tenants/studio-flow/ledger.csv",
        "/v1/tenants/studio-flow/customers/s-1/ledger",
    ] {
        let (status, _, body) = get(port, path, Some(CAFE_TOKEN));
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("s-1") && !body.contains("EUR"), "{path}: {body}");
    }
    let studio = json(port, "/v1/tenants/studio-flow/customers/s-1/balances", STUDIO_TOKEN);
    assert_eq!(studio["balances"][0]["balance"], "4.50");
    let (status, _, body) = get(port, "/v1/tenants/studio-flow/ledger?customer=c-1", Some(STUDIO_TOKEN));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["entries"],
        serde_json::json!([])
    );

    // Bad filters name the parameter.
    for (query, name) in [
        ("limit=0", "limit"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
        ("cursor=xyz", "cursor"),
    ] {
        let (status, _, body) = get(
            port,
            &format!("/v1/tenants/cafe-central/ledger?{query}"),
            Some(CAFE_TOKEN),
        );
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(&format!("`{name}`")), "{query}: {body}");
    }
    // /metrics and health stay open.
    assert_eq!(get(port, "/health/live", None).0, 200);
    assert_eq!(get(port, "/metrics", None).0, 200);

    assert_eq!(
        terminate(&mut child, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
}
