//! Incidents: rules turn breaches into one incident per cause (its dedup key), with a lifecycle
//! (open → acknowledged → resolved), a durable timeline, flap detection, inhibition, and
//! notifications to webhooks from a durable outbox.
//!
//! - [`policy`]: `[incidents]`, per-service overrides, `[[webhooks]]`.
//! - [`conditions`]: what each rule sees at an instant, read from the store (pure given the
//!   store and `now`, so tests drive it on a virtual clock).
//! - [`flapping`]: percent state change with hysteresis.
//! - [`engine`]: the lifecycle: conditions in, incident records and notifications out.
//! - [`record`]: the incident record and its durable home.
//! - [`notify`]: webhook delivery with retries from the notification outbox.

pub mod conditions;
pub mod engine;
pub mod flapping;
pub mod notify;
pub mod policy;
pub mod record;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use watchstand_shared::wire::v1::AgentState;

use crate::config::Catalogue;
use crate::registry::Registry;
use crate::store::Store;

use crate::config::Criticality;

/// Incident priority, from the service's criticality (P1 most urgent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Critical service.
    P1,
    /// High.
    P2,
    /// Medium.
    P3,
    /// Low.
    P4,
}

impl From<Criticality> for Priority {
    fn from(c: Criticality) -> Self {
        match c {
            Criticality::Critical => Priority::P1,
            Criticality::High => Priority::P2,
            Criticality::Medium => Priority::P3,
            Criticality::Low => Priority::P4,
        }
    }
}

/// Which rule opened an incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Rule {
    /// The service is down (`down_after` consecutive evaluations).
    ServiceDown,
    /// An error-budget burn-rate alert (by its name: `fast`, `slow`).
    BurnRate(String),
    /// The latency objective is missed over the latency window.
    Latency,
    /// The SLO window's error budget is spent.
    SlaBelowTarget,
    /// Every agent measuring the service is offline: it is not measured.
    Unmonitored,
    /// An agent is offline (last will, or silence past 3 × its slowest interval).
    AgentOffline,
}

impl Rule {
    /// Short name for keys and displays.
    pub fn key_part(&self) -> String {
        match self {
            Rule::ServiceDown => "service_down".into(),
            Rule::BurnRate(name) => format!("burn_rate.{name}"),
            Rule::Latency => "latency".into(),
            Rule::SlaBelowTarget => "sla_below_target".into(),
            Rule::Unmonitored => "unmonitored".into(),
            Rule::AgentOffline => "agent_offline".into(),
        }
    }
}

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    /// Open, nobody has taken it.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Over.
    Resolved,
}

impl IncidentState {
    /// Open or acknowledged.
    pub const fn is_active(self) -> bool {
        !matches!(self, IncidentState::Resolved)
    }

    /// As written in APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for IncidentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "acknowledged" => Ok(Self::Acknowledged),
            "resolved" => Ok(Self::Resolved),
            other => Err(format!("{other:?} is not open, acknowledged or resolved")),
        }
    }
}

/// The engine shared by the evaluator and the API (actions by people).
pub type SharedEngine = Arc<Mutex<engine::Engine>>;

/// Evaluates every rule at `now` and applies the result; returns what changed.
///
/// # Errors
/// Store failure.
pub fn evaluate_once(
    engine: &SharedEngine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    now: u64,
) -> crate::store::Result<Vec<engine::Change>> {
    let agents = registry.snapshot();
    let mut e = engine.lock().unwrap_or_else(PoisonError::into_inner);
    let every = e.settings().evaluate_every_ms;
    let policy = |s: &str| e.policy(s);
    let found = conditions::conditions(store, catalogue, &agents, &policy, every, now)?;
    let offline: Vec<String> = agents
        .iter()
        .filter(|a| a.state_at(now) == AgentState::Offline)
        .map(|a| a.agent.clone())
        .collect();
    let topology = |service: &str| {
        catalogue
            .get(service)
            .map_or((Vec::new(), Vec::new()), |s| {
                (
                    s.depends_on.clone(),
                    s.probes.iter().map(|p| p.agent.clone()).collect(),
                )
            })
    };
    e.evaluate(now, &found, &offline, &topology)
}

/// Evaluates the rules every `evaluate_every` until `shutdown`, logging what changed.
pub async fn run_evaluator(
    engine: SharedEngine,
    store: Store,
    catalogue: Arc<Catalogue>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let every = {
        let e = engine.lock().unwrap_or_else(PoisonError::into_inner);
        std::time::Duration::from_millis(e.settings().evaluate_every_ms)
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (e, s, c, r) = (
            engine.clone(),
            store.clone(),
            catalogue.clone(),
            registry.clone(),
        );
        let now = watchstand_shared::time::now_ms();
        match tokio::task::spawn_blocking(move || evaluate_once(&e, &s, &c, &r, now)).await {
            Ok(Ok(changes)) => {
                for change in changes {
                    match change {
                        engine::Change::Opened(id, key) => {
                            tracing::warn!(id, key = %key, "Incident opened.")
                        }
                        engine::Change::Resolved(id, key) => {
                            tracing::info!(id, key = %key, "Incident resolved.")
                        }
                        engine::Change::FlappingStarted(id) => {
                            tracing::warn!(id, "Incident flapping; notifications held.")
                        }
                        engine::Change::FlappingStopped(id) => {
                            tracing::info!(id, "Incident stopped flapping.")
                        }
                        engine::Change::Notified(id, event, receiver) => {
                            tracing::debug!(id, event = %event, receiver = %receiver, "Notification queued.");
                        }
                        engine::Change::Held(id, event) => {
                            tracing::info!(id, event = %event, "Notification held back.")
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Incident evaluation failed; retrying next round.")
            }
            Err(e) => tracing::error!(error = %e, "Incident evaluation task failed."),
        }
    }
}
