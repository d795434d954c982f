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

/// Whether, and since when, the collector hears its agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Hearing {
    /// Not connected yet since it started: silence says nothing.
    #[default]
    NotYet,
    /// Connected (and not frozen) since this instant, epoch ms.
    Since(u64),
    /// Connected from `since` until it lost the broker at `lost_at`: silence counts up to
    /// `lost_at` only.
    LostAt {
        /// Start of the last stretch it heard.
        since: u64,
        /// When it lost the broker.
        lost_at: u64,
    },
}

/// Since when the collector hears its agents, shared by the server (connects) and the
/// evaluator (freezes).
#[derive(Debug, Default)]
pub struct Presence {
    hearing: Mutex<Hearing>,
}

impl Presence {
    /// The collector (re)connected to the broker at `now_ms`.
    pub fn connected(&self, now_ms: u64) {
        *self.lock() = Hearing::Since(now_ms);
    }

    /// The collector lost the broker at `now_ms`: from then on it hears nobody.
    pub fn disconnected(&self, now_ms: u64) {
        let mut h = self.lock();
        if let Hearing::Since(since) = *h {
            *h = Hearing::LostAt {
                since,
                lost_at: now_ms,
            };
        }
    }

    /// The collector was frozen and runs again at `now_ms`: silence starts counting anew (if
    /// connected).
    pub fn resumed(&self, now_ms: u64) {
        let mut h = self.lock();
        if matches!(*h, Hearing::Since(_)) {
            *h = Hearing::Since(now_ms);
        }
    }

    /// Whether, and since when, the collector hears its agents now.
    pub fn hearing(&self) -> Hearing {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hearing> {
        self.hearing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a wake-up at `now_ms` after one at `previous_ms` means the collector was frozen,
/// for an evaluation interval of `every_ms`.
pub fn is_freeze(previous_ms: u64, now_ms: u64, every_ms: u64) -> bool {
    now_ms.saturating_sub(previous_ms) > (FREEZE_INTERVALS * every_ms).max(MIN_FREEZE_MS)
}

/// The evaluator's view of `agents` at `now_ms`: silence counted only over time the collector
/// heard them — from the start of its last stretch of hearing, and, while it does not hear,
/// only up to when it stopped. An announced state (birth, last will) is kept as it is.
pub fn watched(mut agents: Vec<AgentRecord>, hearing: Hearing, now_ms: u64) -> Vec<AgentRecord> {
    for a in &mut agents {
        a.last_seen_ms = match hearing {
            Hearing::NotYet => now_ms,
            Hearing::Since(since) => a.last_seen_ms.max(since),
            Hearing::LostAt { since, lost_at } => {
                let heard = a.last_seen_ms.max(since);
                heard
                    .saturating_add(now_ms.saturating_sub(lost_at))
                    .min(now_ms)
            }
        };
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
        assert_eq!(p.hearing(), Hearing::NotYet);
        p.resumed(5);
        p.disconnected(6);
        assert_eq!(p.hearing(), Hearing::NotYet);
        p.connected(10);
        p.resumed(20);
        assert_eq!(p.hearing(), Hearing::Since(20));
        p.disconnected(30);
        p.resumed(40);
        assert_eq!(
            p.hearing(),
            Hearing::LostAt {
                since: 20,
                lost_at: 30
            }
        );
    }

    #[test]
    fn silence_stops_counting_while_the_collector_hears_nobody() {
        let reg = crate::registry::Registry::default();
        reg.update("s", "a", "b", 1_000, |_| {});
        let seen = |h: Hearing, now: u64| watched(reg.snapshot(), h, now)[0].last_seen_ms;
        assert_eq!(seen(Hearing::NotYet, 50_000), 50_000);
        assert_eq!(seen(Hearing::Since(500), 50_000), 1_000);
        assert_eq!(seen(Hearing::Since(9_000), 50_000), 9_000, "grace");
        // Heard until 3_000 (2 s of silence), deaf since: still 2 s of silence at 50_000.
        assert_eq!(
            seen(
                Hearing::LostAt {
                    since: 500,
                    lost_at: 3_000
                },
                50_000
            ),
            48_000
        );
    }
}
