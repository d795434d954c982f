//! A gap record: the agent's statement that it dropped entries `from_seq..=to_seq` of a boot,
//! covering `[from_ms, to_ms)`, so that the collector books that time as data lost, never as up.
//! It travels inside a results batch with a seq of its own, so it is delivered and acked like data.

use serde::{Deserialize, Serialize};

use super::envelope::{check_id, check_timestamp, RejectReason, Rejection};

/// Why entries were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The outbox reached its cap while the collector was unreachable; oldest entries dropped.
    OutboxFull,
    /// The agent's outbox could not store them (disk full, I/O error): results measured while
    /// its store was failing, and entries it had accepted but could not make durable.
    StoreFailed,
}

/// A range of dropped entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRecord {
    /// This record's own seq in the sending boot.
    pub seq: u64,
    /// The boot whose entries were dropped (may be an earlier one than the batch's).
    pub boot: String,
    /// First dropped seq.
    pub from_seq: u64,
    /// Last dropped seq (inclusive).
    pub to_seq: u64,
    /// Observation time of the first dropped entry.
    pub from_ms: u64,
    /// Observation time just after the last dropped entry.
    pub to_ms: u64,
    /// Why.
    pub reason: GapReason,
}

impl GapRecord {
    /// Checks ranges and timestamps; `at` names the record (e.g. `gaps[0]`).
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self, at: &str, now_ms: u64) -> Result<(), Rejection> {
        check_id(&format!("{at}.boot"), &self.boot)?;
        check_timestamp(&format!("{at}.from_ms"), self.from_ms, now_ms)?;
        check_timestamp(&format!("{at}.to_ms"), self.to_ms, now_ms)?;
        if self.from_seq == 0 || self.from_seq > self.to_seq {
            return Err(Rejection::new(
                RejectReason::InvalidValue,
                format!(
                    "{at}: from_seq {} must be ≥ 1 and ≤ to_seq {}",
                    self.from_seq, self.to_seq
                ),
            ));
        }
        if self.from_ms > self.to_ms {
            return Err(Rejection::new(
                RejectReason::InvalidValue,
                format!(
                    "{at}: from_ms {} is after to_ms {}",
                    self.from_ms, self.to_ms
                ),
            ));
        }
        Ok(())
    }
}
