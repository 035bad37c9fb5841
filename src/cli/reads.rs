//! Subcommands that read the state directory: `balance` and `ledger`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use accrue::read;
use accrue::state::RocksStore;

fn state_dir(cli_config: &Path, state: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match state {
        Some(dir) => Ok(dir),
        None => Ok(super::load(cli_config)?.state.dir),
    }
}

fn open_state(dir: &Path) -> anyhow::Result<RocksStore> {
    RocksStore::open_read_only(dir).with_context(|| format!("cannot open the state directory {}", dir.display()))
}

/// `accrue balance`: every account of a customer, as pretty JSON.
pub(crate) fn balance(cli_config: &Path, tenant: &str, customer: &str, state: Option<PathBuf>) -> anyhow::Result<()> {
    let config = super::load(cli_config)?;
    let tenant = config
        .tenants
        .get(tenant)
        .with_context(|| format!("tenant {tenant:?} is not configured"))?;
    let store = open_state(&state.unwrap_or(config.state.dir.clone()))?;
    let found = read::balances(&store.snapshot(), tenant, customer)?
        .with_context(|| format!("no customer {customer:?} in tenant {:?}", tenant.id))?;
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(())
}

/// `accrue ledger`: a tenant's ledger as JSON lines or CSV.
pub(crate) fn ledger(
    cli_config: &Path,
    tenant: &str,
    filters: &[(&str, Option<String>)],
    csv: bool,
    state: Option<PathBuf>,
) -> anyhow::Result<()> {
    let params = filters
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)));
    let (query, _) = read::LedgerQuery::parse(tenant, params)?;
    let store = open_state(&state_dir(cli_config, state)?)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let format = if csv {
        read::Format::Csv
    } else {
        read::Format::JsonLines
    };
    let rows = read::export(&store.snapshot(), &query, format, &mut out)?;
    tracing::info!(rows, "ledger written");
    Ok(())
}
