//! The scheduler: the second stage of probe → **scheduler** → outbox → publisher → mqtt. It runs
//! each probe on its own interval and sends every result to the outbox writer.
//!
//! - Each probe is its own task, so a slow probe never delays the others.
//! - The first run of each probe comes right after start, at a random offset within
//!   [`FIRST_RUN_SPREAD`] (or the interval when that is shorter), so a restart costs less than
//!   one interval of unmonitored time, yet probes (and many agents started together) do not all
//!   fire in the same instant. Later runs keep that phase.
//! - A [`Semaphore`] bounds how many checks run at once; every check has a hard timeout
//!   ([`Probe::check`]).
//! - Ticks missed while a probe waited for a permit are skipped, never run in a burst.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::result::{MAX_LATENCY_US, MAX_METRICS};
use watchstand_shared::wire::v1::{ProbeMetric, ProbeResult};

use crate::events;
use crate::outbox::Measurement;
use crate::probe::Probe;

/// Runs one check of `probe` under its hard timeout and returns the result (with seq 0; the
/// outbox assigns it).
pub async fn check_once(probe: &Probe) -> ProbeResult {
    let observed_ms = now_ms();
    let o = probe.check().await;
    let latency_us = u64::try_from(o.latency.as_micros())
        .unwrap_or(u64::MAX)
        .min(MAX_LATENCY_US);
    let result = ProbeResult {
        seq: 0,
        probe: probe.id.clone(),
        kind: probe.kind().to_owned(),
        target: probe.target().to_owned(),
        observed_ms,
        interval_ms: u64::try_from(probe.interval.as_millis()).unwrap_or(u64::MAX),
        state: o.state,
        latency_us,
        error: o.error,
        metrics: wire_metrics(&probe.id, o.metrics),
    };
    events::ProbeChecked {
        probe: &result.probe,
        state: result.state,
        latency_us,
        error: result.error.as_deref(),
    }
    .emit();
    result
}

/// The metrics of an observation as the wire accepts them: the first
/// [`MAX_METRICS`](watchstand_shared::wire::v1::result::MAX_METRICS) valid ones; an invalid one
/// (a label too long, a non-finite value) is left out with a warning, never the whole result.
fn wire_metrics(probe: &str, metrics: Vec<ProbeMetric>) -> Vec<ProbeMetric> {
    let mut out = Vec::with_capacity(metrics.len().min(MAX_METRICS));
    for m in metrics {
        if let Some(problem) = m.problem() {
            tracing::warn!(probe, problem, "Probe metric left out.");
        } else if out.len() == MAX_METRICS {
            tracing::warn!(
                probe,
                max = MAX_METRICS,
                "More probe metrics than fit one result; the rest are left out."
            );
            break;
        } else {
            out.push(m);
        }
    }
    out
}

/// The first run of every probe comes within this long of the start.
pub const FIRST_RUN_SPREAD: Duration = Duration::from_secs(1);

/// A random first-run offset in `[0, min(interval, FIRST_RUN_SPREAD))`.
fn initial_offset(interval: Duration) -> Duration {
    let ms = u64::try_from(interval.min(FIRST_RUN_SPREAD).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::thread_rng().gen_range(0..ms))
}

/// Runs every probe on its own schedule.
#[derive(Debug)]
pub struct Scheduler {
    probes: Vec<Arc<Probe>>,
    limit: Arc<Semaphore>,
    out: mpsc::Sender<Measurement>,
}

impl Scheduler {
    /// A scheduler for `probes`, at most `max_concurrent` checks at once, sending results to
    /// `out`.
    pub fn new(probes: Vec<Probe>, max_concurrent: usize, out: mpsc::Sender<Measurement>) -> Self {
        Self {
            probes: probes.into_iter().map(Arc::new).collect(),
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            out,
        }
    }

    /// Runs until `shutdown`; returns when every probe task has stopped (so the result sender is
    /// dropped and the outbox writer can finish).
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        for probe in self.probes {
            tasks.spawn(run_probe(
                probe,
                self.limit.clone(),
                self.out.clone(),
                shutdown.clone(),
            ));
        }
        tasks.close();
        drop(self.out);
        tasks.wait().await;
    }
}

async fn run_probe(
    probe: Arc<Probe>,
    limit: Arc<Semaphore>,
    out: mpsc::Sender<Measurement>,
    shutdown: CancellationToken,
) {
    let mut ticks = interval_at(
        Instant::now() + initial_offset(probe.interval),
        probe.interval,
    );
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = check_once(&probe) => r,
        };
        drop(permit);
        if out.send(Measurement::Result(result)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeKind;
    use crate::testutil::{FakeProbe, FakeStats};
    use std::sync::atomic::Ordering;
    use watchstand_shared::wire::v1::ProbeState;

    #[test]
    fn metrics_that_break_the_wire_rules_are_left_out_and_at_most_max_metrics_kept() {
        let mut metrics = vec![
            ProbeMetric::new("x".repeat(65), 1.0),
            ProbeMetric::new("nan", f64::NAN),
            ProbeMetric::new("", 1.0),
        ];
        metrics.extend((0..40).map(|i| ProbeMetric::new(format!("m{i}"), f64::from(i))));
        let kept = wire_metrics("p", metrics);
        assert_eq!(kept.len(), MAX_METRICS);
        assert_eq!(kept[0].name, "m0");
        assert_eq!(kept[MAX_METRICS - 1].name, format!("m{}", MAX_METRICS - 1));
    }

    fn fake(
        id: &str,
        interval_ms: u64,
        timeout_ms: u64,
        delay_ms: u64,
        stats: &Arc<FakeStats>,
    ) -> Probe {
        Probe {
            id: id.into(),
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            kind: ProbeKind::Fake(FakeProbe {
                delay: Duration::from_millis(delay_ms),
                stats: stats.clone(),
            }),
        }
    }

    /// Runs the scheduler for `for_ms` of virtual time and returns the results.
    async fn run_for(probes: Vec<Probe>, max_concurrent: usize, for_ms: u64) -> Vec<ProbeResult> {
        let (tx, mut rx) = mpsc::channel(10_000);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Scheduler::new(probes, max_concurrent, tx).run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(for_ms)).await;
        shutdown.cancel();
        task.await.unwrap();
        let mut out = Vec::new();
        while let Some(Measurement::Result(r)) = rx.recv().await {
            out.push(r);
        }
        out
    }

    fn count(results: &[ProbeResult], id: &str) -> usize {
        results.iter().filter(|r| r.probe == id).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_does_not_delay_a_fast_one() {
        let stats = Arc::new(FakeStats::default());
        let probes = vec![
            fake("slow", 10_000, 9_000, 60_000, &stats),
            fake("fast", 1_000, 500, 10, &stats),
        ];
        let results = run_for(probes, 4, 30_000).await;
        let fast = count(&results, "fast");
        assert!((29..=31).contains(&fast), "fast ran {fast} times in 30s");
        let slow: Vec<_> = results.iter().filter(|r| r.probe == "slow").collect();
        assert!(!slow.is_empty());
        for r in slow {
            assert_eq!(r.state, ProbeState::Down);
            assert_eq!(
                r.latency_us, 9_000_000,
                "a timed-out check reports the timeout"
            );
            assert_eq!(r.error.as_deref(), Some("timed out after 9s"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_max_concurrent_probes_run_at_once() {
        let stats = Arc::new(FakeStats::default());
        let probes = (0..6)
            .map(|i| fake(&format!("p{i}"), 1_000, 950, 900, &stats))
            .collect();
        let results = run_for(probes, 2, 20_000).await;
        assert_eq!(stats.max_running.load(Ordering::SeqCst), 2);
        assert!(!results.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_missed_while_waiting_for_a_permit_are_skipped_not_bursted() {
        let stats = Arc::new(FakeStats::default());
        // With one permit, "hog" holds it 8 s of every 10 s; "quick" (every 1 s) must wait.
        let probes = vec![
            fake("hog", 10_000, 9_000, 8_000, &stats),
            fake("quick", 1_000, 500, 1, &stats),
        ];
        let results = run_for(probes, 1, 60_000).await;
        let quick = count(&results, "quick");
        // Bursting would catch up to ~60 runs; skipping leaves ~3 per hog cycle (at most ~25
        // when hog's first run comes late in its first interval).
        assert!((10..=35).contains(&quick), "quick ran {quick} times");
    }

    #[tokio::test(start_paused = true)]
    async fn first_runs_come_within_a_second_of_start_spread_apart() {
        let stats = Arc::new(FakeStats::default());
        let probes = |stats: &Arc<FakeStats>| -> Vec<Probe> {
            (0..20)
                .map(|i| fake(&format!("p{i}"), 10_000, 1_000, 1, stats))
                .collect()
        };
        // Within the spread (not a whole 10 s interval) every probe has run exactly once …
        let results = run_for(probes(&stats), 32, 1_100).await;
        assert_eq!(
            results.len(),
            20,
            "{} of 20 ran in the first 1.1s",
            results.len()
        );
        // … and not all in the same instant: half-way through the spread, some have not.
        let results = run_for(probes(&stats), 32, 500).await;
        assert!((1..=19).contains(&results.len()), "{} ran", results.len());
    }

    #[test]
    fn a_short_interval_bounds_the_first_offset() {
        for _ in 0..100 {
            assert!(initial_offset(Duration::from_millis(200)) < Duration::from_millis(200));
            assert!(initial_offset(Duration::from_secs(60)) < FIRST_RUN_SPREAD);
        }
    }
}
