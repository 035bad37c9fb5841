//! One tenant file: the business, its branches, its programs (versioned),
//! redemption and refund policies, the gift-card catalogue and seeded
//! customers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{parse_toml, ConfigIssue, Issues};
use crate::contract::Amount;

/// Accounts every tenant has besides named bonus accounts.
pub const BUILTIN_ACCOUNTS: [&str; 5] = ["cashback", "bonus", "discount", "deposit", "service_points"];

/// Prefix of a partner's shared-deposit bucket: `deposit@<partner>`.
pub const DEPOSIT_AT: &str = "deposit@";

/// The account of deposit accumulated at `partner` into the shared deposit.
pub fn deposit_at(partner: &str) -> String {
    format!("{DEPOSIT_AT}{partner}")
}

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
    /// Named bonus accounts (seed 001) besides the built-in ones.
    #[serde(default)]
    pub bonus_accounts: BTreeSet<String>,
    /// Programs, each version a separate entry (same `id`, later `valid_from`).
    #[serde(default)]
    pub programs: Vec<ProgramConfig>,
    /// Paying with balances.
    #[serde(default)]
    pub redemption: RedemptionConfig,
    /// Refund policy.
    #[serde(default)]
    pub refunds: RefundConfig,
    /// Gift cards customers can buy with points (seed 004).
    #[serde(default)]
    pub gift_cards: Vec<GiftCardConfig>,
    /// Customers known before any `customer.upserted` event, by id.
    #[serde(default)]
    pub customers: BTreeMap<String, CustomerProfile>,
    /// Service points for bookings (seed 004).
    #[serde(default)]
    pub bookings: BookingsConfig,
    /// Bearer tokens of the read API for this tenant, stored as the
    /// lower-case hex SHA-256 of the token (`accrue token hash` prints it).
    #[serde(default)]
    pub api_tokens_sha256: Vec<String>,
    /// The referral program (seed 002), if the tenant runs one.
    #[serde(default)]
    pub referral: Option<ReferralConfig>,
    /// Partnership agreements (seed 000) by partner tenant id.
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerConfig>,
}

/// `[referral]`: the invitee gets a discount on the first visit; the
/// referrer gets a fixed cashback on the invitee's first visit, or on every
/// visit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralConfig {
    /// Program id in the ledger and in reports (default `referral`).
    #[serde(default = "default_referral_id")]
    pub id: String,
    /// Public description.
    #[serde(default)]
    pub description: String,
    /// The invitee's discount on the first visit, reported to the POS.
    pub invitee_discount_percent: Amount,
    /// The account (card) the referrer's reward is credited to.
    #[serde(default = "default_referral_account")]
    pub referrer_account: String,
    /// A fixed reward per rewarded visit, at the account's scale.
    #[serde(default)]
    pub referrer_amount: Option<Amount>,
    /// Or: a percentage of the invitee's bill paid with money.
    #[serde(default)]
    pub referrer_percent: Option<Amount>,
    /// On the invitee's first visit only, or on every visit.
    #[serde(default)]
    pub reward: ReferralReward,
}

/// When the referrer is rewarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralReward {
    /// Only for the invitee's first visit.
    #[default]
    FirstVisit,
    /// For every visit of the invitee.
    EveryVisit,
}

fn default_referral_id() -> String {
    "referral".into()
}

fn default_referral_account() -> String {
    "cashback".into()
}

/// `[partners.<tenant>]`: one side of a partnership agreement (seed 000).
/// The partnership is active only when both tenants have `sent = true` and
/// an `[partners.<other>.accepted]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// This tenant sent its agreement to the partner.
    #[serde(default)]
    pub sent: bool,
    /// This tenant accepted the partner's agreement, with these conditions
    /// for the partner's customers here.
    #[serde(default)]
    pub accepted: Option<PartnerConditions>,
}

/// What a tenant grants the partner's customers (set by the accepting side).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConditions {
    /// The partner's customers keep their own discount and accrual
    /// percentages (their client card at the partner) here.
    #[serde(default)]
    pub copy_privileges: bool,
    /// Discount for the partner's customers (without `copy_privileges`).
    #[serde(default)]
    pub discount_percent: Amount,
    /// Accrual for the partner's customers (without `copy_privileges`).
    #[serde(default)]
    pub accrual_percent: Amount,
    /// The partner's customers pay from, and accrue into, their one deposit
    /// kept by the partner.
    #[serde(default)]
    pub shared_deposit: bool,
    /// Most of a bill here payable from deposit accumulated here (percent);
    /// deposit accumulated at the partner may pay up to the whole bill.
    #[serde(default = "hundred")]
    pub payment_percent: Amount,
}

fn hundred() -> Amount {
    Amount::new(Decimal::ONE_HUNDRED)
}

/// `[bookings]`: points per booked service or class, credited a delay
/// after the appointment ends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingsConfig {
    /// How long after the appointment's end the points are credited
    /// (`"3h"`, `"90m"`, `"5s"`); default 3 hours.
    #[serde(default = "default_credit_delay", with = "humantime_serde")]
    pub credit_delay: std::time::Duration,
    /// Points per service or class id; a service not listed earns nothing.
    #[serde(default)]
    pub points: BTreeMap<String, Amount>,
}

impl Default for BookingsConfig {
    fn default() -> Self {
        BookingsConfig {
            credit_delay: default_credit_delay(),
            points: BTreeMap::new(),
        }
    }
}

fn default_credit_delay() -> std::time::Duration {
    std::time::Duration::from_secs(3 * 3600)
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
    /// Balance payment methods enabled here (`cashback`, `bonus`, `discount`,
    /// `deposit`, or a named bonus account). Paying with any other balance
    /// here is rejected.
    #[serde(default)]
    pub payment_methods: BTreeSet<String>,
}

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
    pub id: String,
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
    pub account: Option<String>,
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

/// `[redemption]`: paying with balances.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionConfig {
    /// Largest share of a bill, in percent, payable from each account;
    /// an account not listed may pay 100%.
    #[serde(default)]
    pub max_percent: BTreeMap<String, Amount>,
    /// Whether the part of an order paid with balances also accrues
    /// (default false: only money paid otherwise accrues).
    #[serde(default)]
    pub accrue_on_balance_payments: bool,
}

/// What a refund does when the accrual to reverse was already spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeBalance {
    /// Reverse in full; the balance may go below zero.
    #[default]
    Allow,
    /// Reverse at most the current balance; the rest is written off.
    Clamp,
}

/// `[refunds]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundConfig {
    /// Policy for reversing accruals that were already spent.
    #[serde(default)]
    pub negative_balance: NegativeBalance,
}

/// One gift card of the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiftCardConfig {
    /// Catalogue id used in `giftcard.exchange`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Price in points.
    pub points: Amount,
    /// The gift card's value in the tenant's currency.
    pub value: Amount,
    /// Account the points are taken from (default `service_points`).
    #[serde(default = "default_giftcard_account")]
    pub account: String,
}

fn default_giftcard_account() -> String {
    "service_points".into()
}

/// A customer's profile: from `customer.upserted`, or seeded in the
/// tenant file under `[customers.<id>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerProfile {
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// Customer groups.
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Signed up: only registered customers earn.
    #[serde(default)]
    pub registered: bool,
    /// Agreed to marketing notifications.
    #[serde(default)]
    pub marketing_consent: bool,
    /// The customer's own discount percentage (client card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent: Option<Amount>,
    /// The customer's own accrual percentage (client card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrual_percent: Option<Amount>,
    /// Has visited (an order or visit was applied). Kept by accrue; set it
    /// in config for customers imported with a history, so they do not count
    /// as first-time visitors for referrals.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub visited: bool,
    /// The customer who referred this one (kept by accrue), for referral
    /// rewards on every visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_by: Option<String>,
}

impl TenantConfig {
    /// Whether `account` is an account of this tenant.
    pub fn has_account(&self, account: &str) -> bool {
        BUILTIN_ACCOUNTS.contains(&account) || self.bonus_accounts.contains(account)
    }

    /// Whether `account` holds points (rounded down) rather than money.
    pub fn is_points(&self, account: &str) -> bool {
        matches!(account, "bonus" | "service_points") || self.bonus_accounts.contains(account)
    }

    /// The versions in force at `at`: for each program id, the latest
    /// version whose `valid_from` is not after `at`.
    pub fn programs_at(&self, at: OffsetDateTime) -> Vec<&ProgramConfig> {
        // A tenant has a handful of programs: a linear search by id and one
        // sort cost less than a map (this runs for every order).
        let mut chosen: Vec<&ProgramConfig> = Vec::with_capacity(self.programs.len());
        for program in self.programs.iter().filter(|p| p.valid_at(at)) {
            match chosen.iter_mut().find(|c| c.id == program.id) {
                Some(current) => {
                    if program.valid_from >= current.valid_from {
                        *current = program;
                    }
                }
                None => chosen.push(program),
            }
        }
        chosen.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        chosen
    }

    /// The gift card `id` of the catalogue.
    pub fn gift_card(&self, id: &str) -> Option<&GiftCardConfig> {
        self.gift_cards.iter().find(|g| g.id == id)
    }

    /// Whether `account` is the shared-deposit bucket of a partner:
    /// `deposit@<partner>`, money accumulated at that partner.
    pub fn partner_bucket<'a>(&self, account: &'a str) -> Option<&'a str> {
        account
            .strip_prefix(DEPOSIT_AT)
            .filter(|partner| self.partners.contains_key(*partner))
    }

    /// The seeded profile of `customer`, if any.
    pub fn seeded_customer(&self, customer: &str) -> Option<&CustomerProfile> {
        self.customers.get(customer)
    }
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

fn check_percent(issues: &mut Issues<'_>, field: String, pct: Decimal) {
    if pct < Decimal::ONE || pct > Decimal::ONE_HUNDRED {
        issues.push(field, format!("must be between 1 and 100, got {pct}"));
    }
}

fn validate(tenant: &TenantConfig, issues: &mut Issues<'_>) {
    for (i, hash) in tenant.api_tokens_sha256.iter().enumerate() {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            issues.push(
                format!("api_tokens_sha256[{i}]"),
                "must be 64 lower-case hex digits, the SHA-256 of the token; make one with `accrue token hash`",
            );
        }
    }
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
    for name in &tenant.bonus_accounts {
        if !valid_id(name) || BUILTIN_ACCOUNTS.contains(&name.as_str()) {
            issues.push(
                "bonus_accounts",
                format!("{name:?} must be 1 to 64 characters of [a-zA-Z0-9_.-] and not a built-in account"),
            );
        }
    }
    for (id, branch) in &tenant.branches {
        if !valid_id(id) {
            issues.push(
                format!("branches.{id}"),
                "a branch id must be 1 to 64 characters of [a-zA-Z0-9_.-]",
            );
        }
        for method in &branch.payment_methods {
            if !tenant.has_account(method) {
                issues.push(
                    format!("branches.{id}.payment_methods"),
                    format!("{method:?} is not an account of this tenant (built-in or in bonus_accounts)"),
                );
            }
        }
    }
    let mut versions: BTreeSet<(&str, Option<OffsetDateTime>)> = BTreeSet::new();
    for (i, program) in tenant.programs.iter().enumerate() {
        let at = format!("programs[{i}]");
        if !valid_id(&program.id) {
            issues.push(format!("{at}.id"), "must be 1 to 64 characters of [a-zA-Z0-9_.-]");
        }
        if !versions.insert((&program.id, program.valid_from)) {
            issues.push(
                format!("{at}.valid_from"),
                format!("program {:?} has two versions with this valid_from", program.id),
            );
        }
        match program.program_type {
            ProgramType::GroupBonus => {
                if program.percent.is_some() {
                    issues.push(
                        format!("{at}.percent"),
                        "a group_bonus program sets percentages per category in rules",
                    );
                }
                if program.groups.is_empty() {
                    issues.push(
                        format!("{at}.groups"),
                        "a group_bonus program targets at least one customer group",
                    );
                }
                if program.rules.is_empty() {
                    issues.push(format!("{at}.rules"), "a group_bonus program needs at least one rule");
                }
                for (j, rule) in program.rules.iter().enumerate() {
                    check_percent(issues, format!("{at}.rules[{j}].percent"), rule.percent.value());
                }
            }
            _ => match program.percent {
                Some(pct) => check_percent(issues, format!("{at}.percent"), pct.value()),
                None => issues.push(
                    format!("{at}.percent"),
                    "required for cashback, bonus and discount programs",
                ),
            },
        }
        if !tenant.has_account(program.account()) {
            issues.push(
                format!("{at}.account"),
                format!(
                    "{:?} is not an account of this tenant (add it to bonus_accounts)",
                    program.account()
                ),
            );
        }
        for branch in program.branches.keys() {
            if !tenant.branches.contains_key(branch) {
                issues.push(
                    format!("{at}.branches.{branch}"),
                    format!("{branch:?} is not a branch of this tenant (see [branches])"),
                );
            }
        }
        let includes = !(program.include_categories.is_empty() && program.include_products.is_empty());
        if includes && !program.exclude_all {
            issues.push(
                format!("{at}.include_categories"),
                "include_* lists only apply with exclude_all = true",
            );
        }
    }
    for (account, pct) in &tenant.redemption.max_percent {
        if !tenant.has_account(account) {
            issues.push(
                format!("redemption.max_percent.{account}"),
                "is not an account of this tenant",
            );
        }
        let v = pct.value();
        if v < Decimal::ZERO || v > Decimal::ONE_HUNDRED {
            issues.push(
                format!("redemption.max_percent.{account}"),
                format!("must be between 0 and 100, got {v}"),
            );
        }
    }
    let mut cards = BTreeSet::new();
    for (i, card) in tenant.gift_cards.iter().enumerate() {
        if !valid_id(&card.id) || !cards.insert(card.id.as_str()) {
            issues.push(
                format!("gift_cards[{i}].id"),
                "must be a unique id of 1 to 64 characters of [a-zA-Z0-9_.-]",
            );
        }
        if card.points.value() <= Decimal::ZERO || card.value.value() <= Decimal::ZERO {
            issues.push(format!("gift_cards[{i}]"), "points and value must be greater than zero");
        }
        if !tenant.is_points(&card.account) {
            issues.push(
                format!("gift_cards[{i}].account"),
                "must be a points account (bonus, service_points or a bonus account)",
            );
        }
    }
    if tenant.bookings.credit_delay > std::time::Duration::from_secs(30 * 24 * 3600) {
        issues.push("bookings.credit_delay", "must be at most 30 days");
    }
    for (service, points) in &tenant.bookings.points {
        let v = points.value();
        if v <= Decimal::ZERO || !v.fract().is_zero() {
            issues.push(
                format!("bookings.points.{service}"),
                format!("must be a whole number of points above zero, got {v}"),
            );
        }
    }
    if let Some(referral) = &tenant.referral {
        if !valid_id(&referral.id) {
            issues.push("referral.id", "must be 1 to 64 characters of [a-zA-Z0-9_.-]");
        }
        let discount = referral.invitee_discount_percent.value();
        if discount < Decimal::ZERO || discount > Decimal::ONE_HUNDRED {
            issues.push(
                "referral.invitee_discount_percent",
                format!("must be between 0 and 100, got {discount}"),
            );
        }
        if !tenant.has_account(&referral.referrer_account) {
            issues.push(
                "referral.referrer_account",
                format!("{:?} is not an account of this tenant", referral.referrer_account),
            );
        }
        match (referral.referrer_amount, referral.referrer_percent) {
            (Some(amount), None) => {
                let v = amount.value();
                let scale = if tenant.is_points(&referral.referrer_account) {
                    0
                } else {
                    tenant.minor_units
                };
                if v <= Decimal::ZERO || v.normalize().scale() > scale {
                    issues.push(
                        "referral.referrer_amount",
                        format!("must be above zero with at most {scale} decimals for this account, got {v}"),
                    );
                }
            }
            (None, Some(pct)) => check_percent(issues, "referral.referrer_percent".into(), pct.value()),
            _ => issues.push(
                "referral",
                "set exactly one of referrer_amount (a fixed reward) and referrer_percent (of the invitee's bill)",
            ),
        }
    }
    for (partner, agreement) in &tenant.partners {
        let at = format!("partners.{partner}");
        if partner == &tenant.id {
            issues.push(at.clone(), "a tenant cannot be its own partner");
        }
        if let Some(conditions) = &agreement.accepted {
            for (field, pct) in [
                ("discount_percent", conditions.discount_percent),
                ("accrual_percent", conditions.accrual_percent),
                ("payment_percent", conditions.payment_percent),
            ] {
                let v = pct.value();
                if v < Decimal::ZERO || v > Decimal::ONE_HUNDRED {
                    issues.push(
                        format!("{at}.accepted.{field}"),
                        format!("must be between 0 and 100, got {v}"),
                    );
                }
            }
        }
    }
    for (id, profile) in &tenant.customers {
        for (field, pct) in [
            ("discount_percent", profile.discount_percent),
            ("accrual_percent", profile.accrual_percent),
        ] {
            if let Some(pct) = pct {
                let v = pct.value();
                if v < Decimal::ZERO || v > Decimal::ONE_HUNDRED {
                    issues.push(
                        format!("customers.{id}.{field}"),
                        format!("must be between 0 and 100, got {v}"),
                    );
                }
            }
        }
    }
    for id in tenant.customers.keys() {
        if id.is_empty() || id.len() > 128 || id.contains(':') || id.chars().any(char::is_control) {
            issues.push(
                format!("customers.{id}"),
                "a customer id is 1 to 128 bytes without ':' or control characters",
            );
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
