//! The command line's arguments: every subcommand and flag of `accrue`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "accrue",
    version,
    about = "Exactly-once loyalty accruals: Kafka in, RocksDB state, accrual events out"
)]
pub(crate) struct Cli {
    /// The processor config file; tenant files are found from it.
    #[arg(
        long,
        short,
        global = true,
        env = "ACCRUE_CONFIG",
        default_value = "config/local/accrue.toml"
    )]
    pub(crate) config: PathBuf,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "ACCRUE_LOG_JSON")]
    pub(crate) log_json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Send till quotes and authorizations at a fixed rate to `accrue run` ([http] listen) and print latency percentiles.
    TillBench(TillBenchArgs),
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
pub(crate) enum TokenAction {
    /// Read a token from stdin and print its SHA-256 for `api_tokens_sha256` or `pos_tokens_sha256`.
    Hash,
}

#[derive(clap::Args)]
pub(crate) struct TillBenchArgs {
    /// The tenant.
    #[arg(long, default_value = "cafe-central")]
    pub(crate) tenant: String,
    /// The branch the orders are paid in (cashback must be a payment method there).
    #[arg(long, default_value = "downtown")]
    pub(crate) branch: String,
    /// The tenant's POS token.
    #[arg(long, env = "ACCRUE_POS_TOKEN")]
    pub(crate) token: String,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    pub(crate) rps: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 30)]
    pub(crate) seconds: u32,
    /// Customers the requests spread over.
    #[arg(long, default_value_t = 2000)]
    pub(crate) customers: u32,
    /// Share of authorizations in percent; the rest are quotes.
    #[arg(long, default_value_t = 20)]
    pub(crate) authorize_percent: u32,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// Only give the customers 1000.00 cashback each (balance.adjust to the input topic) and exit.
    #[arg(long)]
    pub(crate) seed: bool,
}

#[derive(clap::Args)]
pub(crate) struct GenArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) events: u64,
    /// Target rate in events per second; 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Customers per tenant.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) customers: u64,
    /// Zipf exponent of customer popularity.
    #[arg(long, default_value_t = 1.1)]
    pub(crate) zipf: f64,
    /// Seed; the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Mix in percent: orders,refunds,bookings,adjustments,upserts,gift_cards.
    #[arg(long, default_value = "80,3,10,2,4,1")]
    pub(crate) mix: String,
    /// Every event goes to a new customer (state of a known size, for
    /// restore benchmarks); --zipf is then ignored.
    #[arg(long)]
    pub(crate) distinct: bool,
    /// Write NDJSON to this file instead of producing to Kafka.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Topic to produce to (default: the first input topic).
    #[arg(long)]
    pub(crate) topic: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum TopicsAction {
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
