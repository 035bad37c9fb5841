//! The read side: a customer's balances and the ledger, filtered, paged or
//! exported (CSV, JSON lines, xlsx), the totals of a period and the
//! outstanding balances, a customer's summary, and the tenant's balances
//! with tiers and what expires next (`balances.csv`), from a RocksDB
//! snapshot. The HTTP API ([`crate::api`]) and the `balance` and `ledger`
//! commands use it.
//!
//! # Secondary keys and their cost
//!
//! - A customer's ledger (`customer` set) is the prefix
//!   `p | tenant 0 customer 0` of the `ledger` family: rows scanned = that
//!   customer's entries (after the cursor), in every partition that has a
//!   ledger (one seek each; a customer lives in one).
//! - Anything else uses the `ledger_by_time` index
//!   (`p | tenant 0 occurred_ms | seq` -> ledger key), written in the same
//!   WriteBatch as the entry: one extra key of about 40 bytes per entry. A
//!   query reads the range `[from, to)` of the tenant in each partition and
//!   merges the partitions by time; rows scanned = the tenant's entries in
//!   the period, each with one point read of the entry.
//! - `entry_type`, `program`, `branch` and `account` are checked on the
//!   rows scanned; each page reports `scanned`, and stops early with a
//!   cursor after [`SCAN_BUDGET`] rows.
//! - Totals read the `totals` family's day buckets of the period (see
//!   [`crate::state::keys::totals`]): their cost is the number of distinct
//!   buckets, whatever the number of entries.

mod loyalty;
mod outstanding;
mod query;
mod scan;
mod summary;
mod totals;
mod xlsx;

pub use loyalty::{balances_csv, ExpiringCredit, BALANCES_CSV_HEADER};
pub use outstanding::{outstanding, Outstanding, OutstandingBalances};
pub use query::{
    csv_row, percent_decode, split_query, Cursor, LedgerQuery, PageParams, QueryError, CSV_HEADER, DEFAULT_LIMIT,
    MAX_LIMIT,
};
pub use scan::{balances, each, export, page, Balance, Balances, Format, Page, ReadError, SCAN_BUDGET};
pub use summary::{summary, GiftCardSummary, ProgramSummary, Summary};
pub use totals::{day_text, totals, Dim, Origin, Totals, TotalsQuery, TotalsRow, UnitTotal};
pub use xlsx::{
    exact_f64, ledger_xlsx, totals_columns, totals_csv, totals_values, totals_xlsx, XlsxExportError, MAX_XLSX_ROWS,
};
