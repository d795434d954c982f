//! The capacity views the API and CLI show: a summary row per agent and metric (current, peak,
//! p95, trend per day, projected crossing with its interval, headroom; hosts at risk first) and
//! one metric's forecast with the daily points it was fitted on. Read from the coarsest rollup
//! that resolves the period ([`super::rollup::read`]).
//!
//! Definitions: *current* is the newest raw sample; *peak* the highest sample of the period
//! (the highest bucket maximum); *p95* over the period is exact from raw samples and, from
//! rollups, the count-weighted 95th percentile of the buckets' p95s; *headroom* is threshold −
//! current; *trend per day* the Theil–Sen slope of the daily points (see [`super::forecast`]).

use serde::Serialize;

use super::forecast::{self, DailyPoint, Forecast, ForecastInput, Outcome};
use super::rollup::{self, Resolution, Retention, Series};
use super::settings::{aggregate_of, CapacitySettings};
use crate::store::{Result, Store};

/// What the views need besides the store.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityContext {
    /// `[capacity]`.
    pub settings: CapacitySettings,
    /// Retention of raw samples and both rollup levels.
    pub retention: Retention,
}

/// One agent and metric in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// Agent id.
    pub agent: String,
    /// Metric name (`disk_used_pct:/var`).
    pub metric: String,
    /// Which level the period was read from.
    pub resolution: Resolution,
    /// Samples in the period (summed bucket counts).
    pub samples: u64,
    /// The newest sample.
    pub current: Option<f64>,
    /// Its time, epoch ms.
    pub current_at_ms: Option<u64>,
    /// Highest sample of the period.
    pub peak: Option<f64>,
    /// 95th percentile of the period.
    pub p95: Option<f64>,
    /// Mean of the period.
    pub mean: Option<f64>,
    /// The metric's threshold (None: no forecast for it).
    pub threshold: Option<f64>,
    /// Threshold − current.
    pub headroom: Option<f64>,
    /// Theil–Sen slope of the daily points, per day.
    pub trend_per_day: Option<f64>,
    /// The forecast's outcome (`crossing`, `no_trend`, …, `no_threshold`).
    pub outcome: &'static str,
    /// Projected crossing, epoch ms.
    pub projected_ms: Option<u64>,
    /// Earliest date of its interval.
    pub projected_earliest_ms: Option<u64>,
    /// Latest date of its interval.
    pub projected_latest_ms: Option<u64>,
    /// R² of the fit.
    pub r_squared: Option<f64>,
}

/// The summary of every agent and metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Period start, epoch ms.
    pub from_ms: u64,
    /// Period end, epoch ms.
    pub to_ms: u64,
    /// Forecast horizon, days.
    pub horizon_days: f64,
    /// Confidence of the projected intervals.
    pub confidence: f64,
    /// Rows, hosts at risk first: already above, then by projected date, then by headroom.
    pub rows: Vec<SummaryRow>,
}

/// A daily point as shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DailyView {
    /// When, epoch ms.
    pub at_ms: u64,
    /// The day's peak or p95.
    pub value: f64,
    /// Samples (or buckets) in the day.
    pub samples: usize,
}

impl From<DailyPoint> for DailyView {
    fn from(d: DailyPoint) -> Self {
        Self {
            at_ms: d.at_ms,
            value: d.value,
            samples: d.samples,
        }
    }
}

/// One metric's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastView {
    /// Agent id.
    pub agent: String,
    /// Metric name.
    pub metric: String,
    /// Period start, epoch ms.
    pub from_ms: u64,
    /// Period end, epoch ms.
    pub to_ms: u64,
    /// Which level was read.
    pub resolution: Resolution,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// The forecast (absent when the metric has no threshold).
    pub forecast: Option<Forecast>,
    /// The daily points the forecast aggregated.
    pub daily: Vec<DailyView>,
}

/// The points a forecast takes from a read: the buckets' means at their middles (raw samples
/// are buckets of one); the forecast averages them per hour before taking a day's peak or p95.
fn forecast_points(series: &Series) -> Vec<(u64, f64)> {
    series
        .points
        .iter()
        .map(|p| (p.at_ms, p.bucket.mean()))
        .collect()
}

/// Count-weighted nearest-rank 95th percentile of the buckets' p95s (exact for raw samples).
fn weighted_p95(series: &Series) -> Option<f64> {
    let mut v: Vec<(f64, u64)> = series
        .points
        .iter()
        .map(|p| (p.bucket.p95, p.bucket.count))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = v.iter().map(|x| x.1).sum();
    let rank = ((total as f64) * 0.95).ceil() as u64;
    let mut seen = 0;
    for (value, count) in v {
        seen += count;
        if seen >= rank.max(1) {
            return Some(value);
        }
    }
    None
}

fn input(ctx: &CapacityContext, threshold: f64, metric: &str, series: &Series) -> ForecastInput {
    ForecastInput {
        threshold,
        aggregate: aggregate_of(metric),
        horizon_days: ctx.settings.horizon_days,
        time_resolution_ms: series.resolution.bucket_ms(),
    }
}

/// One metric's forecast over `[from_ms, to_ms)`.
///
/// # Errors
/// Store failure or a corrupt bucket.
pub fn forecast_view(
    store: &Store,
    ctx: &CapacityContext,
    agent: &str,
    metric: &str,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Result<ForecastView> {
    let series = rollup::read(store, agent, metric, from_ms, to_ms, now_ms, ctx.retention)?;
    let aggregate = aggregate_of(metric);
    let points = forecast_points(&series);
    let forecast = ctx
        .settings
        .threshold(agent, metric)
        .map(|t| forecast::forecast(&points, &input(ctx, t, metric, &series)));
    Ok(ForecastView {
        agent: agent.to_owned(),
        metric: metric.to_owned(),
        from_ms,
        to_ms,
        resolution: series.resolution,
        confidence: forecast::CONFIDENCE,
        forecast,
        daily: forecast::daily(&points, aggregate)
            .into_iter()
            .map(DailyView::from)
            .collect(),
    })
}

/// One summary row.
fn row(
    store: &Store,
    ctx: &CapacityContext,
    agent: &str,
    metric: &str,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Result<SummaryRow> {
    let series = rollup::read(store, agent, metric, from_ms, to_ms, now_ms, ctx.retention)?;
    let latest = rollup::latest(store, agent, metric)?.filter(|(at, _)| *at < to_ms);
    let samples: u64 = series.points.iter().map(|p| p.bucket.count).sum();
    let sum: f64 = series.points.iter().map(|p| p.bucket.sum).sum();
    let threshold = ctx.settings.threshold(agent, metric);
    let forecast = threshold
        .map(|t| forecast::forecast(&forecast_points(&series), &input(ctx, t, metric, &series)));
    let (projected, earliest, latest_date) = match forecast.as_ref().map(|f| &f.outcome) {
        Some(Outcome::Crossing {
            date_ms,
            earliest_ms,
            latest_ms,
        }) => (Some(*date_ms), Some(*earliest_ms), Some(*latest_ms)),
        _ => (None, None, None),
    };
    let fit = forecast.as_ref().and_then(|f| f.fit);
    Ok(SummaryRow {
        agent: agent.to_owned(),
        metric: metric.to_owned(),
        resolution: series.resolution,
        samples,
        current: latest.map(|l| l.1),
        current_at_ms: latest.map(|l| l.0),
        peak: series
            .points
            .iter()
            .map(|p| p.bucket.max)
            .max_by(f64::total_cmp),
        p95: weighted_p95(&series),
        mean: (samples > 0).then(|| sum / samples as f64),
        threshold,
        headroom: threshold.zip(latest).map(|(t, l)| t - l.1),
        trend_per_day: fit.map(|f| f.slope_per_day),
        outcome: forecast
            .as_ref()
            .map_or("no_threshold", |f| f.outcome.name()),
        projected_ms: projected,
        projected_earliest_ms: earliest,
        projected_latest_ms: latest_date,
        r_squared: fit.map(|f| f.r_squared),
    })
}

/// Risk order: already above, then crossing (soonest first), then the rest by headroom
/// (smallest first), rows without a threshold last.
fn risk_key(r: &SummaryRow) -> (u8, u64, f64) {
    let headroom = r.headroom.unwrap_or(f64::INFINITY);
    match r.outcome {
        "already_above" => (0, 0, headroom),
        "crossing" => (1, r.projected_ms.unwrap_or(u64::MAX), headroom),
        "no_threshold" => (3, 0, headroom),
        _ => (2, 0, headroom),
    }
}

/// Every metric of every agent in `agents` over `[from_ms, to_ms)`, hosts at risk first.
///
/// # Errors
/// Store failure or a corrupt bucket.
pub fn summary(
    store: &Store,
    ctx: &CapacityContext,
    agents: &[String],
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Result<Summary> {
    let mut rows = Vec::new();
    for agent in agents {
        for metric in store.capacity_metrics(agent)? {
            rows.push(row(store, ctx, agent, &metric, from_ms, to_ms, now_ms)?);
        }
    }
    rows.sort_by(|a, b| {
        let (ka, kb) = (risk_key(a), risk_key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then_with(|| (&a.agent, &a.metric).cmp(&(&b.agent, &b.metric)))
    });
    Ok(Summary {
        from_ms,
        to_ms,
        horizon_days: ctx.settings.horizon_days,
        confidence: forecast::CONFIDENCE,
        rows,
    })
}
