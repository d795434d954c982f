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

use serde::{Deserialize, Serialize};

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
