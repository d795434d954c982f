//! P2 + P3, agent footprint: the real `watchstand-agent` with N HTTP probes (default 50 and 200)
//! at 10 s plus host sampling, against the Prometheus peers doing the same job on the same
//! loopback targets: `prometheus-blackbox-exporter` driven at the same probe rate (the bench
//! sends `GET /probe?target=…&module=http_2xx` for each target every interval, spread over it as
//! Prometheus spreads its scrapes) and `prometheus-node-exporter` scraped at the agent's
//! sampling interval.
//!
//! Runs alternate agent, peers, agent, peers, … for each N. An agent run starts a fresh
//! collector (embedded broker; it acknowledges the agent's outbox as in production, and its CPU
//! is not counted) and a fresh agent; a peer run starts fresh exporters. After a warm-up the
//! bench reads `/proc/PID/{stat,status}` at both ends of a steady window: RSS (VmRSS at the end,
//! peak VmHWM) and CPU (utime + stime over the window) per process. CPU per probe = CPU over
//! the window / probes completed in it. The agent's CPU includes its host sampling, MQTT
//! publishing and outbox; blackbox's includes serving the probe request; node_exporter's
//! (reported apart) is the host-sampling counterpart.
//!
//! Every HTTP target is a path on one loopback HTTP server (200 `ok`), running in the bench on a
//! runtime of its own. `--kinds` makes the set mixed (see [`crate::mix`]): HTTP, TCP, DNS, ICMP,
//! TLS and exec probes dealt round-robin, blackbox_exporter doing the same checks with one
//! module per kind; exec has no blackbox counterpart, so the peers run fewer probes per interval
//! and their CPU per probe is over the probes they ran.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use watchstand_tests::{Exporter, RunningExporter};

use crate::mix::{self, Job, Kind, Targets};
use crate::peers::{self, Target};
use crate::procfs::{self, Usage};
use crate::stats::Summary;

/// The agent's id in every run.
const AGENT_ID: &str = "bench-footprint";

/// `bench footprint` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Probe counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    probes: Vec<usize>,
    /// Probe kinds, dealt round-robin over the probes, comma-separated
    /// (`http,tcp,dns,icmp,tls,exec` for the mixed set).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "http")]
    kinds: Vec<Kind>,
    /// Probe interval, ms (the agent's probes and the blackbox driver).
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// Host sampling interval, ms (the agent's `[capacity] interval` and the node_exporter
    /// scrapes).
    #[arg(long, default_value_t = 10_000)]
    sample_ms: u64,
    /// Warm-up before the measured window, seconds (at least one interval: every probe has
    /// started).
    #[arg(long, default_value_t = 15)]
    warmup_s: u64,
    /// The measured window, seconds.
    #[arg(long, default_value_t = 45)]
    window_s: u64,
    /// Runs of each side per probe count, interleaved agent, peers, agent, peers, ….
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Directory for the runs' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tiny sizes for CI: 5 probes (at least one per kind) at 1 s, sampling every 1 s, 2 s warm-up, 3 s window, 1 run.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    fn effective(&self) -> Self {
        if !self.smoke {
            return self.clone();
        }
        Self {
            probes: vec![self.kinds.len().max(5)],
            interval_ms: 1_000,
            sample_ms: 1_000,
            warmup_s: 2,
            window_s: 3,
            runs: 1,
            ..self.clone()
        }
    }
}

/// What one process cost over the window.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// VmRSS at the end of the window, MiB.
    rss_mib: f64,
    /// RssAnon at the end of the window, MiB.
    anon_mib: f64,
    /// VmHWM at the end of the window, MiB.
    hwm_mib: f64,
    /// CPU seconds over the window.
    cpu_s: f64,
    /// Wall seconds of the window.
    secs: f64,
}

impl Cost {
    fn between(start: &Usage, end: &Usage) -> Self {
        Self {
            rss_mib: end.rss_kb as f64 / 1024.0,
            anon_mib: end.anon_kb as f64 / 1024.0,
            hwm_mib: end.hwm_kb as f64 / 1024.0,
            cpu_s: end.cpu_since(start),
            secs: end.secs_since(start),
        }
    }

    /// CPU per event in µs.
    fn per(&self, events: u64) -> f64 {
        if events == 0 {
            f64::NAN
        } else {
            self.cpu_s * 1e6 / events as f64
        }
    }
}

/// One agent run.
#[derive(Debug, Clone, Copy)]
struct AgentRun {
    cost: Cost,
    /// Results observed in the window (stored by the collector).
    probes: u64,
    /// Of which not up.
    not_up: u64,
}

/// One peer run.
#[derive(Debug, Clone, Copy)]
struct PeerRun {
    blackbox: Cost,
    node: Cost,
    /// Blackbox probes completed in the window.
    probes: u64,
    /// Of which failed (`probe_success` 0, or the request failed).
    failed: u64,
    /// node_exporter scrapes completed in the window.
    scrapes: u64,
}

fn ms(d: u64) -> String {
    format!("{d}ms")
}

fn sleep_secs(s: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs(s))
}

async fn run_agent(a: &Args, jobs: &[Job], root: &Path) -> anyhow::Result<AgentRun> {
    let dir = tempfile::Builder::new()
        .prefix("bench-footprint-agent-")
        .tempdir_in(root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    let probes: String = jobs.iter().map(|j| j.toml.as_str()).collect();
    let extra = format!("[capacity]\ninterval = \"{}\"\n", ms(a.sample_ms));
    let (collector, mut agent) = peers::start_pipeline(dir.path(), AGENT_ID, &probes, &extra)
        .await
        .context("starting the collector and the agent")?;
    sleep_secs(a.warmup_s).await;
    let from_ms = watchstand_tests::now_ms();
    let start = procfs::usage(agent.pid())?;
    sleep_secs(a.window_s).await;
    let end = procfs::usage(agent.pid())?;
    let to_ms = watchstand_tests::now_ms();
    // Results observed in the window reach the store within the publish linger and a flush.
    let expected = jobs.len() as u64 * (to_ms - from_ms) / a.interval_ms;
    let path = format!("/api/v1/agents/{AGENT_ID}/results?from={from_ms}&to={to_ms}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = collector.get(&path).await;
        let rows: Vec<Value> = rows.as_array().cloned().unwrap_or_default();
        if rows.len() as u64 + jobs.len() as u64 >= expected || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let not_up = rows.iter().filter(|r| r["state"] != "up").count() as u64;
    if !agent.terminate() {
        eprintln!("WARNING: the agent did not stop cleanly on SIGTERM");
    }
    drop(collector);
    Ok(AgentRun {
        cost: Cost::between(&start, &end),
        probes: rows.len() as u64,
        not_up,
    })
}

/// Counters of the Prometheus stand-in.
#[derive(Debug, Default)]
struct Driven {
    probes: AtomicU64,
    failed: AtomicU64,
    scrapes: AtomicU64,
}

/// Drives the peers as Prometheus would: every target probed through blackbox once per
/// interval (targets spread evenly over it), node_exporter scraped once per sampling interval.
fn drive(
    a: &Args,
    jobs: &[Job],
    blackbox: &Arc<RunningExporter>,
    node: &Arc<RunningExporter>,
    counters: &Arc<Driven>,
) -> anyhow::Result<JoinSet<()>> {
    let client = peers::scrape_client()?;
    let mut tasks = JoinSet::new();
    let interval = Duration::from_millis(a.interval_ms);
    let now = Instant::now();
    for (i, job) in jobs.iter().enumerate() {
        // Spread as the agent spreads its probes: by position in the whole set.
        let offset = interval.mul_f64(i as f64 / jobs.len() as f64);
        let Some((module, target)) = job.blackbox.clone() else {
            continue;
        };
        let (client, blackbox, counters) = (client.clone(), blackbox.clone(), counters.clone());
        tasks.spawn(async move {
            let mut ticks = interval_at(now + offset, interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let ok = matches!(
                    peers::blackbox_probe_module(&client, &blackbox, module, &target).await,
                    Ok(p) if p.success
                );
                counters.probes.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let (node, counters) = (node.clone(), counters.clone());
    let sample = Duration::from_millis(a.sample_ms);
    tasks.spawn(async move {
        let mut ticks = interval_at(now, sample);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let url = node.spec.url("/metrics");
        loop {
            ticks.tick().await;
            if let Ok(r) = client.get(&url).send().await {
                if r.bytes().await.is_ok() {
                    counters.scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(tasks)
}

async fn run_peers(
    a: &Args,
    jobs: &[Job],
    blackbox_config: Option<String>,
    root: &Path,
) -> anyhow::Result<PeerRun> {
    let dir = tempfile::Builder::new()
        .prefix("bench-footprint-peers-")
        .tempdir_in(root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    let blackbox = Arc::new(
        peers::start_exporter_with(
            Exporter::Blackbox,
            &dir.path().join("blackbox"),
            blackbox_config,
        )
        .await?,
    );
    let node = Arc::new(peers::start_exporter(Exporter::Node, &dir.path().join("node")).await?);
    let counters = Arc::new(Driven::default());
    let mut tasks = drive(a, jobs, &blackbox, &node, &counters)?;
    sleep_secs(a.warmup_s).await;
    let read = |c: &Driven| {
        (
            c.probes.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.scrapes.load(Ordering::Relaxed),
        )
    };
    let before = read(&counters);
    let (b0, n0) = (procfs::usage(blackbox.pid())?, procfs::usage(node.pid())?);
    sleep_secs(a.window_s).await;
    let (b1, n1) = (procfs::usage(blackbox.pid())?, procfs::usage(node.pid())?);
    let after = read(&counters);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The driver's clones are gone: dropping these kills the exporters.
    drop((blackbox, node));
    Ok(PeerRun {
        blackbox: Cost::between(&b0, &b1),
        node: Cost::between(&n0, &n1),
        probes: after.0 - before.0,
        failed: after.1 - before.1,
        scrapes: after.2 - before.2,
    })
}

fn summary(values: impl Iterator<Item = f64>) -> Option<Summary> {
    Summary::of(&values.collect::<Vec<_>>())
}

fn show(s: Option<Summary>, decimals: usize) -> String {
    s.map_or_else(|| "–".to_owned(), |s| s.show(|x| format!("{x:.decimals$}")))
}

fn median(s: Option<Summary>) -> f64 {
    s.map_or(f64::NAN, |s| s.median)
}

/// The figures of one probe count.
struct SizeResult {
    probes: usize,
    rss: Option<Summary>,
    peers_rss: Option<Summary>,
    rss_ratio: Option<Summary>,
    cpu: Option<Summary>,
    blackbox_cpu: Option<Summary>,
    cpu_ratio: Option<Summary>,
}

fn report(n: usize, agent: &[AgentRun], peer: &[PeerRun]) -> SizeResult {
    let pairs = || agent.iter().zip(peer);
    let peers_rss = |p: &PeerRun| p.blackbox.rss_mib + p.node.rss_mib;
    let peers_hwm = |p: &PeerRun| p.blackbox.hwm_mib + p.node.hwm_mib;
    let peers_anon = |p: &PeerRun| p.blackbox.anon_mib + p.node.anon_mib;
    let r = SizeResult {
        probes: n,
        rss: summary(agent.iter().map(|r| r.cost.rss_mib)),
        peers_rss: summary(peer.iter().map(peers_rss)),
        rss_ratio: summary(pairs().map(|(a, p)| a.cost.rss_mib / peers_rss(p))),
        cpu: summary(agent.iter().map(|r| r.cost.per(r.probes))),
        blackbox_cpu: summary(peer.iter().map(|p| p.blackbox.per(p.probes))),
        cpu_ratio: summary(pairs().map(|(a, p)| a.cost.per(a.probes) / p.blackbox.per(p.probes))),
    };
    println!();
    println!("### {n} probes: median (min – max, n runs)");
    println!();
    println!("| figure | agent | peers | ratio agent / peers |");
    println!("|---|---|---|---|");
    println!(
        "| RSS at the end of the window, MiB (peers: blackbox + node) | {} | {} | {} |",
        show(r.rss, 1),
        show(r.peers_rss, 1),
        show(r.rss_ratio, 3)
    );
    println!(
        "| peak RSS (VmHWM), MiB | {} | {} | {} |",
        show(summary(agent.iter().map(|r| r.cost.hwm_mib)), 1),
        show(summary(peer.iter().map(peers_hwm)), 1),
        show(
            summary(pairs().map(|(a, p)| a.cost.hwm_mib / peers_hwm(p))),
            3
        )
    );
    println!(
        "| anonymous RSS (RssAnon: heap + stacks, no mapped code), MiB | {} | {} | {} |",
        show(summary(agent.iter().map(|r| r.cost.anon_mib)), 1),
        show(summary(peer.iter().map(peers_anon)), 1),
        show(
            summary(pairs().map(|(a, p)| a.cost.anon_mib / peers_anon(p))),
            3
        )
    );
    println!(
        "| RSS alone, MiB: blackbox / node_exporter | | {} / {} | |",
        show(summary(peer.iter().map(|p| p.blackbox.rss_mib)), 1),
        show(summary(peer.iter().map(|p| p.node.rss_mib)), 1),
    );
    println!(
        "| CPU per probe, µs (agent: all of it, host sampling included; peers: blackbox) | {} | {} | {} |",
        show(r.cpu, 0),
        show(r.blackbox_cpu, 0),
        show(r.cpu_ratio, 3)
    );
    println!(
        "| CPU per probe, µs (peers: blackbox + node_exporter) | {} | {} | {} |",
        show(r.cpu, 0),
        show(
            summary(
                peer.iter()
                    .map(|p| { (p.blackbox.cpu_s + p.node.cpu_s) * 1e6 / p.probes.max(1) as f64 })
            ),
            0
        ),
        show(
            summary(pairs().map(|(a, p)| {
                a.cost.per(a.probes)
                    / ((p.blackbox.cpu_s + p.node.cpu_s) * 1e6 / p.probes.max(1) as f64)
            })),
            3
        )
    );
    println!(
        "| CPU, % of one core | {} | blackbox {} / node {} | |",
        show(
            summary(agent.iter().map(|r| 100.0 * r.cost.cpu_s / r.cost.secs)),
            2
        ),
        show(
            summary(
                peer.iter()
                    .map(|p| 100.0 * p.blackbox.cpu_s / p.blackbox.secs)
            ),
            2
        ),
        show(
            summary(peer.iter().map(|p| 100.0 * p.node.cpu_s / p.node.secs)),
            2
        ),
    );
    println!(
        "| node_exporter CPU per scrape, µs | | {} | |",
        show(summary(peer.iter().map(|p| p.node.per(p.scrapes))), 0),
    );
    r
}

/// `bench footprint`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let a = args.effective();
    if a.probes.is_empty() || a.probes.contains(&0) || a.runs == 0 {
        bail!("--probes needs counts above 0 and --runs at least 1");
    }
    if a.interval_ms < 100 || a.sample_ms < 1_000 {
        bail!("--interval-ms must be at least 100 and --sample-ms at least 1000 (the agent's minimums)");
    }
    peers::ensure_installed(&[Exporter::Blackbox, Exporter::Node])?;
    // Build (or find) the binaries before anything is measured.
    let agent_bin = watchstand_tests::bin("watchstand-agent");
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "# versions: {}; {}",
        peers::version(Exporter::Blackbox),
        peers::version(Exporter::Node)
    );
    println!(
        "# footprint: probes {:?} at {} ms, host sampling every {} ms; warm-up {} s, window {} s; {} runs per side, interleaved agent, peers; agent {}",
        a.probes,
        a.interval_ms,
        a.sample_ms,
        a.warmup_s,
        a.window_s,
        a.runs,
        agent_bin.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let target = Target::start()?;
    let targets = Targets::start(&target, &a.kinds, &root)?;
    let mixed = a.kinds != [Kind::Http];
    let blackbox_config = mixed.then(|| targets.blackbox_config());
    if mixed {
        println!(
            "# kinds {} dealt round-robin; exec runs `{}` (no blackbox counterpart: agent side only)",
            mix::names(&a.kinds),
            targets.exec_command()
        );
    }
    let timeout = (a.interval_ms / 2).min(5_000);
    let mut results = Vec::new();
    for &n in &a.probes {
        let jobs = targets.jobs(&target, &a.kinds, n, &ms(a.interval_ms), &ms(timeout))?;
        if mixed {
            let per_kind: Vec<String> = a
                .kinds
                .iter()
                .map(|k| {
                    let count = jobs.iter().filter(|j| j.kind == *k).count();
                    format!("{count} {}", k.name())
                })
                .collect();
            let peers = jobs.iter().filter(|j| j.blackbox.is_some()).count();
            println!(
                "# {n} probes: {}; blackbox runs {peers} of them",
                per_kind.join(", ")
            );
        }
        let mut agent = Vec::new();
        let mut peer = Vec::new();
        for run in 1..=a.runs {
            let r = rt.block_on(run_agent(&a, &jobs, &root))?;
            println!(
                "probes {n} run {run}/{} agent: RSS {:.1} MiB (anon {:.1}, peak {:.1}), CPU {:.3} s over {:.1} s for {} results ({} not up) = {:.0} µs/probe",
                a.runs,
                r.cost.rss_mib,
                r.cost.anon_mib,
                r.cost.hwm_mib,
                r.cost.cpu_s,
                r.cost.secs,
                r.probes,
                r.not_up,
                r.cost.per(r.probes)
            );
            if r.probes == 0 {
                bail!("the agent's results did not reach the collector in the window");
            }
            agent.push(r);
            let p = rt.block_on(run_peers(&a, &jobs, blackbox_config.clone(), &root))?;
            println!(
                "probes {n} run {run}/{} peers: RSS blackbox {:.1} + node {:.1} = {:.1} MiB (anon {:.1} + {:.1}, peaks {:.1} + {:.1}), CPU blackbox {:.3} s for {} probes ({} failed) = {:.0} µs/probe, node {:.3} s for {} scrapes",
                a.runs,
                p.blackbox.rss_mib,
                p.node.rss_mib,
                p.blackbox.rss_mib + p.node.rss_mib,
                p.blackbox.anon_mib,
                p.node.anon_mib,
                p.blackbox.hwm_mib,
                p.node.hwm_mib,
                p.blackbox.cpu_s,
                p.probes,
                p.failed,
                p.blackbox.per(p.probes),
                p.node.cpu_s,
                p.scrapes
            );
            if p.probes == 0 {
                bail!("no blackbox probe completed in the window");
            }
            peer.push(p);
        }
        results.push(report(n, &agent, &peer));
    }
    drop(targets);
    drop(target);
    rt.shutdown_timeout(Duration::from_secs(5));
    println!();
    let kinds = if mixed {
        format!(" ({})", mix::names(&a.kinds))
    } else {
        String::new()
    };
    for r in &results {
        println!(
            "footprint: probes {}{kinds}, rss {:.1} MiB vs peers {:.1} MiB (ratio {:.3}), cpu/probe {:.0} µs vs blackbox {:.0} µs (ratio {:.3})",
            r.probes,
            median(r.rss),
            median(r.peers_rss),
            median(r.rss_ratio),
            median(r.cpu),
            median(r.blackbox_cpu),
            median(r.cpu_ratio),
        );
    }
    Ok(())
}
