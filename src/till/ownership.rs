//! Which instance owns which partition, for till requests that reach
//! another instance (Kafka Streams' interactive queries are the model).
//!
//! Every instance announces the partitions it applies, with its
//! `[http] advertised_url`, as a record keyed `@instance:<url>` in the
//! compacted directory topic, whenever they change and every
//! [`HEARTBEAT`]; every instance already reads that topic
//! ([`crate::directory`]). A request for a partition this instance does not
//! apply is answered `307 Temporary Redirect` to the instance that claimed
//! it most recently within [`FRESH`]; none: `503 owner_unknown` (a
//! rebalance is under way; retry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use super::Till;
use crate::config::{ClientRole, Config};
use crate::directory::{InstanceRecord, INSTANCE_KEY_PREFIX};
use crate::pipeline::Progress;
use crate::timers::{Clock, SystemClock};

/// How often an instance repeats its claim.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A claim older than this is ignored (its instance is presumed gone).
pub const FRESH: Duration = Duration::from_secs(20);

/// The thread that announces this instance's partitions.
pub struct Announcer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts announcing until `stop` is set or [`Announcer::stop`].
    ///
    /// # Errors
    /// If the thread cannot start.
    pub fn start(
        config: &Config,
        till: Arc<Till>,
        progress: Arc<Progress>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Announcer> {
        let mine = Arc::new(AtomicBool::new(false));
        let (config, flag) = (config.clone(), mine.clone());
        let thread = std::thread::Builder::new().name("announcer".into()).spawn(move || {
            let stopped = || stop.load(Ordering::SeqCst) || flag.load(Ordering::SeqCst);
            announce(&config, &till, &progress, stopped);
        })?;
        Ok(Announcer {
            stop: mine,
            thread: Some(thread),
        })
    }

    /// Says this instance owns nothing any more, and stops.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn announce(config: &Config, till: &Till, progress: &Progress, stopped: impl Fn() -> bool) {
    let producer: BaseProducer<DefaultProducerContext> = match config.kafka.client_config(ClientRole::Producer).create()
    {
        Ok(producer) => producer,
        Err(err) => {
            tracing::error!(error = %err, "cannot announce this instance's partitions; till requests for them will not be redirected here");
            return;
        }
    };
    let topic = config.topics.directory();
    let url = config.http.advertised();
    let key = format!("{INSTANCE_KEY_PREFIX}{url}");
    let mut said: Option<Vec<u32>> = None;
    let mut last = Instant::now();
    loop {
        let done = stopped();
        let owned: Vec<u32> = if done { Vec::new() } else { progress.owned() };
        if done || said.as_ref() != Some(&owned) || last.elapsed() >= HEARTBEAT {
            let record = InstanceRecord {
                url: url.clone(),
                partitions: owned.clone(),
                at_ms: SystemClock.now_ms(),
            };
            if let Ok(payload) = serde_json::to_vec(&record) {
                match producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)) {
                    Ok(()) => {
                        // The directory reader of this instance learns it too.
                        if let Some(directory) = till.directory() {
                            directory.claim(record);
                        }
                        said = Some(owned);
                        last = Instant::now();
                    }
                    Err((err, _)) => {
                        tracing::warn!(error = %err, "announcing this instance's partitions failed; retrying")
                    }
                }
            }
        }
        if done {
            let _ = producer.flush(Duration::from_secs(2));
            return;
        }
        producer.poll(Duration::from_millis(200));
    }
}
