//! Totals of a tenant's ledger over a period, grouped and filtered, read
//! from the `totals` index (see
//! [`crate::state::keys::totals`]): a month's totals read the month's day
//! buckets, never the ledger.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use time::{Date, Month};

use super::query::QueryError;
use super::scan::ReadError;
use crate::state::keys::{self, TotalsDims, TotalsValue, RUNNING_DAY};
use crate::state::{Family, Snapshot, StateError};

/// A dimension rows can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    /// Entry type.
    EntryType,
    /// Program.
    Program,
    /// Account.
    Account,
    /// Branch.
    Branch,
    /// Home tenant of a partner's customer (`""` for the tenant's own).
    Partner,
    /// UTC day.
    Day,
    /// ISO week (Monday to Sunday), named by its Monday.
    Week,
    /// Calendar month.
    Month,
}

impl Dim {
    /// Every dimension, in the order of its column.
    pub const ALL: [Dim; 8] = [
        Dim::EntryType,
        Dim::Program,
        Dim::Account,
        Dim::Branch,
        Dim::Partner,
        Dim::Day,
        Dim::Week,
        Dim::Month,
    ];

    /// The name in `group_by` and in rows.
    pub fn name(self) -> &'static str {
        match self {
            Dim::EntryType => "entry_type",
            Dim::Program => "program",
            Dim::Account => "account",
            Dim::Branch => "branch",
            Dim::Partner => "partner",
            Dim::Day => "day",
            Dim::Week => "week",
            Dim::Month => "month",
        }
    }

    fn parse(name: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// Whose entries count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// The tenant's own customers and its partners' customers served here.
    #[default]
    All,
    /// The tenant's own customers only.
    Own,
    /// Partners' customers served here only.
    Partners,
}

/// A totals query of one tenant. Empty filters match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalsQuery {
    /// The tenant (from the token, never from the query).
    pub tenant: String,
    /// First UTC day (days since 1970-01-01), inclusive.
    pub from_day: Option<u32>,
    /// Last UTC day, exclusive.
    pub to_day: Option<u32>,
    /// Grouping, in the order given.
    pub group_by: Vec<Dim>,
    /// Only these entry types.
    pub entry_type: Vec<String>,
    /// Only these programs.
    pub program: Vec<String>,
    /// Only these accounts.
    pub account: Vec<String>,
    /// Only these branches.
    pub branch: Vec<String>,
    /// Only these units (`points` or a currency code).
    pub unit: Vec<String>,
    /// Own customers, partners' customers, or both.
    pub origin: Origin,
}

fn bad(name: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// A comma-separated list of 1 to 50 values of 1 to 256 characters each.
pub(crate) fn list_param(name: &str, value: &str) -> Result<Vec<String>, QueryError> {
    let items: Vec<String> = value.split(',').map(str::to_owned).collect();
    if items.len() > 50 || items.iter().any(|v| v.is_empty() || v.len() > 256 || v.contains('\0')) {
        return Err(bad(
            name,
            "must be a comma-separated list of 1 to 50 values of 1 to 256 characters, without NUL",
        ));
    }
    Ok(items)
}

impl TotalsQuery {
    /// Builds a query of `tenant` from decoded query parameters: `from`,
    /// `to` (a date `YYYY-MM-DD` or an RFC 3339 time at midnight UTC:
    /// totals are kept by UTC day), `group_by`, and the comma-separated
    /// filters `entry_type`, `program`, `account`, `branch`, `unit`, and
    /// `origin` (`all`, `own` or `partners`).
    ///
    /// # Errors
    /// [`QueryError`] naming the first bad, repeated or unknown parameter.
    pub fn parse<'a>(
        tenant: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TotalsQuery, QueryError> {
        let mut query = TotalsQuery {
            tenant: tenant.to_owned(),
            ..TotalsQuery::default()
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            if seen.contains(&name) {
                return Err(bad(name, "given more than once; give one comma-separated list"));
            }
            seen.push(name);
            match name {
                "from" => query.from_day = Some(day_param(name, value)?),
                "to" => query.to_day = Some(day_param(name, value)?),
                "entry_type" => query.entry_type = list_param(name, value)?,
                "program" => query.program = list_param(name, value)?,
                "account" => query.account = list_param(name, value)?,
                "branch" => query.branch = list_param(name, value)?,
                "unit" => query.unit = list_param(name, value)?,
                "origin" => {
                    query.origin = match value {
                        "all" => Origin::All,
                        "own" => Origin::Own,
                        "partners" => Origin::Partners,
                        _ => return Err(bad(name, "must be all, own or partners")),
                    }
                }
                "group_by" => {
                    for item in list_param(name, value)? {
                        let dim = Dim::parse(&item).ok_or_else(|| {
                            bad(
                                name,
                                "lists entry_type, program, account, branch, partner, day, week or month",
                            )
                        })?;
                        if query.group_by.contains(&dim) {
                            return Err(bad(name, format!("names {item} twice")));
                        }
                        query.group_by.push(dim);
                    }
                }
                _ => {
                    return Err(bad(
                        name,
                        "unknown; use from, to, group_by, entry_type, program, account, branch, unit or origin",
                    ))
                }
            }
        }
        if let (Some(from), Some(to)) = (query.from_day, query.to_day) {
            if from >= to {
                return Err(bad("to", "must be a later day than `from`"));
            }
        }
        Ok(query)
    }

    fn keeps(&self, dims: &TotalsDims) -> bool {
        let any = |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f == value);
        let origin = match self.origin {
            Origin::All => true,
            Origin::Own => dims.partner.is_empty(),
            Origin::Partners => !dims.partner.is_empty(),
        };
        origin
            && any(&self.entry_type, &dims.entry_type)
            && any(&self.program, &dims.program)
            && any(&self.account, &dims.account)
            && any(&self.branch, &dims.branch)
            && any(&self.unit, &dims.unit)
    }
}

/// A day from a date `YYYY-MM-DD` or an RFC 3339 time at UTC midnight.
fn day_param(name: &str, value: &str) -> Result<u32, QueryError> {
    let refuse = || {
        bad(
            name,
            "must be a date YYYY-MM-DD or an RFC 3339 time at midnight UTC (totals are kept by UTC day), \
             e.g. 2026-11-01 or 2026-11-01T00:00:00Z",
        )
    };
    if let Some(date) = parse_date(value) {
        return day_of_date(date).ok_or_else(refuse);
    }
    let ms = super::query::time_param(name, value)?;
    if ms.rem_euclid(86_400_000) != 0 {
        return Err(refuse());
    }
    Ok(keys::day_of_ms(ms))
}

fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The Julian day of 1970-01-01.
const EPOCH_JULIAN: i32 = 2_440_588;

fn day_of_date(date: Date) -> Option<u32> {
    u32::try_from(date.to_julian_day().checked_sub(EPOCH_JULIAN)?).ok()
}

fn date_of_day(day: u32) -> Option<Date> {
    Date::from_julian_day(i32::try_from(day).ok()?.checked_add(EPOCH_JULIAN)?).ok()
}

fn iso(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// The text of a UTC day, `YYYY-MM-DD`.
pub fn day_text(day: u32) -> String {
    date_of_day(day).map(iso).unwrap_or_default()
}

/// One group of entries of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TotalsRow {
    /// Entry type, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_type: Option<String>,
    /// Program, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Account, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Branch, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Home tenant of partners' customers (`""`: own), when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// UTC day `YYYY-MM-DD`, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Monday `YYYY-MM-DD` of the ISO week, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub week: Option<String>,
    /// Month `YYYY-MM`, when grouped by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// `points`, or the currency code of money accounts.
    pub unit: String,
    /// Sum of the signed amounts, exact decimal text.
    pub amount: String,
    /// Number of ledger entries.
    pub count: u64,
}

/// The sum of one unit over every row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitTotal {
    /// `points` or a currency code.
    pub unit: String,
    /// Sum of the signed amounts, exact decimal text.
    pub amount: String,
    /// Number of ledger entries.
    pub count: u64,
}

/// The answer of a totals query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Tenant.
    pub tenant: String,
    /// First day, `YYYY-MM-DD`, or `null` (from the first entry).
    pub from: Option<String>,
    /// Day after the last, `YYYY-MM-DD`, or `null` (to the last entry).
    pub to: Option<String>,
    /// The grouping, as asked.
    pub group_by: Vec<&'static str>,
    /// One row per group and unit, in group order.
    pub rows: Vec<TotalsRow>,
    /// One per unit: never a sum across units.
    pub totals: Vec<UnitTotal>,
    /// Day buckets read (the query's cost).
    pub scanned: u64,
}

/// The row key of a bucket: its group values, then its unit.
type GroupKey = (Vec<String>, String);

/// The totals of `query`, from its day buckets in every partition.
///
/// # Errors
/// [`ReadError`] if the store fails or a bucket is corrupt.
pub fn totals(snap: &Snapshot<'_>, query: &TotalsQuery) -> Result<Totals, ReadError> {
    let from = query.from_day.unwrap_or(0);
    let to = query.to_day.unwrap_or(RUNNING_DAY);
    let mut groups: BTreeMap<GroupKey, TotalsValue> = BTreeMap::new();
    let mut scanned = 0u64;
    for p in snap.partitions(Family::Totals)? {
        let prefix = keys::totals_prefix(p, &query.tenant);
        let end = keys::totals_day(p, &query.tenant, to);
        for item in snap.iter_from(Family::Totals, &keys::totals_day(p, &query.tenant, from))? {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || key >= end {
                break;
            }
            scanned = scanned.saturating_add(1);
            let (day, dims) = keys::parse_totals(&key, prefix.len()).ok_or_else(|| corrupt("totals key"))?;
            if !query.keeps(&dims) {
                continue;
            }
            let value = TotalsValue::decode(&value).ok_or_else(|| corrupt("totals value is not 24 bytes"))?;
            let group = query.group_by.iter().map(|d| group_value(*d, day, &dims)).collect();
            add_to(&mut groups, (group, dims.unit), value)?;
        }
    }
    let mut units: BTreeMap<String, TotalsValue> = BTreeMap::new();
    let mut rows = Vec::with_capacity(groups.len());
    for ((values, unit), value) in groups {
        let unit_total = units.entry(unit.clone()).or_default();
        *unit_total = unit_total.checked_add(&value).ok_or_else(overflow)?;
        let mut row = TotalsRow {
            amount: amount_text(value.sum),
            count: value.count,
            unit,
            ..TotalsRow::default()
        };
        for (dim, text) in query.group_by.iter().zip(values) {
            *row_field(&mut row, *dim) = Some(text);
        }
        rows.push(row);
    }
    Ok(Totals {
        tenant: query.tenant.clone(),
        from: query.from_day.map(day_text),
        to: query.to_day.map(day_text),
        group_by: query.group_by.iter().map(|d| d.name()).collect(),
        rows,
        totals: units
            .into_iter()
            .map(|(unit, v)| UnitTotal {
                unit,
                amount: amount_text(v.sum),
                count: v.count,
            })
            .collect(),
        scanned,
    })
}

fn add_to(groups: &mut BTreeMap<GroupKey, TotalsValue>, key: GroupKey, value: TotalsValue) -> Result<(), ReadError> {
    let slot = groups.entry(key).or_default();
    *slot = slot.checked_add(&value).ok_or_else(overflow)?;
    Ok(())
}

fn row_field(row: &mut TotalsRow, dim: Dim) -> &mut Option<String> {
    match dim {
        Dim::EntryType => &mut row.entry_type,
        Dim::Program => &mut row.program,
        Dim::Account => &mut row.account,
        Dim::Branch => &mut row.branch,
        Dim::Partner => &mut row.partner,
        Dim::Day => &mut row.day,
        Dim::Week => &mut row.week,
        Dim::Month => &mut row.month,
    }
}

fn group_value(dim: Dim, day: u32, dims: &TotalsDims) -> String {
    match dim {
        Dim::EntryType => dims.entry_type.clone(),
        Dim::Program => dims.program.clone(),
        Dim::Account => dims.account.clone(),
        Dim::Branch => dims.branch.clone(),
        Dim::Partner => dims.partner.clone(),
        Dim::Day => day_text(day),
        Dim::Week => date_of_day(day)
            .and_then(|d| d.checked_sub(time::Duration::days(i64::from(d.weekday().number_days_from_monday()))))
            .map(iso)
            .unwrap_or_default(),
        Dim::Month => date_of_day(day)
            .map(|d| format!("{:04}-{:02}", d.year(), u8::from(d.month())))
            .unwrap_or_default(),
    }
}

/// A sum as exact text: trailing zeros beyond the amounts' own scale are
/// kept as the amounts had them (`4.00 + 1.50` is `5.50`).
pub(super) fn amount_text(sum: Decimal) -> String {
    sum.to_string()
}

pub(super) fn corrupt(detail: &str) -> ReadError {
    ReadError::State(StateError::Corrupt {
        family: Family::Totals.name(),
        detail: detail.to_owned(),
    })
}

pub(super) fn overflow() -> ReadError {
    corrupt("the sum of the buckets does not fit a decimal")
}

#[cfg(test)]
mod tests;
