//! The `totals` family: per-partition day buckets of the ledger, the read
//! API's aggregation index (see `docs/api.md`, "Totals").
//!
//! Key: `p | tenant 0 | day (u32 BE) | entry_type 0 account 0 program 0
//! branch 0 partner 0 unit`; value: [`TotalsValue`]. `partner` is empty for
//! the tenant's own entries and names the home tenant of a partner's
//! customer for a visit under a partnership. The day [`RUNNING_DAY`] holds
//! the running sum of every amount per account: the outstanding balances.

use rust_decimal::Decimal;

/// The day of the running totals (outstanding balances): after every real
/// day, so a range of days never includes it.
pub const RUNNING_DAY: u32 = u32::MAX;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) of Unix milliseconds `ms`;
/// earlier than 1970 counts as day 0.
pub fn day_of_ms(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / DAY_MS).unwrap_or(RUNNING_DAY - 1)
}

/// The dimensions of one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TotalsDims {
    /// Entry type, e.g. `accrual`; empty in running totals.
    pub entry_type: String,
    /// Account, e.g. `cashback`.
    pub account: String,
    /// Program; empty in running totals.
    pub program: String,
    /// Branch of the source event; empty in running totals.
    pub branch: String,
    /// Home tenant of a partner's customer (partner visits); else empty.
    pub partner: String,
    /// `points`, or the currency code of a money account.
    pub unit: String,
}

/// Prefix of every bucket of `tenant` in partition `p`; the day follows.
pub fn totals_prefix(p: u32, tenant: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(6 + tenant.len() + 4);
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key
}

/// The prefix of `tenant`'s buckets of `day` (the first key of that day).
pub fn totals_day(p: u32, tenant: &str, day: u32) -> Vec<u8> {
    let mut key = totals_prefix(p, tenant);
    key.extend_from_slice(&day.to_be_bytes());
    key
}

/// The bucket of `dims` on `day`.
pub fn totals(p: u32, tenant: &str, day: u32, dims: &TotalsDims) -> Vec<u8> {
    let mut key = Vec::new();
    totals_into(&mut key, p, tenant, day, dims_parts(dims));
    key
}

/// Writes the key of the bucket of `parts` (the dimensions in
/// [`TotalsDims`] order) on `day` into `key`, replacing what it held: the
/// pipeline reuses one buffer instead of allocating a key per entry.
pub fn totals_into(key: &mut Vec<u8>, p: u32, tenant: &str, day: u32, parts: [&str; 6]) {
    key.clear();
    key.extend_from_slice(&p.to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(&day.to_be_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
}

fn dims_parts(d: &TotalsDims) -> [&str; 6] {
    [&d.entry_type, &d.account, &d.program, &d.branch, &d.partner, &d.unit]
}

/// The day and dimensions of a bucket key of a tenant whose
/// [`totals_prefix`] is `prefix_len` bytes long.
pub fn parse_totals(key: &[u8], prefix_len: usize) -> Option<(u32, TotalsDims)> {
    let day = u32::from_be_bytes(key.get(prefix_len..prefix_len.checked_add(4)?)?.try_into().ok()?);
    let mut parts = key.get(prefix_len.checked_add(4)?..)?.split(|b| *b == 0);
    let mut text = || parts.next().and_then(|p| String::from_utf8(p.to_vec()).ok());
    let dims = TotalsDims {
        entry_type: text()?,
        account: text()?,
        program: text()?,
        branch: text()?,
        partner: text()?,
        unit: text()?,
    };
    parts.next().is_none().then_some((day, dims))
}

/// A bucket's value: the sum of its amounts and their number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsValue {
    /// Sum of the entries' signed amounts.
    pub sum: Decimal,
    /// Number of entries.
    pub count: u64,
}

impl TotalsValue {
    /// 24 bytes: the decimal (16, `Decimal::serialize`), then the count
    /// (8, big-endian).
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.sum.serialize());
        out[16..].copy_from_slice(&self.count.to_be_bytes());
        out
    }

    /// Decodes [`TotalsValue::encode`]'s output; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<TotalsValue> {
        let sum: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let count: [u8; 8] = bytes.get(16..)?.try_into().ok()?;
        Some(TotalsValue {
            sum: Decimal::deserialize(sum),
            count: u64::from_be_bytes(count),
        })
    }

    /// This value plus `other`, or `None` if the sum overflows.
    pub fn checked_add(&self, other: &TotalsValue) -> Option<TotalsValue> {
        Some(TotalsValue {
            sum: self.sum.checked_add(other.sum)?,
            count: self.count.checked_add(other.count)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dims(t: &str, a: &str, b: &str) -> TotalsDims {
        TotalsDims {
            entry_type: t.into(),
            account: a.into(),
            program: "p".into(),
            branch: b.into(),
            partner: String::new(),
            unit: "AZN".into(),
        }
    }

    #[test]
    fn days_are_utc_days_since_1970() {
        assert_eq!(day_of_ms(0), 0);
        assert_eq!(day_of_ms(-5), 0);
        assert_eq!(day_of_ms(86_399_999), 0);
        assert_eq!(day_of_ms(86_400_000), 1);
        // 2026-11-03T00:00:00Z
        assert_eq!(day_of_ms(1_793_664_000_000), 20_760);
    }

    #[test]
    fn running_totals_sort_after_every_day() {
        let d = dims("", "cashback", "");
        assert!(totals(0, "t", RUNNING_DAY - 1, &d) < totals(0, "t", RUNNING_DAY, &d));
        assert!(totals(0, "t", 5, &d).starts_with(&totals_prefix(0, "t")));
        assert!(!totals(0, "t2", 5, &d).starts_with(&totals_prefix(0, "t")));
    }

    proptest! {
        #[test]
        fn keys_round_trip_and_sort_by_day(day in 0u32..RUNNING_DAY, other in 0u32..RUNNING_DAY,
                                          t in "[a-z_]{0,12}", a in "[a-z@-]{1,12}", b in "[a-z0-9-]{0,12}") {
            let d = dims(&t, &a, &b);
            let n = totals_prefix(3, "cafe").len();
            prop_assert_eq!(parse_totals(&totals(3, "cafe", day, &d), n), Some((day, d.clone())));
            if day < other {
                prop_assert!(totals(3, "cafe", day, &d) < totals_day(3, "cafe", other));
            }
        }

        #[test]
        fn values_round_trip(m in any::<i64>(), scale in 0u32..=10, count in any::<u64>()) {
            let v = TotalsValue { sum: Decimal::new(m, scale), count };
            prop_assert_eq!(TotalsValue::decode(&v.encode()), Some(v));
            prop_assert_eq!(TotalsValue::decode(&[0u8; 23]), None);
        }
    }
}
