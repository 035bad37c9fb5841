//! The back office in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`, which scripts/test installs) drives
//! `accrue run` over a generated workload. It signs in through the form,
//! checks the dashboard's totals against sums this test computes from the
//! events it produced, finds a customer by phone, applies an adjustment
//! through the form and sees the new balance, and sees a refused one
//! rejected. tests/admin_http.rs checks the session, the form tokens,
//! escaping and exports over plain HTTP.
//!
//! `ACCRUE_WRITE_SCREENSHOT=1` also writes the dashboard's screenshot to
//! docs/images/admin-dashboard.png (the README shows it), and the customer
//! page's after the adjustment to docs/images/admin-customer.png.
#![allow(clippy::unwrap_used)]

mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use browser::{browser, click, href, select, start_driver, text_of, type_into, wait_for_url};
use common::{half_even_percent, produce, producer, wait_until, Env};

const TOKEN: &str = "cafe-back-office-token-5b1f0e";
const PHONE: &str = "+994501234567";

/// Cents or points as the page shows them: `12.50`, `-3.05`, `40`.
fn shown(value: i64, unit: &str) -> String {
    if unit == "points" {
        return value.to_string();
    }
    let sign = if value < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", value.abs() / 100, value.abs() % 100)
}

type Sums = BTreeMap<(String, String), (i64, u64)>;

/// A table as shown: `(key, unit) -> (entries, amount)`, and its totals
/// `unit -> (entries, amount)`.
type Shown = (
    BTreeMap<(String, String), (String, String)>,
    BTreeMap<String, (String, String)>,
);

fn add(sums: &mut Sums, key: &str, unit: &str, amount: i64) {
    let s = sums.entry((key.to_owned(), unit.to_owned())).or_default();
    s.0 += amount;
    s.1 += 1;
}

/// The rows of table `id`'s body (`data-key`, `data-unit` -> entries,
/// amount) and its footer totals (unit -> entries, amount).
async fn table(client: &Client, id: &str) -> Shown {
    let mut rows = BTreeMap::new();
    for tr in client
        .find_all(Locator::Css(&format!("#{id} tbody tr[data-key]")))
        .await
        .unwrap()
    {
        let cells = cells(&tr).await;
        let key = tr.attr("data-key").await.unwrap().unwrap();
        let unit = tr.attr("data-unit").await.unwrap().unwrap();
        rows.insert((key, unit), (cells[2].clone(), cells[3].clone()));
    }
    let mut totals = BTreeMap::new();
    for tr in client.find_all(Locator::Css(&format!("#{id} tfoot tr"))).await.unwrap() {
        let cells = cells(&tr).await;
        totals.insert(
            tr.attr("data-unit").await.unwrap().unwrap(),
            (cells[2].clone(), cells[3].clone()),
        );
    }
    (rows, totals)
}

async fn cells(tr: &Element) -> Vec<String> {
    let mut out = Vec::new();
    for td in tr.find_all(Locator::Css("td")).await.unwrap() {
        out.push(td.text().await.unwrap().trim().to_owned());
    }
    out
}

fn expected_table(sums: &Sums) -> Shown {
    let rows = sums
        .iter()
        .map(|((k, u), (a, n))| ((k.clone(), u.clone()), (n.to_string(), shown(*a, u))))
        .collect();
    let mut totals: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for ((_, u), (a, n)) in sums {
        let t = totals.entry(u.clone()).or_default();
        t.0 += a;
        t.1 += n;
    }
    let totals = totals
        .into_iter()
        .map(|(u, (a, n))| (u.clone(), (n.to_string(), shown(a, &u))))
        .collect();
    (rows, totals)
}

async fn balance(client: &Client, account: &str) -> String {
    let cell = client
        .find(Locator::Css(&format!("#balances tr[data-account=\"{account}\"] td.n")))
        .await
        .unwrap();
    cell.text().await.unwrap().trim().to_owned()
}

/// Fills and sends the adjustment form; returns the outcome element's state
/// once it is no longer pending.
async fn adjust(client: &Client, account: &str, amount: &str, description: &str) -> (String, String) {
    select(client, "#account", account).await;
    type_into(client, "#amount", amount).await;
    type_into(client, "#description", description).await;
    type_into(client, "#operator", "anna").await;
    let form_page = client.current_url().await.unwrap();
    click(client, "#apply").await;
    for _ in 0..120 {
        // The click may return before the browser has left the form's
        // page, which can show an earlier adjustment's outcome.
        let moved = client.current_url().await.is_ok_and(|u| u != form_page);
        if let (true, Ok(outcome)) = (moved, client.find(Locator::Css("#outcome")).await) {
            let state = outcome.attr("data-state").await.ok().flatten().unwrap_or_default();
            if !state.is_empty() && state != "pending" {
                return (state, outcome.text().await.unwrap_or_default());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "the adjustment's outcome never showed: {}",
        client.source().await.unwrap_or_default()
    );
}

#[test]
fn the_back_office_shows_the_totals_and_applies_an_adjustment_in_a_browser() {
    let driver = start_driver();
    let env = Env::new("admin", 3);
    common::write(
        &env.dir.path().join("tenants").join("cafe-central.toml"),
        &format!(
            r#"api_tokens_sha256 = ["{hash}"]
id = "cafe-central"
name = "Cafe Central"
currency = "AZN"
[branches.downtown]
name = "Downtown"
[branches.airport]
name = "Airport"
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "5"
description = "5% back on every order"
branches = {{ downtown = "active", airport = "active" }}
[[programs]]
id = "points"
type = "bonus"
registered_only = false
percent = "10"
description = "A point for every 10 AZN, downtown"
branches = {{ downtown = "active" }}
[customers.c-1]
phone = "{PHONE}"
"#,
            hash = accrue::api::hash_token(TOKEN)
        ),
    );

    // 60 orders of whole AZN over November on both branches for 8
    // customers, every 7th refunded in full the next day, and adjustments.
    let mut events = Vec::new();
    // `at_airport`: the airport's accruals and reversals, by type.
    let (mut by_type, mut by_branch, mut at_airport) = (Sums::new(), Sums::new(), Sums::new());
    let mut entries = 0u64;
    let mut accrued: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..60i64 {
        let customer = format!("c-{}", i % 8);
        let branch = if i % 3 == 0 { "airport" } else { "downtown" };
        let cents = (2 + (i * 7) % 19) * 1000;
        let day = 1 + i % 28;
        let id = format!("o-{i}");
        let mut order: Value =
            serde_json::from_slice(&common::order(&id, "cafe-central", branch, &customer, cents, "AZN")).unwrap();
        order["occurred_at"] = json!(format!("2026-11-{day:02}T10:00:00Z"));
        events.push((Some(format!("cafe-central:{customer}")), order.to_string().into_bytes()));
        let cashback = half_even_percent(cents, 5);
        let points = if branch == "downtown" { cents / 100 / 10 } else { 0 };
        add(&mut by_type, "accrual", "AZN", cashback);
        add(&mut by_branch, branch, "AZN", cashback);
        if branch == "airport" {
            add(&mut at_airport, "accrual", "AZN", cashback);
        }
        entries += 1;
        if points > 0 {
            add(&mut by_type, "accrual", "points", points);
            add(&mut by_branch, branch, "points", points);
            entries += 1;
        }
        accrued.insert(customer.clone(), {
            let (c, p) = accrued.get(&customer).copied().unwrap_or_default();
            (c + cashback, p + points)
        });
        if i % 7 == 3 {
            let refund = json!({
                "schema_version": 1, "event_id": format!("r-{i}"), "type": "order.refunded",
                "tenant": "cafe-central", "branch": branch, "customer": customer,
                "occurred_at": format!("2026-11-{:02}T12:00:00Z", day + 1),
                "body": {"refund_id": format!("R-{i}"), "original_event_id": id,
                         "amount": common::money(cents), "currency": "AZN"}
            });
            events.push((
                Some(format!("cafe-central:{customer}")),
                refund.to_string().into_bytes(),
            ));
            add(&mut by_type, "reversal", "AZN", -cashback);
            add(&mut by_branch, branch, "AZN", -cashback);
            if branch == "airport" {
                add(&mut at_airport, "reversal", "AZN", -cashback);
            }
            entries += 1;
            if points > 0 {
                add(&mut by_type, "reversal", "points", -points);
                add(&mut by_branch, branch, "points", -points);
                entries += 1;
            }
        }
    }
    for (n, (customer, account, amount, unit)) in [("c-2", "bonus", 35, "points"), ("c-5", "cashback", 250, "AZN")]
        .into_iter()
        .enumerate()
    {
        let adjust = json!({
            "schema_version": 1, "event_id": format!("a-{n}"), "type": "balance.adjust",
            "tenant": "cafe-central", "branch": "downtown", "customer": customer,
            "occurred_at": "2026-11-29T09:00:00Z",
            "body": {"account": account, "amount": shown(amount, unit), "description": "<b>welcome</b>", "operator": "anna"}
        });
        events.push((
            Some(format!("cafe-central:{customer}")),
            adjust.to_string().into_bytes(),
        ));
        add(&mut by_type, "manual_adjustment", unit, amount);
        add(&mut by_branch, "downtown", unit, amount);
        entries += 1;
    }
    produce(&producer(), &env.input, &events);
    let mut run = env.spawn();
    let applied = wait_until(Duration::from_secs(120), || {
        common::high_watermark_sum(&env, &env.accruals) >= i64::try_from(entries).unwrap()
    });
    assert!(
        applied,
        "accrue did not publish {entries} entries; logs:\n{}",
        env.logs()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = browser(&driver).await;
        let base = format!("http://127.0.0.1:{}", env.http_port);

        // Signed out, the dashboard sends the browser to the sign-in form.
        client.goto(&format!("{base}/admin/")).await.unwrap();
        assert!(client.current_url().await.unwrap().path().ends_with("/admin/login"));
        type_into(&client, "#token", "wrong-token").await;
        click(&client, "#sign-in").await;
        // A wrong token is refused.
        client.wait().for_element(Locator::Css("#error")).await.unwrap();
        type_into(&client, "#token", TOKEN).await;
        click(&client, "#sign-in").await;
        client.wait().for_element(Locator::Css("#period")).await.unwrap();

        // November through the period selector.
        client
            .execute(
                "document.getElementById('from').value='2026-11-01';document.getElementById('to').value='2026-11-30';",
                vec![],
            )
            .await
            .unwrap();
        click(&client, "#show").await;
        wait_for_url(&client, |u| u.contains("from=2026-11-01")).await;
        client.wait().for_element(Locator::Css("#by-type")).await.unwrap();

        let (rows, totals) = table(&client, "by-type").await;
        let (want_rows, want_totals) = expected_table(&by_type);
        assert_eq!(rows, want_rows, "by entry type");
        assert_eq!(totals, want_totals, "totals by entry type");
        let (rows, totals) = table(&client, "by-branch").await;
        let (want_rows, want_totals) = expected_table(&by_branch);
        assert_eq!(rows, want_rows, "by branch");
        assert_eq!(totals, want_totals, "totals by branch");
        for link in ["export-csv", "export-xlsx", "export-totals-xlsx"] {
            let href = href(&client, link).await;
            assert!(
                href.contains("from=2026-11-01T00%3A00%3A00Z"),
                "{link} keeps the period: {href}"
            );
        }
        for chart in ["chart-azn", "chart-points"] {
            let bars = client
                .find_all(Locator::Css(&format!("svg#{chart} rect[fill]")))
                .await
                .unwrap();
            assert!(bars.len() > 20, "{chart} draws the days' bars: {}", bars.len());
        }
        if std::env::var_os("ACCRUE_WRITE_SCREENSHOT").is_some() {
            let png = client.screenshot().await.unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/admin-dashboard.png");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, png).unwrap();
            eprintln!("screenshot written to {}", path.display());
        }

        // The airport's accruals and reversals, through the filters.
        select(&client, "#filter-branch", "airport").await;
        type_into(&client, "#filter-entry-type", "accrual,reversal").await;
        click(&client, "#show").await;
        wait_for_url(&client, |u| u.contains("branch=airport")).await;
        client.wait().for_element(Locator::Css("#by-type")).await.unwrap();
        assert_eq!(
            table(&client, "by-type").await,
            expected_table(&at_airport),
            "the airport's"
        );
        let href = href(&client, "export-totals-xlsx").await;
        assert!(
            href.contains("branch=airport") && href.contains("entry_type=accrual%2Creversal"),
            "the export keeps the filters: {href}"
        );

        // The customer with the seeded phone, found by phone.
        client.goto(&format!("{base}/admin/customers")).await.unwrap();
        type_into(&client, "#q", PHONE).await;
        click(&client, "#find").await;
        client.wait().for_element(Locator::Css("#adjust")).await.unwrap();
        assert!(client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/customers/c-1"));
        let (cashback, points) = accrued["c-1"];
        let refunded: (i64, i64) = (0..60)
            .filter(|i| i % 8 == 1 && i % 7 == 3)
            .map(|i| {
                let cents = (2 + (i * 7) % 19) * 1000;
                let points = if i % 3 == 0 { 0 } else { cents / 1000 };
                (half_even_percent(cents, 5), points)
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(balance(&client, "cashback").await, shown(cashback - refunded.0, "AZN"));
        let before = points - refunded.1;
        assert_eq!(balance(&client, "bonus").await, before.to_string());

        let (state, text) = adjust(&client, "bonus", "250", "Birthday <gift> & thanks").await;
        assert_eq!(state, "applied", "{text}");
        assert_eq!(balance(&client, "bonus").await, (before + 250).to_string(), "{text}");
        if std::env::var_os("ACCRUE_WRITE_SCREENSHOT").is_some() {
            let png = client.screenshot().await.unwrap();
            std::fs::write(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/admin-customer.png"),
                png,
            )
            .unwrap();
        }
        let history = client.source().await.unwrap();
        assert!(
            history.contains("Birthday &lt;gift&gt; &amp; thanks"),
            "the description is escaped in the history"
        );

        let (state, text) = adjust(&client, "bonus", "-999999", "Too much").await;
        assert_eq!(state, "rejected", "{text}");
        assert!(text.contains("insufficient_balance"), "{text}");
        assert_eq!(balance(&client, "bonus").await, (before + 250).to_string());

        // The programs in force, with their descriptions.
        client.goto(&format!("{base}/admin/programs")).await.unwrap();
        let downtown = text_of(&client, "table[data-branch=\"downtown\"]").await;
        assert!(
            downtown.contains("A point for every 10 AZN") && downtown.contains("5% back"),
            "{downtown}"
        );
        let airport = text_of(&client, "table[data-branch=\"airport\"]").await;
        assert!(
            !airport.contains("A point for every"),
            "points are off at the airport: {airport}"
        );

        // Signing out ends the session.
        client.goto(&format!("{base}/admin/")).await.unwrap();
        client
            .find(Locator::Css("form.out button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_url(&client, |u| u.ends_with("/admin/login")).await;
        client.goto(&format!("{base}/admin/")).await.unwrap();
        assert!(client.current_url().await.unwrap().path().ends_with("/admin/login"));
        client.close().await.unwrap();
    });
    common::terminate(&mut run, Duration::from_secs(30));
}
