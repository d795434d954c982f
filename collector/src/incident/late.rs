//! Outages found late: when results arrive long after they were measured (a replay after a
//! partition, or after the collector itself was away), the live service-down rule never saw
//! them. This looks in the stored data of the services concerned for down stretches that would
//! have opened a service-down incident live (down for at least (`down_after` − 1) ×
//! `evaluate_every`), so the engine can record them with their own start and end
//! ([`super::engine::Engine::record_late`]).
//!
//! A stretch is judged once the data shows how it ended: followed by `up` (over), or reaching
//! `now` (still going on). A stretch followed only by unknown time may still be filled by data
//! on its way, so it is left for a later look ([`Scan::unfinished`]). Down stretches separated
//! by less than `resolve_after` are one outage, as they would be live. A stretch that starts
//! inside a drill window is that drill's outage ([`LateOutage::drill`]).

use super::conditions::{key, Condition};
use super::policy::IncidentPolicy;
use super::{Priority, Rule};
use crate::availability;
use crate::config::Service;
use crate::sla::{self, ServiceClass, Span};
use crate::store::{Result, Store};

/// Longest stretch of data looked at for one late range.
pub const MAX_LOOK_BACK_MS: u64 = 7 * watchstand_shared::time::DAY_MS;

/// A down stretch the data shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LateOutage {
    /// The service-down condition it would have breached.
    pub condition: Condition,
    /// First down instant, epoch ms.
    pub from_ms: u64,
    /// First instant up again; `None` while it goes on.
    pub to_ms: Option<u64>,
    /// The drill run whose window holds the outage's start: a drill's outage, found late, is a
    /// drill incident like one seen live.
    pub drill: Option<u64>,
}

/// What one look at the data found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// Outages whose end the data shows (or that go on now).
    pub outages: Vec<LateOutage>,
    /// A down stretch is followed only by unknown time: look again later.
    pub unfinished: bool,
}

/// Looks at the data of `s` around the late range `[range.0, range.1]` up to `now` for down
/// stretches long enough to be a service-down incident.
///
/// # Errors
/// Store failure.
pub fn scan(
    store: &Store,
    s: &Service,
    p: &IncidentPolicy,
    every_ms: u64,
    range: (u64, u64),
    now: u64,
) -> Result<Scan> {
    let margin = u64::from(p.down_after) * every_ms + p.resolve_after_ms;
    let span = Span {
        from_ms: range
            .0
            .saturating_sub(margin)
            .max(now.saturating_sub(MAX_LOOK_BACK_MS)),
        to_ms: now,
    };
    if span.from_ms >= span.to_ms {
        return Ok(Scan::default());
    }
    let inputs = availability::probe_inputs(store, s, span)?;
    let segments = sla::service_segments(&s.sla, &inputs, &[], span);
    // Down stretches, merged across gaps shorter than `resolve_after`.
    let mut stretches: Vec<(u64, u64)> = Vec::new();
    for seg in segments.iter().filter(|g| g.class == ServiceClass::Down) {
        match stretches.last_mut() {
            Some(last) if seg.span.from_ms <= last.1 + p.resolve_after_ms => {
                last.1 = seg.span.to_ms;
            }
            _ => stretches.push((seg.span.from_ms, seg.span.to_ms)),
        }
    }
    let shortest = u64::from(p.down_after.saturating_sub(1)) * every_ms;
    let drills: Vec<crate::drill::DrillRun> = crate::drill::DrillStore::new(store.clone())
        .all()?
        .into_iter()
        .filter(|r| r.service == s.id)
        .collect();
    let drill_at = |t: u64| {
        drills
            .iter()
            .find(|r| {
                r.window()
                    .is_some_and(|(from, to)| from <= t && to.is_none_or(|to| t < to))
            })
            .map(|r| r.id)
    };
    let mut out = Scan::default();
    for (from, to) in stretches {
        if to - from < shortest.max(1) {
            continue;
        }
        let ongoing = to >= span.to_ms;
        let over = segments
            .iter()
            .any(|g| g.class == ServiceClass::Up && g.span.from_ms >= to);
        if !ongoing && !over {
            out.unfinished = true;
            continue;
        }
        let rule = Rule::ServiceDown;
        out.outages.push(LateOutage {
            condition: Condition {
                key: key(&rule, &s.id),
                rule,
                service: s.id.clone(),
                agent: None,
                priority: Priority::from(s.criticality),
                breached: ongoing,
                history: Vec::new(),
                partial: false,
                summary: if ongoing {
                    format!("{} is down (found late in the data)", s.name)
                } else {
                    format!(
                        "{} was down for {} s (found late in the data)",
                        s.name,
                        (to - from) / 1_000
                    )
                },
            },
            from_ms: from,
            to_ms: (!ongoing).then_some(to),
            drill: drill_at(from),
        });
    }
    Ok(out)
}
