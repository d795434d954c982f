//! Latency of a service's checks: percentiles from an hdrhistogram, and the exact share of
//! checks within the latency objective.
//!
//! The histogram bounds are constants used everywhere a latency histogram is built (rollups
//! too), so histograms from different places can be added together.

use hdrhistogram::Histogram;

use super::span::Span;
use super::timeline::Observation;
use watchstand_shared::wire::v1::ProbeState;

/// Lowest latency a histogram tracks, µs.
pub const LATENCY_HIST_LOW_US: u64 = 1;
/// Highest latency a histogram tracks, µs (one hour, the longest latency the wire accepts).
pub const LATENCY_HIST_HIGH_US: u64 = 3_600_000_000;
/// Significant decimal digits the histogram keeps (0.1 % relative error).
pub const LATENCY_HIST_SIGFIG: u8 = 3;

/// A new, empty latency histogram (µs) with the shared bounds. Record into it with
/// [`record_latency`], which clamps into the bounds.
#[allow(clippy::expect_used)]
pub fn new_latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5);
    // `latency_histogram_bounds_are_valid` checks it, so this cannot fail at run time.
    Histogram::new_with_bounds(
        LATENCY_HIST_LOW_US,
        LATENCY_HIST_HIGH_US,
        LATENCY_HIST_SIGFIG,
    )
    .expect("latency histogram bounds are valid constants")
}

/// Records `latency_us`, clamped into the histogram's bounds.
pub fn record_latency(h: &mut Histogram<u64>, latency_us: u64) {
    h.saturating_record(latency_us.clamp(LATENCY_HIST_LOW_US, LATENCY_HIST_HIGH_US));
}

/// Latency figures over a set of checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencySummary {
    /// Up or degraded checks in the window (the ones whose latency means something).
    pub counted: u64,
    /// Of those, how many were within the objective (0 without an objective).
    pub within: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// Summarises the up/degraded checks of `observations` whose `at_ms` lies in `window`; counts
/// exactly how many took at most `objective_ms` (when given).
pub(crate) fn summarise<'a>(
    observations: impl IntoIterator<Item = &'a Observation>,
    window: Span,
    objective_ms: Option<f64>,
) -> LatencySummary {
    let mut h = new_latency_histogram();
    let mut counted = 0;
    let mut within = 0;
    for o in observations {
        if !window.contains(o.at_ms) || o.state == ProbeState::Down {
            continue;
        }
        counted += 1;
        record_latency(&mut h, o.latency_us);
        // `µs / 1000` is the correctly rounded decimal, so a check of exactly the threshold
        // (e.g. 950 µs against 0.95 ms) compares equal; `ms * 1000` could round the other way.
        if objective_ms.is_some_and(|ms| o.latency_us as f64 / 1_000.0 <= ms) {
            within += 1;
        }
    }
    let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1_000.0);
    LatencySummary {
        counted,
        within,
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p99_ms: q(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at_ms: u64, state: ProbeState, latency_us: u64) -> Observation {
        Observation {
            at_ms,
            state,
            latency_us,
            interval_ms: 1_000,
        }
    }

    #[test]
    fn latency_histogram_bounds_are_valid() {
        let h = new_latency_histogram();
        assert_eq!(h.low(), LATENCY_HIST_LOW_US);
        assert!(h.high() >= LATENCY_HIST_HIGH_US);
        assert_eq!(h.sigfig(), LATENCY_HIST_SIGFIG);
    }

    #[test]
    fn out_of_bounds_latencies_are_clamped_not_lost() {
        let mut h = new_latency_histogram();
        record_latency(&mut h, 0);
        record_latency(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), LATENCY_HIST_LOW_US);
        assert_eq!(h.max(), h.highest_equivalent(LATENCY_HIST_HIGH_US));
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_milliseconds() {
        // Milliseconds that are multiples of 1.024 ms sit exactly on a histogram bucket edge
        // only by luck; compare with the histogram's own equivalence instead.
        let all: Vec<_> = (1..=100)
            .map(|i| obs(i, ProbeState::Up, i * 1_000))
            .collect();
        let sum = summarise(&all, Span::new(0, 1_000), None);
        let h = new_latency_histogram();
        let ms = |us: u64| h.highest_equivalent(us) as f64 / 1_000.0;
        assert_eq!(sum.counted, 100);
        assert_eq!(sum.p50_ms, Some(ms(50_000)));
        assert_eq!(sum.p90_ms, Some(ms(90_000)));
        assert_eq!(sum.p99_ms, Some(ms(99_000)));
        // And within the histogram's 0.1 % precision of the true value.
        assert!((sum.p50_ms.unwrap() - 50.0).abs() <= 0.05);
        assert!((sum.p99_ms.unwrap() - 99.0).abs() <= 0.1);
    }

    #[test]
    fn small_latencies_are_exact() {
        let all: Vec<_> = (1..=100).map(|i| obs(i, ProbeState::Up, i * 10)).collect();
        let sum = summarise(&all, Span::new(0, 1_000), None);
        assert_eq!(sum.p50_ms, Some(0.5));
        assert_eq!(sum.p90_ms, Some(0.9));
        assert_eq!(sum.p99_ms, Some(0.99));
    }

    #[test]
    fn only_up_and_degraded_checks_inside_the_window_count() {
        let all = vec![
            obs(5, ProbeState::Up, 100),          // before the window
            obs(10, ProbeState::Up, 200),         // in
            obs(11, ProbeState::Degraded, 900),   // in: degraded counts against the objective
            obs(12, ProbeState::Down, 5_000_000), // down: latency is the timeout, ignored
            obs(20, ProbeState::Up, 300),         // at the window end: out
        ];
        let sum = summarise(&all, Span::new(10, 20), Some(0.5));
        assert_eq!(sum.counted, 2);
        assert_eq!(sum.within, 1);
        assert_eq!(sum.p99_ms, Some(0.9));
    }

    #[test]
    fn within_objective_is_counted_exactly_at_the_threshold() {
        let all = vec![
            obs(0, ProbeState::Up, 300_000),
            obs(1, ProbeState::Up, 300_001),
            obs(2, ProbeState::Up, 299_999),
        ];
        let sum = summarise(&all, Span::new(0, 10), Some(300.0));
        assert_eq!((sum.counted, sum.within), (3, 2));
        let sum = summarise(&all, Span::new(0, 10), Some(300.0005));
        assert_eq!((sum.counted, sum.within), (3, 2));
        let sum = summarise(&all, Span::new(0, 10), Some(300.001));
        assert_eq!((sum.counted, sum.within), (3, 3));
    }

    #[test]
    fn no_checks_give_no_percentiles() {
        let sum = summarise(&[], Span::new(0, 10), Some(1.0));
        assert_eq!(
            sum,
            LatencySummary {
                counted: 0,
                within: 0,
                p50_ms: None,
                p90_ms: None,
                p99_ms: None
            }
        );
    }
}
