//! The till's answers as JSON: a quote (accruals, redemptions, balances
//! before and after, what each account may pay, the discount) and a hold.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use crate::contract;
use crate::programs::{Hold, TenantConfig};
use crate::rules::till::{self as rules_till};
use crate::rules::{self, EntryType, Outcome};
use crate::state::codec::at_scale;
use crate::state::keys;

fn amount(tenant: &TenantConfig, account: &str, value: Decimal) -> String {
    at_scale(value, rules::scale_of(tenant, account)).to_string()
}

pub(super) fn render_quote(input: &rules::Input<'_>, quote: &rules_till::Quote) -> Result<Value, rules::Overflow> {
    let tenant = input.tenant;
    let outcome: &Outcome = &quote.outcome;
    let order = match &input.event.body {
        contract::Body::OrderPaid(o) | contract::Body::VisitCompleted(o) => Some(o),
        _ => None,
    };
    let accruals: Vec<Value> = outcome
        .entries
        .iter()
        .filter(|e| e.entry_type != EntryType::Redemption)
        .map(|e| {
            json!({
                "account": &*e.account,
                "program": &*e.program,
                "entry_type": e.entry_type.as_str(),
                "amount": amount(tenant, &e.account, e.amount),
            })
        })
        .collect();
    let redemptions: Vec<Value> = outcome
        .entries
        .iter()
        .filter(|e| e.entry_type == EntryType::Redemption)
        .map(|e| json!({"account": &*e.account, "amount": amount(tenant, &e.account, e.amount.abs())}))
        .collect();
    let mut after: BTreeMap<&str, Decimal> = input.balances.iter().map(|(a, v)| (a.as_str(), *v)).collect();
    for entry in &outcome.entries {
        let balance = after.entry(&entry.account).or_default();
        *balance = balance.checked_add(entry.amount).ok_or(rules::Overflow::Amount)?;
    }
    let balances: Vec<Value> = after
        .iter()
        .map(|(account, balance_after)| {
            let before = input.balances.get(*account).copied().unwrap_or_default();
            let held = input
                .customer
                .held(account, input.now_ms, order.and_then(|o| o.authorization_id.as_deref()))
                .unwrap_or_default();
            json!({
                "account": account,
                "balance": amount(tenant, account, before),
                "held": amount(tenant, account, held),
                "after": amount(tenant, account, *balance_after),
            })
        })
        .collect();
    let payable: Vec<Value> = quote
        .payable
        .iter()
        .map(|p| {
            json!({
                "account": p.account,
                "balance": amount(tenant, &p.account, p.balance),
                "held": amount(tenant, &p.account, p.held),
                "max": amount(tenant, &p.account, p.max),
                "limited_by": p.limited_by.as_str(),
            })
        })
        .collect();
    let discount = match order {
        Some(order) => rules_till::discount(outcome, order.total.value(), tenant.minor_units)?,
        None => None,
    };
    let discount = discount.map(|(percent, value)| {
        let kind = match outcome.notice.as_deref() {
            Some(rules::Notice::Partner { .. }) => "partner",
            _ => "referral",
        };
        json!({"kind": kind, "percent": percent.normalize().to_string(), "amount": at_scale(value, tenant.minor_units).to_string()})
    });
    let rejection = outcome
        .rejection
        .as_ref()
        .map(|r| json!({"type": r.output_type.as_str(), "reason_code": r.code.as_str(), "reason": r.reason}));
    let elsewhere = outcome
        .command
        .as_deref()
        .map(|c| json!({"tenant": c.tenant, "customer": c.customer, "what": command_kind(&c.body)}));
    Ok(json!({
        "tenant": tenant.id,
        "customer": input.event.customer,
        "branch": input.event.branch,
        "currency": tenant.currency,
        "accepted": rejection.is_none(),
        "rejection": rejection,
        "accruals": accruals,
        "redemptions": redemptions,
        "balances": balances,
        "payable": payable,
        "discount": discount,
        "elsewhere": elsewhere,
    }))
}

fn command_kind(body: &contract::CommandBody) -> &'static str {
    match body {
        contract::CommandBody::ReferralCredit(_) => "referral_credit",
        contract::CommandBody::PartnerOrder(_) => "partner_order",
        #[allow(unreachable_patterns)]
        _ => "command",
    }
}

pub(super) fn render_hold(tenant: &TenantConfig, customer: &str, hold: &Hold) -> Value {
    let expires_at = keys::time_of_ms(hold.expires_ms).and_then(|t| t.format(&Rfc3339).ok());
    let holds: Vec<Value> = hold
        .amounts
        .iter()
        .map(|(account, value)| json!({"account": &**account, "amount": amount(tenant, account, *value)}))
        .collect();
    json!({
        "authorization_id": hold.id,
        "tenant": tenant.id,
        "customer": customer,
        "order_id": hold.order_id,
        "expires_at": expires_at,
        "holds": holds,
    })
}
