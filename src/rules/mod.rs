//! Pure rule evaluation: `(tenant programs, event) -> Outcome`.
//!
//! No I/O, no Kafka, no RocksDB, no tokio. The pipeline applies the outcome
//! to balances; this module only decides what the programs say.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::TenantConfig;
use crate::contract::{Body, Event, OrderPaid};

/// The kind of balance a ledger entry moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// Money returned on purchases.
    Cashback,
}

impl AccountKind {
    /// The account's name in keys and events.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Cashback => "cashback",
        }
    }
}

/// The type of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    /// A program credited the customer for a purchase.
    Accrual,
}

impl EntryType {
    /// The entry type's name in the ledger and events.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Accrual => "accrual",
        }
    }
}

/// One balance change decided by a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    /// The account it moves.
    pub account: AccountKind,
    /// The ledger entry type.
    pub entry_type: EntryType,
    /// The program that decided it.
    pub program: &'static str,
    /// Signed amount, already rounded per the program.
    pub amount: Decimal,
    /// The amount the percentage applied to.
    pub base: Decimal,
}

/// What the programs decided for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Balance changes, in order.
    pub credits: Vec<Credit>,
}

/// Evaluates every program of `tenant` against `event`.
///
/// The event must belong to `tenant` and have passed contract validation.
pub fn evaluate(tenant: &TenantConfig, event: &Event) -> Outcome {
    let mut outcome = Outcome::default();
    match &event.body {
        Body::OrderPaid(order) => cashback(tenant, &event.branch, order, &mut outcome),
    }
    outcome
}

fn cashback(tenant: &TenantConfig, branch: &str, order: &OrderPaid, outcome: &mut Outcome) {
    let Some(program) = &tenant.programs.cashback else {
        return;
    };
    if !program.active_in(branch) {
        return;
    }
    let base = eligible_amount(order);
    let amount = percent_of(base, program.percent.value(), tenant.minor_units);
    if amount > Decimal::ZERO {
        outcome.credits.push(Credit {
            account: AccountKind::Cashback,
            entry_type: EntryType::Accrual,
            program: "cashback",
            amount,
            base,
        });
    }
}

/// The amount a percentage program applies to: every line of the order.
fn eligible_amount(order: &OrderPaid) -> Decimal {
    order.lines.iter().map(|line| line.amount.value()).sum()
}

/// `base * percent / 100`, rounded half-even to the currency's minor units.
pub fn percent_of(base: Decimal, percent: Decimal, minor_units: u32) -> Decimal {
    (base * percent / Decimal::ONE_HUNDRED).round_dp_with_strategy(minor_units, RoundingStrategy::MidpointNearestEven)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(percent: &str, status: &str) -> Option<TenantConfig> {
        let text = format!(
            r#"
            id = "cafe"
            currency = "AZN"
            [branches.downtown]
            [branches.airport]
            [programs.cashback]
            percent = "{percent}"
            branches = {{ downtown = "{status}", airport = "inactive" }}
            "#
        );
        toml::from_str(&text).ok()
    }

    fn order(total: &str, branch: &str) -> Option<Event> {
        let json = format!(
            r#"{{"schema_version":1,"event_id":"e1","type":"order.paid","tenant":"cafe","branch":"{branch}",
            "customer":"c1","occurred_at":"2026-11-23T12:00:00Z","body":{{"order_id":"o1","sale_type":"dine_in",
            "lines":[{{"product":"p1","category":"food","quantity":"1","amount":"{total}"}}],
            "payments":[{{"method":"card","amount":"{total}"}}],"total":"{total}","currency":"AZN"}}}}"#
        );
        crate::contract::decode(json.as_bytes()).ok()
    }

    #[test]
    fn seed_example_five_percent_of_eighty_is_four() {
        let (Some(t), Some(e)) = (tenant("5", "active"), order("80.00", "downtown")) else {
            panic!("fixture must parse");
        };
        let outcome = evaluate(&t, &e);
        assert_eq!(outcome.credits.len(), 1);
        assert_eq!(outcome.credits[0].amount, Decimal::new(400, 2));
        assert_eq!(outcome.credits[0].amount.to_string(), "4.00");
    }

    #[test]
    fn inactive_branch_accrues_nothing() {
        let (Some(t), Some(e)) = (tenant("5", "active"), order("80.00", "airport")) else {
            panic!("fixture must parse");
        };
        assert!(evaluate(&t, &e).credits.is_empty());
    }

    #[test]
    fn rounds_half_even_to_minor_units() {
        // 5% of 0.50 = 0.025 -> 0.02 (half-even), 5% of 0.70 = 0.035 -> 0.04.
        assert_eq!(percent_of(Decimal::new(50, 2), Decimal::from(5), 2), Decimal::new(2, 2));
        assert_eq!(percent_of(Decimal::new(70, 2), Decimal::from(5), 2), Decimal::new(4, 2));
    }

    #[test]
    fn tiny_orders_accrue_nothing_rather_than_zero_entries() {
        let (Some(t), Some(e)) = (tenant("1", "active"), order("0.40", "downtown")) else {
            panic!("fixture must parse");
        };
        assert!(evaluate(&t, &e).credits.is_empty());
    }

    proptest! {
        #[test]
        fn cashback_never_exceeds_base_and_is_never_negative(cents in 0i64..10_000_000, pct in 1u32..=100) {
            let base = Decimal::new(cents, 2);
            let got = percent_of(base, Decimal::from(pct), 2);
            prop_assert!(got >= Decimal::ZERO);
            prop_assert!(got <= base);
            prop_assert!(got.scale() <= 2);
            // Within half a minor unit of the exact value.
            let exact = base * Decimal::from(pct) / Decimal::ONE_HUNDRED;
            prop_assert!((got - exact).abs() <= Decimal::new(5, 3));
        }
    }
}
