//! Excel (`.xlsx`) exports of the ledger and of totals, with the filters of
//! their CSV twins: a bold header row, one row per entry or group, and a
//! totals row per unit.
//!
//! Money is never rounded silently: an xlsx number is an f64, so an amount
//! is written as a number (with a 2-decimal or whole-number format) only
//! when that f64 reads back as exactly the same decimal (any amount of up
//! to 15 significant digits); otherwise the cell holds the exact decimal
//! as text.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::query::{LedgerQuery, CSV_HEADER};
use super::scan::{self, ReadError};
use super::totals::{Totals, TotalsRow};
use crate::contract::AccrualEvent;
use crate::programs::TenantConfig;
use crate::state::Snapshot;

/// Rows of a ledger export at most. Rows go to a temporary file as they
/// are written (rust_xlsxwriter's constant-memory mode: 13 MB peak for
/// 100,000 rows, against 370 MB in its default mode), but the compressed
/// file, about 70 bytes a row, is answered from memory; a larger export is
/// refused (use `ledger.csv`, which streams).
pub const MAX_XLSX_ROWS: u64 = 500_000;

/// An export that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum XlsxExportError {
    /// Reading the state failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// More rows than [`MAX_XLSX_ROWS`].
    #[error("more than {MAX_XLSX_ROWS} rows; narrow the period or the filters, or use ledger.csv, which streams")]
    TooLarge,
    /// The workbook writer failed.
    #[error("cannot build the workbook: {0}; report it with the request that failed")]
    Xlsx(#[from] XlsxError),
}

struct Formats {
    header: Format,
    money: Format,
    points: Format,
    bold_money: Format,
    bold_points: Format,
}

impl Formats {
    fn new() -> Self {
        Formats {
            header: Format::new().set_bold(),
            money: Format::new().set_num_format("#,##0.00"),
            points: Format::new().set_num_format("#,##0"),
            bold_money: Format::new().set_bold().set_num_format("#,##0.00"),
            bold_points: Format::new().set_bold().set_num_format("#,##0"),
        }
    }

    fn amount(&self, unit: &str, bold: bool) -> &Format {
        match (unit == "points", bold) {
            (true, false) => &self.points,
            (true, true) => &self.bold_points,
            (false, false) => &self.money,
            (false, true) => &self.bold_money,
        }
    }
}

/// `value` as an f64 that reads back as exactly the same decimal, if any.
pub fn exact_f64(value: Decimal) -> Option<f64> {
    let float = value.to_f64()?;
    let back = Decimal::from_str(&float.to_string()).ok()?;
    (back == value).then_some(float)
}

/// Writes decimal text as a number cell when that is exact, else as text.
fn write_amount(sheet: &mut Worksheet, row: u32, col: u16, text: &str, format: &Format) -> Result<(), XlsxError> {
    match Decimal::from_str(text).ok().and_then(exact_f64) {
        Some(number) => sheet.write_number_with_format(row, col, number, format)?,
        None => sheet.write_string(row, col, text)?,
    };
    Ok(())
}

fn header(sheet: &mut Worksheet, names: &[&str], formats: &Formats) -> Result<(), XlsxError> {
    for (col, name) in names.iter().enumerate() {
        sheet.write_string_with_format(0, col_of(col), *name, &formats.header)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

fn col_of(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// The unit of a ledger entry: `points` for a points account of `tenant`,
/// else the entry's currency.
fn unit_of(tenant: &TenantConfig, entry: &AccrualEvent) -> String {
    if tenant.is_points(&entry.account) {
        "points".to_owned()
    } else {
        entry.currency.clone()
    }
}

/// Every entry matching `query` as a workbook: the CSV's columns, amounts
/// as numbers, and a totals row per unit.
///
/// # Errors
/// [`XlsxExportError`] if the store fails, the export has more than
/// [`MAX_XLSX_ROWS`] rows, or the workbook cannot be built.
pub fn ledger_xlsx(
    snap: &Snapshot<'_>,
    query: &LedgerQuery,
    tenant: &TenantConfig,
) -> Result<Vec<u8>, XlsxExportError> {
    ledger_xlsx_at_most(snap, query, tenant, MAX_XLSX_ROWS)
}

fn ledger_xlsx_at_most(
    snap: &Snapshot<'_>,
    query: &LedgerQuery,
    tenant: &TenantConfig,
    max_rows: u64,
) -> Result<Vec<u8>, XlsxExportError> {
    let formats = Formats::new();
    let mut book = Workbook::new();
    // Rows in order, flushed to a temporary file: memory stays flat.
    let sheet = book.add_worksheet_with_constant_memory();
    sheet.set_name("ledger")?;
    sheet.set_column_width(0, 12)?;
    sheet.set_column_width(1, 22)?;
    let names: Vec<&str> = CSV_HEADER.trim_end().split(',').collect();
    header(sheet, &names, &formats)?;
    let mut row = 0u32;
    let mut sums: std::collections::BTreeMap<String, Decimal> = Default::default();
    let mut failed: Option<XlsxExportError> = None;
    scan::each(snap, query, |entry| {
        if u64::from(row) >= max_rows {
            failed = Some(XlsxExportError::TooLarge);
            return Ok(false);
        }
        row = row.saturating_add(1);
        let unit = unit_of(tenant, &entry);
        if let Ok(amount) = Decimal::from_str(&entry.amount) {
            let sum = sums.entry(unit.clone()).or_default();
            *sum = sum.checked_add(amount).unwrap_or(*sum);
        }
        if let Err(err) = ledger_row(sheet, row, &entry, &unit, &formats) {
            failed = Some(err.into());
            return Ok(false);
        }
        Ok(true)
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    let amount_col = names.iter().position(|n| *n == "amount").map_or(8, col_of);
    for (unit, sum) in sums {
        row = row.saturating_add(1);
        sheet.write_string_with_format(row, 0, "total", &formats.header)?;
        sheet.write_string_with_format(row, amount_col.saturating_sub(1), unit.as_str(), &formats.header)?;
        write_amount(sheet, row, amount_col, &sum.to_string(), formats.amount(&unit, true))?;
    }
    Ok(book.save_to_buffer()?)
}

fn ledger_row(
    sheet: &mut Worksheet,
    row: u32,
    e: &AccrualEvent,
    unit: &str,
    formats: &Formats,
) -> Result<(), XlsxError> {
    let text = [
        e.header.id.as_str(),
        &e.header.occurred_at,
        &e.header.tenant,
        &e.header.customer,
        &e.header.branch,
        &e.account,
        &e.entry_type,
        &e.program,
    ];
    for (col, value) in text.iter().enumerate() {
        sheet.write_string(row, col_of(col), *value)?;
    }
    let format = formats.amount(unit, false);
    write_amount(sheet, row, 8, &e.amount, format)?;
    if !e.balance.is_empty() {
        write_amount(sheet, row, 9, &e.balance, format)?;
    }
    if !e.base_amount.is_empty() {
        write_amount(sheet, row, 10, &e.base_amount, &formats.money)?;
    }
    let rest = [
        e.currency.as_str(),
        &e.header.source_event_id,
        e.description.as_deref().unwrap_or_default(),
        e.operator.as_deref().unwrap_or_default(),
    ];
    for (i, value) in rest.iter().enumerate() {
        sheet.write_string(row, col_of(i.saturating_add(11)), *value)?;
    }
    Ok(())
}

/// The columns of a totals export: the grouping, then `unit`, `amount`,
/// `count`.
pub fn totals_columns(totals: &Totals) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = totals.group_by.clone();
    names.extend(["unit", "amount", "count"]);
    names
}

/// The group values of `row` in `totals`' column order.
pub fn totals_values<'a>(totals: &Totals, row: &'a TotalsRow) -> Vec<&'a str> {
    totals
        .group_by
        .iter()
        .map(|name| {
            let value = match *name {
                "entry_type" => &row.entry_type,
                "program" => &row.program,
                "account" => &row.account,
                "branch" => &row.branch,
                "partner" => &row.partner,
                "day" => &row.day,
                "week" => &row.week,
                "month" => &row.month,
                _ => &None,
            };
            value.as_deref().unwrap_or_default()
        })
        .collect()
}

/// `totals` as a workbook: a row per group and a totals row per unit.
///
/// # Errors
/// [`XlsxExportError::Xlsx`] if the workbook cannot be built.
pub fn totals_xlsx(totals: &Totals) -> Result<Vec<u8>, XlsxExportError> {
    let formats = Formats::new();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("totals")?;
    let names = totals_columns(totals);
    header(sheet, &names, &formats)?;
    let groups = totals.group_by.len();
    let mut row = 0u32;
    let lines = totals
        .rows
        .iter()
        .map(|r| {
            (
                totals_values(totals, r),
                r.unit.as_str(),
                r.amount.as_str(),
                r.count,
                false,
            )
        })
        .chain(totals.totals.iter().map(|t| {
            let mut label = vec![""; groups];
            if let Some(first) = label.first_mut() {
                *first = "total";
            }
            (label, t.unit.as_str(), t.amount.as_str(), t.count, true)
        }));
    for (values, unit, amount, count, bold) in lines {
        row = row.saturating_add(1);
        for (col, value) in values.iter().enumerate() {
            if bold {
                sheet.write_string_with_format(row, col_of(col), *value, &formats.header)?;
            } else {
                sheet.write_string(row, col_of(col), *value)?;
            }
        }
        sheet.write_string(row, col_of(groups), unit)?;
        write_amount(
            sheet,
            row,
            col_of(groups.saturating_add(1)),
            amount,
            formats.amount(unit, bold),
        )?;
        // Counts are whole and far below 2^53: exact as an f64.
        #[allow(clippy::cast_precision_loss)]
        sheet.write_number(row, col_of(groups.saturating_add(2)), count as f64)?;
    }
    Ok(book.save_to_buffer()?)
}

/// `totals` as CSV: the columns of [`totals_columns`], a row per group, and
/// (when grouped) a row per unit whose first column is `total`.
pub fn totals_csv(totals: &Totals) -> Vec<u8> {
    let mut out = totals_columns(totals).join(",").into_bytes();
    out.extend_from_slice(b"\r\n");
    let mut line = |values: Vec<&str>, unit: &str, amount: &str, count: u64| {
        for value in values {
            super::query::csv_text(value, &mut out);
            out.push(b',');
        }
        super::query::csv_text(unit, &mut out);
        out.extend_from_slice(format!(",{amount},{count}\r\n").as_bytes());
    };
    for row in &totals.rows {
        line(totals_values(totals, row), &row.unit, &row.amount, row.count);
    }
    if !totals.group_by.is_empty() {
        for total in &totals.totals {
            let mut label = vec![""; totals.group_by.len()];
            if let Some(first) = label.first_mut() {
                *first = "total";
            }
            line(label, &total.unit, &total.amount, total.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::SourceRef;
    use crate::state::codec::{LedgerEntry, Occurred};
    use crate::state::{keys, Durability, Family, RocksStore, Store, WriteSet};

    /// The text of each cell of the sheet's XML, row by row.
    fn cells(xlsx: &[u8]) -> Vec<Vec<String>> {
        use std::io::Read;
        let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(xlsx)) else {
            panic!("not a zip")
        };
        let mut sheet = String::new();
        if let Ok(mut part) = archive.by_name("xl/worksheets/sheet1.xml") {
            let _ = part.read_to_string(&mut sheet);
        }
        let inner = |cell: &str, tag: &str| -> String {
            let Some(at) = cell.find(&format!("<{tag}")) else {
                return String::new();
            };
            let rest = &cell[at..];
            let start = rest.find('>').map_or(0, |i| i + 1);
            rest[start..]
                .split(&format!("</{tag}>"))
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        sheet
            .split("<row ")
            .skip(1)
            .map(|row| {
                row.split("<c ")
                    .skip(1)
                    .map(|c| {
                        if c.contains("inlineStr") {
                            inner(c, "t")
                        } else {
                            inner(c, "v")
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_ledger_export_has_exact_numbers_a_total_per_unit_and_a_cap() {
        let Ok(dir) = tempfile::tempdir() else { return };
        let Ok(store) = RocksStore::open(dir.path()) else {
            panic!("open")
        };
        let Ok(tenant) = toml::from_str::<TenantConfig>("id = \"cafe\"\ncurrency = \"AZN\"\n[branches.downtown]\n")
        else {
            panic!("tenant")
        };
        let source = SourceRef {
            topic: "orders".into(),
            partition: 0,
            offset: 1,
        };
        let long = Decimal::from_str("1234567890123456789.01").unwrap_or_default();
        let mut set = WriteSet::new();
        for (seq, account, amount) in [
            (1u64, "cashback", Decimal::new(450, 2)),
            (2, "bonus", Decimal::new(30, 0)),
            (3, "cashback", long),
        ] {
            let entry = LedgerEntry {
                schema_version: 1,
                branch: "downtown",
                source_event_id: "e",
                source: &source,
                occurred: Occurred::At(time::OffsetDateTime::UNIX_EPOCH),
                account,
                entry_type: "accrual",
                program: "p",
                amount,
                balance: amount,
                base_amount: None,
                currency: "AZN",
                description: Some("=1+1"),
                operator: None,
            };
            let key = keys::ledger(0, "cafe", "c-1", seq);
            set.put(
                Family::LedgerByTime,
                keys::ledger_by_time(0, "cafe", 0, seq),
                key.clone(),
            );
            set.put(Family::Ledger, key, entry.encode());
        }
        assert!(store.write(&set, Durability::Synced).is_ok());
        let snap = store.snapshot();
        let query = LedgerQuery {
            tenant: "cafe".into(),
            ..LedgerQuery::default()
        };
        assert!(matches!(
            ledger_xlsx_at_most(&snap, &query, &tenant, 2),
            Err(XlsxExportError::TooLarge)
        ));
        let built = ledger_xlsx_at_most(&snap, &query, &tenant, 3);
        let Ok(bytes) = built else { panic!("{built:?}") };
        let rows = cells(&bytes);
        assert_eq!(rows.len(), 1 + 3 + 2, "header, entries, a total per unit");
        assert_eq!(rows[0][8], "amount");
        assert_eq!((rows[1][8].as_str(), rows[2][8].as_str()), ("4.5", "30"), "numbers");
        assert_eq!(rows[3][8], "1234567890123456789.01", "too long for a float: exact text");
        // The description (the empty base amount has no cell): text, never a formula.
        assert!(rows[1].iter().any(|c| c == "=1+1"), "{:?}", rows[1]);
        assert!(!String::from_utf8_lossy(&bytes).contains("<f>"));
        let totals: Vec<(&str, &str, &str)> = rows[4..]
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
            .collect();
        assert_eq!(
            totals,
            [("total", "AZN", "1234567890123456793.51"), ("total", "points", "30")]
        );
    }

    #[test]
    fn only_exact_amounts_become_numbers() {
        assert_eq!(exact_f64(Decimal::new(1250, 2)), Some(12.5));
        assert_eq!(exact_f64(Decimal::new(-1, 2)), Some(-0.01));
        assert_eq!(exact_f64(Decimal::new(99_999_999_999_999, 2)), Some(999_999_999_999.99));
        // 20 significant digits do not survive an f64: kept as text.
        let long = Decimal::from_str("123456789012345678.90").unwrap_or_default();
        assert_eq!(exact_f64(long), None);
    }
}
