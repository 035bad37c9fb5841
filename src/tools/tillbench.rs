//! The till's latency benchmark (`accrue till-bench`, driven by
//! `scripts/bench-till`): quotes and authorizations at a fixed rate, open
//! loop, over keep-alive connections; each latency counts from when the
//! request was due, so a slow answer also delays the ones queued behind it
//! (no coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

/// What to send.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The instance's HTTP address.
    pub addr: SocketAddr,
    /// The tenant.
    pub tenant: String,
    /// The branch the orders are paid in.
    pub branch: String,
    /// The tenant's POS token.
    pub token: String,
    /// Requests per second.
    pub rps: u32,
    /// How long.
    pub seconds: u32,
    /// Customers the requests spread over (`till-bench-0` ...).
    pub customers: u32,
    /// Share of authorizations, in percent; the rest are quotes.
    pub authorize_percent: u32,
    /// Connections kept open.
    pub connections: usize,
}

/// The customers' ids.
pub fn customer(i: u32) -> String {
    format!("till-bench-{i}")
}

/// Balance adjustments that give every bench customer 1000.00 cashback:
/// `(key, json)` pairs for the input topic.
pub fn seed_events(tenant: &str, branch: &str, customers: u32) -> Vec<(String, String)> {
    (0..customers)
        .map(|i| {
            let c = customer(i);
            let json = serde_json::json!({
                "schema_version": 1, "event_id": format!("till-bench-seed-{i}"), "type": "balance.adjust",
                "tenant": tenant, "branch": branch, "customer": c, "occurred_at": "2026-11-01T00:00:00Z",
                "body": {"account": "cashback", "amount": "1000.00", "description": "till bench", "operator": "bench"}
            });
            (format!("{tenant}:{c}"), json.to_string())
        })
        .collect()
}

/// Latencies and answers of one endpoint.
#[derive(Debug, Default)]
pub struct Endpoint {
    /// Every latency, sorted once the run ends.
    pub latencies: Vec<Duration>,
    /// Answers by HTTP status (0: the connection failed).
    pub statuses: BTreeMap<u16, u64>,
}

impl Endpoint {
    /// The `q`-quantile latency in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// The run's results, by endpoint (`quote`, `authorize`).
#[derive(Debug, Default)]
pub struct Report {
    /// By endpoint name.
    pub endpoints: BTreeMap<&'static str, Endpoint>,
    /// Requests sent per second, achieved.
    pub achieved_rps: f64,
}

struct Job {
    endpoint: &'static str,
    path: String,
    body: String,
    due: Instant,
}

/// Runs the benchmark.
///
/// # Errors
/// If no connection can be opened.
pub async fn run(settings: Settings) -> std::io::Result<Report> {
    let (tx, rx) = mpsc::channel::<Job>(100_000);
    let rx = Arc::new(Mutex::new(rx));
    let results: Arc<Mutex<Report>> = Arc::new(Mutex::new(Report::default()));
    let mut workers = Vec::new();
    for _ in 0..settings.connections.max(1) {
        let stream = TcpStream::connect(settings.addr).await?;
        stream.set_nodelay(true)?;
        let (rx, results, settings) = (rx.clone(), results.clone(), settings.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Some(BufReader::new(stream));
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                let status = match conn.as_mut() {
                    Some(c) => send(c, &settings, &job).await.unwrap_or(0),
                    None => 0,
                };
                if status == 0 {
                    // Reconnect for the next job; this one counts as failed.
                    conn = TcpStream::connect(settings.addr).await.ok().map(BufReader::new);
                }
                let took = job.due.elapsed();
                let mut report = results.lock().await;
                let endpoint = report.endpoints.entry(job.endpoint).or_default();
                endpoint.latencies.push(took);
                *endpoint.statuses.entry(status).or_default() += 1;
            }
        }));
    }
    let total = u64::from(settings.rps) * u64::from(settings.seconds);
    let start = Instant::now();
    let step = Duration::from_secs_f64(1.0 / f64::from(settings.rps.max(1)));
    for i in 0..total {
        let due = start + step.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let c = (i.wrapping_mul(2_654_435_761) % u64::from(settings.customers.max(1))) as u32;
        let authorize = (i % 100) < u64::from(settings.authorize_percent);
        let order_id = format!("tb-{i}");
        let order = serde_json::json!({
            "customer": customer(c), "branch": settings.branch, "expires_in_seconds": 60,
            "order": {"order_id": order_id, "sale_type": "dine_in",
                "lines": [{"product": "lunch", "category": "food", "quantity": "1", "amount": "20.00"}],
                "payments": [{"method": "cashback", "amount": "1.00"}, {"method": "card", "amount": "19.00"}],
                "total": "20.00", "currency": "AZN"}
        });
        let (endpoint, what) = if authorize {
            ("authorize", "authorizations")
        } else {
            ("quote", "quote")
        };
        let job = Job {
            endpoint,
            path: format!("/v1/tenants/{}/{what}", settings.tenant),
            body: order.to_string(),
            due,
        };
        if tx.send(job).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut report = std::mem::take(&mut *results.lock().await);
    let sent: usize = report.endpoints.values().map(|e| e.latencies.len()).sum();
    report.achieved_rps = sent as f64 / elapsed.max(f64::MIN_POSITIVE);
    for e in report.endpoints.values_mut() {
        e.latencies.sort_unstable();
    }
    Ok(report)
}

/// Sends one request on a keep-alive connection; the answer's status.
async fn send(conn: &mut BufReader<TcpStream>, settings: &Settings, job: &Job) -> std::io::Result<u16> {
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: accrue\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        job.path,
        settings.token,
        job.body.len(),
        job.body
    );
    conn.get_mut().write_all(request.as_bytes()).await?;
    // Headers, then a Content-Length body (the server always sends one).
    let mut head = Vec::with_capacity(512);
    while !head.ends_with(b"\r\n\r\n") {
        let b = conn.read_u8().await?;
        head.push(b);
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("headers too long"));
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok(status)
}
