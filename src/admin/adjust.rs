//! The manual adjustment: the form's fields become a `balance.adjust` event
//! (docs/events.md §8), produced to the first input topic keyed
//! `tenant:customer` as a POS keys its events; the status page then waits,
//! bounded, for the processor's answer.
//!
//! How the answer is found: the event's dedupe record says it was applied
//! and which output sequence it wrote first. The ledger entry at that
//! sequence is the adjustment if it was accepted; otherwise the output was
//! an `adjustment.rejected`, whose reason is read back from the accruals
//! topic (partition = input partition, id `partition-sequence`).

use std::fmt::Write;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rust_decimal::Decimal;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::html::{esc, query, url};
use super::{customer, AdminError, Ctx};
use crate::api;
use crate::config::{ClientRole, Config};
use crate::contract::AccrualEvent;
use crate::state::codec::decode_ledger;
use crate::state::{keys, Family, Snapshot, StateError};

/// How long the status page keeps waiting before it says so.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long one status request waits for the answer before it refreshes.
const WAIT_PER_REQUEST: Duration = Duration::from_secs(3);

/// Largest amount accepted, as the contract's limit (docs/events.md).
const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Produces adjustments and reads rejections back.
pub(crate) struct Commands {
    producer: FutureProducer,
    input: String,
    accruals: String,
    reader: ClientConfig,
}

impl Commands {
    /// A producer with `config`'s Kafka settings (the publisher's role).
    pub(crate) fn new(config: &Config) -> Result<Commands, AdminError> {
        let input = config.topics.input.first().cloned().ok_or(AdminError::NoInputTopic)?;
        Ok(Commands {
            producer: config.kafka.client_config(ClientRole::Producer).create()?,
            input,
            accruals: config.topics.accruals.clone(),
            reader: config.kafka.client_config(ClientRole::TailReader),
        })
    }
}

/// A signed amount as the contract writes one (`-?[0-9]+(\.[0-9]+)?`),
/// not zero and at most 10^12 in absolute value.
fn amount(text: &str) -> Option<Decimal> {
    let text = text.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let plain = match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    };
    Decimal::from_str(text)
        .ok()
        .filter(|a| plain && !a.is_zero() && a.abs() <= Decimal::from(MAX_AMOUNT))
}

/// The adjustment the form asks for, checked as the contract checks it.
fn event(ctx: &Ctx, customer: &str, event_id: &str, now: OffsetDateTime) -> Result<serde_json::Value, String> {
    let account = ctx.param("account");
    if !ctx.tenant.has_account(account) {
        return Err(format!(
            "`{account}` is not an account of this tenant; pick one from the list"
        ));
    }
    let Some(amount) = amount(ctx.param("amount")) else {
        return Err("the amount must be a non-zero number such as 300 or -12.50 (at most 10^12)".into());
    };
    let description = ctx.param("description").trim();
    if description.is_empty() || description.len() > 500 {
        return Err("the description is shown to the customer: write 1 to 500 bytes".into());
    }
    let operator = ctx.param("operator").trim();
    if operator.len() > 128 {
        return Err("the operator is at most 128 bytes".into());
    }
    let branch = ctx.param("branch");
    if !ctx.tenant.branches.contains_key(branch) {
        return Err("pick the branch the adjustment is made at from the list".into());
    }
    let mut body = serde_json::json!({
        "account": account, "amount": amount.to_string(), "description": description,
    });
    if !operator.is_empty() {
        body["operator"] = operator.into();
    }
    Ok(serde_json::json!({
        "schema_version": 1,
        "event_id": event_id,
        "type": "balance.adjust",
        "tenant": ctx.tenant.id,
        "branch": branch,
        "customer": customer,
        "occurred_at": now.format(&Rfc3339).map_err(|e| e.to_string())?,
        "body": body,
    }))
}

/// `POST /admin/customers/{customer}/adjust`.
pub(crate) async fn submit(ctx: &Ctx, commands: &Commands, customer: &str) -> Response<api::Body> {
    let mut id = [0u8; 16];
    if let Err(err) = getrandom::getrandom(&mut id) {
        return super::failed(&err);
    }
    let event_id = format!("admin-{}", data_encoding::HEXLOWER.encode(&id));
    // Milliseconds are enough, and keep the ledger's text short.
    let now = OffsetDateTime::now_utc();
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    let event = match event(ctx, customer, &event_id, now) {
        Ok(e) => e,
        Err(err) => return refused(ctx, customer, &err).await,
    };
    let key = crate::contract::customer_key(&ctx.tenant.id, customer);
    let payload = event.to_string();
    let record = FutureRecord::to(&commands.input).key(&key).payload(&payload);
    if let Err((err, _)) = commands.producer.send(record, Duration::from_secs(10)).await {
        tracing::warn!(error = %err, "back office: cannot produce an adjustment");
        return refused(
            ctx,
            customer,
            &format!("the adjustment could not be sent to Kafka ({err}); try again"),
        )
        .await;
    }
    tracing::info!(tenant = %ctx.tenant.id, customer, event_id, "back office: adjustment sent");
    let at = (now.unix_timestamp_nanos() / 1_000_000).to_string();
    super::redirect(
        &format!(
            "/admin/customers/{}/adjustments/{}?{}",
            url(customer),
            url(&event_id),
            query(&[("at", &at)])
        ),
        None,
    )
}

async fn refused(ctx: &Ctx, customer: &str, why: &str) -> Response<api::Body> {
    let notice = format!("<p class=\"err\" id=\"outcome\">Not sent: {}</p>", esc(why));
    let mut response = customer::page(ctx, customer, &notice).await;
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// What became of an event.
#[derive(Debug)]
enum Outcome {
    /// Not applied yet.
    Pending,
    /// Applied: its ledger entry.
    Applied(Box<AccrualEvent>),
    /// Refused: the output at `(partition, seq)` says why.
    Rejected(u32, u64),
    /// Applied without any output (a duplicate id of an earlier event).
    NoChange,
}

fn outcome(snap: &Snapshot<'_>, tenant: &str, customer: &str, event_id: &str) -> Result<Outcome, StateError> {
    for p in snap.partitions(Family::Dedupe)? {
        let Some(raw) = snap.get(Family::Dedupe, &keys::dedupe(p, tenant, event_id))? else {
            continue;
        };
        let Some(seq) = keys::DedupeValue::decode(&raw).map(|v| v.first_seq) else {
            return Ok(Outcome::NoChange);
        };
        if seq == u64::MAX {
            return Ok(Outcome::NoChange);
        }
        let key = keys::ledger(p, tenant, customer, seq);
        return Ok(match snap.get(Family::Ledger, &key)? {
            Some(value) => {
                let entry = decode_ledger(&key, &value).map_err(|e| e.in_family(Family::Ledger))?;
                if entry.header.source_event_id == event_id {
                    Outcome::Applied(Box::new(entry))
                } else {
                    Outcome::Rejected(p, seq)
                }
            }
            None => Outcome::Rejected(p, seq),
        });
    }
    Ok(Outcome::Pending)
}

/// The `reason_code` and `reason` of output `p-seq`, read from the accruals
/// topic from shortly before `at_ms`; `None` if not found within a few seconds.
fn rejection(commands: &Commands, p: u32, seq: u64, at_ms: i64) -> Option<(String, String)> {
    let consumer: BaseConsumer = commands.reader.create().ok()?;
    let partition = i32::try_from(p).ok()?;
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition_offset(
            &commands.accruals,
            partition,
            Offset::Offset(at_ms.saturating_sub(10_000)),
        )
        .ok()?;
    let found = consumer.offsets_for_times(wanted, Duration::from_secs(5)).ok()?;
    consumer.assign(&found).ok()?;
    let id = format!("{p}-{seq}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).ok()?;
                if value["id"] == id.as_str() {
                    let text = |k: &str| value[k].as_str().unwrap_or_default().to_owned();
                    return Some((text("reason_code"), text("reason")));
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return None,
            Some(Err(_)) | None => {}
        }
    }
    None
}

/// `GET /admin/customers/{customer}/adjustments/{event_id}?at=`: the
/// outcome, or a page that refreshes itself until it is known.
pub(crate) async fn status(ctx: &Ctx, commands: &Arc<Commands>, customer: &str, event_id: &str) -> Response<api::Body> {
    let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let at_ms = ctx.param("at").parse::<i64>().unwrap_or(now_ms);
    let started = tokio::time::Instant::now();
    let found = loop {
        let (store, tenant, c, e) = (
            ctx.store.clone(),
            ctx.tenant.id.clone(),
            customer.to_owned(),
            event_id.to_owned(),
        );
        let found = tokio::task::spawn_blocking(move || outcome(&store.snapshot(), &tenant, &c, &e)).await;
        match found {
            Ok(Ok(Outcome::Pending)) if started.elapsed() < WAIT_PER_REQUEST => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(found)) => break found,
            Ok(Err(err)) => return super::failed(&err),
            Err(err) => return super::failed(&err),
        }
    };
    let mut notice = String::new();
    match found {
        Outcome::Applied(entry) => {
            let _ = write!(
                notice,
                "<p class=\"ok\" id=\"outcome\" data-state=\"applied\">Applied: {} {} on {}; the balance is now {}.</p>",
                esc(&entry.amount),
                esc(ctx.tenant.unit_of(&entry.account)),
                esc(&entry.account),
                esc(&entry.balance)
            );
        }
        Outcome::NoChange => notice.push_str(
            "<p class=\"ok\" id=\"outcome\" data-state=\"applied\">Applied earlier: nothing changed this time.</p>",
        ),
        Outcome::Rejected(p, seq) => {
            let reader = Arc::clone(commands);
            let reason = tokio::task::spawn_blocking(move || rejection(&reader, p, seq, at_ms))
                .await
                .ok()
                .flatten();
            let (code, text) = reason.unwrap_or_else(|| {
                (
                    "rejected".into(),
                    "the reason is on the accruals topic (adjustment.rejected)".into(),
                )
            });
            let _ = write!(
                notice,
                "<p class=\"err\" id=\"outcome\" data-state=\"rejected\">Rejected ({}): {}. Nothing changed.</p>",
                esc(&code),
                esc(&text)
            );
        }
        Outcome::Pending => {
            let waited = now_ms.saturating_sub(at_ms);
            if u128::try_from(waited).unwrap_or(0) < PATIENCE.as_millis() {
                notice.push_str(
                    "<p class=\"muted\" id=\"outcome\" data-state=\"pending\">Sent; waiting for the processor to apply it. This page refreshes itself.</p>",
                );
                let mut response = customer::page(ctx, customer, &notice).await;
                response.headers_mut().insert("refresh", HeaderValue::from_static("1"));
                return response;
            }
            notice.push_str(
                "<p class=\"err\" id=\"outcome\" data-state=\"late\">Sent, but not applied within a minute: the processor may be behind or stopped (see /health/ready). It will apply it when it catches up; reload this page to check.</p>",
            );
        }
    }
    customer::page(ctx, customer, &notice).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_plain_signed_decimals() {
        for ok in ["300", "-12.50", " 0.5 ", "1000000000000"] {
            assert!(amount(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "0",
            "-0.00",
            "+5",
            "1e3",
            ".5",
            "5.",
            "1,5",
            "--1",
            "1000000000000.01",
            "NaN",
            "12 50",
        ] {
            assert_eq!(amount(bad), None, "{bad}");
        }
    }
}
