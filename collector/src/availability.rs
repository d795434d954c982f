//! Availability from stored measurements: builds each probe's timeline and tallies its checks
//! over a window from the store, and hands them to the pure SLA arithmetic in [`crate::sla`].
//!
//! Two sources, split at the probe's rollup horizon (its first minute not yet rolled up):
//! before it, the state index gives the timeline (exact to the millisecond) and the rollups
//! the checks and latencies (whole minutes, from day, hour and minute buckets); from it on, and
//! for the partial minutes at the window's edges, the raw results. A 30-day report reads a few
//! dozen records per probe instead of a month of results, and says the same thing.

use watchstand_shared::time::MINUTE_MS;

use crate::config::Service;
use crate::rollup;
use crate::sla::span::overlay;
use crate::sla::{
    self, merge_spans, probe_timeline, LatencyTally, ProbeClass, ProbeInput, ServiceSegment,
    SlaReport, Span,
};
use crate::store::{trees, Store, StoreError};

/// Longest interval a stored result may carry; bounds how far before `from` we look.
const MAX_HOLD_LOOKBACK_MS: u64 = 2 * watchstand_shared::wire::v1::result::MAX_INTERVAL_MS;

/// The probe inputs of `service` over `span`, from the raw results (short windows: the
/// incident rules' recent evaluation instants).
///
/// # Errors
/// Store failure.
pub fn probe_inputs(
    store: &Store,
    service: &Service,
    span: Span,
) -> Result<Vec<ProbeInput>, StoreError> {
    let mut inputs = Vec::with_capacity(service.probes.len());
    for p in &service.probes {
        let observations = store
            .observations(&p.agent, &p.probe, span.from_ms, span.to_ms)?
            .into_iter()
            .filter(|r| r.observed_ms + MAX_HOLD_LOOKBACK_MS >= span.from_ms)
            .map(crate::sla::Observation::from)
            .collect();
        let lost = lost_spans(store, &p.agent, span)?;
        inputs.push(ProbeInput { observations, lost });
    }
    Ok(inputs)
}

/// The agent's lost spans (gap records) overlapping `span`.
fn lost_spans(store: &Store, agent: &str, span: Span) -> Result<Vec<Span>, StoreError> {
    Ok(store
        .gaps(agent, span.from_ms, span.to_ms)?
        .into_iter()
        .map(|g| Span {
            from_ms: g.from_ms,
            to_ms: g.to_ms,
        })
        .collect())
}

/// The SLA report of `service` over `span`, from the rollups where they are current and the
/// raw results elsewhere.
///
/// # Errors
/// Store failure or a corrupt record.
pub fn service_report(
    store: &Store,
    service: &Service,
    span: Span,
) -> Result<SlaReport, StoreError> {
    let Measured {
        timelines,
        tally,
        drills,
    } = measured(store, service, span)?;
    Ok(sla::report_from_timelines(
        &service.sla,
        &timelines,
        &tally,
        &drills,
        span,
    ))
}

/// The SLA report of `service` over `span` together with the classified timeline it was summed
/// from (maximal segments covering `span`): the reports' outage lists come from the same
/// timelines as the figures, so they cannot disagree with [`service_report`].
///
/// # Errors
/// Store failure or a corrupt record.
pub fn service_report_with_segments(
    store: &Store,
    service: &Service,
    span: Span,
) -> Result<(SlaReport, Vec<ServiceSegment>), StoreError> {
    let Measured {
        timelines,
        tally,
        drills,
    } = measured(store, service, span)?;
    let report = sla::report_from_timelines(&service.sla, &timelines, &tally, &drills, span);
    let segments = sla::segments_from_timelines(&service.sla, &timelines, &drills, span);
    Ok((report, segments))
}

/// Each probe's timeline over a window and the checks tallied in it: what the SLA arithmetic
/// sums.
struct Measured {
    /// One per probe, each covering the window.
    timelines: Vec<Vec<(Span, ProbeClass)>>,
    /// The checks and latencies in the window.
    tally: LatencyTally,
    /// The service's drill windows: its non-up time there is `drill`, not downtime.
    drills: Vec<Span>,
}

/// Each probe's timeline over `span` and the checks tallied in it.
fn measured(store: &Store, service: &Service, span: Span) -> Result<Measured, StoreError> {
    let mut tally = LatencyTally::new(service.sla.latency.map(|o| o.latency_ms));
    if span.is_empty() {
        return Ok(Measured {
            timelines: Vec::new(),
            tally,
            drills: Vec::new(),
        });
    }
    let index = store.tree(trees::STATE_INDEX)?;
    let mut timelines = Vec::with_capacity(service.probes.len());
    for p in &service.probes {
        let (agent, probe) = (p.agent.as_str(), p.probe.as_str());
        // Rolled up: [from, split) for the timeline; whole minutes [a, b) for the checks.
        let horizon = rollup::read::horizon(store, agent, probe)?.unwrap_or(u64::MAX);
        let split = horizon.clamp(span.from_ms, span.to_ms);
        let a = span
            .from_ms
            .div_ceil(MINUTE_MS)
            .saturating_mul(MINUTE_MS)
            .min(split);
        let b = (split - split % MINUTE_MS).max(a);
        let mut timeline =
            rollup::index::timeline(&*index, agent, probe, Span::new(span.from_ms, split))?;
        rollup::read::tally(store, agent, probe, a, b, &mut tally)?;
        // Raw: the partial first minute, and everything from b on (the partial last minute,
        // or the part past the horizon).
        for raw in [Span::new(span.from_ms, a), Span::new(b, span.to_ms)] {
            if raw.is_empty() {
                continue;
            }
            let observations: Vec<_> = store
                .observations(agent, probe, raw.from_ms, raw.to_ms)?
                .into_iter()
                .map(crate::sla::Observation::from)
                .collect();
            for o in observations.iter().filter(|o| raw.contains(o.at_ms)) {
                tally.add_observation(o);
            }
            if raw.from_ms == b && split < span.to_ms {
                // b == split here: the horizon is a whole minute inside the window.
                let input = ProbeInput {
                    observations,
                    lost: Vec::new(),
                };
                timeline.extend(probe_timeline(&input, Span::new(split, span.to_ms)));
            }
        }
        let lost = lost_spans(store, agent, span)?;
        if !lost.is_empty() {
            timeline = overlay(&timeline, &merge_spans(lost, span), ProbeClass::Unknown);
        }
        timelines.push(timeline);
    }
    // The service's drill windows: its non-up time there is `drill`, not downtime.
    let drill_runs = crate::drill::DrillStore::new(store.clone()).all()?;
    let drills = crate::drill::spans(&drill_runs, &service.id, watchstand_shared::time::now_ms());
    Ok(Measured {
        timelines,
        tally,
        drills,
    })
}

/// The SLA reports of many services, each over its own span, computed on every core (reports
/// are independent reads); in `services` order.
pub fn service_reports(
    store: &Store,
    services: &[(&Service, Span)],
) -> Vec<Result<SlaReport, StoreError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(services.len().max(1));
    if threads <= 1 {
        return services
            .iter()
            .map(|(s, span)| service_report(store, s, *span))
            .collect();
    }
    let chunk = services.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = services
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(s, span)| service_report(store, s, *span))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(services.chunks(chunk))
            .flat_map(|(h, part)| {
                // A report panicking is a bug; recompute that part here rather than lose it.
                h.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|(s, span)| service_report(store, s, *span))
                        .collect()
                })
            })
            .collect()
    })
}
