//! Typed configuration: the processor file and one file per tenant, loaded
//! from TOML, validated at start-up, and turned into librdkafka settings in
//! exactly one place ([`KafkaConfig::client_config`]).
//!
//! Every error names the file and the field, so `accrue check-config` can
//! point an operator straight at the line to fix.
//!
//! The tenant files' contents (programs, policies, customers) are the pure
//! types of [`crate::programs`]; this module only loads and validates them.

mod campaigns;
mod earning;
mod http;
mod kafka;
mod pipeline;
mod processor;
mod tenant;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use http::HttpConfig;
pub use kafka::{ClientRole, KafkaConfig, ProducerBatch, MIN_MESSAGE_MAX_BYTES};
pub use pipeline::PipelineConfig;
pub use processor::{BatchConfig, HealthConfig, MetricsConfig, StateConfig, TopicsConfig};
pub use tenant::pending_partnerships;

/// Re-exports of the tenant types that moved to [`crate::programs`], so
/// code written against `crate::config` keeps compiling. New code imports
/// them from [`crate::programs`].
pub use crate::programs::{
    deposit_at, partnership, BookingsConfig, BranchConfig, CustomerProfile, GiftCardConfig, GroupRule, NegativeBalance,
    PartnerConditions, PartnerConfig, ProgramConfig, ProgramStatus, ProgramType, RedemptionConfig, ReferralConfig,
    ReferralReward, RefundConfig, SalePair, SalesConfig, TenantConfig, BUILTIN_ACCOUNTS, DEPOSIT_AT,
};

/// One configuration problem, located by file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file the problem is in.
    pub file: PathBuf,
    /// The dotted field path, empty when the whole file is at fault.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

/// Configuration could not be loaded; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        writeln!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

/// Collects issues for one file while validating it.
pub(crate) struct Issues<'a> {
    file: &'a Path,
    found: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(crate) fn new(file: &'a Path) -> Self {
        Issues {
            file,
            found: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.found.push(ConfigIssue {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_vec(self) -> Vec<ConfigIssue> {
        self.found
    }
}

/// The whole configuration: processor settings and every tenant.
#[derive(Debug, Clone)]
pub struct Config {
    /// The processor file this was loaded from.
    pub path: PathBuf,
    /// Kafka connection and librdkafka overrides.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Where state lives.
    pub state: StateConfig,
    /// Batching of commits.
    pub batch: BatchConfig,
    /// The worker threads that apply partitions.
    pub pipeline: PipelineConfig,
    /// The HTTP port.
    pub http: HttpConfig,
    /// Optional metric labels.
    pub metrics: MetricsConfig,
    /// When the process stops counting as ready, and when it rejoins.
    pub health: HealthConfig,
    /// Tenants by id.
    pub tenants: HashMap<String, TenantConfig>,
}

impl Config {
    /// Loads and validates the processor file at `path` and the tenant files
    /// it points to.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem found, each with file and field.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            issues: vec![ConfigIssue {
                file: path.to_path_buf(),
                field: String::new(),
                message: format!("cannot read the file: {err}"),
            }],
        })?;
        let file: processor::ProcessorFile =
            parse_toml(path, &text).map_err(|issue| ConfigError { issues: vec![issue] })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut issues = Issues::new(path);
        processor::validate_processor(&file, &mut issues);
        let mut all = issues.into_vec();

        let tenants_dir = base.join(&file.tenants.dir);
        let tenants = tenant::load_dir(path, &tenants_dir, &mut all);
        if !all.is_empty() {
            return Err(ConfigError { issues: all });
        }
        let state_dir = if file.state.dir.is_absolute() {
            file.state.dir.clone()
        } else {
            base.join(&file.state.dir)
        };
        Ok(Config {
            path: path.to_path_buf(),
            kafka: file.kafka,
            topics: file.topics,
            state: StateConfig {
                dir: state_dir,
                changelog: file.state.changelog,
                dedupe_retention: file.state.dedupe_retention,
            },
            batch: file.batch,
            pipeline: file.pipeline,
            http: file.http,
            metrics: file.metrics,
            health: file.health,
            tenants,
        })
    }
}

/// Parses TOML into `T`, reporting the failing field's dotted path.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigIssue> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_owned();
        let location = inner
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigIssue {
            file: path.to_path_buf(),
            field: if field == "." { String::new() } else { field },
            message: format!("{message}{location}"),
        }
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod limits_tests;

#[cfg(test)]
mod campaigns_tests;
#[cfg(test)]
mod earning_tests;
