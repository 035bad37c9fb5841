//! accrue: an exactly-once stream processor for loyalty accruals.
//!
//! # Layout
//!
//! At start-up [`config`] loads and validates the processor file and the
//! tenant files, whose contents are the pure types of [`programs`]
//! (programs, policies, partners, customers); [`topics`] checks that every
//! topic exists and all are co-partitioned. Then one input record flows
//! through these parts, in this order:
//!
//! 1. `pipeline/rebalance.rs` (the rebalance callback) assigns a partition
//!    paused, and [`pipeline::takeover`] takes it over beside the loop: the
//!    local state is current, or it is restored from the state
//!    [`changelog`] topic; then the partition is positioned at the offsets
//!    stored in RocksDB, never at Kafka's.
//! 2. [`pipeline::consumer`] reads the record from a Kafka input topic and
//!    routes it to its partition's apply worker ([`pipeline::workers`]:
//!    partition `p` on worker `p % [pipeline] workers`, in order). A full or
//!    lingering batch is handed to every worker at once; each runs the
//!    processor's stages ([`pipeline::batch`]) over its records:
//! 3. *admit*: [`contract`] decodes the JSON envelope and body; a bad record
//!    becomes a dead-letter outbox record with a classified reason.
//! 4. *prefetch*: everything the batch's rules read, with one `multi_get`
//!    per family: dedupe records, the customers' profiles and balances,
//!    refunded orders' records, bookings; for referrals and partner
//!    customers, the customer [`directory`] (every tenant's customers by
//!    phone, held in memory).
//! 5. *evaluate*: [`rules`] (pure: no I/O) evaluates the tenant's
//!    [`programs`] and returns an outcome: the balance changes to make.
//! 6. *emit* and *write*: the outcome goes into the worker's open batch:
//!    balances, ledger entries, the dedupe record of the `event_id`, the
//!    input offset, an outbox record per change, the day buckets of the
//!    read API's totals index, and the batch's [`changelog`] record, all
//!    keyed by input partition ([`state::keys`]) and encoded by
//!    [`state::codec`] (an accrual is stored once, as its ledger entry;
//!    its outbox record refers to it).
//!    Each worker commits its batch as **one** RocksDB WriteBatch with the
//!    WAL fsynced; RocksDB group-commits the workers' concurrent writes.
//! 7. [`pipeline::progress`] messages (`Owned`, `Durable`, `Acked`,
//!    `Revoked`), kept by [`pipeline::shared`] ([`pipeline::Progress`]),
//!    tell the publisher up to which sequence each partition's outbox is
//!    durable, and which partitions this instance owns; its bounded credit
//!    pauses intake while the broker falls behind.
//! 8. [`outbox`]'s publisher sends durable outbox records to the accruals or
//!    dead-letter topic, partition = source partition, with an idempotent
//!    producer and the id `partition-sequence` (rendering an accrual's JSON
//!    from its ledger entry), and deletes each record once
//!    acknowledged; changelog records go to the changelog topic and
//!    directory entries to the directory topic, which every instance reads
//!    back into its [`directory`]. After a restart the publisher reads the
//!    output tails first, so nothing the broker already holds is sent again.
//!
//! Bookings set durable timers ([`timers`]) in the same batch; the consume
//! loop fires due ones into its batches, so a delayed credit is exactly-once
//! like everything else. A record whose processing panics is retried and
//! then dead-lettered ([`pipeline::poison`]); a partition that stops moving
//! is noticed by [`pipeline::watchdog`].
//!
//! Around the event path: [`app`] wires these into `accrue run`;
//! [`replay`] drives the same processor from an NDJSON file without a
//! broker; [`telemetry`] owns every metric name; [`http`] serves `/metrics`
//! and the health endpoints, reading readiness from [`pipeline::Progress`],
//! and the read API ([`api`]), which reads balances, the ledger, totals
//! and customer summaries ([`read`]) from RocksDB snapshots while the
//! pipeline writes, and the back office's pages ([`admin`]). [`tools`]
//! holds what is not on the event path at all: topic administration, the
//! load generator and the broker's raw baselines. The binary's `src/cli/`
//! holds the subcommands; `src/main.rs` only parses and dispatches.

pub mod admin;
pub mod api;
pub mod app;
pub mod changelog;
pub mod config;
pub mod contract;
pub mod directory;
pub mod http;
pub mod outbox;
pub mod pipeline;
pub mod programs;
pub mod read;
pub mod replay;
pub mod rules;
pub mod state;
pub mod telemetry;
pub mod till;
pub mod timers;
pub mod tools;
pub mod topics;
