//! What each rule sees at an instant: for every service and agent, whether its rules are
//! breached at `now`, read from the store. Pure given the store, the registry snapshot and `now`
//! (no clock inside), so rules are tested on a virtual clock by writing data and calling
//! [`conditions`] at chosen instants.
//!
//! "Service down" is judged on the service's state at the last `down_after` evaluation instants
//! (`now`, `now − every`, …), recomputed from stored data, so it needs no memory across
//! evaluations or restarts; unknown instants (no data, agent offline) never count as down. The
//! instants are counted back from the evaluation's own `now`, whether a periodic tick or a
//! state change caused it, so an extra (event-driven) evaluation never shortens `down_after`:
//! the service must still be down at `down_after` instants `every` apart.
//!
//! The window rules (burn rates, SLA below target) judge the SLA report of their window, so a
//! drill's non-up time is `drill` there, as in the availability figures: neither good nor bad
//! time, out of the budget arithmetic. Service down still sees the raw state: a drill's
//! outage opens an incident, which the engine marks as a drill incident and holds.

use std::collections::BTreeSet;

use watchstand_shared::wire::v1::AgentState;

use super::policy::IncidentPolicy;
use super::{Priority, Rule};
use crate::availability;
use crate::config::{Catalogue, Service};
use crate::registry::AgentRecord;
use crate::sla::{self, ServiceClass, Span};
use crate::store::{Result, Store};

/// Fewest checks in the latency window before the latency rule judges.
pub const MIN_LATENCY_CHECKS: u64 = 10;

/// One rule for one subject at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `rule:subject`, one incident per key at a time.
    pub key: String,
    /// The rule.
    pub rule: Rule,
    /// Service id (empty for agent rules).
    pub service: String,
    /// Agent id, for agent rules.
    pub agent: Option<String>,
    /// Priority if it opens.
    pub priority: Priority,
    /// Breached now.
    pub breached: bool,
    /// Breached-or-not at the last evaluation instants with data, oldest first (flap detection;
    /// service-down only).
    pub history: Vec<bool>,
    /// Some vantage points down while the service holds (impact `partial`).
    pub partial: bool,
    /// One line for people.
    pub summary: String,
}

/// The service's class and partial-outage flag at instant `t` (the class of `[t − 1 ms, t)`).
fn class_at(service: &Service, inputs: &[sla::ProbeInput], t: u64) -> (ServiceClass, bool) {
    let span = Span {
        from_ms: t.saturating_sub(1),
        to_ms: t,
    };
    sla::service_segments(&service.sla, inputs, &[], span)
        .last()
        .map_or((ServiceClass::Unknown, false), |s| {
            (s.class, s.partial_outage)
        })
}

/// Has `service` been measured up (its class as the SLA and the service-down rule see it) over
/// all of `[now − hold_ms, now]`? With `hold_ms = 0`: is it up at `now`. Runbooks' `wait_for`
/// steps judge recovery with this, from the same stored probe stream as incidents.
///
/// # Errors
/// Store failure.
pub fn measured_up_for(store: &Store, service: &Service, hold_ms: u64, now: u64) -> Result<bool> {
    let span = Span {
        from_ms: now.saturating_sub(hold_ms.max(1)),
        to_ms: now,
    };
    let inputs = availability::probe_inputs(store, service, span)?;
    let segments = sla::service_segments(&service.sla, &inputs, &[], span);
    Ok(!segments.is_empty() && segments.iter().all(|s| s.class == ServiceClass::Up))
}

/// How fast a service burns its error budget over one window ending at an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    /// `downtime / (uptime + downtime) / (1 − target/100)`: 1.0 spends the budget exactly over
    /// the window's length; `None` with nothing measured (or a 100 % target).
    pub rate: Option<f64>,
    /// The window's measured share ([`sla::SlaReport::coverage_pct`], 0 when undefined).
    pub coverage_pct: f64,
}

/// The burn rate of `s` over `[now − len_ms, now)`, from the same SLA report as the
/// availability figures: maintenance and drill time (a drill's non-up time, see
/// [`crate::drill::spans`]) are neither good nor bad time, so they are left out of both
/// `uptime` and `downtime` and out of the coverage's denominator. A drill cannot open a burn-rate
/// incident or spend budget.
///
/// # Errors
/// Store failure.
pub fn burn(store: &Store, s: &Service, len_ms: u64, now: u64) -> Result<Burn> {
    let span = Span {
        from_ms: now.saturating_sub(len_ms),
        to_ms: now,
    };
    let r = availability::service_report(store, s, span)?;
    let budget_fraction = 1.0 - s.sla.target_pct / 100.0;
    let measured = r.uptime_s + r.downtime_s;
    let rate = (measured > 0.0 && budget_fraction > 0.0)
        .then(|| r.downtime_s / measured / budget_fraction);
    Ok(Burn {
        rate,
        coverage_pct: r.coverage_pct.unwrap_or(0.0),
    })
}

/// The dedup key of `rule` for `subject`.
pub(crate) fn key(rule: &Rule, subject: &str) -> String {
    format!("{}:{subject}", rule.key_part())
}

/// The service-down condition of `s` at `now` (with its flap history), and the service's class
/// at `now`.
///
/// # Errors
/// Store failure.
pub fn service_down(
    store: &Store,
    s: &Service,
    p: &IncidentPolicy,
    every_ms: u64,
    now: u64,
) -> Result<(Condition, ServiceClass)> {
    let samples = p.flapping.window.max(p.down_after as usize);
    let look_back = every_ms * samples as u64;
    let span = Span {
        from_ms: now.saturating_sub(look_back),
        to_ms: now,
    };
    let inputs = availability::probe_inputs(store, s, span)?;
    let instants: Vec<(ServiceClass, bool)> = (0..samples as u64)
        .rev()
        .map(|k| class_at(s, &inputs, now.saturating_sub(k * every_ms)))
        .collect();
    let (class_now, partial_now) = instants
        .last()
        .copied()
        .unwrap_or((ServiceClass::Unknown, false));
    let down_run = instants
        .iter()
        .rev()
        .take(p.down_after as usize)
        .all(|(c, _)| *c == ServiceClass::Down);
    let rule = Rule::ServiceDown;
    let c = Condition {
        key: key(&rule, &s.id),
        rule,
        service: s.id.clone(),
        agent: None,
        priority: Priority::from(s.criticality),
        breached: down_run,
        history: instants
            .iter()
            .filter(|(class, _)| !matches!(class, ServiceClass::Unknown))
            .map(|(class, _)| *class == ServiceClass::Down)
            .collect(),
        partial: partial_now,
        summary: format!(
            "{} is down ({} consecutive evaluations)",
            s.name, p.down_after
        ),
    };
    Ok((c, class_now))
}

/// The service-down conditions of `services` only, for an event-driven evaluation (the other
/// rules judge windows and stay on the periodic tick). Also returns the services that are down
/// at `now` without being breached yet (`down_after` > 1): the evaluator looks at them again
/// one `every_ms` later.
///
/// # Errors
/// Store failure.
pub fn service_down_conditions(
    store: &Store,
    catalogue: &Catalogue,
    services: &BTreeSet<String>,
    policy: &dyn Fn(&str) -> IncidentPolicy,
    every_ms: u64,
    now: u64,
) -> Result<(Vec<Condition>, Vec<String>)> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for s in catalogue
        .services
        .iter()
        .filter(|s| services.contains(&s.id))
    {
        let (c, class_now) = service_down(store, s, &policy(&s.id), every_ms, now)?;
        if class_now == ServiceClass::Down && !c.breached {
            pending.push(s.id.clone());
        }
        out.push(c);
    }
    Ok((out, pending))
}

/// Every condition at `now`. `policy(service)` gives the service's rules; `agents` is the
/// registry snapshot; `every_ms` the evaluation interval.
///
/// # Errors
/// Store failure.
pub fn conditions(
    store: &Store,
    catalogue: &Catalogue,
    agents: &[AgentRecord],
    policy: &dyn Fn(&str) -> IncidentPolicy,
    every_ms: u64,
    now: u64,
) -> Result<Vec<Condition>> {
    let offline: BTreeSet<&str> = agents
        .iter()
        .filter(|a| a.state_at(now) == AgentState::Offline)
        .map(|a| a.agent.as_str())
        .collect();
    let mut out = Vec::new();
    for s in &catalogue.services {
        let p = policy(&s.id);
        let priority = Priority::from(s.criticality);
        let base = |rule: Rule, breached: bool, summary: String| Condition {
            key: key(&rule, &s.id),
            rule,
            service: s.id.clone(),
            agent: None,
            priority,
            breached,
            history: Vec::new(),
            partial: false,
            summary,
        };

        // Service down, with the flap history.
        let (c, class_now) = service_down(store, s, &p, every_ms, now)?;
        out.push(c);

        // Unmonitored: every agent measuring it is offline.
        let measuring: BTreeSet<&str> = s.probes.iter().map(|p| p.agent.as_str()).collect();
        let all_offline = measuring.iter().all(|a| offline.contains(a));
        out.push(base(
            Rule::Unmonitored,
            all_offline && class_now == ServiceClass::Unknown,
            format!("{} is not measured: its agents are offline", s.name),
        ));

        // Burn rates: both windows at or above the factor, and the long window covered by
        // data (a young service's first outage is not a month's budget burning).
        for w in &p.burn_rate {
            let long_burn = burn(store, s, w.long.as_millis(), now)?;
            let (long, long_coverage) = (long_burn.rate, long_burn.coverage_pct);
            let short = burn(store, s, w.short.as_millis(), now)?.rate;
            let breached = long_coverage >= p.burn_rate_min_coverage_pct
                && matches!((long, short), (Some(l), Some(sh)) if l >= w.factor && sh >= w.factor);
            out.push(base(
                Rule::BurnRate(w.name.clone()),
                breached,
                format!(
                    "{}: error budget burning at {:.1}× over {} and {:.1}× over {} (threshold {}×)",
                    s.name,
                    long.unwrap_or(0.0),
                    w.long,
                    short.unwrap_or(0.0),
                    w.short,
                    w.factor
                ),
            ));
        }

        // Latency objective over its window.
        if let Some(objective) = &s.sla.latency {
            let r = availability::service_report(
                store,
                s,
                Span {
                    from_ms: now.saturating_sub(p.latency_window_ms),
                    to_ms: now,
                },
            )?;
            let within = r.latency_within_pct;
            let breached =
                r.checks >= MIN_LATENCY_CHECKS && within.is_some_and(|w| w < objective.pct);
            out.push(base(
                Rule::Latency,
                breached,
                format!(
                    "{}: {:.2} % of checks within {} ms (objective {} %)",
                    s.name,
                    within.unwrap_or(100.0),
                    objective.latency_ms,
                    objective.pct
                ),
            ));
        }

        // The SLO window's error budget is spent.
        if p.sla_below_target {
            let mut r = availability::service_report(store, s, s.window.resolve(now))?;
            r.rebase_budget(s.window.period_ms(now));
            out.push(base(
                Rule::SlaBelowTarget,
                r.is_budget_spent(),
                format!(
                    "{}: error budget of the {} window spent ({:.4} % vs target {} %)",
                    s.name,
                    s.window_text,
                    r.availability_pct.unwrap_or(100.0),
                    s.sla.target_pct
                ),
            ));
        }
    }

    // Agents offline.
    for a in agents {
        let measures: Vec<&Service> = catalogue
            .services
            .iter()
            .filter(|s| s.probes.iter().any(|p| p.agent == a.agent))
            .collect();
        let priority = measures
            .iter()
            .map(|s| Priority::from(s.criticality))
            .min()
            .unwrap_or(Priority::P3);
        let rule = Rule::AgentOffline;
        out.push(Condition {
            key: key(&rule, &a.agent),
            rule,
            service: String::new(),
            agent: Some(a.agent.clone()),
            priority,
            breached: offline.contains(a.agent.as_str()),
            history: Vec::new(),
            partial: false,
            summary: format!("agent {} (site {}) is offline", a.agent, a.site),
        });
    }
    Ok(out)
}
