//! Referral (seed 002) and partnership (seed 000): the origin's decision,
//! the target's application, and tenant isolation.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;

use super::*;
use crate::contract::{self, Amount, Command, CommandBody, Event, PartnerOrder};
use crate::programs::{self, PartnerConditions};

const CAFE: &str = r#"
id = "cafe"
currency = "AZN"
[branches.downtown]
payment_methods = ["cashback", "deposit"]
[[programs]]
id = "cb"
type = "cashback"
percent = "5"
branches = { downtown = "active" }
[redemption]
max_percent = { deposit = "50" }
"#;

const BISTRO: &str = r#"
id = "bistro"
currency = "AZN"
[branches.center]
payment_methods = ["deposit"]
"#;

fn tenant(text: &str) -> TenantConfig {
    match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => panic!("fixture tenant: {e}\n{text}"),
    }
}

/// A directory of (tenant, phone) -> customer, and the configured tenants.
struct TestNetwork {
    phones: BTreeMap<(String, String), Listed>,
    tenants: HashMap<String, TenantConfig>,
}

impl Network for TestNetwork {
    fn find(&self, tenant: &str, phone: &str) -> Option<Listed> {
        self.phones.get(&(tenant.to_owned(), phone.to_owned())).cloned()
    }

    fn partnership(&self, place: &str, home: &str) -> Option<&PartnerConditions> {
        programs::partnership(&self.tenants, place, home)
    }
}

fn network(tenants: &[TenantConfig]) -> TestNetwork {
    let listed = |customer: &str, discount: Option<i64>| Listed {
        customer: customer.into(),
        discount_percent: discount.map(Decimal::from),
        accrual_percent: discount.map(|d| Decimal::from(d / 2)),
    };
    TestNetwork {
        phones: [
            (("cafe".to_owned(), "+100".to_owned()), listed("referrer", None)),
            (("cafe".to_owned(), "+200".to_owned()), listed("newbie", None)),
            (
                ("bistro".to_owned(), "+300".to_owned()),
                listed("bistro-regular", Some(12)),
            ),
            (("cafe".to_owned(), "+400".to_owned()), listed("cafe-regular", Some(8))),
        ]
        .into_iter()
        .collect(),
        tenants: tenants.iter().map(|t| (t.id.clone(), t.clone())).collect(),
    }
}

fn purchase(tenant: &str, branch: &str, customer: &str, extra: &str, payments: &[(&str, &str)]) -> Event {
    let payments: Vec<String> = payments
        .iter()
        .map(|(m, a)| format!(r#"{{"method":"{m}","amount":"{a}"}}"#))
        .collect();
    let json = format!(
        r#"{{"schema_version":1,"event_id":"e-1","type":"visit.completed","tenant":"{tenant}","branch":"{branch}",
        "customer":"{customer}","occurred_at":"2026-11-23T12:00:00Z","body":{{"visit_id":"v-1",
        "lines":[{{"product":"cut","category":"hair","quantity":"1","amount":"100.00"}}],
        "payments":[{}],"total":"100.00","currency":"AZN"{extra}}}}}"#,
        payments.join(",")
    );
    match contract::decode(json.as_bytes()) {
        Ok(e) => e,
        Err(e) => panic!("fixture event: {e}\n{json}"),
    }
}

fn evaluate_with(
    tenant: &TenantConfig,
    net: &TestNetwork,
    event: &Event,
    customer: &Customer,
    balances: &[(&str, &str)],
) -> Outcome {
    let balances: BTreeMap<String, Decimal> = balances
        .iter()
        .map(|(a, v)| ((*a).to_owned(), v.parse().unwrap_or_default()))
        .collect();
    evaluate(&Input {
        tenant,
        event,
        customer,
        balances: &balances,
        original: None,
        booking: None,
        code_key: b"k",
        network: net,
        loyalty: &NO_LOYALTY,
        now_ms: 0,
    })
}

fn newcomer() -> Customer {
    Customer {
        registered: true,
        ..Customer::default()
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

fn code(outcome: &Outcome) -> Option<&'static str> {
    outcome.rejection.as_ref().map(|r| r.code.as_str())
}

fn with_referral(mode: &str, reward: &str) -> TenantConfig {
    tenant(&format!(
        "{CAFE}\n[referral]\ninvitee_discount_percent = \"10\"\nreferrer_account = \"cashback\"\n{reward}\nreward = \"{mode}\"\n"
    ))
}

#[test]
fn a_first_visit_with_a_referrer_credits_the_referrer_by_command() {
    let cafe = with_referral("first_visit", "referrer_amount = \"5.00\"");
    let net = network(std::slice::from_ref(&cafe));
    let visit = purchase(
        "cafe",
        "downtown",
        "invitee",
        r#","referrer_phone":"+100""#,
        &[("card", "100.00")],
    );
    let outcome = evaluate_with(&cafe, &net, &visit, &newcomer(), &[]);
    assert_eq!(outcome.rejection, None);
    // The invitee's own cashback still accrues.
    assert_eq!(outcome.entries.len(), 1);
    assert_eq!(outcome.entries[0].amount, d("5.00"));
    let command = outcome.command.as_deref().cloned();
    assert_eq!(
        command,
        Some(CommandOut {
            tenant: "cafe".into(),
            customer: "referrer".into(),
            body: CommandBody::ReferralCredit(contract::ReferralCredit {
                program: "referral".into(),
                account: "cashback".into(),
                amount: Amount::new(d("5.00")),
            }),
        })
    );
    assert!(matches!(
        outcome.notice.as_deref(),
        Some(Notice::Referral { referrer, invitee_discount_percent, .. })
            if referrer == "referrer" && *invitee_discount_percent == d("10")
    ));
    let profile = outcome.customer.unwrap_or_default();
    assert!(profile.visited);
    assert_eq!(profile.referred_by.as_deref(), Some("referrer"));
}

#[test]
fn referrals_are_refused_with_a_reason_and_change_nothing() {
    let cafe = with_referral("first_visit", "referrer_amount = \"5.00\"");
    let net = network(std::slice::from_ref(&cafe));
    let with_phone = |phone: &str, customer: &str| {
        purchase(
            "cafe",
            "downtown",
            customer,
            &format!(r#","referrer_phone":"{phone}""#),
            &[("card", "100.00")],
        )
    };
    let visited = Customer {
        visited: true,
        ..newcomer()
    };
    let cases = [
        (
            with_phone("+100", "invitee"),
            visited.clone(),
            vec![],
            "not_first_visit",
        ),
        // A customer with a balance has visited before, flag or not.
        (
            with_phone("+100", "invitee"),
            newcomer(),
            vec![("cashback", "1.00")],
            "not_first_visit",
        ),
        (with_phone("+999", "invitee"), newcomer(), vec![], "referrer_not_found"),
        // The phone of another tenant's customer is not found in this one.
        (with_phone("+300", "invitee"), newcomer(), vec![], "referrer_not_found"),
        (with_phone("+200", "newbie"), newcomer(), vec![], "self_referral"),
    ];
    for (event, customer, balances, expected) in cases {
        let outcome = evaluate_with(&cafe, &net, &event, &customer, &balances);
        assert_eq!(code(&outcome), Some(expected));
        assert!(outcome.entries.is_empty() && outcome.command.is_none() && outcome.customer.is_none());
    }
    let plain = tenant(CAFE);
    let outcome = evaluate_with(&plain, &network(&[]), &with_phone("+100", "invitee"), &newcomer(), &[]);
    assert_eq!(code(&outcome), Some("no_referral_program"));
}

#[test]
fn every_visit_rewards_follow_the_invitee_and_percent_rewards_use_the_money_paid() {
    let referred = Customer {
        visited: true,
        referred_by: Some("referrer".into()),
        ..newcomer()
    };
    let later = purchase(
        "cafe",
        "downtown",
        "invitee",
        "",
        &[("card", "60.00"), ("cashback", "40.00")],
    );
    let every = with_referral("every_visit", "referrer_percent = \"5\"");
    let net = network(std::slice::from_ref(&every));
    let outcome = evaluate_with(&every, &net, &later, &referred, &[("cashback", "40.00")]);
    match outcome.command.map(|c| (c.customer, c.body)) {
        Some((customer, CommandBody::ReferralCredit(credit))) => {
            assert_eq!(customer, "referrer");
            assert_eq!(credit.amount.value(), d("3.00"), "5% of the 60.00 paid with money");
        }
        other => panic!("expected a referral credit, got {other:?}"),
    }
    assert_eq!(outcome.notice, None, "the POS is told on the first visit only");
    let first_only = with_referral("first_visit", "referrer_amount = \"5.00\"");
    let outcome = evaluate_with(&first_only, &net, &later, &referred, &[("cashback", "40.00")]);
    assert_eq!(outcome.command, None);
}

fn credit_command(tenant: &str, source_tenant: &str) -> Command {
    Command {
        schema_version: 1,
        id: "3-9".into(),
        tenant: tenant.into(),
        customer: "referrer".into(),
        source_tenant: source_tenant.into(),
        source_customer: "invitee".into(),
        branch: "downtown".into(),
        source_event_id: "e-1".into(),
        occurred_at: time::OffsetDateTime::UNIX_EPOCH,
        body: CommandBody::ReferralCredit(contract::ReferralCredit {
            program: "referral".into(),
            account: "cashback".into(),
            amount: Amount::new(d("5.00")),
        }),
    }
}

#[test]
fn a_referral_credit_is_a_referral_accrual_and_never_crosses_tenants() {
    let cafe = with_referral("first_visit", "referrer_amount = \"5.00\"");
    let net = network(std::slice::from_ref(&cafe));
    let outcome = apply_command(&cafe, &BTreeMap::new(), &net, &credit_command("cafe", "cafe"));
    assert_eq!(outcome.entries.len(), 1);
    assert_eq!(outcome.entries[0].entry_type, EntryType::ReferralAccrual);
    assert_eq!(outcome.entries[0].amount, d("5.00"));
    let forged = apply_command(&cafe, &BTreeMap::new(), &net, &credit_command("cafe", "bistro"));
    assert_eq!(code(&forged), Some("cross_tenant"));
    assert!(forged.entries.is_empty());
}

#[test]
fn the_deposit_rule_uses_partner_deposit_first_and_caps_the_local_part() {
    let split = |amount, elsewhere, here, cap| {
        split_deposit(d("100"), d(amount), d(elsewhere), d(here), cap).map(|s| (s.from_elsewhere, s.from_here))
    };
    let cap = Some(d("50"));
    // Accumulated at the partner: up to the whole bill.
    assert_eq!(split("100", "100", "0", cap), Ok((d("100"), d("0"))));
    // The rest comes from here, within 50% of the bill.
    assert_eq!(split("90", "40", "80", cap), Ok((d("40"), d("50"))));
    assert_eq!(split("91", "40", "80", cap).map_err(|e| e.0.as_str()), Err("over_cap"));
    assert_eq!(
        split("90", "40", "30", cap).map_err(|e| e.0.as_str()),
        Err("insufficient_balance")
    );
    // No cap: only the balance limits.
    assert_eq!(split("90", "10", "80", None), Ok((d("10"), d("80"))));
}

fn partners(cafe_side: &str, bistro_side: &str) -> Vec<TenantConfig> {
    vec![
        tenant(&format!("{CAFE}\n{cafe_side}")),
        tenant(&format!("{BISTRO}\n{bistro_side}")),
    ]
}

const BISTRO_ACCEPTS_SHARED: &str = r#"
[partners.cafe]
sent = true
[partners.cafe.accepted]
discount_percent = "7"
accrual_percent = "4"
shared_deposit = true
payment_percent = "50"
"#;

const CAFE_ACCEPTS: &str = r#"
[partners.bistro]
sent = true
[partners.bistro.accepted]
copy_privileges = true
"#;

#[test]
fn a_partnership_needs_both_directions_sent_and_accepted() {
    let at_bistro = purchase(
        "bistro",
        "center",
        "walk-in",
        r#","partner":{"tenant":"cafe","phone":"+400"}"#,
        &[("card", "100.00")],
    );
    let half_open = [
        ("", BISTRO_ACCEPTS_SHARED),
        ("[partners.bistro]\nsent = true\n", BISTRO_ACCEPTS_SHARED),
        (CAFE_ACCEPTS, "[partners.cafe]\nsent = true\n"),
        (CAFE_ACCEPTS, "[partners.cafe.accepted]\nshared_deposit = true\n"),
    ];
    for (cafe_side, bistro_side) in half_open {
        let tenants = partners(cafe_side, bistro_side);
        let net = network(&tenants);
        let outcome = evaluate_with(&tenants[1], &net, &at_bistro, &newcomer(), &[]);
        assert_eq!(
            code(&outcome),
            Some("no_active_partnership"),
            "{cafe_side} / {bistro_side}"
        );
        assert!(outcome.command.is_none() && outcome.entries.is_empty());
    }
    let tenants = partners(CAFE_ACCEPTS, BISTRO_ACCEPTS_SHARED);
    let net = network(&tenants);
    let outcome = evaluate_with(&tenants[1], &net, &at_bistro, &newcomer(), &[]);
    assert_eq!(outcome.rejection, None);
    // Shared deposit: nothing moves here, the order goes to the partner.
    assert!(outcome.entries.is_empty());
    match outcome.command.map(|c| (c.tenant, c.customer, c.body)) {
        Some((t, c, CommandBody::PartnerOrder(order))) => {
            assert_eq!((t.as_str(), c.as_str()), ("cafe", "cafe-regular"));
            assert_eq!(order.accrual_percent.value(), d("4"), "bistro's percentage, not copied");
            assert_eq!(order.base.value(), d("100.00"));
        }
        other => panic!("expected a partner order, got {other:?}"),
    }
    // A phone unknown at the partner, or a tenant that is not a partner.
    let unknown = purchase(
        "bistro",
        "center",
        "walk-in",
        r#","partner":{"tenant":"cafe","phone":"+999"}"#,
        &[("card", "100.00")],
    );
    assert_eq!(
        code(&evaluate_with(&tenants[1], &net, &unknown, &newcomer(), &[])),
        Some("partner_customer_not_found")
    );
    let stranger = purchase(
        "bistro",
        "center",
        "walk-in",
        r#","partner":{"tenant":"elsewhere","phone":"+400"}"#,
        &[("card", "100.00")],
    );
    assert_eq!(
        code(&evaluate_with(&tenants[1], &net, &stranger, &newcomer(), &[])),
        Some("no_active_partnership")
    );
}

#[test]
fn copy_privileges_keep_the_home_client_card_and_no_shared_deposit_stays_local() {
    let tenants = partners(CAFE_ACCEPTS, BISTRO_ACCEPTS_SHARED);
    let net = network(&tenants);
    // bistro's customer at cafe: cafe copies privileges, no shared deposit.
    let at_cafe = purchase(
        "cafe",
        "downtown",
        "guest-1",
        r#","partner":{"tenant":"bistro","phone":"+300"}"#,
        &[("card", "80.00"), ("deposit", "20.00")],
    );
    let outcome = evaluate_with(&tenants[0], &net, &at_cafe, &newcomer(), &[("deposit", "30.00")]);
    assert_eq!(outcome.rejection, None);
    assert!(matches!(
        outcome.notice.as_deref(),
        Some(Notice::Partner { discount_percent, accrual_percent, shared_deposit: false, .. })
            if *discount_percent == d("12") && *accrual_percent == d("6")
    ));
    assert_eq!(outcome.command, None);
    let moves: Vec<(EntryType, String, Decimal)> = outcome
        .entries
        .iter()
        .map(|e| (e.entry_type, e.account.to_string(), e.amount))
        .collect();
    assert_eq!(
        moves,
        vec![
            (EntryType::Redemption, "deposit".into(), d("-20.00")),
            // 6% of the 80.00 paid with money.
            (EntryType::PartnerAccrual, "deposit".into(), d("4.80")),
        ]
    );
}

fn partner_order(deposit: &str) -> Command {
    Command {
        schema_version: 1,
        id: "1-4".into(),
        tenant: "cafe".into(),
        customer: "cafe-regular".into(),
        source_tenant: "bistro".into(),
        source_customer: "walk-in".into(),
        branch: "center".into(),
        source_event_id: "e-9".into(),
        occurred_at: time::OffsetDateTime::UNIX_EPOCH,
        body: CommandBody::PartnerOrder(PartnerOrder {
            total: Amount::new(d("100.00")),
            deposit: Amount::new(d(deposit)),
            base: Amount::new(d("100.00") - d(deposit)),
            accrual_percent: Amount::new(d("4")),
        }),
    }
}

#[test]
fn a_partner_order_pays_from_and_accrues_into_the_shared_deposit_at_home() {
    let tenants = partners(CAFE_ACCEPTS, BISTRO_ACCEPTS_SHARED);
    let net = network(&tenants);
    let balances: BTreeMap<String, Decimal> = [("deposit".to_owned(), d("30")), ("deposit@bistro".to_owned(), d("45"))]
        .into_iter()
        .collect();
    // 70 = 30 accumulated at cafe (the partner of bistro, uncapped) + 40 of
    // the 45 accumulated at bistro (within bistro's 50%).
    let outcome = apply_command(&tenants[0], &balances, &net, &partner_order("70.00"));
    assert_eq!(outcome.rejection, None);
    let moves: Vec<(EntryType, String, Decimal)> = outcome
        .entries
        .iter()
        .map(|e| (e.entry_type, e.account.to_string(), e.amount))
        .collect();
    assert_eq!(
        moves,
        vec![
            (EntryType::Redemption, "deposit".into(), d("-30")),
            (EntryType::Redemption, "deposit@bistro".into(), d("-40.00")),
            (EntryType::PartnerAccrual, "deposit@bistro".into(), d("1.20")),
        ]
    );
    let over = apply_command(&tenants[0], &balances, &net, &partner_order("76.00"));
    assert_eq!(code(&over), Some("insufficient_balance"));
    let small: BTreeMap<String, Decimal> = [("deposit@bistro".to_owned(), d("80"))].into_iter().collect();
    assert_eq!(
        code(&apply_command(&tenants[0], &small, &net, &partner_order("60.00"))),
        Some("over_cap")
    );
    // The agreement ended after the origin decided: the target refuses.
    let ended = partners("", BISTRO_ACCEPTS_SHARED);
    let outcome = apply_command(&ended[0], &balances, &network(&ended), &partner_order("10.00"));
    assert_eq!(code(&outcome), Some("no_active_partnership"));
    assert!(outcome.entries.is_empty());
}

#[test]
fn at_home_deposit_accumulated_at_a_partner_pays_first_and_uncapped() {
    let tenants = partners(CAFE_ACCEPTS, BISTRO_ACCEPTS_SHARED);
    let net = network(&tenants);
    let at_home = purchase(
        "cafe",
        "downtown",
        "cafe-regular",
        "",
        &[("card", "20.00"), ("deposit", "80.00")],
    );
    let customer = Customer {
        visited: true,
        ..newcomer()
    };
    // Home cap on deposit is 50%: 40 from bistro's bucket + 40 from home.
    let outcome = evaluate_with(
        &tenants[0],
        &net,
        &at_home,
        &customer,
        &[("deposit", "50.00"), ("deposit@bistro", "40.00")],
    );
    assert_eq!(outcome.rejection, None, "{:?}", outcome.rejection);
    let debits: Vec<(String, Decimal)> = outcome
        .entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Redemption)
        .map(|e| (e.account.to_string(), e.amount))
        .collect();
    assert_eq!(
        debits,
        vec![("deposit@bistro".into(), d("-40.00")), ("deposit".into(), d("-40.00"))]
    );
    let outcome = evaluate_with(
        &tenants[0],
        &net,
        &at_home,
        &customer,
        &[("deposit", "80.00"), ("deposit@bistro", "20.00")],
    );
    assert_eq!(code(&outcome), Some("over_cap"), "60 from home is above 50%");
}
