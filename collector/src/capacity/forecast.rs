//! Forecast arithmetic (pure, no I/O): from a metric's samples to its trend per day and the
//! projected date it crosses a threshold, with an interval and the fit's quality — or an honest
//! answer that there is no such date.
//!
//! The steps, each defined here and in ARCHITECTURE.md ("Capacity forecasts"):
//! 1. **Daily aggregation** ([`daily`]): the samples are averaged per hour, and the hours cut
//!    into 24-hour windows counted back from the last sample (so the newest window is whole);
//!    each window becomes one point — its peak hour (disk, memory, swap: what fills is the
//!    peak) or the p95 of its hours (CPU). A daily cycle is then one point a day, never a
//!    slope; averaging within the hour keeps sample noise from lifting the peaks (the daily
//!    maximum of 288 noisy samples sits ~2.8 σ above the signal, the peak hourly mean ~0.6 σ),
//!    at the price that a spike shorter than an hour is smoothed (threshold alerts watch those).
//!    The oldest window is dropped when the data covers less than [`MIN_OLDEST_WINDOW`] of it.
//!    **Peak days are de-biased for noise** ([`hourly_noise`]): the highest of k noisy hourly
//!    means sits about E[max of k standard normals] × σ_h above the signal's peak (1.95 σ_h for
//!    24 hours), so that much is taken off each peak day; σ_h, the noise of the hourly means,
//!    is estimated robustly from their second differences (1.4826 × MAD / √6: a trend or a
//!    slow cycle barely moves second differences, noise does). A smooth series gets σ_h ≈ 0 and
//!    keeps its peaks; without it, noisy growth was dated days early (`bench forecast`).
//! 2. **Step changes** ([`last_step`]): a cleanup is a drop between two days larger than
//!    [`STEP_K`] × the robust spread of the day-to-day changes (1.4826 × their MAD, at least
//!    [`SPREAD_FLOOR`]) that persists: the median of the (up to 7) days from the drop on is
//!    that much below the median of the (up to 7) days before it, with at least
//!    [`MIN_DAYS_AFTER_STEP`] days after it. A weekly cycle's weekend dip comes back within the
//!    week and is no step. Only the days from the last step on are fitted.
//! 3. **Theil–Sen fit** ([`theil_sen`]): the slope is the median of all pairwise slopes, with
//!    Sen's rank-based interval at [`CONFIDENCE`] (the ranks (N ∓ z·√Var(S))/2 of the N sorted
//!    pairwise slopes, Var(S) = n(n−1)(2n+5)/18); the line passes through the median day with
//!    the median of the detrended values. One spike moves a median, not the line.
//! 4. **Outcome** ([`Outcome`]): the projected crossing of the threshold, with the earliest and
//!    latest dates the slope's interval allows (the lines through the pivot with the interval's
//!    slopes), or `insufficient_data`, `already_above`, `no_trend` (the interval contains 0),
//!    `falling`, `not_crossing_within_horizon`.
//!
//! Quality: R² of the fitted line over the fitted days, and the median absolute residual.
//!
//! **Alarm** ([`alarms`]): "will fill within N days" — `already_above`, or `crossing` with the
//! late end of the interval within N days and R² above a floor; the forecast incident's rule.

use serde::{Deserialize, Serialize};
use watchstand_shared::time::{DAY_MS, HOUR_MS};

/// Fewest daily points a fit needs.
pub const MIN_DAYS: usize = 3;
/// Fewest samples (over the fitted days) a fit needs.
pub const MIN_SAMPLES: usize = 12;
/// A drop counts as a step when larger than this many robust spreads.
pub const STEP_K: f64 = 4.0;
/// The robust spread of day-to-day changes is at least this (in the metric's unit, percentage
/// points for the metrics that have thresholds), so a perfectly smooth series does not turn
/// every wobble into a step.
pub const SPREAD_FLOOR: f64 = 0.1;
/// A drop is judged a step only with at least this many days from it on (a weekend dip at the
/// end of the data is not yet a step).
pub const MIN_DAYS_AFTER_STEP: usize = 5;
/// The oldest daily window is kept when the data covers at least this share of it.
pub const MIN_OLDEST_WINDOW: f64 = 0.75;
/// Coverage of the slope's interval (and so of the date's).
pub const CONFIDENCE: f64 = 0.80;
/// z for [`CONFIDENCE`] (two-sided 80 %).
const Z_80: f64 = 1.281_551_565_545;
/// Slopes smaller than this in magnitude (units per day) are 0: floating-point noise of a
/// flat series, not a trend.
pub const SLOPE_EPSILON: f64 = 1e-9;
/// Days before and after a drop whose medians must differ for it to be a step.
const STEP_WINDOW: usize = 7;

/// How a day's samples become its point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// The day's highest sample (disk, memory, swap).
    Peak,
    /// The day's 95th percentile, nearest rank (CPU).
    P95,
}

/// One day's point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyPoint {
    /// When: the peak sample's time ([`Aggregate::Peak`]) or the middle of the day's samples.
    pub at_ms: u64,
    /// The day's value.
    pub value: f64,
    /// Samples in the day.
    pub samples: usize,
}

/// What to forecast against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastInput {
    /// The threshold the metric must stay below.
    pub threshold: f64,
    /// How days are aggregated.
    pub aggregate: Aggregate,
    /// Dates further out than this many days are `not_crossing_within_horizon`.
    pub horizon_days: f64,
    /// How precisely the points' times are known, ms: 0 for raw samples, a bucket's length for
    /// rollups (stamped at their middle). The date's interval is widened by half of it.
    pub time_resolution_ms: u64,
}

/// The forecast's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Too little data to fit: fewer than [`MIN_DAYS`] days or [`MIN_SAMPLES`] samples (after
    /// the last step).
    InsufficientData {
        /// Daily points available.
        days: usize,
        /// Samples available.
        samples: usize,
        /// What a fit needs, in words.
        needed: String,
    },
    /// The newest day is already at or above the threshold.
    AlreadyAbove {
        /// The newest day's value.
        value: f64,
    },
    /// The slope's interval contains 0 (within [`SLOPE_EPSILON`]).
    NoTrend,
    /// The whole slope interval is below 0.
    Falling,
    /// Rising, but the projected date is past the horizon.
    NotCrossingWithinHorizon {
        /// The horizon, days.
        horizon_days: f64,
    },
    /// Rising towards the threshold: the projected date and its interval.
    Crossing {
        /// Projected crossing, epoch ms.
        date_ms: u64,
        /// Earliest date the interval allows (the steepest slope), epoch ms.
        earliest_ms: u64,
        /// Latest date the interval allows (the flattest slope), epoch ms.
        latest_ms: u64,
    },
}

impl Outcome {
    /// The snake_case name of the outcome (`crossing`, `no_trend`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::InsufficientData { .. } => "insufficient_data",
            Outcome::AlreadyAbove { .. } => "already_above",
            Outcome::NoTrend => "no_trend",
            Outcome::Falling => "falling",
            Outcome::NotCrossingWithinHorizon { .. } => "not_crossing_within_horizon",
            Outcome::Crossing { .. } => "crossing",
        }
    }
}

/// A fitted line with its interval and quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Theil–Sen slope, units per day.
    pub slope_per_day: f64,
    /// Lower end of the slope's [`CONFIDENCE`] interval.
    pub slope_low: f64,
    /// Upper end.
    pub slope_high: f64,
    /// The pivot's time (the median fitted day), epoch ms.
    pub pivot_ms: u64,
    /// The line's value at the pivot.
    pub pivot_value: f64,
    /// R² of the line over the fitted days (1 − residual / total sum of squares).
    pub r_squared: f64,
    /// Median absolute residual, in the metric's unit.
    pub residual_mad: f64,
}

impl Fit {
    /// The line's value at `at_ms`.
    pub fn value_at(&self, at_ms: u64) -> f64 {
        self.pivot_value + self.slope_per_day * days_between(self.pivot_ms, at_ms)
    }

    /// When a line through the pivot with `slope` reaches `threshold`, epoch ms (None when it
    /// never does going forward in time from the pivot's side).
    fn crossing_ms(&self, slope: f64, threshold: f64) -> Option<f64> {
        (slope > 0.0)
            .then(|| self.pivot_ms as f64 + (threshold - self.pivot_value) / slope * DAY_MS as f64)
    }
}

/// A whole forecast: what was fitted and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The threshold.
    pub threshold: f64,
    /// How days were aggregated.
    pub aggregate: Aggregate,
    /// The last sample's time: projections start here.
    pub as_of_ms: Option<u64>,
    /// Where the last step change (a cleanup) was found, epoch ms; the fit starts there.
    pub step_at_ms: Option<u64>,
    /// Daily points fitted.
    pub days_used: usize,
    /// Samples in the fitted days.
    pub samples_used: usize,
    /// The fit (absent when there was too little data).
    pub fit: Option<Fit>,
    /// The answer.
    #[serde(flatten)]
    pub outcome: Outcome,
}

fn days_between(from_ms: u64, to_ms: u64) -> f64 {
    (to_ms as f64 - from_ms as f64) / DAY_MS as f64
}

/// The median of `v` (sorted in place); NaN-free input assumed (samples are validated finite).
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile `p` (0–100) of `v` (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Cuts `points` (`(at_ms, value)`, any order) into 24-hour windows counted back from the last
/// sample and aggregates each; see the module docs. Empty windows give no point.
pub fn daily(points: &[(u64, f64)], aggregate: Aggregate) -> Vec<DailyPoint> {
    let mut sorted = points.to_vec();
    if !sorted.windows(2).all(|w| w[0].0 <= w[1].0) {
        sorted.sort_by_key(|p| p.0);
    }
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let end = last.0 + 1;
    let window_of = |t: u64| (end - 1 - t) / DAY_MS;
    let oldest = window_of(first.0);
    let oldest_start = end.saturating_sub((oldest + 1) * DAY_MS);
    let covered = (end - oldest * DAY_MS).saturating_sub(first.0.max(oldest_start)) as f64;
    let keep_oldest = oldest == 0 || covered >= MIN_OLDEST_WINDOW * DAY_MS as f64;
    // Hourly means first (windows counted back from the end too, so they nest in the days):
    // sample noise averages out before a day's peak is taken.
    let mut hours: Vec<(u64, f64, usize)> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let h = (end - 1 - sorted[i].0) / HOUR_MS;
        let mut j = i;
        while j < sorted.len() && (end - 1 - sorted[j].0) / HOUR_MS == h {
            j += 1;
        }
        let bin = &sorted[i..j];
        let n = bin.len();
        let mean_at = bin.iter().map(|p| p.0 as f64).sum::<f64>() / n as f64;
        let mean = bin.iter().map(|p| p.1).sum::<f64>() / n as f64;
        hours.push((mean_at.round() as u64, mean, n));
        i = j;
    }
    let noise = match aggregate {
        Aggregate::Peak => {
            let series: Vec<(u64, f64)> = hours.iter().map(|h| (h.0, h.1)).collect();
            hourly_noise(&series)
        }
        Aggregate::P95 => 0.0,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < hours.len() {
        let w = window_of(hours[i].0);
        let mut j = i;
        while j < hours.len() && window_of(hours[j].0) == w {
            j += 1;
        }
        let day = &hours[i..j];
        i = j;
        if w == oldest && !keep_oldest {
            continue;
        }
        let samples = day.iter().map(|h| h.2).sum();
        let point = match aggregate {
            Aggregate::Peak => {
                let mut best = day[0];
                for h in day {
                    if h.1 > best.1 {
                        best = *h;
                    }
                }
                let bias = EXPECTED_MAX[day.len().clamp(1, 24) - 1] * noise;
                DailyPoint {
                    at_ms: best.0,
                    value: best.1 - bias,
                    samples,
                }
            }
            Aggregate::P95 => {
                let mut values: Vec<f64> = day.iter().map(|h| h.1).collect();
                DailyPoint {
                    at_ms: day[0].0 + (day[day.len() - 1].0 - day[0].0) / 2,
                    value: percentile(&mut values, 95.0).unwrap_or(f64::NAN),
                    samples,
                }
            }
        };
        out.push(point);
    }
    out
}

/// E[max of k independent standard normals], k = 1..=24 (order-statistics tables).
const EXPECTED_MAX: [f64; 24] = [
    0.0, 0.5642, 0.8463, 1.0294, 1.1630, 1.2672, 1.3522, 1.4236, 1.4850, 1.5388, 1.5864, 1.6292,
    1.6680, 1.7034, 1.7359, 1.7660, 1.7939, 1.8200, 1.8445, 1.8675, 1.8892, 1.9097, 1.9292, 1.9477,
];

/// The noise of hourly means, σ_h: 1.4826 × the MAD of the second differences of consecutive
/// hours (`(at_ms, mean)`, in time order) / √6; 0 with fewer than three consecutive hours.
pub fn hourly_noise(hours: &[(u64, f64)]) -> f64 {
    let mut d2: Vec<f64> = hours
        .windows(3)
        .filter(|w| {
            w[1].0.abs_diff(w[0].0) <= 3 * HOUR_MS / 2 && w[2].0.abs_diff(w[1].0) <= 3 * HOUR_MS / 2
        })
        .map(|w| w[2].1 - 2.0 * w[1].1 + w[0].1)
        .collect();
    if d2.is_empty() {
        return 0.0;
    }
    let mid = median(&mut d2);
    let mut dev: Vec<f64> = d2.iter().map(|d| (d - mid).abs()).collect();
    1.4826 * median(&mut dev) / 6f64.sqrt()
}

/// The robust spread of the day-to-day changes: 1.4826 × their MAD, at least [`SPREAD_FLOOR`].
fn change_spread(days: &[DailyPoint]) -> f64 {
    let mut diffs: Vec<f64> = days.windows(2).map(|w| w[1].value - w[0].value).collect();
    if diffs.is_empty() {
        return SPREAD_FLOOR;
    }
    let mid = median(&mut diffs);
    let mut dev: Vec<f64> = diffs.iter().map(|d| (d - mid).abs()).collect();
    (1.4826 * median(&mut dev)).max(SPREAD_FLOOR)
}

/// The index of the first day after the last step change (a cleanup), if any; see the module
/// docs for the rule.
pub fn last_step(days: &[DailyPoint]) -> Option<usize> {
    let spread = change_spread(days);
    let limit = STEP_K * spread;
    let n = days.len();
    (1..n)
        .rev()
        .filter(|&i| n - i >= MIN_DAYS_AFTER_STEP)
        .find(|&i| {
            if days[i].value - days[i - 1].value >= -limit {
                return false;
            }
            let mut before: Vec<f64> = days[i.saturating_sub(STEP_WINDOW)..i]
                .iter()
                .map(|d| d.value)
                .collect();
            let mut after: Vec<f64> = days[i..(i + STEP_WINDOW).min(n)]
                .iter()
                .map(|d| d.value)
                .collect();
            median(&mut after) < median(&mut before) - limit
        })
}

/// Theil–Sen fit of `(at_ms, value)` points (at least two distinct times), slope per day with
/// Sen's [`CONFIDENCE`] interval; None when there are fewer than two distinct times.
pub fn theil_sen(points: &[(u64, f64)]) -> Option<Fit> {
    let n = points.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dx = days_between(points[i].0, points[j].0);
            if dx != 0.0 {
                slopes.push((points[j].1 - points[i].1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&mut slopes);
    // `median` sorted the slopes: Sen's ranks index them directly.
    let pairs = slopes.len() as f64;
    let nf = n as f64;
    let c = Z_80 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let rank = |r: f64| (r.round().max(1.0) as usize).min(slopes.len()) - 1;
    let low = slopes[rank((pairs - c) / 2.0)];
    let high = slopes[rank((pairs + c) / 2.0 + 1.0)];
    let mut times: Vec<f64> = points.iter().map(|p| p.0 as f64).collect();
    let pivot_ms = median(&mut times).round() as u64;
    let mut detrended: Vec<f64> = points
        .iter()
        .map(|p| p.1 - slope * days_between(pivot_ms, p.0))
        .collect();
    let pivot_value = median(&mut detrended);
    let mut fit = Fit {
        slope_per_day: slope,
        slope_low: low,
        slope_high: high,
        pivot_ms,
        pivot_value,
        r_squared: 0.0,
        residual_mad: 0.0,
    };
    let mean = points.iter().map(|p| p.1).sum::<f64>() / nf;
    let residuals: Vec<f64> = points.iter().map(|p| p.1 - fit.value_at(p.0)).collect();
    let ss_res: f64 = residuals.iter().map(|r| r * r).sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    fit.r_squared = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let mut abs: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
    fit.residual_mad = median(&mut abs);
    Some(fit)
}

/// The forecast of one metric from its samples (`(at_ms, value)`, any order); see the module
/// docs.
pub fn forecast(points: &[(u64, f64)], input: &ForecastInput) -> Forecast {
    let days = daily(points, input.aggregate);
    let as_of_ms = points.iter().map(|p| p.0).max();
    let mut out = Forecast {
        threshold: input.threshold,
        aggregate: input.aggregate,
        as_of_ms,
        step_at_ms: None,
        days_used: days.len(),
        samples_used: days.iter().map(|d| d.samples).sum(),
        fit: None,
        outcome: Outcome::NoTrend,
    };
    let insufficient = |days: usize, samples: usize| Outcome::InsufficientData {
        days,
        samples,
        needed: format!("at least {MIN_DAYS} days and {MIN_SAMPLES} samples"),
    };
    let Some(newest) = days.last() else {
        out.outcome = insufficient(0, points.len());
        return out;
    };
    if newest.value >= input.threshold {
        out.outcome = Outcome::AlreadyAbove {
            value: newest.value,
        };
        return out;
    }
    let fitted = match last_step(&days) {
        Some(i) => {
            out.step_at_ms = Some(days[i].at_ms);
            &days[i..]
        }
        None => &days[..],
    };
    out.days_used = fitted.len();
    out.samples_used = fitted.iter().map(|d| d.samples).sum();
    if out.days_used < MIN_DAYS || out.samples_used < MIN_SAMPLES {
        out.outcome = insufficient(out.days_used, out.samples_used);
        return out;
    }
    let pairs: Vec<(u64, f64)> = fitted.iter().map(|d| (d.at_ms, d.value)).collect();
    let Some(fit) = theil_sen(&pairs) else {
        out.outcome = insufficient(out.days_used, out.samples_used);
        return out;
    };
    out.fit = Some(fit);
    out.outcome = if fit.slope_low <= SLOPE_EPSILON && fit.slope_high >= -SLOPE_EPSILON {
        Outcome::NoTrend
    } else if fit.slope_high < -SLOPE_EPSILON {
        Outcome::Falling
    } else {
        crossing(&fit, input, as_of_ms.unwrap_or(newest.at_ms))
    };
    out
}

/// The rule of a "will fill within N days" alarm (forecast incidents; `bench forecast` counts
/// its false and missed alarms with this same rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRule {
    /// The crossing's interval must end within this many days of now.
    pub within_days: f64,
    /// The fit's R² must be at least this.
    pub min_r_squared: f64,
}

/// Whether `f` alarms at `now_ms` under `rule`: the daily point is already at or above the
/// threshold (`already_above`), or the metric is `crossing` and the **late end of the
/// crossing's interval** (the flattest slope the interval allows) is within
/// `rule.within_days` of `now_ms`, with the fit's R² at least `rule.min_r_squared`. The point
/// date alone is not enough: with a noisy series it lands early about as often as late, so an
/// alarm on it is wrong whenever the truth is just past the horizon.
pub fn alarms(f: &Forecast, rule: &AlarmRule, now_ms: u64) -> bool {
    match f.outcome {
        Outcome::AlreadyAbove { .. } => true,
        Outcome::Crossing { latest_ms, .. } => {
            let within = now_ms as f64 + rule.within_days * DAY_MS as f64;
            latest_ms as f64 <= within
                && f.fit.is_some_and(|fit| fit.r_squared >= rule.min_r_squared)
        }
        _ => false,
    }
}

/// The outcome of a rising fit (its whole slope interval above 0).
fn crossing(fit: &Fit, input: &ForecastInput, as_of_ms: u64) -> Outcome {
    let to_ms = |t: f64| t.max(as_of_ms as f64).round() as u64;
    let at = |slope| fit.crossing_ms(slope, input.threshold);
    let (Some(est), Some(a), Some(b)) =
        (at(fit.slope_per_day), at(fit.slope_low), at(fit.slope_high))
    else {
        return Outcome::NoTrend;
    };
    if (est - as_of_ms as f64) / DAY_MS as f64 > input.horizon_days {
        return Outcome::NotCrossingWithinHorizon {
            horizon_days: input.horizon_days,
        };
    }
    let half = (input.time_resolution_ms / 2) as f64;
    Outcome::Crossing {
        date_ms: to_ms(est),
        earliest_ms: to_ms(a.min(b) - half),
        latest_ms: to_ms(a.max(b) + half),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const HOUR: u64 = 3_600_000;
    /// A start well after 2000 on a UTC midnight.
    const T0: u64 = 1_700_006_400_000;

    fn input(threshold: f64, aggregate: Aggregate) -> ForecastInput {
        ForecastInput {
            threshold,
            aggregate,
            horizon_days: 365.0,
            time_resolution_ms: 0,
        }
    }

    /// `days` days of hourly samples from `f(day as f64)`.
    fn hourly(days: u64, f: impl Fn(f64) -> f64) -> Vec<(u64, f64)> {
        (0..days * 24)
            .map(|h| {
                let t = T0 + h * HOUR;
                (t, f((t - T0) as f64 / DAY_MS as f64))
            })
            .collect()
    }

    fn gauss(rng: &mut impl Rng) -> f64 {
        // Box–Muller.
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn crossing_of(f: &Forecast) -> (u64, u64, u64) {
        match f.outcome {
            Outcome::Crossing {
                date_ms,
                earliest_ms,
                latest_ms,
            } => (date_ms, earliest_ms, latest_ms),
            ref other => panic!("expected a crossing, got {other:?}"),
        }
    }

    #[test]
    fn linear_growth_crosses_exactly_where_the_line_does() {
        // 40 % + 1 %/day: 90 % at day 50; the last sample is at day 29 23:00.
        let f = forecast(&hourly(30, |d| 40.0 + d), &input(90.0, Aggregate::Peak));
        let fit = f.fit.expect("fit");
        for s in [fit.slope_per_day, fit.slope_low, fit.slope_high] {
            assert!((s - 1.0).abs() < 1e-9, "{fit:?}");
        }
        assert!((fit.r_squared - 1.0).abs() < 1e-12);
        assert_eq!(f.days_used, 30);
        assert_eq!(f.step_at_ms, None);
        let (date, earliest, latest) = crossing_of(&f);
        // Exact to the millisecond but for floating-point rounding.
        for d in [date, earliest, latest] {
            assert!(d.abs_diff(T0 + 50 * DAY_MS) <= 1, "{f:?}");
        }
    }

    #[test]
    fn growth_with_noise_lands_within_its_interval_of_the_truth() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let points = hourly(30, |d| 40.0 + d);
        let noisy: Vec<(u64, f64)> = points
            .iter()
            .map(|(t, v)| (*t, v + 0.8 * gauss(&mut rng)))
            .collect();
        let f = forecast(&noisy, &input(90.0, Aggregate::Peak));
        let (date, earliest, latest) = crossing_of(&f);
        // The daily peak runs ~2 % above the line (the top of 24 noisy samples), so the
        // peak crosses ~2 days before the line does (day 50).
        let truth_line = T0 + 50 * DAY_MS;
        assert!(earliest < date && date < latest, "{f:?}");
        assert!(
            earliest <= truth_line && truth_line - 4 * DAY_MS <= date,
            "{f:?}"
        );
        assert!(date < truth_line, "the peak crosses first: {f:?}");
        let fit = f.fit.expect("fit");
        assert!(fit.slope_low < 1.0 && 1.0 < fit.slope_high, "{fit:?}");
        assert!(fit.r_squared > 0.95, "{fit:?}");
    }

    #[test]
    fn a_cleanup_step_is_found_and_only_the_growth_after_it_is_fitted() {
        // 60 % + 1 %/day for 20 days, a cleanup to 30 % at day 20, then + 2 %/day.
        let points = hourly(30, |d| {
            if d < 20.0 {
                60.0 + d
            } else {
                30.0 + 2.0 * (d - 20.0)
            }
        });
        let f = forecast(&points, &input(90.0, Aggregate::Peak));
        assert_eq!(f.step_at_ms, Some(T0 + 20 * DAY_MS + 23 * HOUR), "{f:?}");
        assert_eq!(f.days_used, 10);
        let fit = f.fit.expect("fit");
        assert!((fit.slope_per_day - 2.0).abs() < 1e-9, "{fit:?}");
        // 30 + 2·(d − 20) = 90 at d = 50.
        let (date, _, _) = crossing_of(&f);
        assert!(date.abs_diff(T0 + 50 * DAY_MS) <= 1, "{f:?}");
        // Ordinary least squares over the whole window is fooled: it sees a fall.
        let ols = ols_slope(&points);
        assert!(ols < 0.0, "{ols}");
    }

    fn ols_slope(points: &[(u64, f64)]) -> f64 {
        let n = points.len() as f64;
        let xs: Vec<f64> = points.iter().map(|p| p.0 as f64 / DAY_MS as f64).collect();
        let mx = xs.iter().sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxy: f64 = xs
            .iter()
            .zip(points)
            .map(|(x, p)| (x - mx) * (p.1 - my))
            .sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        sxy / sxx
    }

    #[test]
    fn a_daily_cycle_without_growth_is_no_trend() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let points: Vec<(u64, f64)> =
            hourly(21, |d| 50.0 + 25.0 * (std::f64::consts::TAU * d).sin())
                .into_iter()
                .map(|(t, v)| (t, v + 0.5 * gauss(&mut rng)))
                .collect();
        let f = forecast(&points, &input(80.0, Aggregate::P95));
        assert_eq!(f.outcome, Outcome::NoTrend, "{f:?}");
        assert_eq!(f.step_at_ms, None);
        // Cut on the cycle's rising half (18:00 to 06:00), the same data is a steep climb to
        // least squares.
        let rising: Vec<(u64, f64)> = points[points.len() - 30..points.len() - 18].to_vec();
        assert!(ols_slope(&rising) > 50.0, "{}", ols_slope(&rising));
    }

    #[test]
    fn a_weekly_cycle_with_slow_growth_is_a_slow_crossing_not_a_step() {
        // Weekdays 60 % (+ 0.2 %/day), weekends 35 %: the weekend dips are no cleanups.
        let points = hourly(35, |d| {
            let weekday = (d.floor() as u64) % 7;
            let base = 60.0 + 0.2 * d;
            if weekday >= 5 {
                base - 25.0
            } else {
                base
            }
        });
        let f = forecast(&points, &input(90.0, Aggregate::Peak));
        assert_eq!(f.step_at_ms, None, "{f:?}");
        assert_eq!(f.days_used, 35);
        let fit = f.fit.expect("fit");
        assert!((fit.slope_per_day - 0.2).abs() < 0.01, "{fit:?}");
        let (date, earliest, latest) = crossing_of(&f);
        // Weekday peaks reach 90 % at d = 150 (a weekday: 150 % 7 = 3).
        let truth = T0 + 150 * DAY_MS;
        assert!(earliest <= truth && truth <= latest, "{f:?}");
        assert!(date.abs_diff(truth) < 5 * DAY_MS, "{f:?}");
    }

    #[test]
    fn a_flat_series_is_no_trend_and_a_falling_one_falling() {
        let flat = forecast(&hourly(14, |_| 42.0), &input(90.0, Aggregate::Peak));
        assert_eq!(flat.outcome, Outcome::NoTrend);
        assert_eq!(flat.fit.expect("fit").slope_per_day, 0.0);
        let falling = forecast(&hourly(14, |d| 70.0 - d), &input(90.0, Aggregate::Peak));
        assert_eq!(falling.outcome, Outcome::Falling);
    }

    #[test]
    fn too_few_points_or_days_is_insufficient_data() {
        let needed = "at least 3 days and 12 samples".to_owned();
        assert_eq!(
            forecast(&[], &input(90.0, Aggregate::Peak)).outcome,
            Outcome::InsufficientData {
                days: 0,
                samples: 0,
                needed: needed.clone()
            }
        );
        // Two days of hourly samples: 48 samples but 2 days.
        assert_eq!(
            forecast(&hourly(2, |d| 10.0 + d), &input(90.0, Aggregate::Peak)).outcome,
            Outcome::InsufficientData {
                days: 2,
                samples: 48,
                needed: needed.clone()
            }
        );
        // Five samples a day apart: the oldest window holds its sample in its last
        // millisecond (too thin to keep), so 4 days of 4 samples.
        let sparse: Vec<(u64, f64)> = (0..5).map(|d| (T0 + d * DAY_MS, 10.0)).collect();
        assert_eq!(
            forecast(&sparse, &input(90.0, Aggregate::Peak)).outcome,
            Outcome::InsufficientData {
                days: 4,
                samples: 4,
                needed
            }
        );
    }

    #[test]
    fn a_cleanup_two_days_ago_leaves_too_little_to_fit_after_it() {
        // A drop with fewer than MIN_DAYS_AFTER_STEP days after it is not (yet) a step; the
        // fit runs over everything and Theil–Sen keeps its slope near the growth.
        let points = hourly(30, |d| if d < 28.0 { 40.0 + d } else { 20.0 })
            .into_iter()
            .collect::<Vec<_>>();
        let f = forecast(&points, &input(90.0, Aggregate::Peak));
        assert_eq!(f.step_at_ms, None);
        let fit = f.fit.expect("fit");
        assert!(fit.slope_per_day > 0.8, "{fit:?}");
    }

    #[test]
    fn already_above_the_threshold_says_so() {
        let f = forecast(&hourly(10, |d| 85.0 + d), &input(90.0, Aggregate::Peak));
        let Outcome::AlreadyAbove { value } = f.outcome else {
            panic!("{f:?}");
        };
        // The newest hour, but for the rounding of a noise estimate of ~1e-14.
        assert!((value - (85.0 + 9.0 + 23.0 / 24.0)).abs() < 1e-9, "{value}");
    }

    #[test]
    fn a_slow_rise_past_the_horizon_says_not_crossing() {
        let f = forecast(
            &hourly(30, |d| 10.0 + 0.1 * d),
            &input(90.0, Aggregate::Peak),
        );
        assert_eq!(
            f.outcome,
            Outcome::NotCrossingWithinHorizon {
                horizon_days: 365.0
            }
        );
    }

    #[test]
    fn one_spike_does_not_move_the_fit() {
        let mut points = hourly(30, |d| 40.0 + d);
        points[24 * 10 + 5].1 = 99.0;
        let f = forecast(&points, &input(100.0, Aggregate::Peak));
        let fit = f.fit.expect("fit");
        assert!((fit.slope_per_day - 1.0).abs() < 0.01, "{fit:?}");
    }

    #[test]
    fn daily_windows_count_back_from_the_last_sample_and_drop_a_thin_oldest_one() {
        // 3 days and 2 hours of hourly samples: the oldest window holds 2 hours → dropped.
        let points = hourly(4, |d| d)[22..].to_vec();
        let days = daily(&points, Aggregate::Peak);
        assert_eq!(days.len(), 3);
        assert!(days.iter().all(|d| d.samples == 24));
        let p95 = daily(&hourly(1, |d| d * 24.0), Aggregate::P95);
        // Nearest rank of 0..=23: ceil(0.95 · 24) = 23rd → 22.
        assert_eq!(p95.len(), 1);
        assert!((p95[0].value - 22.0).abs() < 1e-9);
    }

    /// The slope's 80 % interval contains the true slope in about 80 % of seeded series, and
    /// the date's interval the true date about as often (proptest draws the series' shape,
    /// deterministically; each case runs many noisy series of that shape).
    #[test]
    fn intervals_contain_the_truth_at_about_their_stated_rate() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 24,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let totals = std::cell::RefCell::new((0usize, 0usize, 0usize, 0usize));
        let shape = (
            0.3f64..2.0,
            0.2f64..2.0,
            14u64..40,
            10.0f64..40.0,
            any::<u64>(),
        );
        runner
            .run(&shape, |(slope, noise, days, level, seed)| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let (mut slope_hits, mut date_hits, mut dated) = (0, 0, 0);
                const SERIES: usize = 60;
                for _ in 0..SERIES {
                    // One sample a day (at the same hour): the points the fit sees are the
                    // truth plus independent noise, which is what Sen's interval assumes.
                    let points: Vec<(u64, f64)> = (0..days * 4)
                        .map(|q| {
                            let t = T0 + q * DAY_MS / 4;
                            let d = (t - T0) as f64 / DAY_MS as f64;
                            let v = if q % 4 == 0 {
                                level + slope * d + noise * gauss(&mut rng)
                            } else {
                                // Off-peak samples well below the day's peak.
                                level + slope * d - 50.0
                            };
                            (t, v)
                        })
                        .collect();
                    let f = forecast(
                        &points,
                        &ForecastInput {
                            threshold: 200.0,
                            aggregate: Aggregate::Peak,
                            horizon_days: 10_000.0,
                            time_resolution_ms: 0,
                        },
                    );
                    let fit = f.fit.expect("fit");
                    if fit.slope_low <= slope && slope <= fit.slope_high {
                        slope_hits += 1;
                    }
                    if let Outcome::Crossing {
                        earliest_ms,
                        latest_ms,
                        ..
                    } = f.outcome
                    {
                        dated += 1;
                        let truth = T0 + ((200.0 - level) / slope * DAY_MS as f64) as u64;
                        if earliest_ms <= truth && truth <= latest_ms {
                            date_hits += 1;
                        }
                    }
                }
                let rate = slope_hits as f64 / SERIES as f64;
                prop_assert!(
                    (0.55..=0.97).contains(&rate),
                    "slope coverage {rate} for slope {slope}, noise {noise}, {days} days"
                );
                let mut t = totals.borrow_mut();
                t.0 += slope_hits;
                t.1 += SERIES;
                t.2 += date_hits;
                t.3 += dated;
                Ok(())
            })
            .expect("per-shape coverage");
        let (slope_hits, series, date_hits, dated) = *totals.borrow();
        let slope_rate = slope_hits as f64 / series as f64;
        let date_rate = date_hits as f64 / dated as f64;
        eprintln!("coverage over {series} series: slope {slope_rate:.3}, date {date_rate:.3} of {dated} dated");
        assert!(
            (0.75..=0.86).contains(&slope_rate),
            "slope coverage {slope_rate}"
        );
        assert!(
            (0.70..=0.90).contains(&date_rate),
            "date coverage {date_rate}"
        );
    }
}
