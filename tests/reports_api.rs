//! The back-office reads over HTTP, black-box through the real broker and
//! `accrue run`: totals against the ledger, money and points apart,
//! multi-value filters and a literal `+` offset, the partner's view, CSV and
//! xlsx exports, outstanding balances and a customer's summary with the
//! gift card it bought.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{produce, producer, terminate, wait_until, Env};

const TOKENS: [(&str, &str); 3] = [
    ("cafe-central", "cafe-token-0123456789"),
    ("bistro-nord", "bistro-token-0123456789"),
    ("studio-flow", "studio-token-0123456789"),
];

fn token(tenant: &str) -> &'static str {
    TOKENS.iter().find(|(t, _)| *t == tenant).unwrap().1
}

/// GET over HTTP/1.0: status (0 if nothing listens yet), content type,
/// raw body.
fn get(port: u16, path: &str, tenant: &str) -> (u16, String, Vec<u8>) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), Vec::new());
    };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = format!("Authorization: Bearer {}\r\n", token(tenant));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..at].to_vec()).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, raw[at + 4..].to_vec())
}

fn json_of(port: u16, path: &str, tenant: &str) -> Value {
    let (status, _, body) = get(port, path, tenant);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn event(
    id: &str,
    tenant: &str,
    branch: &str,
    customer: &str,
    at: &str,
    kind: &str,
    body: Value,
) -> (Option<String>, Vec<u8>) {
    let value = json!({
        "schema_version": 1, "event_id": id, "type": kind, "tenant": tenant, "branch": branch,
        "customer": customer, "occurred_at": at, "body": body,
    });
    (Some(format!("{tenant}:{customer}")), value.to_string().into_bytes())
}

/// The text of every cell of the first sheet of an xlsx file, row by row,
/// by column (shared strings resolved, empty cells empty).
fn sheet_rows(xlsx: &[u8]) -> Vec<Vec<String>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(xlsx)).unwrap();
    // A part that is absent reads as empty (a constant-memory sheet has
    // inline strings and no shared strings).
    let mut read = |name: &str| {
        let mut text = String::new();
        if let Ok(mut part) = archive.by_name(name) {
            part.read_to_string(&mut text).unwrap();
        }
        text
    };
    let between = |text: &str, open: &str, close: &str| -> Option<String> {
        let from = text.find(open)? + open.len();
        let from = from + text[from..].find('>')? + 1;
        Some(text[from..from + text[from..].find(close)?].to_owned())
    };
    let shared = read("xl/sharedStrings.xml");
    let strings: Vec<String> = shared
        .split("<si>")
        .skip(1)
        .map(|si| between(si, "<t", "</t>").unwrap_or_default())
        .collect();
    let column = |cell: &str| {
        let r = cell.split("r=\"").nth(1).unwrap();
        r.chars()
            .take_while(char::is_ascii_uppercase)
            .fold(0usize, |n, c| n * 26 + (c as usize - 'A' as usize + 1))
            - 1
    };
    read("xl/worksheets/sheet1.xml")
        .split("<row ")
        .skip(1)
        .map(|row| {
            let mut cells = Vec::new();
            for cell in row.split("<c ").skip(1) {
                let at = column(cell);
                let value = between(cell, "<v", "</v>").unwrap_or_default();
                let text = if cell.contains("t=\"s\"") {
                    strings[value.parse::<usize>().unwrap()].clone()
                } else if cell.contains("t=\"inlineStr\"") {
                    between(cell, "<t", "</t>").unwrap_or_default()
                } else {
                    value
                };
                if cells.len() <= at {
                    cells.resize(at + 1, String::new());
                }
                cells[at] = text;
            }
            cells
        })
        .collect()
}

#[test]
fn totals_exports_partner_view_and_summary_over_http() {
    let env = Env::new("reports", 3);
    let tenants = env.dir.path().join("tenants");
    for (tenant, token) in TOKENS {
        let text = common::local_tenant(tenant);
        let hash = accrue::api::hash_token(token);
        common::write(
            &tenants.join(format!("{tenant}.toml")),
            &format!("api_tokens_sha256 = [\"{hash}\"]\n{text}"),
        );
    }

    let mut events = Vec::new();
    // Cafe: orders of c-1001 (a Regular: cashback, and coffee bonus points
    // on coffee) over three days, and a manual adjustment of bonus points.
    for i in 0..9 {
        let cents = 2_000 + i * 150;
        let amount = common::money(cents);
        let body = json!({
            "order_id": format!("o-{i}"), "sale_type": "dine_in",
            "lines": [{"product": "latte", "category": "coffee", "quantity": "1", "amount": amount}],
            "payments": [{"method": "card", "amount": amount}], "total": amount, "currency": "AZN"
        });
        // 01:15 to 03:15 at +04:00: the evening before in UTC.
        let at = format!("2026-11-{:02}T{:02}:15:00+04:00", 3 + i / 3, 1 + i % 3);
        events.push(event(
            &format!("o-{i}"),
            "cafe-central",
            "downtown",
            "c-1001",
            &at,
            "order.paid",
            body,
        ));
    }
    events.push(event(
        "adj-1",
        "cafe-central",
        "downtown",
        "c-1001",
        "2026-11-04T12:00:00Z",
        "balance.adjust",
        json!({"account": "bonus", "amount": "40", "description": "welcome", "operator": "anna"}),
    ));
    // Bistro: cafe-central's customer (by phone) pays there; the accrual is
    // kept in cafe-central's ledger (shared deposit).
    for i in 0..2 {
        let body = common::purchase_body(
            5_000,
            "AZN",
            json!({"partner": {"tenant": "cafe-central", "phone": "+994501110001"}}),
        );
        events.push(event(
            &format!("p-{i}"),
            "bistro-nord",
            "center",
            &format!("walk-in-{i}"),
            "2026-11-05T19:00:00Z",
            "order.paid",
            body,
        ));
    }
    // Studio: service points, then a gift card bought with them.
    events.push(event(
        "sp-1",
        "studio-flow",
        "main",
        "s-1",
        "2026-11-06T08:00:00Z",
        "balance.adjust",
        json!({"account": "service_points", "amount": "300", "description": "welcome gift"}),
    ));
    events.push(event(
        "gc-1",
        "studio-flow",
        "main",
        "s-1",
        "2026-11-06T09:00:00Z",
        "giftcard.exchange",
        json!({"gift_card": "gc-25"}),
    ));
    produce(&producer(), &env.input, &events);

    let mut child = env.spawn();
    let port = env.http_port;
    let ledger = |tenant: &str| -> Vec<Value> {
        let (status, _, body) = get(port, &format!("/v1/tenants/{tenant}/ledger?limit=1000"), tenant);
        if status != 200 {
            return Vec::new();
        }
        serde_json::from_slice::<Value>(&body).unwrap()["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // 9 cashback + 9 coffee bonus + 1 adjustment + 2 partner accruals; the
    // studio's adjustment and exchange.
    let ready = wait_until(Duration::from_secs(90), || {
        ledger("cafe-central").len() == 21 && ledger("studio-flow").len() == 2 && ledger("bistro-nord").len() == 2
    });
    assert!(ready, "the ledgers never filled; logs:\n{}", env.logs());
    let cafe = ledger("cafe-central");

    // Totals by entry type and account equal the sums over the ledger,
    // money (AZN) and points apart.
    let totals = json_of(
        port,
        "/v1/tenants/cafe-central/totals?group_by=entry_type,account",
        "cafe-central",
    );
    let mut want: BTreeMap<(String, String, String), (Decimal, u64)> = BTreeMap::new();
    for e in &cafe {
        let account = e["account"].as_str().unwrap().to_owned();
        let unit = if ["bonus", "coffee-bonus"].contains(&account.as_str()) {
            "points"
        } else {
            "AZN"
        };
        let slot = want
            .entry((e["entry_type"].as_str().unwrap().into(), account, unit.into()))
            .or_default();
        slot.0 += e["amount"].as_str().unwrap().parse::<Decimal>().unwrap();
        slot.1 += 1;
    }
    let got: BTreeMap<(String, String, String), (Decimal, u64)> = totals["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(
                r.get("day").is_none() && r.get("branch").is_none(),
                "only grouped keys: {r}"
            );
            let key = (
                r["entry_type"].as_str().unwrap().into(),
                r["account"].as_str().unwrap().into(),
                r["unit"].as_str().unwrap().into(),
            );
            (
                key,
                (
                    r["amount"].as_str().unwrap().parse().unwrap(),
                    r["count"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want);
    let units: Vec<&str> = totals["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["AZN", "points"], "never a sum across units");

    // Days are UTC days: the orders at 01:15+04:00 fall on the day before;
    // the deposit accrued at the partner on the 5th is the cafe's own money.
    let by_day = json_of(
        port,
        "/v1/tenants/cafe-central/totals?group_by=day&unit=AZN&origin=own&from=2026-11-01&to=2026-12-01",
        "cafe-central",
    );
    let days: Vec<&str> = by_day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]);
    let (status, _, body) = get(
        port,
        "/v1/tenants/cafe-central/totals?from=2026-11-01T00:00:00+04:00",
        "cafe-central",
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("`from`"),
        "midnight elsewhere is not a UTC day"
    );

    // The ledger takes lists and a literal `+` offset.
    let listed = json_of(
        port,
        "/v1/tenants/cafe-central/ledger?entry_type=manual_adjustment,partner_accrual&from=2026-11-01T00:00:00+04:00",
        "cafe-central",
    );
    assert_eq!(listed["entries"].as_array().unwrap().len(), 3);

    // The partner's view: bistro-nord sees what cafe-central's customer
    // earned there, marked with the partner, in its totals and its ledger.
    let partner = json_of(
        port,
        "/v1/tenants/bistro-nord/totals?group_by=partner,entry_type,branch",
        "bistro-nord",
    );
    let rows = partner["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{partner}");
    assert_eq!(rows[0]["partner"], "cafe-central");
    assert_eq!(rows[0]["entry_type"], "partner_accrual");
    assert_eq!(rows[0]["branch"], "center");
    assert_eq!(rows[0]["amount"], "4.00", "4% of two 50.00 bills");
    let own = json_of(port, "/v1/tenants/bistro-nord/totals?origin=own", "bistro-nord");
    assert_eq!(own["rows"], json!([]));
    let visits = ledger("bistro-nord");
    assert!(
        visits
            .iter()
            .all(|e| e["tenant"] == "cafe-central" && e["balance"] == ""),
        "{visits:?}"
    );

    // Outstanding balances: the sum of the customer's balances.
    let outstanding = json_of(port, "/v1/tenants/cafe-central/balances/outstanding", "cafe-central");
    let balances = json_of(
        port,
        "/v1/tenants/cafe-central/customers/c-1001/balances",
        "cafe-central",
    );
    let got: BTreeMap<String, Decimal> = outstanding["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["account"].as_str().unwrap().into(),
                b["amount"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let want: BTreeMap<String, Decimal> = balances["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["account"].as_str().unwrap().into(),
                b["balance"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // CSV: grouped rows, then a total row per unit.
    let (status, content_type, body) = get(
        port,
        "/v1/tenants/cafe-central/totals.csv?group_by=entry_type",
        "cafe-central",
    );
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/csv"));
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "entry_type,unit,amount,count");
    assert!(lines.iter().filter(|l| l.starts_with("total,")).count() == 2, "{text}");

    // xlsx: header, one row per entry, amounts as exact numbers, totals.
    let (status, content_type, body) = get(
        port,
        "/v1/tenants/cafe-central/ledger.xlsx?account=cashback",
        "cafe-central",
    );
    assert_eq!(status, 200);
    assert!(content_type.contains("spreadsheetml"));
    let rows = sheet_rows(&body);
    let cashback: Vec<&Value> = cafe.iter().filter(|e| e["account"] == "cashback").collect();
    assert_eq!(rows.len(), 1 + cashback.len() + 1, "header, entries, one unit's total");
    assert_eq!(rows[0][0], "id");
    assert_eq!(rows[0][8], "amount");
    let sum: Decimal = cashback
        .iter()
        .map(|e| e["amount"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    let last = rows.last().unwrap();
    assert_eq!((last[0].as_str(), last[7].as_str()), ("total", "AZN"));
    assert_eq!(last[8].parse::<Decimal>().unwrap(), sum);
    for (row, entry) in rows[1..rows.len() - 1].iter().zip(&cashback) {
        assert_eq!(row[0], entry["id"].as_str().unwrap());
        let amount: Decimal = entry["amount"].as_str().unwrap().parse().unwrap();
        assert_eq!(row[8].parse::<Decimal>().unwrap(), amount, "a number, exactly");
    }
    let (status, _, body) = get(
        port,
        "/v1/tenants/cafe-central/totals.xlsx?group_by=account",
        "cafe-central",
    );
    assert_eq!(status, 200);
    let rows = sheet_rows(&body);
    assert_eq!(rows[0], ["account", "unit", "amount", "count"]);
    assert_eq!(rows.iter().filter(|r| r[0] == "total").count(), 2);

    // The customer's summary: balances, programs in force, the gift card.
    let summary = json_of(port, "/v1/tenants/studio-flow/customers/s-1/summary", "studio-flow");
    assert_eq!(summary["balances"][0]["account"], "service_points");
    assert_eq!(summary["balances"][0]["balance"], "50");
    assert_eq!(summary["balances"][0]["unit"], "points");
    assert_eq!(summary["programs"][0]["id"], "cashback");
    assert_eq!(summary["programs"][0]["description"], "3% back on classes and retail.");
    let card = &summary["gift_cards"][0];
    assert_eq!(card["gift_card"], "gc-25");
    assert_eq!(card["value"], "25.00");
    let issued = wait_until(Duration::from_secs(60), || {
        common::read_all(&env.accruals, 3)
            .iter()
            .map(common::Record::json)
            .any(|v| v["type"] == "giftcard.issued" && v["code"] == card["code"])
    });
    assert!(issued, "the summary shows the code the customer was sent: {card}");
    let (status, _, _) = get(port, "/v1/tenants/studio-flow/customers/nobody/summary", "studio-flow");
    assert_eq!(status, 404);
    let (status, _, _) = get(port, "/v1/tenants/cafe-central/customers/s-1/summary", "cafe-central");
    assert_eq!(status, 404, "another tenant's customer is not found");
    let (status, _, body) = get(port, "/v1/tenants/cafe-central/totals?group_by=colour", "cafe-central");
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("`group_by`"));

    assert_eq!(
        terminate(&mut child, Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
}
