//! Incidents: rules turn breaches into one incident per cause (its dedup key), with a lifecycle
//! (open → acknowledged → resolved), a durable timeline, flap detection, inhibition, and
//! notifications to webhooks from a durable outbox.
//!
//! - [`policy`]: `[incidents]`, per-service overrides, `[[webhooks]]`.
//! - [`conditions`]: what each rule sees at an instant, read from the store (pure given the
//!   store and `now`, so tests drive it on a virtual clock).
//! - [`flapping`]: percent state change with hysteresis.
//! - [`late`]: outages the data shows that no live evaluation saw (late or replayed results).
//! - [`engine`]: the lifecycle: conditions in, incident records and notifications out.
//! - [`record`]: the incident record and its durable home.
//! - [`notify`]: webhook delivery with retries from the notification outbox.
//! - [`trigger`]: ingest's side of the hand-over of services whose probes changed state.
//! - [`presence`]: since when the collector hears its agents (agent silence counts only then).
//!
//! The engine task ([`crate::engine`]) owns the [`engine::Engine`] and calls the evaluations
//! here: every rule every `evaluate_every` ([`evaluate_once`]), and in between the service-down
//! rule of the services ingest reports a probe state change for ([`evaluate_services`];
//! coalesced: a burst of changes makes one evaluation). A service found down but not yet for
//! `down_after` instants is looked at again one `evaluate_every` later, so `down_after = N`
//! opens (N − 1) × `evaluate_every` after the first down result arrived, whatever the tick's
//! phase. A change that queues a notification wakes the notifier.

pub mod conditions;
pub mod engine;
pub mod flapping;
pub mod late;
pub mod notify;
pub mod policy;
pub mod presence;
pub mod record;
pub mod stats;
#[cfg(test)]
mod tests;
pub mod trigger;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
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
    /// A capacity metric (by its name) at or above its threshold for `threshold_for`
    /// (see [`crate::capacity::incidents`]).
    CapacityThreshold(String),
    /// A capacity metric (by its name) forecast to cross its threshold within
    /// `forecast_within` (see [`crate::capacity::incidents`]).
    CapacityForecast(String),
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
            Rule::CapacityThreshold(_) => "capacity_threshold".into(),
            Rule::CapacityForecast(_) => "capacity_forecast".into(),
        }
    }

    /// The capacity metric of a capacity rule.
    pub fn metric(&self) -> Option<&str> {
        match self {
            Rule::CapacityThreshold(m) | Rule::CapacityForecast(m) => Some(m),
            _ => None,
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

/// The agents offline at `now` in `agents`.
fn offline_now(agents: &[AgentRecord], now: u64) -> Vec<String> {
    agents
        .iter()
        .filter(|a| a.state_at(now) == AgentState::Offline)
        .map(|a| a.agent.clone())
        .collect()
}

/// A service's (depends_on, agents measuring it), for inhibition.
fn topology_of(catalogue: &Catalogue, service: &str) -> (Vec<String>, Vec<String>) {
    catalogue
        .get(service)
        .map_or((Vec::new(), Vec::new()), |s| {
            (
                s.depends_on.clone(),
                s.probes.iter().map(|p| p.agent.clone()).collect(),
            )
        })
}

/// Applies conditions found at `now` to the engine, with the registry's view of agents.
fn apply(
    e: &mut engine::Engine,
    catalogue: &Catalogue,
    agents: &[AgentRecord],
    found: &[conditions::Condition],
    now: u64,
) -> crate::store::Result<Vec<engine::Change>> {
    let offline = offline_now(agents, now);
    let topology = |service: &str| topology_of(catalogue, service);
    e.evaluate(now, found, &offline, &topology)
}

/// Evaluates every rule at `now` and applies the result; returns what changed. Agent silence
/// counts only over time the collector heard its agents (see [`presence`]).
///
/// # Errors
/// Store failure.
pub fn evaluate_once(
    e: &mut engine::Engine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    hearing: presence::Hearing,
    now: u64,
) -> crate::store::Result<Vec<engine::Change>> {
    let agents = presence::watched(registry.snapshot(), hearing, now);
    let every = e.settings().evaluate_every_ms;
    let found = {
        let policy = |s: &str| e.policy(s);
        conditions::conditions(store, catalogue, &agents, &policy, every, now)?
    };
    apply(e, catalogue, &agents, &found, now)
}

/// Evaluates the service-down rule of `services` at `now` (an event-driven evaluation) and
/// applies the result; returns what changed and the services that are down but not yet for
/// `down_after` instants (to look at again one `evaluate_every` later).
///
/// # Errors
/// Store failure.
pub fn evaluate_services(
    e: &mut engine::Engine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    hearing: presence::Hearing,
    services: &BTreeSet<String>,
    now: u64,
) -> crate::store::Result<(Vec<engine::Change>, Vec<String>)> {
    let agents = presence::watched(registry.snapshot(), hearing, now);
    let every = e.settings().evaluate_every_ms;
    let (found, pending) = {
        let policy = |s: &str| e.policy(s);
        conditions::service_down_conditions(store, catalogue, services, &policy, every, now)?
    };
    Ok((apply(e, catalogue, &agents, &found, now)?, pending))
}

/// Looks in the data of the `late` ranges for outages no live evaluation saw and records them
/// (see [`late`]); returns what changed and the ranges to look at again later (a down stretch
/// whose end has not arrived yet).
///
/// # Errors
/// Store failure.
pub fn evaluate_late(
    e: &mut engine::Engine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    hearing: presence::Hearing,
    late_ranges: &trigger::LateRanges,
    now: u64,
) -> crate::store::Result<(Vec<engine::Change>, trigger::LateRanges)> {
    if late_ranges.is_empty() {
        return Ok((Vec::new(), trigger::LateRanges::new()));
    }
    let agents = presence::watched(registry.snapshot(), hearing, now);
    let every = e.settings().evaluate_every_ms;
    let mut outages = Vec::new();
    let mut again = trigger::LateRanges::new();
    for (service, range) in late_ranges {
        let Some(s) = catalogue.get(service) else {
            continue;
        };
        let scan = late::scan(store, s, &e.policy(service), every, *range, now)?;
        if scan.unfinished {
            again.insert(service.clone(), *range);
        }
        outages.extend(scan.outages);
    }
    let offline = offline_now(&agents, now);
    let topology = |service: &str| topology_of(catalogue, service);
    Ok((e.record_late(now, &outages, &offline, &topology)?, again))
}

/// Logs what an evaluation changed; returns whether it queued a notification.
pub(crate) fn log_changes(changes: Vec<engine::Change>) -> bool {
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
            engine::Change::FoundLate(id, key) => {
                tracing::warn!(id, key = %key, "Incident found late in the data; recorded with its own times.")
            }
            engine::Change::Held(id, event) => {
                tracing::info!(id, event = %event, "Notification held back.")
            }
        }
    }
    queued
}

/// How long a late range whose outage has no end in the data yet is looked at again.
pub const LATE_RETRY_MS: u64 = 3_600_000;
