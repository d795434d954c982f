//! Capacity incidents: the two capacity rules, judged by the engine task every
//! `[capacity.incidents] evaluate_every` (an `EngineEvent::CapacityTick` from its own timer, not
//! per sample), for every agent the registry knows and every metric of it that has a threshold
//! (see [`super::settings`]). Each gives one condition per agent and metric; the incident
//! engine ([`crate::incident::engine`]) opens, notifies and resolves them like every other
//! incident (dedup key `capacity_threshold:{agent}:{metric}` / `capacity_forecast:{agent}:{metric}`,
//! resolved after `[incidents] resolve_after` of evaluations that find the rule clear).
//!
//! - **Threshold** (priority P3): the newest raw sample is at or above the threshold, is no
//!   older than `threshold_for`, and every sample back to at least `threshold_for` before it
//!   is at or above the threshold too ([`above_for`]). Judged on the raw samples of the last
//!   3 × `threshold_for` (cheap: a few dozen samples).
//! - **Forecast** (priority P4): the metric's forecast over `[capacity] window` (read from the
//!   coarsest rollup that resolves it, as the API's) alarms under
//!   [`super::forecast::alarms`]: already above, or crossing with the late end of its 80 %
//!   interval within `forecast_within` of now and R² ≥ `forecast_min_r_squared`.
//!
//! An active capacity incident whose metric no longer has samples or a threshold is judged
//! clear (its rule is no longer true), so it resolves instead of staying open forever.

use std::collections::BTreeSet;

use super::forecast::{self, Outcome};
use super::report::{self, CapacityContext};
use crate::human::format_time;
use crate::incident::conditions::{key, Condition};
use crate::incident::engine::{Change, Engine};
use crate::incident::{Priority, Rule};
use crate::store::{Result, Store};

/// Priority of a threshold incident.
pub const THRESHOLD_PRIORITY: Priority = Priority::P3;
/// Priority of a forecast incident.
pub const FORECAST_PRIORITY: Priority = Priority::P4;

/// Since when the samples (any order) have been at or above `threshold`, if that is true at
/// the newest one for at least `for_ms` and the newest is no older than `for_ms` at `now_ms`:
/// the time of the oldest sample of the trailing run at or above the threshold.
pub fn above_for(samples: &[(u64, f64)], threshold: f64, for_ms: u64, now_ms: u64) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| s.0);
    let newest = *sorted.last()?;
    if newest.1 < threshold || newest.0.saturating_add(for_ms) < now_ms {
        return None;
    }
    let since = sorted
        .iter()
        .rev()
        .take_while(|s| s.1 >= threshold)
        .last()
        .map_or(newest.0, |s| s.0);
    (newest.0 - since >= for_ms).then_some(since)
}

fn condition(rule: Rule, agent: &str, metric: &str, breached: bool, summary: String) -> Condition {
    let priority = match rule {
        Rule::CapacityForecast(_) => FORECAST_PRIORITY,
        _ => THRESHOLD_PRIORITY,
    };
    Condition {
        key: key(&rule, &format!("{agent}:{metric}")),
        rule,
        service: String::new(),
        agent: Some(agent.to_owned()),
        priority,
        breached,
        history: Vec::new(),
        partial: false,
        summary,
    }
}

/// The threshold condition of one metric at `now_ms`.
fn threshold_condition(
    store: &Store,
    ctx: &CapacityContext,
    agent: &str,
    metric: &str,
    threshold: f64,
    now_ms: u64,
) -> Result<Condition> {
    let for_ms = ctx.settings.incidents.threshold_for_ms;
    let samples =
        store.capacity_series(agent, metric, now_ms.saturating_sub(3 * for_ms), u64::MAX)?;
    let since = above_for(&samples, threshold, for_ms, now_ms);
    let newest = samples.iter().max_by_key(|s| s.0).map_or(f64::NAN, |s| s.1);
    let summary = match since {
        Some(since) => format!(
            "{metric} on {agent} at {newest} ≥ {threshold} since {}",
            format_time(since, false)
        ),
        None => format!("{metric} on {agent} below {threshold}"),
    };
    Ok(condition(
        Rule::CapacityThreshold(metric.to_owned()),
        agent,
        metric,
        since.is_some(),
        summary,
    ))
}

/// The forecast condition of one metric at `now_ms`.
fn forecast_condition(
    store: &Store,
    ctx: &CapacityContext,
    agent: &str,
    metric: &str,
    now_ms: u64,
) -> Result<Option<Condition>> {
    let from = now_ms.saturating_sub(ctx.settings.window_ms);
    let view = report::forecast_view(store, ctx, agent, metric, from, now_ms, now_ms)?;
    let Some(f) = view.forecast else {
        return Ok(None);
    };
    let rule = &ctx.settings.incidents.alarm;
    let breached = forecast::alarms(&f, rule, now_ms);
    let r2 = f
        .fit
        .map_or(String::new(), |fit| format!(", R² {:.2}", fit.r_squared));
    let summary = match f.outcome {
        Outcome::Crossing {
            date_ms,
            earliest_ms,
            latest_ms,
        } => format!(
            "{metric} on {agent} projected to reach {} on {} (80 % interval {} – {}{r2})",
            f.threshold,
            format_time(date_ms, false),
            format_time(earliest_ms, false),
            format_time(latest_ms, false),
        ),
        Outcome::AlreadyAbove { value } => format!(
            "{metric} on {agent}: the newest daily point {value} is at or above {}",
            f.threshold
        ),
        ref other => format!("{metric} on {agent}: {}", other.name()),
    };
    Ok(Some(condition(
        Rule::CapacityForecast(metric.to_owned()),
        agent,
        metric,
        breached,
        summary,
    )))
}

/// Both capacity conditions of every metric with a threshold of every agent in `agents` at
/// `now_ms`, and a clear condition for each key in `active` that has none.
///
/// # Errors
/// Store failure or a corrupt rollup bucket.
pub fn conditions(
    store: &Store,
    ctx: &CapacityContext,
    agents: &[String],
    active: &[(String, Rule, String)],
    now_ms: u64,
) -> Result<Vec<Condition>> {
    let mut out = Vec::new();
    for agent in agents {
        for metric in store.capacity_metrics(agent)? {
            let Some(threshold) = ctx.settings.threshold(agent, &metric) else {
                continue;
            };
            out.push(threshold_condition(
                store, ctx, agent, &metric, threshold, now_ms,
            )?);
            out.extend(forecast_condition(store, ctx, agent, &metric, now_ms)?);
        }
    }
    let seen: BTreeSet<String> = out.iter().map(|c| c.key.clone()).collect();
    for (key, rule, agent) in active {
        if seen.contains(key) {
            continue;
        }
        let metric = rule.metric().unwrap_or_default().to_owned();
        let mut c = condition(
            rule.clone(),
            agent,
            &metric,
            false,
            format!("{metric} on {agent}: no samples or no threshold"),
        );
        c.key.clone_from(key);
        out.push(c);
    }
    Ok(out)
}

/// Judges the capacity rules at `now_ms` for `agents` and applies them to the engine; returns
/// what changed.
///
/// # Errors
/// Store failure or a corrupt rollup bucket (nothing of this evaluation is kept).
pub fn evaluate(
    engine: &mut Engine,
    store: &Store,
    ctx: &CapacityContext,
    agents: &[String],
    now_ms: u64,
) -> Result<Vec<Change>> {
    let active: Vec<(String, Rule, String)> = engine
        .active()
        .filter(|i| i.rule.metric().is_some())
        .map(|i| {
            (
                i.dedup_key.clone(),
                i.rule.clone(),
                i.agent.clone().unwrap_or_default(),
            )
        })
        .collect();
    let found = conditions(store, ctx, agents, &active, now_ms)?;
    engine.evaluate(now_ms, &found, &[], &|_| (Vec::new(), Vec::new()))
}

#[cfg(test)]
mod tests;
