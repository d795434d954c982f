//! The collector's own presence: since when it has been running, connected to the broker and
//! not frozen, i.e. able to hear its agents. Agent silence is measured only over that time, so
//! the collector's own absence (a restart, a lost broker, a freeze such as SIGSTOP or a stalled
//! VM) is never blamed on the agents: after it comes back, every agent gets a grace of its
//! silence threshold before `agent_offline` / `unmonitored` can open, and until then only the
//! broker's retained status (an agent's last will) can say an agent is offline.
//!
//! The server reports broker connects and disconnects ([`Presence::connected`],
//! [`Presence::disconnected`]); the evaluator reports a wall-clock jump between its wake-ups much
//! larger than its tick ([`Presence::resumed`]).

use std::sync::{Mutex, PoisonError};

use crate::registry::AgentRecord;

/// A wake-up of the evaluator later than this many evaluation intervals after the previous one
/// means the collector was frozen (never less than [`MIN_FREEZE_MS`]).
pub const FREEZE_INTERVALS: u64 = 3;
/// Shortest gap between evaluator wake-ups taken as a freeze (a busy machine may delay a tick
/// by seconds; a false freeze only delays `agent_offline` by one silence threshold).
pub const MIN_FREEZE_MS: u64 = 5_000;

/// Since when the collector hears its agents; `None` while it does not (not connected yet, or
/// disconnected).
#[derive(Debug, Default)]
pub struct Presence {
    watching_since_ms: Mutex<Option<u64>>,
}

impl Presence {
    /// The collector (re)connected to the broker at `now_ms`.
    pub fn connected(&self, now_ms: u64) {
        *self.lock() = Some(now_ms);
    }

    /// The collector lost the broker: from now on it hears nobody.
    pub fn disconnected(&self) {
        *self.lock() = None;
    }

    /// The collector was frozen and runs again at `now_ms`: silence starts counting anew (if
    /// connected).
    pub fn resumed(&self, now_ms: u64) {
        let mut since = self.lock();
        if since.is_some() {
            *since = Some(now_ms);
        }
    }

    /// Since when the collector hears its agents, if it does.
    pub fn watching_since(&self) -> Option<u64> {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.watching_since_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a wake-up at `now_ms` after one at `previous_ms` means the collector was frozen,
/// for an evaluation interval of `every_ms`.
pub fn is_freeze(previous_ms: u64, now_ms: u64, every_ms: u64) -> bool {
    now_ms.saturating_sub(previous_ms) > (FREEZE_INTERVALS * every_ms).max(MIN_FREEZE_MS)
}

/// The evaluator's view of `agents` at `now_ms`: silence counted only since `watching_since`
/// (`None`: the collector hears nobody now, so silence says nothing). An announced state
/// (birth, last will) is kept as it is.
pub fn watched(
    mut agents: Vec<AgentRecord>,
    watching_since: Option<u64>,
    now_ms: u64,
) -> Vec<AgentRecord> {
    let since = watching_since.unwrap_or(now_ms);
    for a in &mut agents {
        a.last_seen_ms = a.last_seen_ms.max(since);
    }
    agents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freeze_is_a_wake_up_much_later_than_the_tick() {
        assert!(!is_freeze(0, 10_000, 10_000));
        assert!(!is_freeze(0, 30_000, 10_000));
        assert!(is_freeze(0, 30_001, 10_000));
        assert!(!is_freeze(0, 5_000, 1_000), "at least 5 s");
        assert!(is_freeze(0, 5_001, 1_000));
    }

    #[test]
    fn a_freeze_restarts_the_watch_only_while_connected() {
        let p = Presence::default();
        assert_eq!(p.watching_since(), None);
        p.resumed(5);
        assert_eq!(p.watching_since(), None);
        p.connected(10);
        p.resumed(20);
        assert_eq!(p.watching_since(), Some(20));
        p.disconnected();
        assert_eq!(p.watching_since(), None);
    }
}
