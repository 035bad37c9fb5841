//! Notices when the consume loop stops making progress without an error:
//! an owned partition stuck at its offset with records behind it, or an
//! instance left without partitions while the group's input waits. Pure:
//! the consume loop feeds it offsets, watermarks and the time, and acts on
//! what it says (log, metric, readiness, re-position, rejoin).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What one observation of a partition means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Moving, idle (nothing to read) or paused on purpose.
    Fine,
    /// Records wait and the offset has not moved for the bound: `first`
    /// is true at the first observation of this stall.
    Stuck {
        /// The first observation of this stall.
        first: bool,
        /// How long the offset has not moved.
        stuck_for: Duration,
    },
    /// It was stuck and moves again.
    Recovered,
}

#[derive(Debug, Clone, Copy)]
struct Track {
    offset: i64,
    since: Instant,
    stuck: bool,
}

/// Per owned partition (of each topic, `K`): where its applied offset was
/// and since when.
#[derive(Debug)]
pub struct StallWatch<K> {
    bound: Duration,
    parts: HashMap<K, Track>,
}

impl<K: Hash + Eq + Copy> StallWatch<K> {
    /// A partition is stuck when records wait and its offset has not moved
    /// for `bound`.
    pub fn new(bound: Duration) -> Self {
        StallWatch {
            bound,
            parts: HashMap::new(),
        }
    }

    /// Whether partition `p`'s offset has not moved for the bound: worth a
    /// fresh watermark from the broker before [`StallWatch::observe`]
    /// (statistics may be stale when fetching is what is stuck).
    pub fn quiet(&self, p: K, next_offset: i64, now: Instant) -> bool {
        self.parts
            .get(&p)
            .is_some_and(|t| t.offset == next_offset && now.saturating_duration_since(t.since) >= self.bound)
    }

    /// Observes partition `p` at `next_offset` (the next offset to apply),
    /// with the input's high watermark `high`; `paused` when intake is held
    /// back on purpose (outbox backpressure).
    pub fn observe(&mut self, p: K, next_offset: i64, high: i64, paused: bool, now: Instant) -> Stall {
        let track = self.parts.entry(p).or_insert(Track {
            offset: next_offset,
            since: now,
            stuck: false,
        });
        let waiting = high > next_offset;
        if track.offset != next_offset || !waiting || paused {
            let was = track.stuck;
            *track = Track {
                offset: next_offset,
                since: now,
                stuck: false,
            };
            return if was { Stall::Recovered } else { Stall::Fine };
        }
        let stuck_for = now.saturating_duration_since(track.since);
        if stuck_for < self.bound {
            return Stall::Fine;
        }
        let first = !track.stuck;
        track.stuck = true;
        Stall::Stuck { first, stuck_for }
    }

    /// Keeps only the partitions `owned` says are still owned.
    pub fn retain(&mut self, mut owned: impl FnMut(&K) -> bool) {
        self.parts.retain(|k, _| owned(k));
    }

    /// The bound a partition may stand still with records waiting.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Partitions stuck now.
    pub fn stuck(&self) -> usize {
        self.parts.values().filter(|t| t.stuck).count()
    }
}

/// What the instance should do about owning nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unassigned {
    /// It owns partitions, or nobody is waiting for it.
    Fine,
    /// Input waits and the group's committed offsets have not moved for
    /// the grace: not ready.
    Unready,
    /// For twice the grace: leave the group and join again.
    Rejoin,
}

/// Watches an instance that owns no partitions.
#[derive(Debug)]
pub struct GroupWatch {
    grace: Duration,
    since: Option<Instant>,
    committed: Option<i64>,
}

impl GroupWatch {
    /// Unready after `grace`, rejoin after twice that.
    pub fn new(grace: Duration) -> Self {
        GroupWatch {
            grace,
            since: None,
            committed: None,
        }
    }

    /// It owns partitions (or is taking some over), or has just rejoined:
    /// the wait, if any, starts again.
    pub fn reset(&mut self) {
        self.since = None;
        self.committed = None;
    }

    /// It owns nothing; `lag` is the group's input records not yet
    /// committed by anyone and `committed` the sum of its committed offsets
    /// (which grows while other members make progress).
    pub fn observe(&mut self, lag: i64, committed: i64, now: Instant) -> Unassigned {
        let moved = self.committed.is_some_and(|c| c != committed);
        self.committed = Some(committed);
        if lag <= 0 || moved {
            // Nothing waits, or someone else is consuming it.
            self.since = None;
            return Unassigned::Fine;
        }
        let since = *self.since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited >= self.grace.saturating_mul(2) {
            Unassigned::Rejoin
        } else if waited >= self.grace {
            Unassigned::Unready
        } else {
            Unassigned::Fine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    #[test]
    fn a_partition_with_records_behind_a_still_offset_is_stuck_after_the_bound() {
        let t0 = Instant::now();
        let mut watch: StallWatch<u32> = StallWatch::new(BOUND);
        assert_eq!(watch.observe(0, 100, 500, false, t0), Stall::Fine);
        assert_eq!(
            watch.observe(0, 100, 500, false, t0 + Duration::from_secs(59)),
            Stall::Fine
        );
        assert!(!watch.quiet(0, 100, t0 + Duration::from_secs(59)));
        assert!(watch.quiet(0, 100, t0 + BOUND));
        assert_eq!(
            watch.observe(0, 100, 500, false, t0 + BOUND),
            Stall::Stuck {
                first: true,
                stuck_for: BOUND
            }
        );
        assert_eq!(watch.stuck(), 1);
        assert!(matches!(
            watch.observe(0, 100, 600, false, t0 + Duration::from_secs(65)),
            Stall::Stuck { first: false, .. }
        ));
        assert_eq!(
            watch.observe(0, 101, 600, false, t0 + Duration::from_secs(70)),
            Stall::Recovered
        );
        assert_eq!(watch.stuck(), 0);
    }

    #[test]
    fn idle_or_paused_partitions_are_never_stuck() {
        let t0 = Instant::now();
        let mut watch: StallWatch<u32> = StallWatch::new(BOUND);
        let later = t0 + Duration::from_secs(600);
        assert_eq!(watch.observe(1, 100, 100, false, t0), Stall::Fine);
        assert_eq!(watch.observe(1, 100, 100, false, later), Stall::Fine, "nothing to read");
        assert_eq!(watch.observe(2, 5, 900, true, t0), Stall::Fine);
        assert_eq!(watch.observe(2, 5, 900, true, later), Stall::Fine, "paused on purpose");
        assert_eq!(
            watch.observe(2, 5, 900, false, later + Duration::from_secs(1)),
            Stall::Fine,
            "the bound counts from the resume"
        );
        watch.retain(|p| *p != 2);
        assert_eq!(watch.stuck(), 0);
    }

    #[test]
    fn an_unassigned_instance_is_unready_then_rejoins_while_input_waits() {
        let t0 = Instant::now();
        let mut watch = GroupWatch::new(Duration::from_secs(30));
        assert_eq!(watch.observe(40, 0, t0), Unassigned::Fine);
        assert_eq!(watch.observe(40, 0, t0 + Duration::from_secs(29)), Unassigned::Fine);
        assert_eq!(watch.observe(40, 0, t0 + Duration::from_secs(30)), Unassigned::Unready);
        assert_eq!(watch.observe(40, 0, t0 + Duration::from_secs(60)), Unassigned::Rejoin);
        watch.reset();
        assert_eq!(watch.observe(40, 0, t0 + Duration::from_secs(61)), Unassigned::Fine);
    }

    #[test]
    fn an_unassigned_instance_is_fine_while_others_consume_or_nothing_waits() {
        let t0 = Instant::now();
        let mut watch = GroupWatch::new(Duration::from_secs(30));
        let mut committed = 0;
        for s in 0..20 {
            committed += 10;
            let at = t0 + Duration::from_secs(s * 10);
            assert_eq!(
                watch.observe(500, committed, at),
                Unassigned::Fine,
                "others move at {s}"
            );
        }
        let at = t0 + Duration::from_secs(1_000);
        assert_eq!(watch.observe(0, committed, at), Unassigned::Fine);
        assert_eq!(
            watch.observe(0, committed, at + Duration::from_secs(100)),
            Unassigned::Fine
        );
    }
}
