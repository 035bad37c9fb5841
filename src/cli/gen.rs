//! `accrue gen`: the load generator's command line.

use std::io::Write;

use anyhow::Context;

use super::args::{GenArgs, TillBenchArgs};
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

/// `accrue till-bench`: seeds the bench customers, or measures the till.
pub(crate) fn till_bench(config: &Config, args: TillBenchArgs) -> anyhow::Result<()> {
    use accrue::tools::tillbench;
    if args.seed {
        let topic = config.topics.input.first().context("no input topic")?;
        let events = tillbench::seed_events(&args.tenant, &args.branch, args.customers);
        let n = admin::produce_stream(config, topic, events.into_iter())?;
        println!("{n} balance adjustments produced to {topic}");
        return Ok(());
    }
    let settings = tillbench::Settings {
        addr: config.http.listen,
        tenant: args.tenant,
        branch: args.branch,
        token: args.token,
        rps: args.rps.max(1),
        seconds: args.seconds.max(1),
        customers: args.customers.max(1),
        authorize_percent: args.authorize_percent.min(100),
        connections: args.connections.max(1),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(tillbench::run(settings))?;
    let mut out = serde_json::Map::new();
    out.insert(
        "achieved_rps".into(),
        serde_json::json!((report.achieved_rps * 10.0).round() / 10.0),
    );
    for (name, e) in &report.endpoints {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        out.insert(
            (*name).into(),
            serde_json::json!({
                "count": e.latencies.len(),
                "p50_ms": round(e.quantile_ms(0.50)),
                "p99_ms": round(e.quantile_ms(0.99)),
                "max_ms": round(e.quantile_ms(1.0)),
                "statuses": e.statuses,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
