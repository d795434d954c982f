//! Which Watchstand collectors are online on the agent's broker, from their retained
//! `{root}/v1/_collector/{id}/state` messages (see `shared::wire::v1::collector_state`).
//!
//! The MQTT task ([`crate::mqtt`]) feeds [`Collectors`] with every state message and forgets
//! them when the connection drops (the next connection gets the retained states again); the
//! publisher reads the [`Presence`] through a `watch` to decide whether re-sending can help,
//! and `/health` shows it as `collector_online`.
//!
//! [`NoCollectorAlarm`] is the "wrong broker" warning: connected for [`NO_COLLECTOR_GRACE`]
//! and no collector online → one WARN naming the broker URL and topic root, repeated every
//! [`NO_COLLECTOR_REPEAT`] while it lasts.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use watchstand_shared::wire::v1::{CollectorState, CollectorStatus};

/// How long after connecting (or after the last collector went offline) the agent waits for a
/// collector to be online before it warns. Retained states arrive right after the subscribe,
/// so this only has to cover a round trip.
pub const NO_COLLECTOR_GRACE: Duration = Duration::from_secs(3);

/// While no collector is online, the warning repeats this often.
pub const NO_COLLECTOR_REPEAT: Duration = Duration::from_secs(5 * 60);

/// What the agent knows about collectors on its broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    /// No collector state seen on this connection (not connected yet, or a broker where no
    /// collector ever announced: an older collector, or the wrong broker).
    #[default]
    Unknown,
    /// Collectors announced, all offline.
    Offline,
    /// At least one collector is online.
    Online,
}

/// Retained collector states seen on the current connection, by collector id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collectors {
    states: BTreeMap<String, CollectorState>,
}

impl Collectors {
    /// The summary the publisher and health use.
    pub fn presence(&self) -> Presence {
        if self.states.is_empty() {
            Presence::Unknown
        } else if self.states.values().any(|s| *s == CollectorState::Online) {
            Presence::Online
        } else {
            Presence::Offline
        }
    }

    /// Ids of collectors seen offline.
    pub fn offline(&self) -> Vec<String> {
        self.states
            .iter()
            .filter(|(_, s)| **s == CollectorState::Offline)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Applies one message on collector `id`'s state topic: a state, or an empty payload (the
    /// retained state was cleared: the collector is forgotten). Returns whether anything
    /// changed.
    ///
    /// # Errors
    /// The payload is not a collector state; nothing changes.
    pub fn apply(
        &mut self,
        id: &str,
        payload: &[u8],
    ) -> Result<bool, watchstand_shared::wire::v1::CollectorStatusError> {
        if payload.is_empty() {
            return Ok(self.states.remove(id).is_some());
        }
        let status = CollectorStatus::decode(payload)?;
        // The topic names the collector; the payload's id is informative.
        Ok(self.states.insert(id.to_owned(), status.state) != Some(status.state))
    }

    /// Forgets everything (the connection dropped).
    pub fn clear(&mut self) {
        self.states.clear();
    }
}

/// When to warn that no collector is online.
#[derive(Debug, Default)]
pub struct NoCollectorAlarm {
    /// When the warning is due, while none is online and connected.
    due: Option<Instant>,
    /// A warning was given in this episode (for the "online again" message).
    warned: bool,
}

impl NoCollectorAlarm {
    /// Follows the connection and presence at `now`; returns true when the warning is to be
    /// given now (and schedules the repeat).
    pub fn update(&mut self, connected: bool, presence: Presence, now: Instant) -> bool {
        if !connected {
            // Time without a broker is not a broker without a collector.
            self.due = None;
            return false;
        }
        if presence == Presence::Online {
            self.due = None;
            self.warned = false;
            return false;
        }
        match self.due {
            None => {
                self.due = Some(now + NO_COLLECTOR_GRACE);
                false
            }
            Some(due) if now >= due => {
                self.due = Some(now + NO_COLLECTOR_REPEAT);
                self.warned = true;
                true
            }
            Some(_) => false,
        }
    }

    /// When [`NoCollectorAlarm::update`] must be called again, if a warning is pending.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// A warning was given since a collector was last online.
    pub fn warned(&self) -> bool {
        self.warned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::wire::v1::CollectorState;

    fn state(id: &str, s: CollectorState) -> Vec<u8> {
        CollectorStatus::new(id, s, 1_800_000_000_000).encode()
    }

    #[test]
    fn presence_is_online_while_any_collector_is_and_unknown_before_any_state() {
        let mut c = Collectors::default();
        assert_eq!(c.presence(), Presence::Unknown);
        assert!(c.apply("a", &state("a", CollectorState::Offline)).unwrap());
        assert_eq!(c.presence(), Presence::Offline);
        assert!(c.apply("b", &state("b", CollectorState::Online)).unwrap());
        assert_eq!(c.presence(), Presence::Online);
        assert!(!c.apply("b", &state("b", CollectorState::Online)).unwrap());
        assert!(c.apply("b", &[]).unwrap(), "a cleared retained state");
        assert_eq!(c.presence(), Presence::Offline);
        assert_eq!(c.offline(), vec!["a".to_owned()]);
        assert!(c.apply("a", b"{not json").is_err());
        assert_eq!(c.presence(), Presence::Offline);
        c.clear();
        assert_eq!(c.presence(), Presence::Unknown);
    }

    #[test]
    fn the_warning_comes_after_the_grace_then_repeats_and_ends_when_one_is_online() {
        let t0 = Instant::now();
        let mut a = NoCollectorAlarm::default();
        assert!(!a.update(false, Presence::Unknown, t0), "not connected");
        assert!(!a.update(true, Presence::Unknown, t0));
        assert_eq!(a.due(), Some(t0 + NO_COLLECTOR_GRACE));
        assert!(!a.update(true, Presence::Offline, t0 + Duration::from_secs(2)));
        assert!(a.update(true, Presence::Offline, t0 + NO_COLLECTOR_GRACE));
        assert!(a.warned());
        assert!(!a.update(true, Presence::Offline, t0 + Duration::from_secs(60)));
        assert!(a.update(
            true,
            Presence::Unknown,
            t0 + NO_COLLECTOR_GRACE + NO_COLLECTOR_REPEAT
        ));
        assert!(!a.update(true, Presence::Online, t0 + Duration::from_secs(400)));
        assert!(!a.warned());
        assert_eq!(a.due(), None);
    }
}
