//! P4, probe accuracy: the HTTP latency the agent reports, side by side with the raw floor and
//! with blackbox_exporter, against the same loopback target in the same run:
//!
//! - agent: the real `watchstand-agent` with one `http` probe, its `latency_us` read back from
//!   the real pipeline (MQTT through the collector's embedded broker, stored; the collector's
//!   raw-results API `GET /api/v1/agents/{id}/results`).
//! - floor: a minimal reqwest client in the bench making the request the agent makes, with the
//!   same connection semantics and runtime flavour (current-thread): a fresh connection per
//!   check (`pool_max_idle_per_host(0)`), time
//!   from before the request to the response head (the agent reads the body only for body
//!   checks, and this probe has none).
//! - blackbox: `prometheus-blackbox-exporter`'s `probe_duration_seconds` for the same URL
//!   (module `http_2xx`: a fresh connection, and the body read).
//!
//! The three are interleaved within every interval: the bench learns the phase of the agent's
//! schedule from its first result, then sends the floor request a third of an interval after
//! each agent check and the blackbox probe two thirds after, so no two overlap. A run is
//! `--samples` intervals; p50/p90/p99 per run and side, then median and range over the runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;
use watchstand_tests::Exporter;

use crate::peers::{self, Target};
use crate::stats::{quantile, Summary};

/// The agent's id.
const AGENT_ID: &str = "bench-accuracy";
/// Quantiles reported.
const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];

/// `bench accuracy` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Probe interval, ms: one agent check, one floor request and one blackbox probe each.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Intervals per run.
    #[arg(long, default_value_t = 60)]
    samples: usize,
    /// Runs (consecutive blocks of `--samples` interleaved intervals).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Intervals left out before the first run (connection set-up, first-use costs).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Directory for the temporary directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tiny sizes for CI: 200 ms interval, 10 samples, 1 run, 2 warm-up intervals.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    fn effective(&self) -> Self {
        if !self.smoke {
            return self.clone();
        }
        Self {
            interval_ms: 200,
            samples: 10,
            runs: 1,
            warmup: 2,
            ..self.clone()
        }
    }
}

/// Latencies of one run, µs, per side.
#[derive(Debug, Default)]
struct Run {
    from_ms: u64,
    to_ms: u64,
    agent: Vec<f64>,
    floor: Vec<f64>,
    blackbox: Vec<f64>,
    failures: usize,
}

/// The floor: one request on a fresh connection, timed to the response head.
async fn floor_once(client: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("floor GET {url}"))?;
    let took = start.elapsed();
    if !response.status().is_success() {
        bail!("floor GET {url}: {}", response.status());
    }
    Ok(took.as_secs_f64() * 1e6)
}

/// Sleeps until epoch ms `at`.
async fn sleep_until_ms(at: u64) {
    let now = watchstand_tests::now_ms();
    tokio::time::sleep_until(Instant::now() + Duration::from_millis(at.saturating_sub(now))).await;
}

/// The agent's results as `(observed_ms, latency_us, state)`, from the collector's raw-results
/// API.
async fn agent_results(
    collector: &watchstand_tests::Collector,
    from_ms: u64,
    to_ms: u64,
) -> Vec<(u64, f64, String)> {
    let rows = collector
        .get(&format!(
            "/api/v1/agents/{AGENT_ID}/results?from={from_ms}&to={to_ms}"
        ))
        .await;
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some((
                        r["observed_ms"].as_u64()?,
                        r["latency_us"].as_f64()?,
                        r["state"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn measure(a: &Args, target: &Target) -> anyhow::Result<Vec<Run>> {
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("bench-accuracy-")
        .tempdir_in(&root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    let url = target.http.url_path("/health");
    let blackbox = peers::start_exporter(Exporter::Blackbox, &dir.path().join("blackbox")).await?;
    let timeout = (a.interval_ms / 2).min(5_000);
    let probes = peers::http_probes(
        std::slice::from_ref(&url),
        &format!("{}ms", a.interval_ms),
        &format!("{timeout}ms"),
    );
    // The agent's production defaults otherwise (capacity every 30 s, publish linger 200 ms).
    let (collector, mut agent) = peers::start_pipeline(dir.path(), AGENT_ID, &probes, "")
        .await
        .context("starting the collector and the agent")?;

    // The agent's schedule is a fixed period from a random first offset: its first result
    // gives the phase.
    let started_ms = watchstand_tests::now_ms();
    let deadline = Instant::now() + Duration::from_millis(a.interval_ms * 2 + 15_000);
    let first = loop {
        if let Some(r) = agent_results(&collector, started_ms, u64::MAX)
            .await
            .first()
        {
            break r.0;
        }
        if Instant::now() >= deadline {
            bail!(
                "no result from the agent within {} s",
                15 + a.interval_ms * 2 / 1_000
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let floor_client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_millis(timeout))
        .connect_timeout(Duration::from_millis(timeout))
        .build()
        .context("the floor's client")?;
    let scrape = peers::scrape_client()?;

    let period = a.interval_ms;
    let now = watchstand_tests::now_ms();
    // The next agent check at or after now, then the warm-up intervals.
    let mut tick = first + (now.saturating_sub(first)).div_ceil(period) * period;
    let mut runs: Vec<Run> = Vec::with_capacity(a.runs);
    for k in 0..a.warmup + a.runs * a.samples {
        let run_index = k.checked_sub(a.warmup).map(|i| i / a.samples);
        if let Some(r) = run_index {
            if runs.len() == r {
                runs.push(Run {
                    from_ms: tick.saturating_sub(period / 6),
                    ..Run::default()
                });
            }
        }
        sleep_until_ms(tick + period / 3).await;
        let floor = floor_once(&floor_client, &url).await;
        sleep_until_ms(tick + 2 * period / 3).await;
        let bb = peers::blackbox_probe(&scrape, &blackbox, &url).await;
        if let (Some(run), Some(_)) = (runs.last_mut(), run_index) {
            match floor {
                Ok(us) => run.floor.push(us),
                Err(e) => {
                    eprintln!("floor request failed: {e:#}");
                    run.failures += 1;
                }
            }
            match bb {
                Ok(p) if p.success => run.blackbox.push(p.duration_s * 1e6),
                Ok(_) => run.failures += 1,
                Err(e) => {
                    eprintln!("blackbox probe failed: {e:#}");
                    run.failures += 1;
                }
            }
            run.to_ms = tick + period - period / 6;
        }
        tick += period;
    }
    // Let the last results travel (publish linger, store flush), then read them all back.
    let last = runs.last().map_or(0, |r| r.to_ms);
    let first_ms = runs.first().map_or(0, |r| r.from_ms);
    let expected = runs.len() * a.samples;
    let deadline = Instant::now() + Duration::from_secs(10);
    let results = loop {
        let results = agent_results(&collector, first_ms, last).await;
        if results.len() >= expected || Instant::now() >= deadline {
            break results;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (observed, latency, state) in results {
        if let Some(run) = runs
            .iter_mut()
            .find(|r| (r.from_ms..r.to_ms).contains(&observed))
        {
            if state == "up" {
                run.agent.push(latency);
            } else {
                run.failures += 1;
            }
        }
    }
    if !agent.terminate() {
        eprintln!("WARNING: the agent did not stop cleanly on SIGTERM");
    }
    drop((collector, blackbox));
    Ok(runs)
}

fn quantiles(v: &[f64]) -> String {
    QUANTILES
        .iter()
        .map(|(q, name)| {
            quantile(v, *q).map_or_else(|| format!("{name} –"), |x| format!("{name} {x:.0}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One side's latencies in a run.
type Side = fn(&Run) -> &[f64];

/// Per-run `q`-quantiles of a side, summarised over the runs.
fn over_runs(runs: &[Run], side: Side, q: f64) -> Option<Summary> {
    let v: Vec<f64> = runs.iter().filter_map(|r| quantile(side(r), q)).collect();
    Summary::of(&v)
}

/// `bench accuracy`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let a = args.effective();
    if a.interval_ms < 100 || a.samples == 0 || a.runs == 0 {
        bail!("--interval-ms must be at least 100 (the agent's minimum), --samples and --runs at least 1");
    }
    peers::ensure_installed(&[Exporter::Blackbox])?;
    let agent_bin = watchstand_tests::bin("watchstand-agent");
    println!("# versions: {}", peers::version(Exporter::Blackbox));
    println!(
        "# accuracy: one loopback target; every {} ms one agent check, then a floor request (+1/3) and a blackbox probe (+2/3); {} runs of {} intervals after {} warm-up; agent {}",
        a.interval_ms,
        a.runs,
        a.samples,
        a.warmup,
        agent_bin.display()
    );
    // The floor runs on a current-thread runtime, as the agent does: on a multi-threaded one
    // its response wake-ups cross threads and it measured ≈ 90 µs slower than the agent.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let target = Target::start()?;
    let runs = rt.block_on(measure(&a, &target))?;
    drop(target);
    rt.shutdown_timeout(Duration::from_secs(5));
    for (side, count) in [
        ("agent", runs.iter().map(|r| r.agent.len()).sum::<usize>()),
        ("floor", runs.iter().map(|r| r.floor.len()).sum()),
        ("blackbox", runs.iter().map(|r| r.blackbox.len()).sum()),
    ] {
        if count == 0 {
            bail!("no {side} latency was measured (see the failures above)");
        }
    }

    for (i, r) in runs.iter().enumerate() {
        println!(
            "run {}/{}: agent {} (n={}) | floor {} (n={}) | blackbox {} (n={}) | failures {} — µs",
            i + 1,
            runs.len(),
            quantiles(&r.agent),
            r.agent.len(),
            quantiles(&r.floor),
            r.floor.len(),
            quantiles(&r.blackbox),
            r.blackbox.len(),
            r.failures
        );
    }
    let sides: [(&str, Side); 3] = [
        ("agent (reported latency_us, via MQTT and the store)", |r| {
            &r.agent
        }),
        ("floor (minimal reqwest client, fresh connection)", |r| {
            &r.floor
        }),
        ("blackbox_exporter probe_duration_seconds", |r| &r.blackbox),
    ];
    let show =
        |s: Option<Summary>| s.map_or_else(|| "–".to_owned(), |s| s.show(|x| format!("{x:.0}")));
    println!();
    println!("| side | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---|---|");
    for (name, side) in sides {
        println!(
            "| {name} | {} |",
            QUANTILES
                .iter()
                .map(|(q, _)| show(over_runs(&runs, side, *q)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let delta = |other: Side, q: f64| {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| Some(quantile(&r.agent, q)? - quantile(other(r), q)?))
            .collect();
        Summary::of(&v)
    };
    println!(
        "| agent − floor, per run | {} |",
        QUANTILES
            .iter()
            .map(|(q, _)| delta(|r| &r.floor, *q)
                .map_or_else(|| "–".to_owned(), |s| s.show(|x| format!("{x:+.0}"))))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let median = |s: Option<Summary>| s.map_or(f64::NAN, |s| s.median);
    let agent = median(over_runs(&runs, |r| &r.agent, 0.5));
    let floor = median(over_runs(&runs, |r| &r.floor, 0.5));
    let blackbox = median(over_runs(&runs, |r| &r.blackbox, 0.5));
    let d = median(delta(|r| &r.floor, 0.5));
    println!();
    println!(
        "accuracy: agent p50 {agent:.0} µs, floor {floor:.0} µs ({d:+.0} µs), blackbox p50 {blackbox:.0} µs"
    );
    Ok(())
}
