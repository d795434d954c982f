//! The optional local health endpoint (`[agent].health_listen`): a window onto the pipeline
//! probe → scheduler → outbox → publisher → mqtt for operators and test harnesses.
//!
//! `GET /health` answers with
//! `{"site","agent","boot","mqtt_connected","collector_online",
//! "outbox":{"entries","bytes","dropped","dropped_delivered","gap_records"},
//! "watermarks":{"<boot>":seq},"published","resent","unacked_alarms","unacknowledged"}`.
//! `dropped`, `dropped_delivered` and `gap_records` count since this start; `entries` and
//! `bytes` are what the outbox holds now. `dropped_delivered` is the part of `dropped` that the
//! publisher had already sent and the collector acknowledged afterwards: dropped from the outbox
//! but not lost, so not in any gap record. `unacknowledged` is `null`, or the oldest stretch of published entries the
//! collector's watermark has not covered yet:
//! `{"boot","oldest_seq","published_upto","since_ms","age_ms","alarm"}`, with `alarm` true once
//! it waited `outbox.unacked_alarm` ("not acknowledged by the collector");
//! `unacked_alarms` counts such episodes since this start. `collector_online` is true while a
//! Watchstand collector announces itself online on the broker (its retained state), false
//! otherwise — also when none ever announced (the wrong broker or `topic_root`).
//!
//! `commands` is `null` without `[commands]`, else the counters of `actions/stats.rs`:
//! `{"actions","executed","answered_from_journal","refused_total","refused":{"<reason>":n},
//! "refusal_acks_suppressed","acks_dropped"}`, every refusal reason listed (zeros included).
//!
//! `status` is `ok`, or `degraded` with `reasons` (a list of short phrases) while the outbox
//! cannot store measurements (`outbox store failing`: they are booked as lost) or published
//! entries wait past the unacknowledged alarm. `outbox.store` is
//! `{"failing","failing_since_ms","error","failed_writes","lost_entries","episodes"}` (counters
//! since this start; see "Store failures" in `outbox.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use watchstand_shared::time::now_ms;

use crate::actions::CommandStats;
use crate::collectors::Presence;
use crate::mqtt::LinkState;
use crate::outbox::Outbox;
use crate::publisher::PublisherStats;

/// What the endpoint reads.
#[derive(Debug)]
pub struct HealthState {
    /// Site id.
    pub site: String,
    /// Agent id.
    pub agent: String,
    /// This start's boot id.
    pub boot: String,
    /// The outbox.
    pub outbox: Arc<Outbox>,
    /// The connection state.
    pub link: watch::Receiver<LinkState>,
    /// The publisher's counters.
    pub published: Arc<PublisherStats>,
    /// Which collectors are online on the broker.
    pub presence: watch::Receiver<Presence>,
    /// Command counters, with `[commands]`.
    pub commands: Option<Arc<CommandStats>>,
}

/// The health document.
pub fn snapshot(state: &HealthState) -> Value {
    let stats = state.outbox.stats();
    let watermarks: Map<String, Value> = stats
        .boots
        .iter()
        .map(|b| (b.id.clone(), json!(b.watermark)))
        .collect();
    let unacknowledged = state.published.unacknowledged().map(|u| {
        json!({
            "boot": u.boot,
            "oldest_seq": u.oldest_seq,
            "published_upto": u.published_upto,
            "since_ms": u.since_ms,
            "age_ms": now_ms().saturating_sub(u.since_ms),
            "alarm": u.alarm,
        })
    });
    let mut reasons = Vec::new();
    if stats.store.failing {
        reasons.push("outbox store failing");
    }
    if state.published.unacknowledged().is_some_and(|u| u.alarm) {
        reasons.push("published entries not acknowledged by the collector");
    }
    json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "reasons": reasons,
        "site": state.site,
        "agent": state.agent,
        "boot": state.boot,
        "mqtt_connected": state.link.borrow().connected,
        "collector_online": *state.presence.borrow() == Presence::Online,
        "outbox": {
            "entries": stats.entries,
            "bytes": stats.bytes,
            "dropped": stats.dropped,
            "dropped_delivered": stats.dropped_delivered,
            "gap_records": stats.gap_records,
            "store": {
                "failing": stats.store.failing,
                "failing_since_ms": stats.store.failing_since_ms,
                "error": stats.store.error,
                "failed_writes": stats.store.failed_writes,
                "lost_entries": stats.store.lost_entries,
                "episodes": stats.store.episodes,
            },
        },
        "watermarks": watermarks,
        "published": state.published.published.load(Ordering::Relaxed),
        "resent": state.published.resent.load(Ordering::Relaxed),
        "unacked_alarms": state.published.unacked_alarms.load(Ordering::Relaxed),
        "unacknowledged": unacknowledged,
        "commands": state.commands.as_ref().map(|c| c.view()),
    })
}

async fn health(State(state): State<Arc<HealthState>>) -> Json<Value> {
    Json(snapshot(&state))
}

/// The router: `GET /health`.
pub fn router(state: Arc<HealthState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

/// Serves on `listener` until `shutdown`.
///
/// # Errors
/// The server failed while accepting.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HealthState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Measurement, OutboxLimits};
    use watchstand_shared::storage::MemoryStorage;
    use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

    #[tokio::test]
    async fn get_health_reports_outbox_watermarks_and_connection_on_a_real_socket() {
        let outbox = Arc::new(
            Outbox::open(
                Arc::new(MemoryStorage::new()),
                OutboxLimits {
                    max_entries: 100,
                    max_bytes: u64::MAX,
                    max_entry_bytes: 64 * 1024,
                },
            )
            .unwrap(),
        );
        for _ in 0..3 {
            outbox
                .append(Measurement::Result(ProbeResult {
                    seq: 0,
                    probe: "web".into(),
                    kind: "http".into(),
                    target: "http://x/".into(),
                    observed_ms: 1_800_000_000_000,
                    interval_ms: 1_000,
                    state: ProbeState::Up,
                    latency_us: 1,
                    error: None,
                    metrics: Vec::new(),
                }))
                .unwrap();
        }
        let boot = outbox.boot_id();
        outbox.apply_ack(&boot, 1).unwrap();
        let (_link_tx, link) = watch::channel(LinkState {
            connected: true,
            epoch: 1,
        });
        let state = Arc::new(HealthState {
            site: "lab".into(),
            agent: "a1".into(),
            boot: boot.clone(),
            outbox,
            link,
            published: Arc::new(PublisherStats::default()),
            presence: watch::channel(Presence::Online).1,
            commands: None,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, stop.clone()));
        let body: Value = reqwest::get(format!("http://{addr}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body,
            json!({
                "status": "ok",
                "reasons": [],
                "site": "lab",
                "agent": "a1",
                "boot": boot,
                "mqtt_connected": true,
                "collector_online": true,
                "outbox": {"entries": 2, "bytes": body["outbox"]["bytes"], "dropped": 0, "dropped_delivered": 0, "gap_records": 0,
                    "store": {"failing": false, "failing_since_ms": null, "error": null, "failed_writes": 0, "lost_entries": 0, "episodes": 0}},
                "watermarks": {boot.clone(): 1},
                "published": 0,
                "resent": 0,
                "unacked_alarms": 0,
                "unacknowledged": null,
                "commands": null,
            })
        );
        assert!(body["outbox"]["bytes"].as_u64().unwrap() > 0);
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn health_is_degraded_while_the_outbox_store_fails_and_ok_again_after_it_recovers() {
        let disk = crate::testutil::FullableStorage::default();
        let outbox = Arc::new(
            Outbox::open(
                Arc::new(disk.clone()),
                OutboxLimits {
                    max_entries: 100,
                    max_bytes: u64::MAX,
                    max_entry_bytes: 64 * 1024,
                },
            )
            .unwrap(),
        );
        let (_link_tx, link) = watch::channel(LinkState {
            connected: true,
            epoch: 1,
        });
        let state = HealthState {
            site: "lab".into(),
            agent: "a1".into(),
            boot: outbox.boot_id(),
            outbox: outbox.clone(),
            link,
            published: Arc::new(PublisherStats::default()),
            presence: watch::channel(Presence::Online).1,
            commands: None,
        };
        assert_eq!(snapshot(&state)["status"], "ok");
        disk.set_full(true);
        outbox
            .append(Measurement::Result(ProbeResult {
                seq: 0,
                probe: "web".into(),
                kind: "http".into(),
                target: "http://x/".into(),
                observed_ms: 1_800_000_000_000,
                interval_ms: 1_000,
                state: ProbeState::Up,
                latency_us: 1,
                error: None,
                metrics: Vec::new(),
            }))
            .unwrap();
        assert!(outbox.ensure_durable().await.is_err());
        let body = snapshot(&state);
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["reasons"], json!(["outbox store failing"]));
        assert_eq!(body["outbox"]["store"]["failing"], true);
        assert_eq!(body["outbox"]["store"]["episodes"], 1);
        disk.set_full(false);
        assert!(outbox.recover());
        let body = snapshot(&state);
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(body["outbox"]["store"]["lost_entries"], 1, "{body}");
    }
}
