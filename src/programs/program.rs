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
    /// How this program's credits expire, instead of the account's rule.
    #[serde(default)]
    pub expiry: Option<super::ExpiryRule>,
    /// The percentage per tier level id, instead of `percent`, for
    /// customers at that level.
    #[serde(default)]
    pub tier_percent: BTreeMap<String, Amount>,
    /// Earning limits: per order, per day, per month.
    #[serde(default)]
    pub limits: Option<super::EarningLimits>,
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

/// A tenant's program versions in file order, with an index by id built
/// once when the file is read: the versions in force at a time are found
/// without sorting or allocating per event.
#[derive(Debug, Clone, Default)]
pub struct ProgramVersions {
    versions: Vec<ProgramConfig>,
    /// Positions in `versions`, one group per id in id order, each group
    /// by `valid_from` (file order among equals).
    by_id: Vec<Vec<usize>>,
}

impl ProgramVersions {
    /// Indexes `versions`.
    pub fn new(versions: Vec<ProgramConfig>) -> Self {
        let mut order: Vec<usize> = (0..versions.len()).collect();
        let key = |i: &usize| versions.get(*i).map(|p| (&p.id, p.valid_from));
        order.sort_by(|a, b| key(a).cmp(&key(b)));
        let mut by_id: Vec<Vec<usize>> = Vec::new();
        for i in order {
            let same = by_id
                .last()
                .and_then(|group| group.first())
                .and_then(|first| versions.get(*first))
                .zip(versions.get(i))
                .is_some_and(|(a, b)| a.id == b.id);
            match by_id.last_mut() {
                Some(group) if same => group.push(i),
                _ => by_id.push(vec![i]),
            }
        }
        ProgramVersions { versions, by_id }
    }

    /// The versions in force at `at`, in id order: for each program id,
    /// the latest version whose `valid_from` is not after `at`.
    pub fn at(&self, at: OffsetDateTime) -> impl Iterator<Item = &ProgramConfig> + '_ {
        self.by_id.iter().filter_map(move |group| {
            group
                .iter()
                .rev()
                .filter_map(|i| self.versions.get(*i))
                .find(|p| p.valid_at(at))
        })
    }
}

impl std::ops::Deref for ProgramVersions {
    type Target = [ProgramConfig];

    fn deref(&self) -> &[ProgramConfig] {
        &self.versions
    }
}

impl<'de> Deserialize<'de> for ProgramVersions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ProgramConfig>::deserialize(deserializer).map(ProgramVersions::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_force_are_the_latest_per_id_in_id_order() {
        let file = r#"
[[programs]]
id = "zeta"
type = "cashback"
valid_from = "2026-06-01T00:00:00Z"
[[programs]]
id = "alpha"
type = "bonus"
valid_from = "2026-03-01T00:00:00Z"
[[programs]]
id = "zeta"
type = "discount"
[[programs]]
id = "alpha"
type = "cashback"
valid_from = "2026-01-01T00:00:00Z"
"#;
        #[derive(Deserialize)]
        struct File {
            programs: ProgramVersions,
        }
        let versions = match toml::from_str::<File>(file) {
            Ok(f) => f.programs,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(versions.len(), 4, "file order is kept");
        assert_eq!(&*versions[0].id, "zeta");
        let at = |s: &str| match OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
            Ok(t) => versions
                .at(t)
                .map(|p| (p.id.to_string(), p.program_type))
                .collect::<Vec<_>>(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(at("2025-12-31T00:00:00Z"), vec![("zeta".into(), ProgramType::Discount)]);
        assert_eq!(
            at("2026-02-01T00:00:00Z"),
            vec![
                ("alpha".into(), ProgramType::Cashback),
                ("zeta".into(), ProgramType::Discount)
            ]
        );
        assert_eq!(
            at("2026-07-01T00:00:00Z"),
            vec![
                ("alpha".into(), ProgramType::Bonus),
                ("zeta".into(), ProgramType::Cashback)
            ]
        );
    }
}
