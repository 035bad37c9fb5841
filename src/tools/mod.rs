//! Operator and benchmark tools. None of this is on the event path of
//! `accrue run`: the processor never imports it.
//!
//! - [`admin`]: create topics, produce sample events, print a topic.
//! - [`gen`]: the load generator of realistic input events.
//! - [`rawbench`]: the broker's raw consume and consume-and-produce ceilings
//!   that `scripts/bench` compares accrue with.
//! - [`tillbench`]: quotes and authorizations at a fixed rate, for the
//!   till's latency (`scripts/bench-till`).

pub mod admin;
pub mod gen;
pub mod rawbench;
pub mod tillbench;
