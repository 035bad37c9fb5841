//! `accrue gen`: the load generator's command line.

use std::io::Write;

use anyhow::Context;

use super::args::GenArgs;
use accrue::config::Config;
use accrue::tools::{admin, gen};

/// `accrue gen`: generated events to NDJSON or to Kafka.
pub(crate) fn generate(config: &Config, args: GenArgs) -> anyhow::Result<()> {
    let shares: Vec<u32> = args
        .mix
        .split(',')
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .context("--mix takes six whole percentages: orders,refunds,bookings,adjustments,upserts,gift_cards")?;
    let [orders, refunds, bookings, adjustments, upserts, gift_cards] = shares[..] else {
        anyhow::bail!("--mix takes six whole percentages: orders,refunds,bookings,adjustments,upserts,gift_cards");
    };
    let settings = gen::Settings {
        events: args.events,
        customers: args.customers,
        zipf: args.zipf,
        mix: gen::Mix {
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
    let generator =
        gen::Generator::new(config.tenants.values().cloned().collect(), settings).map_err(|e| anyhow::anyhow!(e))?;
    let mut pacer = gen::Pacer::new(args.rate, args.events);
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
