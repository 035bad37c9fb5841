//! The HTTP surface on `[http] listen`: `/metrics` (Prometheus text),
//! `/health/live` and `/health/ready`, and the read API under `/v1/`
//! ([`crate::api`]).
//!
//! The unauthenticated endpoints never touch RocksDB or Kafka: the
//! readiness answer comes from [`Progress`], which the consume loop and the
//! publisher keep up to date.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::api::{self, ReadApi};
use crate::pipeline::Progress;
use crate::telemetry;

/// What the handlers read.
#[derive(Clone)]
pub struct Surface {
    metrics: PrometheusHandle,
    progress: Arc<Progress>,
    read: Option<ReadApi>,
}

impl Surface {
    /// Serves `metrics` and the readiness held in `progress`.
    pub fn new(metrics: PrometheusHandle, progress: Arc<Progress>) -> Self {
        Surface {
            metrics,
            progress,
            read: None,
        }
    }

    /// Also serves the read API under `/v1/`.
    pub fn with_read_api(mut self, read: ReadApi) -> Self {
        self.read = Some(read);
        self
    }
}

/// Binds `listen`.
///
/// # Errors
/// If the address cannot be bound.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Accepts connections until the task is dropped. A failing connection is
/// logged at debug level and never stops the server.
pub async fn serve(listener: TcpListener, surface: Surface) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let surface = surface.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let surface = surface.clone();
                async move { Ok::<_, Infallible>(dispatch(&surface, &req).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
            }
        });
    }
}

async fn dispatch(surface: &Surface, req: &Request<Incoming>) -> Response<api::Body> {
    if let Some(read) = &surface.read {
        if req.uri().path().starts_with("/v1/") && req.method() == Method::GET {
            return api::handle(read, req).await;
        }
    }
    route(surface, req).map(http_body_util::Either::Left)
}

fn route(surface: &Surface, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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
