//! Forecast accuracy: the collector's capacity forecast (`watchstand_collector::capacity::
//! forecast`: daily peaks, explicit step detection, Theil–Sen) against Prometheus'
//! `predict_linear` method, on the same seeded synthetic host series.
//!
//! - Series: `--series` (default 1,200) of 30 days (`--window-days`) sampled every 5 minutes,
//!   in six kinds of equal share: linear growth; growth with heavy noise; a cleanup (a step
//!   down) followed by growth; a daily cycle with no trend; a weekly cycle (low weekends) with
//!   slow growth; flat. Levels, rates, cycle amplitudes, cleanup day and size are drawn from a
//!   seeded RNG (`--seed`). The threshold is 90 % (the disk default).
//! - Truth: the first 5-minute instant after the window at which the series' noise-free signal
//!   reaches the threshold, searched up to the 365-day horizon ("never" past it).
//! - Watchstand: as the collector computes it from its hourly rollups — hourly means stamped
//!   at the hour's middle, [`forecast::forecast`] with daily peaks (of hourly means). Its date is the `crossing`
//!   date (`already_above`: now); any other outcome is no date.
//! - `predict_linear`: as Prometheus defines it (promql/functions.go, `funcPredictLinear`):
//!   ordinary least squares over every raw sample of the same window, the line evaluated from
//!   the evaluation time; the exhaustion date is where the line reaches the threshold (now when
//!   it is already above, no date when the slope is ≤ 0).
//! - Error of the exhaustion date: over the series whose truth crosses within the horizon,
//!   |date − truth| in days, where a method with no date is counted as dating the horizon's end
//!   (the least it can be wrong by). False alarms: among series that do not fill within 14 days,
//!   the share a method says will; missed alarms: among those that do, the share it says won't.
//! - "Says it will fill within 14 days": for Watchstand, the forecast incident's own rule
//!   ([`forecast::alarms`] with the `[capacity.incidents]` defaults: already above, or the
//!   late end of the 80 % interval within 14 days and R² ≥ the floor); the point date alone
//!   is shown beside it, and a sensitivity line gives both rules at several R² floors. For
//!   `predict_linear`, its date within 14 days (what `predict_linear(x[30d], 14d) > 90` alerts
//!   on).

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use watchstand_collector::capacity::forecast::{self, Aggregate, ForecastInput, Outcome};
use watchstand_collector::capacity::CapacitySettings;

use crate::stats::percentile;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const STEP_MS: u64 = 300_000;
const THRESHOLD: f64 = 90.0;
const HORIZON_DAYS: f64 = 365.0;
const ALARM_DAYS: f64 = 14.0;
/// The window's end (any fixed instant; a UTC midnight).
const END_MS: u64 = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS;

/// `bench forecast` arguments.
#[derive(Debug, Parser)]
pub struct Args {
    /// Series to generate (split evenly over the six kinds).
    #[arg(long, default_value_t = 1_200)]
    series: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days of history each forecast sees.
    #[arg(long, default_value_t = 30)]
    window_days: u64,
    /// A tiny run (CI: the bench does not rot).
    #[arg(long)]
    smoke: bool,
}

/// The kinds of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Linear,
    Noisy,
    Cleanup,
    DailyCycle,
    WeeklyGrowth,
    Flat,
}

const KINDS: [Kind; 6] = [
    Kind::Linear,
    Kind::Noisy,
    Kind::Cleanup,
    Kind::DailyCycle,
    Kind::WeeklyGrowth,
    Kind::Flat,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Linear => "linear growth",
            Kind::Noisy => "growth + heavy noise",
            Kind::Cleanup => "cleanup step, then growth",
            Kind::DailyCycle => "daily cycle, no trend",
            Kind::WeeklyGrowth => "weekly cycle + slow growth",
            Kind::Flat => "flat",
        }
    }
}

/// A series' noise-free signal at `d` days relative to the window's end (negative: history),
/// and its noise level.
#[derive(Debug, Clone, Copy)]
struct Shape {
    kind: Kind,
    level: f64,
    slope: f64,
    slope_after: f64,
    cleanup_at: f64,
    cleanup_drop: f64,
    amplitude: f64,
    weekend_dip: f64,
    noise: f64,
}

impl Shape {
    fn draw(kind: Kind, window: f64, rng: &mut StdRng) -> Self {
        let mut s = Shape {
            kind,
            level: 0.0,
            slope: 0.0,
            slope_after: 0.0,
            cleanup_at: 0.0,
            cleanup_drop: 0.0,
            amplitude: 0.0,
            weekend_dip: 0.0,
            noise: 0.3,
        };
        // `level` is the value at the window's end (d = 0).
        match kind {
            Kind::Linear => {
                s.slope = rng.gen_range(0.1..2.0);
                s.level = rng.gen_range(30.0..85.0);
            }
            Kind::Noisy => {
                s.slope = rng.gen_range(0.1..2.0);
                s.level = rng.gen_range(30.0..80.0);
                s.noise = rng.gen_range(1.0..4.0);
            }
            Kind::Cleanup => {
                s.slope = rng.gen_range(0.5..2.5);
                s.slope_after = rng.gen_range(0.2..2.0);
                s.cleanup_at = -rng.gen_range(6.0..(window - 8.0));
                s.cleanup_drop = rng.gen_range(15.0..40.0);
                s.level = rng.gen_range(30.0..80.0);
                s.noise = 0.5;
            }
            Kind::DailyCycle => {
                s.level = rng.gen_range(20.0..55.0);
                s.amplitude = rng.gen_range(5.0..30.0);
                s.noise = 1.0;
            }
            Kind::WeeklyGrowth => {
                s.slope = rng.gen_range(0.05..0.6);
                s.level = rng.gen_range(40.0..80.0);
                s.weekend_dip = rng.gen_range(5.0..25.0);
                s.amplitude = rng.gen_range(0.0..8.0);
                s.noise = 0.5;
            }
            Kind::Flat => {
                s.level = rng.gen_range(10.0..85.0);
                s.noise = 1.0;
            }
        }
        s
    }

    /// The noise-free value at `d` days from the window's end.
    fn signal(&self, d: f64) -> f64 {
        let cycle = |amp: f64| amp * (std::f64::consts::TAU * d).sin();
        match self.kind {
            Kind::Linear | Kind::Noisy => self.level + self.slope * d,
            Kind::Cleanup => {
                if d < self.cleanup_at {
                    // Before the cleanup: the level the growth had reached.
                    self.level + self.slope_after * self.cleanup_at + self.cleanup_drop
                        - self.slope * (self.cleanup_at - d)
                } else {
                    self.level + self.slope_after * d
                }
            }
            Kind::DailyCycle => self.level + cycle(self.amplitude),
            Kind::WeeklyGrowth => {
                let weekday = (d + 7_000.0).floor() as i64 % 7;
                let dip = if weekday >= 5 { self.weekend_dip } else { 0.0 };
                self.level + self.slope * d - dip + cycle(self.amplitude)
            }
            Kind::Flat => self.level,
        }
        .clamp(0.0, 100.0)
    }
}

fn gauss(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn days(ms: u64) -> f64 {
    (ms as f64 - END_MS as f64) / DAY_MS as f64
}

/// Days from the end until the signal first reaches the threshold (0 when already there),
/// None past the horizon.
fn truth(shape: &Shape, last_at: u64) -> Option<f64> {
    let mut t = last_at;
    while days(t) <= HORIZON_DAYS {
        if shape.signal(days(t)) >= THRESHOLD {
            return Some(days(t).max(0.0));
        }
        t += STEP_MS;
    }
    None
}

/// `predict_linear`'s exhaustion date, days from the end: OLS over the raw samples.
fn predict_linear(samples: &[(u64, f64)]) -> Option<f64> {
    let n = samples.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sxx) = (0.0, 0.0, 0.0, 0.0);
    for (t, v) in samples {
        // Prometheus centres x on the evaluation time (seconds); days here: same line.
        let x = days(*t);
        sx += x;
        sy += v;
        sxy += x * v;
        sxx += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n; // the value at the evaluation time (x = 0)
    if intercept >= THRESHOLD {
        return Some(0.0);
    }
    (slope > 0.0).then(|| (THRESHOLD - intercept) / slope)
}

/// Watchstand's exhaustion date, days from the end, from hourly means stamped at the hour's
/// middle, as the collector reads its hourly rollups.
fn watchstand(samples: &[(u64, f64)]) -> forecast::Forecast {
    let mut hourly: Vec<(u64, f64, f64)> = Vec::new();
    for (t, v) in samples {
        let mid = t - t % HOUR_MS + HOUR_MS / 2;
        match hourly.last_mut() {
            Some((h, sum, n)) if *h == mid => {
                *sum += v;
                *n += 1.0;
            }
            _ => hourly.push((mid, *v, 1.0)),
        }
    }
    let hourly: Vec<(u64, f64)> = hourly.into_iter().map(|(h, s, n)| (h, s / n)).collect();
    forecast::forecast(
        &hourly,
        &ForecastInput {
            threshold: THRESHOLD,
            aggregate: Aggregate::Peak,
            horizon_days: HORIZON_DAYS,
            time_resolution_ms: HOUR_MS,
        },
    )
}

fn date_of(f: &forecast::Forecast) -> Option<f64> {
    match f.outcome {
        Outcome::AlreadyAbove { .. } => Some(0.0),
        Outcome::Crossing { date_ms, .. } => Some(days(date_ms).max(0.0)),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Tally {
    errors: Vec<f64>,
    false_alarms: usize,
    negatives: usize,
    missed: usize,
    positives: usize,
}

impl Tally {
    fn add(&mut self, truth: Option<f64>, predicted: Option<f64>, alarm: bool) {
        if let Some(t) = truth {
            self.errors
                .push((predicted.unwrap_or(HORIZON_DAYS).min(HORIZON_DAYS) - t).abs());
        }
        let fills = truth.is_some_and(|t| t <= ALARM_DAYS);
        if fills {
            self.positives += 1;
            self.missed += usize::from(!alarm);
        } else {
            self.negatives += 1;
            self.false_alarms += usize::from(alarm);
        }
    }

    fn p(&self, q: f64) -> f64 {
        percentile(&self.errors, q).unwrap_or(f64::NAN)
    }

    fn share(n: usize, of: usize) -> f64 {
        if of == 0 {
            0.0
        } else {
            n as f64 * 100.0 / of as f64
        }
    }
}

/// Runs the benchmark.
///
/// # Errors
/// None in practice (pure computation); the signature matches the other subcommands.
pub fn main(a: &Args) -> anyhow::Result<()> {
    let series = if a.smoke { 60 } else { a.series };
    anyhow::ensure!(series >= KINDS.len(), "--series must be at least 6");
    anyhow::ensure!(a.window_days >= 7, "--window-days must be at least 7");
    let window = a.window_days as f64;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut ours = Tally::default();
    let mut point = Tally::default();
    let rule = CapacitySettings::default().incidents.alarm;
    let mut floors: Vec<(f64, Tally, Tally)> = [f64::NEG_INFINITY, 0.0, 0.3, 0.5]
        .into_iter()
        .map(|f| (f, Tally::default(), Tally::default()))
        .collect();
    let mut prom = Tally::default();
    let mut per_kind: Vec<(Kind, Tally, Tally)> = KINDS
        .iter()
        .map(|k| (*k, Tally::default(), Tally::default()))
        .collect();
    let started = std::time::Instant::now();
    let first = END_MS - a.window_days * DAY_MS;
    for i in 0..series {
        let kind = KINDS[i % KINDS.len()];
        let shape = Shape::draw(kind, window, &mut rng);
        let samples: Vec<(u64, f64)> = (first..END_MS)
            .step_by(STEP_MS as usize)
            .map(|t| {
                let v = shape.signal(days(t)) + shape.noise * gauss(&mut rng);
                (t, v.clamp(0.0, 100.0))
            })
            .collect();
        let last_at = samples.last().map_or(END_MS, |s| s.0);
        let t = truth(&shape, last_at);
        let wf = watchstand(&samples);
        let (w, p) = (date_of(&wf), predict_linear(&samples));
        let w_alarm = forecast::alarms(&wf, &rule, END_MS);
        let p_alarm = p.is_some_and(|p| p <= ALARM_DAYS);
        ours.add(t, w, w_alarm);
        prom.add(t, p, p_alarm);
        // The point date alone (the rule before the late-end rule), for comparison.
        point.add(t, w, w.is_some_and(|d| d <= ALARM_DAYS));
        let r2 = wf.fit.map_or(f64::NEG_INFINITY, |f| f.r_squared);
        let late = match wf.outcome {
            Outcome::Crossing { latest_ms, .. } => Some(days(latest_ms)),
            Outcome::AlreadyAbove { .. } => Some(0.0),
            _ => None,
        };
        for (floor, point_t, late_t) in &mut floors {
            let ok = r2 >= *floor || matches!(wf.outcome, Outcome::AlreadyAbove { .. });
            point_t.add(t, w, ok && w.is_some_and(|d| d <= ALARM_DAYS));
            late_t.add(t, w, ok && late.is_some_and(|d| d <= ALARM_DAYS));
        }
        let k = &mut per_kind[i % KINDS.len()];
        k.1.add(t, w, w_alarm);
        k.2.add(t, p, p_alarm);
    }
    println!(
        "forecast accuracy: {series} seeded series (seed {}), {} days of 5-minute samples each, threshold {THRESHOLD} %, horizon {HORIZON_DAYS} days, {:.1} s",
        a.seed,
        a.window_days,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| series kind | n with a crossing | Watchstand median / p90 error (days) | predict_linear median / p90 error (days) | false alarms W / P | missed alarms W / P |");
    println!("|---|---|---|---|---|---|");
    for (kind, w, p) in &per_kind {
        println!(
            "| {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {}/{} / {}/{} | {}/{} / {}/{} |",
            kind.name(),
            w.errors.len(),
            w.p(50.0),
            w.p(90.0),
            p.p(50.0),
            p.p(90.0),
            w.false_alarms,
            w.negatives,
            p.false_alarms,
            p.negatives,
            w.missed,
            w.positives,
            p.missed,
            p.positives,
        );
    }
    println!();
    println!("| method | median error (days) | p90 error (days) | false \"fills within 14 days\" | missed \"fills within 14 days\" |");
    println!("|---|---|---|---|---|");
    for (name, t) in [
        ("Watchstand (alarm rule)", &ours),
        ("Watchstand (point date ≤ 14 d)", &point),
        ("predict_linear (OLS)", &prom),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} % ({} of {}) | {:.1} % ({} of {}) |",
            t.p(50.0),
            t.p(90.0),
            Tally::share(t.false_alarms, t.negatives),
            t.false_alarms,
            t.negatives,
            Tally::share(t.missed, t.positives),
            t.missed,
            t.positives,
        );
    }
    println!();
    println!(
        "alarm rule (the forecast incident's, `[capacity.incidents]` defaults): already above, or crossing with the late end of the 80 % interval within {} days and R² ≥ {}",
        rule.within_days, rule.min_r_squared
    );
    let by_floor: Vec<String> = floors
        .iter()
        .map(|(f, p, l)| {
            format!(
                "R² ≥ {f}: point date false {} missed {}, late end false {} missed {}",
                p.false_alarms, p.missed, l.false_alarms, l.missed
            )
        })
        .collect();
    println!("the same rule by R² floor: {}", by_floor.join("; "));
    let ratio = prom.p(90.0) / ours.p(90.0);
    let fa_w = Tally::share(ours.false_alarms, ours.negatives);
    let fa_p = Tally::share(prom.false_alarms, prom.negatives);
    println!(
        "forecast: p90 error {:.2} d vs predict_linear {:.2} d ({ratio:.1}× smaller), false 14-day alarms {fa_w:.1} % vs {fa_p:.1} %",
        ours.p(90.0),
        prom.p(90.0)
    );
    Ok(())
}
