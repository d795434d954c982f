//! SLA arithmetic: from stored probe results to a service's availability report over a window.
//!
//! Place in the flow: ingest → store → **sla** → incident / report / API. This module is pure:
//! no I/O, no async, no clock reads ("now" is a parameter), so every rule is unit-tested here.
//!
//! # How a report is computed
//! 1. [`timeline`]: each probe's results become segments of up / degraded / down / unknown
//!    (a result holds until the next one, at most 2 × its interval; lost spans are unknown).
//! 2. [`combine`]: a sweep line over all probe boundaries combines them by the service's
//!    [`Mode`] into up / down / unknown, marking partial outages.
//! 3. [`maintenance`] windows, then drills, are laid over that: every instant of the window is
//!    classified exactly once as maintenance > drill > up / down / unknown ([`ServiceClass`]).
//! 4. The classes are summed in integer milliseconds and reported as seconds ([`SlaReport`]).
//!
//! Everything is interval arithmetic over segment boundaries, never stepping through time, so
//! downtime is exactly what the observations say and the cost is O(n log n) in the number of
//! results.
//!
//! # Layout
//! - [`span`]: half-open spans and span-list operations.
//! - [`timeline`]: per-probe segments.
//! - [`combine`]: modes and the sweep line.
//! - [`maintenance`]: fixed and weekly windows, and the parsers the config layer uses.
//! - [`window`]: SLO windows (`30d`, `month`).
//! - [`latency`]: the shared latency histogram and the latency objective.

pub mod combine;
pub mod latency;
pub mod maintenance;
pub mod span;
pub mod timeline;
pub mod window;

use serde::{Deserialize, Serialize};

pub use combine::{combine_timelines, Combined, Mode, ModeError, ProbeCounts, ServiceState};
pub use latency::{
    latency_bucket, new_latency_histogram, record_latency, LatencyCounts, LatencyTally,
    LATENCY_HIST_HIGH_US, LATENCY_HIST_LOW_US, LATENCY_HIST_SIGFIG,
};
pub use maintenance::{MaintenanceParseError, MaintenanceWindow};
pub use span::{merge_spans, Span};
pub use timeline::{probe_timeline, Observation, ProbeClass, ProbeInput};
pub use window::{Window, WindowError};

use span::{overlay, push_merged};

/// A latency objective: `pct` percent of checks must take at most `latency_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyObjective {
    /// Threshold, ms.
    pub latency_ms: f64,
    /// Share of checks that must be within the threshold, percent.
    pub pct: f64,
}

/// Everything the SLA arithmetic needs to know about a service (built by the config layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSlaSpec {
    /// How the service's probes combine.
    pub mode: Mode,
    /// Availability target, percent, in (0, 100].
    pub target_pct: f64,
    /// Optional latency objective.
    pub latency: Option<LatencyObjective>,
    /// Periods that do not count against the SLO.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Count unknown (unmonitored) time as downtime instead of leaving it out.
    pub count_unknown_as_down: bool,
}

/// How one instant of a service's time is classified; every instant is exactly one of these,
/// in this precedence: maintenance > drill > the measured up / down / unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceClass {
    /// Measured up (this includes partial outages).
    Up,
    /// Measured down.
    Down,
    /// Unmonitored: no data, agent offline, or data lost.
    Unknown,
    /// Inside a maintenance window.
    Maintenance,
    /// Inside a failover drill (outages caused on purpose are not unplanned downtime).
    Drill,
}

impl From<ServiceState> for ServiceClass {
    fn from(s: ServiceState) -> Self {
        match s {
            ServiceState::Up => ServiceClass::Up,
            ServiceState::Down => ServiceClass::Down,
            ServiceState::Unknown => ServiceClass::Unknown,
        }
    }
}

/// One maximal piece of a service's classified timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceSegment {
    /// When.
    pub span: Span,
    /// What.
    pub class: ServiceClass,
    /// Up, but at least one probe is down (only ever set with [`ServiceClass::Up`]).
    pub partial_outage: bool,
}

/// A service's SLA figures over `[from_ms, to_ms)`. Field names are the public API (JSON).
///
/// Durations are seconds as f64 with millisecond precision; they are summed as integer
/// milliseconds first, so they are exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaReport {
    /// Window start, epoch ms.
    pub from_ms: u64,
    /// Window end (exclusive), epoch ms.
    pub to_ms: u64,
    /// `uptime / (uptime + downtime) × 100`; `None` when both are 0.
    pub availability_pct: Option<f64>,
    /// Time measured up (partial outages included).
    pub uptime_s: f64,
    /// Time measured down; with `count_unknown_as_down` also the unmonitored time.
    pub downtime_s: f64,
    /// Time with no data (no result holding, agent offline, data lost). Shown even when
    /// `count_unknown_as_down` also counts it in `downtime_s`.
    pub unmonitored_s: f64,
    /// Time inside maintenance windows.
    pub maintenance_s: f64,
    /// Time inside drills (and not in maintenance).
    pub drill_s: f64,
    /// Part of `uptime_s` in which at least one probe was down.
    pub partial_outage_s: f64,
    /// Availability target, percent.
    pub target_pct: f64,
    /// `availability_pct ≥ target_pct`; `None` without data.
    pub met: Option<bool>,
    /// Downtime allowed by the target over the window:
    /// `(1 − target/100) × (window length − maintenance_s − drill_s)`, to the millisecond. A
    /// young or partly measured window does not shrink it (see [`SlaReport::coverage_pct`]).
    pub error_budget_s: f64,
    /// `error_budget_s − downtime_s`; negative once the budget is overspent.
    pub error_budget_remaining_s: f64,
    /// Median latency of the up/degraded checks in the window, ms.
    pub latency_p50_ms: Option<f64>,
    /// 90th percentile latency, ms.
    pub latency_p90_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// The latency objective's threshold, ms.
    pub latency_objective_ms: Option<f64>,
    /// The latency objective's target share, percent.
    pub latency_target_pct: Option<f64>,
    /// Share of up/degraded checks with latency ≤ the threshold, percent (counted exactly).
    pub latency_within_pct: Option<f64>,
    /// `latency_within_pct ≥ latency_target_pct`; `None` without objective or checks.
    pub latency_met: Option<bool>,
    /// Results (of any state) observed in the window, across all probes.
    pub checks: u64,
    /// Maximal down intervals within the window. Two down intervals separated only by
    /// maintenance, a drill or unknown time count as two; unknown time never counts as an
    /// outage, even with `count_unknown_as_down`.
    pub outages: u64,
    /// Measured share of the window: `(uptime_s + measured downtime) / (window length −
    /// maintenance_s − drill_s) × 100`; `None` when the window is all maintenance or drill.
    /// Rules that judge a window (burn rates) wait for this to reach their coverage floor.
    pub coverage_pct: Option<f64>,
    /// Start of the first measured (up or down) instant in the window, epoch ms; `None` when
    /// nothing in the window was measured.
    pub measured_since: Option<u64>,
}

impl SlaReport {
    /// Re-bases the error budget on a longer budget window of `period_ms` (a calendar month
    /// evaluated before its end: the budget is the whole month's, not the part elapsed). The
    /// excluded time (maintenance, drills) is what the report saw so far; coverage is left as
    /// measured over the elapsed part.
    pub fn rebase_budget(&mut self, period_ms: u64) {
        let excluded_ms = ((self.maintenance_s + self.drill_s) * 1_000.0).round() as u64;
        let budget_ms = budget_ms(self.target_pct, period_ms.saturating_sub(excluded_ms));
        let down_ms = (self.downtime_s * 1_000.0).round() as i128;
        self.error_budget_s = secs(budget_ms);
        self.error_budget_remaining_s = secs_signed(i128::from(budget_ms) - down_ms);
    }

    /// The window's error budget is spent: more down than the whole window's budget allows
    /// (with any downtime at all, so a 100 % target is not "spent" by nothing). Once true, the
    /// window's attainment is below target whatever the unmeasured rest of it turns out to be
    /// (availability = up / (up + down) ≤ 1 − down / window < target), so no coverage floor is
    /// needed for it.
    pub fn is_budget_spent(&self) -> bool {
        self.downtime_s > 0.0 && self.error_budget_remaining_s <= 0.0
    }
}

/// `(1 − target/100) × ms`, rounded to whole milliseconds: targets like 99.9 are not exact in
/// binary, and without the rounding a budget of exactly 2592 s would come out a hair under it.
fn budget_ms(target_pct: f64, ms: u64) -> u64 {
    let share = ((100.0 - target_pct) / 100.0).clamp(0.0, 1.0);
    (share * ms as f64).round() as u64
}

/// The classified timeline of a service over `window`: maximal segments, sorted, covering the
/// window exactly (empty for an empty window). Adjacent segments differ in class or in the
/// partial-outage flag.
///
/// `drills` may be in any order and overlap; lost spans and observations as in [`ProbeInput`].
pub fn service_segments(
    spec: &ServiceSlaSpec,
    probes: &[ProbeInput],
    drills: &[Span],
    window: Span,
) -> Vec<ServiceSegment> {
    if window.is_empty() {
        return Vec::new();
    }
    let timelines: Vec<_> = probes.iter().map(|p| probe_timeline(p, window)).collect();
    segments_from_timelines(spec, &timelines, drills, window)
}

/// [`service_segments`] from the probes' timelines (each covering `window`, as
/// [`probe_timeline`] makes them, or as the rollups' state index gives them).
pub fn segments_from_timelines(
    spec: &ServiceSlaSpec,
    timelines: &[Vec<(Span, ProbeClass)>],
    drills: &[Span],
    window: Span,
) -> Vec<ServiceSegment> {
    if window.is_empty() {
        return Vec::new();
    }
    let combined = combine_timelines(spec.mode, timelines, window);
    let base: Vec<(Span, (ServiceClass, bool))> = combined
        .into_iter()
        .map(|(s, c)| (s, (c.state.into(), c.partial_outage)))
        .collect();
    // Drills first, then maintenance over them: maintenance wins where both apply. Inside a
    // drill only the non-up time (down, unknown) becomes `drill`: measured up stays up.
    let drill_spans = merge_spans(drills.iter().copied(), window);
    let non_up: Vec<Span> = base
        .iter()
        .filter(|(_, (class, _))| *class != ServiceClass::Up)
        .flat_map(|(seg, _)| {
            drill_spans.iter().filter_map(move |d| {
                let (from_ms, to_ms) = (seg.from_ms.max(d.from_ms), seg.to_ms.min(d.to_ms));
                (from_ms < to_ms).then_some(Span { from_ms, to_ms })
            })
        })
        .collect();
    let with_drills = overlay(&base, &non_up, (ServiceClass::Drill, false));
    let maintenance_spans = maintenance::expand(&spec.maintenance, window);
    overlay(
        &with_drills,
        &maintenance_spans,
        (ServiceClass::Maintenance, false),
    )
    .into_iter()
    .map(|(span, (class, partial_outage))| ServiceSegment {
        span,
        class,
        partial_outage,
    })
    .collect()
}

/// The classified timeline by class only (partial outages folded into up): maximal segments
/// covering `window`, for incidents and uptime bars.
pub fn service_timeline(
    spec: &ServiceSlaSpec,
    probes: &[ProbeInput],
    drills: &[Span],
    window: Span,
) -> Vec<(Span, ServiceClass)> {
    let mut out = Vec::new();
    for seg in service_segments(spec, probes, drills, window) {
        push_merged(&mut out, seg.span, seg.class);
    }
    out
}

/// Milliseconds to seconds, for the report.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1_000.0
}

/// Signed milliseconds to seconds, for the remaining error budget.
fn secs_signed(ms: i128) -> f64 {
    ms as f64 / 1_000.0
}

/// `part / whole × 100` with one rounding, `None` when `whole` is 0.
fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (u128::from(part) * 100) as f64 / whole as f64)
}

/// The SLA report of a service over `window`. An empty or inverted window gives a report with
/// every duration 0 and every ratio `None`.
pub fn report(
    spec: &ServiceSlaSpec,
    probes: &[ProbeInput],
    drills: &[Span],
    window: Span,
) -> SlaReport {
    let timelines: Vec<_> = if window.is_empty() {
        Vec::new()
    } else {
        probes.iter().map(|p| probe_timeline(p, window)).collect()
    };
    let mut tally = LatencyTally::new(spec.latency.map(|o| o.latency_ms));
    for o in probes.iter().flat_map(|p| p.observations.iter()) {
        if window.contains(o.at_ms) {
            tally.add_observation(o);
        }
    }
    report_from_timelines(spec, &timelines, &tally, drills, window)
}

/// [`report`] from the probes' timelines over `window` and the checks tallied in it: the form
/// the rollup read path uses (timelines from the state index, checks from rollups).
pub fn report_from_timelines(
    spec: &ServiceSlaSpec,
    timelines: &[Vec<(Span, ProbeClass)>],
    tally: &LatencyTally,
    drills: &[Span],
    window: Span,
) -> SlaReport {
    let (mut up, mut down, mut unknown, mut maint, mut drill, mut partial) = (0, 0, 0, 0, 0, 0);
    let mut outages = 0;
    let mut measured_since = None;
    for seg in segments_from_timelines(spec, timelines, drills, window) {
        let len = seg.span.len_ms();
        if matches!(seg.class, ServiceClass::Up | ServiceClass::Down) && measured_since.is_none() {
            measured_since = Some(seg.span.from_ms);
        }
        match seg.class {
            ServiceClass::Up => {
                up += len;
                if seg.partial_outage {
                    partial += len;
                }
            }
            ServiceClass::Down => {
                down += len;
                // Segments are maximal, and a down segment never carries the partial flag, so
                // each down segment is one whole outage.
                outages += 1;
            }
            ServiceClass::Unknown => unknown += len,
            ServiceClass::Maintenance => maint += len,
            ServiceClass::Drill => drill += len,
        }
    }
    let counted_down: u64 = if spec.count_unknown_as_down {
        down + unknown
    } else {
        down
    };
    let counted = up + counted_down;
    let availability_pct = pct(up, counted);

    // The budget is the whole window's (less excluded time), not the measured part's: on a
    // young service one outage must not spend a 30-day budget at once. (The availability needs
    // no rounding care: `up × 100 / counted` is rounded once, so an exact decimal result equals
    // the target as parsed, and `met` holds at exactly the target.)
    let budgeted_ms = window.len_ms().saturating_sub(maint + drill);
    let budget_ms = budget_ms(spec.target_pct, budgeted_ms);

    let checks = tally.checks();
    let objective = spec.latency;
    let lat = tally.summary();
    let latency_within_pct = objective.and_then(|_| pct(lat.within, lat.counted));

    SlaReport {
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        availability_pct,
        uptime_s: secs(up),
        downtime_s: secs(counted_down),
        unmonitored_s: secs(unknown),
        maintenance_s: secs(maint),
        drill_s: secs(drill),
        partial_outage_s: secs(partial),
        target_pct: spec.target_pct,
        met: availability_pct.map(|a| a >= spec.target_pct),
        error_budget_s: secs(budget_ms),
        error_budget_remaining_s: secs_signed(i128::from(budget_ms) - i128::from(counted_down)),
        latency_p50_ms: lat.p50_ms,
        latency_p90_ms: lat.p90_ms,
        latency_p99_ms: lat.p99_ms,
        latency_objective_ms: objective.map(|o| o.latency_ms),
        latency_target_pct: objective.map(|o| o.pct),
        latency_within_pct,
        latency_met: objective
            .zip(latency_within_pct)
            .map(|(o, within)| within >= o.pct),
        checks,
        outages,
        coverage_pct: pct(up + down, budgeted_ms),
        measured_since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
    use watchstand_shared::wire::v1::ProbeState;
    use ProbeState::{Degraded, Down, Up};

    fn s(from_ms: u64, to_ms: u64) -> Span {
        Span::new(from_ms, to_ms)
    }

    fn spec(mode: Mode) -> ServiceSlaSpec {
        ServiceSlaSpec {
            mode,
            target_pct: 99.9,
            latency: None,
            maintenance: vec![],
            count_unknown_as_down: false,
        }
    }

    /// A probe checked every `step_ms` (its interval) from `start_ms` for `n` checks, with the
    /// state at each check given by `state(t)`.
    fn regular(
        start_ms: u64,
        step_ms: u64,
        n: u64,
        state: impl Fn(u64) -> ProbeState,
    ) -> ProbeInput {
        ProbeInput {
            observations: (0..n)
                .map(|i| {
                    let at_ms = start_ms + i * step_ms;
                    Observation {
                        at_ms,
                        state: state(at_ms),
                        latency_us: 1_000,
                        interval_ms: step_ms,
                    }
                })
                .collect(),
            lost: vec![],
        }
    }

    /// A probe whose state at `t` is `f(t)`, checked every second over `[0, end_ms)`.
    fn per_second(end_ms: u64, f: impl Fn(u64) -> ProbeState) -> ProbeInput {
        regular(0, SECOND_MS, end_ms / SECOND_MS, f)
    }

    fn between(from_s: u64, to_s: u64) -> impl Fn(u64) -> ProbeState {
        move |t| {
            if (from_s * SECOND_MS..to_s * SECOND_MS).contains(&t) {
                Down
            } else {
                Up
            }
        }
    }

    #[test]
    fn downtime_of_a_20_s_outage_sampled_every_second_is_exact() {
        let probe = per_second(60_000, between(20, 40));
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 60_000));
        assert_eq!(r.downtime_s, 20.0);
        assert_eq!(r.uptime_s, 40.0);
        assert_eq!(r.unmonitored_s, 0.0);
        assert_eq!(r.availability_pct, Some(40.0 * 100.0 / 60.0));
        assert_eq!(r.checks, 60);
        assert_eq!(r.outages, 1);
        assert_eq!(r.met, Some(false));
    }

    #[test]
    fn error_budget_of_30_days_at_99_9_is_exactly_spent_by_43_min_12_s_down() {
        let start = 1_780_000_000_000 - 1_780_000_000_000 % MINUTE_MS;
        let down_from = start + 10 * DAY_MS;
        let down_to = down_from + 43 * MINUTE_MS + 12 * SECOND_MS;
        let mut probe = regular(start, MINUTE_MS, 30 * 24 * 60, |t| {
            if (down_from..down_to).contains(&t) {
                Down
            } else {
                Up
            }
        });
        // The recovery is seen by an extra check at 43:12, between two regular ones.
        probe.observations.push(Observation {
            at_ms: down_to,
            state: Up,
            latency_us: 1_000,
            interval_ms: MINUTE_MS,
        });
        probe.observations.sort_by_key(|o| o.at_ms);

        let r = report(
            &spec(Mode::All),
            &[probe],
            &[],
            s(start, start + 30 * DAY_MS),
        );
        assert_eq!(r.downtime_s, 2_592.0);
        assert_eq!(r.uptime_s, 30.0 * 86_400.0 - 2_592.0);
        assert_eq!(r.availability_pct, Some(99.9));
        assert_eq!(format!("{:.4}", r.availability_pct.unwrap()), "99.9000");
        assert_eq!(r.met, Some(true));
        assert_eq!(r.error_budget_s, 2_592.0);
        assert_eq!(r.error_budget_remaining_s, 0.0);
        assert_eq!(r.outages, 1);
        assert_eq!(r.checks, 30 * 24 * 60 + 1);
    }

    #[test]
    fn a_young_window_keeps_the_whole_windows_budget_and_reports_its_coverage() {
        // A 30-day window of which only the last 5 minutes are measured, with one 30 s outage.
        let window = s(0, 30 * DAY_MS);
        let start = window.to_ms - 5 * MINUTE_MS;
        let probe = regular(start, SECOND_MS, 300, |t| {
            if (start + 60 * SECOND_MS..start + 90 * SECOND_MS).contains(&t) {
                Down
            } else {
                Up
            }
        });
        let r = report(&spec(Mode::All), &[probe], &[], window);
        assert_eq!(r.downtime_s, 30.0);
        assert_eq!(r.uptime_s, 270.0);
        assert_eq!(r.error_budget_s, 2_592.0);
        assert_eq!(r.error_budget_remaining_s, 2_562.0);
        assert!(!r.is_budget_spent());
        assert_eq!(r.measured_since, Some(start));
        // 300 s measured of 2,592,000 s.
        assert_eq!(r.coverage_pct, Some(300.0 * 100.0 / 2_592_000.0));
        assert_eq!(r.availability_pct, Some(90.0));
    }

    #[test]
    fn maintenance_and_drills_are_left_out_of_the_budget_and_the_coverage() {
        // 100 s window at 99 %: 20 s maintenance, 30 s drill (down on purpose), 50 s up.
        let probe = per_second(100_000, between(20, 50));
        let mut sp = spec(Mode::All);
        sp.target_pct = 99.0;
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 0,
            to_ms: 20_000,
        }];
        let r = report(&sp, &[probe], &[s(20_000, 50_000)], s(0, 100_000));
        assert_eq!(r.maintenance_s, 20.0);
        assert_eq!(r.drill_s, 30.0);
        assert_eq!(r.error_budget_s, 0.5);
        assert_eq!(r.coverage_pct, Some(100.0));
        assert_eq!(r.measured_since, Some(50_000));
    }

    #[test]
    fn a_budget_rebased_on_the_whole_month_is_the_months() {
        // Ten days into a 30-day month at 99.9 %, 100 s down.
        let probe = per_second(10 * DAY_MS / SECOND_MS, |t| {
            if t < 100 * SECOND_MS {
                Down
            } else {
                Up
            }
        });
        let mut r = report(&spec(Mode::All), &[probe], &[], s(0, 10 * DAY_MS));
        assert_eq!(r.error_budget_s, 864.0);
        r.rebase_budget(30 * DAY_MS);
        assert_eq!(r.error_budget_s, 2_592.0);
        assert_eq!(r.error_budget_remaining_s, 2_492.0);
    }

    #[test]
    fn a_budget_is_spent_only_by_downtime_beyond_it() {
        let probe = per_second(100_000, between(0, 1));
        let mut sp = spec(Mode::All);
        sp.target_pct = 99.0;
        let r = report(&sp, &[probe], &[], s(0, 100_000));
        assert_eq!(r.error_budget_remaining_s, 0.0);
        assert!(r.is_budget_spent());
        let r = report(&sp, &[per_second(100_000, |_| Up)], &[], s(0, 100_000));
        assert!(!r.is_budget_spent());
    }

    #[test]
    fn overspent_error_budget_goes_negative() {
        let probe = per_second(100_000, between(0, 10));
        let mut sp = spec(Mode::All);
        sp.target_pct = 99.0;
        let r = report(&sp, &[probe], &[], s(0, 100_000));
        assert_eq!(r.availability_pct, Some(90.0));
        assert_eq!(r.met, Some(false));
        assert_eq!(r.error_budget_s, 1.0);
        assert_eq!(r.error_budget_remaining_s, -9.0);
    }

    #[test]
    fn result_older_than_two_intervals_counts_as_unknown() {
        let probe = ProbeInput {
            observations: vec![
                Observation {
                    at_ms: 0,
                    state: Up,
                    latency_us: 1,
                    interval_ms: 10_000,
                },
                Observation {
                    at_ms: 60_000,
                    state: Down,
                    latency_us: 1,
                    interval_ms: 10_000,
                },
            ],
            lost: vec![],
        };
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 100_000));
        assert_eq!(r.uptime_s, 20.0);
        assert_eq!(r.unmonitored_s, 40.0 + 20.0);
        assert_eq!(r.downtime_s, 20.0);
        assert_eq!(r.availability_pct, Some(50.0));
    }

    #[test]
    fn lost_spans_are_unmonitored_not_up() {
        let mut probe = per_second(60_000, |_| Up);
        probe.lost = vec![s(10_000, 25_000)];
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 60_000));
        assert_eq!(r.uptime_s, 45.0);
        assert_eq!(r.unmonitored_s, 15.0);
        assert_eq!(r.availability_pct, Some(100.0));
    }

    #[test]
    fn all_mode_is_down_while_any_probe_is_down() {
        let a = per_second(60_000, between(10, 20));
        let b = per_second(60_000, between(15, 30));
        let r = report(&spec(Mode::All), &[a, b], &[], s(0, 60_000));
        assert_eq!(r.downtime_s, 20.0);
        assert_eq!(r.uptime_s, 40.0);
        assert_eq!(r.partial_outage_s, 0.0);
        assert_eq!(r.outages, 1);
    }

    #[test]
    fn partial_outage_in_any_mode_is_uptime_reported_on_its_own() {
        let primary = per_second(60_000, between(10, 30));
        let standby = per_second(60_000, between(25, 40));
        let r = report(&spec(Mode::Any), &[primary, standby], &[], s(0, 60_000));
        assert_eq!(r.downtime_s, 5.0);
        assert_eq!(r.uptime_s, 55.0);
        // 10..25 (primary down) and 30..40 (standby down).
        assert_eq!(r.partial_outage_s, 25.0);
        assert_eq!(r.outages, 1);
    }

    #[test]
    fn quorum_service_is_down_when_fewer_than_n_probes_are_up() {
        let a = per_second(60_000, between(0, 20));
        let b = per_second(60_000, between(10, 30));
        let c = per_second(60_000, between(50, 60));
        let r = report(&spec(Mode::Quorum(2)), &[a, b, c], &[], s(0, 60_000));
        // Two down at once only over 10..20.
        assert_eq!(r.downtime_s, 10.0);
        assert_eq!(r.uptime_s, 50.0);
        assert_eq!(r.partial_outage_s, 10.0 + 10.0 + 10.0);
    }

    #[test]
    fn quorum_service_is_unknown_while_unknown_probes_could_still_make_it() {
        let a = per_second(60_000, |_| Up);
        let b = per_second(60_000, |_| Down);
        let c = ProbeInput::default();
        let r = report(&spec(Mode::Quorum(2)), &[a, b, c], &[], s(0, 60_000));
        assert_eq!(r.unmonitored_s, 60.0);
        assert_eq!(r.availability_pct, None);
        assert_eq!(r.met, None);
    }

    #[test]
    fn degraded_counts_as_up() {
        let probe = per_second(60_000, |t| if t < 30_000 { Degraded } else { Up });
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 60_000));
        assert_eq!(r.uptime_s, 60.0);
        assert_eq!(r.availability_pct, Some(100.0));
        assert_eq!(r.met, Some(true));
    }

    #[test]
    fn fixed_maintenance_overrides_down_and_unknown() {
        // Down 0..30 s, then nothing (unknown from 32 s: the last result holds for 2 s).
        let probe = per_second(30_000, |_| Down);
        let mut sp = spec(Mode::All);
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 10_000,
            to_ms: 50_000,
        }];
        let r = report(&sp, &[probe], &[], s(0, 60_000));
        assert_eq!(r.maintenance_s, 40.0);
        assert_eq!(r.downtime_s, 10.0);
        assert_eq!(r.unmonitored_s, 10.0);
        assert_eq!(r.uptime_s, 0.0);
        assert_eq!(r.availability_pct, Some(0.0));
    }

    #[test]
    fn weekly_maintenance_crossing_sunday_into_monday_is_excluded() {
        // 2026-06-07 is a Sunday; maintenance Sun 23:30 for 1 h; down Sun 23:00 to Mon 00:20.
        let sunday_2300 = maintenance::parse_rfc3339_ms("2026-06-07T23:00:00Z").unwrap();
        let monday_0020 = maintenance::parse_rfc3339_ms("2026-06-08T00:20:00Z").unwrap();
        let probe = regular(sunday_2300 - HOUR_MS, MINUTE_MS, 3 * 60, |t| {
            if (sunday_2300..monday_0020).contains(&t) {
                Down
            } else {
                Up
            }
        });
        let mut sp = spec(Mode::All);
        sp.maintenance = vec![MaintenanceWindow::Weekly {
            weekday: maintenance::parse_weekday("sun").unwrap(),
            start_minute: maintenance::parse_hh_mm("23:30").unwrap(),
            duration_ms: HOUR_MS,
        }];
        let window = s(sunday_2300 - HOUR_MS, sunday_2300 + 2 * HOUR_MS);
        let r = report(&sp, &[probe], &[], window);
        assert_eq!(r.maintenance_s, 3_600.0);
        // Only Sun 23:00..23:30 counts as down; the rest of the outage is in maintenance.
        assert_eq!(r.downtime_s, 1_800.0);
        assert_eq!(r.uptime_s, 3.0 * 3_600.0 - 3_600.0 - 1_800.0);
        assert_eq!(r.outages, 1);
    }

    #[test]
    fn only_the_non_up_time_of_a_drill_is_drill_time() {
        // Drill 10..90 s; the service is down 30..40 s (on purpose) and unmonitored 60..65 s.
        let mut probe = per_second(100_000, between(30, 40));
        probe.lost = vec![s(60_000, 65_000)];
        let r = report(
            &spec(Mode::All),
            &[probe],
            &[s(10_000, 90_000)],
            s(0, 100_000),
        );
        assert_eq!(r.drill_s, 15.0);
        assert_eq!(r.downtime_s, 0.0);
        assert_eq!(r.unmonitored_s, 0.0);
        assert_eq!(r.uptime_s, 85.0);
        assert_eq!(r.outages, 0);
    }

    #[test]
    fn drill_time_is_not_downtime_and_maintenance_wins_over_drill() {
        let probe = per_second(100_000, between(20, 60));
        let mut sp = spec(Mode::All);
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 50_000,
            to_ms: 70_000,
        }];
        let drills = [s(30_000, 55_000), s(40_000, 45_000)];
        let r = report(&sp, &[probe], &drills, s(0, 100_000));
        assert_eq!(r.maintenance_s, 20.0);
        assert_eq!(r.drill_s, 20.0);
        assert_eq!(r.downtime_s, 10.0);
        assert_eq!(r.uptime_s, 50.0);
        let classes: Vec<_> = service_timeline(
            &sp,
            &[per_second(100_000, between(20, 60))],
            &drills,
            s(0, 100_000),
        );
        assert_eq!(
            classes,
            vec![
                (s(0, 20_000), ServiceClass::Up),
                (s(20_000, 30_000), ServiceClass::Down),
                (s(30_000, 50_000), ServiceClass::Drill),
                (s(50_000, 70_000), ServiceClass::Maintenance),
                (s(70_000, 100_000), ServiceClass::Up),
            ]
        );
    }

    #[test]
    fn count_unknown_as_down_counts_unmonitored_time_as_downtime() {
        let mut probe = per_second(60_000, between(0, 10));
        probe.lost = vec![s(40_000, 50_000)];
        let mut sp = spec(Mode::All);
        let window = s(0, 60_000);
        let default = report(&sp, std::slice::from_ref(&probe), &[], window);
        assert_eq!(default.downtime_s, 10.0);
        assert_eq!(default.unmonitored_s, 10.0);
        assert_eq!(default.availability_pct, Some(40.0 * 100.0 / 50.0));

        sp.count_unknown_as_down = true;
        let r = report(&sp, &[probe], &[], window);
        assert_eq!(r.downtime_s, 20.0);
        assert_eq!(r.unmonitored_s, 10.0);
        assert_eq!(r.uptime_s, 40.0);
        assert_eq!(r.availability_pct, Some(40.0 * 100.0 / 60.0));
        assert_eq!(r.outages, 1);
    }

    #[test]
    fn count_unknown_as_down_still_leaves_maintenance_out() {
        let mut sp = spec(Mode::All);
        sp.count_unknown_as_down = true;
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 0,
            to_ms: 30_000,
        }];
        let r = report(&sp, &[ProbeInput::default()], &[], s(0, 60_000));
        assert_eq!(r.maintenance_s, 30.0);
        assert_eq!(r.downtime_s, 30.0);
        assert_eq!(r.availability_pct, Some(0.0));
    }

    #[test]
    fn outages_separated_by_maintenance_or_unknown_count_as_two() {
        // Down 0..30 s, a maintenance window over 10..15 s, data lost over 20..22 s.
        let mut probe = per_second(60_000, between(0, 30));
        probe.lost = vec![s(20_000, 22_000)];
        let mut sp = spec(Mode::All);
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 10_000,
            to_ms: 15_000,
        }];
        let r = report(&sp, &[probe], &[], s(0, 60_000));
        assert_eq!(r.outages, 3);
        assert_eq!(r.downtime_s, 23.0);
    }

    #[test]
    fn consecutive_down_results_are_one_outage_and_each_recovery_ends_one() {
        let probe = per_second(60_000, |t| {
            let sec = t / 1_000;
            if (5..10).contains(&sec) || (20..21).contains(&sec) || sec >= 50 {
                Down
            } else {
                Up
            }
        });
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 60_000));
        assert_eq!(r.outages, 3);
        assert_eq!(r.downtime_s, 5.0 + 1.0 + 10.0);
    }

    #[test]
    fn an_outage_crossing_the_window_edge_counts_once_and_only_inside() {
        let probe = per_second(60_000, between(0, 30));
        let r = report(&spec(Mode::All), &[probe], &[], s(20_000, 40_000));
        assert_eq!(r.outages, 1);
        assert_eq!(r.downtime_s, 10.0);
        assert_eq!(r.uptime_s, 10.0);
    }

    #[test]
    fn latency_percentiles_and_share_within_the_objective() {
        // 100 checks at 1..=100 ms (in µs exact below 2048 µs: use 10 µs steps instead).
        let probe = ProbeInput {
            observations: (1..=100)
                .map(|i| Observation {
                    at_ms: i * SECOND_MS,
                    state: if i % 10 == 0 { Degraded } else { Up },
                    latency_us: i * 10,
                    interval_ms: SECOND_MS,
                })
                .chain([Observation {
                    at_ms: 101 * SECOND_MS,
                    state: Down,
                    latency_us: 10_000_000,
                    interval_ms: SECOND_MS,
                }])
                .collect(),
            lost: vec![],
        };
        let mut sp = spec(Mode::All);
        sp.latency = Some(LatencyObjective {
            latency_ms: 0.95,
            pct: 95.0,
        });
        let r = report(&sp, &[probe], &[], s(0, 200_000));
        assert_eq!(r.checks, 101);
        assert_eq!(r.latency_p50_ms, Some(0.5));
        assert_eq!(r.latency_p90_ms, Some(0.9));
        assert_eq!(r.latency_p99_ms, Some(0.99));
        assert_eq!(r.latency_objective_ms, Some(0.95));
        assert_eq!(r.latency_target_pct, Some(95.0));
        assert_eq!(r.latency_within_pct, Some(95.0));
        assert_eq!(r.latency_met, Some(true));
    }

    #[test]
    fn latency_counts_checks_of_every_probe_of_the_service() {
        let mk = |lat: u64| ProbeInput {
            observations: vec![Observation {
                at_ms: 0,
                state: Up,
                latency_us: lat,
                interval_ms: SECOND_MS,
            }],
            lost: vec![],
        };
        let mut sp = spec(Mode::Any);
        sp.latency = Some(LatencyObjective {
            latency_ms: 1.0,
            pct: 99.0,
        });
        let r = report(
            &sp,
            &[mk(500), mk(1_500), mk(900), mk(2_000)],
            &[],
            s(0, 1_000),
        );
        assert_eq!(r.checks, 4);
        assert_eq!(r.latency_within_pct, Some(50.0));
        assert_eq!(r.latency_met, Some(false));
        assert_eq!(r.latency_p99_ms, Some(2.0));
    }

    #[test]
    fn without_a_latency_objective_there_is_no_latency_share() {
        let probe = per_second(10_000, |_| Up);
        let r = report(&spec(Mode::All), &[probe], &[], s(0, 10_000));
        assert_eq!(r.latency_p50_ms, Some(1.0));
        assert_eq!(r.latency_objective_ms, None);
        assert_eq!(r.latency_target_pct, None);
        assert_eq!(r.latency_within_pct, None);
        assert_eq!(r.latency_met, None);
    }

    #[test]
    fn no_data_gives_no_availability_and_no_verdict() {
        let mut sp = spec(Mode::All);
        sp.latency = Some(LatencyObjective {
            latency_ms: 300.0,
            pct: 99.0,
        });
        let r = report(&sp, &[ProbeInput::default()], &[], s(0, 60_000));
        assert_eq!(r.availability_pct, None);
        assert_eq!(r.met, None);
        assert_eq!(r.unmonitored_s, 60.0);
        // The budget is the window's, measured or not: 0.1 % of 60 s.
        assert_eq!(r.error_budget_s, 0.06);
        assert_eq!(r.error_budget_remaining_s, 0.06);
        assert_eq!(r.coverage_pct, Some(0.0));
        assert_eq!(r.measured_since, None);
        assert_eq!(r.latency_p50_ms, None);
        assert_eq!(r.latency_within_pct, None);
        assert_eq!(r.latency_met, None);
        assert_eq!(r.checks, 0);
        assert_eq!(r.outages, 0);
    }

    #[test]
    fn a_service_without_probes_is_unmonitored() {
        let r = report(&spec(Mode::Any), &[], &[], s(0, 60_000));
        assert_eq!(r.unmonitored_s, 60.0);
        assert_eq!(r.availability_pct, None);
    }

    #[test]
    fn empty_or_inverted_window_gives_an_empty_report() {
        let probe = per_second(60_000, between(0, 30));
        for window in [s(50_000, 10_000), s(10_000, 10_000)] {
            let r = report(
                &spec(Mode::All),
                std::slice::from_ref(&probe),
                &[s(0, 60_000)],
                window,
            );
            assert_eq!((r.from_ms, r.to_ms), (window.from_ms, window.to_ms));
            assert_eq!(r.uptime_s + r.downtime_s + r.unmonitored_s, 0.0);
            assert_eq!(r.maintenance_s + r.drill_s + r.partial_outage_s, 0.0);
            assert_eq!(r.availability_pct, None);
            assert_eq!(r.met, None);
            assert_eq!(r.checks, 0);
            assert_eq!(r.outages, 0);
            assert_eq!(r.latency_p50_ms, None);
            assert!(
                service_timeline(&spec(Mode::All), std::slice::from_ref(&probe), &[], window)
                    .is_empty()
            );
        }
    }

    #[test]
    fn every_instant_is_classified_exactly_once() {
        let mut a = per_second(90_000, between(10, 40));
        a.lost = vec![s(60_000, 65_000)];
        let b = per_second(80_000, between(30, 50));
        let mut sp = spec(Mode::Any);
        sp.maintenance = vec![MaintenanceWindow::Fixed {
            from_ms: 35_000,
            to_ms: 38_000,
        }];
        let window = s(0, 100_000);
        let r = report(&sp, &[a.clone(), b.clone()], &[s(70_000, 75_000)], window);
        let total = r.uptime_s + r.downtime_s + r.unmonitored_s + r.maintenance_s + r.drill_s;
        assert_eq!(total, 100.0);
        let segs = service_segments(&sp, &[a, b], &[s(70_000, 75_000)], window);
        assert_eq!(segs.first().unwrap().span.from_ms, window.from_ms);
        assert_eq!(segs.last().unwrap().span.to_ms, window.to_ms);
        for w in segs.windows(2) {
            assert_eq!(w[0].span.to_ms, w[1].span.from_ms);
            assert_ne!(
                (w[0].class, w[0].partial_outage),
                (w[1].class, w[1].partial_outage)
            );
        }
        assert!(segs
            .iter()
            .all(|g| !g.partial_outage || g.class == ServiceClass::Up));
    }

    #[test]
    fn report_serialises_with_the_public_field_names() {
        let r = report(
            &spec(Mode::All),
            &[per_second(10_000, |_| Up)],
            &[],
            s(0, 10_000),
        );
        let json = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "from_ms",
            "to_ms",
            "availability_pct",
            "uptime_s",
            "downtime_s",
            "unmonitored_s",
            "maintenance_s",
            "drill_s",
            "partial_outage_s",
            "target_pct",
            "met",
            "error_budget_s",
            "error_budget_remaining_s",
            "latency_p50_ms",
            "latency_p90_ms",
            "latency_p99_ms",
            "latency_objective_ms",
            "latency_target_pct",
            "latency_within_pct",
            "latency_met",
            "checks",
            "outages",
            "coverage_pct",
            "measured_since",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(json["availability_pct"], 100.0);
        assert_eq!(json["latency_met"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<SlaReport>(json).unwrap(), r);
    }

    #[test]
    fn a_million_observations_over_ten_probes_are_summed_exactly() {
        // Ten probes, 100 000 checks each at 1 s; probe k is down for k+1 s starting at
        // 1000·(k+1) s, so in `all` mode the service is down for exactly the union.
        let n = 100_000;
        let probes: Vec<ProbeInput> = (0..10u64)
            .map(|k| {
                let from = 1_000 * (k + 1);
                regular(0, SECOND_MS, n, between(from, from + k + 1))
            })
            .collect();
        let window = s(0, n * SECOND_MS);
        let r = report(&spec(Mode::All), &probes, &[], window);
        assert_eq!(r.checks, 10 * n);
        assert_eq!(r.downtime_s, (1..=10).sum::<u64>() as f64);
        assert_eq!(r.outages, 10);
        assert_eq!(r.uptime_s + r.downtime_s, n as f64);
        let any = report(&spec(Mode::Any), &probes, &[], window);
        assert_eq!(any.downtime_s, 0.0);
        assert_eq!(any.partial_outage_s, 55.0);
    }
}
