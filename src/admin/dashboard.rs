//! The dashboard: a period's entries by type and by branch with totals per
//! unit, a chart per unit over the days, and outstanding balances.
//!
//! Periods are whole days in UTC, `from` to `to` inclusive; this month so
//! far by default.

use std::collections::BTreeMap;
use std::fmt::Write;

use hyper::{Response, StatusCode};
use rust_decimal::Decimal;
use time::{Date, OffsetDateTime};

use super::chart::{self, Day};
use super::figures::{self, Outstanding, Row};
use super::html::{esc, query};
use super::Ctx;
use crate::api;

/// The longest period shown, in days.
const MAX_DAYS: i64 = 366;

/// A period of whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Period {
    /// First day.
    pub(crate) from: Date,
    /// Last day, inclusive.
    pub(crate) to: Date,
}

impl Period {
    /// The period of `from` and `to` (`YYYY-MM-DD`; empty for this month so
    /// far, as of `today`).
    pub(crate) fn parse(from: &str, to: &str, today: Date) -> Result<Period, String> {
        let day = |name: &str, text: &str, default: Date| -> Result<Date, String> {
            if text.is_empty() {
                return Ok(default);
            }
            Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| format!("`{name}` must be a date such as 2026-11-01"))
        };
        let first = today.replace_day(1).unwrap_or(today);
        let period = Period {
            from: day("from", from, first)?,
            to: day("to", to, today)?,
        };
        if period.to < period.from {
            return Err("`to` must not be before `from`".into());
        }
        if (period.to - period.from).whole_days() >= MAX_DAYS {
            return Err(format!("a period is at most {MAX_DAYS} days; choose a shorter one"));
        }
        Ok(period)
    }

    /// Every day of the period, in order.
    fn days(self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.from;
        while d <= self.to {
            out.push(d);
            match d.next_day() {
                Some(next) => d = next,
                None => break,
            }
        }
        out
    }
}

/// The report filters the dashboard passes on to the totals and the
/// exports: `(parameter, value)`, empty when not set.
fn filters(ctx: &Ctx) -> [(&'static str, String); 3] {
    ["entry_type", "branch", "unit"].map(|name| (name, ctx.param(name).trim().to_owned()))
}

fn refuse(ctx: &Ctx, error: &str) -> Response<api::Body> {
    let body = format!("{}<p class=\"err\" id=\"error\">{}</p>", form(ctx, None), esc(error));
    let mut response = ctx.page("Dashboard", "Dashboard", &body);
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// `GET /admin/`.
pub(crate) async fn page(ctx: &Ctx) -> Response<api::Body> {
    let today = OffsetDateTime::now_utc().date();
    let period = match Period::parse(ctx.param("from"), ctx.param("to"), today) {
        Ok(p) => p,
        Err(err) => return refuse(ctx, &err),
    };
    let filters = filters(ctx);
    let pairs: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let query = match figures::query(&ctx.tenant, period.from, period.to, &pairs) {
        Ok(q) => q,
        Err(err) => return refuse(ctx, &err.to_string()),
    };
    let (store, tenant) = (ctx.store.clone(), ctx.tenant.clone());
    let read = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot();
        let rows = figures::period_rows(&snap, &query)?;
        let balances = figures::outstanding(&snap, &tenant)?;
        Ok::<_, figures::FigureError>((rows, balances))
    })
    .await;
    let (rows, balances) = match read {
        Ok(Ok(found)) => found,
        Ok(Err(err)) => return super::failed(&err),
        Err(err) => return super::failed(&err),
    };
    let mut body = form(ctx, Some(period));
    body.push_str(&exports(period, &pairs));
    body.push_str(&tables(ctx, &rows));
    body.push_str(&charts(ctx, period, &rows));
    body.push_str(&outstanding(ctx, &balances));
    ctx.page("Dashboard", "Dashboard", &body)
}

fn form(ctx: &Ctx, period: Option<Period>) -> String {
    let (from, to) = match period {
        Some(p) => (p.from.to_string(), p.to.to_string()),
        None => (ctx.param("from").to_owned(), ctx.param("to").to_owned()),
    };
    let chosen = |name: &str, value: &str| if ctx.param(name) == value { " selected" } else { "" };
    let mut branches = format!("<option value=\"\"{}>every branch</option>", chosen("branch", ""));
    for (id, branch) in &ctx.tenant.branches {
        let label = if branch.name.is_empty() { id } else { &branch.name };
        let _ = write!(
            branches,
            "<option value=\"{}\"{}>{}</option>",
            esc(id),
            chosen("branch", id),
            esc(label)
        );
    }
    let currency = &ctx.tenant.currency;
    let units = format!(
        "<option value=\"\"{}>money and points</option><option value=\"{c}\"{}>{c}</option><option value=\"points\"{}>points</option>",
        chosen("unit", ""),
        chosen("unit", currency),
        chosen("unit", "points"),
        c = esc(currency),
    );
    format!(
        "<form method=\"get\" action=\"/admin/\" class=\"inline\" id=\"period\">\
<label>From<input type=\"date\" name=\"from\" id=\"from\" value=\"{}\"></label>\
<label>To (inclusive)<input type=\"date\" name=\"to\" id=\"to\" value=\"{}\"></label>\
<label>Branch<select name=\"branch\" id=\"filter-branch\">{branches}</select></label>\
<label>Entry types<input name=\"entry_type\" id=\"filter-entry-type\" value=\"{}\" placeholder=\"accrual,reversal\" size=\"18\"></label>\
<label>Unit<select name=\"unit\" id=\"filter-unit\">{units}</select></label>\
<button type=\"submit\" id=\"show\">Show</button><span class=\"muted\">Days in UTC.</span></form>",
        esc(&from),
        esc(&to),
        esc(ctx.param("entry_type")),
    )
}

/// Links to the period's exports with the page's filters, through the
/// session. The ledger has no unit filter: its exports leave it out.
fn exports(period: Period, filters: &[(&str, &str)]) -> String {
    let from = format!("{}T00:00:00Z", period.from);
    let to = format!("{}T00:00:00Z", period.to.next_day().unwrap_or(period.to));
    let mut ledger = vec![("from", from.as_str()), ("to", to.as_str())];
    ledger.extend(filters.iter().copied().filter(|(k, _)| *k != "unit"));
    let mut totals = vec![
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("group_by", "entry_type,branch,day"),
    ];
    totals.extend(filters.iter().copied());
    let (ledger, totals) = (esc(&query(&ledger)), esc(&query(&totals)));
    format!(
        "<p class=\"links\">Export this report: \
<a id=\"export-csv\" href=\"/admin/export/ledger.csv?{ledger}\">ledger (CSV)</a>\
<a id=\"export-xlsx\" href=\"/admin/export/ledger.xlsx?{ledger}\">ledger (Excel)</a>\
<a id=\"export-totals-csv\" href=\"/admin/export/totals.csv?{totals}\">totals (CSV)</a>\
<a id=\"export-totals-xlsx\" href=\"/admin/export/totals.xlsx?{totals}\">totals (Excel)</a>\
<a id=\"export-balances-csv\" href=\"/admin/export/balances.csv\">every balance now, with tiers and expiries (CSV)</a></p>"
    )
}

/// Sums of `rows` grouped by `key`, per unit: `(key, unit) -> (amount, count)`.
fn group_by(rows: &[Row], key: impl Fn(&Row) -> String) -> BTreeMap<(String, String), (Decimal, u64)> {
    let mut out: BTreeMap<(String, String), (Decimal, u64)> = BTreeMap::new();
    for row in rows {
        let sum = out.entry((row.unit.clone(), key(row))).or_default();
        sum.0 = sum.0.checked_add(row.amount).unwrap_or(sum.0);
        sum.1 = sum.1.saturating_add(row.count);
    }
    out
}

fn tables(ctx: &Ctx, rows: &[Row]) -> String {
    let mut out = String::from("<div class=\"grid\">");
    for (id, title, label, grouped) in [
        (
            "by-type",
            "By entry type",
            "Entry type",
            group_by(rows, |r| r.entry_type.clone()),
        ),
        ("by-branch", "By branch", "Branch", group_by(rows, |r| r.branch.clone())),
    ] {
        let _ = write!(
            out,
            "<section><h2>{title}</h2><table id=\"{id}\"><thead><tr><th>{label}</th><th>Unit</th>\
<th class=\"n\">Entries</th><th class=\"n\">Amount</th></tr></thead><tbody>"
        );
        let mut totals: BTreeMap<&str, (Decimal, u64)> = BTreeMap::new();
        for ((unit, key), (amount, count)) in &grouped {
            let _ = write!(
                out,
                "<tr data-key=\"{k}\" data-unit=\"{u}\"><td>{k}</td><td>{u}</td><td class=\"n\">{count}</td><td class=\"n\">{a}</td></tr>",
                k = esc(key),
                u = esc(unit),
                a = esc(&figures::show(&ctx.tenant, unit, *amount)),
            );
            let total = totals.entry(unit).or_default();
            total.0 = total.0.checked_add(*amount).unwrap_or(total.0);
            total.1 = total.1.saturating_add(*count);
        }
        if grouped.is_empty() {
            out.push_str("<tr><td colspan=\"4\" class=\"muted\">No entries in this period.</td></tr>");
        }
        out.push_str("</tbody><tfoot>");
        for (unit, (amount, count)) in totals {
            let _ = write!(
                out,
                "<tr class=\"total\" data-unit=\"{u}\"><td>Total</td><td>{u}</td><td class=\"n\">{count}</td><td class=\"n\">{a}</td></tr>",
                u = esc(unit),
                a = esc(&figures::show(&ctx.tenant, unit, amount)),
            );
        }
        out.push_str("</tfoot></table></section>");
    }
    out.push_str("</div>");
    out
}

/// One chart per unit, money and points apart.
fn charts(ctx: &Ctx, period: Period, rows: &[Row]) -> String {
    let mut per_unit: BTreeMap<&str, BTreeMap<Date, (Decimal, Decimal)>> = BTreeMap::new();
    for row in rows {
        let day = per_unit.entry(&row.unit).or_default().entry(row.day).or_default();
        if row.amount.is_sign_negative() {
            day.1 = day.1.checked_add(row.amount.abs()).unwrap_or(day.1);
        } else {
            day.0 = day.0.checked_add(row.amount).unwrap_or(day.0);
        }
    }
    let mut out = String::from("<h2>Over time</h2>");
    if per_unit.is_empty() {
        out.push_str("<p class=\"muted\">Nothing to draw: no entries in this period.</p>");
    }
    for (unit, by_day) in per_unit {
        let days: Vec<Day> = period
            .days()
            .into_iter()
            .map(|day| {
                let (credit, debit) = by_day.get(&day).copied().unwrap_or_default();
                Day { day, credit, debit }
            })
            .collect();
        let id = format!("chart-{}", unit.to_ascii_lowercase());
        out.push_str(&chart::svg(&id, unit, &days, |d| figures::show(&ctx.tenant, unit, d)));
    }
    out
}

fn outstanding(ctx: &Ctx, balances: &[Outstanding]) -> String {
    let mut out = String::from(
        "<h2>Outstanding balances</h2><table id=\"outstanding\"><thead><tr><th>Account</th><th>Unit</th>\
<th class=\"n\">Balance</th></tr></thead><tbody>",
    );
    for b in balances {
        let _ = write!(
            out,
            "<tr data-key=\"{a}\" data-unit=\"{u}\"><td>{a}</td><td>{u}</td><td class=\"n\">{}</td></tr>",
            esc(&figures::show(&ctx.tenant, &b.unit, b.total)),
            a = esc(&b.account),
            u = esc(&b.unit),
        );
    }
    if balances.is_empty() {
        out.push_str("<tr><td colspan=\"3\" class=\"muted\">No balances yet.</td></tr>");
    }
    out.push_str("</tbody></table><p class=\"muted\">Now, over every customer: not limited to the period.</p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_default_period_is_this_month_so_far() {
        let p = Period::parse("", "", date!(2026 - 12 - 17));
        assert_eq!(
            p,
            Ok(Period {
                from: date!(2026 - 12 - 01),
                to: date!(2026 - 12 - 17)
            })
        );
        let Ok(p) = p else { return };
        assert_eq!(p.days().len(), 17);
    }

    #[test]
    fn bad_periods_say_what_to_send() {
        let today = date!(2026 - 12 - 17);
        for (from, to, says) in [
            ("yesterday", "", "`from` must be a date"),
            ("2026-11-02", "2026-11-01", "`to` must not be before"),
            ("2025-01-01", "2026-12-01", "at most 366 days"),
            ("<b>", "", "`from`"),
        ] {
            match Period::parse(from, to, today) {
                Err(err) => assert!(err.contains(says), "{err}"),
                Ok(p) => panic!("{from}..{to} accepted: {p:?}"),
            }
        }
    }
}
