//! The back-office reads of the API: totals (JSON, CSV, xlsx), outstanding
//! balances, every balance with tiers and expiries (CSV), the ledger as
//! xlsx, and a customer's summary. Like every read, each runs on a RocksDB
//! snapshot in `spawn_blocking`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::{error, internal, json, valid_segment, Body};
use crate::programs::TenantConfig;
use crate::read::{self, LedgerQuery, TotalsQuery, XlsxExportError};
use crate::state::RocksStore;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Answers the back-office paths under `/v1/tenants/{t}/` (`rest` is what
/// follows); `None` if `rest` is none of them.
pub(super) async fn route(
    store: Arc<RocksStore>,
    tenant: &TenantConfig,
    rest: &[&str],
    pairs: &[(String, String)],
) -> Option<Response<Body>> {
    let params = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    Some(match rest {
        [what @ ("totals" | "totals.csv" | "totals.xlsx")] => {
            let query = match TotalsQuery::parse(&tenant.id, params) {
                Ok(query) => query,
                Err(err) => return Some(error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string())),
            };
            totals(store, query, what).await
        }
        ["balances", "outstanding"] => {
            if !pairs.is_empty() {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "outstanding balances take no parameters",
                ));
            }
            let id = tenant.id.clone();
            match tokio::task::spawn_blocking(move || read::outstanding(&store.snapshot(), &id)).await {
                Ok(Ok(found)) => json(StatusCode::OK, &found),
                Ok(Err(err)) => internal(&err),
                Err(err) => internal(&err),
            }
        }
        ["balances.csv"] => {
            if !pairs.is_empty() {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "balances.csv takes no parameters",
                ));
            }
            balances_csv(store, tenant.clone())
        }
        ["ledger.xlsx"] => ledger_xlsx(store, tenant, params).await,
        ["customers", customer, "ledger.xlsx"] if valid_segment(customer) => {
            if pairs.iter().any(|(n, _)| n == "customer") {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "parameter `customer`: the customer is in the path",
                ));
            }
            ledger_xlsx(store, tenant, params.chain(std::iter::once(("customer", *customer)))).await
        }
        ["customers", customer, "summary"] if valid_segment(customer) => {
            if !pairs.is_empty() {
                return Some(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "summary takes no parameters",
                ));
            }
            summary(store, tenant.clone(), (*customer).to_owned()).await
        }
        _ => return None,
    })
}

async fn totals(store: Arc<RocksStore>, query: TotalsQuery, what: &str) -> Response<Body> {
    let result = tokio::task::spawn_blocking(move || read::totals(&store.snapshot(), &query)).await;
    let found = match result {
        Ok(Ok(found)) => found,
        Ok(Err(err)) => return internal(&err),
        Err(err) => return internal(&err),
    };
    match what {
        "totals.csv" => file(
            read::totals_csv(&found),
            "text/csv; charset=utf-8",
            "attachment; filename=\"totals.csv\"",
        ),
        "totals.xlsx" => match read::totals_xlsx(&found) {
            Ok(bytes) => file(bytes, XLSX, "attachment; filename=\"totals.xlsx\""),
            Err(err) => internal(&err),
        },
        _ => json(StatusCode::OK, &found),
    }
}

async fn ledger_xlsx<'a>(
    store: Arc<RocksStore>,
    tenant: &TenantConfig,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Response<Body> {
    let (query, paging) = match LedgerQuery::parse(&tenant.id, params) {
        Ok(parsed) => parsed,
        Err(err) => return error(StatusCode::BAD_REQUEST, "bad_request", &err.to_string()),
    };
    if paging.cursor.is_some() || paging.limit != read::DEFAULT_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "parameter `limit`/`cursor`: an export is never paged; drop them",
        );
    }
    let tenant = tenant.clone();
    let result = tokio::task::spawn_blocking(move || read::ledger_xlsx(&store.snapshot(), &query, &tenant)).await;
    match result {
        Ok(Ok(bytes)) => file(bytes, XLSX, "attachment; filename=\"ledger.xlsx\""),
        Ok(Err(err @ XlsxExportError::TooLarge)) => error(StatusCode::BAD_REQUEST, "too_large", &err.to_string()),
        Ok(Err(err)) => internal(&err),
        Err(err) => internal(&err),
    }
}

async fn summary(store: Arc<RocksStore>, tenant: TenantConfig, customer: String) -> Response<Body> {
    let now = time::OffsetDateTime::now_utc();
    let result = tokio::task::spawn_blocking(move || read::summary(&store.snapshot(), &tenant, &customer, now)).await;
    match result {
        Ok(Ok(Some(found))) => json(StatusCode::OK, &found),
        Ok(Ok(None)) => super::not_found(),
        Ok(Err(err)) => internal(&err),
        Err(err) => internal(&err),
    }
}

/// Every balance of the tenant with tiers and the next expiry, streamed as
/// CSV like `ledger.csv`.
fn balances_csv(store: Arc<RocksStore>, tenant: TenantConfig) -> Response<Body> {
    let tenant_id = tenant.id.clone();
    super::stream_csv("balances.csv", tenant_id, move |out| {
        read::balances_csv(&store.snapshot(), &tenant, out)
    })
}

/// A whole file as an attachment.
fn file(bytes: Vec<u8>, content_type: &'static str, disposition: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(bytes))));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_DISPOSITION, HeaderValue::from_static(disposition));
    response
}
