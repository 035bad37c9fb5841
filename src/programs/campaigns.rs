//! Campaigns (a time-limited multiplier or bonus), the birthday bonus and
//! the welcome bonus, as the tenant file says them, and when a campaign is
//! in force: decided from the event's `occurred_at` and branch only, so a
//! replay gives the same answer.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use super::Zone;
use crate::contract::Amount;

/// `[[campaigns]]`: a multiplier of program accruals and/or a fixed bonus
/// per qualifying order, within a date range, days of the week, hours of
/// the day (tenant's time zone) and branches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Campaign id: the program of its bonus entries.
    pub id: Arc<str>,
    /// Public description.
    #[serde(default)]
    pub description: String,
    /// From when it runs (RFC 3339, inclusive); absent: since always.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Until when it runs (RFC 3339, exclusive); absent: for ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Days of the week it runs (`["sat", "sun"]`); empty: every day.
    #[serde(default)]
    pub days: BTreeSet<Day>,
    /// Hours of the day it runs (`"10:00-14:00"`, may cross midnight);
    /// absent: all day.
    #[serde(default)]
    pub hours: Option<Hours>,
    /// Branches it runs in; empty: every branch.
    #[serde(default)]
    pub branches: BTreeSet<String>,
    /// Program ids whose accruals the multiplier multiplies; empty: every
    /// accrual program.
    #[serde(default)]
    pub programs: BTreeSet<String>,
    /// Multiplies the accruals of `programs` (above 1, at most 100).
    #[serde(default)]
    pub multiplier: Option<Amount>,
    /// A fixed credit per qualifying order.
    #[serde(default)]
    pub bonus: Option<FixedBonus>,
    /// The least order total that qualifies.
    #[serde(default)]
    pub min_total: Option<Amount>,
}

/// A fixed credit to one account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedBonus {
    /// The account credited.
    pub account: Arc<str>,
    /// The amount (whole points for a points account).
    pub amount: Amount,
}

/// `[birthday]`: a bonus with the customer's first order or visit in a
/// window around the birthday, once per birthday.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirthdayConfig {
    /// The account credited.
    pub account: Arc<str>,
    /// The amount (whole points for a points account).
    pub amount: Amount,
    /// Days before the birthday the window opens (default 0).
    #[serde(default)]
    pub days_before: u16,
    /// Days after the birthday the window stays open (default 7).
    #[serde(default = "seven")]
    pub days_after: u16,
}

fn seven() -> u16 {
    7
}

/// `[welcome]`: a bonus when a customer registers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WelcomeConfig {
    /// The account credited.
    pub account: Arc<str>,
    /// The amount (whole points for a points account).
    pub amount: Amount,
}

/// A day of the week, as the tenant file writes it (`"mon"` ... `"sun"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl From<jiff::civil::Weekday> for Day {
    fn from(day: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday;
        match day {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

/// Minutes in a day.
const DAY_MINUTES: u16 = 24 * 60;

/// Hours of the day, `"HH:MM-HH:MM"`: from the start (inclusive) to the
/// end (exclusive), in minutes after midnight. An end before the start
/// crosses midnight (`"22:00-02:00"`); `24:00` is an end at midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    start: u16,
    end: u16,
}

const HOURS_FORMAT: &str =
    "write hours as \"HH:MM-HH:MM\" in the tenant's time zone, such as \"10:00-14:00\" or \"22:00-02:00\" \
     (start and end differ; leave hours out for all day)";

impl Hours {
    /// `from`-`to` in minutes after midnight, if `from` is a time of the
    /// day, `to` at most 24:00 and they are not the same time.
    pub fn new(start: u16, end: u16) -> Option<Hours> {
        (start < DAY_MINUTES && end <= DAY_MINUTES && start != end % DAY_MINUTES).then_some(Hours { start, end })
    }

    /// Whether the span crosses midnight.
    pub fn crosses_midnight(self) -> bool {
        self.end < self.start
    }

    /// Whether `minute` (after midnight) is in the span.
    pub fn contains(self, minute: u16) -> bool {
        if self.crosses_midnight() {
            minute >= self.start || minute < self.end
        } else {
            minute >= self.start && minute < self.end
        }
    }

    /// Whether `minute` is in the part after midnight of a span that
    /// crosses it: that part belongs to the day the span started on.
    pub fn after_midnight(self, minute: u16) -> bool {
        self.crosses_midnight() && minute < self.end
    }
}

fn clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && (h < 24 || m == 0)).then(|| h.checked_mul(60)?.checked_add(m))?
}

impl std::str::FromStr for Hours {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split_once('-')
            .and_then(|(a, b)| Hours::new(clock(a.trim())?, clock(b.trim())?))
            .ok_or_else(|| format!("{text:?} is not a span of hours: {HOURS_FORMAT}"))
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl CampaignConfig {
    /// Whether the campaign runs at `at` in `branch`: its date range, then
    /// its days and hours in `zone`. The part after midnight of hours that
    /// cross it counts for the day before (`days = ["fri"]`, `hours =
    /// "22:00-02:00"` runs Friday 22:00 to Saturday 02:00). `None` only
    /// for a time outside the calendar.
    pub fn runs_at(&self, zone: &Zone, at: OffsetDateTime, branch: &str) -> Option<bool> {
        if self.from.is_some_and(|from| at < from)
            || self.until.is_some_and(|until| at >= until)
            || !(self.branches.is_empty() || self.branches.contains(branch))
        {
            return Some(false);
        }
        if self.days.is_empty() && self.hours.is_none() {
            return Some(true);
        }
        let local = zone.local(at)?;
        let minute = u16::try_from(local.hour())
            .ok()?
            .checked_mul(60)?
            .checked_add(u16::try_from(local.minute()).ok()?)?;
        let mut day = local.weekday();
        if let Some(hours) = self.hours {
            if !hours.contains(minute) {
                return Some(false);
            }
            if hours.after_midnight(minute) {
                day = day.previous();
            }
        }
        Some(self.days.is_empty() || self.days.contains(&Day::from(day)))
    }

    /// Whether the multiplier applies to the accruals of `program`.
    pub fn boosts(&self, program: &str) -> bool {
        self.multiplier.is_some() && (self.programs.is_empty() || self.programs.contains(program))
    }
}
