//! Validation of `[tiers]`, `tier_percent` and earning `limits`.

use std::path::Path;

use super::earning::validate;
use super::Issues;
use crate::programs::TenantConfig;

const BASE: &str = r#"
id = "cafe"
currency = "AZN"
bonus_accounts = ["stars"]
[branches.downtown]
"#;

/// The fields (and messages) validation objects to in `BASE` + `rest`.
fn problems(rest: &str) -> Vec<(String, String)> {
    let text = format!("{BASE}\n{rest}");
    let tenant: TenantConfig = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => panic!("fixture: {e}\n{text}"),
    };
    let mut issues = Issues::new(Path::new("cafe.toml"));
    validate(&tenant, &mut issues);
    issues.into_vec().into_iter().map(|i| (i.field, i.message)).collect()
}

fn fields(rest: &str) -> Vec<String> {
    problems(rest).into_iter().map(|(f, _)| f).collect()
}

const GOOD: &str = r#"
[tiers]
metric = "spend"
window = "365d"
[[tiers.levels]]
id = "silver"
threshold = "0"
[[tiers.levels]]
id = "gold"
threshold = "1000.50"
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
tier_percent = { gold = "10" }
limits = { per_order = "20.00", per_day = "50", per_month = "300.25" }
[[programs]]
id = "stars"
type = "bonus"
account = "stars"
percent = "2"
limits = { per_day = "100" }
"#;

#[test]
fn a_good_tiers_and_limits_config_passes() {
    assert_eq!(problems(GOOD), Vec::new());
}

#[test]
fn levels_need_unique_ids_and_strictly_ascending_whole_thresholds() {
    let found = fields(
        r#"
[tiers]
metric = "visits"
[[tiers.levels]]
id = "a"
threshold = "5"
[[tiers.levels]]
id = "a"
threshold = "5"
[[tiers.levels]]
id = "b"
threshold = "2.5"
[[tiers.levels]]
id = "c"
threshold = "-1"
"#,
    );
    assert_eq!(
        found,
        vec![
            "tiers.levels[1].id",
            "tiers.levels[1].threshold",
            "tiers.levels[2].threshold",
            "tiers.levels[2].threshold",
            "tiers.levels[3].threshold",
            "tiers.levels[3].threshold",
        ]
    );
    let found = problems("[tiers]\nmetric = \"spend\"\nlevels = []\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains("[[tiers.levels]]"), "{found:?}");
}

#[test]
fn the_window_is_whole_days_from_one_day() {
    for (window, ok) in [
        ("1d", true),
        ("12h", false),
        ("36h", false),
        ("1096d", true),
        ("1097d", false),
    ] {
        let found = problems(&format!(
            "[tiers]\nmetric = \"spend\"\nwindow = \"{window}\"\n[[tiers.levels]]\nid = \"a\"\nthreshold = \"1\"\n"
        ));
        assert_eq!(found.is_empty(), ok, "{window}: {found:?}");
        if !ok {
            assert!(found[0].1.contains("\"365d\""), "says what to write: {found:?}");
        }
    }
}

#[test]
fn tier_percent_names_levels_and_needs_tiers() {
    let found = fields(&GOOD.replace(
        r#"tier_percent = { gold = "10" }"#,
        r#"tier_percent = { platinum = "10", gold = "0" }"#,
    ));
    assert_eq!(
        found,
        vec!["programs[0].tier_percent.gold", "programs[0].tier_percent.platinum"]
    );
    let without_tiers = r#"
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
tier_percent = { gold = "10" }
"#;
    let found = problems(without_tiers);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "programs[0].tier_percent");
    assert!(found[0].1.contains("[tiers]"));
}

#[test]
fn limits_are_above_zero_within_the_accounts_decimals() {
    let found = fields(
        &GOOD
            .replace(r#"per_order = "20.00""#, r#"per_order = "0""#)
            .replace(r#"per_month = "300.25""#, r#"per_month = "300.255""#)
            .replace(r#"limits = { per_day = "100" }"#, r#"limits = { per_day = "1.5" }"#),
    );
    assert_eq!(
        found,
        vec![
            "programs[0].limits.per_order",
            "programs[0].limits.per_month",
            "programs[1].limits.per_day"
        ]
    );
    let found = fields(&GOOD.replace(r#"limits = { per_day = "100" }"#, "limits = {}"));
    assert_eq!(found, vec!["programs[1].limits"]);
}
