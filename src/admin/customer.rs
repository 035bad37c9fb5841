//! The customer pages: search by id or phone, then one customer's balances,
//! paged history and the manual adjustment form.

use std::fmt::Write;

use hyper::{Response, StatusCode};

use super::html::{esc, query, url};
use super::Ctx;
use crate::api;
use crate::directory::Directory;
use crate::programs::BUILTIN_ACCOUNTS;
use crate::read::{self, Balances, Cursor, LedgerQuery, Page, PageParams};

/// History rows per page.
const HISTORY_PAGE: usize = 20;

/// `GET /admin/customers?q=`: a customer by id or by phone.
pub(crate) async fn search(ctx: &Ctx, directory: Option<&Directory>) -> Response<api::Body> {
    let q = ctx.param("q").trim().to_owned();
    let mut body = format!(
        "<form method=\"get\" action=\"/admin/customers\" class=\"inline\" id=\"search\">\
<label>Customer id or phone<input name=\"q\" id=\"q\" value=\"{}\" required></label>\
<button type=\"submit\" id=\"find\">Find</button></form>",
        esc(&q)
    );
    if q.is_empty() {
        return ctx.page("Customers", "Customers", &body);
    }
    let mut found: Vec<(String, &str)> = Vec::new();
    if let Some(listed) = directory.and_then(|d| d.find(&ctx.tenant.id, &q)) {
        found.push((listed.customer, "by phone"));
    }
    if super::valid_id(&q) && !found.iter().any(|(c, _)| *c == q) {
        let (store, tenant, id) = (ctx.store.clone(), ctx.tenant.clone(), q.clone());
        match tokio::task::spawn_blocking(move || read::balances(&store.snapshot(), &tenant, &id)).await {
            Ok(Ok(Some(_))) => found.push((q.clone(), "by id")),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => return super::failed(&err),
            Err(err) => return super::failed(&err),
        }
    }
    if let [(only, _)] = found.as_slice() {
        return super::redirect(&format!("/admin/customers/{}", url(only)), None);
    }
    if found.is_empty() {
        let directory_note = if directory.is_none() {
            " The phone directory is still loading; try again shortly."
        } else {
            ""
        };
        let _ = write!(
            body,
            "<p class=\"err\" id=\"error\">No customer has the id or phone {}.{directory_note}</p>",
            esc(&q)
        );
    } else {
        body.push_str("<ul id=\"results\">");
        for (customer, how) in &found {
            let _ = write!(
                body,
                "<li><a href=\"/admin/customers/{}\">{}</a> <span class=\"muted\">({how})</span></li>",
                esc(&url(customer)),
                esc(customer)
            );
        }
        body.push_str("</ul>");
    }
    ctx.page("Customers", "Customers", &body)
}

/// `GET /admin/customers/{customer}`: balances, history (`cursor` pages
/// it), and the adjustment form, with `notice` (HTML) above them.
pub(crate) async fn page(ctx: &Ctx, customer: &str, notice: &str) -> Response<api::Body> {
    let cursor = match ctx.param("cursor") {
        "" => None,
        text => match Cursor::decode(text) {
            Some(c @ Cursor::Customer { .. }) => Some(c),
            _ => {
                let mut r = ctx.page(
                    customer,
                    "Customers",
                    "<p class=\"err\">That page link is broken; open the customer again.</p>",
                );
                *r.status_mut() = StatusCode::BAD_REQUEST;
                return r;
            }
        },
    };
    let query = LedgerQuery {
        tenant: ctx.tenant.id.clone(),
        customer: Some(customer.to_owned()),
        ..LedgerQuery::default()
    };
    let (store, tenant, id) = (ctx.store.clone(), ctx.tenant.clone(), customer.to_owned());
    let read = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot();
        let balances = read::balances(&snap, &tenant, &id)?;
        let history = read::page(
            &snap,
            &query,
            PageParams {
                limit: HISTORY_PAGE,
                cursor,
            },
        )?;
        Ok::<_, crate::state::StateError>((balances, history))
    })
    .await;
    let (balances, history) = match read {
        Ok(Ok(found)) => found,
        Ok(Err(err)) => return super::failed(&err),
        Err(err) => return super::failed(&err),
    };
    let mut body = String::from(notice);
    body.push_str(&balances_table(balances.as_ref()));
    body.push_str(&adjust_form(ctx, customer));
    body.push_str(&history_table(customer, &history, cursor.is_some()));
    ctx.page(&format!("Customer {customer}"), "Customers", &body)
}

fn balances_table(balances: Option<&Balances>) -> String {
    let Some(balances) = balances.filter(|b| !b.balances.is_empty()) else {
        return "<h2>Balances</h2><p class=\"muted\" id=\"no-balances\">No balance has moved yet.</p>".into();
    };
    let mut out = String::from("<h2>Balances</h2>");
    if let Some(tier) = &balances.tier {
        let _ = write!(out, "<p id=\"tier\">Tier: <strong>{}</strong></p>", esc(tier));
    }
    out.push_str(
        "<table id=\"balances\"><thead><tr><th>Account</th><th>Unit</th><th class=\"n\">Balance</th><th>Expires next</th></tr></thead><tbody>",
    );
    for b in &balances.balances {
        // The soonest credit to expire, and how many more follow it.
        let next = match b.expiring.split_first() {
            Some((first, [])) => format!("{} at {}", first.amount, first.expires_at),
            Some((first, rest)) => format!("{} at {} (and {} more)", first.amount, first.expires_at, rest.len()),
            None => String::new(),
        };
        let _ = write!(
            out,
            "<tr data-account=\"{a}\"><td>{a}</td><td>{u}</td><td class=\"n\">{v}</td><td class=\"expiring\">{e}</td></tr>",
            a = esc(&b.account),
            u = esc(&b.unit),
            v = esc(&b.balance),
            e = esc(&next)
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn adjust_form(ctx: &Ctx, customer: &str) -> String {
    let mut accounts = String::new();
    let named = ctx.tenant.bonus_accounts.iter().map(|a| a.as_ref());
    for account in BUILTIN_ACCOUNTS.into_iter().chain(named) {
        let _ = write!(accounts, "<option value=\"{a}\">{a}</option>", a = esc(account));
    }
    let mut branches = String::new();
    for (id, branch) in &ctx.tenant.branches {
        let label = if branch.name.is_empty() { id } else { &branch.name };
        let _ = write!(branches, "<option value=\"{}\">{}</option>", esc(id), esc(label));
    }
    format!(
        "<h2>Manual adjustment</h2><form method=\"post\" action=\"/admin/customers/{c}/adjust\" class=\"inline card\" id=\"adjust\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Account<select name=\"account\" id=\"account\">{accounts}</select></label>\
<label>Amount (negative subtracts)<input name=\"amount\" id=\"amount\" required pattern=\"-?[0-9]+(\\.[0-9]+)?\" size=\"10\"></label>\
<label>Description (the customer sees it)<input name=\"description\" id=\"description\" required maxlength=\"500\" size=\"30\"></label>\
<label>Operator<input name=\"operator\" id=\"operator\" maxlength=\"128\" size=\"12\"></label>\
<label>Branch<select name=\"branch\" id=\"branch\">{branches}</select></label>\
<button type=\"submit\" id=\"apply\">Apply</button></form>",
        c = esc(&url(customer)),
        csrf = esc(&ctx.csrf),
    )
}

fn history_table(customer: &str, history: &Page, paged: bool) -> String {
    let mut out = format!(
        "<h2>History</h2><p class=\"links\"><a id=\"export-customer-csv\" href=\"/admin/export/ledger.csv?{q}\">Export (CSV)</a>\
<a id=\"export-customer-xlsx\" href=\"/admin/export/ledger.xlsx?{q}\">Export (Excel)</a></p>",
        q = esc(&query(&[("customer", customer)]))
    );
    out.push_str(
        "<table id=\"history\"><thead><tr><th>When</th><th>Branch</th><th>Type</th><th>Program</th><th>Account</th>\
<th class=\"n\">Amount</th><th class=\"n\">Balance</th><th>Description</th><th>Operator</th></tr></thead><tbody>",
    );
    for e in &history.entries {
        let _ = write!(
            out,
            "<tr data-source=\"{src}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.header.occurred_at),
            esc(&e.header.branch),
            esc(&e.entry_type),
            esc(&e.program),
            esc(&e.account),
            esc(&e.amount),
            esc(&e.balance),
            esc(e.description.as_deref().unwrap_or_default()),
            esc(e.operator.as_deref().unwrap_or_default()),
            src = esc(&e.header.source_event_id),
        );
    }
    if history.entries.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"muted\">No entries.</td></tr>");
    }
    out.push_str("</tbody></table><p class=\"links\">");
    if paged {
        let _ = write!(
            out,
            "<a href=\"/admin/customers/{}\">First page</a>",
            esc(&url(customer))
        );
    }
    if let Some(next) = &history.next_cursor {
        let _ = write!(
            out,
            "<a id=\"next-page\" href=\"/admin/customers/{}?{}\">Next page</a>",
            esc(&url(customer)),
            esc(&query(&[("cursor", next)]))
        );
    }
    out.push_str("</p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Balance, ExpiringCredit};

    fn balance(account: &str, expiring: &[(&str, &str)]) -> Balance {
        Balance {
            account: account.into(),
            balance: "30".into(),
            currency: "AZN".into(),
            unit: "points".into(),
            expiring: expiring
                .iter()
                .map(|(amount, at)| ExpiringCredit {
                    amount: (*amount).into(),
                    expires_at: (*at).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_balances_table_shows_the_tier_and_the_next_credit_to_expire() {
        let balances = Balances {
            tenant: "cafe".into(),
            customer: "c-1".into(),
            balances: vec![
                balance(
                    "bonus",
                    &[("12", "2027-01-10T09:00:00Z"), ("8", "2027-02-01T00:00:00Z")],
                ),
                balance("coffee<b>", &[]),
            ],
            tier: Some("gold".into()),
        };
        let html = balances_table(Some(&balances));
        assert!(
            html.contains("<p id=\"tier\">Tier: <strong>gold</strong></p>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"expiring\">12 at 2027-01-10T09:00:00Z (and 1 more)</td>"),
            "{html}"
        );
        assert!(html.contains("<td>coffee&lt;b&gt;</td>"), "escaped: {html}");
        let none = Balances { tier: None, ..balances };
        assert!(!balances_table(Some(&none)).contains("id=\"tier\""));
    }
}
