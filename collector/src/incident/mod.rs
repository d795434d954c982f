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
//! - [`trigger`]: ingest's hand-over of services whose probes changed state.
//! - [`presence`]: since when the collector hears its agents (agent silence counts only then).
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
pub mod late;
pub mod notify;
pub mod policy;
pub mod presence;
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
    engine: &SharedEngine,
    store: &Store,
    catalogue: &Catalogue,
    registry: &Registry,
    hearing: presence::Hearing,
    now: u64,
) -> crate::store::Result<Vec<engine::Change>> {
    let agents = presence::watched(registry.snapshot(), hearing, now);
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
    hearing: presence::Hearing,
    services: &BTreeSet<String>,
    now: u64,
) -> crate::store::Result<(Vec<engine::Change>, Vec<String>)> {
    let agents = presence::watched(registry.snapshot(), hearing, now);
    let mut e = engine.lock().unwrap_or_else(PoisonError::into_inner);
    let every = e.settings().evaluate_every_ms;
    let (found, pending) = {
        let policy = |s: &str| e.policy(s);
        conditions::service_down_conditions(store, catalogue, services, &policy, every, now)?
    };
    Ok((apply(&mut e, catalogue, &agents, &found, now)?, pending))
}

/// Looks in the data of the `late` ranges for outages no live evaluation saw and records them
/// (see [`late`]); returns what changed and the ranges to look at again later (a down stretch
/// whose end has not arrived yet).
///
/// # Errors
/// Store failure.
pub fn evaluate_late(
    engine: &SharedEngine,
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
    let mut e = engine.lock().unwrap_or_else(PoisonError::into_inner);
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
    /// Since when the collector hears its agents (the server reports broker connects).
    pub presence: Arc<presence::Presence>,
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
    let every_ms = engine
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .settings()
        .evaluate_every_ms;
    let every = std::time::Duration::from_millis(every_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Services down but not yet for `down_after` instants: when to look at them again.
    let mut follow_ups: BTreeMap<String, Instant> = BTreeMap::new();
    // Late ranges whose data showed a down stretch without its end yet: looked at again on
    // every tick for at most `LATE_RETRY_MS` after they were first handed over.
    let mut late_again: trigger::LateRanges = trigger::LateRanges::new();
    let mut late_since: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_wake_ms: Option<u64> = None;
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
        let now = watchstand_shared::time::now_ms();
        // A wake-up far later than the tick: the collector itself was frozen, and heard nobody.
        if last_wake_ms.is_some_and(|t| presence::is_freeze(t, now, every_ms)) {
            tracing::warn!(
                gap_ms = now.saturating_sub(last_wake_ms.unwrap_or(now)),
                "The collector was frozen; agents get a grace of their silence threshold."
            );
            links.presence.resumed(now);
        }
        last_wake_ms = Some(now);
        let hearing = links.presence.hearing();
        let mut late_ranges = links.trigger.take_late();
        for service in late_ranges.keys() {
            late_since.entry(service.clone()).or_insert(now);
        }
        if matches!(work, Work::All) {
            for (service, range) in std::mem::take(&mut late_again) {
                trigger::widen(&mut late_ranges, &service, range);
            }
        }
        let (e, s, c, r) = (
            engine.clone(),
            store.clone(),
            catalogue.clone(),
            registry.clone(),
        );
        // Kept to look again if this evaluation fails.
        let looked_at = late_ranges.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let (mut changes, again) = evaluate_late(&e, &s, &c, &r, hearing, &late_ranges, now)?;
            let (more, pending) = match work {
                Work::All => (evaluate_once(&e, &s, &c, &r, hearing, now)?, Vec::new()),
                Work::Services(services) => {
                    evaluate_services(&e, &s, &c, &r, hearing, &services, now)?
                }
            };
            changes.extend(more);
            Ok::<_, crate::store::StoreError>((changes, pending, again))
        })
        .await;
        match outcome {
            Ok(Ok((changes, pending, again))) => {
                if log_changes(changes) {
                    links.notifier.notify_one();
                }
                let next = Instant::now() + every;
                for service in pending {
                    follow_ups.entry(service).or_insert(next);
                }
                for (service, range) in again {
                    trigger::widen(&mut late_again, &service, range);
                }
                late_since.retain(|service, since| {
                    late_again.contains_key(service) && now.saturating_sub(*since) <= LATE_RETRY_MS
                });
                late_again.retain(|service, _| late_since.contains_key(service));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Incident evaluation failed; retrying next round.");
                late_again.extend(looked_at);
            }
            Err(e) => {
                tracing::error!(error = %e, "Incident evaluation task failed.");
                late_again.extend(looked_at);
            }
        }
    }
}
