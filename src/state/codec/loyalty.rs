//! A customer's loyalty record ([`Loyalty`]) and credits ([`Lots`]) in
//! version 1. There is no version 0: both are newer than the binary state.

use std::sync::Arc;

use super::{CodecError, Reader, StateValue, Writer};
use crate::rules::loyalty::{Bucket, Earned, LimitPeriod, Lot, Lots};
use crate::rules::Loyalty;

const WARNED: u8 = 1;
const EXPIRES: u8 = 2;

impl StateValue for Lots {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(8 + 48 * self.lots.len());
        w.len(self.lots.len());
        for lot in &self.lots {
            w.str(&lot.account);
            w.str(&lot.program);
            w.str(&lot.source);
            w.int(lot.credited_ms);
            let mut flags = 0;
            if lot.warned {
                flags |= WARNED;
            }
            if lot.expires_ms.is_some() {
                flags |= EXPIRES;
            }
            w.byte(flags);
            if let Some(at) = lot.expires_ms {
                w.int(at);
            }
            w.decimal(lot.amount);
            w.decimal(lot.remaining);
        }
        w.finish()
    }

    fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::v1(value)?;
        let n = r.len("lot count")?;
        let mut lots = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let account: Arc<str> = r.str("lot account")?.into();
            let program: Arc<str> = r.str("lot program")?.into();
            let source = r.str("lot source")?;
            let credited_ms = r.int("lot credited")?;
            let flags = r.byte()?;
            if flags & !(WARNED | EXPIRES) != 0 {
                return Err(CodecError::Invalid("lot flags"));
            }
            let expires_ms = if flags & EXPIRES != 0 {
                Some(r.int("lot expiry")?)
            } else {
                None
            };
            lots.push(Lot {
                account,
                program,
                source,
                credited_ms,
                expires_ms,
                warned: flags & WARNED != 0,
                amount: r.decimal("lot amount")?,
                remaining: r.decimal("lot remaining")?,
            });
        }
        r.end()?;
        Ok(Lots { lots })
    }
}

impl StateValue for Loyalty {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(16 + 16 * self.window.len() + 24 * self.earned.len());
        w.len(self.window.len());
        for bucket in &self.window {
            w.int(bucket.day_ms);
            w.decimal(bucket.spend);
            w.uint(u128::from(bucket.visits));
        }
        w.len(self.earned.len());
        for earned in &self.earned {
            w.str(&earned.program);
            w.byte(match earned.period {
                LimitPeriod::Day => 0,
                LimitPeriod::Month => 1,
            });
            w.int(earned.start_ms);
            w.decimal(earned.amount);
        }
        w.opt_str(self.tier.as_deref());
        w.byte(u8::from(self.review_ms.is_some()));
        if let Some(at) = self.review_ms {
            w.int(at);
        }
        w.finish()
    }

    fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::v1(value)?;
        let n = r.len("window length")?;
        let mut window = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            window.push(Bucket {
                day_ms: r.int("window day")?,
                spend: r.decimal("window spend")?,
                visits: r.u32("window visits")?,
            });
        }
        let n = r.len("earned count")?;
        let mut earned = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let program: Arc<str> = r.str("earned program")?.into();
            let period = match r.byte()? {
                0 => LimitPeriod::Day,
                1 => LimitPeriod::Month,
                _ => return Err(CodecError::Invalid("limit period")),
            };
            earned.push(Earned {
                program,
                period,
                start_ms: r.int("earned period start")?,
                amount: r.decimal("earned amount")?,
            });
        }
        let tier = r.opt_str("tier")?.map(Arc::from);
        let review_ms = if r.flag("review timer")? {
            Some(r.int("review due")?)
        } else {
            None
        };
        r.end()?;
        Ok(Loyalty {
            window,
            earned,
            tier,
            review_ms,
        })
    }
}
