//! `GET /metrics`: Prometheus text. Labels come from enums, the catalogue and the registry
//! (validated ids), never from free payload text, so cardinality stays bounded.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{AgentState, ProbeState};

use super::{ApiError, AppState};
use crate::availability;
use crate::events::names;

/// Prometheus text exposition, one family at a time.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            self.out.push('{');
            self.out.push_str(&l.join(","));
            self.out.push('}');
        }
        self.out.push_str(&format!(" {value}\n"));
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

/// What `/metrics` reads from the store for one service.
struct ServiceFigures {
    id: String,
    availability_pct: Option<f64>,
    target_pct: f64,
}

/// Renders every metric.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let now = now_ms();
    let st = state.clone();
    let (services, probes) = tokio::task::spawn_blocking(move || {
        let mut services = Vec::new();
        let mut probes = Vec::new();
        let jobs: Vec<_> = st
            .catalogue
            .services
            .iter()
            .map(|s| (s, s.window.resolve(now)))
            .collect();
        let reports = availability::service_reports(&st.store, &jobs);
        for (s, r) in st.catalogue.services.iter().zip(reports) {
            let r = r?;
            services.push(ServiceFigures {
                id: s.id.clone(),
                availability_pct: r.availability_pct,
                target_pct: r.target_pct,
            });
            for p in &s.probes {
                // The last result, if it still holds (2 × interval): 1 up or degraded, 0 down.
                let last = st.store.observations(&p.agent, &p.probe, now, now)?.pop();
                if let Some(r) = last.filter(|r| r.observed_ms + 2 * r.interval_ms >= now) {
                    probes.push((
                        p.agent.clone(),
                        p.probe.clone(),
                        u8::from(r.state != ProbeState::Down),
                    ));
                }
            }
        }
        probes.sort();
        probes.dedup();
        Ok::<_, anyhow::Error>((services, probes))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;

    let c = &state.counters;
    let mut m = Exposition::default();
    let verdict = super::routes::verdict(&state).await?;
    m.family(
        "watchstand_health_status",
        "gauge",
        "The collector's health: 0 ok, 1 degraded, 2 failing (as /api/v1/health).",
    );
    m.sample("watchstand_health_status", &[], verdict.status.gauge());
    m.family(
        "watchstand_health_reason",
        "gauge",
        "1 for each reason the health is not ok, 0 for the others.",
    );
    for reason in crate::health::REASONS {
        let on = verdict.reasons.iter().any(|r| r.reason == reason);
        m.sample(
            "watchstand_health_reason",
            &[("reason", reason)],
            u8::from(on),
        );
    }
    let inbox = state.health.inbox();
    m.family(
        "watchstand_ingest_waiting_messages",
        "gauge",
        "MQTT messages received and waiting for ingest.",
    );
    m.sample("watchstand_ingest_waiting_messages", &[], inbox.messages);
    m.counter(
        names::MESSAGES_RECEIVED,
        "MQTT messages received by ingest.",
        c.messages.load(Relaxed),
    );
    m.counter(
        names::ENTRIES_STORED,
        "Results and capacity samples stored.",
        c.results_stored.load(Relaxed) + c.samples_stored.load(Relaxed),
    );
    m.counter(
        names::DUPLICATES,
        "Duplicate entries dropped.",
        c.duplicates.load(Relaxed),
    );
    m.counter(
        names::GAP_RECORDS,
        "Gap records received.",
        c.gap_records.load(Relaxed),
    );
    m.counter(
        names::LOST_ENTRIES,
        "Entries agents declared lost.",
        c.lost_entries.load(Relaxed),
    );
    m.counter(
        names::BATCHES,
        "Ingest batches committed.",
        c.batches.load(Relaxed),
    );
    m.family(names::REJECTED, "counter", "Payloads rejected, by reason.");
    for (reason, n) in c.rejected() {
        m.sample(names::REJECTED, &[("reason", reason.as_str())], n);
    }
    m.family(
        "watchstand_sla_attainment_pct",
        "gauge",
        "Availability over the SLO window.",
    );
    for s in &services {
        if let Some(a) = s.availability_pct {
            m.sample("watchstand_sla_attainment_pct", &[("service", &s.id)], a);
        }
    }
    m.family("watchstand_sla_target_pct", "gauge", "Availability target.");
    for s in &services {
        m.sample(
            "watchstand_sla_target_pct",
            &[("service", &s.id)],
            s.target_pct,
        );
    }
    m.family("watchstand_probe_up", "gauge", "1 when the probe's last result (still holding) is up or degraded, 0 when down; absent when unknown.");
    for (agent, probe, up) in &probes {
        m.sample(
            "watchstand_probe_up",
            &[("agent", agent), ("probe", probe)],
            up,
        );
    }
    let open: Vec<(String, String)> = state
        .incidents
        .snapshot()
        .active
        .iter()
        .map(|i| (format!("{:?}", i.priority), i.rule.key_part()))
        .collect();
    m.family(
        "watchstand_incidents_open",
        "gauge",
        "Open or acknowledged incidents, by priority and rule.",
    );
    let mut counted: std::collections::BTreeMap<(String, String), u64> =
        std::collections::BTreeMap::new();
    for k in open {
        *counted.entry(k).or_default() += 1;
    }
    for ((priority, rule), n) in &counted {
        m.sample(
            "watchstand_incidents_open",
            &[("priority", priority), ("rule", rule)],
            n,
        );
    }
    let runbooks = state.incidents.snapshot().runbooks;
    m.family(
        "watchstand_runbook_runs_total",
        "counter",
        "Ended runbook runs, by runbook and final state (succeeded, failed, cancelled, skipped).",
    );
    for ((runbook, status), n) in &runbooks.ended {
        m.sample(
            "watchstand_runbook_runs_total",
            &[("runbook", runbook), ("status", status)],
            n,
        );
    }
    m.family(
        "watchstand_runbook_runs_running",
        "gauge",
        "Runbook runs in progress, by runbook.",
    );
    for book in state.runbooks.iter() {
        let n = runbooks.running.get(&book.id).copied().unwrap_or(0);
        m.sample(
            "watchstand_runbook_runs_running",
            &[("runbook", &book.id)],
            n,
        );
    }
    m.family(
        "watchstand_runbook_steps_total",
        "counter",
        "Steps of ended runbook runs, by runbook, step kind and final step state.",
    );
    for ((runbook, kind, status), n) in &runbooks.steps {
        m.sample(
            "watchstand_runbook_steps_total",
            &[("runbook", runbook), ("kind", kind), ("status", status)],
            n,
        );
    }
    m.family(
        "watchstand_agent_up",
        "gauge",
        "1 when the agent is online.",
    );
    for a in state.registry.snapshot() {
        let up = u8::from(a.state_at(now) == AgentState::Online);
        m.sample(
            "watchstand_agent_up",
            &[("agent", &a.agent), ("site", &a.site)],
            up,
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m.out))
}
