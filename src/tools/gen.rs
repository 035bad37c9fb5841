//! `accrue gen`: a load generator of realistic input events.
//!
//! Customers are Zipf-distributed (a few regulars place most orders), orders
//! come from a real café catalogue, bookings from a studio's services, and a
//! configurable share of refunds, adjustments, customer upserts and gift-card
//! exchanges is mixed in. Events are written as NDJSON or produced to Kafka,
//! at a target rate or as fast as possible. The same seed gives the same
//! events.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::contract;
use crate::programs::TenantConfig;

/// A product of the catalogue: id, category, price in minor units.
const CAFE_MENU: [(&str, &str, i64); 16] = [
    ("espresso", "coffee", 250),
    ("americano", "coffee", 300),
    ("cappuccino", "coffee", 400),
    ("latte", "coffee", 450),
    ("flat-white", "coffee", 480),
    ("green-tea", "tea", 300),
    ("lemonade", "drinks", 350),
    ("water", "drinks", 150),
    ("croissant", "bakery", 320),
    ("cheesecake", "dessert", 650),
    ("tiramisu", "dessert", 700),
    ("club-sandwich", "food", 1250),
    ("caesar-salad", "food", 1100),
    ("kebab-plate", "food", 1800),
    ("plov", "food", 1500),
    ("lentil-soup", "food", 700),
];

const SALE_TYPES: [&str; 3] = ["dine_in", "takeaway", "delivery"];
const MONEY_METHODS: [&str; 2] = ["card", "cash"];

/// The mix of event kinds, in percent of all events.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// `order.paid`.
    pub orders: u32,
    /// `order.refunded` of an earlier order.
    pub refunds: u32,
    /// `booking.created` (with some cancellations and reschedules).
    pub bookings: u32,
    /// `balance.adjust`.
    pub adjustments: u32,
    /// `customer.upserted`.
    pub upserts: u32,
    /// `giftcard.exchange`.
    pub gift_cards: u32,
}

impl Mix {
    /// `order.paid` only.
    pub const ORDERS_ONLY: Mix = Mix {
        orders: 100,
        refunds: 0,
        bookings: 0,
        adjustments: 0,
        upserts: 0,
        gift_cards: 0,
    };
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            orders: 80,
            refunds: 3,
            bookings: 10,
            adjustments: 2,
            upserts: 4,
            gift_cards: 1,
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events to generate.
    pub events: u64,
    /// Customers per tenant.
    pub customers: u64,
    /// Zipf exponent of customer popularity (1.0 is classic Zipf).
    pub zipf: f64,
    /// Share of each kind.
    pub mix: Mix,
    /// Every event goes to a customer not seen before (the zipf exponent is
    /// ignored): builds state of a known size for restore benchmarks.
    pub distinct: bool,
    /// Seed of the random stream.
    pub seed: u64,
}

/// Produces events one by one; an iterator of `(key, json)`.
pub struct Generator {
    tenants: Vec<TenantConfig>,
    settings: Settings,
    rng: StdRng,
    zipf: Zipf<f64>,
    made: u64,
    start: OffsetDateTime,
    recent_orders: Vec<(usize, u64, String, i64)>,
    bookings: u64,
}

impl Generator {
    /// A generator over `tenants` (their branches, currencies, gift cards
    /// and booking services).
    ///
    /// # Errors
    /// If there are no tenants or the Zipf parameters are invalid.
    pub fn new(mut tenants: Vec<TenantConfig>, settings: Settings) -> Result<Self, String> {
        if tenants.is_empty() {
            return Err("no tenants to generate events for".into());
        }
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        let zipf = Zipf::new(settings.customers.max(1), settings.zipf).map_err(|e| format!("zipf: {e}"))?;
        Ok(Generator {
            tenants,
            rng: StdRng::seed_from_u64(settings.seed),
            zipf,
            made: 0,
            // A fixed epoch: the same seed gives byte-identical events.
            start: time::macros::datetime!(2026-11-01 08:00 UTC),
            recent_orders: Vec::new(),
            bookings: 0,
            settings,
        })
    }

    fn customer(&mut self, tenant: usize) -> String {
        let rank = if self.settings.distinct {
            self.made
        } else {
            self.zipf.sample(&mut self.rng) as u64
        };
        format!(
            "{}-c{rank}",
            &self.tenants[tenant].id[..self.tenants[tenant].id.len().min(3)]
        )
    }

    fn envelope(
        &mut self,
        tenant: usize,
        id: String,
        event_type: &str,
        customer: &str,
        body: Value,
    ) -> (String, String) {
        let branches = self.tenants[tenant].branches.len().max(1);
        let pick = self.rng.gen_range(0..branches);
        let t = &self.tenants[tenant];
        let branch = t.branches.keys().nth(pick).cloned().unwrap_or_default();
        let at = self.start + Duration::from_millis(self.made);
        let value = json!({
            "schema_version": contract::SCHEMA_VERSION,
            "event_id": id,
            "type": event_type,
            "tenant": t.id,
            "branch": branch,
            "customer": customer,
            "occurred_at": at.format(&Rfc3339).unwrap_or_default(),
            "body": body,
        });
        (contract::customer_key(&t.id, customer), value.to_string())
    }

    fn order(&mut self, tenant: usize, n: u64) -> (String, String) {
        let customer = self.customer(tenant);
        let scale = 10i64.pow(self.tenants[tenant].minor_units.min(2));
        let lines_count = self.rng.gen_range(1..=5);
        let mut lines = Vec::new();
        let mut total = 0i64;
        for _ in 0..lines_count {
            let (product, category, price) = CAFE_MENU[self.rng.gen_range(0..CAFE_MENU.len())];
            let quantity = self.rng.gen_range(1..=3);
            let amount = price * quantity * scale / 100;
            total += amount;
            lines.push(
                json!({"product": product, "category": category, "quantity": quantity.to_string(),
                              "amount": money(amount, scale)}),
            );
        }
        let method = MONEY_METHODS[self.rng.gen_range(0..MONEY_METHODS.len())];
        let sale_type = SALE_TYPES[self.rng.gen_range(0..SALE_TYPES.len())];
        let id = format!("gen-{}-o{n}", self.settings.seed);
        self.recent_orders.push((tenant, n, customer.clone(), total));
        if self.recent_orders.len() > 1000 {
            self.recent_orders.remove(0);
        }
        let t = &self.tenants[tenant];
        let body = json!({"order_id": format!("o{n}"), "sale_type": sale_type, "lines": lines,
                          "payments": [{"method": method, "amount": money(total, scale)}],
                          "total": money(total, scale), "currency": t.currency});
        self.envelope(tenant, id, "order.paid", &customer, body)
    }

    fn next_event(&mut self) -> (String, String) {
        let n = self.made;
        let tenant = self.rng.gen_range(0..self.tenants.len());
        let mix = self.settings.mix;
        let total = (mix.orders + mix.refunds + mix.bookings + mix.adjustments + mix.upserts + mix.gift_cards).max(1);
        let mut roll = self.rng.gen_range(0..total);
        let mut pick = |share: u32| {
            let hit = roll < share;
            roll = roll.saturating_sub(share);
            hit
        };
        if pick(mix.orders) || self.recent_orders.is_empty() && pick(mix.refunds) {
            return self.order(tenant, n);
        }
        if pick(mix.refunds) {
            let i = self.rng.gen_range(0..self.recent_orders.len());
            let (tenant, order, customer, total) = self.recent_orders.swap_remove(i);
            let scale = 10i64.pow(self.tenants[tenant].minor_units.min(2));
            let amount = if self.rng.gen_bool(0.5) {
                total
            } else {
                (total / 2).max(1)
            };
            let body = json!({"refund_id": format!("r{n}"), "original_event_id": format!("gen-{}-o{order}", self.settings.seed),
                              "amount": money(amount, scale), "currency": self.tenants[tenant].currency});
            return self.envelope(
                tenant,
                format!("gen-{}-r{n}", self.settings.seed),
                "order.refunded",
                &customer,
                body,
            );
        }
        if pick(mix.bookings) {
            let customer = self.customer(tenant);
            let services: Vec<String> = self.tenants[tenant].bookings.points.keys().cloned().collect();
            let service = if services.is_empty() {
                "walk-in".to_owned()
            } else {
                services[self.rng.gen_range(0..services.len())].clone()
            };
            self.bookings += 1;
            let starts = self.start + Duration::from_secs(self.rng.gen_range(0..86_400));
            let body = json!({"booking_id": format!("gen-{}-b{n}", self.settings.seed), "service": service,
                              "starts_at": starts.format(&Rfc3339).unwrap_or_default(),
                              "ends_at": (starts + Duration::from_secs(3600)).format(&Rfc3339).unwrap_or_default()});
            return self.envelope(
                tenant,
                format!("gen-{}-b{n}", self.settings.seed),
                "booking.created",
                &customer,
                body,
            );
        }
        if pick(mix.adjustments) {
            let customer = self.customer(tenant);
            let body = json!({"account": "service_points", "amount": self.rng.gen_range(10..200).to_string(),
                              "description": "Goodwill points"});
            return self.envelope(
                tenant,
                format!("gen-{}-a{n}", self.settings.seed),
                "balance.adjust",
                &customer,
                body,
            );
        }
        if pick(mix.upserts) {
            let customer = self.customer(tenant);
            let groups: Vec<&str> = if self.rng.gen_bool(0.3) {
                vec!["Regulars"]
            } else {
                vec![]
            };
            let body = json!({"groups": groups, "registered": self.rng.gen_bool(0.9),
                              "marketing_consent": self.rng.gen_bool(0.6)});
            return self.envelope(
                tenant,
                format!("gen-{}-u{n}", self.settings.seed),
                "customer.upserted",
                &customer,
                body,
            );
        }
        let customer = self.customer(tenant);
        let card = self.tenants[tenant]
            .gift_cards
            .first()
            .map_or_else(|| "gc-none".to_owned(), |g| g.id.clone());
        let body = json!({"gift_card": card});
        self.envelope(
            tenant,
            format!("gen-{}-g{n}", self.settings.seed),
            "giftcard.exchange",
            &customer,
            body,
        )
    }
}

impl Iterator for Generator {
    type Item = (String, String);

    fn next(&mut self) -> Option<Self::Item> {
        if self.made >= self.settings.events {
            return None;
        }
        let event = self.next_event();
        self.made += 1;
        Some(event)
    }
}

fn money(minor: i64, scale: i64) -> String {
    let places = scale.max(1).ilog10();
    Decimal::new(minor, places).to_string()
}

/// Paces a stream at `rate` per second (0: as fast as possible) and prints
/// progress to stderr about once a second.
pub struct Pacer {
    rate: u64,
    started: Instant,
    last_report: Instant,
    done: u64,
    total: u64,
}

impl Pacer {
    /// A pacer for `total` items at `rate` per second.
    pub fn new(rate: u64, total: u64) -> Self {
        let now = Instant::now();
        Pacer {
            rate,
            started: now,
            last_report: now,
            done: 0,
            total,
        }
    }

    /// Counts one item; sleeps if ahead of the target rate.
    pub fn tick(&mut self) {
        self.done += 1;
        if self.rate > 0 && self.done % 100 == 0 {
            let due = Duration::from_secs_f64(self.done as f64 / self.rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        if self.last_report.elapsed() >= Duration::from_secs(1) {
            self.report("");
            self.last_report = Instant::now();
        }
    }

    /// Prints a progress line.
    pub fn report(&self, suffix: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let _ = writeln!(
            std::io::stderr(),
            "{:>10} / {} events  {:>9.0} events/s  {:.1}s{suffix}",
            self.done,
            self.total,
            self.done as f64 / secs,
            secs
        );
    }

    /// Items counted.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Applied, Batch, InputRecord, Processor};
    use crate::state::MemoryStore;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn tenants() -> Vec<TenantConfig> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
        match crate::config::Config::load(&path) {
            Ok(c) => c.tenants.into_values().collect(),
            Err(e) => panic!("{e}"),
        }
    }

    fn settings(events: u64) -> Settings {
        Settings {
            events,
            customers: 1000,
            zipf: 1.1,
            mix: Mix::default(),
            seed: 7,
            distinct: false,
        }
    }

    #[test]
    fn same_seed_same_events() {
        let a: Vec<_> = Generator::new(tenants(), settings(200))
            .map(|g| g.collect())
            .unwrap_or_default();
        let b: Vec<_> = Generator::new(tenants(), settings(200))
            .map(|g| g.collect())
            .unwrap_or_default();
        assert_eq!(a.len(), 200);
        assert_eq!(a, b);
    }

    #[test]
    fn distinct_gives_every_order_a_new_customer() {
        let mut only_orders = settings(500);
        only_orders.mix = Mix::ORDERS_ONLY;
        only_orders.distinct = true;
        let keys: std::collections::HashSet<String> = Generator::new(tenants(), only_orders)
            .map(|g| g.map(|(key, _)| key).collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 500);
    }

    #[test]
    fn every_generated_event_is_valid_for_the_local_config() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local/accrue.toml");
        let config = match crate::config::Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut processor = Processor::new(
            Arc::new(MemoryStore::default()),
            Arc::new(config.tenants),
            Arc::from(&b"k"[..]),
        );
        let mut batch = Batch::default();
        let mut kinds: HashMap<String, u64> = HashMap::new();
        let events = Generator::new(tenants(), settings(3000))
            .map(|g| g.collect::<Vec<_>>())
            .unwrap_or_default();
        for (i, (key, json)) in events.iter().enumerate() {
            let record = InputRecord {
                topic: "gen",
                partition: 0,
                offset: i as i64,
                key: Some(key.as_bytes()),
                payload: Some(json.as_bytes()),
            };
            let applied = processor.apply(&mut batch, &record);
            assert!(matches!(applied, Ok(Applied::Processed(_))), "{json} -> {applied:?}");
            let v: Value = serde_json::from_str(json).unwrap_or_default();
            *kinds
                .entry(v["type"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        assert!(kinds["order.paid"] > 2000, "{kinds:?}");
        assert!(kinds.len() >= 5, "{kinds:?}");
    }
}
