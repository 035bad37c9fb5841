//! `[pipeline]`: how many worker threads apply the owned partitions.

use serde::Deserialize;

use super::Issues;

/// `[pipeline]`: the processor's apply threads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Worker threads applying owned partitions, each partition's events in
    /// order on one worker; default the number of cores (at most
    /// [`PipelineConfig::MAX_WORKERS`]).
    #[serde(default = "default_workers")]
    pub workers: usize,
}

impl PipelineConfig {
    /// The most workers accepted: more threads than this only contend for
    /// the same RocksDB write queue.
    pub const MAX_WORKERS: usize = 64;

    /// Checks the section, pushing one issue per bad field.
    pub(super) fn validate(&self, issues: &mut Issues<'_>) {
        if self.workers == 0 || self.workers > Self::MAX_WORKERS {
            issues.push(
                "pipeline.workers",
                format!(
                    "must be between 1 and {}, got {}; set the number of threads to apply partitions on \
                     (this machine has {} cores), or remove it for that default",
                    Self::MAX_WORKERS,
                    self.workers,
                    cores()
                ),
            );
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: default_workers(),
        }
    }
}

/// The cores this process may use (its CPU quota or affinity included), or 1
/// if that cannot be told.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn default_workers() -> usize {
    cores().min(PipelineConfig::MAX_WORKERS)
}
