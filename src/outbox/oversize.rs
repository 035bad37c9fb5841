//! Records too large to publish, and records the broker refuses for good:
//! how each is cut down or stood in for, so that no record is retried
//! forever and no partition's outbox stops draining.
//!
//! Pure: sizes and decisions only; the publisher does the I/O.
//!
//! - A dead letter carries a truncated copy of its value (and, if needed,
//!   of its key and reason), the original size and a truncation flag.
//! - Any other output (an accrual, a rejection, a command, a directory
//!   entry) cannot be cut without changing what it says: it is replaced by
//!   an `output_too_large` dead letter with the same `accrue-id`, the topic
//!   it was meant for and a truncated copy. The state change it reports is
//!   applied and stays in the ledger.
//! - A changelog record is dropped (logged and counted): a restore then
//!   lacks that one value. Its commit marker is never dropped.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::record::{Destination, OutboxRecord};
use crate::changelog::{self, LogRecord};
use crate::contract::{self, ErrorKind};

/// Bytes kept free below `message.max.bytes` when a record is cut to fit:
/// room for the framing a size estimate can miss, and for the changelog's
/// copy of the outbox record (its encoding, key and tag header), which
/// must fit the same limit.
pub(super) const SIZE_MARGIN: u64 = 1_024;

/// Longest header value (the reason) kept in a truncated dead letter.
const HEADER_VALUE_MAX: usize = 512;
/// Longest key kept in a truncated dead letter.
const KEY_MAX: usize = 512;
/// librdkafka's largest per-record overhead (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`).
const RECORD_OVERHEAD: u64 = 36;
/// The longest `accrue-id` value, `u32::MAX-u64::MAX`.
const ID_MAX: u64 = 31;

/// The size librdkafka checks against `message.max.bytes` for an outbox
/// record, with the `accrue-id` header the publisher adds.
pub(super) fn wire_size(record: &OutboxRecord) -> u64 {
    let headers: u64 = record
        .headers
        .iter()
        .map(|(name, value)| header_size(name.len(), value.len()))
        .sum();
    RECORD_OVERHEAD
        + record.key.as_ref().map_or(0, |k| k.len() as u64)
        + record.payload.len() as u64
        + headers
        + header_size(contract::HEADER_ID.len(), ID_MAX as usize)
}

/// The same for one changelog record, with its tag header.
pub(super) fn change_size(rec: &LogRecord) -> u64 {
    RECORD_OVERHEAD
        + rec.key.len() as u64
        + rec.value.as_ref().map_or(0, |v| v.len() as u64)
        + header_size(changelog::HEADER_TAG.len(), 24)
}

/// A header as librdkafka counts it: two varint lengths (at most 5 bytes
/// each) and the bytes.
fn header_size(name: usize, value: usize) -> u64 {
    10 + name as u64 + value as u64
}

/// Whether a produce error refuses this record for good, whatever the
/// number of retries: it is too large, or the broker finds it invalid.
/// Everything else (timeouts, leader changes, a full queue, authorization)
/// is about the connection or the topic and is retried.
pub(super) fn permanent(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
        )
    )
}

/// A dead letter that fits `limit` (`message.max.bytes`): `record` as it
/// is when it fits, else a truncated copy (see [`truncate`]).
pub fn fit_dead_letter(record: OutboxRecord, limit: u64) -> OutboxRecord {
    let budget = limit.saturating_sub(SIZE_MARGIN);
    if wire_size(&record) <= budget {
        record
    } else {
        truncate(&record, budget)
    }
}

/// What the publisher sends in place of an outbox record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Prepared {
    /// The record fits: send it as it is.
    Fits,
    /// Send this smaller record instead (and store it in place of the
    /// original, so a recovery sees what was sent).
    Replace(OutboxRecord),
    /// Nothing smaller can stand in for it: drop it.
    Drop,
}

/// Checks an outbox record against `limit` before it is sent; `topic` is
/// the topic it is meant for.
pub(super) fn prepare(record: &OutboxRecord, limit: u64, topic: &str) -> Prepared {
    if wire_size(record) <= limit {
        return Prepared::Fits;
    }
    match stand_in(record, limit.saturating_sub(SIZE_MARGIN), topic) {
        Some(smaller) => Prepared::Replace(smaller),
        None => Prepared::Drop,
    }
}

/// What the publisher does after the producer or the broker refused a
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// A transient error: send the record again (after recovery).
    Retry,
    /// A permanent refusal of a request that held other records too: the
    /// culprit is unknown, so halve the produce batch and send again, until
    /// the refused record goes alone.
    Shrink,
    /// Replace the record by this smaller one and send that.
    Replace(OutboxRecord),
    /// Drop the record (logged and counted): nothing smaller can stand in.
    Drop,
}

/// The decision for a refused record: `record` is the outbox record
/// (`None` for a changelog record, whose `size` is given), `alone` whether
/// it was the only record of its request, `limit` the producer's
/// `message.max.bytes`, `topic` where it was going.
///
/// Each replacement is smaller than what was refused (at most half its
/// size, or less than `limit`), so a record is refused only a bounded
/// number of times before it is published or dropped.
pub(super) fn decide(
    err: &KafkaError,
    alone: bool,
    record: Option<&OutboxRecord>,
    size: u64,
    limit: u64,
    topic: &str,
) -> Action {
    if !permanent(err) {
        return Action::Retry;
    }
    if !alone {
        return Action::Shrink;
    }
    let Some(record) = record else {
        return Action::Drop;
    };
    let budget = (size / 2).min(limit.saturating_sub(SIZE_MARGIN));
    match stand_in(record, budget, topic) {
        Some(smaller) => Action::Replace(smaller),
        None => Action::Drop,
    }
}

/// A record no larger than `budget` (when the fixed part allows) that
/// stands in for `record`, strictly smaller than it; `None` if nothing
/// smaller can stand in (it is already cut to its headers, or it is a
/// changelog batch, which is never replaced).
pub(super) fn stand_in(record: &OutboxRecord, budget: u64, topic: &str) -> Option<OutboxRecord> {
    let candidate = match record.destination {
        Destination::DeadLetter => truncate(record, budget),
        Destination::Changelog => return None,
        Destination::Accruals | Destination::Internal | Destination::Directory => {
            let size = wire_size(record);
            let letter = OutboxRecord {
                destination: Destination::DeadLetter,
                partition: None,
                key: record.key.clone(),
                headers: vec![
                    (
                        contract::HEADER_ERROR_KIND.into(),
                        ErrorKind::OutputTooLarge.as_str().as_bytes().to_vec(),
                    ),
                    (
                        contract::HEADER_ERROR_REASON.into(),
                        format!(
                            "the record for {topic} is {size} bytes, more than the producer or the broker accepts; \
                             its state change is applied (see `accrue ledger` or the read API), only its \
                             publication is replaced by this record"
                        )
                        .into_bytes(),
                    ),
                    (contract::HEADER_OUTPUT_TOPIC.into(), topic.as_bytes().to_vec()),
                ],
                payload: record.payload.clone(),
            };
            truncate(&letter, budget)
        }
    };
    (wire_size(&candidate) < wire_size(record)).then_some(candidate)
}

/// A dead letter cut to fit `budget`: long header values and key cut,
/// `accrue-original-size` and `accrue-truncated` added (kept from an
/// earlier cut), and as much of the value as fits.
fn truncate(record: &OutboxRecord, budget: u64) -> OutboxRecord {
    let original_size = record
        .headers
        .iter()
        .find(|(name, _)| name == contract::HEADER_ORIGINAL_SIZE)
        .map_or_else(|| record.payload.len().to_string().into_bytes(), |(_, v)| v.clone());
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(name, _)| name != contract::HEADER_ORIGINAL_SIZE && name != contract::HEADER_TRUNCATED)
        .map(|(name, value)| (name.clone(), cut(value, HEADER_VALUE_MAX)))
        .collect();
    headers.push((contract::HEADER_ORIGINAL_SIZE.into(), original_size));
    headers.push((contract::HEADER_TRUNCATED.into(), b"true".to_vec()));
    let mut out = OutboxRecord {
        destination: Destination::DeadLetter,
        partition: None,
        key: record.key.as_ref().map(|k| cut(k, KEY_MAX)),
        headers,
        payload: Vec::new(),
    };
    let room = usize::try_from(budget.saturating_sub(wire_size(&out))).unwrap_or(usize::MAX);
    out.payload = cut(&record.payload, room);
    out
}

/// The first `max` bytes of `bytes`; a text value is cut on a character
/// boundary, so a truncated JSON excerpt stays readable UTF-8.
fn cut(bytes: &[u8], max: usize) -> Vec<u8> {
    if bytes.len() <= max {
        return bytes.to_vec();
    }
    let mut end = max;
    if std::str::from_utf8(bytes).is_ok() {
        while end > 0 && bytes.get(end).is_some_and(|b| (*b & 0xC0) == 0x80) {
            end -= 1;
        }
    }
    bytes.get(..end).unwrap_or_default().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(payload_len: usize) -> OutboxRecord {
        OutboxRecord {
            destination: Destination::DeadLetter,
            partition: None,
            key: Some(b"cafe-central:c-1".to_vec()),
            headers: vec![
                (contract::HEADER_ERROR_KIND.into(), b"malformed_json".to_vec()),
                (contract::HEADER_ERROR_REASON.into(), b"not valid JSON".to_vec()),
                (contract::HEADER_SOURCE_TOPIC.into(), b"orders".to_vec()),
                (contract::HEADER_SOURCE_PARTITION.into(), b"3".to_vec()),
                (contract::HEADER_SOURCE_OFFSET.into(), b"18232".to_vec()),
            ],
            payload: "é".repeat(payload_len / 2).into_bytes(),
        }
    }

    fn accrual(payload_len: usize) -> OutboxRecord {
        OutboxRecord {
            destination: Destination::Accruals,
            partition: None,
            key: Some(b"cafe-central:c-1".to_vec()),
            headers: Vec::new(),
            payload: vec![b'a'; payload_len],
        }
    }

    fn header<'a>(record: &'a OutboxRecord, name: &str) -> Option<&'a str> {
        record
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn size_error() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    }

    #[test]
    fn a_dead_letter_that_fits_is_unchanged() {
        let record = dead_letter(1_000);
        assert_eq!(fit_dead_letter(record.clone(), 65_536), record);
    }

    #[test]
    fn an_oversized_dead_letter_is_cut_with_its_original_size_and_coordinates() {
        let record = dead_letter(200_000);
        let fitted = fit_dead_letter(record.clone(), 65_536);
        assert!(wire_size(&fitted) <= 65_536 - SIZE_MARGIN, "{}", wire_size(&fitted));
        assert!(fitted.payload.len() > 60_000, "keeps as much as fits");
        assert!(record.payload.starts_with(&fitted.payload));
        assert!(
            std::str::from_utf8(&fitted.payload).is_ok(),
            "cut on a character boundary"
        );
        assert_eq!(header(&fitted, contract::HEADER_ORIGINAL_SIZE), Some("200000"));
        assert_eq!(header(&fitted, contract::HEADER_TRUNCATED), Some("true"));
        assert_eq!(header(&fitted, contract::HEADER_SOURCE_OFFSET), Some("18232"));
        assert_eq!(header(&fitted, contract::HEADER_ERROR_KIND), Some("malformed_json"));
        assert_eq!(fitted.key, record.key);
    }

    #[test]
    fn a_huge_key_and_reason_are_cut_too() {
        let mut record = dead_letter(10);
        record.key = Some(vec![b'k'; 100_000]);
        record.headers[1].1 = vec![b'r'; 100_000];
        let fitted = fit_dead_letter(record, 16_384);
        assert!(wire_size(&fitted) <= 16_384 - SIZE_MARGIN);
        assert_eq!(fitted.key.as_ref().map(Vec::len), Some(KEY_MAX));
        assert_eq!(header(&fitted, contract::HEADER_ORIGINAL_SIZE), Some("10"));
    }

    #[test]
    fn an_oversized_accrual_becomes_an_output_too_large_dead_letter() {
        let record = accrual(100_000);
        let Prepared::Replace(letter) = prepare(&record, 65_536, "accrue.accruals") else {
            panic!("an oversized accrual must be replaced")
        };
        assert_eq!(letter.destination, Destination::DeadLetter);
        assert_eq!(header(&letter, contract::HEADER_ERROR_KIND), Some("output_too_large"));
        assert_eq!(header(&letter, contract::HEADER_OUTPUT_TOPIC), Some("accrue.accruals"));
        assert_eq!(header(&letter, contract::HEADER_ORIGINAL_SIZE), Some("100000"));
        assert!(wire_size(&letter) <= 65_536 - SIZE_MARGIN);
        assert_eq!(prepare(&accrual(1_000), 65_536, "accrue.accruals"), Prepared::Fits);
    }

    #[test]
    fn commands_and_directory_entries_are_replaced_at_the_source_partition() {
        let mut record = accrual(100_000);
        record.destination = Destination::Internal;
        record.partition = Some(7);
        let Prepared::Replace(letter) = prepare(&record, 65_536, "accrue.internal") else {
            panic!("an oversized command must be replaced")
        };
        assert_eq!(letter.destination, Destination::DeadLetter);
        assert_eq!(letter.partition, None);
    }

    #[test]
    fn transient_errors_are_retried_and_shared_refusals_shrink_the_batch() {
        let record = dead_letter(10);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(decide(&timeout, true, Some(&record), 500, 65_536, "dlq"), Action::Retry);
        let auth = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(decide(&auth, true, Some(&record), 500, 65_536, "dlq"), Action::Retry);
        assert_eq!(
            decide(&size_error(), false, Some(&record), 500, 65_536, "dlq"),
            Action::Shrink
        );
    }

    #[test]
    fn a_refused_record_is_cut_until_it_passes_or_is_dropped() {
        // The broker accepts less than the producer: each refusal halves
        // the record, and the chain ends in a bounded number of steps.
        let mut record = dead_letter(60_000);
        let mut steps = 0;
        loop {
            let size = wire_size(&record);
            match decide(&size_error(), true, Some(&record), size, 65_536, "dlq") {
                Action::Replace(smaller) => {
                    assert!(wire_size(&smaller) < size, "a replacement is smaller");
                    assert!(wire_size(&smaller) <= size / 2 || smaller.payload.is_empty());
                    record = smaller;
                }
                Action::Drop => break,
                other => panic!("unexpected {other:?}"),
            }
            steps += 1;
            assert!(steps < 40, "never ends");
        }
        assert!(record.payload.is_empty(), "dropped only once cut to its headers");
        assert_eq!(header(&record, contract::HEADER_ORIGINAL_SIZE), Some("60000"));
    }

    #[test]
    fn a_refused_changelog_record_is_dropped_and_never_replaced() {
        assert_eq!(decide(&size_error(), true, None, 90_000, 65_536, "log"), Action::Drop);
        let record = OutboxRecord {
            destination: Destination::Changelog,
            partition: None,
            key: None,
            headers: Vec::new(),
            payload: vec![0; 100_000],
        };
        assert_eq!(prepare(&record, 65_536, "log"), Prepared::Drop);
    }

    #[test]
    fn sizes_follow_librdkafka() {
        let record = accrual(100);
        // key 16 + value 100 + id header (10 + 9 + 31) + overhead 36.
        assert_eq!(wire_size(&record), 16 + 100 + 50 + 36);
        let change = LogRecord {
            key: vec![0; 13],
            value: Some(vec![0; 100]),
        };
        assert_eq!(change_size(&change), 13 + 100 + (10 + 16 + 24) + 36);
    }
}
