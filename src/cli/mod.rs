//! The bodies of the `accrue` subcommands; `main` parses the arguments
//! ([`args`]) and calls one of these.

pub(crate) mod args;
pub(crate) mod broker;
pub(crate) mod gen;
pub(crate) mod reads;
pub(crate) mod run;

use std::path::{Path, PathBuf};

use accrue::config::Config;

/// Loads and validates the configuration.
pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `accrue check-config`.
pub(crate) fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    println!(
        "{}: OK ({} tenant{}, input topics {:?})",
        path.display(),
        config.tenants.len(),
        if config.tenants.len() == 1 { "" } else { "s" },
        config.topics.input
    );
    for note in accrue::config::pending_partnerships(&config.tenants) {
        println!("note: {note}");
    }
    Ok(())
}

/// `accrue replay FILE`: prints the run's figures as one JSON line.
pub(crate) fn replay(
    path: &Path,
    file: &Path,
    state: Option<PathBuf>,
    partitions: u32,
    workers: Option<usize>,
) -> anyhow::Result<()> {
    let config = load(path)?;
    let state = state.unwrap_or_else(|| config.state.dir.clone());
    let workers = workers.unwrap_or(config.pipeline.workers);
    let stats = accrue::replay::replay(&config, file, &state, partitions, workers, true)?;
    println!(
        "{{\"records\":{},\"processed\":{},\"dead_lettered\":{},\"duplicates\":{},\"batches\":{},\"seconds\":{:.3},\"events_per_second\":{:.0},\"cpu_seconds\":{:.2}}}",
        stats.records,
        stats.processed,
        stats.dead_lettered,
        stats.duplicates,
        stats.batches,
        stats.seconds,
        stats.records as f64 / stats.seconds.max(1e-9),
        stats.cpu_seconds
    );
    Ok(())
}

/// `accrue token hash`: reads a token from stdin, prints its SHA-256.
pub(crate) fn token_hash() -> anyhow::Result<()> {
    let mut token = String::new();
    std::io::stdin().read_line(&mut token)?;
    let token = token.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!token.is_empty(), "no token on stdin");
    println!("{}", accrue::api::hash_token(token));
    Ok(())
}
