//! `accrue run`: the processor with its HTTP surface, stopped by SIGTERM
//! or Ctrl-C, its programs reloaded by SIGHUP.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use accrue::config::Config;
use accrue::pipeline::{Programs, Progress};
use accrue::till::api::TillApi;
use accrue::till::Till;
use accrue::{admin, api, app, http, telemetry};

/// `accrue run`: the processor, the HTTP surface and the signals, until
/// SIGTERM or Ctrl-C.
pub(crate) fn run(config: Config) -> anyhow::Result<()> {
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
        let till = Arc::new(Till::default());
        let read_api = api::ReadApi::new(reads.clone(), programs.clone());
        let mut surface = http::Surface::new(handle, progress.clone())
            .with_read_api(read_api.clone())
            .with_till_api(TillApi::new(
                reads.clone(),
                programs.clone(),
                till.clone(),
                progress.clone(),
                config.http.advertised(),
            ));
        if config.http.admin {
            let admin = admin::Admin::new(&config, read_api, reads.clone(), programs.clone(), till.clone())
                .context("cannot set up the back office ([http] admin)")?;
            surface = surface.with_admin(admin);
        }
        let server = tokio::spawn(http::serve(listener, surface, config.http.clone()));
        tracing::info!(listen = %config.http.listen, state = %config.state.dir.display(), "accrue starting");
        let worker_stop = stop.clone();
        let path = config.path.clone();
        let worker_programs = programs.clone();
        let worker = tokio::task::spawn_blocking(move || {
            app::run_serving_reads(&config, worker_programs, worker_stop, progress, &reads, &till)
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
fn reload(path: &Path, programs: &Programs) {
    match Config::load(path) {
        Ok(config) => {
            let version = programs.replace(config.tenants);
            tracing::info!(version, "SIGHUP: programs reloaded; they apply from the next record");
        }
        Err(err) => tracing::error!("SIGHUP: reload failed, the old programs stay in force: {err}"),
    }
}
