//! At the till, through the real broker and `accrue run`: quotes agree with
//! what the stream then does for every documented order; an authorization
//! holds balance until its order consumes it; two tills racing for one
//! balance: one wins; a hold survives SIGKILL, expires, and is released by
//! DELETE; a request reaching an instance that does not own the customer
//! is redirected to the one that does.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use common::{free_port, kill9, produce, producer, read_all, terminate, wait_until, Env};

const POS_TOKEN: &str = "till-token-0123456789";
const READ_TOKEN: &str = "read-token-0123456789";
const TENANT: &str = "cafe-central";

/// A request as a till makes it: a 503 (start-up, a rebalance) is retried
/// for up to 30 s.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, BTreeMap<String, String>, Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = request_once(port, method, path, body);
        if answer.0 != 503 || std::time::Instant::now() >= deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 request with the till's token: status, headers, JSON body.
fn request_once(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, BTreeMap<String, String>, Value) {
    let body = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
    let auth = format!("Bearer {POS_TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let (status, headers, body) = common::http_exchange(port, method, path, &headers, &body);
    (status, headers, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn quote(port: u16, body: &Value) -> Value {
    let (status, _, answer) = request(port, "POST", &format!("/v1/tenants/{TENANT}/quote"), Some(body));
    assert_eq!(status, 200, "quote: {answer}");
    answer
}

fn authorize(port: u16, body: &Value) -> (u16, Value) {
    let (status, _, answer) = request(
        port,
        "POST",
        &format!("/v1/tenants/{TENANT}/authorizations"),
        Some(body),
    );
    (status, answer)
}

/// The local config's tenants, with a till token and a read token each.
fn local_tenants(env: &Env) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/tenants");
    let to = env.dir.path().join("tenants");
    for entry in std::fs::read_dir(&to).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = common::local_tenant(&name);
        // Tokens are top-level keys: before the first table.
        let tokens = format!(
            "pos_tokens_sha256 = [\"{}\"]\napi_tokens_sha256 = [\"{}\"]\n",
            accrue::api::hash_token(&format!("{POS_TOKEN}{}", suffix(&name))),
            accrue::api::hash_token(&format!("{READ_TOKEN}{}", suffix(&name))),
        );
        std::fs::write(to.join(path.file_name().unwrap()), format!("{tokens}{text}")).unwrap();
    }
}

/// Tokens map to one tenant: only cafe-central's is the test's token.
fn suffix(tenant: &str) -> String {
    if tenant == TENANT {
        String::new()
    } else {
        format!("-{tenant}")
    }
}

fn ready(port: u16) -> bool {
    common::http_get(port, "/health/ready").0 == 200
}

fn example(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The quote request for an example event: its order, customer and branch.
fn till_body(event: &Value) -> Value {
    json!({
        "customer": event["customer"],
        "branch": event["branch"],
        "type": event["type"],
        "occurred_at": event["occurred_at"],
        "order": event["body"],
    })
}

fn keyed(event: &Value) -> (Option<String>, Vec<u8>) {
    let key = format!(
        "{}:{}",
        event["tenant"].as_str().unwrap(),
        event["customer"].as_str().unwrap()
    );
    (Some(key), serde_json::to_vec(event).unwrap())
}

/// Outputs of the accruals topic about `event_id` for its own customer.
fn outputs_of(env: &Env, event: &Value) -> Vec<Value> {
    read_all(&env.accruals, env.partitions)
        .iter()
        .map(common::Record::json)
        .filter(|o| o["source_event_id"] == event["event_id"] && o["customer"] == event["customer"])
        .collect()
}

fn adjust(event_id: &str, customer: &str, account: &str, amount: &str) -> Value {
    json!({
        "schema_version": 1, "event_id": event_id, "type": "balance.adjust", "tenant": TENANT,
        "branch": "downtown", "customer": customer, "occurred_at": "2026-11-20T10:00:00Z",
        "body": {"account": account, "amount": amount, "description": "till test", "operator": "test"}
    })
}

/// An order paying `cashback` of a `total` bill with cashback, the rest by card.
fn order(order_id: &str, total: &str, cashback: &str, authorization: Option<&str>) -> Value {
    let card = total.parse::<Decimal>().unwrap() - cashback.parse::<Decimal>().unwrap();
    let mut body = json!({
        "order_id": order_id, "sale_type": "dine_in",
        "lines": [{"product": "lunch", "category": "food", "quantity": "1", "amount": total}],
        "payments": [{"method": "cashback", "amount": cashback}, {"method": "card", "amount": card.to_string()}],
        "total": total, "currency": "AZN"
    });
    if let Some(id) = authorization {
        body["authorization_id"] = json!(id);
    }
    body
}

fn till_order(customer: &str, body: Value) -> Value {
    json!({"customer": customer, "branch": "downtown", "order": body})
}

fn event_of(event_id: &str, customer: &str, body: Value) -> Value {
    json!({
        "schema_version": 1, "event_id": event_id, "type": "order.paid", "tenant": TENANT,
        "branch": "downtown", "customer": customer, "occurred_at": "2026-11-21T12:00:00Z", "body": body
    })
}

fn cashback_of(port: u16, customer: &str) -> (String, String) {
    let q = quote(port, &till_order(customer, order("probe", "100.00", "0.01", None)));
    let row = q["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["account"] == "cashback")
        .cloned()
        .unwrap_or(json!({"balance": "0.00", "held": "0.00"}));
    (
        row["balance"].as_str().unwrap().to_owned(),
        row["held"].as_str().unwrap().to_owned(),
    )
}

fn spawn_ready(env: &Env) -> Child {
    let mut child = env.spawn();
    if !wait_until(Duration::from_secs(60), || ready(env.http_port)) {
        kill9(&mut child);
        panic!("accrue did not become ready\n{}", env.logs());
    }
    child
}

#[test]
fn quotes_agree_with_the_stream_and_holds_reserve_balance_through_sigkill() {
    let env = Env::new("till", 1);
    local_tenants(&env);
    let producer = producer();
    let mut child = spawn_ready(&env);

    // 1. Every documented order: its quote, then the event; what the event
    //    produced is what the quote said.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut quoted = 0;
    for path in &names {
        let event = example(path);
        let is_order = matches!(event["type"].as_str(), Some("order.paid" | "visit.completed"));
        if is_order && event["tenant"] == TENANT {
            let q = quote(env.http_port, &till_body(&event));
            produce(&producer, &env.input, &[keyed(&event)]);
            let mut outputs = Vec::new();
            assert!(
                wait_until(Duration::from_secs(30), || {
                    outputs = outputs_of(&env, &event);
                    !outputs.is_empty()
                }),
                "{}: no output\n{}",
                path.display(),
                env.logs()
            );
            let mut applied: Vec<(String, String, String)> = outputs
                .iter()
                .filter(|o| o["type"] == "accrual.recorded" && o["entry_type"] != "redemption")
                .map(|o| {
                    (
                        o["account"].to_string(),
                        o["program"].to_string(),
                        o["amount"].to_string(),
                    )
                })
                .collect();
            let mut said: Vec<(String, String, String)> = q["accruals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["account"].to_string(),
                        a["program"].to_string(),
                        a["amount"].to_string(),
                    )
                })
                .collect();
            applied.sort();
            said.sort();
            assert_eq!(said, applied, "{}: quote {q}", path.display());
            let rejected = outputs
                .iter()
                .find(|o| o["type"].as_str().is_some_and(|t| t.ends_with(".rejected")));
            assert_eq!(
                q["rejection"]["reason_code"].as_str(),
                rejected.and_then(|r| r["reason_code"].as_str()),
                "{}: quote {q}",
                path.display()
            );
            quoted += 1;
        } else {
            produce(&producer, &env.input, &[keyed(&event)]);
        }
    }
    assert!(
        quoted >= 3,
        "expected at least three documented orders of {TENANT}, quoted {quoted}"
    );

    // 2. A balance of 40.00 cashback; a 46.00 bill may pay at most 23.00 of it.
    let customer = "till-1";
    produce(
        &producer,
        &env.input,
        &[keyed(&adjust("till-adjust-1", customer, "cashback", "40.00"))],
    );
    assert!(wait_until(Duration::from_secs(30), || cashback_of(
        env.http_port,
        customer
    )
    .0 == "40.00"));
    let q = quote(
        env.http_port,
        &till_order(customer, order("o-1", "46.00", "25.00", None)),
    );
    assert_eq!(q["accepted"], false, "{q}");
    assert_eq!(q["rejection"]["reason_code"], "over_cap", "{q}");
    let cashback = q["payable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["account"] == "cashback")
        .unwrap();
    assert_eq!(
        (cashback["max"].as_str(), cashback["limited_by"].as_str()),
        (Some("23.00"), Some("cap"))
    );
    let (status, refusal) = authorize(
        env.http_port,
        &till_order(customer, order("o-1", "46.00", "25.00", None)),
    );
    assert_eq!(
        (status, refusal["error"].as_str()),
        (409, Some("over_cap")),
        "{refusal}"
    );

    // 3. Two tills race for 23.00 each of a 40.00 balance: exactly one wins.
    let port = env.http_port;
    let racers: Vec<_> = ["race-a", "race-b"]
        .into_iter()
        .map(|id| std::thread::spawn(move || authorize(port, &till_order(customer, order(id, "46.00", "23.00", None)))))
        .collect();
    let results: Vec<(u16, Value)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let won: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s == 201).collect();
    let lost: Vec<&(u16, Value)> = results.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{results:?}");
    assert_eq!(lost[0].1["error"], "insufficient_balance", "{results:?}");
    let hold = won[0].1.clone();
    let hold_id = hold["authorization_id"].as_str().unwrap().to_owned();
    let winner_order = hold["order_id"].as_str().unwrap().to_owned();
    assert_eq!(
        hold["holds"],
        json!([{"account": "cashback", "amount": "23.00"}]),
        "{hold}"
    );
    assert_eq!(cashback_of(port, customer), ("40.00".into(), "23.00".into()));
    // A retry of the same order returns the same hold.
    let (status, again) = authorize(
        port,
        &till_order(customer, order(&winner_order, "46.00", "23.00", None)),
    );
    assert_eq!(
        (status, again["authorization_id"].as_str()),
        (201, Some(hold_id.as_str()))
    );

    // 4. SIGKILL: the hold is durable; after the restart it still reserves.
    kill9(&mut child);
    env.new_group();
    let mut child = spawn_ready(&env);
    let (status, refusal) = authorize(port, &till_order(customer, order("after-kill", "46.00", "20.00", None)));
    assert_eq!(
        (status, refusal["error"].as_str()),
        (409, Some("insufficient_balance")),
        "{refusal}"
    );

    // 5. The order that names the hold consumes it: its 23.00 passes, and
    //    the balance is no longer held.
    let settled = event_of(
        "till-order-1",
        customer,
        order(&winner_order, "46.00", "23.00", Some(&hold_id)),
    );
    produce(&producer, &env.input, &[keyed(&settled)]);
    let mut outputs = Vec::new();
    assert!(wait_until(Duration::from_secs(30), || {
        outputs = outputs_of(&env, &settled);
        !outputs.is_empty()
    }));
    let redeemed: Vec<&Value> = outputs.iter().filter(|o| o["entry_type"] == "redemption").collect();
    assert_eq!(redeemed.len(), 1, "{outputs:?}");
    assert_eq!(redeemed[0]["amount"], "-23.00");
    assert!(wait_until(Duration::from_secs(10), || cashback_of(port, customer).1 == "0.00"));
    let (balance, _) = cashback_of(port, customer);

    // 6. A short hold expires and releases; DELETE releases at once.
    let short = json!({"customer": customer, "branch": "downtown", "expires_in_seconds": 2,
        "order": order("short", "30.00", "15.00", None)});
    let (status, short_hold) = authorize(port, &short);
    assert_eq!(status, 201, "{short_hold} (balance {balance})");
    assert_eq!(cashback_of(port, customer).1, "15.00");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        cashback_of(port, customer).1,
        "0.00",
        "an expired hold reserves nothing"
    );
    let (status, long_hold) = authorize(port, &till_order(customer, order("long", "30.00", "15.00", None)));
    assert_eq!(status, 201, "{long_hold}");
    let long_id = long_hold["authorization_id"].as_str().unwrap();
    let path = format!("/v1/tenants/{TENANT}/authorizations/{long_id}?customer={customer}");
    let (status, _, released) = request(port, "DELETE", &path, None);
    assert_eq!(status, 200, "{released}");
    assert_eq!(cashback_of(port, customer).1, "0.00");
    let (status, _, gone) = request(port, "DELETE", &path, None);
    assert_eq!((status, gone["error"].as_str()), (404, Some("no_such_authorization")));

    // 7. Read tokens cannot hold balance.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "POST /v1/tenants/{TENANT}/quote HTTP/1.0\r\nAuthorization: Bearer {READ_TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 401") || answer.starts_with("HTTP/1.1 401"),
        "{answer}"
    );

    assert!(
        terminate(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()),
        "{}",
        env.logs()
    );
}

/// A second instance's config: its own state and port, advertised.
fn second(env: &Env, name: &str) -> (PathBuf, u16) {
    let port = free_port();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let state = env.dir.path().join(format!("state-{name}"));
    let text = text
        .replace(
            &format!("dir = \"{}\"", env.state.display()),
            &format!("dir = \"{}\"", state.display()),
        )
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", env.http_port),
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    let config = env.dir.path().join(format!("accrue-{name}.toml"));
    std::fs::write(&config, text).unwrap();
    (config, port)
}

fn spawn_with(env: &Env, config: &Path, name: &str) -> Child {
    let log = std::fs::File::create(env.dir.path().join(format!("run-{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_accrue"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn owned(port: u16) -> f64 {
    common::sample(&common::scrape(port), "accrue_partitions_owned", &[])
}

#[test]
fn a_request_to_an_instance_without_the_customer_is_redirected_to_its_owner() {
    let env = Env::new("till-two", 4);
    local_tenants(&env);
    let producer = producer();
    let (config_b, port_b) = second(&env, "b");
    let mut a = env.spawn();
    let mut b = spawn_with(&env, &config_b, "b");
    let ports = [env.http_port, port_b];
    // Both own partitions, and each knows what the other owns.
    assert!(
        wait_until(Duration::from_secs(90), || ports
            .iter()
            .all(|p| ready(*p) && owned(*p) >= 1.0)
            && ports.iter().map(|p| owned(*p)).sum::<f64>() == 4.0),
        "the two instances did not split the partitions\n{}",
        env.logs()
    );
    // Customers on every partition, each with 10.00 cashback.
    let customers: Vec<String> = (0..16).map(|i| format!("two-{i}")).collect();
    for (i, c) in customers.iter().enumerate() {
        produce(
            &producer,
            &env.input,
            &[keyed(&adjust(&format!("two-adjust-{i}"), c, "cashback", "10.00"))],
        );
    }
    let mut redirected = 0;
    for c in &customers {
        for port in ports {
            let body = till_order(c, order(&format!("{c}-{port}"), "20.00", "10.00", None));
            // Until the adjustment is applied and both instances have heard
            // of each other, an answer may be 503 or show no balance: retry.
            let mut last = Value::Null;
            let done = wait_until(Duration::from_secs(30), || {
                let (status, headers, answer) =
                    request(port, "POST", &format!("/v1/tenants/{TENANT}/quote"), Some(&body));
                last = answer.clone();
                let (status, answer) = if status == 307 {
                    let location = headers.get("location").cloned().unwrap_or_default();
                    let rest = location.strip_prefix("http://127.0.0.1:").unwrap_or_default();
                    let (other, path) = rest.split_once('/').unwrap_or(("0", ""));
                    let other: u16 = other.parse().unwrap_or(0);
                    assert!(ports.contains(&other) && other != port, "redirected to {location}");
                    redirected += 1;
                    let (s, _, a) = request(other, "POST", &format!("/{path}"), Some(&body));
                    (s, a)
                } else {
                    (status, answer)
                };
                last = answer.clone();
                status == 200 && answer["accepted"] == true
            });
            assert!(done, "customer {c} via port {port}: {last}\n{}", env.logs());
        }
    }
    // Every customer was asked of both instances; a partition has one owner.
    assert!(redirected >= customers.len(), "only {redirected} redirects");
    for child in [&mut a, &mut b] {
        assert!(
            terminate(child, Duration::from_secs(30)).is_some_and(|s| s.success()),
            "{}",
            env.logs()
        );
    }
}
