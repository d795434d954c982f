//! Counters of the command path since this start, for `/health` (`commands` object): refusals by
//! reason (every reason listed, zeros included), actions run, answers from the journal, and acks
//! that were not sent (over the refusal rate, or the ack queue full).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use watchstand_shared::command::RefusalReason;

/// The counters.
#[derive(Debug, Default)]
pub struct CommandStats {
    refused: [AtomicU64; RefusalReason::ALL.len()],
    executed: AtomicU64,
    from_journal: AtomicU64,
    refusal_acks_suppressed: AtomicU64,
    acks_dropped: AtomicU64,
    actions: AtomicU64,
}

/// What `/health` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandStatsView {
    /// Declared actions.
    pub actions: u64,
    /// Actions started.
    pub executed: u64,
    /// Re-sent commands answered from the journal (not run again).
    pub answered_from_journal: u64,
    /// Refusals, all reasons.
    pub refused_total: u64,
    /// Refusals by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Refusals not answered because of `refusal_acks_per_second`.
    pub refusal_acks_suppressed: u64,
    /// Acks not queued because the ack queue was full.
    pub acks_dropped: u64,
}

impl CommandStats {
    /// Counters for an agent with `actions` declared actions.
    pub fn new(actions: usize) -> Self {
        let s = Self::default();
        s.actions.store(actions as u64, Relaxed);
        s
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: RefusalReason) {
        if let Some(i) = RefusalReason::ALL.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts an action started.
    pub fn executed(&self) {
        self.executed.fetch_add(1, Relaxed);
    }

    /// Counts an answer from the journal.
    pub fn from_journal(&self) {
        self.from_journal.fetch_add(1, Relaxed);
    }

    /// Counts a refusal not answered (rate).
    pub fn suppressed(&self) {
        self.refusal_acks_suppressed.fetch_add(1, Relaxed);
    }

    /// Counts an ack not queued (queue full).
    pub fn dropped(&self) {
        self.acks_dropped.fetch_add(1, Relaxed);
    }

    /// A reading.
    pub fn view(&self) -> CommandStatsView {
        let refused: BTreeMap<&'static str, u64> = RefusalReason::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
            .collect();
        CommandStatsView {
            actions: self.actions.load(Relaxed),
            executed: self.executed.load(Relaxed),
            answered_from_journal: self.from_journal.load(Relaxed),
            refused_total: refused.values().sum(),
            refused,
            refusal_acks_suppressed: self.refusal_acks_suppressed.load(Relaxed),
            acks_dropped: self.acks_dropped.load(Relaxed),
        }
    }
}
