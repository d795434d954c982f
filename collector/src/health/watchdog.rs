//! The ingest watchdog: checks once a second whether ingest has held a batch for
//! `ingest_stall_after` without finishing it, and logs it once per episode (WARN when it starts,
//! INFO when ingest moves again). Health reports the same from the same rule
//! ([`super::ingest_stalled`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use watchstand_shared::time::now_ms;

use super::{ingest_stalled, HealthState, NotifyView};

/// How often the watchdog looks.
const EVERY: Duration = Duration::from_secs(1);

/// Runs until `stop`.
pub async fn run(health: Arc<HealthState>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stalled = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let i = health.inputs(now_ms(), NotifyView::default());
        let now_stalled = ingest_stalled(&i);
        if now_stalled && !stalled {
            tracing::warn!(
                busy_for_s = i.now_ms.saturating_sub(i.ingest_busy_since_ms) / 1_000,
                waiting = i.inbox.messages,
                waiting_bytes = i.inbox.bytes,
                broker_connected = i.broker.connected,
                "Ingest is making no progress while messages wait; nothing of its batch is acknowledged yet."
            );
        } else if stalled && !now_stalled {
            tracing::info!(waiting = i.inbox.messages, "Ingest is progressing again.");
        }
        stalled = now_stalled;
    }
}
