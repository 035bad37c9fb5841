//! Tiers and earning limits through the processor: the order that reaches
//! a level publishes `tier.changed` after its accrual and earns at the
//! level, the review timer lowers the level once when a day leaves the
//! window, and a capped accrual says so in its description.

use super::test_cafe::{Cafe, DAY, START};
use super::*;

const CAFE: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
[tiers]
metric = "spend"
window = "30d"
[[tiers.levels]]
id = "silver"
threshold = "100"
[[programs]]
id = "cashback"
type = "cashback"
percent = "5"
tier_percent = { silver = "10" }
limits = { per_day = "12" }
branches = { downtown = "active" }
"#;

fn decimal(v: &serde_json::Value) -> Option<Decimal> {
    v.as_str()?.parse().ok()
}

#[test]
fn reaching_a_level_publishes_tier_changed_and_the_review_lowers_it_once() {
    let mut c = Cafe::new(CAFE, false);
    assert_eq!(c.order("o1", START, "60.00", "0"), Applied::Processed(1)); // 5%: 3.00
    assert_eq!(c.order("o2", START + 5 * DAY, "50.00", "0"), Applied::Processed(1)); // 110: silver, 10%: 5.00
    let out = c.outputs();
    let types: Vec<&str> = out.iter().filter_map(|o| o["type"].as_str()).collect();
    assert_eq!(
        types,
        ["accrual.recorded", "accrual.recorded", "tier.changed"],
        "{out:?}"
    );
    assert_eq!(out[1]["amount"], "5.00", "the crossing order earns at the level");
    let change = &out[2];
    assert_eq!(change["source_event_id"], "o2");
    assert_eq!(
        (&change["from"], &change["to"]),
        (&serde_json::Value::Null, &serde_json::json!("silver"))
    );
    assert_eq!(change["metric"], "spend");
    assert_eq!(decimal(&change["value"]), Some(Decimal::new(11000, 2)));
    // Day 30 after o1: its 60.00 leaves the window, 50.00 < 100.
    assert_eq!(
        c.fire(START + 30 * DAY - DAY / 2 - 1),
        0,
        "not due before the day leaves"
    );
    assert_eq!(c.fire(START + 30 * DAY), 1);
    let out = c.outputs();
    let down: Vec<&serde_json::Value> = out.iter().filter(|o| o["type"] == "tier.changed").collect();
    assert_eq!(down.len(), 2, "{out:?}");
    assert_eq!(
        (&down[1]["from"], &down[1]["to"]),
        (&serde_json::json!("silver"), &serde_json::Value::Null)
    );
    assert_eq!(decimal(&down[1]["value"]), Some(Decimal::new(5000, 2)));
    assert_eq!(c.fire(START + 400 * DAY), 0, "never twice");
    // Below the level again: 5%.
    assert_eq!(c.order("o3", START + 31 * DAY, "20.00", "0"), Applied::Processed(1));
    let out = c.outputs();
    assert_eq!(out.last().map(|o| o["amount"].clone()), Some(serde_json::json!("1.00")));
}

#[test]
fn a_capped_accrual_says_which_limit_capped_it() {
    let mut c = Cafe::new(CAFE, false);
    c.order("o1", START, "200.00", "0"); // silver at once: 10% = 20.00, capped to 12
    c.order("o2", START + 60_000, "200.00", "0"); // the day is used up: no entry
    let accruals: Vec<serde_json::Value> = c
        .outputs()
        .into_iter()
        .filter(|o| o["type"] == "accrual.recorded")
        .collect();
    assert_eq!(accruals.len(), 1, "{accruals:?}");
    assert_eq!(accruals[0]["amount"], "12.00");
    assert_eq!(accruals[0]["description"], "capped by per_day limit 12");
}
