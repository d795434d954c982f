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
//! - [`trigger`]: ingest's hand-over of services whose probes changed state.
//!
//! The evaluator ([`run_evaluator`]) evaluates every rule every `evaluate_every`, and in
//! between evaluates the service-down rule of the services ingest reports a probe state change
//! for (coalesced: one evaluation at a time, requests made meanwhile make one more). A service
//! found down but not yet for `down_after` instants is looked at again one `evaluate_every`
//! later, so `down_after = N` opens (N − 1) × `evaluate_every` after the first down result
//! arrived, whatever the tick's phase. A change that queues a notification wakes the notifier.

pub mod conditions;
pub mod engine;
pub mod flapping;
pub mod notify;
pub mod policy;
pub mod record;
#[cfg(test)]
mod tests;
pub mod trigger;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchstand_shared::wire::v1::AgentState;

use crate::config::Catalogue;
use crate::registry::{AgentRecord, Registry};
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

/// Applies conditions found at `now` to the engine, with the registry's view of agents.
fn apply(
    e: &mut engine::Engine,
    catalogue: &Catalogue,
    agents: &[AgentRecord],
    found: &[conditions::Condition],
    now: u64,
) -> crate::store::Result<Vec<engine::Change>> {
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
    e.evaluate(now, found, &offline, &topology)
}

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
    let found = {
        let policy = |s: &str| e.policy(s);
        conditions::conditions(store, catalogue, &agents, &policy, every, now)?
    };
    apply(&mut e, catalogue, &agents, &found, now)
}

/// Evaluates the service-down rule of `services` at `now` (an event-driven evaluation) and
/// applies the result; returns what changed and the services that are down but not yet for
/// `down_after` instants (to look at again one `evaluate_every` later).
///
/// # Errors
/// Store failure.
pub fn evaluate_services(
    engine: &SharedEngine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    services: &BTreeSet<String>,
    now: u64,
) -> crate::store::Result<(Vec<engine::Change>, Vec<String>)> {
    let agents = registry.snapshot();
    let mut e = engine.lock().unwrap_or_else(PoisonError::into_inner);
    let every = e.settings().evaluate_every_ms;
    let (found, pending) = {
        let policy = |s: &str| e.policy(s);
        conditions::service_down_conditions(store, catalogue, services, &policy, every, now)?
    };
    Ok((apply(&mut e, catalogue, &agents, &found, now)?, pending))
}

/// Logs what an evaluation changed; returns whether it queued a notification.
fn log_changes(changes: Vec<engine::Change>) -> bool {
    let mut queued = false;
    for change in changes {
        match change {
            engine::Change::Opened(id, key) => tracing::warn!(id, key = %key, "Incident opened."),
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
                queued = true;
                tracing::debug!(id, event = %event, receiver = %receiver, "Notification queued.");
            }
            engine::Change::Held(id, event) => {
                tracing::info!(id, event = %event, "Notification held back.")
            }
        }
    }
    queued
}

/// What the evaluator does next.
enum Work {
    /// Every rule of every service (the periodic tick).
    All,
    /// The service-down rule of these services (state changes, follow-ups).
    Services(BTreeSet<String>),
}

/// What wakes the evaluator besides its tick, and whom it wakes.
#[derive(Debug, Clone, Default)]
pub struct EvaluatorLinks {
    /// Services ingest saw a probe state change for.
    pub trigger: Arc<trigger::EvaluationTrigger>,
    /// Woken when an evaluation queued a notification (the notifier sends it at once).
    pub notifier: Arc<Notify>,
}

/// Evaluates the rules every `evaluate_every`, and the service-down rule of services with a
/// probe state change as soon as ingest reports it (one evaluation at a time; requests made
/// meanwhile coalesce into one more), until `shutdown`, logging what changed.
pub async fn run_evaluator(
    engine: SharedEngine,
    store: Store,
    catalogue: Arc<Catalogue>,
    registry: Arc<Registry>,
    links: EvaluatorLinks,
    shutdown: CancellationToken,
) {
    let every = {
        let e = engine.lock().unwrap_or_else(PoisonError::into_inner);
        std::time::Duration::from_millis(e.settings().evaluate_every_ms)
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Services down but not yet for `down_after` instants: when to look at them again.
    let mut follow_ups: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let next_follow_up = follow_ups.values().min().copied();
        let follow_up = async move {
            match next_follow_up {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let work = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = tick.tick() => Work::All,
            services = links.trigger.next() => Work::Services(services),
            () = follow_up => {
                let now = Instant::now();
                let due: BTreeSet<String> = follow_ups
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(s, _)| s.clone())
                    .collect();
                follow_ups.retain(|s, _| !due.contains(s));
                Work::Services(due)
            }
        };
        let (e, s, c, r) = (
            engine.clone(),
            store.clone(),
            catalogue.clone(),
            registry.clone(),
        );
        let now = watchstand_shared::time::now_ms();
        let outcome = match work {
            Work::All => {
                tokio::task::spawn_blocking(move || {
                    evaluate_once(&e, &s, &c, &r, now).map(|ch| (ch, Vec::new()))
                })
                .await
            }
            Work::Services(services) => {
                tokio::task::spawn_blocking(move || {
                    evaluate_services(&e, &s, &c, &r, &services, now)
                })
                .await
            }
        };
        match outcome {
            Ok(Ok((changes, pending))) => {
                if log_changes(changes) {
                    links.notifier.notify_one();
                }
                let again = Instant::now() + every;
                for service in pending {
                    follow_ups.entry(service).or_insert(again);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Incident evaluation failed; retrying next round.")
            }
            Err(e) => tracing::error!(error = %e, "Incident evaluation task failed."),
        }
    }
}
