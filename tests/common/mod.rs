//! Shared helpers for black-box tests: a real tansu broker on a free port,
//! unique topics, a config per test, the `accrue` binary, and readers.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The broker every test of this binary uses.
pub struct Broker {
    pub address: String,
    _child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

static BROKER: OnceLock<Broker> = OnceLock::new();

/// The shared broker: `ACCRUE_TEST_BROKERS` if set, else a tansu started
/// for this test binary on a free port, with sqlite storage in a temp dir.
/// tansu is stopped when the test binary exits (its stdin closes).
pub fn broker() -> &'static Broker {
    BROKER.get_or_init(|| {
        if let Ok(address) = std::env::var("ACCRUE_TEST_BROKERS") {
            return Broker { address, _child: None, _dir: None };
        }
        let dir = tempfile::tempdir().expect("temp dir for tansu");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let db_path = dir.path().join("tansu.db");
        let db = format!("sqlite:///{}", db_path.display());
        let tansu = tansu_binary();
        prepare_tansu_db(&tansu, &db_path, &url, port);
        // `sh` holds tansu and kills it when our stdin pipe closes, which
        // happens however this test process ends.
        let script = format!(
            "'{}' broker --listener-url {url} --advertised-listener-url {url} --storage-engine {db} >'{}' 2>&1 & pid=$!; cat >/dev/null; kill $pid; wait $pid",
            tansu.display(),
            dir.path().join("tansu.log").display()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start tansu through sh");
        let address = format!("127.0.0.1:{port}");
        wait_for_port(&address, Duration::from_secs(30));
        Broker { address, _child: Some(child), _dir: Some(dir) }
    })
}

/// tansu 0.6.0's sqlite schema lacks an index on header (topition,
/// offset_id), so every fetched record scans every header stored so far,
/// and one on record (topition, k, offset_id), which its compaction query
/// needs (scripts/lib.sh `prepare_tansu_db`, docs/operations.md). The
/// indexes are made while no tansu has the database open: tansu sets no
/// busy timeout, and a schema change under a live broker once left an
/// admin request hanging for 60 s. So a tansu is started once to create
/// its schema, killed, and the indexes added before the broker the tests
/// use starts.
/// Without the sqlite3 tool (`scripts/test` installs it) tansu runs
/// unindexed, which is only slower.
pub fn prepare_tansu_db(tansu: &Path, db: &Path, url: &str, port: u16) {
    if let Err(err) = Command::new("sqlite3").arg("-version").output() {
        eprintln!("sqlite3 not available ({err}); tansu runs without its header index (slow reads)");
        return;
    }
    let mut init = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
        ])
        .arg(format!("sqlite:///{}", db.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu to create its schema");
    // tansu runs its DDL before it listens.
    wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(30));
    let _ = init.kill();
    let _ = init.wait();
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(
            "create index if not exists header_record on header (topition, offset_id); \
             create index if not exists record_key on record (topition, k, offset_id)",
        )
        .output()
        .expect("run sqlite3");
    if !out.status.success() {
        eprintln!(
            "could not index tansu's header table ({}); reads will be slow",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

pub fn tansu_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = Path::new(&home).join(".cargo/bin/tansu");
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("tansu")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn wait_for_port(address: &str, timeout: Duration) {
    let addr: SocketAddr = address.parse().expect("socket address");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "broker did not listen on {address} within {timeout:?}; is tansu 0.6.0 installed (scripts/test installs it)?"
    );
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Topics, config and state of one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub input: String,
    pub accruals: String,
    pub dead_letter: String,
    pub internal: String,
    pub partitions: i32,
    pub state: PathBuf,
    pub http_port: u16,
    /// Processes `spawn` started: killed when the test ends, so a failed
    /// assertion never leaves an `accrue run` behind.
    spawned: std::sync::Mutex<Vec<u32>>,
}

/// A failing test's directory (config, state, instance logs) is kept when
/// `ACCRUE_TEST_KEEP` is set, and its path printed.
impl Drop for Env {
    fn drop(&mut self) {
        let spawned = std::mem::take(&mut *self.spawned.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for pid in spawned {
            // Only if that pid is still one of our `accrue` processes.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("accrue") {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
        if std::thread::panicking() && std::env::var_os("ACCRUE_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("test directory kept: {}", kept.display());
        }
    }
}

/// The tenants every test uses, as in `config/local`.
pub const TENANTS: [(&str, &str); 2] = [
    (
        "cafe-central.toml",
        r#"
id = "cafe-central"
currency = "AZN"
[branches.downtown]
[branches.airport]
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "5"
branches = { downtown = "active", airport = "inactive" }
"#,
    ),
    (
        "studio-flow.toml",
        r#"
id = "studio-flow"
currency = "EUR"
[branches.main]
[[programs]]
id = "cashback"
type = "cashback"
registered_only = false
percent = "3"
branches = { main = "active" }
"#,
    ),
];

impl Env {
    /// Writes a config with fresh topics and creates them on the broker.
    pub fn new(name: &str, partitions: i32) -> Env {
        let broker = broker();
        let dir = tempfile::tempdir().expect("temp dir");
        let input = unique(&format!("{name}.orders"));
        let accruals = unique(&format!("{name}.accruals"));
        let dead_letter = unique(&format!("{name}.dlq"));
        let internal = unique(&format!("{name}.internal"));
        let state = dir.path().join("state");
        let http_port = free_port();
        let config = dir.path().join("accrue.toml");
        let text = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.librdkafka]
"fetch.wait.max.ms" = "10"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[topics]
input = ["{input}"]
accruals = "{accruals}"
dead_letter = "{dead_letter}"
internal = "{internal}"
[state]
dir = "{state}"
[batch]
max_events = 500
linger_ms = 10
[http]
listen = "127.0.0.1:{http_port}"
[tenants]
dir = "tenants"
"#,
            brokers = broker.address,
            group = unique(&format!("{name}.group")),
            state = state.display(),
        );
        std::fs::write(&config, text).expect("write config");
        std::fs::create_dir(dir.path().join("tenants")).expect("tenants dir");
        for (file, body) in TENANTS {
            std::fs::write(dir.path().join("tenants").join(file), body).expect("write tenant");
        }
        let env = Env {
            dir,
            config,
            input,
            accruals,
            dead_letter,
            internal,
            partitions,
            state,
            http_port,
            spawned: std::sync::Mutex::new(Vec::new()),
        };
        let status = env.accrue(&["topics", "create", "--partitions", &partitions.to_string()]);
        assert!(status.success(), "accrue topics create failed");
        env
    }

    /// Runs an `accrue` subcommand to completion.
    pub fn accrue(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new(env!("CARGO_BIN_EXE_accrue"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .status()
            .expect("run accrue")
    }

    /// Starts `accrue run`, logging to `run-N.log` in the test dir.
    pub fn spawn(&self) -> Child {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let log_path = self
            .dir
            .path()
            .join(format!("run-{}.log", RUNS.fetch_add(1, Ordering::SeqCst)));
        let log = std::fs::File::create(&log_path).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_accrue"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn accrue run");
        self.spawned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(child.id());
        child
    }

    /// Moves the processor to a fresh consumer group. State and positions
    /// live in RocksDB, so the group id does not matter for correctness;
    /// this sidesteps tansu 0.6.0, which can leave a member that joins a
    /// group after its previous member died unassigned indefinitely.
    pub fn new_group(&self) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let start = text.find("group_id = \"").expect("group_id line") + "group_id = \"".len();
        let end = start + text[start..].find('"').expect("closing quote");
        let updated = format!("{}{}{}", &text[..start], unique("group"), &text[end..]);
        std::fs::write(&self.config, updated).expect("write config");
    }

    /// Every run log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("run-") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {name} (last lines)\n"));
                for line in tail.iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// A producer for test input (librdkafka's default partitioner, as accrue's
/// users are told to use).
pub fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker().address)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `(key, payload)` records to `topic` and waits for delivery.
pub fn produce(producer: &BaseProducer, topic: &str, records: &[(Option<String>, Vec<u8>)]) {
    for (key, payload) in records {
        loop {
            let mut record = BaseRecord::to(topic).payload(payload.as_slice());
            if let Some(k) = key {
                record = record.key(k.as_str());
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((_, _)) => producer.poll(Duration::from_millis(20)),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush test input");
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads every record of `topic` from the beginning (all partitions) until
/// the high watermarks.
pub fn read_all(topic: &str, partitions: i32) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker().address)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader");
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).expect("tpl");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let mut done: BTreeMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.values().any(|d| !d) {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if m.offset() + 1 >= ends[&m.partition()] {
                    done.insert(m.partition(), true);
                }
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers,
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// Sends SIGTERM and waits for the exit status.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// A plain HTTP/1.0 request (`head` is the whole request): (status code,
/// body). Status 0 if nothing listens or the connection was refused.
pub fn http_request(port: u16, head: &str) -> (u16, String) {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(head.as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A tenant file of `config/local/tenants`, without its local tokens: a
/// test puts in its own.
pub fn local_tenant(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/local/tenants")
        .join(format!("{name}.toml"));
    std::fs::read_to_string(&path)
        .expect("local tenant file")
        .lines()
        .filter(|l| !l.starts_with("api_tokens_sha256") && !l.starts_with("pos_tokens_sha256"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A plain HTTP/1.0 request with headers and a body: (status code, headers
/// with lower-case names, body). Status 0 if nothing listens.
pub fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, String) {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, BTreeMap::new(), String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A plain HTTP/1.0 GET of `path`: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(port, &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"))
}

/// The Prometheus exposition of an `accrue run` listening on `port`.
pub fn scrape(port: u16) -> String {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// The sum of every sample of `name` whose labels contain each of `labels`.
pub fn sample(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of `topic`'s high watermarks over the partitions of `env`.
pub fn high_watermark_sum(env: &Env, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker().address)
        .create()
        .unwrap();
    (0..env.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, h)| h)
                .unwrap_or(0)
        })
        .sum()
}

/// SIGKILL, as a crash.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes the text of a config-less helper file.
pub fn write(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
}

/// Cents as a decimal money string: 1234 -> "12.34".
pub fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `percent`% of `cents`, rounded half to even, as accrue rounds money.
pub fn half_even_percent(cents: i64, percent: i64) -> i64 {
    let scaled = cents * percent;
    let (q, r) = (scaled / 100, scaled % 100);
    match r.cmp(&50) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
        std::cmp::Ordering::Less => q,
    }
}

/// A time as RFC 3339 text.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The body of a one-line purchase (`order.paid` or `visit.completed`)
/// paid by card, with `extra`'s fields added.
pub fn purchase_body(cents: i64, currency: &str, extra: serde_json::Value) -> serde_json::Value {
    let amount = money(cents);
    let mut body = serde_json::json!({
        "visit_id": "v", "order_id": "o", "sale_type": "dine_in",
        "lines": [{"product": "p", "category": "food", "quantity": "1", "amount": amount}],
        "payments": [{"method": "card", "amount": amount}],
        "total": amount, "currency": currency
    });
    if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

/// An `order.paid` event as JSON bytes.
pub fn order(event_id: &str, tenant: &str, branch: &str, customer: &str, cents: i64, currency: &str) -> Vec<u8> {
    let amount = money(cents);
    serde_json::json!({
        "schema_version": 1,
        "event_id": event_id,
        "type": "order.paid",
        "tenant": tenant,
        "branch": branch,
        "customer": customer,
        "occurred_at": "2026-11-23T12:00:00Z",
        "body": {
            "order_id": format!("o-{event_id}"),
            "sale_type": "dine_in",
            "lines": [{"product": "p-1", "category": "food", "quantity": "1", "amount": amount}],
            "payments": [{"method": "card", "amount": amount}],
            "total": amount,
            "currency": currency
        }
    })
    .to_string()
    .into_bytes()
}
