//! One tenant file: the business, its branches and its programs.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{parse_toml, ConfigIssue, Issues};
use crate::contract::Amount;

/// A tenant (a business or a network) and its programs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant id used in events and keys.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// ISO 4217 currency of every amount of this tenant.
    pub currency: String,
    /// Decimal places of the currency's minor unit (2 for most currencies).
    #[serde(default = "default_minor_units")]
    pub minor_units: u32,
    /// Branches by id.
    pub branches: BTreeMap<String, BranchConfig>,
    /// Programs of the tenant.
    #[serde(default)]
    pub programs: ProgramsConfig,
}

fn default_minor_units() -> u32 {
    2
}

/// A branch (location) of a tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchConfig {
    /// Display name.
    #[serde(default)]
    pub name: String,
}

/// `[programs]` of a tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramsConfig {
    /// The cashback program, if the tenant runs one.
    pub cashback: Option<CashbackConfig>,
}

/// `[programs.cashback]`: a percentage of the eligible amount returned to the
/// customer's cashback balance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashbackConfig {
    /// Percentage of the eligible amount, 1 to 100, as a decimal string
    /// (`"5"`, `"2.5"`): never a TOML number, so no float rounding sneaks in.
    pub percent: Amount,
    /// Public description shown to customers.
    #[serde(default)]
    pub description: String,
    /// Status per branch; a branch not listed is `inactive`.
    #[serde(default)]
    pub branches: BTreeMap<String, ProgramStatus>,
}

impl CashbackConfig {
    /// Whether the program accrues in `branch`.
    pub fn active_in(&self, branch: &str) -> bool {
        self.branches.get(branch) == Some(&ProgramStatus::Active)
    }
}

/// A program's status in one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramStatus {
    /// The program accrues in this branch.
    Active,
    /// The program does not accrue here; balances stay spendable.
    Inactive,
}

pub(super) fn load(path: &Path) -> Result<TenantConfig, Vec<ConfigIssue>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![ConfigIssue {
            file: path.to_path_buf(),
            field: String::new(),
            message: format!("cannot read the file: {err}"),
        }]
    })?;
    let tenant: TenantConfig = parse_toml(path, &text).map_err(|issue| vec![issue])?;
    let mut issues = Issues::new(path);
    validate(&tenant, &mut issues);
    let found = issues.into_vec();
    if found.is_empty() {
        Ok(tenant)
    } else {
        Err(found)
    }
}

fn validate(tenant: &TenantConfig, issues: &mut Issues<'_>) {
    if !valid_id(&tenant.id) {
        issues.push("id", "must be 1 to 64 characters of [a-zA-Z0-9_.-]");
    }
    if tenant.currency.len() != 3 || !tenant.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        issues.push(
            "currency",
            format!("{:?} is not an ISO 4217 code (three capital letters)", tenant.currency),
        );
    }
    if tenant.minor_units > 4 {
        issues.push("minor_units", "must be between 0 and 4");
    }
    if tenant.branches.is_empty() {
        issues.push("branches", "a tenant needs at least one branch");
    }
    for id in tenant.branches.keys() {
        if !valid_id(id) {
            issues.push(
                format!("branches.{id}"),
                "a branch id must be 1 to 64 characters of [a-zA-Z0-9_.-]",
            );
        }
    }
    if let Some(cashback) = &tenant.programs.cashback {
        let pct = cashback.percent.value();
        if pct < Decimal::ONE || pct > Decimal::ONE_HUNDRED {
            issues.push(
                "programs.cashback.percent",
                format!("must be between 1 and 100, got {pct}"),
            );
        }
        for branch in cashback.branches.keys() {
            if !tenant.branches.contains_key(branch) {
                issues.push(
                    format!("programs.cashback.branches.{branch}"),
                    format!("{branch:?} is not a branch of this tenant (see [branches])"),
                );
            }
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}
