use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(processor: &str, tenants: &[(&str, &str)]) -> Option<Fixture> {
        let dir = tempfile::tempdir().ok()?;
        std::fs::write(dir.path().join("accrue.toml"), processor).ok()?;
        std::fs::create_dir(dir.path().join("tenants")).ok()?;
        for (name, text) in tenants {
            std::fs::write(dir.path().join("tenants").join(name), text).ok()?;
        }
        Some(Fixture { dir })
    }

    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.dir.path().join("accrue.toml"))
    }
}

const PROCESSOR: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
[topics]
input = ["orders"]
accruals = "accruals"
dead_letter = "dlq"
internal = "internal"
[state]
dir = "state"
[tenants]
dir = "tenants"
"#;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
"#;

fn issues(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(err) => err.issues.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn loads_a_valid_config_with_defaults() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let config = fx.load();
    assert!(config.is_ok(), "{:?}", config.err());
    let Ok(config) = config else { return };
    assert_eq!(config.batch.max_events, 5_000);
    assert_eq!(config.batch.linger_ms, 20);
    assert!(config.state.dir.is_absolute() || config.state.dir.starts_with(fx.dir.path()));
    let cafe = &config.tenants["cafe"];
    assert_eq!(cafe.minor_units, 2);
    assert!(cafe.programs.first().is_some_and(|c| c.active_in("downtown")));
}

#[test]
fn the_shipped_local_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
    let config = Config::load(&path);
    assert!(
        config.is_ok(),
        "{}",
        config.err().map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn every_error_names_file_and_field() {
    let bad_tenant = r#"
id = "cafe"
currency = "azn"
minor_units = 9
[branches.downtown]
[[programs]]
id = "cashback"
type = "cashback"
percent = "150"
branches = { downtown = "active", moon = "active" }
"#;
    let bad_processor = PROCESSOR
        .replace("input = [\"orders\"]", "input = [\"orders\", \"accruals\"]")
        .replace(
            "group_id = \"g\"",
            "group_id = \"g\"\n[kafka.librdkafka]\n\"enable.idempotence\" = \"false\"",
        );
    let Some(fx) = Fixture::new(&bad_processor, &[("cafe.toml", bad_tenant)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    let expect = [
        ("accrue.toml", "kafka.librdkafka.enable.idempotence"),
        ("accrue.toml", "topics.accruals"),
        ("cafe.toml", "currency"),
        ("cafe.toml", "minor_units"),
        ("cafe.toml", "programs[0].percent"),
        ("cafe.toml", "programs[0].branches.moon"),
    ];
    for (file, field) in expect {
        assert!(
            found
                .iter()
                .any(|i| i.contains(file) && i.contains(&format!(": {field}: "))),
            "no issue for {file} {field} in {found:#?}"
        );
    }
}

#[test]
fn type_errors_name_the_field_path_and_line() {
    let tenant = TENANT.replace("percent = \"5\"", "percent = 5.5");
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &tenant)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("cafe.toml: programs[0].percent:"), "{found:?}");
    assert!(found[0].contains("line"), "{found:?}");
}

#[test]
fn unknown_fields_are_refused() {
    let processor = PROCESSOR.replace("[state]", "[state]\ndirr = \"x\"");
    let Some(fx) = Fixture::new(&processor, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    assert!(
        found
            .iter()
            .any(|i| i.contains("unknown field") && i.contains("accrue.toml")),
        "{found:?}"
    );
}

#[test]
fn duplicate_tenant_ids_are_refused() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("a.toml", TENANT), ("b.toml", TENANT)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    assert!(found.iter().any(|i| i.contains("b.toml: id:")), "{found:?}");
}

#[test]
fn librdkafka_overrides_win_over_defaults() {
    let processor = PROCESSOR.replace(
        "group_id = \"g\"",
        "group_id = \"g\"\n[kafka.librdkafka]\n\"linger.ms\" = \"50\"",
    );
    let Some(fx) = Fixture::new(&processor, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else {
        panic!("config must load")
    };
    let producer = config.kafka.client_config(ClientRole::Producer);
    assert_eq!(producer.get("linger.ms"), Some("50"));
    assert_eq!(producer.get("enable.idempotence"), Some("true"));
    let consumer = config.kafka.client_config(ClientRole::Consumer);
    assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
    assert_eq!(consumer.get("group.id"), Some("g"));
}

#[test]
fn overrides_reach_only_the_clients_that_read_them() {
    let processor = PROCESSOR.replace(
        "group_id = \"g\"",
        "group_id = \"g\"\n[kafka.librdkafka]\n\"fetch.wait.max.ms\" = \"10\"\n\"linger.ms\" = \"7\"\n\"client.id\" = \"x\"",
    );
    let Some(fx) = Fixture::new(&processor, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else {
        panic!("config must load")
    };
    let consumer = config.kafka.client_config(ClientRole::Consumer);
    let producer = config.kafka.client_config(ClientRole::Producer);
    assert_eq!(consumer.get("fetch.wait.max.ms"), Some("10"));
    assert_eq!(consumer.get("linger.ms"), None);
    assert_eq!(producer.get("fetch.wait.max.ms"), None);
    assert_eq!(producer.get("linger.ms"), Some("7"));
    assert_eq!(producer.get("client.id"), Some("x"));
    assert_eq!(consumer.get("client.id"), Some("x"));
}

#[test]
fn metrics_section_defaults_off_and_is_validated() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    assert!(!config.metrics.tenant_label, "the per-tenant label is opt-in");
    assert_eq!(config.metrics.max_tenants, 50);

    let on = format!("{PROCESSOR}\n[metrics]\ntenant_label = true\nmax_tenants = 3\n");
    let Some(fx) = Fixture::new(&on, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    assert!(config.metrics.tenant_label);
    assert_eq!(config.metrics.max_tenants, 3);

    for bad in ["max_tenants = 0", "max_tenants = 1001"] {
        let text = format!("{PROCESSOR}\n[metrics]\ntenant_label = true\n{bad}\n");
        let Some(fx) = Fixture::new(&text, &[("cafe.toml", TENANT)]) else {
            panic!("fixture")
        };
        let found = issues(fx.load());
        assert!(
            found
                .iter()
                .any(|i| i.contains("metrics.max_tenants: must be between 1 and 1000")),
            "{bad}: {found:?}"
        );
    }
    let typo = format!("{PROCESSOR}\n[metrics]\ntenant_labels = true\n");
    let Some(fx) = Fixture::new(&typo, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    assert!(issues(fx.load()).iter().any(|i| i.contains("tenant_labels")));
}

#[test]
fn pipeline_workers_default_to_the_cores() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(config.pipeline.workers, cores.min(PipelineConfig::MAX_WORKERS));
    assert!(config.pipeline.workers >= 1);
    assert_eq!(config.pipeline, PipelineConfig::default());

    for workers in [1, 4, PipelineConfig::MAX_WORKERS] {
        let text = format!("{PROCESSOR}\n[pipeline]\nworkers = {workers}\n");
        let Some(fx) = Fixture::new(&text, &[("cafe.toml", TENANT)]) else {
            panic!("fixture")
        };
        let loaded = fx.load();
        let Ok(config) = loaded else {
            panic!("workers = {workers}: {loaded:?}")
        };
        assert_eq!(config.pipeline.workers, workers);
    }
}

#[test]
fn pipeline_workers_out_of_range_are_refused_with_what_to_set() {
    for (bad, got) in [
        ("workers = 0", "got 0"),
        ("workers = 65", "got 65"),
        ("workers = 1000", "got 1000"),
    ] {
        let text = format!("{PROCESSOR}\n[pipeline]\n{bad}\n");
        let Some(fx) = Fixture::new(&text, &[("cafe.toml", TENANT)]) else {
            panic!("fixture")
        };
        let found = issues(fx.load());
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        let issue = &found[0];
        assert!(
            issue.contains("accrue.toml: pipeline.workers: must be between 1 and 64") && issue.contains(got),
            "{bad}: {issue}"
        );
        assert!(issue.contains("remove it for that default"), "{bad}: {issue}");
    }
    for (bad, field) in [
        ("workers = -1", "pipeline.workers"),
        ("workers = \"4\"", "pipeline.workers"),
        ("threads = 4", "pipeline"),
    ] {
        let text = format!("{PROCESSOR}\n[pipeline]\n{bad}\n");
        let Some(fx) = Fixture::new(&text, &[("cafe.toml", TENANT)]) else {
            panic!("fixture")
        };
        let found = issues(fx.load());
        assert!(
            found.len() == 1 && found[0].contains(&format!(": {field}")),
            "{bad}: {found:?}"
        );
    }
}

#[test]
fn the_consumer_reports_statistics_for_the_lag_metric() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    let consumer = config.kafka.client_config(ClientRole::Consumer);
    assert_eq!(consumer.get("statistics.interval.ms"), Some("5000"));
    let producer = config.kafka.client_config(ClientRole::Producer);
    assert_eq!(producer.get("statistics.interval.ms"), None);
}

const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn api_tokens_are_loaded_hashed() {
    let tenant = format!("api_tokens_sha256 = [\"{TOKEN_HASH}\"]\n{TENANT}");
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &tenant)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    assert_eq!(
        config.tenants.get("cafe").map(|t| t.api_tokens_sha256.clone()),
        Some(vec![TOKEN_HASH.to_owned()])
    );
}

#[test]
fn api_tokens_must_be_sha256_hex_and_unique_to_a_tenant() {
    for bad in ["secret", &TOKEN_HASH.to_uppercase(), &TOKEN_HASH[1..]] {
        let tenant = format!("api_tokens_sha256 = [\"{bad}\"]\n{TENANT}");
        let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &tenant)]) else {
            panic!("fixture")
        };
        let found = issues(fx.load());
        assert!(
            found
                .iter()
                .any(|i| i.contains("cafe.toml") && i.contains("api_tokens_sha256[0]: must be 64 lower-case hex")),
            "{bad}: {found:?}"
        );
    }
    let a = format!("api_tokens_sha256 = [\"{TOKEN_HASH}\"]\n{TENANT}");
    let b = a.replace("id = \"cafe\"", "id = \"bistro\"");
    let Some(fx) = Fixture::new(PROCESSOR, &[("a.toml", &a), ("b.toml", &b)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    assert!(
        found
            .iter()
            .any(|i| i.contains("b.toml") && i.contains("also a token of tenant \"cafe\"")),
        "{found:?}"
    );
}

#[test]
fn the_publisher_batch_follows_the_producer_settings() {
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    assert_eq!(
        config.kafka.producer_batch(),
        ProducerBatch {
            messages: 1_000,
            bytes: 1_000_000
        }
    );
    let processor = PROCESSOR.replace(
        "group_id = \"g\"",
        "group_id = \"g\"\n[kafka.librdkafka]\n\"batch.num.messages\" = \"500\"\n\"batch.size\" = \"4000000\"\n\"message.max.bytes\" = \"2000000\"",
    );
    let Some(fx) = Fixture::new(&processor, &[("cafe.toml", TENANT)]) else {
        panic!("fixture")
    };
    let Ok(config) = fx.load() else { panic!("valid config") };
    assert_eq!(
        config.kafka.producer_batch(),
        ProducerBatch {
            messages: 500,
            bytes: 2_000_000
        }
    );
}

fn partner_tenant(id: &str, partners: &str) -> String {
    format!(
        "id = \"{id}\"\ncurrency = \"AZN\"\n[branches.main]\n[[programs]]\nid = \"cashback\"\ntype = \"cashback\"\npercent = \"5\"\nbranches = {{ main = \"active\" }}\n{partners}"
    )
}

const ACCEPTED: &str = "sent = true\n[partners.{other}.accepted]\ndiscount_percent = \"5\"\n";

#[test]
fn pending_partnerships_are_listed_whichever_side_sent() {
    let sends_to = |other: &str| format!("[partners.{other}]\nsent = true\n");
    let accepts = |other: &str| format!("[partners.{other}]\n{}", ACCEPTED.replace("{other}", other));
    // "zulu" sorts after its partner "alpha", which has not answered: the
    // case check-config used to skip. "beta" -> "yankee" is the other order.
    // "mike" and "november" are active both ways and never listed.
    let files = [
        ("alpha.toml", partner_tenant("alpha", "")),
        ("zulu.toml", partner_tenant("zulu", &sends_to("alpha"))),
        ("beta.toml", partner_tenant("beta", &sends_to("yankee"))),
        ("yankee.toml", partner_tenant("yankee", "")),
        ("mike.toml", partner_tenant("mike", &accepts("november"))),
        ("november.toml", partner_tenant("november", &accepts("mike"))),
        ("oscar.toml", partner_tenant("oscar", &accepts("papa"))),
        ("papa.toml", partner_tenant("papa", &sends_to("oscar"))),
    ];
    let tenants: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let Some(fx) = Fixture::new(PROCESSOR, &tenants) else {
        panic!("fixture")
    };
    let loaded = fx.load();
    let Ok(config) = loaded else { panic!("{loaded:?}") };
    assert!(partnership(&config.tenants, "mike", "november").is_some());
    let notes = pending_partnerships(&config.tenants);
    let pairs: Vec<&str> = notes
        .iter()
        .filter_map(|n| n.strip_prefix("partnership ")?.split(" is not active").next())
        .collect();
    // Each pair once, lower id first, in id order.
    assert_eq!(
        pairs,
        ["alpha <-> zulu", "beta <-> yankee", "oscar <-> papa"],
        "{notes:?}"
    );
}

#[test]
fn expiry_rules_are_checked() {
    let tenant = format!(
        r#"{TENANT}
[expiry.cashback]
after = "30d"
at_end_of = "month"
[expiry.moon]
after = "0s"
[expiry.bonus]
at_end_of = "quarter"
warn_before = "7d"
[expiry.discount]
after = "7d"
warn_before = "7d"
"#
    );
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &tenant)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    for field in [
        "expiry.cashback",
        "expiry.moon",
        "expiry.moon.after",
        "expiry.discount.warn_before",
    ] {
        assert!(
            found.iter().any(|i| i.contains(&format!(": {field}: "))),
            "no issue for {field} in {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|i| i.contains("expiry.bonus")),
        "a quarter-end rule with a warning is valid: {found:#?}"
    );
    let good =
        format!("timezone = \"Europe/Kyiv\"\n{TENANT}\n[expiry.cashback]\nafter = \"365d\"\nwarn_before = \"14d\"\n");
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &good)]) else {
        panic!("fixture")
    };
    assert!(issues(fx.load()).is_empty(), "{:?}", issues(fx.load()));
    let bad_zone = format!("timezone = \"Mars/Olympus\"\n{TENANT}");
    let Some(fx) = Fixture::new(PROCESSOR, &[("cafe.toml", &bad_zone)]) else {
        panic!("fixture")
    };
    let found = issues(fx.load());
    assert!(
        found.iter().any(|i| i.contains("timezone") && i.contains("IANA")),
        "{found:?}"
    );
}
