//! `accrue run`: wires the state store, the consume loop and the publisher,
//! and shuts them down in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::api::StoreSlot;
use crate::config::Config;
use crate::directory::{self, Directory};
use crate::outbox::Publisher;
use crate::pipeline::batch::Routing;
use crate::pipeline::{self, Programs, Progress};
use crate::state::{RocksStore, Store};
use crate::till::{ownership, Till};

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Topics are missing or not co-partitioned.
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicsError),
    /// The state directory could not be opened.
    #[error("cannot open the state directory {dir}: {source}")]
    State {
        /// The directory.
        dir: String,
        /// The cause.
        source: crate::state::StateError,
    },
    /// The consume loop failed.
    #[error("processor failed: {0}")]
    Pipeline(#[from] pipeline::PipelineError),
    /// The publisher failed.
    #[error("publisher failed: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    /// A worker thread panicked (a bug).
    #[error("a worker thread panicked: {0}")]
    Panicked(&'static str),
}

/// Runs the processor until `stop` is set, then stops intake, commits the
/// last batch, drains the outbox and returns.
///
/// # Errors
/// [`RunError`] if start-up checks fail or a worker stops with an error.
/// `progress` is shared with the HTTP surface, which reads readiness from it.
pub fn run(
    config: &Config,
    programs: Arc<Programs>,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Result<(), RunError> {
    run_serving_reads(config, programs, stop, progress, &StoreSlot::default(), &Arc::default())
}

/// [`run`], also putting the opened store into `reads` for the read API,
/// and applying the till requests queued in `till`.
///
/// # Errors
/// As [`run`].
pub fn run_serving_reads(
    config: &Config,
    programs: Arc<Programs>,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    reads: &StoreSlot,
    till: &Arc<Till>,
) -> Result<(), RunError> {
    let partitions = crate::topics::check(config)?;
    tracing::info!(partitions, "topics are co-partitioned");
    std::fs::create_dir_all(&config.state.dir).map_err(|e| RunError::State {
        dir: config.state.dir.display().to_string(),
        source: crate::state::StateError::Corrupt {
            family: "-",
            detail: e.to_string(),
        },
    })?;
    let options = crate::state::StoreOptions {
        dedupe_retention: config.state.dedupe_retention,
    };
    let rocks = Arc::new(
        RocksStore::open_with(&config.state.dir, options).map_err(|source| RunError::State {
            dir: config.state.dir.display().to_string(),
            source,
        })?,
    );
    let _ = reads.set(rocks.clone());
    let store: Arc<dyn Store> = rocks;
    let code_key = gift_card_key(&config.state.dir).map_err(|e| RunError::State {
        dir: config.state.dir.display().to_string(),
        source: crate::state::StateError::Corrupt {
            family: "giftcard.key",
            detail: e.to_string(),
        },
    })?;
    progress.set_state_open();
    let publisher = Publisher::new(config, store.clone(), progress.clone())?;

    let directory = Arc::new(Directory::default());
    directory.seed(config.tenants.values());
    progress.set_directory_loading(true);
    let directory_thread = {
        let (config, directory, progress, stop) = (config.clone(), directory.clone(), progress.clone(), stop.clone());
        thread::Builder::new()
            .name("directory".into())
            .spawn(move || {
                // Until it has read the topic, /health/ready stays false and
                // lookups see only what this instance applied itself.
                while !stop.load(Ordering::SeqCst) {
                    match directory::run_reader(&config, directory.clone(), &stop, || {
                        progress.set_directory_loading(false);
                    }) {
                        Ok(()) => break,
                        Err(err) => {
                            tracing::error!(error = %err, "cannot read the customer directory topic; retrying");
                            thread::sleep(std::time::Duration::from_secs(2));
                        }
                    }
                }
            })
            .map_err(|_| RunError::Panicked("directory reader could not start"))?
    };
    // A referral or partner lookup must see every customer upserted before
    // it in the directory topic: no input is applied before it is read.
    while !progress.readiness().directory_loaded && !stop.load(Ordering::SeqCst) {
        thread::sleep(std::time::Duration::from_millis(50));
    }
    tracing::info!(entries = directory.len(), "customer directory loaded");
    let partitions = u32::try_from(partitions).unwrap_or(1);
    till.set_partitions(partitions);
    till.set_directory(directory.clone());
    let advertised = config.http.advertised();
    if advertised.contains("://0.0.0.0") || advertised.contains("://[::]") {
        tracing::warn!(
            %advertised,
            "[http] advertised_url is not an address other instances can reach: till requests for this instance's customers that reach another instance cannot be redirected; set [http] advertised_url or ACCRUE_ADVERTISED_URL"
        );
    }
    let announcer = ownership::Announcer::start(config, till.clone(), progress.clone(), stop.clone())
        .map_err(|_| RunError::Panicked("the ownership announcer could not start"))?;
    let routing = Routing {
        internal_topic: config.topics.internal.clone(),
        partitions,
        directory,
    };

    let publisher_thread = {
        let (progress, stop) = (progress.clone(), stop.clone());
        thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                let result = publisher.run();
                if let Err(err) = &result {
                    // A publisher that stopped leaves the outbox to grow:
                    // the whole process stops, not ready from now on.
                    tracing::error!(error = %err, "publisher failed; stopping the processor");
                    progress.fail(format!("publisher failed: {err}"));
                    stop.store(true, Ordering::SeqCst);
                }
                result
            })
            .map_err(|_| RunError::Panicked("publisher could not start"))?
    };

    let result = pipeline::consumer::run(
        config,
        store,
        progress.clone(),
        &programs,
        code_key,
        routing,
        &crate::timers::SystemClock,
        till,
        &stop,
    );
    // Whatever happened, let the publisher drain what is durable.
    progress.finish_intake();
    stop.store(true, Ordering::SeqCst);
    let published = publisher_thread.join().map_err(|_| RunError::Panicked("publisher"))?;
    directory_thread
        .join()
        .map_err(|_| RunError::Panicked("directory reader"))?;
    announcer.stop();
    result?;
    published?;
    Ok(())
}

/// The secret behind gift-card codes: `giftcard.key` in the state
/// directory, 32 random bytes made on first start. It moves with the state
/// (backups include it), so a replay after a restore issues the same codes.
fn gift_card_key(dir: &std::path::Path) -> std::io::Result<Arc<[u8]>> {
    let path = dir.join("giftcard.key");
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => Ok(key.into()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is shorter than 32 bytes; restore it from a backup", path.display()),
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = dir.join("giftcard.key.tmp");
            std::fs::write(&tmp, key)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(key.to_vec().into())
        }
        Err(err) => Err(err),
    }
}
