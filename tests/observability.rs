//! Observability, black-box: a real `accrue run` against a real broker,
//! scraped over HTTP. The exposition must pass `promtool check metrics`, the
//! counters must move by exactly what was produced, the health endpoints
//! must answer, and the shipped dashboard and alert rules must only query
//! metrics that a real scrape contains.
//!
//! `promtool` comes from the Debian package `prometheus`, which
//! `scripts/test` installs. Without it these tests fail; they never skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get as get, order, produce, producer, read_all, sample, terminate, wait_until, Env};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `promtool` from PATH, or a failure that says how to get it.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "promtool is not on PATH: install the Debian package `prometheus` \
             (apt-get install prometheus; scripts/test does it through ensure_system_packages)"
        ),
    }
}

/// Series names present in a scrape.
fn series_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// `accrue_*` metric names a PromQL text refers to.
fn queried_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("accrue_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The `expr:` texts of a rules file (single-line or `|` blocks), so names
/// in comments and annotations are not mistaken for queries.
fn rule_exprs(yaml: &str) -> String {
    let mut out = String::new();
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(min) = block {
            if line.trim().is_empty() || indent > min {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            if rest.trim() == "|" {
                block = Some(indent);
            } else {
                out.push_str(rest);
                out.push('\n');
            }
        }
    }
    out
}

fn promtool_check_metrics(scrape: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn key(tenant: &str, customer: &str) -> Option<String> {
    Some(format!("{tenant}:{customer}"))
}

#[test]
fn metrics_count_exactly_what_was_produced_and_health_answers() {
    let env = Env::new("obs", 2);
    // The opt-in tenant label, capped at one tenant: studio-flow is "other".
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("\n[metrics]\ntenant_label = true\nmax_tenants = 1\n");
    std::fs::write(&env.config, text).unwrap();

    let mut input = Vec::new();
    let (cafe, studio) = (12, 5);
    for i in 0..cafe {
        let customer = format!("c-{i}");
        let event = order(
            &format!("obs-c-{i}"),
            "cafe-central",
            "downtown",
            &customer,
            1000 + i,
            "AZN",
        );
        input.push((key("cafe-central", &customer), event));
    }
    for i in 0..studio {
        let customer = format!("s-{i}");
        let event = order(&format!("obs-s-{i}"), "studio-flow", "main", &customer, 2000 + i, "EUR");
        input.push((key("studio-flow", &customer), event));
    }
    let valid = input.len();
    // Duplicates: the same event ids again.
    let duplicates: Vec<_> = input[..3].to_vec();
    input.extend(duplicates.iter().cloned());
    // Refused input, one of each kind below.
    let refused = vec![
        ("malformed_json", key("cafe-central", "c-0"), b"{not json".to_vec()),
        (
            "unknown_tenant",
            key("nobody", "x"),
            order("obs-bad-1", "nobody", "downtown", "x", 100, "AZN"),
        ),
        (
            "bad_currency",
            key("cafe-central", "c-1"),
            order("obs-bad-2", "cafe-central", "downtown", "c-1", 100, "USD"),
        ),
        (
            "key_mismatch",
            key("cafe-central", "someone-else"),
            order("obs-bad-3", "cafe-central", "downtown", "c-2", 100, "AZN"),
        ),
    ];
    for (_, k, payload) in &refused {
        input.push((k.clone(), payload.clone()));
    }
    let total = input.len();
    produce(&producer(), &env.input, &input);

    let mut child = env.spawn();
    let done = wait_until(Duration::from_secs(90), || {
        read_all(&env.accruals, env.partitions).len() == valid
            && read_all(&env.dead_letter, env.partitions).len() == refused.len()
    });
    assert!(done, "outputs incomplete\n{}", env.logs());

    // Liveness at once; readiness once assigned, open and drained.
    assert_eq!(get(env.http_port, "/health/live").0, 200);
    let ready = wait_until(Duration::from_secs(30), || get(env.http_port, "/health/ready").0 == 200);
    let (status, body) = get(env.http_port, "/health/ready");
    assert!(ready, "not ready: {status} {body}\n{}", env.logs());
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["ready"], true);
    assert_eq!(health["partitions"], 2);
    assert_eq!(get(env.http_port, "/nope").0, 404);

    // The lag gauge comes from librdkafka statistics every 5 s; wait for it
    // to show every partition caught up, and for the outbox to be empty.
    let input_topic = format!("topic=\"{}\"", env.input);
    let settled = wait_until(Duration::from_secs(40), || {
        let s = get(env.http_port, "/metrics").1;
        let lags: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("accrue_consumer_lag{") && l.contains(&input_topic))
            .collect();
        lags.len() == 2
            && lags.iter().all(|l| l.ends_with(" 0"))
            && sample(&s, "accrue_outbox_published_total", &[]) == total as f64 - duplicates.len() as f64
    });
    let scrape = get(env.http_port, "/metrics").1;
    assert!(settled, "lag or outbox did not settle:\n{scrape}\n{}", env.logs());

    // The exposition passes promtool's parser and linter.
    let (ok, report) = promtool_check_metrics(&scrape);
    assert!(ok, "promtool check metrics failed:\n{report}\n--- scrape\n{scrape}");

    // Counters moved by exactly what was produced.
    let n = |name: &str, labels: &[&str]| sample(&scrape, name, labels);
    let accruals_topic = format!("topic=\"{}\"", env.accruals);
    let dlq_topic = format!("topic=\"{}\"", env.dead_letter);
    assert_eq!(n("accrue_events_consumed_total", &[&input_topic]), total as f64);
    assert_eq!(
        n("accrue_events_processed_total", &["type=\"order.paid\""]),
        valid as f64
    );
    assert_eq!(
        n("accrue_events_duplicate_total", &["type=\"order.paid\""]),
        duplicates.len() as f64
    );
    assert_eq!(n("accrue_events_dead_lettered_total", &[]), refused.len() as f64);
    for (reason, _, _) in &refused {
        let label = format!("reason=\"{reason}\"");
        assert_eq!(n("accrue_events_dead_lettered_total", &[&label]), 1.0, "{reason}");
    }
    assert_eq!(n("accrue_ledger_entries_total", &["type=\"accrual\""]), valid as f64);
    assert_eq!(n("accrue_outbox_published_total", &[&accruals_topic]), valid as f64);
    assert_eq!(n("accrue_outbox_published_total", &[&dlq_topic]), refused.len() as f64);
    assert_eq!(n("accrue_outbox_publish_errors_total", &[]), 0.0);
    assert_eq!(n("accrue_records_already_applied_total", &[]), 0.0);
    // Every record except redeliveries is one event of some batch.
    assert_eq!(n("accrue_batch_events_sum", &[]), total as f64);
    assert!(n("accrue_batch_events_count", &[]) >= 1.0);
    assert!(n("accrue_commit_seconds_count", &[]) >= 1.0);
    assert!(n("accrue_event_age_seconds_count", &[]) >= 1.0);
    assert!(n("accrue_processing_seconds_count", &[]) >= 1.0);
    assert_eq!(
        n("accrue_outbox_publish_seconds_count", &[]),
        (valid + refused.len()) as f64
    );
    assert_eq!(n("accrue_outbox_depth", &[]), 0.0);
    assert_eq!(n("accrue_partitions_owned", &[]), 2.0);
    assert_eq!(n("accrue_ready", &[]), 1.0);
    // The tenant label: capped at one, the rest is "other".
    assert_eq!(
        n("accrue_tenant_events_processed_total", &["tenant=\"cafe-central\""]),
        cafe as f64
    );
    assert_eq!(
        n("accrue_tenant_events_processed_total", &["tenant=\"other\""]),
        studio as f64
    );
    assert!(!scrape.contains("tenant=\"studio-flow\""));

    // The dashboard parses and queries only metrics of a real scrape.
    let present = series_names(&scrape);
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/dashboards/accrue.json")).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["definition"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    assert!(exprs.len() > 10, "the dashboard has too few queries");
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| queried_metrics(e)).collect();
    let missing: Vec<_> = queried.iter().filter(|m| !present.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics no scrape has: {missing:?}"
    );
    for wanted in [
        "accrue_events_consumed_total",
        "accrue_consumer_lag",
        "accrue_event_age_seconds_bucket",
        "accrue_events_dead_lettered_total",
        "accrue_outbox_depth",
    ] {
        assert!(queried.contains(wanted), "the dashboard does not show {wanted}");
    }

    // So do the alert rules.
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yaml")).unwrap();
    let queried = queried_metrics(&rule_exprs(&rules));
    assert!(queried.len() >= 4, "{queried:?}");
    let missing: Vec<_> = queried.iter().filter(|m| !present.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "alert rules query metrics no scrape has: {missing:?}"
    );

    let status = terminate(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", env.logs());
}

#[test]
fn alert_rules_and_prometheus_config_pass_promtool() {
    for args in [vec!["check", "rules"], vec!["check", "config"]] {
        let file = if args[1] == "rules" {
            repo("deploy/prometheus/alerts.yaml")
        } else {
            repo("deploy/prometheus/prometheus.yml")
        };
        let out = Command::new(promtool()).args(&args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {} {} failed:\n{}{}",
            args.join(" "),
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn alert_rules_fire_for_each_way_the_processor_can_stall() {
    // deploy/prometheus/alerts_test.yaml: one scenario per readiness case
    // (consume loop, stalled partition, no assignment, restore, broker,
    // outbox, rejoins, poison records) and a healthy one that stays silent.
    let out = Command::new(promtool())
        .args(["test", "rules"])
        .arg(repo("deploy/prometheus/alerts_test.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_container_config_is_valid() {
    let path = repo("deploy/config/accrue.toml");
    let config = accrue::config::Config::load(&path);
    assert!(
        config.is_ok(),
        "{}",
        config.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let config = config.unwrap();
    assert_eq!(config.kafka.brokers, "kafka:9092");
    assert_eq!(config.state.dir, Path::new("/var/lib/accrue"));
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9464");
}
