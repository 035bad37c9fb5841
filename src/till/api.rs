//! The till's HTTP endpoints: `POST /v1/tenants/{t}/quote`,
//! `POST /v1/tenants/{t}/authorizations` and
//! `DELETE /v1/tenants/{t}/authorizations/{id}?customer=...`, under a POS
//! token (`pos_tokens_sha256`). docs/api.md describes them.
// A refused request is its answer: returned as the error, once per request.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{ownership, Till, TillAnswer, TillOp, TillRequest};
use crate::api::{self, Body, StoreSlot};
use crate::contract::{self, customer_key, partition_for, Event};
use crate::directory::NetworkView;
use crate::pipeline::{Programs, Progress};
use crate::programs::TenantConfig;
use crate::rules;
use crate::rules::till::{self as rules_till, Refusal};
use crate::telemetry;
use crate::timers::{Clock, SystemClock};

/// Default life of a hold.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(15 * 60);
/// Longest life of a hold.
pub const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);
/// How long an authorization waits for its batch before answering 503.
const WAIT: Duration = Duration::from_secs(10);

/// What the till handlers need.
#[derive(Clone)]
pub struct TillApi {
    store: StoreSlot,
    programs: Arc<Programs>,
    till: Arc<Till>,
    progress: Arc<Progress>,
    me: String,
}

impl TillApi {
    /// Serves quotes from `store` and queues holds in `till` for the
    /// partitions `progress` says this instance owns; `me` is this
    /// instance's advertised URL.
    pub fn new(
        store: StoreSlot,
        programs: Arc<Programs>,
        till: Arc<Till>,
        progress: Arc<Progress>,
        me: String,
    ) -> Self {
        TillApi {
            store,
            programs,
            till,
            progress,
            me,
        }
    }
}

/// Whether `req` is a till request (the caller then hands it to [`handle`]).
pub fn is_till<B>(req: &Request<B>) -> bool {
    let path = req.uri().path();
    let method = req.method();
    path.starts_with("/v1/tenants/")
        && ((method == Method::POST && (path.ends_with("/quote") || path.ends_with("/authorizations")))
            || (method == Method::DELETE && path.contains("/authorizations/")))
}

/// The body of a quote or an authorization: the order as the POS will send
/// it in `order.paid` (or `visit.completed`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TillBody {
    customer: String,
    branch: String,
    #[serde(default = "order_paid", rename = "type")]
    event_type: String,
    #[serde(default)]
    occurred_at: Option<String>,
    order: Box<serde_json::value::RawValue>,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

fn order_paid() -> String {
    "order.paid".into()
}

/// Answers a till request.
pub async fn handle(api: &TillApi, req: &Request<Bytes>) -> Response<Body> {
    let (_, tenants) = api.programs.current();
    let tenant = match api::bearer(req).map(api::hash_token) {
        Some(hash) => tenants.values().find(|t| t.pos_tokens_sha256.contains(&hash)).cloned(),
        None => None,
    };
    let Some(tenant) = tenant else {
        return api::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> with a till token of the tenant (pos_tokens_sha256); read tokens cannot hold balance",
        );
    };
    let segments: Vec<String> = match req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(crate::read::percent_decode)
        .collect::<Option<Vec<_>>>()
    {
        Some(s) => s,
        None => return not_found(),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let (endpoint, response) = match (req.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "tenants", t, "quote"]) if *t == tenant.id => ("quote", quote(api, &tenant, req).await),
        (&Method::POST, ["v1", "tenants", t, "authorizations"]) if *t == tenant.id => {
            ("authorize", authorize(api, &tenant, req).await)
        }
        (&Method::DELETE, ["v1", "tenants", t, "authorizations", id]) if *t == tenant.id => {
            ("release", release(api, &tenant, req, id).await)
        }
        _ => return not_found(),
    };
    telemetry::till_request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

fn not_found() -> Response<Body> {
    api::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such resource for this token; see docs/api.md",
    )
}

fn bad_request(message: &str) -> Response<Body> {
    api::error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The request decoded and validated exactly as the stream decodes the
/// event: the same errors, the same limits.
fn decode(tenant: &TenantConfig, body: &Bytes) -> Result<(TillBody, Event), Response<Body>> {
    let till: TillBody = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("the body is not a till request ({e}); see docs/api.md")))?;
    if !matches!(till.event_type.as_str(), "order.paid" | "visit.completed") {
        return Err(bad_request("`type` must be order.paid or visit.completed"));
    }
    let occurred_at = match &till.occurred_at {
        Some(at) => at.clone(),
        None => OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|_| bad_request("the clock is out of range"))?,
    };
    let mut id = [0u8; 12];
    getrandom::getrandom(&mut id).map_err(|_| internal(&"no randomness"))?;
    let envelope = json!({
        "schema_version": 1,
        "event_id": format!("till-{}", data_encoding::HEXLOWER.encode(&id)),
        "type": till.event_type,
        "tenant": tenant.id,
        "branch": till.branch,
        "customer": till.customer,
        "occurred_at": occurred_at,
        "body": till.order,
    });
    let bytes = serde_json::to_vec(&envelope).map_err(|e| internal(&e))?;
    let event = contract::decode(&bytes).map_err(|e| {
        api::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.kind.as_str(),
            &format!("{e}; the stream would dead-letter this order"),
        )
    })?;
    crate::pipeline::batch::check_for_tenant(tenant, &event).map_err(|e| {
        api::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.kind.as_str(),
            &format!("{e}; the stream would dead-letter this order"),
        )
    })?;
    Ok((till, event))
}

fn internal(err: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %err, "till request failed");
    api::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed; see the server log",
    )
}

/// The customer's partition, if this instance applies it; otherwise the
/// answer: a redirect to the owner, or 503.
fn owned_partition(api: &TillApi, tenant: &str, customer: &str, req: &Request<Bytes>) -> Result<u32, Response<Body>> {
    let partitions = api.till.partitions();
    if partitions == 0 {
        return Err(unavailable("the processor is starting; retry shortly"));
    }
    let p = partition_for(customer_key(tenant, customer).as_bytes(), partitions);
    if api.progress.owns(p) {
        return Ok(p);
    }
    let fresh_after = SystemClock
        .now_ms()
        .saturating_sub(i64::try_from(ownership::FRESH.as_millis()).unwrap_or(i64::MAX));
    let owner = api.till.directory().and_then(|d| d.owner_of(p, &api.me, fresh_after));
    match owner {
        Some(url) => {
            let target = match req.uri().path_and_query() {
                Some(pq) => format!("{url}{pq}"),
                None => url.clone(),
            };
            telemetry::till_redirected();
            let mut response = api::error(
                StatusCode::TEMPORARY_REDIRECT,
                "not_owner",
                &format!("partition {p} of this customer is applied by {url}; send the request there"),
            );
            if let Ok(value) = HeaderValue::from_str(&target) {
                response.headers_mut().insert(LOCATION, value);
            }
            Err(response)
        }
        None => Err(api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "owner_unknown",
            &format!("no instance applies partition {p} now (a rebalance is under way); retry shortly"),
        )),
    }
}

fn unavailable(message: &str) -> Response<Body> {
    api::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

async fn quote(api: &TillApi, tenant: &TenantConfig, req: &Request<Bytes>) -> Response<Body> {
    let (_, event) = match decode(tenant, req.body()) {
        Ok(decoded) => decoded,
        Err(response) => return response,
    };
    let p = match owned_partition(api, &tenant.id, &event.customer, req) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let Some(store) = api.store.get().cloned() else {
        return unavailable("the state store is not open yet; retry shortly");
    };
    let Some(directory) = api.till.directory().cloned() else {
        return unavailable("the customer directory is not loaded yet; retry shortly");
    };
    let (_, tenants) = api.programs.current();
    // On the runtime, not the blocking pool: two point reads of one
    // snapshot (memtable or block cache) and the pure rules take tens of
    // microseconds, less than a hand-off to another thread under load.
    let result = (|| {
        let snapshot = store.snapshot();
        let (customer, balances) = super::state::customer_state(&snapshot, p, tenant, &event.customer)?;
        let loyalty = super::state::loyalty_state(&snapshot, p, tenant, &event.customer)?;
        let network = NetworkView {
            directory: &directory,
            tenants: &tenants,
        };
        let input = rules::Input {
            tenant,
            event: &event,
            customer: &customer,
            balances: &balances,
            original: None,
            booking: None,
            code_key: &[],
            network: &network,
            loyalty: &loyalty,
            now_ms: SystemClock.now_ms(),
        };
        let quote = rules_till::quote(&input).map_err(|o| o.reason())?;
        super::render::render_quote(&input, &quote).map_err(|o| o.reason())
    })();
    match result {
        Ok(body) => json(StatusCode::OK, &body),
        Err(err) => internal(&err),
    }
}

async fn authorize(api: &TillApi, tenant: &TenantConfig, req: &Request<Bytes>) -> Response<Body> {
    let (body, event) = match decode(tenant, req.body()) {
        Ok(decoded) => decoded,
        Err(response) => return response,
    };
    let life = match body.expires_in_seconds {
        None => DEFAULT_HOLD,
        Some(s) if (1..=MAX_HOLD.as_secs()).contains(&s) => Duration::from_secs(s),
        Some(_) => return bad_request("`expires_in_seconds` must be 1 to 86400"),
    };
    let p = match owned_partition(api, &tenant.id, &event.customer, req) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let mut id = [0u8; 16];
    if getrandom::getrandom(&mut id).is_err() {
        return internal(&"no randomness");
    }
    let id = format!("au_{}", data_encoding::HEXLOWER.encode(&id));
    let life_ms = i64::try_from(life.as_millis()).unwrap_or(i64::MAX);
    let expires_ms = SystemClock.now_ms().saturating_add(life_ms);
    let customer = event.customer.clone();
    let answer = ask(
        api,
        p,
        tenant,
        &customer,
        TillOp::Authorize {
            event: Box::new(event),
            id,
            expires_ms,
        },
    )
    .await;
    match answer {
        Ok(TillAnswer::Held(hold)) => json(
            StatusCode::CREATED,
            &super::render::render_hold(tenant, &customer, &hold),
        ),
        Ok(TillAnswer::Refused(refusal)) => refused(&refusal),
        Ok(other) => unexpected(other),
        Err(response) => response,
    }
}

fn refused(refusal: &Refusal) -> Response<Body> {
    let (status, code, message) = match refusal {
        Refusal::Rejected(outcome) => match &outcome.rejection {
            Some(r) => (StatusCode::CONFLICT, r.code.as_str(), r.reason.clone()),
            None => (StatusCode::CONFLICT, "rejected", "the order would be rejected".to_owned()),
        },
        Refusal::NothingToHold => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing_to_hold",
            "the order pays nothing from a balance; settle it without an authorization".to_owned(),
        ),
        Refusal::Partner => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "partner_not_held",
            "a partner's customer pays from the deposit the partner keeps; it is checked when the order is applied, use a quote at the till".to_owned(),
        ),
        Refusal::TooManyHolds => (
            StatusCode::CONFLICT,
            "too_many_holds",
            format!(
                "the customer has {} active authorizations; settle or cancel one first",
                rules_till::MAX_HOLDS
            ),
        ),
        Refusal::Overflow(o) => (StatusCode::UNPROCESSABLE_ENTITY, o.code().as_str(), o.reason()),
    };
    api::error(status, code, &message)
}

fn unexpected(answer: TillAnswer) -> Response<Body> {
    match answer {
        TillAnswer::NotOwner => api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "owner_moved",
            "the customer's partition moved to another instance while the request waited; retry",
        ),
        TillAnswer::Failed(err) => {
            tracing::error!(error = %err, "a till request's batch failed");
            unavailable("the state could not be written; nothing changed; retry")
        }
        TillAnswer::NoSuchHold => api::error(
            StatusCode::NOT_FOUND,
            "no_such_authorization",
            "no active authorization has this id for this customer (consumed, released or expired)",
        ),
        other => internal(&format!("unexpected answer {other:?}")),
    }
}

/// Hands `op` to the partition's worker and waits for the durable answer.
async fn ask(
    api: &TillApi,
    p: u32,
    tenant: &TenantConfig,
    customer: &str,
    op: TillOp,
) -> Result<TillAnswer, Response<Body>> {
    let (reply, answer) = oneshot::channel();
    api.till.submit(TillRequest {
        partition: p,
        tenant: tenant.id.clone(),
        customer: customer.to_owned(),
        op,
        reply,
    });
    match tokio::time::timeout(WAIT, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(unavailable(
            "the batch holding this request was dropped (a rebalance or a failure); nothing was held; retry",
        )),
        Err(_) => Err(unavailable(
            "the processor did not apply the request in time; it may still be applied: retry with the same order_id, which returns the same hold",
        )),
    }
}

async fn release(api: &TillApi, tenant: &TenantConfig, req: &Request<Bytes>, id: &str) -> Response<Body> {
    let customer = crate::read::split_query(req.uri().query())
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(n, _)| n == "customer").map(|(_, v)| v));
    let Some(customer) = customer.filter(|c| !c.is_empty() && c.len() <= 256) else {
        return bad_request("parameter `customer`: the authorization's customer is required");
    };
    if id.is_empty() || id.len() > 64 {
        return not_found();
    }
    let p = match owned_partition(api, &tenant.id, &customer, req) {
        Ok(p) => p,
        Err(response) => return response,
    };
    match ask(api, p, tenant, &customer, TillOp::Release { id: id.to_owned() }).await {
        Ok(TillAnswer::Released) => json(StatusCode::OK, &json!({"authorization_id": id, "released": true})),
        Ok(other) => unexpected(other),
        Err(response) => response,
    }
}

fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(http_body_util::Either::Left(http_body_util::Full::new(Bytes::from(
        body,
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
