//! Subcommands that talk to the broker: `topics`, `produce`, `tail` and
//! the `raw-consume` baseline of `scripts/bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::args::TopicsAction;
use accrue::config::Config;
use accrue::tools::{admin, rawbench};

/// `accrue topics create|check`.
pub(crate) fn topics(config: &Config, action: TopicsAction) -> anyhow::Result<()> {
    if let TopicsAction::Create {
        partitions,
        replication,
    } = action
    {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(admin::create_topics(config, partitions, replication))?;
    }
    let n = accrue::topics::check(config)?;
    println!("topics ready, {n} partitions each");
    Ok(())
}

/// `accrue produce FILES`.
pub(crate) fn produce(config: &Config, topic: Option<String>, files: &[PathBuf]) -> anyhow::Result<()> {
    let topic = topic
        .or_else(|| config.topics.input.first().cloned())
        .context("no input topic configured")?;
    let n = admin::produce_files(config, &topic, files)?;
    println!("produced {n} event{} to {topic}", if n == 1 { "" } else { "s" });
    Ok(())
}

/// `accrue tail TOPIC`: `accruals` and `dead-letter` name the configured
/// output topics.
pub(crate) fn tail(config: &Config, topic: &str, max: usize, idle_secs: u64, pretty: bool) -> anyhow::Result<()> {
    let topic = match topic {
        "accruals" => config.topics.accruals.clone(),
        "dead-letter" => config.topics.dead_letter.clone(),
        other => other.to_owned(),
    };
    admin::print_topic(
        config,
        &topic,
        max,
        Duration::from_secs(idle_secs),
        pretty,
        &mut std::io::stdout(),
    )?;
    Ok(())
}

/// `accrue raw-consume [--pipe-to TOPIC]`: prints the rate as one JSON line.
pub(crate) fn raw_consume(config: &Config, topic: Option<String>, pipe_to: Option<String>) -> anyhow::Result<()> {
    let topic = topic
        .or_else(|| config.topics.input.first().cloned())
        .context("no input topic")?;
    if let Some(to) = &pipe_to {
        let partitions = admin::partition_count(config, &topic)?;
        tokio::runtime::Runtime::new()?.block_on(admin::create_topic(config, to, partitions))?;
    }
    let run = rawbench::raw_consume(config, &topic, pipe_to.as_deref())?;
    println!(
        "{{\"records\":{},\"seconds\":{:.3},\"records_per_second\":{:.0}}}",
        run.records,
        run.seconds,
        run.records as f64 / run.seconds.max(1e-9)
    );
    Ok(())
}
