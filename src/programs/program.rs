//! One version of a program: its type, percentage, branches, the sales it
//! accrues on and what it excludes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::contract::Amount;

/// The kind of program (seed 003, plus group bonuses of seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramType {
    /// A percentage back to the `cashback` balance (money).
    Cashback,
    /// A percentage as points on the `bonus` balance (points round down).
    Bonus,
    /// A percentage to the `discount` balance (money) for later payments.
    Discount,
    /// Percentages per product group for customer groups, as points on a
    /// named bonus account (seed 001).
    GroupBonus,
}

impl ProgramType {
    /// The account this type credits by default.
    pub fn default_account(self) -> &'static str {
        match self {
            ProgramType::Cashback => "cashback",
            ProgramType::Bonus | ProgramType::GroupBonus => "bonus",
            ProgramType::Discount => "discount",
        }
    }

    /// The shared name of [`ProgramType::default_account`].
    fn default_account_name(self) -> Arc<str> {
        let name = match self {
            ProgramType::Cashback => &super::CASHBACK_NAME,
            ProgramType::Bonus | ProgramType::GroupBonus => &super::BONUS_NAME,
            ProgramType::Discount => &super::DISCOUNT_NAME,
        };
        Arc::clone(name)
    }
}

/// Which sales and payments a program accrues on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SalesConfig {
    /// `"all"`: all sales and payments.
    All(AllSales),
    /// Specific (sale type, payment methods) pairs; `"*"` means any method.
    Specific(Vec<SalePair>),
}

/// The literal `"all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllSales {
    /// All sales and payments.
    All,
}

impl Default for SalesConfig {
    fn default() -> Self {
        SalesConfig::All(AllSales::All)
    }
}

/// One sale type and the payment methods that accrue with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalePair {
    /// Sale type: `dine_in`, `takeaway`, `delivery`, ...
    pub sale_type: String,
    /// Payment methods; `["*"]` for all.
    pub methods: BTreeSet<String>,
}

/// A per-product-group rule of a group bonus program.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// Product category (product group) the rule applies to.
    pub category: String,
    /// Percentage, 1 to 100.
    pub percent: Amount,
}

/// One version of a program.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// Program id; versions share it.
    pub id: Arc<str>,
    /// Program type.
    #[serde(rename = "type")]
    pub program_type: ProgramType,
    /// When this version takes effect (RFC 3339); absent means always.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    /// Percentage for cashback, bonus and discount programs, 1 to 100.
    #[serde(default)]
    pub percent: Option<Amount>,
    /// Account credited; defaults by type. Group bonus programs name one.
    #[serde(default)]
    pub account: Option<Arc<str>>,
    /// Public description shown to customers.
    #[serde(default)]
    pub description: String,
    /// Status per branch; a branch not listed is `inactive`.
    #[serde(default)]
    pub branches: BTreeMap<String, ProgramStatus>,
    /// `"all"` or specific (sale type, payment methods) pairs.
    #[serde(default)]
    pub sales: SalesConfig,
    /// Categories that never accrue.
    #[serde(default)]
    pub exclude_categories: BTreeSet<String>,
    /// Products that never accrue.
    #[serde(default)]
    pub exclude_products: BTreeSet<String>,
    /// "Exclude all, then include a few": only `include_*` accrue.
    #[serde(default)]
    pub exclude_all: bool,
    /// With `exclude_all`: categories that accrue.
    #[serde(default)]
    pub include_categories: BTreeSet<String>,
    /// With `exclude_all`: products that accrue.
    #[serde(default)]
    pub include_products: BTreeSet<String>,
    /// Only registered customers earn (default true).
    #[serde(default = "yes")]
    pub registered_only: bool,
    /// Customer groups a group bonus program targets.
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Per-product-group percentages of a group bonus program.
    #[serde(default)]
    pub rules: Vec<GroupRule>,
}

fn yes() -> bool {
    true
}

impl ProgramConfig {
    /// Whether the program accrues in `branch`.
    pub fn active_in(&self, branch: &str) -> bool {
        self.branches.get(branch) == Some(&ProgramStatus::Active)
    }

    /// The account this program credits.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(self.program_type.default_account())
    }

    /// The shared name of [`ProgramConfig::account`]: cloning it for a
    /// ledger entry counts a reference.
    pub fn account_name(&self) -> Arc<str> {
        match &self.account {
            Some(account) => Arc::clone(account),
            None => self.program_type.default_account_name(),
        }
    }

    /// Whether this version is in force at `at`.
    pub fn valid_at(&self, at: OffsetDateTime) -> bool {
        self.valid_from.is_none_or(|from| from <= at)
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
