//! Typed operational events of the collector. Each `emit()` logs one line (structured fields,
//! then a sentence) and bumps a counter whose labels come from enums, so that `/metrics` has
//! bounded cardinality. The counters are read by the health API and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use watchstand_shared::wire::v1::{RejectReason, Rejection};

/// Metric names, exported by `/metrics`.
pub mod names {
    /// MQTT messages received by ingest.
    pub const MESSAGES_RECEIVED: &str = "watchstand_ingest_messages_total";
    /// Entries (results, samples, gap records) stored.
    pub const ENTRIES_STORED: &str = "watchstand_ingest_entries_stored_total";
    /// Entries dropped as duplicates.
    pub const DUPLICATES: &str = "watchstand_ingest_duplicates_total";
    /// Payloads rejected, by reason.
    pub const REJECTED: &str = "watchstand_ingest_rejected_total";
    /// Gap records received.
    pub const GAP_RECORDS: &str = "watchstand_ingest_gap_records_total";
    /// Entries the agents declared lost.
    pub const LOST_ENTRIES: &str = "watchstand_ingest_lost_entries_total";
    /// Store batches committed.
    pub const BATCHES: &str = "watchstand_ingest_batches_total";
}

/// Counters shared by ingest (writer) and the API (reader).
#[derive(Debug, Default)]
pub struct Counters {
    /// MQTT messages received.
    pub messages: AtomicU64,
    /// Results stored.
    pub results_stored: AtomicU64,
    /// Capacity samples stored.
    pub samples_stored: AtomicU64,
    /// Duplicate entries dropped.
    pub duplicates: AtomicU64,
    /// Gap records received.
    pub gap_records: AtomicU64,
    /// Entries booked as lost by gap records.
    pub lost_entries: AtomicU64,
    /// Store batches committed (each flushed once, then acknowledged).
    pub batches: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl Counters {
    /// Rejections by reason, every reason included.
    pub fn rejected(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, c)| (*r, c.load(Relaxed)))
            .collect()
    }

    /// Total rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// A payload was rejected.
pub struct PayloadRejected<'a> {
    /// The MQTT topic.
    pub topic: &'a str,
    /// Why.
    pub rejection: &'a Rejection,
}

impl PayloadRejected<'_> {
    /// Logs and counts.
    pub fn emit(self, counters: &Counters) {
        let index = RejectReason::ALL
            .iter()
            .position(|r| *r == self.rejection.reason)
            .unwrap_or(0);
        counters.rejected[index].fetch_add(1, Relaxed);
        tracing::warn!(
            topic = self.topic,
            reason = %self.rejection.reason,
            detail = %self.rejection.detail,
            "Payload rejected."
        );
    }
}

/// Entries already stored arrived again.
pub struct DuplicatesDropped<'a> {
    /// Agent.
    pub agent: &'a str,
    /// Boot.
    pub boot: &'a str,
    /// How many in this message.
    pub count: u64,
}

impl DuplicatesDropped<'_> {
    /// Logs and counts.
    pub fn emit(self, counters: &Counters) {
        counters.duplicates.fetch_add(self.count, Relaxed);
        tracing::debug!(
            agent = self.agent,
            boot = self.boot,
            count = self.count,
            "Duplicates dropped."
        );
    }
}

/// An agent declared entries lost.
pub struct GapBooked<'a> {
    /// Agent.
    pub agent: &'a str,
    /// The boot whose entries were dropped.
    pub boot: &'a str,
    /// Dropped seq range.
    pub from_seq: u64,
    /// Dropped seq range end (inclusive).
    pub to_seq: u64,
    /// Time range start.
    pub from_ms: u64,
    /// Time range end.
    pub to_ms: u64,
}

impl GapBooked<'_> {
    /// Logs and counts. ERROR: measurements were lost and that time is unmonitored.
    pub fn emit(self, counters: &Counters) {
        counters.gap_records.fetch_add(1, Relaxed);
        counters
            .lost_entries
            .fetch_add(self.to_seq - self.from_seq + 1, Relaxed);
        tracing::error!(
            agent = self.agent,
            boot = self.boot,
            from_seq = self.from_seq,
            to_seq = self.to_seq,
            from_ms = self.from_ms,
            to_ms = self.to_ms,
            "Agent dropped measurements; booking the range as data lost."
        );
    }
}
