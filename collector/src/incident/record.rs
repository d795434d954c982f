//! The incident record (the fields an ISO/IEC 20000 incident record needs) and where it lives:
//! tree `incidents` (id → record, with its timeline), tree `notify_outbox` (notifications not yet
//! delivered); names and keys are the store's ([`crate::store::trees`]). Every change to an incident and the notifications it causes are written in one
//! store batch, so a crash never leaves an opened incident without its notification or the
//! other way round.

use serde::{Deserialize, Serialize};
use watchstand_shared::storage::key::read_u64;

use super::{IncidentState, Priority, Rule};
use crate::store::trees::{id_key, NEXT_NOTIFY_SEQ};
pub use crate::store::trees::{INCIDENTS, INCIDENT_META, NOTIFY_OUTBOX};
use crate::store::{Result, Store, StoreBatch};

/// What happened to an incident, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// When, epoch ms.
    pub at_ms: u64,
    /// `opened`, `state_down`, `flapping_started`, `flapping_stopped`, `inhibited`,
    /// `acknowledged`, `notified`, `notification_held`, `resolved`, `repeat`.
    pub event: String,
    /// Who, for actions by people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Who is affected and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// Services affected.
    pub services: Vec<String>,
    /// `partial` (some vantage points down, service holding) or `full`.
    pub scope: String,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Id (increasing).
    pub id: u64,
    /// One cause, one incident: `rule:subject`.
    pub dedup_key: String,
    /// Service (empty for agent incidents).
    pub service: String,
    /// Agent, for agent incidents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The capacity metric, for capacity incidents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Rule.
    pub rule: Rule,
    /// Priority.
    pub priority: Priority,
    /// Lifecycle state.
    pub state: IncidentState,
    /// Flapping now.
    pub flapping: bool,
    /// Recorded but not notified: its cause is upstream (agent offline, parent service down).
    pub inhibited: bool,
    /// What inhibits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
    /// Detected at, epoch ms.
    pub detected_ms: u64,
    /// Acknowledged at.
    #[serde(default)]
    pub acknowledged_ms: Option<u64>,
    /// Acknowledged by.
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// Resolved at.
    #[serde(default)]
    pub resolved_ms: Option<u64>,
    /// Resolved by (`auto` for the healthy-period rule).
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// Resolution note.
    #[serde(default)]
    pub resolution_note: Option<String>,
    /// Impact.
    pub impact: Impact,
    /// Summary of the breach when detected.
    pub summary: String,
    /// Last notification sent (for the repeat interval), epoch ms.
    #[serde(default)]
    pub last_notified_ms: Option<u64>,
    /// Timeline.
    pub timeline: Vec<TimelineEvent>,
    /// Resolved by hand while its condition still held: no new incident opens for this cause
    /// until the condition clears and breaches again (cleared then, with a timeline event).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_until_clear: bool,
    /// Found late in the data (a replay): `detected_ms` and `resolved_ms` are the outage's own
    /// start and end from the data, not when the collector learnt of it.
    #[serde(default)]
    pub late: bool,
    /// When a late incident was found, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_late_ms: Option<u64>,
    /// Opened while its service was being drilled: the drill run's id. Kept on the record, not
    /// paged (unless the drill notifies; then marked as a drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<u64>,
}

impl Incident {
    /// Seconds from detection to resolution (for a late incident: the outage's own length).
    pub fn time_to_restore_s(&self) -> Option<f64> {
        self.resolved_ms
            .map(|r| r.saturating_sub(self.detected_ms) as f64 / 1_000.0)
    }

    /// Adds a timeline event.
    pub fn push(&mut self, at_ms: u64, event: &str, by: Option<&str>, detail: impl Into<String>) {
        self.timeline.push(TimelineEvent {
            at_ms,
            event: event.to_owned(),
            by: by.map(str::to_owned),
            detail: detail.into(),
        });
    }
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Outbox sequence (key).
    pub seq: u64,
    /// Receiver name.
    pub receiver: String,
    /// `opened`, `acknowledged`, `resolved`, `repeat`.
    pub event: String,
    /// The JSON body to POST.
    pub body: serde_json::Value,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before, epoch ms.
    pub next_at_ms: u64,
    /// Last error.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Reads and writes incidents and notifications.
#[derive(Clone)]
pub struct IncidentStore {
    store: Store,
}

impl IncidentStore {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every incident, oldest first.
    ///
    /// # Errors
    /// Store failure.
    pub fn all(&self) -> Result<Vec<Incident>> {
        Ok(self
            .store
            .load_all::<Incident>(INCIDENTS)?
            .into_iter()
            .map(|(_, i)| i)
            .collect())
    }

    /// One incident.
    ///
    /// # Errors
    /// Store failure.
    pub fn get(&self, id: u64) -> Result<Option<Incident>> {
        match self.store.tree(INCIDENTS)?.get(&id_key(id))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|source| {
                crate::store::StoreError::Corrupt {
                    tree: INCIDENTS,
                    source,
                }
            })?)),
            None => Ok(None),
        }
    }

    /// The next unused incident id and notification seq.
    ///
    /// # Errors
    /// Store failure.
    pub fn next_ids(&self) -> Result<(u64, u64)> {
        let last = |tree: &str| -> Result<u64> {
            Ok(self
                .store
                .tree(tree)?
                .range_rev(&[], None, 1)?
                .first()
                .and_then(|(k, _)| read_u64(k, 0))
                .unwrap_or(0))
        };
        // Notification seqs never repeat, even after the outbox has emptied: receivers dedupe
        // by them.
        let stored_next = self
            .store
            .tree(INCIDENT_META)?
            .get(NEXT_NOTIFY_SEQ)?
            .and_then(|v| read_u64(&v, 0))
            .unwrap_or(1);
        Ok((
            last(INCIDENTS)? + 1,
            stored_next.max(last(NOTIFY_OUTBOX)? + 1),
        ))
    }

    /// Records, in `batch`, that notification seqs below `next` are used.
    pub fn used_seqs_below(batch: &mut StoreBatch, next: u64) {
        batch.push(
            INCIDENT_META,
            watchstand_shared::storage::Write::Put(
                NEXT_NOTIFY_SEQ.to_vec(),
                next.to_be_bytes().to_vec(),
            ),
        );
    }

    /// Adds the record to `batch`.
    pub fn put(batch: &mut StoreBatch, incident: &Incident) {
        batch.put_json(INCIDENTS, id_key(incident.id), incident);
    }

    /// Adds a notification to `batch`.
    pub fn enqueue(batch: &mut StoreBatch, n: &Notification) {
        batch.put_json(NOTIFY_OUTBOX, id_key(n.seq), n);
    }

    /// Removes a delivered notification, in `batch`.
    pub fn delivered(batch: &mut StoreBatch, seq: u64) {
        batch.push(
            NOTIFY_OUTBOX,
            watchstand_shared::storage::Write::Delete(id_key(seq)),
        );
    }

    /// Notifications due at `now_ms`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Store failure.
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Notification>> {
        Ok(self
            .store
            .load_all::<Notification>(NOTIFY_OUTBOX)?
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| n.next_at_ms <= now_ms)
            .take(limit)
            .collect())
    }

    /// Every notification waiting, due or not, in seq order (the notifier keeps each
    /// incident's events in this order).
    ///
    /// # Errors
    /// Store failure.
    pub fn all_pending(&self) -> Result<Vec<Notification>> {
        Ok(self
            .store
            .load_all::<Notification>(NOTIFY_OUTBOX)?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }

    /// Notifications waiting.
    ///
    /// # Errors
    /// Store failure.
    pub fn pending(&self) -> Result<usize> {
        Ok(self.store.tree(NOTIFY_OUTBOX)?.len()?)
    }

    /// Commits `batch` (flushed).
    ///
    /// # Errors
    /// Store failure.
    pub fn commit(&self, batch: StoreBatch) -> Result<()> {
        self.store.commit(batch)
    }
}
