//! accrue: an exactly-once stream processor for loyalty accruals.
//!
//! # Layout
//!
//! One input record flows through these parts, in this order:
//!
//! 1. [`pipeline::consumer`] reads it from a Kafka input topic. Partitions are
//!    positioned at the offsets stored in RocksDB, never at Kafka's.
//! 2. [`contract`] decodes the JSON envelope and body; a bad record becomes a
//!    dead-letter outbox record with a classified reason.
//! 3. [`rules`] (pure: no I/O) evaluates the tenant's programs from
//!    [`config`] and returns an outcome: the balance changes to make.
//! 4. [`pipeline::batch`] applies the outcome to an open batch: balances,
//!    ledger entries, the dedupe record of the `event_id`, the input offset,
//!    and an outbox record per change, all keyed by input partition
//!    ([`state::keys`]). A full or lingering batch is committed as **one**
//!    RocksDB WriteBatch with the WAL fsynced.
//! 5. [`outbox`]'s publisher sends durable outbox records to the accruals or
//!    dead-letter topic, partition = source partition, with an idempotent
//!    producer and the id `partition-sequence`, and deletes each record once
//!    acknowledged. After a restart it reads the output tails first, so
//!    nothing the broker already holds is sent again.
//!
//! Bookings set durable timers ([`timers`]) in the same batch; the consume
//! loop fires due ones into its batches, so a delayed credit is exactly-once
//! like everything else.
//!
//! [`app`] wires these into `accrue run`; [`admin`] creates and checks topics;
//! [`telemetry`] owns every metric name; [`http`] serves `/metrics` and the
//! health endpoints, reading readiness from [`pipeline::Progress`], and the
//! read API ([`api`]), which reads balances and the ledger ([`read`]) from
//! RocksDB snapshots while the pipeline writes.

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
pub mod timers;
pub mod tools;
pub mod topics;
