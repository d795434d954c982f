//! P6 (SLA query at scale) and P7 (bytes per probe-minute).
//!
//! For each size (services × days), a loader writes realistic per-minute rollups — recounted
//! by the collector's own `MinuteRecount::compute` from synthetic 10 s checks: latencies,
//! occasional degraded checks, outages with their transition minutes, agent gaps with no
//! rollups — into a sled [`Store`] in a temporary directory through the product's
//! `rollup::append_history` (hour blocks, day sums and the state index, as the rollup pass
//! writes them), day by day (every service's day, then the next day). Then the product's SLA
//! report (`availability::service_report`, what `GET /api/v1/services` and the CLI call) runs
//! for every service over the window, side by side with the in-memory floor: the same
//! per-minute up/down sums as flat arrays in RAM, added up. The two must agree on uptime and
//! downtime to the millisecond.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context as _};
use watchstand_collector::config::Catalogue;
use watchstand_collector::rollup::{self, MinuteRecount};
use watchstand_collector::sla::{Observation, Span};
use watchstand_collector::store::Store;
use watchstand_shared::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use watchstand_shared::wire::v1::ProbeState;

use crate::stats::{thousands, Summary};

/// Minutes per day.
const DAY_MINUTES: u64 = DAY_MS / MINUTE_MS;

/// One size: `services:<N>d` or `services:<N>h` of per-minute rollups loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Size {
    services: usize,
    hours: u64,
}

impl Size {
    fn minutes(&self) -> u64 {
        self.hours * 60
    }

    /// `30 d` or `7 h`.
    fn span(&self) -> String {
        if self.hours % 24 == 0 {
            format!("{} d", self.hours / 24)
        } else {
            format!("{} h", self.hours)
        }
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not services:<N>d or services:<N>h"))?;
        let services = a
            .trim()
            .parse()
            .map_err(|e| format!("services in {s:?}: {e}"))?;
        let b = b.trim();
        let (n, per) = match b.strip_suffix('h') {
            Some(n) => (n, 1),
            None => (b.strip_suffix('d').unwrap_or(b), 24),
        };
        let n: u64 = n.parse().map_err(|e| format!("span in {s:?}: {e}"))?;
        if services == 0 || n == 0 {
            return Err(format!("{s:?}: services and span must be at least 1"));
        }
        Ok(Self {
            services,
            hours: n * per,
        })
    }
}

/// `bench sla-query` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sizes to load and query: `services:<N>d` (or `<N>h`) of per-minute rollups, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100:90d,1000:90d,10000:3d"
    )]
    sizes: Vec<Size>,
    /// The SLA window, days (ending at the last loaded minute).
    #[arg(long, default_value_t = 30)]
    window_days: u64,
    /// Query runs per size (each runs the three variants, interleaved).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Services (probes) per agent.
    #[arg(long, default_value_t = 50)]
    probes_per_agent: usize,
    /// Loader threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory for the stores' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tiny sizes for CI: 10 services × 2 days and 20 services × 12 hours, a 1-day window,
    /// 2 runs.
    #[arg(long)]
    smoke: bool,
    /// Internal: run the one size given in this process and report it on one `@size` line
    /// (the parent runs each size in a fresh child process: sled does not give its memory
    /// back when a store is dropped, and sizes must not inherit each other's heap).
    #[arg(long, hide = true)]
    child: bool,
}

impl Args {
    fn effective(&self) -> Self {
        if !self.smoke || self.child {
            return self.clone();
        }
        Self {
            sizes: vec![
                Size {
                    services: 10,
                    hours: 48,
                },
                Size {
                    services: 20,
                    hours: 12,
                },
            ],
            window_days: 1,
            runs: 2,
            ..self.clone()
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A recounted minute (at minute `M` of the generator) and the three sums the availability
/// needs.
struct Variant {
    recount: MinuteRecount,
    sums: [u32; 3],
}

impl Variant {
    fn of(observations: &[Observation], minute: u64) -> Self {
        let recount = MinuteRecount::compute(observations, minute);
        let r = &recount.rollup;
        let sums = [r.up_ms + r.degraded_ms, r.down_ms, r.unknown_ms].map(|x| x as u32);
        Self { recount, sums }
    }

    /// The same minute at `minute_ms`.
    fn at(&self, minute_ms: u64) -> MinuteRecount {
        let shift = |t: u64| t - self.recount.minute_ms + minute_ms;
        MinuteRecount {
            minute_ms,
            rollup: self.recount.rollup.clone(),
            timeline: self
                .recount
                .timeline
                .iter()
                .map(|(s, c)| (Span::new(shift(s.from_ms), shift(s.to_ms)), *c))
                .collect(),
        }
    }
}

/// Realistic minutes, computed and encoded by the collector's own rollup code.
struct Variants {
    up: Vec<Variant>,
    down: Vec<Variant>,
    going_down: Vec<Variant>,
    coming_up: Vec<Variant>,
    resuming: Vec<Variant>,
}

fn build_variants() -> Variants {
    const M: u64 = 1_000 * MINUTE_MS;
    const INTERVAL: u64 = 10_000;
    let obs = |at: u64, state: ProbeState, latency_us: u64| Observation {
        at_ms: at,
        state,
        latency_us,
        interval_ms: INTERVAL,
    };
    let latency = |h: u64| {
        if h % 20 == 0 {
            200_000 + h % 700_000 // a slow check
        } else {
            2_000 + h % 48_000
        }
    };
    // `pattern[i]` is the state of check i (0 = the one before the minute, 1..=6 inside).
    let make = |seed: u64, pattern: &[Option<ProbeState>; 7]| {
        let offset = splitmix(seed) % INTERVAL;
        let o: Vec<Observation> = pattern
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = (*s)?;
                let h = splitmix(seed ^ (i as u64) << 32);
                let s = if s == ProbeState::Up && h % 50 == 0 {
                    ProbeState::Degraded
                } else {
                    s
                };
                let lat = if s == ProbeState::Down {
                    5_000_000
                } else {
                    latency(h)
                };
                Some(obs(M - INTERVAL + offset + i as u64 * INTERVAL, s, lat))
            })
            .collect();
        Variant::of(&o, M)
    };
    let (u, d) = (Some(ProbeState::Up), Some(ProbeState::Down));
    let many = |n: u64, base: u64, pattern: [Option<ProbeState>; 7]| -> Vec<Variant> {
        (0..n).map(|i| make(base + i, &pattern)).collect()
    };
    Variants {
        up: many(256, 0, [u, u, u, u, u, u, u]),
        down: many(8, 1_000, [d, d, d, d, d, d, d]),
        going_down: many(8, 2_000, [u, u, u, u, d, d, d]),
        coming_up: many(8, 3_000, [d, d, d, d, u, u, u]),
        resuming: many(8, 4_000, [None, None, None, None, u, u, u]),
    }
}

/// Per-service state of the minute generator.
#[derive(Default, Clone, Copy)]
struct Gen {
    outage_left: u64,
    gap_left: u64,
    resume_next: bool,
}

impl Gen {
    /// The rollup of `service` at minute index `m`, or none (agent away, no data).
    fn next<'v>(&mut self, v: &'v Variants, service: u64, m: u64) -> Option<&'v Variant> {
        let h = splitmix((service << 34) ^ m);
        let pick = |list: &'v [Variant]| &list[(h >> 24) as usize % list.len()];
        if self.gap_left > 0 {
            self.gap_left -= 1;
            self.resume_next = self.gap_left == 0;
            return None;
        }
        if self.resume_next {
            self.resume_next = false;
            return Some(pick(&v.resuming));
        }
        if self.outage_left > 0 {
            self.outage_left -= 1;
            return Some(if self.outage_left == 0 {
                pick(&v.coming_up)
            } else {
                pick(&v.down)
            });
        }
        // About one outage per service per four weeks (2 to 46 min), one agent gap (5 min to
        // 2 h) per service per quarter.
        if h % 40_000 == 0 {
            self.outage_left = 1 + (h >> 40) % 45;
            return Some(pick(&v.going_down));
        }
        if h % 130_000 == 1 {
            self.gap_left = 4 + (h >> 40) % 116;
            return None;
        }
        Some(pick(&v.up))
    }
}

/// Ids of a service's probe: `edge-NNN` / `svc-NNNNN`.
fn probe_of(service: usize, per_agent: usize) -> (String, String) {
    (
        format!("edge-{:03}", service / per_agent.max(1)),
        format!("svc-{service:05}"),
    )
}

/// What one loader thread produced besides the store writes.
struct Loaded {
    services: Vec<usize>,
    rollups: u64,
    /// Per service: the per-minute sums inside the window, for the in-memory floor.
    columns: Vec<Vec<[u32; 3]>>,
}

#[allow(clippy::too_many_arguments)]
fn load_part(
    store: &Store,
    v: &Variants,
    services: Vec<usize>,
    per_agent: usize,
    start_ms: u64,
    hours: u64,
    window_from: u64,
    progress: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<Loaded> {
    let minutes = hours * 60;
    let mut gens = vec![Gen::default(); services.len()];
    let mut out = Loaded {
        columns: vec![Vec::new(); services.len()],
        services,
        rollups: 0,
    };
    // A day at a time (every service's day, then the next day), as rollups accumulate.
    for day_start in (0..minutes).step_by(DAY_MINUTES as usize) {
        let day_end = (day_start + DAY_MINUTES).min(minutes);
        for (i, &s) in out.services.iter().enumerate() {
            let (agent, probe) = probe_of(s, per_agent);
            let mut day = Vec::with_capacity(DAY_MINUTES as usize);
            for m in day_start..day_end {
                let Some(r) = gens[i].next(v, s as u64, m) else {
                    continue;
                };
                let minute = start_ms + m * MINUTE_MS;
                day.push(r.at(minute));
                if minute >= window_from {
                    out.columns[i].push(r.sums);
                }
            }
            out.rollups += day.len() as u64;
            progress.fetch_add(day.len() as u64, std::sync::atomic::Ordering::Relaxed);
            rollup::append_history(store, &agent, &probe, &day)?;
        }
    }
    Ok(out)
}

/// The per-service availability sums over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    /// Entries read.
    entries: u64,
    /// Σ up (incl. degraded), down, unknown ms over every service.
    sums: [u64; 3],
    /// Services at ≥ 99.9 % (a check that the report is used).
    meeting: u64,
}

impl Totals {
    fn add_service(&mut self, s: [u64; 3], entries: u64) {
        self.entries += entries;
        for (t, x) in self.sums.iter_mut().zip(s) {
            *t += x;
        }
        let counted = s[0] + s[1];
        if counted > 0 && s[0] as f64 / counted as f64 >= 0.999 {
            self.meeting += 1;
        }
    }
}

/// The product's SLA report of every service over `[from, to)` (`service_reports`, what the
/// API's `/services` and `/metrics` call: the reports computed on every core).
fn query_product(
    store: &Store,
    catalogue: &Catalogue,
    from: u64,
    to: u64,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    let jobs: Vec<_> = catalogue
        .services
        .iter()
        .map(|s| (s, Span::new(from, to)))
        .collect();
    for r in watchstand_collector::availability::service_reports(store, &jobs) {
        let r = r?;
        let ms = |s: f64| (s * 1_000.0).round() as u64;
        t.add_service(
            [ms(r.uptime_s), ms(r.downtime_s), ms(r.unmonitored_s)],
            r.checks,
        );
    }
    Ok(t)
}

/// A catalogue of one single-probe service per loaded probe (99.9 % over 30 days, latency
/// objective 300 ms for 99 % of checks), through the collector's own config loader.
fn catalogue(probes: &[(String, String)], dir: &Path) -> anyhow::Result<Catalogue> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (agent, probe) in probes {
        let _ignored = writeln!(
            text,
            "[[services]]\nid = \"{probe}\"\nname = \"{probe}\"\ncriticality = \"high\"\nrto = \"15m\"\nrpo = \"5m\"\nprobes = [\"{agent}/{probe}\"]\nslo = {{ availability = 99.9, window = \"30d\", latency_ms = 300, latency_pct = 99 }}\n"
        );
    }
    let path = dir.join("services.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let raw = watchstand_collector::config::catalogue::load_services_file(&path)?;
    let mut problems = watchstand_shared::config::Problems::default();
    let catalogue = watchstand_collector::config::catalogue::validate(&raw.services, &mut problems);
    if !problems.is_empty() {
        bail!("the generated services file has problems: {problems:?}");
    }
    Ok(catalogue)
}

/// The floor: the per-minute sums of the window as flat arrays in RAM.
fn query_memory(columns: &[Vec<[u32; 3]>]) -> Totals {
    let mut t = Totals::default();
    for c in columns {
        let mut s = [0u64; 3];
        for m in c {
            s[0] += u64::from(m[0]);
            s[1] += u64::from(m[1]);
            s[2] += u64::from(m[2]);
        }
        t.add_service(s, c.len() as u64);
    }
    t
}

/// One size's figures.
#[derive(serde::Serialize, serde::Deserialize)]
struct SizeResult {
    size: Size,
    window_days: u64,
    rollups: u64,
    load_secs: f64,
    store_bytes: u64,
    checks: u64,
    product_ms: Summary,
    memory_ms: Summary,
    agree: bool,
}

impl SizeResult {
    fn bytes_per_minute(&self) -> f64 {
        self.store_bytes as f64 / self.rollups.max(1) as f64
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn run_size(a: &Args, v: &Variants, size: Size, root: &Path) -> anyhow::Result<SizeResult> {
    let dir = tempfile::Builder::new()
        .prefix("bench-sla-")
        .tempdir_in(root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    let store = Store::open(&dir.path().join("store"))?;
    let now = watchstand_shared::time::now_ms();
    let end_ms = now - now % HOUR_MS;
    let start_ms = end_ms - size.hours * HOUR_MS;
    let window_from = end_ms - a.window_days * DAY_MS;
    let probes: Vec<(String, String)> = (0..size.services)
        .map(|s| probe_of(s, a.probes_per_agent))
        .collect();

    // Load, split over threads by service, each thread day by day.
    let load_start = Instant::now();
    let threads = a.threads.clamp(1, size.services);
    let progress = std::sync::atomic::AtomicU64::new(0);
    let expected = size.services as u64 * size.minutes();
    let parts: Vec<Loaded> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let services: Vec<usize> = (t..size.services).step_by(threads).collect();
                let store = &store;
                let per_agent = a.probes_per_agent;
                let progress = &progress;
                scope.spawn(move || {
                    load_part(
                        store,
                        v,
                        services,
                        per_agent,
                        start_ms,
                        size.hours,
                        window_from,
                        progress,
                    )
                })
            })
            .collect();
        let mut last = Instant::now();
        while !handles
            .iter()
            .all(std::thread::ScopedJoinHandle::is_finished)
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if last.elapsed().as_secs() >= 15 {
                last = Instant::now();
                let done = progress.load(std::sync::atomic::Ordering::Relaxed);
                eprintln!(
                    "  loading: {} of ~{} rollups, {:.0} s, {} rollups/s",
                    thousands(done as f64),
                    thousands(expected as f64),
                    load_start.elapsed().as_secs_f64(),
                    thousands(done as f64 / load_start.elapsed().as_secs_f64()),
                );
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("loader thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    store.flush()?;
    let load_secs = load_start.elapsed().as_secs_f64();
    let store_bytes = store.size_on_disk()?;
    let rollups: u64 = parts.iter().map(|p| p.rollups).sum();

    let mut columns: Vec<Vec<[u32; 3]>> = vec![Vec::new(); size.services];
    for p in parts {
        for (s, c) in p.services.into_iter().zip(p.columns) {
            columns[s] = c;
        }
    }
    let catalogue = catalogue(&probes, dir.path())?;
    println!(
        "# {} services × {}: {} minute rollups loaded in {:.1} s ({} rollups/s); store {:.1} MB = {:.1} bytes/probe-minute on disk",
        thousands(size.services as f64),
        size.span(),
        thousands(rollups as f64),
        load_secs,
        thousands(rollups as f64 / load_secs.max(1e-9)),
        store_bytes as f64 / 1e6,
        store_bytes as f64 / rollups.max(1) as f64,
    );

    // Queries, interleaved: the product's report, then the in-memory floor; `runs` times.
    let (mut tp, mut tmem) = (Vec::new(), Vec::new());
    let mut results = Vec::new();
    for run in 1..=a.runs {
        let t = Instant::now();
        let p = query_product(&store, &catalogue, window_from, end_ms)?;
        tp.push(ms(t));
        let t = Instant::now();
        let f = query_memory(&columns);
        tmem.push(ms(t));
        println!(
            "run {run}/{}: SLA report of every service {:.1} ms ({} checks in the window), in-memory floor {:.2} ms; {} of {} services ≥ 99.9 %",
            a.runs,
            tp[tp.len() - 1],
            thousands(p.entries as f64),
            tmem[tmem.len() - 1],
            p.meeting,
            size.services,
        );
        results.push((p, f));
    }
    // Up and down time agree to the millisecond; unknown differs by design (the floor has no
    // minutes for agent gaps, the report counts them as unmonitored).
    let agree = results
        .iter()
        .all(|(p, f)| p.sums[..2] == f.sums[..2] && p.meeting == f.meeting);
    let checks = results.first().map_or(0, |(p, _)| p.entries);
    let summary = |v: &[f64]| Summary::of(v).context("no runs");
    let out = SizeResult {
        size,
        window_days: a.window_days,
        rollups,
        load_secs,
        store_bytes,
        checks,
        product_ms: summary(&tp)?,
        memory_ms: summary(&tmem)?,
        agree,
    };
    drop(columns);
    drop(store);
    dir.close().context("removing the store")?;
    Ok(out)
}

/// One size in a fresh process (`bench sla-query --child …`); its progress lines are passed on.
fn run_size_child(a: &Args, size: Size, root: &Path) -> anyhow::Result<SizeResult> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe().context("the bench's own path")?;
    let mut child = std::process::Command::new(exe)
        .arg("sla-query")
        .arg("--child")
        .args(["--sizes", &format!("{}:{}h", size.services, size.hours)])
        .args(["--window-days", &a.window_days.to_string()])
        .args(["--runs", &a.runs.to_string()])
        .args(["--probes-per-agent", &a.probes_per_agent.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .arg("--dir")
        .arg(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running a size in a child process")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut result = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(json) = line.strip_prefix("@size ") {
            result = Some(serde_json::from_str::<SizeResult>(json)?);
        } else if !line.starts_with("# machine:") && !line.starts_with("# versions:") {
            println!("{line}");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("the child for {} services failed ({status})", size.services);
    }
    result.context("the child printed no @size line")
}

/// `bench sla-query`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let a = args.effective();
    if a.runs == 0 || a.sizes.is_empty() {
        bail!("nothing to run: --runs and --sizes must not be empty");
    }
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    if a.child {
        let [size] = a.sizes[..] else {
            bail!("a child runs exactly one size");
        };
        let v = build_variants();
        let r = run_size(&a, &v, size, &root)?;
        println!("@size {}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let v = build_variants();
    let mean_value =
        v.up.iter()
            .map(|x| x.recount.rollup.encode(MINUTE_MS).len())
            .sum::<usize>() as f64
            / v.up.len() as f64;
    println!(
        "# sla-query: sizes {}; window {} d; {} runs per size; a steady minute encodes to {mean_value:.1} bytes",
        a.sizes
            .iter()
            .map(|s| format!("{} × {}", s.services, s.span()))
            .collect::<Vec<_>>()
            .join(", "),
        a.window_days,
        a.runs,
    );
    let mut results = Vec::new();
    for size in &a.sizes {
        results.push(run_size_child(&a, *size, &root)?);
    }

    println!();
    println!("| services | data loaded | SLA report of every service over {w} d, ms | in-memory floor, ms | report ÷ floor | checks in the window | load, rollups/s | bytes/probe-minute on disk | up/down agree with the floor |", w = a.window_days);
    println!("|---:|---:|---|---|---:|---:|---:|---:|---|");
    for r in &results {
        println!(
            "| {} | {} | {} | {} | {:.2}× | {} | {} | {:.1} | {} |",
            thousands(r.size.services as f64),
            r.size.span(),
            r.product_ms.show(|x| format!("{x:.1}")),
            r.memory_ms.show(|x| format!("{x:.2}")),
            r.product_ms.median / r.memory_ms.median.max(1e-9),
            thousands(r.checks as f64),
            thousands(r.rollups as f64 / r.load_secs.max(1e-9)),
            r.bytes_per_minute(),
            if r.agree { "yes" } else { "NO" },
        );
    }
    let parts: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{} services × {} {:.1} ms",
                r.size.services,
                r.size.span(),
                r.product_ms.median
            )
        })
        .collect();
    let biggest = results
        .iter()
        .max_by_key(|r| r.rollups)
        .context("no sizes")?;
    println!();
    println!(
        "sla-query: {} over a {} d window (target 100 ms); {:.1} bytes/probe-minute (target 32)",
        parts.join(", "),
        a.window_days,
        biggest.bytes_per_minute()
    );
    Ok(())
}
