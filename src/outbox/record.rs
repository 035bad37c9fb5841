//! The outbox record and its compact binary encoding, and the reference
//! that stands for an accrual stored once, as its ledger entry.

/// Which output topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// The accruals topic.
    Accruals,
    /// The dead-letter topic.
    DeadLetter,
    /// The internal commands topic, partition of the target customer.
    Internal,
    /// The compacted customer-directory topic, partition of the customer.
    Directory,
    /// The state changelog, source partition. The payload is one batch's
    /// changes ([`crate::changelog::ChangeBatch`]), which the publisher
    /// expands into one record per key and a commit marker.
    Changelog,
}

impl Destination {
    /// Every destination.
    pub const ALL: [Destination; 5] = [
        Destination::Accruals,
        Destination::DeadLetter,
        Destination::Internal,
        Destination::Directory,
        Destination::Changelog,
    ];

    /// Destinations written to the source partition, whose tail tells what
    /// was published (recovery). The others go to the target's partition and
    /// are idempotent at the reader: a re-send after a crash is harmless.
    pub const TAILED: [Destination; 2] = [Destination::Accruals, Destination::DeadLetter];

    /// The destination's name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Accruals => "accruals",
            Destination::DeadLetter => "dead_letter",
            Destination::Internal => "internal",
            Destination::Directory => "directory",
            Destination::Changelog => "changelog",
        }
    }

    /// Whether records go to an explicit partition of the target.
    pub fn routed(self) -> bool {
        matches!(self, Destination::Internal | Destination::Directory)
    }

    fn tag(self) -> u8 {
        match self {
            Destination::Accruals => 0,
            Destination::DeadLetter => 1,
            Destination::Internal => 2,
            Destination::Directory => 3,
            Destination::Changelog => 4,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Destination::Accruals),
            1 => Some(Destination::DeadLetter),
            2 => Some(Destination::Internal),
            3 => Some(Destination::Directory),
            4 => Some(Destination::Changelog),
            _ => None,
        }
    }
}

/// One record waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The topic it goes to; the partition is always the source partition.
    pub destination: Destination,
    /// For [`Destination::routed`] destinations: the target partition
    /// (encoded only for them; others go to the source partition).
    pub partition: Option<u32>,
    /// The Kafka key.
    pub key: Option<Vec<u8>>,
    /// Extra headers (the id header is added at publish time).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value.
    pub payload: Vec<u8>,
}

const VERSION: u8 = 1;

impl OutboxRecord {
    /// Encodes: version, destination, key, headers, then the payload.
    pub fn encode(&self) -> Vec<u8> {
        let key_len = self.key.as_ref().map_or(0, Vec::len);
        let headers_len: usize = self.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(16 + key_len + headers_len + self.payload.len());
        out.push(VERSION);
        out.push(self.destination.tag());
        if self.destination.routed() {
            out.extend_from_slice(&self.partition.unwrap_or(0).to_be_bytes());
        }
        match &self.key {
            Some(key) => {
                out.push(1);
                put_bytes(&mut out, key);
            }
            None => out.push(0),
        }
        put_len(&mut out, self.headers.len());
        for (name, value) in &self.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes what [`encode`](Self::encode) wrote; `None` if corrupt.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != VERSION {
            return None;
        }
        let destination = Destination::from_tag(r.byte()?)?;
        let partition = if destination.routed() {
            Some(u32::try_from(r.len()?).ok()?)
        } else {
            None
        };
        let key = match r.byte()? {
            0 => None,
            1 => Some(r.bytes()?.to_vec()),
            _ => return None,
        };
        let n = r.len()?;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = String::from_utf8(r.bytes()?.to_vec()).ok()?;
            headers.push((name, r.bytes()?.to_vec()));
        }
        let payload = bytes.get(r.pos..)?.to_vec();
        Some(OutboxRecord {
            destination,
            partition,
            key,
            headers,
            payload,
        })
    }
}

/// The outbox value of an accrual: the accruals-topic record whose event is
/// the ledger entry of the same partition and sequence. The event is stored
/// once, in the ledger; the publisher renders its JSON at send time
/// ([`super::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccrualRef {
    /// Tenant of the customer.
    pub tenant: String,
    /// The customer: with the tenant, the Kafka key and the ledger key.
    pub customer: String,
}

/// First byte of an [`AccrualRef`]: a version of its own, after
/// [`OutboxRecord`]'s.
const REF_VERSION: u8 = 2;

impl AccrualRef {
    /// Encodes: version, the tenant's length (`u16`), tenant, customer.
    pub fn encode(tenant: &str, customer: &str) -> Vec<u8> {
        // Tenant ids are short (config); a longer one is cut, and its
        // reference then finds no entry, which the publisher reports.
        let len = u16::try_from(tenant.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(3 + tenant.len() + customer.len());
        out.push(REF_VERSION);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(tenant.as_bytes().get(..usize::from(len)).unwrap_or_default());
        out.extend_from_slice(customer.as_bytes());
        out
    }

    /// Decodes what [`encode`](Self::encode) wrote; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if *bytes.first()? != REF_VERSION {
            return None;
        }
        let len = usize::from(u16::from_be_bytes(bytes.get(1..3)?.try_into().ok()?));
        let tenant = bytes.get(3..3usize.checked_add(len)?)?;
        let customer = bytes.get(3 + len..)?;
        Some(AccrualRef {
            tenant: String::from_utf8(tenant.to_vec()).ok()?,
            customer: String::from_utf8(customer.to_vec()).ok()?,
        })
    }
}

/// What an outbox value holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A record to publish as it is.
    Record(OutboxRecord),
    /// An accrual to render from the ledger.
    Accrual(AccrualRef),
}

impl Stored {
    /// Decodes an outbox value of any version; `None` if corrupt.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes.first()? {
            &REF_VERSION => AccrualRef::decode(bytes).map(Stored::Accrual),
            _ => OutboxRecord::decode(bytes).map(Stored::Record),
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn len(&mut self) -> Option<usize> {
        let raw = self.bytes.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes(raw.try_into().ok()?) as usize)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(
            tag in 0u8..5,
            target in any::<u32>(),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            headers in proptest::collection::vec(("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let destination = Destination::ALL[usize::from(tag)];
            let record = OutboxRecord {
                destination,
                partition: destination.routed().then_some(target),
                key,
                headers,
                payload,
            };
            prop_assert_eq!(Stored::decode(&record.encode()), Some(Stored::Record(record.clone())));
            prop_assert_eq!(OutboxRecord::decode(&record.encode()), Some(record));
        }

        #[test]
        fn accrual_refs_round_trip(tenant in "[a-z-]{1,40}", customer in "[a-z0-9:-]{0,40}") {
            let bytes = AccrualRef::encode(&tenant, &customer);
            let want = AccrualRef { tenant: tenant.clone(), customer: customer.clone() };
            prop_assert_eq!(Stored::decode(&bytes), Some(Stored::Accrual(want)));
            prop_assert_eq!(OutboxRecord::decode(&bytes), None);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OutboxRecord::decode(&bytes);
            let _ = Stored::decode(&bytes);
        }
    }
}
