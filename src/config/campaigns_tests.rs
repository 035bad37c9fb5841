//! Validation of `[[campaigns]]`, `[birthday]` and `[welcome]`: each
//! mistake is reported with its field and what to write instead.

use std::path::Path;

use super::*;
use crate::programs::TenantConfig;

const TENANT: &str = r#"
id = "cafe"
currency = "AZN"
timezone = "Europe/Kyiv"
bonus_accounts = ["coffee-bonus"]
[branches.downtown]
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
"#;

/// The issues of the tenant file `TENANT` + `extra`, as `field: message`.
fn issues_of(extra: &str) -> Vec<String> {
    let path = Path::new("tenants/cafe.toml");
    let text = format!("{TENANT}\n{extra}");
    let tenant: TenantConfig = match parse_toml(path, &text) {
        Ok(t) => t,
        Err(issue) => return vec![format!("{}: {}", issue.field, issue.message)],
    };
    let mut issues = Issues::new(path);
    campaigns::validate(&tenant, &mut issues);
    issues
        .into_vec()
        .into_iter()
        .map(|i| format!("{}: {}", i.field, i.message))
        .collect()
}

/// Asserts that `extra` has exactly one issue, at `field`, saying `says`.
fn refused(extra: &str, field: &str, says: &str) {
    let found = issues_of(extra);
    assert_eq!(found.len(), 1, "{extra}\n{found:#?}");
    assert!(
        found[0].starts_with(&format!("{field}: ")) && found[0].contains(says),
        "{extra}\nwant {field}: ...{says}...\ngot {found:#?}"
    );
}

#[test]
fn a_full_example_is_valid() {
    let found = issues_of(
        r#"
[[campaigns]]
id = "weekend-lunch"
description = "Double cashback at weekend lunch"
from = "2026-06-01T00:00:00+03:00"
until = "2026-09-01T00:00:00+03:00"
days = ["sat", "sun"]
hours = "22:00-02:00"
branches = ["downtown"]
programs = ["cashback"]
multiplier = "1.5"
bonus = { account = "coffee-bonus", amount = "20" }
min_total = "10.50"
[birthday]
account = "bonus"
amount = "100"
days_before = 180
days_after = 180
[welcome]
account = "cashback"
amount = "2.50"
"#,
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn multipliers_must_be_above_one_and_at_most_a_hundred() {
    let campaign = |m: &str| format!("[[campaigns]]\nid = \"c\"\nmultiplier = \"{m}\"\n");
    for bad in ["1", "0.5", "100.01", "-2"] {
        refused(
            &campaign(bad),
            "campaigns[0].multiplier",
            "must be above 1 and at most 100",
        );
    }
    assert!(issues_of(&campaign("100")).is_empty());
    refused(
        "[[campaigns]]\nid = \"c\"\n",
        "campaigns[0]",
        "a campaign needs a multiplier",
    );
}

#[test]
fn bonuses_need_an_account_of_the_tenant_and_an_amount_it_holds() {
    refused(
        "[[campaigns]]\nid = \"c\"\nbonus = { account = \"tea-bonus\", amount = \"5\" }\n",
        "campaigns[0].bonus.account",
        "bonus_accounts",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nbonus = { account = \"coffee-bonus\", amount = \"2.5\" }\n",
        "campaigns[0].bonus.amount",
        "whole points",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nbonus = { account = \"cashback\", amount = \"0\" }\n",
        "campaigns[0].bonus.amount",
        "above zero",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nbonus = { account = \"cashback\", amount = \"1.005\" }\n",
        "campaigns[0].bonus.amount",
        "at most 2 decimals",
    );
    refused(
        "[birthday]\naccount = \"nope\"\namount = \"1\"\n",
        "birthday.account",
        "not an account",
    );
    refused(
        "[birthday]\naccount = \"bonus\"\namount = \"0.5\"\n",
        "birthday.amount",
        "whole points",
    );
    refused(
        "[welcome]\naccount = \"bonus\"\namount = \"-5\"\n",
        "welcome.amount",
        "above zero",
    );
    refused(
        "[welcome]\naccount = \"gold\"\namount = \"5\"\n",
        "welcome.account",
        "not an account",
    );
}

#[test]
fn hours_and_days_have_one_format() {
    for bad in [
        "10-14",
        "10:00",
        "10:00-10:00",
        "00:00-24:00",
        "25:00-02:00",
        "10:60-11:00",
        "9:00-10:00",
        "00:00-24:00x",
    ] {
        let found = issues_of(&format!(
            "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nhours = \"{bad}\"\n"
        ));
        assert_eq!(found.len(), 1, "{bad}: {found:#?}");
        assert!(
            found[0].starts_with("campaigns[0].hours: ") && found[0].contains("\"HH:MM-HH:MM\""),
            "{bad}: {found:#?}"
        );
    }
    for good in ["18:00-24:00", "23:30-00:30"] {
        let found = issues_of(&format!(
            "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nhours = \"{good}\"\n"
        ));
        assert!(found.is_empty(), "{good}: {found:#?}");
    }
    let found = issues_of("[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\ndays = [\"saturday\"]\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("campaigns[0].days[0]: ") && found[0].contains("`sat`"),
        "{found:#?}"
    );
}

#[test]
fn branches_and_programs_must_exist() {
    refused(
        "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nbranches = [\"airport\"]\n",
        "campaigns[0].branches",
        "\"airport\" is not a branch",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nprograms = [\"bonus\"]\n",
        "campaigns[0].programs",
        "\"bonus\" is not a program id",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nprograms = [\"cashback\"]\nbonus = { account = \"bonus\", amount = \"5\" }\n",
        "campaigns[0].programs",
        "set a multiplier or leave programs out",
    );
}

#[test]
fn from_must_be_before_until_and_ids_unique() {
    refused(
        "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nfrom = \"2026-06-01T00:00:00Z\"\nuntil = \"2026-06-01T00:00:00Z\"\n",
        "campaigns[0].until",
        "must be after from",
    );
    refused(
        "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\n[[campaigns]]\nid = \"c\"\nmultiplier = \"3\"\n",
        "campaigns[1].id",
        "unique campaign id",
    );
    for taken in ["cashback", "birthday", "welcome", "manual"] {
        refused(
            &format!("[[campaigns]]\nid = \"{taken}\"\nmultiplier = \"2\"\n"),
            "campaigns[0].id",
            "give the campaign its own id",
        );
    }
    refused(
        "[[campaigns]]\nid = \"c\"\nmultiplier = \"2\"\nmin_total = \"0\"\n",
        "campaigns[0].min_total",
        "above zero",
    );
}

#[test]
fn birthday_windows_are_at_most_180_days_each_way() {
    refused(
        "[birthday]\naccount = \"bonus\"\namount = \"100\"\ndays_after = 181\n",
        "birthday.days_after",
        "at most 180 days",
    );
    refused(
        "[birthday]\naccount = \"bonus\"\namount = \"100\"\ndays_before = 400\n",
        "birthday.days_before",
        "at most 180 days",
    );
}
