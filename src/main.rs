//! The `accrue` command line: parses arguments ([`cli::args`]) and
//! dispatches to the subcommand bodies ([`cli`]), which call the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, TokenAction};

// The hot path allocates per event (keys, JSON values, outbox records);
// mimalloc serves that at about half glibc's cost (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Cli::parse();
    accrue::telemetry::init_logging(args.log_json);
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: Cli) -> anyhow::Result<()> {
    let path = args.config.as_path();
    match args.command {
        Command::CheckConfig => cli::check_config(path),
        Command::Run => cli::run::run(cli::load(path)?),
        Command::Topics { action } => cli::broker::topics(&cli::load(path)?, action),
        Command::Produce { topic, files } => cli::broker::produce(&cli::load(path)?, topic, &files),
        Command::Gen(gen) => cli::gen::generate(&cli::load(path)?, gen),
        Command::TillBench(args) => cli::gen::till_bench(&cli::load(path)?, args),
        Command::Replay {
            file,
            state,
            partitions,
            workers,
        } => cli::replay(path, &file, state, partitions, workers),
        Command::RawConsume { topic, pipe_to } => cli::broker::raw_consume(&cli::load(path)?, topic, pipe_to),
        Command::Tail {
            topic,
            max,
            idle_secs,
            pretty,
        } => cli::broker::tail(&cli::load(path)?, &topic, max, idle_secs, pretty),
        Command::Balance {
            tenant,
            customer,
            state,
        } => cli::reads::balance(path, &tenant, &customer, state),
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
            cli::reads::ledger(path, &tenant, &filters, csv, state)
        }
        Command::Token {
            action: TokenAction::Hash,
        } => cli::token_hash(),
    }
}
