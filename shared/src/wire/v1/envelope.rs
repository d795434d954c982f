//! What every v1 payload shares: the version, the size limit, the sender's identity, decoding
//! with a classified rejection, and encoding.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

use crate::topic::validate_id;

/// The protocol version this module speaks.
pub const VERSION: u64 = 1;

/// Default largest payload accepted, in bytes. The MQTT `max_packet_size` bounds it further.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Earliest timestamp accepted (2000-01-01T00:00:00Z); anything before is a broken clock.
pub const MIN_TIMESTAMP_MS: u64 = 946_684_800_000;

/// How far into the future a timestamp may lie (clock skew allowance): one day.
pub const MAX_FUTURE_SKEW_MS: u64 = 86_400_000;

/// Why a payload was rejected: a closed set, so that counters have bounded labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// The topic does not fit the v1 layout.
    UnknownTopic,
    /// Larger than the size limit.
    TooLarge,
    /// Not valid UTF-8.
    NotUtf8,
    /// JSON that ends early.
    Truncated,
    /// Not JSON at all (including `NaN`, which JSON does not have).
    NotJson,
    /// JSON of the wrong shape: a missing field or a wrong type (e.g. a negative duration).
    Schema,
    /// `v` is not 1.
    UnsupportedVersion,
    /// Site or agent in the payload differ from the topic.
    TopicMismatch,
    /// A site, agent, boot or probe id breaks the id rules.
    InvalidId,
    /// A value out of its domain (non-finite, zero interval, from after to…).
    InvalidValue,
    /// A timestamp before 2000 or more than a day in the future.
    TimestampOutOfRange,
    /// Sequence numbers in a batch not strictly increasing.
    SeqNotIncreasing,
    /// A batch with no entries.
    EmptyBatch,
}

impl RejectReason {
    /// Every reason, for exporting zero-valued counters.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::UnknownTopic,
        RejectReason::TooLarge,
        RejectReason::NotUtf8,
        RejectReason::Truncated,
        RejectReason::NotJson,
        RejectReason::Schema,
        RejectReason::UnsupportedVersion,
        RejectReason::TopicMismatch,
        RejectReason::InvalidId,
        RejectReason::InvalidValue,
        RejectReason::TimestampOutOfRange,
        RejectReason::SeqNotIncreasing,
        RejectReason::EmptyBatch,
    ];

    /// The snake_case label used in metrics and the health API.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::TooLarge => "too_large",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::Truncated => "truncated",
            RejectReason::NotJson => "not_json",
            RejectReason::Schema => "schema",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::TopicMismatch => "topic_mismatch",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::SeqNotIncreasing => "seq_not_increasing",
            RejectReason::EmptyBatch => "empty_batch",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected payload: the reason (for counting) and a detail that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The counted reason.
    pub reason: RejectReason,
    /// Names the field or value, for the log line.
    pub detail: String,
}

impl Rejection {
    /// A rejection for `reason` with `detail`.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The identity every v1 message carries, and its own semantic checks.
pub trait Envelope: Serialize + DeserializeOwned {
    /// The `v` field.
    fn version(&self) -> u64;
    /// The sending site.
    fn site(&self) -> &str;
    /// The sending agent.
    fn agent(&self) -> &str;
    /// The agent's boot id.
    fn boot(&self) -> &str;
    /// Message-specific checks (values, timestamps, seq order) at collector time `now_ms`.
    ///
    /// # Errors
    /// The first rule broken, naming the field.
    fn validate_body(&self, now_ms: u64) -> Result<(), Rejection>;
}

/// Checks a timestamp field against [`MIN_TIMESTAMP_MS`] and `now_ms` + skew.
///
/// # Errors
/// `TimestampOutOfRange`, naming the field and value.
pub fn check_timestamp(field: &str, ms: u64, now_ms: u64) -> Result<(), Rejection> {
    if ms < MIN_TIMESTAMP_MS || ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(Rejection::new(
            RejectReason::TimestampOutOfRange,
            format!("{field} = {ms} is before 2000 or more than a day ahead"),
        ));
    }
    Ok(())
}

/// Checks that `seqs` are ≥ 1 and strictly increasing.
///
/// # Errors
/// `SeqNotIncreasing` or `InvalidValue`, naming the list and position.
pub fn check_seqs(list: &str, seqs: impl Iterator<Item = u64>) -> Result<(), Rejection> {
    let mut prev = 0;
    for (i, seq) in seqs.enumerate() {
        if seq == 0 {
            return Err(Rejection::new(
                RejectReason::InvalidValue,
                format!("{list}[{i}].seq is 0; seqs start at 1"),
            ));
        }
        if seq <= prev {
            return Err(Rejection::new(
                RejectReason::SeqNotIncreasing,
                format!("{list}[{i}].seq = {seq} does not follow {prev}"),
            ));
        }
        prev = seq;
    }
    Ok(())
}

/// Checks an id field.
///
/// # Errors
/// `InvalidId`, naming the field.
pub fn check_id(field: &str, id: &str) -> Result<(), Rejection> {
    validate_id(id)
        .map_err(|e| Rejection::new(RejectReason::InvalidId, format!("{field} {id:?} {e}")))
}

/// Decodes and checks a v1 payload received at `now_ms`.
///
/// Only the checks that need nothing but the payload happen here; the topic comparison is the
/// caller's (ingest knows the topic).
///
/// # Errors
/// A [`Rejection`] whose reason classifies the failure and whose detail names the field.
pub fn decode<M: Envelope>(payload: &[u8], max_bytes: usize, now_ms: u64) -> Result<M, Rejection> {
    if payload.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("{} bytes, limit {max_bytes}", payload.len()),
        ));
    }
    if let Err(e) = std::str::from_utf8(payload) {
        return Err(Rejection::new(RejectReason::NotUtf8, e.to_string()));
    }
    let message: M = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => return Err(classify_json_error::<M>(payload, &e)),
    };
    if message.version() != VERSION {
        return Err(unsupported_version(message.version()));
    }
    check_id("site", message.site())?;
    check_id("agent", message.agent())?;
    check_id("boot", message.boot())?;
    message.validate_body(now_ms)?;
    Ok(message)
}

fn unsupported_version(v: impl fmt::Display) -> Rejection {
    Rejection::new(
        RejectReason::UnsupportedVersion,
        format!("v = {v}, this collector speaks v{VERSION}"),
    )
}

/// Turns a serde_json error into a reason; on a shape error, re-parses to name the field path
/// and to tell an unknown version apart from a wrong shape. Runs only on the failure path.
fn classify_json_error<M: DeserializeOwned>(payload: &[u8], e: &serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => Rejection::new(RejectReason::Truncated, e.to_string()),
        Category::Syntax | Category::Io => Rejection::new(RejectReason::NotJson, e.to_string()),
        Category::Data => {
            #[derive(serde::Deserialize)]
            struct VersionOnly {
                v: Option<serde_json::Value>,
            }
            if let Ok(VersionOnly { v: Some(v) }) = serde_json::from_slice::<VersionOnly>(payload) {
                if v.as_u64() != Some(VERSION) {
                    return unsupported_version(v);
                }
            }
            let mut de = serde_json::Deserializer::from_slice(payload);
            let detail = match serde_path_to_error::deserialize::<_, M>(&mut de) {
                Err(pe) => format!("{}: {}", pe.path(), pe.inner()),
                Ok(_) => e.to_string(),
            };
            Rejection::new(RejectReason::Schema, detail)
        }
    }
}

/// Encodes a message as compact JSON.
pub fn encode<M: Serialize>(message: &M) -> Vec<u8> {
    // Serialising our own plain structs to a Vec cannot fail (no maps with non-string keys,
    // no I/O); an empty payload would be rejected by the collector and logged there.
    serde_json::to_vec(message).unwrap_or_default()
}
