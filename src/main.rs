//! The `accrue` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use accrue::config::Config;
use accrue::pipeline::{Programs, Progress};
use accrue::state::RocksStore;
use accrue::{admin, api, app, http, read, telemetry};

#[derive(Parser)]
#[command(
    name = "accrue",
    version,
    about = "Exactly-once loyalty accruals: Kafka in, RocksDB state, accrual events out"
)]
struct Cli {
    /// The processor config file; tenant files are found from it.
    #[arg(
        long,
        short,
        global = true,
        env = "ACCRUE_CONFIG",
        default_value = "config/local/accrue.toml"
    )]
    config: PathBuf,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "ACCRUE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor until SIGTERM or Ctrl-C.
    Run,
    /// Validate the processor and tenant config; print every error with file and field.
    CheckConfig,
    /// Manage the configured topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce events from JSON or NDJSON files to an input topic, keyed tenant:customer.
    Produce {
        /// Topic to write to (default: the first input topic).
        #[arg(long)]
        topic: Option<String>,
        /// Files holding one JSON event or NDJSON.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Generate realistic events (Zipf customers, real catalogue) to Kafka or NDJSON.
    Gen(GenArgs),
    /// Run NDJSON events through the processor into a state directory, no broker.
    Replay {
        /// NDJSON file of events.
        file: PathBuf,
        /// State directory (default: [state] dir of the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Partitions to spread keys over (as the input topics have).
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Apply workers (default: [pipeline] workers of the config).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Read a topic from the beginning with a plain consumer and print the rate (bench baseline).
    RawConsume {
        /// Topic (default: the first input topic).
        #[arg(long)]
        topic: Option<String>,
        /// Also produce every record to this topic (created like the input
        /// if missing) and time until the last is acknowledged: the broker's
        /// consume-and-produce ceiling.
        #[arg(long)]
        pipe_to: Option<String>,
    },
    /// Print a topic's records from the beginning as JSON lines.
    Tail {
        /// `accruals`, `dead-letter`, or a topic name.
        topic: String,
        /// Stop after this many records.
        #[arg(long, default_value_t = usize::MAX)]
        max: usize,
        /// Stop after this many seconds without a record.
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
        /// One human-readable line per record instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Print a customer's balances, every account, as JSON (reads the state directory).
    Balance {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Customer id.
        #[arg(long)]
        customer: String,
        /// State directory (default: `[state] dir` of the config).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Print a tenant's ledger as JSON lines or CSV (reads the state directory).
    Ledger {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Only this entry type, e.g. referral_accrual.
        #[arg(long)]
        entry_type: Option<String>,
        /// Only this program.
        #[arg(long)]
        program: Option<String>,
        /// Only this branch.
        #[arg(long)]
        branch: Option<String>,
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Entries that occurred at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Entries that occurred before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// CSV with a header row instead of JSON lines.
        #[arg(long)]
        csv: bool,
        /// State directory (default: `[state] dir` of the config).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Read API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Read a token from stdin and print its SHA-256 for `api_tokens_sha256`.
    Hash,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Target rate in events per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Customers per tenant.
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    /// Zipf exponent of customer popularity.
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Seed; the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mix in percent: orders,refunds,bookings,adjustments,upserts,gift_cards.
    #[arg(long, default_value = "80,3,10,2,4,1")]
    mix: String,
    /// Every event goes to a new customer (state of a known size, for
    /// restore benchmarks); --zipf is then ignored.
    #[arg(long)]
    distinct: bool,
    /// Write NDJSON to this file instead of producing to Kafka.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Topic to produce to (default: the first input topic).
    #[arg(long)]
    topic: Option<String>,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every configured topic (existing ones are kept).
    Create {
        /// Partitions of every topic; all must match.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
    /// Check that every topic exists and all are co-partitioned.
    Check,
}

// The hot path allocates per event (keys, JSON values, outbox records);
// mimalloc serves that at about half glibc's cost (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_json);
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig => {
            let config = load(&cli.config)?;
            println!(
                "{}: OK ({} tenant{}, input topics {:?})",
                cli.config.display(),
                config.tenants.len(),
                if config.tenants.len() == 1 { "" } else { "s" },
                config.topics.input
            );
            for note in accrue::config::pending_partnerships(&config.tenants) {
                println!("note: {note}");
            }
            Ok(())
        }
        Command::Run => run(load(&cli.config)?),
        Command::Topics { action } => {
            let config = load(&cli.config)?;
            match action {
                TopicsAction::Create {
                    partitions,
                    replication,
                } => {
                    let rt = tokio::runtime::Runtime::new()?;
                    rt.block_on(admin::create_topics(&config, partitions, replication))?;
                    let n = admin::check_topics(&config)?;
                    println!("topics ready, {n} partitions each");
                }
                TopicsAction::Check => {
                    let n = admin::check_topics(&config)?;
                    println!("topics ready, {n} partitions each");
                }
            }
            Ok(())
        }
        Command::Produce { topic, files } => {
            let config = load(&cli.config)?;
            let topic = topic
                .or_else(|| config.topics.input.first().cloned())
                .context("no input topic configured")?;
            let n = admin::produce_files(&config, &topic, &files)?;
            println!("produced {n} event{} to {topic}", if n == 1 { "" } else { "s" });
            Ok(())
        }
        Command::Gen(args) => generate(&load(&cli.config)?, args),
        Command::Replay {
            file,
            state,
            partitions,
            workers,
        } => {
            let config = load(&cli.config)?;
            let state = state.unwrap_or_else(|| config.state.dir.clone());
            let workers = workers.unwrap_or(config.pipeline.workers);
            let stats = accrue::replay::replay(&config, &file, &state, partitions, workers, true)?;
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
        Command::RawConsume { topic, pipe_to } => {
            let config = load(&cli.config)?;
            let topic = topic
                .or_else(|| config.topics.input.first().cloned())
                .context("no input topic")?;
            if let Some(to) = &pipe_to {
                let partitions = admin::partition_count(&config, &topic)?;
                tokio::runtime::Runtime::new()?.block_on(admin::create_topic(&config, to, partitions))?;
            }
            let run = admin::raw_consume(&config, &topic, pipe_to.as_deref())?;
            println!(
                "{{\"records\":{},\"seconds\":{:.3},\"records_per_second\":{:.0}}}",
                run.records,
                run.seconds,
                run.records as f64 / run.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Tail {
            topic,
            max,
            idle_secs,
            pretty,
        } => {
            let config = load(&cli.config)?;
            let topic = match topic.as_str() {
                "accruals" => config.topics.accruals.clone(),
                "dead-letter" => config.topics.dead_letter.clone(),
                other => other.to_owned(),
            };
            admin::print_topic(
                &config,
                &topic,
                max,
                Duration::from_secs(idle_secs),
                pretty,
                &mut std::io::stdout(),
            )?;
            Ok(())
        }
        Command::Balance {
            tenant,
            customer,
            state,
        } => balance(&cli.config, &tenant, &customer, state),
        Command::Ledger {
            tenant,
            customer,
            entry_type,
            program,
            branch,
            account,
            from,
            to,
            csv,
            state,
        } => {
            let filters = [
                ("customer", customer),
                ("entry_type", entry_type),
                ("program", program),
                ("branch", branch),
                ("account", account),
                ("from", from),
                ("to", to),
            ];
            ledger(&cli.config, &tenant, &filters, csv, state)
        }
        Command::Token {
            action: TokenAction::Hash,
        } => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let token = token.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!token.is_empty(), "no token on stdin");
            println!("{}", api::hash_token(token));
            Ok(())
        }
    }
}

fn state_dir(cli_config: &std::path::Path, state: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match state {
        Some(dir) => Ok(dir),
        None => Ok(load(cli_config)?.state.dir),
    }
}

fn open_state(dir: &std::path::Path) -> anyhow::Result<RocksStore> {
    RocksStore::open_read_only(dir).with_context(|| format!("cannot open the state directory {}", dir.display()))
}

fn balance(cli_config: &std::path::Path, tenant: &str, customer: &str, state: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(cli_config)?;
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

fn ledger(
    cli_config: &std::path::Path,
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

fn run(config: Config) -> anyhow::Result<()> {
    // A panic outside the guarded apply of one record ends the process
    // (src/pipeline/poison.rs): never a live husk that answers "ready".
    accrue::pipeline::poison::install_panic_hook();
    let rt = tokio::runtime::Runtime::new()?;
    let stop = Arc::new(AtomicBool::new(false));
    let programs = Arc::new(Programs::new(config.tenants.clone()));
    rt.block_on(async {
        let setup = telemetry::MetricsSetup {
            tenant_labels: config
                .metrics
                .tenant_label
                .then(|| telemetry::tenant_labels(config.tenants.keys(), config.metrics.max_tenants)),
        };
        let handle = telemetry::install_metrics(&setup).context("cannot install the metrics recorder")?;
        let listener = http::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot serve HTTP on {} ([http] listen)", config.http.listen))?;
        let progress = Arc::new(Progress::default());
        let reads = api::StoreSlot::default();
        let surface = http::Surface::new(handle, progress.clone())
            .with_read_api(api::ReadApi::new(reads.clone(), programs.clone()));
        let server = tokio::spawn(http::serve(listener, surface, config.http.clone()));
        tracing::info!(listen = %config.http.listen, state = %config.state.dir.display(), "accrue starting");
        let worker_stop = stop.clone();
        let path = config.path.clone();
        let worker_programs = programs.clone();
        let worker = tokio::task::spawn_blocking(move || {
            app::run_serving_reads(&config, worker_programs, worker_stop, progress, &reads)
        });
        tokio::pin!(worker);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                result = &mut worker => return result?.map_err(anyhow::Error::from),
                _ = tokio::signal::ctrl_c() => { tracing::info!("Ctrl-C: shutting down"); break; }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = hangup.recv() => reload(&path, &programs),
            }
        }
        stop.store(true, Ordering::SeqCst);
        worker.await?.map_err(anyhow::Error::from)?;
        server.abort();
        tracing::info!("accrue stopped cleanly");
        Ok::<(), anyhow::Error>(())
    })
}

/// SIGHUP: reload the tenant programs. A broken config keeps the old
/// programs and says why; processor settings (topics, brokers) need a restart.
fn reload(path: &std::path::Path, programs: &Programs) {
    match Config::load(path) {
        Ok(config) => {
            let version = programs.replace(config.tenants);
            tracing::info!(version, "SIGHUP: programs reloaded; they apply from the next record");
        }
        Err(err) => tracing::error!("SIGHUP: reload failed, the old programs stay in force: {err}"),
    }
}

fn generate(config: &Config, args: GenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let shares: Vec<u32> = args
        .mix
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .context("--mix takes six whole percentages: orders,refunds,bookings,adjustments,upserts,gift_cards")?;
    let [orders, refunds, bookings, adjustments, upserts, gift_cards] = shares[..] else {
        anyhow::bail!("--mix takes six whole percentages: orders,refunds,bookings,adjustments,upserts,gift_cards");
    };
    let settings = accrue::gen::Settings {
        events: args.events,
        customers: args.customers,
        zipf: args.zipf,
        mix: accrue::gen::Mix {
            orders,
            refunds,
            bookings,
            adjustments,
            upserts,
            gift_cards,
        },
        seed: args.seed,
        distinct: args.distinct,
    };
    let generator = accrue::gen::Generator::new(config.tenants.values().cloned().collect(), settings)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut pacer = accrue::gen::Pacer::new(args.rate, args.events);
    if let Some(path) = args.out {
        let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for (_, json) in generator {
            writeln!(out, "{json}")?;
            pacer.tick();
        }
        out.flush()?;
    } else {
        let topic = args
            .topic
            .or_else(|| config.topics.input.first().cloned())
            .context("no input topic")?;
        admin::produce_stream(config, &topic, generator.inspect(|_| pacer.tick()))?;
    }
    pacer.report(" (done)");
    Ok(())
}
