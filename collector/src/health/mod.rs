//! The collector's own health: what the parts that can fail report ([`HealthState`]: broker
//! link, store writes, ingest progress, the MQTT inbox), the pure classification of a snapshot
//! into `ok` / `degraded` / `failing` with reasons ([`classify`]), and the watchdog that logs an
//! ingest that stopped making progress ([`watchdog`]).
//!
//! | reason | status | when |
//! |---|---|---|
//! | `store_write_failing` | failing | an ingest commit failed (ingest stops; the collector exits) |
//! | `broker_disconnected` | failing | not connected to the broker (degraded while still connecting in the first [`CONNECT_GRACE_MS`] after the start, failing after it) |
//! | `ingest_stalled` | failing | ingest has had work outstanding (a batch, acks not yet queued) with no commit and no ack queued for `ingest_stall_after` |
//! | `ingest_backlog` | degraded | the MQTT inbox is at least [`BACKLOG_PCT`] % full (the driver is holding the broker back) |
//! | `notifier_failing` | degraded | a queued notification's last delivery attempt failed |
//! | `notifications_overdue` | degraded | a notification is due for longer than [`NOTIFY_OVERDUE_MS`] |

pub mod watchdog;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use watchstand_shared::mqtt::{InboxGauge, InboxLevel};
use watchstand_shared::time::now_ms;

/// How full (per cent of its byte capacity) the inbox is when ingest counts as behind.
pub const BACKLOG_PCT: u64 = 90;
/// A notification due for longer than this is overdue (the notifier is not getting through).
pub const NOTIFY_OVERDUE_MS: u64 = 5 * 60 * 1000;

/// Overall status, worst first when compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything works.
    Ok,
    /// Working, but something needs attention.
    Degraded,
    /// Not doing its job (HTTP 503).
    Failing,
}

impl Status {
    /// As in the health body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failing => "failing",
        }
    }

    /// The `/metrics` gauge value: 0 ok, 1 degraded, 2 failing.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Degraded => 1,
            Self::Failing => 2,
        }
    }
}

/// Every reason [`classify`] can give, for the reason-labelled metric.
pub const REASONS: [&str; 6] = [
    "store_write_failing",
    "broker_disconnected",
    "ingest_stalled",
    "ingest_backlog",
    "notifier_failing",
    "notifications_overdue",
];

/// One reason the status is not `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable code (one of [`REASONS`]).
    pub reason: &'static str,
    /// What this reason alone makes the status.
    pub status: Status,
    /// For a human.
    pub detail: String,
}

/// The classification of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The worst of the reasons' statuses, `ok` without reasons.
    pub status: Status,
    /// Why, in [`REASONS`] order.
    pub reasons: Vec<Reason>,
}

/// The broker link as last reported by the MQTT driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerLink {
    /// Connected now.
    pub connected: bool,
    /// Since when (epoch ms) in the current state.
    pub since_ms: u64,
    /// The last connection error.
    pub error: Option<String>,
    /// Connected at least once since the start.
    pub ever_connected: bool,
}

/// How long after its start a collector that has not reached its broker yet is only
/// `degraded` (connecting), not `failing`: agents on the same host probe `/api/v1/health`, and
/// a collector started beside its broker must not read as an outage while it connects.
pub const CONNECT_GRACE_MS: u64 = 15_000;

/// What the notify outbox shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyView {
    /// Notifications queued.
    pub pending: u64,
    /// Queued notifications whose last attempt failed.
    pub failing: u64,
    /// The last error of one of them.
    pub last_error: Option<String>,
    /// The longest a queued notification is past its due time, ms.
    pub most_overdue_ms: u64,
}

/// Everything [`classify`] looks at; a plain snapshot so that the rules are a pure function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Now, epoch ms.
    pub now_ms: u64,
    /// The error of the failed store write, if one failed.
    pub store_write_error: Option<String>,
    /// The broker link.
    pub broker: BrokerLink,
    /// The MQTT inbox.
    pub inbox: InboxLevel,
    /// Since when ingest has had work outstanding (a batch, acks not yet queued) without
    /// progress (a commit, an ack queued), epoch ms; 0 when it has nothing outstanding.
    pub ingest_busy_since_ms: u64,
    /// How long a batch may take before ingest counts as stalled, ms.
    pub stall_after_ms: u64,
    /// The notify outbox.
    pub notify: NotifyView,
}

/// Ingest has had work outstanding without progress for `stall_after_ms` or longer.
pub fn ingest_stalled(i: &Inputs) -> bool {
    i.ingest_busy_since_ms > 0
        && i.now_ms.saturating_sub(i.ingest_busy_since_ms) >= i.stall_after_ms
}

/// Classifies a snapshot; see the module docs for the table.
pub fn classify(i: &Inputs) -> Verdict {
    let mut reasons = Vec::new();
    let mut add = |reason, status, detail: String| {
        reasons.push(Reason {
            reason,
            status,
            detail,
        });
    };
    if let Some(e) = &i.store_write_error {
        add(
            "store_write_failing",
            Status::Failing,
            format!("a store write failed: {e}"),
        );
    }
    if !i.broker.connected {
        let for_ms = i.now_ms.saturating_sub(i.broker.since_ms);
        let for_s = for_ms / 1_000;
        let connecting = !i.broker.ever_connected && for_ms < CONNECT_GRACE_MS;
        add(
            "broker_disconnected",
            if connecting {
                Status::Degraded
            } else {
                Status::Failing
            },
            match &i.broker.error {
                Some(e) => format!("not connected to the broker for {for_s} s: {e}"),
                None => format!("not connected to the broker for {for_s} s"),
            },
        );
    }
    if ingest_stalled(i) {
        add(
            "ingest_stalled",
            Status::Failing,
            format!(
                "ingest has not finished a batch for {} s ({} more messages waiting)",
                i.now_ms.saturating_sub(i.ingest_busy_since_ms) / 1_000,
                i.inbox.messages
            ),
        );
    }
    if i.inbox.capacity_bytes > 0 && i.inbox.bytes * 100 >= i.inbox.capacity_bytes * BACKLOG_PCT {
        add(
            "ingest_backlog",
            Status::Degraded,
            format!(
                "{} messages ({} of {} bytes) wait for ingest; the broker holds the rest",
                i.inbox.messages, i.inbox.bytes, i.inbox.capacity_bytes
            ),
        );
    }
    if i.notify.failing > 0 {
        add(
            "notifier_failing",
            Status::Degraded,
            format!(
                "{} of {} queued notifications failed their last attempt{}",
                i.notify.failing,
                i.notify.pending,
                i.notify
                    .last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        );
    }
    if i.notify.most_overdue_ms > NOTIFY_OVERDUE_MS {
        add(
            "notifications_overdue",
            Status::Degraded,
            format!(
                "a notification is overdue by {} s",
                i.notify.most_overdue_ms / 1_000
            ),
        );
    }
    Verdict {
        status: reasons.iter().map(|r| r.status).max().unwrap_or(Status::Ok),
        reasons,
    }
}

/// What the running parts report, shared by ingest, the MQTT session task, the API and the
/// watchdog.
#[derive(Debug)]
pub struct HealthState {
    broker: Mutex<BrokerLink>,
    store_write_error: Mutex<Option<String>>,
    ingest_busy_since_ms: AtomicU64,
    stall_after_ms: u64,
    inbox: Arc<InboxGauge>,
}

impl HealthState {
    /// A fresh state: not connected yet, ingest idle.
    pub fn new(inbox: Arc<InboxGauge>, stall_after_ms: u64) -> Self {
        Self {
            broker: Mutex::new(BrokerLink {
                connected: false,
                since_ms: now_ms(),
                error: None,
                ever_connected: false,
            }),
            store_write_error: Mutex::new(None),
            ingest_busy_since_ms: AtomicU64::new(0),
            stall_after_ms,
            inbox,
        }
    }

    /// The broker connection came up or went down.
    pub fn broker(&self, connected: bool, error: Option<String>) {
        let mut b = self.broker.lock().unwrap_or_else(PoisonError::into_inner);
        if b.connected != connected {
            b.since_ms = now_ms();
        }
        b.connected = connected;
        b.ever_connected |= connected;
        if error.is_some() {
            b.error = error;
        }
    }

    /// A store write failed; the collector is about to stop.
    pub fn store_write_failed(&self, error: String) {
        *self
            .store_write_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Since when ingest has had outstanding work without progress (epoch ms), 0 when idle.
    pub fn ingest_busy_since(&self) -> u64 {
        self.ingest_busy_since_ms.load(Relaxed)
    }

    /// Ingest has outstanding work (messages taken, acks to queue) and last made progress at
    /// `Some(now)`, or has nothing outstanding (`None`).
    pub fn ingest_busy(&self, since_ms: Option<u64>) {
        self.ingest_busy_since_ms
            .store(since_ms.unwrap_or(0), Relaxed);
    }

    /// The inbox's gauge.
    pub fn inbox(&self) -> InboxLevel {
        self.inbox.level()
    }

    /// A snapshot at `now_ms`; `notify` comes from the store (the caller reads it off the
    /// async runtime).
    pub fn inputs(&self, now_ms: u64, notify: NotifyView) -> Inputs {
        Inputs {
            now_ms,
            store_write_error: self
                .store_write_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            broker: self
                .broker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            inbox: self.inbox.level(),
            ingest_busy_since_ms: self.ingest_busy_since_ms.load(Relaxed),
            stall_after_ms: self.stall_after_ms,
            notify,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000_000;

    fn healthy() -> Inputs {
        Inputs {
            now_ms: NOW,
            broker: BrokerLink {
                connected: true,
                since_ms: NOW - 60_000,
                error: None,
                ever_connected: true,
            },
            stall_after_ms: 30_000,
            inbox: InboxLevel {
                capacity_bytes: 1_000_000,
                ..InboxLevel::default()
            },
            ..Inputs::default()
        }
    }

    #[test]
    fn health_is_classified_by_the_worst_reason() {
        type Edit = fn(&mut Inputs);
        let cases: &[(&str, Edit, Status, &[&str])] = &[
            ("all well", |_| {}, Status::Ok, &[]),
            (
                "store write failed",
                |i| i.store_write_error = Some("No space left on device".into()),
                Status::Failing,
                &["store_write_failing"],
            ),
            (
                "broker down",
                |i| {
                    i.broker = BrokerLink {
                        connected: false,
                        since_ms: NOW - 5_000,
                        error: Some("connection refused".into()),
                        ever_connected: true,
                    }
                },
                Status::Failing,
                &["broker_disconnected"],
            ),
            (
                "still connecting 5 s after the start",
                |i| {
                    i.broker = BrokerLink {
                        connected: false,
                        since_ms: NOW - 5_000,
                        error: None,
                        ever_connected: false,
                    }
                },
                Status::Degraded,
                &["broker_disconnected"],
            ),
            (
                "never connected 16 s after the start",
                |i| {
                    i.broker = BrokerLink {
                        connected: false,
                        since_ms: NOW - 16_000,
                        error: Some("connection refused".into()),
                        ever_connected: false,
                    }
                },
                Status::Failing,
                &["broker_disconnected"],
            ),
            (
                "batch held 31 s",
                |i| i.ingest_busy_since_ms = NOW - 31_000,
                Status::Failing,
                &["ingest_stalled"],
            ),
            (
                "batch held 29 s is only slow",
                |i| i.ingest_busy_since_ms = NOW - 29_000,
                Status::Ok,
                &[],
            ),
            (
                "inbox 90 % full",
                |i| i.inbox.bytes = 900_000,
                Status::Degraded,
                &["ingest_backlog"],
            ),
            (
                "inbox 89 % full is fine",
                |i| i.inbox.bytes = 890_000,
                Status::Ok,
                &[],
            ),
            (
                "a webhook keeps failing",
                |i| {
                    i.notify = NotifyView {
                        pending: 3,
                        failing: 1,
                        last_error: Some("HTTP 500".into()),
                        most_overdue_ms: 0,
                    }
                },
                Status::Degraded,
                &["notifier_failing"],
            ),
            (
                "a notification overdue",
                |i| i.notify.most_overdue_ms = NOTIFY_OVERDUE_MS + 1,
                Status::Degraded,
                &["notifications_overdue"],
            ),
            (
                "degraded and failing together: failing wins, both listed",
                |i| {
                    i.inbox.bytes = 1_000_000;
                    i.ingest_busy_since_ms = NOW - 60_000;
                    i.broker.connected = false;
                },
                Status::Failing,
                &["broker_disconnected", "ingest_stalled", "ingest_backlog"],
            ),
        ];
        for (name, edit, status, reasons) in cases {
            let mut i = healthy();
            edit(&mut i);
            let v = classify(&i);
            let got: Vec<&str> = v.reasons.iter().map(|r| r.reason).collect();
            assert_eq!((v.status, got.as_slice()), (*status, *reasons), "{name}");
            assert!(v.reasons.iter().all(|r| REASONS.contains(&r.reason)));
        }
    }

    #[test]
    fn reasons_say_what_is_wrong() {
        let mut i = healthy();
        i.broker = BrokerLink {
            connected: false,
            since_ms: NOW - 12_000,
            error: Some("connection refused".into()),
            ever_connected: true,
        };
        assert_eq!(
            classify(&i).reasons[0].detail,
            "not connected to the broker for 12 s: connection refused"
        );
    }

    #[test]
    fn the_state_tracks_the_broker_and_a_failed_write() {
        let state = HealthState::new(Arc::new(InboxGauge::default()), 30_000);
        let now = now_ms();
        assert!(!state.inputs(now, NotifyView::default()).broker.connected);
        state.broker(true, None);
        assert_eq!(
            classify(&state.inputs(now, NotifyView::default())).status,
            Status::Ok
        );
        state.store_write_failed("disk full".into());
        let v = classify(&state.inputs(now, NotifyView::default()));
        assert_eq!(v.status, Status::Failing);
        assert_eq!(v.reasons[0].reason, "store_write_failing");
    }
}
