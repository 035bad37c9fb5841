//! The back office under `/admin/` on the HTTP port: server-rendered pages
//! for a tenant's staff, signed in with the tenant's API token.
//!
//! - [`session`]: the signed, HttpOnly, SameSite=Strict cookie and the
//!   CSRF token of forms that change something.
//! - [`dashboard`]: a period's entries by type and by branch, a chart per
//!   day, outstanding balances.
//! - [`customer`]: search by id or phone, balances, paged history and the
//!   manual adjustment form; [`adjust`] produces its `balance.adjust` event
//!   and reports what the processor made of it.
//! - [`programs`]: the programs in force per branch.
//! - Exports go through [`crate::api`] with the session's tenant, so a
//!   browser needs no bearer header.
//!
//! Every stored or requested string reaches HTML through [`html::esc`].
//! Reads run on RocksDB snapshots in `spawn_blocking`, as the read API's do.

mod adjust;
mod chart;
mod customer;
mod dashboard;
mod figures;
mod html;
mod programs;
mod session;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};

use crate::api::{self, ReadApi, StoreSlot};
use crate::config::Config;
use crate::pipeline::Programs;
use crate::programs::TenantConfig;
use crate::read;
use crate::state::RocksStore;
use crate::till::Till;

/// Why the back office could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No randomness for the session key.
    #[error(
        "cannot make the back office's session key: {0}; check the system's random source or set [http] admin = false"
    )]
    Random(String),
    /// The producer of adjustments could not be made.
    #[error("cannot create the back office's Kafka producer: {0}; check [kafka] or set [http] admin = false")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// No input topic to produce adjustments to.
    #[error("[topics] input is empty: the back office produces adjustments to the first input topic")]
    NoInputTopic,
}

/// What the back-office pages need.
#[derive(Clone)]
pub struct Admin {
    read: ReadApi,
    store: StoreSlot,
    programs: Arc<Programs>,
    /// Holds the customer directory once the processor has loaded it.
    till: Arc<Till>,
    commands: Arc<adjust::Commands>,
    keys: Arc<session::Keys>,
}

impl Admin {
    /// The back office of `config`'s processor, reading from `store` and
    /// the customer directory `till` shares (empty until `accrue run` opens
    /// them) and answering exports through `read`.
    ///
    /// # Errors
    /// [`AdminError`] if the session key or the Kafka producer cannot be made.
    pub fn new(
        config: &Config,
        read: ReadApi,
        store: StoreSlot,
        programs: Arc<Programs>,
        till: Arc<Till>,
    ) -> Result<Admin, AdminError> {
        let keys = session::Keys::random().map_err(|e| AdminError::Random(e.to_string()))?;
        Ok(Admin {
            read,
            store,
            programs,
            till,
            commands: Arc::new(adjust::Commands::new(config)?),
            keys: Arc::new(keys),
        })
    }
}

/// A signed-in request: the tenant, its session, and what the page reads.
pub(crate) struct Ctx {
    tenant: TenantConfig,
    csrf: String,
    store: Arc<RocksStore>,
    params: Vec<(String, String)>,
}

impl Ctx {
    /// The value of query (or form) parameter `name`, empty if absent.
    fn param(&self, name: &str) -> &str {
        param(&self.params, name)
    }

    /// The signed-in chrome around `body`.
    fn page(&self, title: &str, current: &str, body: &str) -> Response<api::Body> {
        let name = if self.tenant.name.is_empty() {
            &self.tenant.id
        } else {
            &self.tenant.name
        };
        html_response(StatusCode::OK, html::page(title, name, current, &self.csrf, body))
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

/// Whether `path` belongs to the back office.
pub fn owns(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

/// Answers a request under `/admin/`.
pub async fn handle(admin: &Admin, req: &Request<Bytes>) -> Response<api::Body> {
    let path = req.uri().path();
    let segments: Option<Vec<String>> = path
        .trim_start_matches("/admin")
        .trim_start_matches('/')
        .split('/')
        .map(read::percent_decode)
        .collect();
    let Some(segments) = segments else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad address",
            "The address is not valid percent-encoding.",
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if path == "/admin" {
        return redirect("/admin/", None);
    }
    let method = req.method().clone();
    // Forms post url-encoded bodies; GETs carry the query string.
    let raw = if method == Method::POST {
        std::str::from_utf8(req.body()).ok().map(str::to_owned)
    } else {
        req.uri().query().map(str::to_owned)
    };
    let params = match read::split_query(raw.as_deref()) {
        Ok(p) => p,
        Err(err) => return message(StatusCode::BAD_REQUEST, "Bad request", &err.to_string()),
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, ["login"]) => return login_form(StatusCode::OK, ""),
        (&Method::POST, ["login"]) => return sign_in(admin, &params),
        _ => {}
    }
    let Some((session, tenant)) = signed_in(admin, req) else {
        return redirect("/admin/login", Some(session::clear_cookie()));
    };
    let csrf = admin.keys.csrf(&session);
    if method == Method::POST && !admin.keys.csrf_ok(&session, param(&params, "csrf")) {
        return message(
            StatusCode::FORBIDDEN,
            "Form expired",
            "The form does not belong to this session; reload the page and send it again.",
        );
    }
    if let (&Method::POST, ["logout"]) = (&method, segments.as_slice()) {
        return redirect("/admin/login", Some(session::clear_cookie()));
    }
    let Some(store) = admin.store.get().cloned() else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Starting",
            "The state store is not open yet; reload in a few seconds.",
        );
    };
    let ctx = Ctx {
        tenant,
        csrf,
        store,
        params,
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, [""]) => dashboard::page(&ctx).await,
        (&Method::GET, ["programs"]) => programs::page(&ctx, admin.programs.version()),
        (&Method::GET, ["customers"]) => customer::search(&ctx, admin.till.directory().map(Arc::as_ref)).await,
        (&Method::GET, ["customers", c]) if valid_id(c) => customer::page(&ctx, c, "").await,
        (&Method::POST, ["customers", c, "adjust"]) if valid_id(c) => adjust::submit(&ctx, &admin.commands, c).await,
        (&Method::GET, ["customers", c, "adjustments", e]) if valid_id(c) && valid_id(e) => {
            adjust::status(&ctx, &admin.commands, c, e).await
        }
        (
            &Method::GET,
            ["export", file @ ("ledger.csv" | "ledger.xlsx" | "totals.csv" | "totals.xlsx" | "balances.csv")],
        ) => export(admin, &ctx, file).await,
        _ => message(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such page; use the navigation above.",
        ),
    }
}

/// An identifier in a path: as the event contract allows.
fn valid_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 128 && !text.contains(':') && !text.chars().any(char::is_control)
}

/// The session of `req`, if its cookie is valid and its token still listed.
fn signed_in<B>(admin: &Admin, req: &Request<B>) -> Option<(session::Session, TenantConfig)> {
    let header = req.headers().get(COOKIE)?.to_str().ok()?;
    let value = session::cookie_value(header, session::COOKIE)?;
    let session = admin.keys.check(value, now_secs())?;
    let (_, tenants) = admin.programs.current();
    let tenant = tenants.get(&session.tenant)?;
    tenant
        .api_tokens_sha256
        .contains(&session.token_sha256)
        .then(|| (session, tenant.clone()))
}

fn sign_in(admin: &Admin, params: &[(String, String)]) -> Response<api::Body> {
    let token = param(params, "token").trim();
    let hash = api::hash_token(token);
    let (_, tenants) = admin.programs.current();
    let tenant = (!token.is_empty())
        .then(|| tenants.values().find(|t| t.api_tokens_sha256.contains(&hash)))
        .flatten();
    match tenant {
        Some(tenant) => {
            let cookie = admin.keys.issue(&tenant.id, &hash, now_secs());
            tracing::info!(tenant = %tenant.id, "back office: signed in");
            redirect("/admin/", Some(session::set_cookie(&cookie)))
        }
        None => login_form(
            StatusCode::UNAUTHORIZED,
            "That token is not configured for any tenant; paste the tenant's API token (api_tokens_sha256 lists its hash).",
        ),
    }
}

fn login_form(status: StatusCode, error: &str) -> Response<api::Body> {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"err\" id=\"error\">{}</p>", html::esc(error))
    };
    let body = format!(
        "{error}<form method=\"post\" action=\"/admin/login\" class=\"card\">\
<label>API token of your tenant<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required size=\"40\"></label>\
<p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>\
<p class=\"muted\">The token is the one the read API takes as <code>Authorization: Bearer</code>; \
the tenant file lists its SHA-256 under <code>api_tokens_sha256</code>.</p>"
    );
    html_response(status, html::bare("Sign in", &body))
}

/// An export of the session's tenant: the read API's answer to
/// `/v1/tenants/{tenant}/{file}` with the same query.
async fn export(admin: &Admin, ctx: &Ctx, file: &str) -> Response<api::Body> {
    let query = ctx
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", html::url(k), html::url(v)))
        .collect::<Vec<_>>()
        .join("&");
    let uri = format!("/v1/tenants/{}/{file}?{query}", html::url(&ctx.tenant.id));
    match Request::get(uri).body(()) {
        Ok(req) => api::handle_as(&admin.read, ctx.tenant.clone(), &req).await,
        Err(_) => message(
            StatusCode::BAD_REQUEST,
            "Bad export",
            "The export's filters are not valid.",
        ),
    }
}

/// Seconds since the Unix epoch.
fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An HTML answer that no cache keeps and no frame shows.
fn html_response(status: StatusCode, body: String) -> Response<api::Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A server-side failure: logged in full, shown without detail.
fn failed(err: &dyn std::fmt::Display) -> Response<api::Body> {
    tracing::error!(error = %err, "back office request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something failed",
        "The read failed; the server log says why. Try again, or tell your operator.",
    )
}

/// A page that only says something (errors, "starting").
fn message(status: StatusCode, title: &str, text: &str) -> Response<api::Body> {
    let body = format!(
        "<p class=\"err\">{}</p><p><a href=\"/admin/\">Back to the dashboard</a></p>",
        html::esc(text)
    );
    html_response(status, html::bare(title, &body))
}

/// A 303 to `location` (always one of ours), setting `cookie` if given.
fn redirect(location: &str, cookie: Option<String>) -> Response<api::Body> {
    let mut response = html_response(StatusCode::SEE_OTHER, String::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_office_owns_admin_paths_only() {
        for path in ["/admin", "/admin/", "/admin/customers/c-1"] {
            assert!(owns(path), "{path}");
        }
        for path in ["/administrator", "/v1/tenants/t/ledger", "/", "/metrics"] {
            assert!(!owns(path), "{path}");
        }
    }

    #[test]
    fn path_ids_are_what_the_contract_allows() {
        assert!(valid_id("c-1001") && valid_id("кафе") && valid_id(&"x".repeat(128)));
        for bad in ["", "a:b", "a\u{0}b", "a\nb", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
