//! Programs and customers: what a tenant's file says (its branches,
//! programs, policies, gift cards, partners and seeded customers) as plain
//! data, and the questions the rules ask of it.
//!
//! Pure: no I/O, no Kafka, no config loading. [`crate::config`] reads and
//! validates the tenant files into these types; [`crate::rules`] reads them.

mod campaigns;
mod customer;
mod earning;
mod partners;
mod policies;
mod program;
mod zone;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use serde::Deserialize;
use time::OffsetDateTime;

pub use campaigns::{BirthdayConfig, CampaignConfig, Day, FixedBonus, Hours, WelcomeConfig};
pub use customer::{CustomerGroups, CustomerProfile, Hold};
pub use earning::{CalendarPeriod, EarningLimits, ExpiryRule, ExpiryRules, TierLevel, TierMetric, TiersConfig};
pub use partners::{partnership, PartnerConditions, PartnerConfig, ReferralConfig, ReferralReward};
pub use policies::{BookingsConfig, BranchConfig, GiftCardConfig, NegativeBalance, RedemptionConfig, RefundConfig};
pub use program::{
    AllSales, GroupRule, ProgramConfig, ProgramStatus, ProgramType, ProgramVersions, SalePair, SalesConfig,
};
pub use zone::Zone;

/// Accounts every tenant has besides named bonus accounts.
pub const BUILTIN_ACCOUNTS: [&str; 5] = ["cashback", "bonus", "discount", "deposit", "service_points"];

// The built-in accounts' names are allocated once: a ledger entry naming
// one clones a reference count, not a string.

/// `cashback`, shared.
pub static CASHBACK_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("cashback"));
/// `bonus`, shared.
pub static BONUS_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("bonus"));
/// `discount`, shared.
pub static DISCOUNT_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("discount"));
/// `deposit`, shared.
pub static DEPOSIT_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("deposit"));
/// `service_points`, shared.
pub static SERVICE_POINTS_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("service_points"));

/// The shared name of a built-in account ([`BUILTIN_ACCOUNTS`]).
pub fn builtin_account(account: &str) -> Option<Arc<str>> {
    let name = match account {
        "cashback" => &CASHBACK_NAME,
        "bonus" => &BONUS_NAME,
        "discount" => &DISCOUNT_NAME,
        "deposit" => &DEPOSIT_NAME,
        "service_points" => &SERVICE_POINTS_NAME,
        _ => return None,
    };
    Some(Arc::clone(name))
}

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
    /// The tenant's time zone (IANA name, default `UTC`): campaign hours,
    /// earning-limit days and months, and expiry at the end of a period.
    #[serde(default)]
    pub timezone: Zone,
    /// ISO 4217 currency of every amount of this tenant.
    pub currency: String,
    /// Decimal places of the currency's minor unit (2 for most currencies).
    #[serde(default = "default_minor_units")]
    pub minor_units: u32,
    /// Branches by id.
    pub branches: BTreeMap<String, BranchConfig>,
    /// Named bonus accounts (seed 001) besides the built-in ones.
    #[serde(default)]
    pub bonus_accounts: BTreeSet<Arc<str>>,
    /// Programs, each version a separate entry (same `id`, later `valid_from`).
    #[serde(default)]
    pub programs: ProgramVersions,
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
    /// Bearer tokens of the tills (quotes and authorizations, which hold
    /// balance), as the SHA-256 of each; read tokens cannot do this.
    #[serde(default)]
    pub pos_tokens_sha256: Vec<String>,
    /// The referral program (seed 002), if the tenant runs one.
    #[serde(default)]
    pub referral: Option<ReferralConfig>,
    /// Partnership agreements (seed 000) by partner tenant id.
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerConfig>,
    /// How credits of each account expire (`[expiry.<account>]`); a
    /// program's own `expiry` overrides it for that program's credits.
    #[serde(default)]
    pub expiry: ExpiryRules,
    /// Tiers by spend or visits over a rolling window.
    #[serde(default)]
    pub tiers: Option<TiersConfig>,
    /// Campaigns: multipliers and bonuses within dates, days, hours and
    /// branches (`[[campaigns]]`).
    #[serde(default)]
    pub campaigns: Vec<CampaignConfig>,
    /// The birthday bonus, if the tenant gives one.
    #[serde(default)]
    pub birthday: Option<BirthdayConfig>,
    /// The welcome bonus on registration, if the tenant gives one.
    #[serde(default)]
    pub welcome: Option<WelcomeConfig>,
}

fn default_minor_units() -> u32 {
    2
}

impl TenantConfig {
    /// Whether `account` is an account of this tenant.
    pub fn has_account(&self, account: &str) -> bool {
        BUILTIN_ACCOUNTS.contains(&account) || self.bonus_accounts.contains(account)
    }

    /// The shared name of `account`, if it is an account of this tenant.
    pub fn account_name(&self, account: &str) -> Option<Arc<str>> {
        builtin_account(account).or_else(|| self.bonus_accounts.get(account).cloned())
    }

    /// Whether `account` holds points (rounded down) rather than money.
    pub fn is_points(&self, account: &str) -> bool {
        match account {
            "bonus" | "service_points" => true,
            // A bonus account never has a built-in name (validation).
            "cashback" | "discount" | "deposit" => false,
            _ => self.bonus_accounts.contains(account),
        }
    }

    /// What `account`'s amounts are counted in, in reports and totals:
    /// `points`, or the tenant's currency.
    pub fn unit_of(&self, account: &str) -> &str {
        if self.is_points(account) {
            "points"
        } else {
            &self.currency
        }
    }

    /// The versions in force at `at`: for each program id, the latest
    /// version whose `valid_from` is not after `at`.
    pub fn programs_at(&self, at: OffsetDateTime) -> impl Iterator<Item = &ProgramConfig> + '_ {
        self.programs.at(at)
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

    /// Whether the tenant uses expiry, tiers or earning limits, so each
    /// customer has a loyalty record ([`crate::rules::Loyalty`]).
    pub fn keeps_loyalty(&self) -> bool {
        !self.expiry.is_empty()
            || self.tiers.is_some()
            || self.programs.iter().any(|p| p.expiry.is_some() || p.limits.is_some())
    }

    /// The expiry rule of a credit to `account` by `program`: the
    /// program's own (of any version), else the account's.
    pub fn expiry_rule(&self, account: &str, program: &str) -> Option<&ExpiryRule> {
        self.programs
            .iter()
            .rev()
            .find(|p| &*p.id == program && p.expiry.is_some() && p.account() == account)
            .and_then(|p| p.expiry.as_ref())
            .or_else(|| self.expiry.get(account))
    }

    /// Whether some account has an expiry rule, so customers' credits are
    /// kept as lots ([`crate::rules::loyalty::Lots`]).
    pub fn keeps_lots(&self) -> bool {
        !self.expiry.is_empty() || self.programs.iter().any(|p| p.expiry.is_some())
    }

    /// Whether credits to `account` are kept as lots (spent oldest first)
    /// because some of them may expire.
    pub fn tracks_lots(&self, account: &str) -> bool {
        self.expiry.contains_key(account)
            || self
                .programs
                .iter()
                .any(|p| p.expiry.is_some() && p.account() == account)
    }

    /// The seeded profile of `customer`, if any.
    pub fn seeded_customer(&self, customer: &str) -> Option<&CustomerProfile> {
        self.customers.get(customer)
    }
}
