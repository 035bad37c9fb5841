//! What the consume loop tells the publisher: which partitions this instance
//! owns, and up to which sequence each partition's outbox is durable; and
//! what both tell `/health/ready`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::batch::Tenants;
use super::progress::{Credit, Message, Partitions};

/// Shared between the consume loop and the publisher.
#[derive(Default)]
pub struct Progress {
    /// Each owned partition's durable and acknowledged bounds, changed by
    /// [`Message`]s only.
    partitions: Partitions,
    /// Milliseconds since `epoch` until which the publisher may publish:
    /// the consume loop renews it while it is a confirmed group member.
    lease_until_ms: AtomicU64,
    /// Partitions being restored from the changelog.
    restoring: AtomicU64,
    /// Outbox records durable but not yet acknowledged, all partitions, as
    /// last counted by the publisher, against the intake's allowance.
    credit: Credit,
    /// The consume loop has stopped and committed its last batch.
    intake_done: AtomicBool,
    doorbell: Doorbell,
    /// The state store is open.
    state_open: AtomicBool,
    /// The group has assigned this instance its partitions (possibly none).
    assigned: AtomicBool,
    /// The customer directory is still reading its topic up to the end.
    directory_loading: AtomicBool,
    /// Milliseconds since `epoch` of the last acknowledgement; 0 = none yet.
    last_ack_ms: AtomicU64,
    /// Milliseconds since `epoch` of the consume loop's last poll; 0 = none yet.
    last_poll_ms: AtomicU64,
    /// Owned partitions with records to read whose offset has not moved
    /// for `[health] partition_stall`.
    stalled: AtomicU64,
    /// The instance owns no partitions while the group's input has records
    /// nobody consumes, for longer than `[health] unassigned_grace`.
    unassigned_with_lag: AtomicBool,
    /// The consumer sees no broker up (librdkafka's statistics or errors).
    broker_down: AtomicBool,
    /// Milliseconds since `epoch` since which the publisher fails to reach
    /// the broker (tails unreadable, deliveries failing); 0 = it does not.
    publish_failing_since_ms: AtomicU64,
    /// A worker failed for good; the process is stopping with this error.
    failure: Mutex<Option<String>>,
    /// `[health]` bounds, in milliseconds.
    poll_stall_ms: AtomicU64,
    publish_stall_ms: AtomicU64,
    epoch: OnceLock<Instant>,
}

/// An outbox with records pending counts as draining while acknowledgements
/// arrived this recently.
pub const DRAIN_STALL: Duration = Duration::from_secs(30);

/// What `/health/ready` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The group assigned this instance its partitions.
    pub partitions_assigned: bool,
    /// The state store is open.
    pub state_open: bool,
    /// The outbox is empty, or acknowledgements arrived within [`DRAIN_STALL`].
    pub outbox_draining: bool,
    /// Intake has stopped (shutting down).
    pub stopping: bool,
    /// The customer directory has read its topic up to the end at start-up.
    pub directory_loaded: bool,
    /// No partition is being restored from the changelog.
    pub restored: bool,
    /// The consume loop polled Kafka within `[health] poll_stall`.
    pub consume_loop_polling: bool,
    /// No owned partition with records to read is stuck at its offset.
    pub partitions_progressing: bool,
    /// Not left without partitions while the group's input waits.
    pub assignment_ok: bool,
    /// The consumer sees a broker up.
    pub broker_reachable: bool,
    /// The publisher reaches the broker (within `[health] publish_stall`).
    pub publisher_ok: bool,
    /// No worker has failed for good.
    pub no_failure: bool,
}

impl Readiness {
    /// Ready to serve: every condition holds and it is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.conditions().iter().all(|(_, ok)| *ok)
    }

    /// Every condition by its stable name (the `condition` label of
    /// `accrue_ready_condition` and the `reasons` of `/health/ready`); true
    /// when it holds.
    pub fn conditions(&self) -> [(&'static str, bool); 12] {
        [
            ("partitions_assigned", self.partitions_assigned),
            ("state_open", self.state_open),
            ("outbox_draining", self.outbox_draining),
            ("not_stopping", !self.stopping),
            ("directory_loaded", self.directory_loaded),
            ("not_restoring", self.restored),
            ("consume_loop_polling", self.consume_loop_polling),
            ("partitions_progressing", self.partitions_progressing),
            ("assignment_ok", self.assignment_ok),
            ("broker_reachable", self.broker_reachable),
            ("publisher_ok", self.publisher_ok),
            ("no_failure", self.no_failure),
        ]
    }

    /// The names of the conditions that do not hold.
    pub fn failing(&self) -> Vec<&'static str> {
        self.conditions()
            .iter()
            .filter(|(_, ok)| !*ok)
            .map(|(name, _)| *name)
            .collect()
    }
}

impl Progress {
    /// Applies a change of a partition's progress (see
    /// [`super::progress`]) and wakes the publisher if there is more to send.
    pub fn send(&self, message: Message) {
        self.partitions.send(message);
        if matches!(message, Message::Owned { .. } | Message::Durable { .. }) {
            self.doorbell.ring();
        }
    }

    /// Whether every durable record of `partition` is acknowledged.
    pub fn flushed(&self, partition: u32) -> bool {
        self.partitions.flushed(partition)
    }

    /// The consume loop confirmed its membership: publishing is allowed for
    /// `lease` from now.
    pub fn renew_lease(&self, lease: Duration) {
        let until = self.epoch().elapsed() + lease;
        self.lease_until_ms.store(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether the publisher may publish now.
    pub fn lease_valid(&self) -> bool {
        (self.epoch().elapsed().as_millis() as u64) < self.lease_until_ms.load(Ordering::SeqCst)
    }

    /// A restore started (`true`) or ended.
    pub fn set_restoring(&self, on: bool) {
        if on {
            self.restoring.fetch_add(1, Ordering::SeqCst);
        } else {
            self.restoring.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The durable bound of `partition`, if owned.
    pub fn durable(&self, partition: u32) -> Option<u64> {
        self.partitions.durable(partition)
    }

    /// Which assignment owns `partition` (see [`Progress::own`]), if owned.
    pub fn tenure(&self, partition: u32) -> Option<u64> {
        self.partitions.tenure(partition)
    }

    /// Whether this instance owns `partition` (taken over, not revoked).
    pub fn owns(&self, partition: u32) -> bool {
        self.partitions.durable(partition).is_some()
    }

    /// Owned partitions, sorted.
    pub fn owned(&self) -> Vec<u32> {
        self.partitions.owned()
    }

    /// Outbox records not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.credit.pending()
    }

    /// Whether the intake's credit is spent: it pauses until the broker
    /// has acknowledged enough of the outbox.
    pub fn credit_spent(&self) -> bool {
        self.credit.spent()
    }

    /// The publisher's count of records durable but not yet acknowledged.
    pub fn set_pending(&self, n: u64) {
        self.credit.set_pending(n);
    }

    /// The consume loop has committed its last batch.
    pub fn finish_intake(&self) {
        self.intake_done.store(true, Ordering::SeqCst);
        self.doorbell.ring();
    }

    /// Whether intake has finished.
    pub fn intake_done(&self) -> bool {
        self.intake_done.load(Ordering::SeqCst)
    }

    /// The state store is open.
    pub fn set_state_open(&self) {
        self.state_open.store(true, Ordering::SeqCst);
    }

    /// The group assigned (or revoked) partitions: membership is settled.
    pub fn set_assigned(&self) {
        self.assigned.store(true, Ordering::SeqCst);
    }

    /// Whether the customer directory is still loading (start-up).
    pub fn set_directory_loading(&self, loading: bool) {
        self.directory_loading.store(loading, Ordering::SeqCst);
    }

    /// The broker acknowledged outbox records just now.
    pub fn note_acked(&self) {
        let ms = self.epoch().elapsed().as_millis() as u64;
        self.last_ack_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Sets the `[health]` bounds readiness is judged by.
    pub fn set_bounds(&self, health: &crate::config::HealthConfig) {
        self.poll_stall_ms
            .store(health.poll_stall.as_millis() as u64, Ordering::Relaxed);
        self.publish_stall_ms
            .store(health.publish_stall.as_millis() as u64, Ordering::Relaxed);
    }

    /// The consume loop is about to poll (or is busy inside a poll, handing
    /// partitions over): it is alive.
    pub fn heartbeat(&self) {
        let ms = self.epoch().elapsed().as_millis() as u64;
        self.last_poll_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// How long ago the consume loop last polled; `None` before its first poll.
    pub fn since_last_poll(&self) -> Option<Duration> {
        let last = self.last_poll_ms.load(Ordering::Relaxed);
        (last > 0).then(|| Duration::from_millis(self.now_ms().saturating_sub(last)))
    }

    /// How many owned partitions are stuck (see the field).
    pub fn set_stalled(&self, n: u64) {
        self.stalled.store(n, Ordering::Relaxed);
    }

    /// Whether the instance is without partitions while input waits.
    pub fn set_unassigned_with_lag(&self, on: bool) {
        self.unassigned_with_lag.store(on, Ordering::Relaxed);
    }

    /// Whether the consumer sees no broker up.
    pub fn set_broker_down(&self, down: bool) {
        self.broker_down.store(down, Ordering::Relaxed);
    }

    /// The publisher failed to reach the broker just now (`true`), or
    /// succeeded (`false`).
    pub fn set_publish_failing(&self, failing: bool) {
        if failing {
            let now = self.now_ms().max(1);
            let _ = self
                .publish_failing_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        } else {
            self.publish_failing_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A worker failed for good: readiness is false from now on.
    pub fn fail(&self, reason: String) {
        let mut failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.get_or_insert(reason);
        drop(failure);
        self.doorbell.ring();
    }

    /// The failure recorded by [`Progress::fail`], if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The readiness conditions now.
    pub fn readiness(&self) -> Readiness {
        let last = self.last_ack_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        let recent_ack = last > 0 && now.saturating_sub(last) <= DRAIN_STALL.as_millis() as u64;
        // Until `set_bounds`, the defaults of `[health]`.
        let defaults = crate::config::HealthConfig::default();
        let poll_stall = match self.poll_stall_ms.load(Ordering::Relaxed) {
            0 => defaults.poll_stall,
            ms => Duration::from_millis(ms),
        };
        let publish_stall = match self.publish_stall_ms.load(Ordering::Relaxed) {
            0 => defaults.publish_stall.as_millis() as u64,
            ms => ms,
        };
        let failing_since = self.publish_failing_since_ms.load(Ordering::Relaxed);
        Readiness {
            partitions_assigned: self.assigned.load(Ordering::SeqCst),
            state_open: self.state_open.load(Ordering::SeqCst),
            outbox_draining: self.pending() == 0 || recent_ack,
            stopping: self.intake_done(),
            directory_loaded: !self.directory_loading.load(Ordering::SeqCst),
            restored: self.restoring.load(Ordering::SeqCst) == 0,
            consume_loop_polling: self.since_last_poll().is_some_and(|d| d <= poll_stall),
            partitions_progressing: self.stalled.load(Ordering::Relaxed) == 0,
            assignment_ok: !self.unassigned_with_lag.load(Ordering::Relaxed),
            broker_reachable: !self.broker_down.load(Ordering::Relaxed),
            publisher_ok: failing_since == 0 || now.saturating_sub(failing_since) < publish_stall,
            no_failure: self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_none(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch().elapsed().as_millis() as u64
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Waits until rung or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        self.doorbell.wait(timeout);
    }
}

/// A wake-up flag with a condition variable.
#[derive(Default)]
struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        let mut rung = self.rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *rung = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut rung, _) = self
            .cv
            .wait_timeout_while(rung, timeout, |r| !*r)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *rung = false;
    }
}

/// The programs in force, swapped whole on reload (SIGHUP). The consume
/// loop picks up a new version between batches.
#[derive(Default)]
pub struct Programs {
    current: std::sync::RwLock<(u64, Arc<Tenants>)>,
}

impl Programs {
    /// Programs starting at `tenants`.
    pub fn new(tenants: Tenants) -> Self {
        Programs {
            current: std::sync::RwLock::new((1, Arc::new(tenants))),
        }
    }

    /// The current version number and tenants.
    pub fn current(&self) -> (u64, Arc<Tenants>) {
        let guard = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    /// The current version number only.
    pub fn version(&self) -> u64 {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0
    }

    /// Installs new tenants; returns the new version number.
    pub fn replace(&self, tenants: Tenants) -> u64 {
        let mut guard = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.0 += 1;
        guard.1 = Arc::new(tenants);
        guard.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owning_again_is_a_new_tenure() {
        let p = Progress::default();
        assert_eq!(p.tenure(1), None);
        p.send(Message::Owned {
            partition: 1,
            durable: 10,
        });
        let first = p.tenure(1);
        assert!(first.is_some());
        p.send(Message::Revoked { partition: 1 });
        assert_eq!(p.tenure(1), None);
        p.send(Message::Owned {
            partition: 1,
            durable: 4,
        });
        assert!(
            p.tenure(1).is_some() && p.tenure(1) != first,
            "a publisher lane of the first tenure is stale"
        );
        assert_eq!(p.durable(1), Some(4));
    }

    #[test]
    fn ready_needs_assignment_open_state_and_a_draining_outbox() {
        let p = Progress::default();
        assert!(!p.readiness().is_ready());
        p.set_state_open();
        p.heartbeat();
        assert!(!p.readiness().is_ready(), "no assignment yet");
        p.set_assigned();
        assert!(p.readiness().is_ready(), "empty outbox drains");
        p.set_pending(10);
        assert!(!p.readiness().outbox_draining, "pending and no ack yet");
        p.note_acked();
        assert!(p.readiness().is_ready(), "acks are arriving");
        p.set_directory_loading(true);
        assert!(!p.readiness().is_ready(), "directory not read yet");
        p.set_directory_loading(false);
        assert!(p.readiness().is_ready());
        p.finish_intake();
        assert!(!p.readiness().is_ready(), "shutting down");
    }

    #[test]
    fn every_stuck_part_makes_it_unready_and_says_which() {
        let p = Progress::default();
        p.set_state_open();
        p.set_assigned();
        assert_eq!(p.readiness().failing(), vec!["consume_loop_polling"], "never polled");
        p.heartbeat();
        assert!(p.readiness().is_ready());
        p.set_stalled(1);
        assert_eq!(p.readiness().failing(), vec!["partitions_progressing"]);
        p.set_stalled(0);
        p.set_unassigned_with_lag(true);
        assert_eq!(p.readiness().failing(), vec!["assignment_ok"]);
        p.set_unassigned_with_lag(false);
        p.set_broker_down(true);
        assert_eq!(p.readiness().failing(), vec!["broker_reachable"]);
        p.set_broker_down(false);
        p.set_restoring(true);
        assert_eq!(p.readiness().failing(), vec!["not_restoring"]);
        p.set_restoring(false);
        p.fail("state write failed".into());
        assert_eq!(p.readiness().failing(), vec!["no_failure"]);
        assert_eq!(p.failure().as_deref(), Some("state write failed"));
    }

    #[test]
    fn a_publisher_failing_longer_than_the_bound_is_unready() {
        let p = Progress::default();
        p.set_state_open();
        p.set_assigned();
        p.heartbeat();
        p.set_bounds(&crate::config::HealthConfig {
            publish_stall: Duration::from_millis(30),
            ..crate::config::HealthConfig::default()
        });
        p.set_publish_failing(true);
        assert!(p.readiness().publisher_ok, "within the bound");
        std::thread::sleep(Duration::from_millis(40));
        p.heartbeat();
        assert_eq!(p.readiness().failing(), vec!["publisher_ok"]);
        p.set_publish_failing(false);
        assert!(p.readiness().is_ready());
    }

    #[test]
    fn a_silent_consume_loop_is_unready() {
        let p = Progress::default();
        p.set_state_open();
        p.set_assigned();
        p.set_bounds(&crate::config::HealthConfig {
            poll_stall: Duration::from_millis(20),
            ..crate::config::HealthConfig::default()
        });
        p.heartbeat();
        assert!(p.readiness().is_ready());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.readiness().failing(), vec!["consume_loop_polling"]);
    }
}
