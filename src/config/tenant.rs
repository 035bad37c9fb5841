//! Loading and validating the tenant files into
//! [`TenantConfig`](crate::programs::TenantConfig)s: each file on its own,
//! then what spans tenants (ids, tokens, partners).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::{parse_toml, ConfigIssue, Issues};
use crate::programs::{partnership, ProgramType, TenantConfig, BUILTIN_ACCOUNTS};

/// Loads every `*.toml` tenant file in `dir` (named by the processor file
/// `processor`) and checks what spans tenants: unique ids and tokens, and
/// partners that exist and share the currency. Problems go to `all`.
pub(super) fn load_dir(processor: &Path, dir: &Path, all: &mut Vec<ConfigIssue>) -> HashMap<String, TenantConfig> {
    let mut tenants = HashMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    match tenant_files(dir) {
        Ok(files) if files.is_empty() => all.push(ConfigIssue {
            file: processor.to_path_buf(),
            field: "tenants.dir".into(),
            message: format!("no *.toml tenant files in {}", dir.display()),
        }),
        Ok(files) => {
            let mut seen: HashMap<String, PathBuf> = HashMap::new();
            let mut token_owner: HashMap<String, String> = HashMap::new();
            for tenant_path in files {
                match load(&tenant_path) {
                    Ok(tenant) => {
                        let tokens = (tenant.api_tokens_sha256.iter().enumerate())
                            .map(|(i, h)| (format!("api_tokens_sha256[{i}]"), h))
                            .chain(
                                (tenant.pos_tokens_sha256.iter().enumerate())
                                    .map(|(i, h)| (format!("pos_tokens_sha256[{i}]"), h)),
                            );
                        for (field, hash) in tokens {
                            match token_owner.get(hash) {
                                Some(owner) if *owner != tenant.id => all.push(ConfigIssue {
                                    file: tenant_path.clone(),
                                    field,
                                    message: format!(
                                        "this token is also a token of tenant {owner:?}; a token must map to one tenant"
                                    ),
                                }),
                                _ => {
                                    token_owner.insert(hash.clone(), tenant.id.clone());
                                }
                            }
                        }
                        if let Some(other) = seen.get(&tenant.id) {
                            all.push(ConfigIssue {
                                file: tenant_path.clone(),
                                field: "id".into(),
                                message: format!("tenant {:?} is also defined in {}", tenant.id, other.display()),
                            });
                        } else {
                            seen.insert(tenant.id.clone(), tenant_path.clone());
                            paths.insert(tenant.id.clone(), tenant_path.clone());
                            tenants.insert(tenant.id.clone(), tenant);
                        }
                    }
                    Err(mut found) => all.append(&mut found),
                }
            }
        }
        Err(err) => all.push(ConfigIssue {
            file: processor.to_path_buf(),
            field: "tenants.dir".into(),
            message: format!("cannot list {}: {err}", dir.display()),
        }),
    }
    for (id, tenant) in &tenants {
        for partner in tenant.partners.keys() {
            if let Some(other) = tenants.get(partner) {
                if other.currency != tenant.currency {
                    all.push(ConfigIssue {
                        file: paths.get(id).cloned().unwrap_or_else(|| dir.to_path_buf()),
                        field: format!("partners.{partner}"),
                        message: format!(
                            "{partner:?} keeps its balances in {}, this tenant in {}: a shared deposit needs one currency",
                            other.currency, tenant.currency
                        ),
                    });
                }
            }
            if !tenants.contains_key(partner) && partner != id {
                all.push(ConfigIssue {
                    file: paths.get(id).cloned().unwrap_or_else(|| dir.to_path_buf()),
                    field: format!("partners.{partner}"),
                    message: format!(
                        "{partner:?} is not a configured tenant; both partners must be served by this deployment"
                    ),
                });
            }
        }
    }
    tenants
}

fn tenant_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Agreements that are not (yet) active, as sentences for `check-config`:
/// one per pair of tenants where either side names the other, whichever
/// side that is.
pub fn pending_partnerships(tenants: &HashMap<String, TenantConfig>) -> Vec<String> {
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (id, tenant) in tenants {
        for partner in tenant.partners.keys() {
            match id.as_str().cmp(partner.as_str()) {
                std::cmp::Ordering::Less => pairs.insert((id, partner)),
                std::cmp::Ordering::Greater => pairs.insert((partner, id)),
                // Refused by validation: a tenant cannot be its own partner.
                std::cmp::Ordering::Equal => false,
            };
        }
    }
    pairs
        .into_iter()
        .filter(|(a, b)| partnership(tenants, a, b).is_none())
        .map(|(a, b)| {
            format!(
                "partnership {a} <-> {b} is not active: both tenants must set sent = true and an \
                 [partners.<other>.accepted] table"
            )
        })
        .collect()
}

fn load(path: &Path) -> Result<TenantConfig, Vec<ConfigIssue>> {
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
    for (name, hashes) in [
        ("api_tokens_sha256", &tenant.api_tokens_sha256),
        ("pos_tokens_sha256", &tenant.pos_tokens_sha256),
    ] {
        for (i, hash) in hashes.iter().enumerate() {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                issues.push(
                    format!("{name}[{i}]"),
                    "must be 64 lower-case hex digits, the SHA-256 of the token; make one with `accrue token hash`",
                );
            }
        }
    }
    if let Some(hash) = tenant
        .pos_tokens_sha256
        .iter()
        .find(|h| tenant.api_tokens_sha256.contains(h))
    {
        issues.push(
            "pos_tokens_sha256",
            format!("{hash} is also a read token (api_tokens_sha256); a till token must be its own"),
        );
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
        if !valid_id(name) || BUILTIN_ACCOUNTS.contains(&&**name) {
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
    super::earning::validate(tenant, issues);
    super::campaigns::validate(tenant, issues);
    for id in tenant.customers.keys() {
        if id.is_empty() || id.len() > 128 || id.contains(':') || id.chars().any(char::is_control) {
            issues.push(
                format!("customers.{id}"),
                "a customer id is 1 to 128 bytes without ':' or control characters",
            );
        }
    }
    validate_expiry(tenant, issues);
}

/// Expiry rules: of the account's and of programs.
fn validate_expiry(tenant: &TenantConfig, issues: &mut Issues<'_>) {
    let programs = tenant
        .programs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((format!("programs[{i}].expiry"), p.expiry.as_ref()?)));
    let accounts = tenant.expiry.iter().map(|(account, rule)| {
        if !tenant.has_account(account) {
            issues.push(
                format!("expiry.{account}"),
                format!("{account:?} is not an account of this tenant (built-in or in bonus_accounts)"),
            );
        }
        (format!("expiry.{account}"), rule)
    });
    let rules: Vec<_> = accounts.collect();
    for (at, rule) in rules.into_iter().chain(programs) {
        const LONGEST: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
        match (rule.after, rule.at_end_of) {
            (None, None) | (Some(_), Some(_)) => issues.push(
                at.clone(),
                "set exactly one of after (\"365d\") and at_end_of (\"month\", \"quarter\" or \"year\")",
            ),
            (Some(after), None) if after < std::time::Duration::from_secs(1) || after > LONGEST => {
                issues.push(format!("{at}.after"), "must be between 1s and 100 years")
            }
            _ => {}
        }
        if let Some(warn) = rule.warn_before {
            if warn.is_zero() || rule.after.is_some_and(|after| warn >= after) || warn > LONGEST {
                issues.push(
                    format!("{at}.warn_before"),
                    "must be more than zero and less than after (the warning comes before the expiry)",
                );
            }
        }
    }
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}
