//! A tenant's time zone: campaign hours, earning-limit days and months and
//! expiry at the end of a period are counted in it.

use serde::Deserialize;
use time::OffsetDateTime;

/// An IANA time zone (`Europe/Kyiv`), from the tz database compiled into
/// accrue; `UTC` by default.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            name: "UTC".to_owned(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }
}

impl Zone {
    /// The zone named `name`, if the tz database has it.
    pub fn named(name: &str) -> Option<Zone> {
        jiff::tz::TimeZone::get(name).ok().map(|tz| Zone {
            name: name.to_owned(),
            tz,
        })
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `at` as a wall-clock time in this zone; `None` only for a time
    /// outside jiff's range (the contract bounds event times well inside it).
    pub fn local(&self, at: OffsetDateTime) -> Option<jiff::Zoned> {
        let nanos = at.unix_timestamp_nanos();
        jiff::Timestamp::from_nanosecond(nanos)
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }

    /// `ms` (Unix milliseconds) as a wall-clock time in this zone.
    pub fn local_ms(&self, ms: i64) -> Option<jiff::Zoned> {
        jiff::Timestamp::from_millisecond(ms)
            .ok()
            .map(|ts| ts.to_zoned(self.tz.clone()))
    }

    /// The jiff time zone.
    pub fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Zone::named(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{name:?} is not a time zone of the tz database (write an IANA name such as \"Europe/Kyiv\" or \"UTC\")"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_follows_daylight_saving() {
        let Some(kyiv) = Zone::named("Europe/Kyiv") else {
            panic!("the bundled tz database has Europe/Kyiv");
        };
        // 2026-07-01T09:00Z is noon in summer (UTC+3), 2026-01-15T09:00Z 11:00 in winter (UTC+2).
        let summer = kyiv.local(time::macros::datetime!(2026-07-01 09:00 UTC));
        let winter = kyiv.local(time::macros::datetime!(2026-01-15 09:00 UTC));
        assert_eq!(summer.map(|z| z.hour()), Some(12));
        assert_eq!(winter.map(|z| z.hour()), Some(11));
        assert!(Zone::named("Mars/Olympus").is_none());
        assert_eq!(Zone::default().name(), "UTC");
    }
}
