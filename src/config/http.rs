//! `[http]`: the HTTP port's address and the limits that keep one client
//! (or thousands of idle ones) from holding it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::Issues;

/// `[http]`: metrics, health and the read API, and their limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of `/metrics`, health and the read API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Longest a client may take to send a request's headers, counted from
    /// the connection's start or the end of its previous response; the
    /// body must then arrive within the same time.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long, and no
    /// request being answered, is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once; beyond it new ones are closed at once
    /// (with a 503) and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body accepted, in bytes; a larger one is a 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The URL other instances send a till request to when this instance
    /// owns the customer's partition (`http://host:port`). Default:
    /// `http://` + `listen`, which only works when `listen` is an address
    /// others can reach.
    #[serde(default)]
    pub advertised_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
            advertised_url: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_connections() -> usize {
    512
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}

/// Bounds of the limits: below the minimum a slow but honest client (or a
/// scrape) fails; above the maximum the limit protects nothing.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 100_000;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

impl HttpConfig {
    /// Where other instances reach this one: `advertised_url`, or
    /// `http://` + `listen`.
    /// `ACCRUE_ADVERTISED_URL` in the environment wins, so instances that
    /// share one config file (a StatefulSet) each say their own address.
    pub fn advertised(&self) -> String {
        if let Ok(url) = std::env::var("ACCRUE_ADVERTISED_URL") {
            if !url.trim().is_empty() {
                return url.trim().trim_end_matches('/').to_owned();
            }
        }
        match &self.advertised_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Checks the limits, pushing one issue per bad field.
    pub(super) fn validate(&self, issues: &mut Issues<'_>) {
        for (field, value) in [
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.idle_timeout", self.idle_timeout),
        ] {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&value) {
                issues.push(
                    field,
                    format!(
                        "must be between 100ms and 1h (for example \"10s\"), got {}",
                        humantime_serde::re::humantime::format_duration(value)
                    ),
                );
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            issues.push(
                "http.max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS}, got {}", self.max_connections),
            );
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_BYTES {
            issues.push(
                "http.max_body_bytes",
                format!(
                    "must be between 1 and {MAX_BODY_BYTES} (16 MiB), got {}",
                    self.max_body_bytes
                ),
            );
        }
        if let Some(url) = &self.advertised_url {
            let rest = url.strip_prefix("http://").unwrap_or_default();
            if rest.is_empty() || rest.contains(char::is_whitespace) || rest.len() > 200 {
                issues.push(
                    "http.advertised_url",
                    format!("must be http://host:port, as other instances reach this one, got {url:?}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<HttpConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn problems(config: &HttpConfig) -> Vec<String> {
        let mut issues = Issues::new(Path::new("accrue.toml"));
        config.validate(&mut issues);
        issues.into_vec().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_the_documented_safe_ones() {
        let Ok(config) = parse("") else {
            panic!("an empty [http] is valid")
        };
        assert_eq!(config, HttpConfig::default());
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9464)));
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 512);
        assert_eq!(config.max_body_bytes, 65_536);
        assert!(problems(&config).is_empty());
    }

    #[test]
    fn durations_are_human_readable() {
        let parsed = parse(
            "header_read_timeout = \"2s\"\nidle_timeout = \"1m 30s\"\nmax_connections = 10\nmax_body_bytes = 1024\n",
        );
        let Ok(config) = parsed else { panic!("{parsed:?}") };
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.max_body_bytes, 1024);
        assert!(parse("idle_timeout = 60").is_err(), "a bare number has no unit");
        assert!(parse("idle_timout = \"60s\"").is_err(), "unknown keys are refused");
    }

    #[test]
    fn out_of_range_limits_are_named() {
        let bad = HttpConfig {
            header_read_timeout: Duration::from_millis(10),
            idle_timeout: Duration::from_secs(2 * 3600),
            max_connections: 0,
            max_body_bytes: 0,
            ..HttpConfig::default()
        };
        let found = problems(&bad);
        for field in [
            "http.header_read_timeout: must be between 100ms and 1h",
            "http.idle_timeout: must be between 100ms and 1h",
            "http.max_connections: must be between 1 and 100000, got 0",
            "http.max_body_bytes: must be between 1 and 16777216",
        ] {
            assert!(found.iter().any(|i| i.contains(field)), "{field}: {found:?}");
        }
        assert_eq!(found.len(), 4, "{found:?}");
        let too_many = HttpConfig {
            max_connections: 100_001,
            max_body_bytes: 16 * 1024 * 1024 + 1,
            ..HttpConfig::default()
        };
        assert_eq!(problems(&too_many).len(), 2);
    }
}
