//! Taking partitions over without stalling the consume loop.
//!
//! The rebalance callback only assigns a new partition, paused, and
//! records it here. A job thread per partition (several at once) reads the
//! changelog's head, decides whether the local state is current
//! ([`changelog::is_current`]) and restores it if not. The consume loop
//! keeps polling meanwhile, so the member never misses its session or poll
//! timeout, and it finishes the takeover ([`super::consumer`]) when the job
//! is done: new owner epoch, position, resume. A revoke cancels a job; a
//! failed job is retried after a pause.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Progress;
use crate::changelog::{self, BatchTag, RestoreError, RestoreStats, Restorer};
use crate::config::Config;
use crate::state::Store;
use crate::telemetry;

/// Most partitions restored at once.
const PARALLEL: usize = 4;
/// Wait before retrying a failed takeover job.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What a job found out about a partition.
#[derive(Debug)]
pub struct Prepared {
    /// The changelog's newest batch when the job read it.
    pub head: Option<BatchTag>,
    /// What the restore did, if the local state was not current.
    pub restored: Option<RestoreStats>,
}

struct Job {
    handle: JoinHandle<Result<Prepared, RestoreError>>,
    cancel: Arc<AtomicBool>,
}

/// Partitions assigned but not yet taken over.
pub struct Takeovers {
    config: Option<Arc<Config>>,
    store: Arc<dyn Store>,
    progress: Arc<Progress>,
    /// Assigned and paused, no job running; the earliest time to start one.
    waiting: BTreeMap<u32, Instant>,
    running: HashMap<u32, Job>,
    /// Jobs of revoked partitions, still stopping.
    cancelled: Vec<(u32, Job)>,
}

impl Takeovers {
    /// Takeovers that consult the changelog when `config` is given (`[state]
    /// changelog` on); without it every partition's local state is used.
    pub fn new(config: Option<Arc<Config>>, store: Arc<dyn Store>, progress: Arc<Progress>) -> Self {
        Takeovers {
            config,
            store,
            progress,
            waiting: BTreeMap::new(),
            running: HashMap::new(),
            cancelled: Vec::new(),
        }
    }

    /// Partition `p` was assigned (paused): take it over.
    pub fn add(&mut self, p: u32) {
        self.waiting.insert(p, Instant::now());
    }

    /// Partition `p` was revoked before its takeover finished; its job, if
    /// any, is cancelled. Returns whether it was pending.
    pub fn cancel(&mut self, p: u32) -> bool {
        let waiting = self.waiting.remove(&p).is_some();
        if let Some(job) = self.running.remove(&p) {
            job.cancel.store(true, Ordering::Relaxed);
            self.cancelled.push((p, job));
            return true;
        }
        waiting
    }

    /// Whether `p` is assigned but not yet taken over.
    pub fn is_pending(&self, p: u32) -> bool {
        self.waiting.contains_key(&p) || self.running.contains_key(&p)
    }

    /// Whether no takeover is pending.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Starts jobs for waiting partitions, at most [`PARALLEL`] at once.
    /// A partition whose cancelled job is still stopping waits for it: two
    /// jobs never write one partition.
    pub fn start(&mut self) {
        self.cancelled.retain(|(_, job)| !job.handle.is_finished());
        let now = Instant::now();
        let ready: Vec<u32> = self
            .waiting
            .iter()
            .filter(|(p, at)| **at <= now && !self.cancelled.iter().any(|(c, _)| c == *p))
            .map(|(p, _)| *p)
            .collect();
        for p in ready {
            if self.running.len() >= PARALLEL {
                break;
            }
            self.waiting.remove(&p);
            let cancel = Arc::new(AtomicBool::new(false));
            let (config, store, progress, flag) = (
                self.config.clone(),
                self.store.clone(),
                self.progress.clone(),
                cancel.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("takeover-{p}"))
                .spawn(move || prepare(config.as_deref(), store.as_ref(), &progress, p, flag));
            match spawned {
                Ok(handle) => {
                    self.running.insert(p, Job { handle, cancel });
                }
                Err(err) => {
                    tracing::warn!(partition = p, error = %err, "cannot start a takeover thread; retrying");
                    self.waiting.insert(p, now + RETRY_AFTER);
                }
            }
        }
    }

    /// Jobs that finished, with what they found. A failed job is logged and
    /// its partition waits to be tried again.
    pub fn finished(&mut self) -> Vec<(u32, Prepared)> {
        let done: Vec<u32> = self
            .running
            .iter()
            .filter(|(_, job)| job.handle.is_finished())
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in done {
            let Some(job) = self.running.remove(&p) else { continue };
            match job.handle.join() {
                Ok(Ok(prepared)) => out.push((p, prepared)),
                Ok(Err(err)) => {
                    telemetry::restore_failed(p);
                    tracing::error!(partition = p, error = %err, "taking the partition over failed; retrying in 5 s");
                    self.waiting.insert(p, Instant::now() + RETRY_AFTER);
                }
                Err(_) => {
                    // The panic hook has aborted the process already; this
                    // is only reached if a hook was not installed (tests).
                    tracing::error!(partition = p, "takeover thread panicked; retrying in 5 s");
                    self.waiting.insert(p, Instant::now() + RETRY_AFTER);
                }
            }
        }
        out
    }

    /// Cancels every job and waits for them to stop (shutdown).
    pub fn stop_all(&mut self) {
        let running: Vec<u32> = self.running.keys().copied().collect();
        for p in running {
            self.cancel(p);
        }
        self.waiting.clear();
        for (p, job) in self.cancelled.drain(..) {
            if job.handle.join().is_err() {
                tracing::warn!(partition = p, "a cancelled takeover thread panicked");
            }
        }
    }
}

/// The job: is the local state of `p` current? If not, restore it.
fn prepare(
    config: Option<&Config>,
    store: &dyn Store,
    progress: &Progress,
    p: u32,
    cancel: Arc<AtomicBool>,
) -> Result<Prepared, RestoreError> {
    let Some(config) = config else {
        return Ok(Prepared {
            head: None,
            restored: None,
        });
    };
    let restorer = Restorer::new(config)?.with_cancel(cancel);
    let head = restorer.head(p)?;
    let local = changelog::stored_owner(store, p)?;
    let local_batch = changelog::stored_batch(store, p)?;
    if changelog::is_current(local, local_batch, head) {
        tracing::info!(partition = p, owner = ?local, batch = ?local_batch, changelog = ?head, "local state is current; no restore");
        return Ok(Prepared { head, restored: None });
    }
    tracing::info!(partition = p, local = ?local, batch = ?local_batch, changelog = ?head, "restoring partition from the changelog");
    progress.set_restoring(true);
    let restored = restorer.restore(store, p);
    progress.set_restoring(false);
    Ok(Prepared {
        head,
        restored: Some(restored?),
    })
}
