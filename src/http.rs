//! The HTTP surface on `[http] listen`: `/metrics` (Prometheus text),
//! `/health/live` and `/health/ready`, and the read API under `/v1/`
//! ([`crate::api`]).
//!
//! The unauthenticated endpoints never touch RocksDB or Kafka: the
//! readiness answer comes from [`Progress`], which the consume loop and the
//! publisher keep up to date.
//!
//! The port is bounded (`[http]`, docs/operations.md): a header-read
//! timeout, an idle timeout, a connection cap and a request-body cap, so
//! idle or slow clients cannot hold it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::{self, ReadApi};
use crate::config::HttpConfig;
use crate::pipeline::Progress;
use crate::telemetry;
use crate::till::api::TillApi;

/// What the handlers read.
#[derive(Clone)]
pub struct Surface {
    metrics: PrometheusHandle,
    progress: Arc<Progress>,
    read: Option<ReadApi>,
    till: Option<TillApi>,
}

impl Surface {
    /// Serves `metrics` and the readiness held in `progress`.
    pub fn new(metrics: PrometheusHandle, progress: Arc<Progress>) -> Self {
        Surface {
            metrics,
            progress,
            read: None,
            till: None,
        }
    }

    /// Also serves the till's quotes and authorizations under `/v1/`.
    pub fn with_till_api(mut self, till: TillApi) -> Self {
        self.till = Some(till);
        self
    }

    /// Also serves the read API under `/v1/`.
    pub fn with_read_api(mut self, read: ReadApi) -> Self {
        self.read = Some(read);
        self
    }
}

/// Connections the kernel completes while the accept loop is busy. tokio's
/// default (128) overflowed under a burst of a few hundred connects in
/// `tests/http_limits.rs`, and a dropped SYN costs the client a 1 s retry.
const ACCEPT_BACKLOG: u32 = 1024;

/// Binds `listen`.
///
/// # Errors
/// If the address cannot be bound.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restart may rebind at once.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Accepts connections until the task is dropped, under the limits of
/// `[http]`. A failing connection is logged at debug level and never stops
/// the server.
///
/// At most `max_connections` are open at once: a connection beyond them is
/// answered 503 (if it can still read it) and closed at once, and counted.
pub async fn serve(listener: TcpListener, surface: Surface, limits: HttpConfig) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and the like: wait for connections to end.
                tracing::warn!(error = %err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&stream);
            continue;
        };
        telemetry::http_connections_open(open(&limits, &slots));
        let (surface, limits, slots) = (surface.clone(), limits.clone(), slots.clone());
        tokio::spawn(async move {
            match connection(stream, surface, &limits).await {
                Ended::Closed => {}
                Ended::TimedOut(reason) => {
                    tracing::debug!(%peer, reason, "HTTP connection closed: timed out");
                    telemetry::http_connection_timed_out(reason);
                }
                Ended::Failed(err) => tracing::debug!(%peer, error = %err, "HTTP connection ended with an error"),
            }
            drop(slot);
            telemetry::http_connections_open(open(&limits, &slots));
        });
    }
}

/// Connections holding a slot.
fn open(limits: &HttpConfig, slots: &Semaphore) -> usize {
    limits.max_connections.saturating_sub(slots.available_permits())
}

/// Answers a connection beyond the cap and closes it (on drop).
fn refuse(stream: &TcpStream) {
    telemetry::http_connection_refused();
    // A fresh socket's send buffer is empty, so this never waits; if the
    // client already sent a request the close may reset instead.
    let _ = stream.try_write(&refusal());
}

fn refusal() -> Vec<u8> {
    let body = "{\"error\":\"too_many_connections\",\"message\":\"the server holds [http] max_connections connections; retry shortly\"}\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How a connection ended.
#[derive(Debug)]
enum Ended {
    /// The client closed it, or asked to.
    Closed,
    /// A limit closed it: `header_read`, `keep_alive` or `idle`.
    TimedOut(&'static str),
    /// An I/O or protocol error.
    Failed(hyper::Error),
}

/// Serves one connection: hyper's header-read timeout, our idle timeout
/// around the I/O, and the body cap in [`dispatch`].
async fn connection<I>(io: I, surface: Surface, limits: &HttpConfig) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let body = BodyLimits {
        max_bytes: limits.max_body_bytes,
        timeout: limits.header_read_timeout,
    };
    let busy = activity.clone();
    let service = service_fn(move |req| {
        let surface = surface.clone();
        // Answering is not idleness, however long a read takes.
        let guard = busy.request();
        async move {
            let response = dispatch(&surface, req, body).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let served = builder.serve_connection(io, service);
    tokio::select! {
        result = served => match result {
            Ok(()) => Ended::Closed,
            // hyper's header timer also runs while a kept-alive connection
            // waits for its next request.
            Err(err) if err.is_timeout() => Ended::TimedOut(if activity.awaiting_next_request() {
                "keep_alive"
            } else {
                "header_read"
            }),
            Err(err) => Ended::Failed(err),
        },
        () = activity.idle(limits.idle_timeout) => Ended::TimedOut("idle"),
    }
}

/// When a connection last moved a byte, and whether a request is being
/// answered.
struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last byte read or written.
    last_ms: AtomicU64,
    /// Requests being answered (hyper answers one at a time).
    busy: AtomicUsize,
    /// Requests answered so far.
    answered: AtomicU64,
    /// A byte was read since the last answer.
    read_since_answer: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            read_since_answer: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn read(&self) {
        self.read_since_answer.store(true, Ordering::Relaxed);
        self.touch();
    }

    fn request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// A kept-alive connection that answered a request and has not seen a
    /// byte of the next.
    fn awaiting_next_request(&self) -> bool {
        self.answered.load(Ordering::Relaxed) > 0 && !self.read_since_answer.load(Ordering::Relaxed)
    }

    /// When the connection became idle: `None` while a request is answered.
    fn idle_since(&self) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Completes once the connection has been idle for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            let deadline = match self.idle_since() {
                Some(since) if since + timeout <= now => return,
                Some(since) => since + timeout,
                None => now + timeout,
            };
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Marks a request as being answered until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.read_since_answer.store(false, Ordering::Relaxed);
        // The idle clock restarts when the answer is ready, not when the
        // request arrived.
        self.0.touch();
    }
}

/// An I/O stream that records every byte moved in [`Activity`].
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request body cap and how long the body may take after the headers.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    timeout: Duration,
}

/// Why a request body was refused.
#[derive(Debug, PartialEq, Eq)]
enum BodyRefused {
    /// Over `max_body_bytes`, declared or sent.
    TooLarge,
    /// Not complete within the timeout.
    TimedOut,
    /// The client broke off or sent a malformed body.
    Broken,
}

/// Whether a declared `content-length` is over `max`; a missing or
/// malformed one says nothing (hyper refuses malformed ones itself).
fn declared_too_large(headers: &hyper::HeaderMap, max: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
}

/// Reads the whole body, at most `limits.max_bytes`, within `limits.timeout`.
async fn read_body(req: Request<Incoming>, limits: BodyLimits) -> Result<Request<Bytes>, BodyRefused> {
    if declared_too_large(req.headers(), limits.max_bytes) {
        return Err(BodyRefused::TooLarge);
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(limits.timeout, Limited::new(body, limits.max_bytes).collect()).await {
        Err(_) => Err(BodyRefused::TimedOut),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(BodyRefused::TooLarge),
        Ok(Err(_)) => Err(BodyRefused::Broken),
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, collected.to_bytes())),
    }
}

async fn dispatch(surface: &Surface, req: Request<Incoming>, limits: BodyLimits) -> Response<api::Body> {
    let req = match read_body(req, limits).await {
        Ok(req) => req,
        Err(refused) => return body_refused(&refused, limits),
    };
    if let Some(till) = &surface.till {
        if crate::till::api::is_till(&req) {
            return crate::till::api::handle(till, &req).await;
        }
    }
    if let Some(read) = &surface.read {
        if req.uri().path().starts_with("/v1/") && req.method() == Method::GET {
            return api::handle(read, &req).await;
        }
    }
    route(surface, &req).map(http_body_util::Either::Left)
}

/// The answer to a refused body; the connection is closed after it, as the
/// rest of the body is never read.
fn body_refused(refused: &BodyRefused, limits: BodyLimits) -> Response<api::Body> {
    let (status, reason, code, message) = match refused {
        BodyRefused::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "payload_too_large",
            format!(
                "the request body is over {} bytes ([http] max_body_bytes); send a smaller one",
                limits.max_bytes
            ),
        ),
        BodyRefused::TimedOut => (
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request_timeout",
            format!(
                "the request body did not arrive within {} of its headers ([http] header_read_timeout)",
                humantime_serde::re::humantime::format_duration(limits.timeout)
            ),
        ),
        BodyRefused::Broken => (
            StatusCode::BAD_REQUEST,
            "body_broken",
            "bad_request",
            "the request body broke off or is malformed; send it again".to_owned(),
        ),
    };
    telemetry::http_request_refused(reason);
    let mut response = api::error(status, code, &message);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn route<B>(surface: &Surface, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            // Fresh at every scrape, so the gauges never lag the endpoint.
            let readiness = surface.progress.readiness();
            telemetry::ready(readiness.is_ready());
            telemetry::health(&readiness.conditions(), surface.progress.since_last_poll());
            let mut response = text(StatusCode::OK, surface.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/health/live" => text(StatusCode::OK, "live\n".into()),
        "/health/ready" => ready(surface),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /health/live or /health/ready\n".into(),
        ),
    }
}

fn ready(surface: &Surface) -> Response<Full<Bytes>> {
    let r = surface.progress.readiness();
    let ready = r.is_ready();
    telemetry::ready(ready);
    telemetry::health(&r.conditions(), surface.progress.since_last_poll());
    let failing: Vec<String> = r.failing().iter().map(|name| format!("\"{name}\"")).collect();
    let failure = match surface.progress.failure() {
        Some(reason) => serde_json::Value::String(reason).to_string(),
        None => "null".to_owned(),
    };
    let body = format!(
        "{{\"ready\":{ready},\"failing\":[{}],\"partitions_assigned\":{},\"state_open\":{},\"outbox_draining\":{},\"stopping\":{},\"directory_loaded\":{},\"restoring\":{},\"consume_loop_polling\":{},\"partitions_progressing\":{},\"assignment_ok\":{},\"broker_reachable\":{},\"publisher_ok\":{},\"last_poll_seconds_ago\":{},\"failure\":{failure},\"partitions\":{},\"outbox_pending\":{}}}\n",
        failing.join(","),
        r.partitions_assigned,
        r.state_open,
        r.outbox_draining,
        r.stopping,
        r.directory_loaded,
        !r.restored,
        r.consume_loop_polling,
        r.partitions_progressing,
        r.assignment_ok,
        r.broker_reachable,
        r.publisher_ok,
        surface
            .progress
            .since_last_poll()
            .map_or("null".to_owned(), |d| format!("{:.1}", d.as_secs_f64())),
        surface.progress.owned().len(),
        surface.progress.pending(),
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    use crate::pipeline::Progress;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn limits(header_read: u64, idle: u64) -> HttpConfig {
        HttpConfig {
            header_read_timeout: secs(header_read),
            idle_timeout: secs(idle),
            max_body_bytes: 1024,
            ..HttpConfig::default()
        }
    }

    fn surface() -> Surface {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        Surface::new(handle, Arc::new(Progress::default()))
    }

    /// One connection over an in-memory pipe holding `buffer` bytes each
    /// way: the client's end, and how and when the server ended it.
    fn start(limits: HttpConfig, buffer: usize) -> (DuplexStream, JoinHandle<(Ended, Duration)>) {
        let (client, server) = tokio::io::duplex(buffer);
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let ended = connection(server, surface(), &limits).await;
            (ended, started.elapsed())
        });
        (client, task)
    }

    async fn finish(task: JoinHandle<(Ended, Duration)>) -> (Ended, Duration) {
        match task.await {
            Ok(result) => result,
            Err(err) => panic!("connection task failed: {err}"),
        }
    }

    /// Reads until `want` has arrived (or the server closed).
    async fn read_until(client: &mut DuplexStream, want: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains(want) {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    async fn send(client: &mut DuplexStream, text: &str) {
        if let Err(err) = client.write_all(text.as_bytes()).await {
            panic!("client write: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
        let (mut client, task) = start(limits(10, 60), 4096);
        let (ended, took) = finish(task).await;
        assert!(matches!(ended, Ended::TimedOut("header_read")), "{ended:?}");
        assert!(took >= secs(10) && took < secs(11), "closed after {took:?}");
        assert_eq!(read_until(&mut client, "never").await, "", "closed without an answer");
    }

    #[tokio::test(start_paused = true)]
    async fn trickled_headers_do_not_extend_the_header_read_timeout() {
        let (mut client, task) = start(limits(10, 60), 4096);
        let trickle = tokio::spawn(async move {
            let _ = client.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n").await;
            for _ in 0..20 {
                tokio::time::sleep(secs(2)).await;
                if client.write_all(b"x-slow: 1\r\n").await.is_err() {
                    break;
                }
            }
        });
        let (ended, took) = finish(task).await;
        assert!(matches!(ended, Ended::TimedOut("header_read")), "{ended:?}");
        assert!(took >= secs(10) && took < secs(11), "closed after {took:?}");
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_waits_one_header_read_timeout_for_its_next_request() {
        let (mut client, task) = start(limits(10, 60), 4096);
        send(&mut client, "GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let answer = read_until(&mut client, "live\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let answered = Instant::now();
        let (ended, _) = finish(task).await;
        // hyper's header timer also runs between requests.
        assert!(matches!(ended, Ended::TimedOut("keep_alive")), "{ended:?}");
        let waited = answered.elapsed();
        assert!(waited >= secs(10) && waited < secs(11), "closed after {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_idle_timeout_closes_a_kept_alive_connection_first() {
        let (mut client, task) = start(limits(30, 5), 4096);
        send(&mut client, "GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let _ = read_until(&mut client, "live\n").await;
        let answered = Instant::now();
        let (ended, _) = finish(task).await;
        assert!(matches!(ended, Ended::TimedOut("idle")), "{ended:?}");
        let waited = answered.elapsed();
        assert!(waited >= secs(5) && waited < secs(6), "closed after {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_its_answer_is_idle() {
        // 16 bytes of pipe: the answer to /health/ready does not fit.
        let (mut client, task) = start(limits(10, 5), 16);
        send(&mut client, "GET /health/ready HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let (ended, took) = finish(task).await;
        assert!(matches!(ended, Ended::TimedOut("idle")), "{ended:?}");
        assert!(took >= secs(5) && took < secs(6), "closed after {took:?}");
        let partial = read_until(&mut client, "never").await;
        assert!(
            partial.starts_with("HTTP/1.1 503") && !partial.contains("ready"),
            "{partial}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_idle() {
        let (mut client, task) = start(limits(10, 5), 16);
        send(&mut client, "GET /health/ready HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while !String::from_utf8_lossy(&got).contains("outbox_pending") {
            tokio::time::sleep(secs(2)).await;
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("\"outbox_pending\""), "the whole answer arrives: {text}");
        assert!(
            started.elapsed() > secs(5),
            "the read took longer than the idle timeout"
        );
        drop(client);
        let (ended, _) = finish(task).await;
        assert!(matches!(ended, Ended::Closed | Ended::Failed(_)), "{ended:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_over_the_cap_are_refused_with_413() {
        let (mut client, task) = start(limits(10, 60), 4096);
        send(
            &mut client,
            "POST /health/live HTTP/1.1\r\nhost: x\r\ncontent-length: 1025\r\n\r\n",
        )
        .await;
        let answer = read_until(&mut client, "}").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(answer.contains("\"error\":\"payload_too_large\""), "{answer}");
        assert!(answer.contains("[http] max_body_bytes"), "{answer}");
        let (ended, _) = finish(task).await;
        assert!(matches!(ended, Ended::Closed), "{ended:?}");

        // Chunked, with no declared length: refused once the cap is passed.
        let (mut client, task) = start(limits(10, 60), 1 << 16);
        let chunk = "a".repeat(600);
        send(
            &mut client,
            &format!(
                "POST /health/live HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
            ),
        )
        .await;
        let answer = read_until(&mut client, "}").await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        drop(client);
        let _ = finish(task).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_body_is_read_and_the_request_answered() {
        let (mut client, task) = start(limits(10, 60), 4096);
        send(
            &mut client,
            "GET /health/live HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello",
        )
        .await;
        let answer = read_until(&mut client, "live\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(client);
        let _ = finish(task).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_answered_408_after_the_header_read_timeout() {
        // The idle timeout (5 s) does not apply while a request is read.
        let (mut client, task) = start(limits(10, 5), 4096);
        send(
            &mut client,
            "POST /health/live HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .await;
        let sent = Instant::now();
        let answer = read_until(&mut client, "}").await;
        let waited = sent.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
        assert!(waited >= secs(10) && waited < secs(11), "answered after {waited:?}");
        let _ = finish(task).await;
    }

    #[test]
    fn declared_lengths_are_checked_against_the_cap() {
        let headers = |value: &str| {
            let mut map = hyper::HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(value) {
                map.insert(CONTENT_LENGTH, v);
            }
            map
        };
        assert!(!declared_too_large(&headers("1024"), 1024));
        assert!(declared_too_large(&headers("1025"), 1024));
        assert!(
            !declared_too_large(&headers("99999999999999999999"), 1024),
            "not a u64: hyper refuses it"
        );
        assert!(!declared_too_large(&hyper::HeaderMap::new(), 1024));
    }

    #[test]
    fn the_refusal_is_a_complete_http_answer() {
        let text = String::from_utf8(refusal()).unwrap_or_default();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            panic!("{text}")
        };
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{body}");
    }

    #[tokio::test(start_paused = true)]
    async fn answering_is_not_idleness() {
        let activity = Arc::new(Activity::new());
        tokio::time::advance(secs(3)).await;
        assert_eq!(activity.idle_since(), Some(activity.origin));
        let busy = activity.request();
        assert_eq!(activity.idle_since(), None);
        tokio::time::advance(secs(3)).await;
        drop(busy);
        assert_eq!(
            activity.idle_since(),
            Some(activity.origin + secs(6)),
            "idle from the answer"
        );
        assert!(activity.awaiting_next_request());
        activity.read();
        assert!(!activity.awaiting_next_request());
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_refused_at_once() {
        let listener = match bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(l) => l,
            Err(err) => panic!("bind: {err}"),
        };
        let Ok(addr) = listener.local_addr() else {
            panic!("local addr")
        };
        let config = HttpConfig {
            max_connections: 2,
            ..HttpConfig::default()
        };
        let server = tokio::spawn(serve(listener, surface(), config));
        let connect = || async move {
            match TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(err) => panic!("connect: {err}"),
            }
        };
        let held = [connect().await, connect().await];
        let mut third = connect().await;
        let mut answer = String::new();
        let read = tokio::time::timeout(secs(5), third.read_to_string(&mut answer)).await;
        assert!(matches!(read, Ok(Ok(_))), "the server closed it at once: {read:?}");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too_many_connections"), "{answer}");

        // A slot freed is a slot served.
        drop(held);
        let mut served = false;
        for _ in 0..50 {
            let mut next = connect().await;
            let _ = next.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").await;
            let mut answer = String::new();
            let _ = tokio::time::timeout(secs(5), next.read_to_string(&mut answer)).await;
            if answer.split_whitespace().nth(1) == Some("200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "a connection after the held ones closed was served");
        server.abort();
    }
}
