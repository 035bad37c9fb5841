//! The customer directory: every tenant's customers by phone, held in
//! memory by every instance, so that a referral or a partner identification
//! can find a customer whose state lives in another partition.
//!
//! Its source of truth is the compacted directory topic, keyed
//! `tenant:customer`. The partition that applies a `customer.upserted`
//! writes the entry to its outbox in the same batch; the publisher sends it
//! once the batch is durable. Every instance reads the whole topic from the
//! beginning ([`run_reader`]) and keeps reading. The instance that applied
//! the upsert also updates its own copy right after the commit.
//!
//! Freshness: an entry is visible to the applying instance as soon as its
//! batch commits, and to other instances after the publisher's send and one
//! fetch, typically well under a second. At start-up `/health/ready` waits
//! until the reader has caught up with the topic's end. Customers seeded in
//! tenant files are in the directory from the start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::{ClientRole, Config};
use crate::contract::Amount;
use crate::programs::{PartnerConditions, TenantConfig};
use crate::rules::{Listed, Network};
use crate::telemetry::{self, KafkaLog};

/// One directory record: a customer's phone and client-card privileges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// The tenant.
    pub tenant: String,
    /// The customer id within the tenant.
    pub customer: String,
    /// The phone; `None` removes the customer from phone lookups.
    #[serde(default)]
    pub phone: Option<String>,
    /// Client-card discount percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_percent: Option<Amount>,
    /// Client-card accrual percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrual_percent: Option<Amount>,
}

type Key = (String, String);

/// The key prefix of an instance's ownership record in the directory
/// topic (`@instance:` + its advertised URL); `@` starts no tenant id.
pub const INSTANCE_KEY_PREFIX: &str = "@instance:";

/// An instance's claim: the partitions it applies, and where to reach it
/// for till requests ([`crate::till::ownership`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its advertised HTTP URL (`[http] advertised_url`).
    pub url: String,
    /// The partitions it applies now.
    pub partitions: Vec<u32>,
    /// When it said so, Unix milliseconds (it repeats it every few seconds).
    pub at_ms: i64,
}

/// The in-memory directory, shared by the consume loop and the reader.
#[derive(Default)]
pub struct Directory {
    by_phone: DashMap<Key, Listed>,
    by_customer: DashMap<Key, String>,
    instances: DashMap<String, InstanceRecord>,
    caught_up: AtomicBool,
}

impl Directory {
    /// An empty directory that counts as caught up (no topic to read:
    /// tests, replay).
    pub fn standalone() -> Self {
        let directory = Directory::default();
        directory.caught_up.store(true, Ordering::SeqCst);
        directory
    }

    /// Adds the customers seeded in tenant files (a later upsert wins).
    pub fn seed<'a>(&self, tenants: impl IntoIterator<Item = &'a TenantConfig>) {
        for tenant in tenants {
            for (id, profile) in &tenant.customers {
                let key = (tenant.id.clone(), id.clone());
                if self.by_customer.contains_key(&key) {
                    continue;
                }
                if profile.phone.is_some() {
                    self.upsert(&DirectoryEntry {
                        tenant: tenant.id.clone(),
                        customer: id.clone(),
                        phone: profile.phone.clone(),
                        discount_percent: profile.discount_percent,
                        accrual_percent: profile.accrual_percent,
                    });
                }
            }
        }
    }

    /// Adds or replaces a customer's entry.
    pub fn upsert(&self, entry: &DirectoryEntry) {
        let key = (entry.tenant.clone(), entry.customer.clone());
        if let Some((_, old_phone)) = self.by_customer.remove(&key) {
            let old = (entry.tenant.clone(), old_phone);
            self.by_phone
                .remove_if(&old, |_, listed| listed.customer == entry.customer);
        }
        if let Some(phone) = &entry.phone {
            self.by_customer.insert(key, phone.clone());
            self.by_phone.insert(
                (entry.tenant.clone(), phone.clone()),
                Listed {
                    customer: entry.customer.clone(),
                    discount_percent: entry.discount_percent.map(Amount::value),
                    accrual_percent: entry.accrual_percent.map(Amount::value),
                },
            );
        }
        telemetry::directory_entries(self.by_phone.len());
    }

    /// The customer of `tenant` with `phone`.
    pub fn find(&self, tenant: &str, phone: &str) -> Option<Listed> {
        self.by_phone
            .get(&(tenant.to_owned(), phone.to_owned()))
            .map(|e| e.value().clone())
    }

    /// Records an instance's claim (a newer one replaces it).
    pub fn claim(&self, record: InstanceRecord) {
        let newer = self
            .instances
            .get(&record.url)
            .is_none_or(|known| known.at_ms <= record.at_ms);
        if newer {
            self.instances.insert(record.url.clone(), record);
        }
    }

    /// The URL of the instance other than `me` that claims partition `p`,
    /// the most recent claim made since `fresh_after_ms`.
    pub fn owner_of(&self, p: u32, me: &str, fresh_after_ms: i64) -> Option<String> {
        self.instances
            .iter()
            .filter(|i| i.url != me && i.at_ms >= fresh_after_ms && i.partitions.contains(&p))
            .max_by_key(|i| i.at_ms)
            .map(|i| i.url.clone())
    }

    /// Customers with a phone.
    pub fn len(&self) -> usize {
        self.by_phone.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.by_phone.is_empty()
    }

    /// Whether the reader has read the topic up to its end at start-up.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }
}

/// The rules' view of the network: the directory and the configured tenants.
pub struct NetworkView<'a> {
    /// The directory.
    pub directory: &'a Directory,
    /// Every tenant, for partnerships.
    pub tenants: &'a HashMap<String, TenantConfig>,
}

impl Network for NetworkView<'_> {
    fn find(&self, tenant: &str, phone: &str) -> Option<Listed> {
        self.directory.find(tenant, phone)
    }

    fn partnership(&self, place: &str, home: &str) -> Option<&PartnerConditions> {
        crate::programs::partnership(self.tenants, place, home)
    }
}

/// Reads the directory topic from the beginning into `directory` until
/// `stop` is set. Marks the directory caught up once every partition's end
/// at start-up is read.
///
/// # Errors
/// A Kafka error if the client cannot be created or the topic not found.
pub fn run_reader(
    config: &Config,
    directory: Arc<Directory>,
    stop: &AtomicBool,
    on_caught_up: impl Fn(),
) -> Result<(), rdkafka::error::KafkaError> {
    let topic = config.topics.directory();
    let consumer: BaseConsumer<KafkaLog> = config
        .kafka
        .client_config(ClientRole::TailReader)
        .set("enable.partition.eof", "false")
        .create_with_context(KafkaLog)?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, *p, Duration::from_secs(10))?;
        if high > low {
            ends.insert(*p, high);
        }
        tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    if ends.is_empty() {
        directory.caught_up.store(true, Ordering::SeqCst);
        on_caught_up();
    }
    tracing::info!(topic = %topic, partitions = partitions.len(), "reading the customer directory");
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(err)) => tracing::warn!(error = %err, "directory read failed; retrying"),
            Some(Ok(message))
                if message
                    .key()
                    .is_some_and(|k| k.starts_with(INSTANCE_KEY_PREFIX.as_bytes())) =>
            {
                match message.payload().map(serde_json::from_slice::<InstanceRecord>) {
                    Some(Ok(record)) => directory.claim(record),
                    Some(Err(err)) => tracing::warn!(error = %err, "skipping an instance record that does not parse"),
                    None => {}
                }
                note_end(&mut ends, &message, &directory, &on_caught_up);
            }
            Some(Ok(message)) => {
                match message.payload().map(serde_json::from_slice::<DirectoryEntry>) {
                    Some(Ok(entry)) => directory.upsert(&entry),
                    Some(Err(err)) => {
                        tracing::warn!(partition = message.partition(), offset = message.offset(), error = %err, "skipping a directory record that is not an entry");
                    }
                    None => {}
                }
                note_end(&mut ends, &message, &directory, &on_caught_up);
            }
        }
    }
    Ok(())
}

/// Marks the directory caught up once the last partition's end at start-up
/// is read.
fn note_end(ends: &mut HashMap<i32, i64>, message: &impl Message, directory: &Directory, on_caught_up: &impl Fn()) {
    if let Some(end) = ends.get(&message.partition()) {
        if message.offset() + 1 >= *end {
            ends.remove(&message.partition());
            if ends.is_empty() {
                directory.caught_up.store(true, Ordering::SeqCst);
                on_caught_up();
                tracing::info!(entries = directory.len(), "customer directory caught up");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(customer: &str, phone: Option<&str>) -> DirectoryEntry {
        DirectoryEntry {
            tenant: "t".into(),
            customer: customer.into(),
            phone: phone.map(str::to_owned),
            discount_percent: None,
            accrual_percent: None,
        }
    }

    #[test]
    fn a_new_phone_replaces_the_old_and_tenants_are_separate() {
        let d = Directory::standalone();
        d.upsert(&entry("c1", Some("+1")));
        assert_eq!(d.find("t", "+1").map(|l| l.customer), Some("c1".into()));
        assert_eq!(d.find("other", "+1"), None);
        d.upsert(&entry("c1", Some("+2")));
        assert_eq!(d.find("t", "+1"), None);
        assert_eq!(d.find("t", "+2").map(|l| l.customer), Some("c1".into()));
        // Another customer takes over +2; c1 removing its phone later must
        // not remove c2's entry.
        d.upsert(&entry("c2", Some("+2")));
        d.upsert(&entry("c1", None));
        assert_eq!(d.find("t", "+2").map(|l| l.customer), Some("c2".into()));
        assert_eq!(d.len(), 1);
    }
}
