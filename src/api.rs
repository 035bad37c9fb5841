//! The read API under `/v1/` on the HTTP port: bearer-token auth scoped to
//! one tenant, balances, ledger pages and streamed CSV exports, and the
//! back office's totals, xlsx exports and customer summary ([`reports`]).
//! Every read runs on a RocksDB snapshot in `spawn_blocking`, never on the
//! runtime.
//!
//! Errors never say whether another tenant or customer exists: a token
//! asking for a tenant it is not scoped to gets the same 404 as a customer
//! that does not exist.

use std::io::Write;
use std::sync::{Arc, OnceLock};

mod reports;

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use http_body_util::{Either, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::pipeline::Programs;
use crate::programs::TenantConfig;
use crate::read::{self, Format, LedgerQuery};
use crate::state::RocksStore;

/// The state store, once `accrue run` has opened it.
pub type StoreSlot = Arc<OnceLock<Arc<RocksStore>>>;

/// A response body: a whole one, or a CSV stream.
pub type Body = Either<Full<Bytes>, Channel<Bytes, ExportError>>;

/// Why a CSV stream stopped early; the client sees a truncated response.
#[derive(Debug, thiserror::Error)]
#[error("the export stopped: the state store failed; see the server log")]
pub struct ExportError;

/// Bytes per chunk of a CSV stream, and chunks in flight: the memory an
/// export may hold is about their product, whatever the row count.
const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the read handlers need.
#[derive(Clone)]
pub struct ReadApi {
    store: StoreSlot,
    programs: Arc<Programs>,
}

impl ReadApi {
    /// Reads from the store in `store` (empty until it is opened: 503) for
    /// the tenants, and their tokens, in `programs` (reloaded on SIGHUP).
    pub fn new(store: StoreSlot, programs: Arc<Programs>) -> Self {
        ReadApi { store, programs }
    }
}

/// The SHA-256 of a token, lower-case hex, as stored in tenant files.
pub fn hash_token(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// Answers a request whose path starts with `/v1/`.
pub async fn handle<B>(api: &ReadApi, req: &Request<B>) -> Response<Body> {
    let (_, tenants) = api.programs.current();
    let tenant = match bearer(req).map(hash_token) {
        Some(hash) => tenants.values().find(|t| t.api_tokens_sha256.contains(&hash)).cloned(),
        None => None,
    };
    let Some(tenant) = tenant else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> with a token configured for the tenant",
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"accrue\""));
        return response;
    };
    handle_as(api, tenant, req).await
}

/// Answers a `/v1/` request of `tenant`, whose caller is already
/// authenticated (the bearer token above, or a back-office session).
pub async fn handle_as<B>(api: &ReadApi, tenant: TenantConfig, req: &Request<B>) -> Response<Body> {
    let segments: Option<Vec<String>> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(read::percent_decode)
        .collect();
    let Some(segments) = segments else {
        return not_found();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (path_tenant, rest) = match segments.as_slice() {
        ["v1", "tenants", t, rest @ ..] => (*t, rest),
        _ => return not_found(),
    };
    if path_tenant != tenant.id {
        return not_found();
    }
    let Some(store) = api.store.get().cloned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the state store is not open yet; retry shortly",
        );
    };
    let pairs = match read::split_query(req.uri().query()) {
        Ok(pairs) => pairs,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string()),
    };
    let params = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    match rest {
        ["customers", customer, "balances"] if valid_segment(customer) => {
            if !pairs.is_empty() {
                return error(StatusCode::BAD_REQUEST, "bad_request", "balances take no parameters");
            }
            balances(store, tenant, (*customer).to_owned()).await
        }
        ["customers", customer, what @ ("ledger" | "ledger.csv")] if valid_segment(customer) => {
            if pairs.iter().any(|(n, _)| n == "customer") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "parameter `customer`: the customer is in the path",
                );
            }
            let params = params.chain(std::iter::once(("customer", *customer)));
            ledger(store, &tenant, params, *what == "ledger.csv").await
        }
        [what @ ("ledger" | "ledger.csv")] => ledger(store, &tenant, params, *what == "ledger.csv").await,
        _ => reports::route(store, &tenant, rest, &pairs)
            .await
            .unwrap_or_else(not_found),
    }
}

fn valid_segment(text: &str) -> bool {
    !text.is_empty() && text.len() <= 256 && !text.contains('\0')
}

/// The bearer token of `req`, if it sends one.
pub(crate) fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn balances(store: Arc<RocksStore>, tenant: TenantConfig, customer: String) -> Response<Body> {
    let result = tokio::task::spawn_blocking(move || read::balances(&store.snapshot(), &tenant, &customer)).await;
    match result {
        Ok(Ok(Some(found))) => json(StatusCode::OK, &found),
        Ok(Ok(None)) => not_found(),
        Ok(Err(err)) => internal(&err),
        Err(err) => internal(&err),
    }
}

async fn ledger<'a>(
    store: Arc<RocksStore>,
    tenant: &TenantConfig,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    csv: bool,
) -> Response<Body> {
    let (query, paging) = match LedgerQuery::parse(&tenant.id, params) {
        Ok(parsed) => parsed,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string()),
    };
    if !csv {
        let result = tokio::task::spawn_blocking(move || read::page(&store.snapshot(), &query, paging)).await;
        return match result {
            Ok(Ok(page)) => json(StatusCode::OK, &page),
            Ok(Err(err)) => internal(&err),
            Err(err) => internal(&err),
        };
    }
    if paging.cursor.is_some() || paging.limit != read::DEFAULT_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "parameter `limit`/`cursor`: an export is never paged; drop them",
        );
    }
    let tenant_id = tenant.id.clone();
    stream_csv("ledger.csv", tenant_id, move |out| {
        read::export(&store.snapshot(), &query, Format::Csv, out)
    })
}

/// A CSV attachment named `filename`, streamed as `write` produces it on a
/// blocking thread: a client that reads slowly holds the writer back, one
/// that goes away stops it, and a read error ends the body with an error
/// (the client sees a broken transfer, never a complete-looking file).
fn stream_csv(
    filename: &'static str,
    tenant_id: String,
    write: impl FnOnce(&mut ChunkWriter) -> Result<u64, read::ReadError> + Send + 'static,
) -> Response<Body> {
    let (tx, body) = Channel::new(CHUNKS_IN_FLIGHT);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            runtime,
        };
        match write(&mut out) {
            Ok(rows) => tracing::debug!(tenant = %tenant_id, rows, filename, "CSV export sent"),
            Err(read::ReadError::Write(err)) => {
                tracing::debug!(error = %err, filename, "CSV export stopped by the client")
            }
            Err(err) => {
                tracing::error!(error = %err, filename, "CSV export failed");
                if let Some(tx) = out.tx.take() {
                    tx.abort(ExportError);
                }
            }
        }
    });
    let mut response = Response::new(Either::Right(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    response
}

/// Sends what is written as body chunks, waiting while the client is slow.
struct ChunkWriter {
    tx: Option<Sender<Bytes, ExportError>>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let tx = self
            .tx
            .as_mut()
            .ok_or_else(|| std::io::Error::other("export aborted"))?;
        self.runtime
            .block_on(tx.send_data(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(err) => internal(&err),
    }
}

/// A JSON error answer: `{"error": code, "message": message}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": code, "message": message }))
}

fn not_found() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such resource for this token; see docs/api.md",
    )
}

/// A server-side failure: logged in full, answered without detail.
fn internal(err: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %err, "read API request failed");
    let body = Bytes::from_static(b"{\"error\":\"internal\",\"message\":\"the read failed; see the server log\"}\n");
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let req = |value: &str| Request::builder().header(AUTHORIZATION, value).body(()).ok();
        assert_eq!(req("Bearer abc").as_ref().and_then(bearer), Some("abc"));
        assert_eq!(req("bearer  abc ").as_ref().and_then(bearer), Some("abc"));
        assert_eq!(req("Basic abc").as_ref().and_then(bearer), None);
        assert_eq!(req("Bearer ").as_ref().and_then(bearer), None);
    }
}
