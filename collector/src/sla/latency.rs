//! Latency of a service's checks: percentiles from an hdrhistogram, and the exact share of
//! checks within the latency objective.
//!
//! The histogram bounds are constants used everywhere a latency histogram is built (rollups
//! too), so histograms from different places can be added together.

use hdrhistogram::Histogram;

#[cfg(test)]
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

/// Latencies counted by histogram bucket: `(bucket value, count)` pairs sorted by value, where
/// the bucket value is the highest latency (µs) the shared histogram treats as equal to the
/// recorded one. What rollups keep of a minute's, an hour's or a day's checks: exact counts at
/// the histogram's resolution, in a few bytes per distinct bucket, and cheap to add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyCounts(Vec<(u64, u64)>);

/// The shared histogram, used only for its bucket arithmetic (`highest_equivalent`).
fn quantiser() -> &'static Histogram<u64> {
    static Q: std::sync::OnceLock<Histogram<u64>> = std::sync::OnceLock::new();
    Q.get_or_init(new_latency_histogram)
}

/// The bucket value of `latency_us` (clamped into the histogram's bounds).
pub fn latency_bucket(latency_us: u64) -> u64 {
    quantiser().highest_equivalent(latency_us.clamp(LATENCY_HIST_LOW_US, LATENCY_HIST_HIGH_US))
}

/// Sub-buckets per power of two that hour and day sums keep of latency: 32, so a bucket spans
/// at most 1/32 (3.1 %) of its value. Minutes keep the histogram's full resolution (0.1 %).
/// A day of checks then holds a few hundred buckets instead of thousands, which is what makes a
/// 30-day report over a thousand services cheap; percentiles over long windows are reported to
/// within 3.1 %.
pub const COARSE_SUB_BUCKET_BITS: u32 = 5;

/// The coarse bucket of `latency_us` (the highest value it holds).
pub fn coarse_bucket(latency_us: u64) -> u64 {
    let v = latency_us.max(1);
    let magnitude = 63 - v.leading_zeros();
    if magnitude < COARSE_SUB_BUCKET_BITS {
        return v;
    }
    let step = 1u64 << (magnitude - COARSE_SUB_BUCKET_BITS);
    (v / step) * step + (step - 1)
}

impl LatencyCounts {
    /// The same counts in coarse buckets ([`COARSE_SUB_BUCKET_BITS`]).
    pub fn coarsened(&self) -> Self {
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(value, n) in &self.0 {
            // The map is monotonic: equal coarse values are adjacent.
            let c = coarse_bucket(value);
            match out.last_mut() {
                Some(last) if last.0 == c => last.1 += n,
                _ => out.push((c, n)),
            }
        }
        Self(out)
    }

    /// Counts the given latencies (µs) by bucket.
    pub fn from_latencies(latencies: impl IntoIterator<Item = u64>) -> Self {
        let mut v: Vec<(u64, u64)> = latencies
            .into_iter()
            .map(|l| (latency_bucket(l), 1))
            .collect();
        v.sort_unstable_by_key(|p| p.0);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (value, n) in v {
            match out.last_mut() {
                Some(last) if last.0 == value => last.1 += n,
                _ => out.push((value, n)),
            }
        }
        Self(out)
    }

    /// From stored pairs: `None` unless the values strictly increase and every count is > 0.
    pub fn from_pairs(pairs: Vec<(u64, u64)>) -> Option<Self> {
        let increasing = pairs.windows(2).all(|w| w[0].0 < w[1].0);
        (increasing && pairs.iter().all(|p| p.1 > 0)).then_some(Self(pairs))
    }

    /// The pairs, sorted by bucket value.
    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Number of latencies counted.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|p| p.1).sum()
    }

    /// The sum of many counts at once (one sort instead of a merge per list).
    pub fn sum_of<'a>(all: impl IntoIterator<Item = &'a LatencyCounts>) -> Self {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for c in all {
            v.extend_from_slice(&c.0);
        }
        v.sort_unstable_by_key(|p| p.0);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (value, n) in v {
            match out.last_mut() {
                Some(last) if last.0 == value => last.1 += n,
                _ => out.push((value, n)),
            }
        }
        Self(out)
    }

    /// Adds `other`'s counts (a merge of two sorted lists).
    pub fn merge(&mut self, other: &Self) {
        if other.0.is_empty() {
            return;
        }
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let (x, y) = (a[i], b[j]);
            if x.0 == y.0 {
                out.push((x.0, x.1 + y.1));
                i += 1;
                j += 1;
            } else if x.0 < y.0 {
                out.push(x);
                i += 1;
            } else {
                out.push(y);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.0 = out;
    }
}

/// Adds up checks and their latencies over a window — from raw observations and from rollups
/// alike — then gives the report's latency figures.
#[derive(Debug, Clone)]
pub struct LatencyTally {
    hist: Histogram<u64>,
    objective_ms: Option<f64>,
    /// Checks of every state.
    checks: u64,
    counted: u64,
    within: u64,
}

impl LatencyTally {
    /// An empty tally judging against `objective_ms` (if any).
    #[allow(clippy::expect_used)]
    pub fn new(objective_ms: Option<f64>) -> Self {
        // The same buckets as the shared histogram (same lowest value and precision), but
        // growing to the largest value recorded instead of allocating up to an hour at once.
        let hist = Histogram::new(LATENCY_HIST_SIGFIG).expect("the precision is a valid constant");
        Self {
            hist,
            objective_ms,
            checks: 0,
            counted: 0,
            within: 0,
        }
    }

    /// Adds one raw check. Down checks count as checks; their latency (often the timeout) does
    /// not. Within the objective is decided on the exact latency.
    pub fn add_observation(&mut self, o: &Observation) {
        self.checks += 1;
        if o.state == ProbeState::Down {
            return;
        }
        self.counted += 1;
        self.record(
            o.latency_us
                .clamp(LATENCY_HIST_LOW_US, LATENCY_HIST_HIGH_US),
            1,
        );
        // `µs / 1000` is the correctly rounded decimal, so a check of exactly the threshold
        // (e.g. 950 µs against 0.95 ms) compares equal; `ms * 1000` could round the other way.
        if self.is_within(o.latency_us) {
            self.within += 1;
        }
    }

    /// Adds rolled-up checks: `checks` of every state and the up/degraded ones' latencies.
    /// Within the objective is decided on each bucket's highest value (so a bucket straddling
    /// the threshold counts as outside: at most 0.1 % of the threshold is lost).
    pub fn add_rollup(&mut self, checks: u64, latency: &LatencyCounts) {
        self.add_checks(checks);
        for &(value, n) in latency.pairs() {
            self.add_bucket(value, n);
        }
    }

    /// Adds `n` checks of any state (their latencies come with [`LatencyTally::add_bucket`]).
    pub fn add_checks(&mut self, n: u64) {
        self.checks += n;
    }

    /// Adds `n` up/degraded checks in the latency bucket `value_us` (see
    /// [`LatencyTally::add_rollup`] for how the objective is judged).
    pub fn add_bucket(&mut self, value_us: u64, n: u64) {
        self.counted += n;
        self.record(value_us.clamp(LATENCY_HIST_LOW_US, LATENCY_HIST_HIGH_US), n);
        if self.is_within(value_us) {
            self.within += n;
        }
    }

    /// Records `n` × `value_us` (within the shared bounds), growing the histogram as needed.
    fn record(&mut self, value_us: u64, n: u64) {
        if self.hist.record_n(value_us, n).is_err() {
            // Only if growing failed (allocation): keep the count at the largest value.
            self.hist.saturating_record_n(value_us, n);
        }
    }

    fn is_within(&self, latency_us: u64) -> bool {
        self.objective_ms
            .is_some_and(|ms| latency_us as f64 / 1_000.0 <= ms)
    }

    /// Checks of every state added.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// The latency figures.
    pub(crate) fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1_000.0);
        LatencySummary {
            counted: self.counted,
            within: self.within,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
        }
    }
}

/// Summarises the up/degraded checks of `observations` whose `at_ms` lies in `window`; counts
/// exactly how many took at most `objective_ms` (when given).
#[cfg(test)]
pub(crate) fn summarise<'a>(
    observations: impl IntoIterator<Item = &'a Observation>,
    window: Span,
    objective_ms: Option<f64>,
) -> LatencySummary {
    let mut tally = LatencyTally::new(objective_ms);
    for o in observations {
        if window.contains(o.at_ms) {
            tally.add_observation(o);
        }
    }
    tally.summary()
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
    fn coarse_buckets_are_monotonic_and_within_a_32nd_of_their_value() {
        let mut last = 0;
        for v in (1..5_000).chain((5_000..3_600_000_000).step_by(9_973)) {
            let c = coarse_bucket(v);
            assert!(c >= v && c >= last, "{v} -> {c}");
            assert!((c - v) as f64 <= v as f64 / 32.0, "{v} -> {c}");
            last = c;
        }
        // Small values are exact; a bucket's highest value maps to itself.
        assert_eq!(coarse_bucket(31), 31);
        assert_eq!(
            coarse_bucket(coarse_bucket(123_456)),
            coarse_bucket(123_456)
        );
        let l = LatencyCounts::from_latencies([1_000, 1_001, 1_010, 50_000]);
        let c = l.coarsened();
        assert_eq!(c.total(), 4);
        assert!(c.pairs().len() < l.pairs().len());
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
