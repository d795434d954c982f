//! P5, detection: how long from a target going down to an incident (an alert) arriving at a
//! webhook receiver, Watchstand side by side with Prometheus + blackbox exporter + Alertmanager,
//! both watching the same outages of the same loopback HTTP target in the same run.
//!
//! - The target is the harness's [`HttpTarget`] (200 when healthy, 503 when down); it logs each
//!   request's arrival and user agent, so the bench knows when each prober first saw the outage.
//! - Watchstand: the real collector (embedded rumqttd broker, the product's defaults — ticks
//!   every 10 s — except the rule: `down_after = 1`, `resolve_after = "0s"`, flap detection and
//!   the window rules off) and the real agent (product defaults, linger 200 ms) probing the
//!   target every `--interval-ms`; the incident's webhook goes to the bench's receiver.
//! - Prometheus from Debian's packages (installed with apt-get when missing, unless
//!   `--install never`): its own processes on free loopback ports with configs written to a
//!   temporary directory: scrape and rule evaluation every `--interval-ms`, the blackbox
//!   exporter probing the target, `probe_success == 0` with `for: 0s`, Alertmanager with
//!   `group_wait: 0s` and a short `group_interval`, webhook to the same receiver.
//! - Each outage starts after a random delay within one interval (so it falls at a random phase
//!   of both probers' schedules), lasts until both stacks reported it (at least `--down-ms`),
//!   and is followed by a recovery that lasts until both reported it resolved (at least
//!   `--up-ms`).
//!
//! `--runs` (default 3) repeats this with every stack started afresh: Prometheus evaluates its
//! rules at a phase to its scrapes that is fixed for the life of the process, so only restarts
//! sample it. Percentiles are over all outages of all runs; per-run figures are shown with their
//! median and range.
//!
//! Detection = receipt of the "opened" (Watchstand) / "firing" (Alertmanager) webhook − the
//! instant the bench switched the target down, all on this process's clock. Also shown: when
//! the first failing check reached the target (the probe's phase: up to one interval) and the
//! stack's own "detected" time (Watchstand's `detected_ms`, Prometheus's `startsAt`).
//! Everything started here is stopped when the command ends (child processes killed by pid,
//! temporary directory removed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use rand::Rng as _;
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, Daemon, HttpTarget, PROMETHEUS_PACKAGES};

use crate::stats::{percentile, thousands, Summary};

/// The agent's id and the service's.
const AGENT: &str = "bench-agent";
const SERVICE: &str = "web";
/// The Prometheus alert's name.
const ALERT: &str = "TargetDown";
/// How often the waits look at what arrived (times are taken on receipt, not by the poll).
const POLL: Duration = Duration::from_millis(5);

/// Whether the bench may install the Prometheus packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Install {
    /// apt-get install them when a binary is missing.
    Auto,
    /// Never install: without them only Watchstand is measured.
    Never,
}

/// `bench detection` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Outages to measure per run.
    #[arg(long, default_value_t = 20)]
    outages: usize,
    /// Runs, each with every stack started afresh (Prometheus's rule evaluation keeps a fixed
    /// phase to its scrapes for the life of the process: only restarts sample it).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Probe interval of both stacks (Prometheus: scrape and rule evaluation interval), ms.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Least time the target stays down (it stays down until both stacks reported it), ms.
    #[arg(long, default_value_t = 2_000)]
    down_ms: u64,
    /// Least time the target stays up between outages (and until both reported the recovery),
    /// ms; a random delay within one interval is added.
    #[arg(long, default_value_t = 2_000)]
    up_ms: u64,
    /// Alertmanager's `group_interval` (a repeat outage in the same alert group waits for it).
    #[arg(long, default_value = "100ms")]
    am_group_interval: String,
    /// Give up waiting for a stack to report an outage or a recovery after this long, s.
    #[arg(long, default_value_t = 15)]
    timeout_s: u64,
    /// Install the Prometheus packages when missing (apt-get, as root).
    #[arg(long, value_enum, default_value_t = Install::Auto)]
    install: Install,
    /// Directory for the temporary directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// CI size: 2 outages.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    fn effective(&self) -> Self {
        if self.smoke {
            Self {
                outages: 2,
                runs: 1,
                down_ms: 1_000,
                up_ms: 1_000,
                ..self.clone()
            }
        } else {
            self.clone()
        }
    }
}

/// One webhook delivery as received.
#[derive(Debug, Clone)]
struct Hook {
    at_ms: u64,
    body: Value,
}

/// The in-bench webhook receiver: `/watchstand` and `/alertmanager`.
#[derive(Debug, Clone, Default)]
struct Receiver {
    got: Arc<Mutex<BTreeMap<&'static str, Vec<Hook>>>>,
}

impl Receiver {
    async fn start(&self) -> anyhow::Result<SocketAddr> {
        let route = |name: &'static str, me: Receiver| {
            post(move |body: Bytes| async move {
                let at_ms = now_ms();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                me.got
                    .lock()
                    .expect("receiver lock")
                    .entry(name)
                    .or_default()
                    .push(Hook { at_ms, body });
                "ok"
            })
        };
        let app = Router::new()
            .route("/watchstand", route("watchstand", self.clone()))
            .route("/alertmanager", route("alertmanager", self.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the webhook receiver")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        Ok(addr)
    }

    /// The first delivery to `name` received at or after `from_ms` that `f` accepts.
    fn first(&self, name: &str, from_ms: u64, f: impl Fn(&Value) -> bool) -> Option<Hook> {
        self.got
            .lock()
            .expect("receiver lock")
            .get(name)?
            .iter()
            .find(|h| h.at_ms >= from_ms && f(&h.body))
            .cloned()
    }
}

fn watchstand_event(body: &Value, event: &str) -> bool {
    body["event"] == event && body["dedup_key"] == format!("service_down:{SERVICE}")
}

fn alertmanager_status(body: &Value, status: &str) -> bool {
    body["status"] == status
        && body["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["status"] == status && x["labels"]["alertname"] == ALERT)
        })
}

/// Epoch ms of an RFC 3339 time.
fn epoch_ms(text: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// Waits (bounded) until `f` returns `Some`.
async fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// GET `url` as JSON, `None` on any failure.
async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Waits (bounded) until `url` answers 2xx.
async fn wait_ready(http: &reqwest::Client, what: &str, url: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} did not become ready at {url} within 30 s")
}

/// Makes sure the Prometheus binaries are there: installs the packages when allowed. Returns why
/// not, if they are not.
fn ensure_prometheus(install: Install) -> Option<String> {
    let missing = watchstand_tests::prometheus_missing();
    if missing.is_empty() {
        return None;
    }
    if install == Install::Never {
        return Some(format!(
            "not installed ({}) and --install never",
            missing.join(", ")
        ));
    }
    eprintln!("installing {} with apt-get …", missing.join(", "));
    let update = Command::new("apt-get").arg("update").status();
    let installed = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(PROMETHEUS_PACKAGES.iter().map(|(p, _)| *p))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let missing = watchstand_tests::prometheus_missing();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "could not install {} (apt-get update: {update:?}, install: {installed:?})",
        missing.join(", ")
    ))
}

fn version_of(bin: &str) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{bin} ?"))
}

/// The versions and settings of the Prometheus stack, for the report.
fn prometheus_summary(a: &Args) -> String {
    let (interval_ms, timeout_ms, group_interval) =
        (a.interval_ms, a.interval_ms * 8 / 10, &a.am_group_interval);
    format!(
        "{}; {}; {}: scrape_interval {interval_ms}ms, evaluation_interval {interval_ms}ms, blackbox http timeout {timeout_ms}ms, alert `probe_success == 0` for: 0s, Alertmanager group_wait 0s, group_interval {group_interval}, send_resolved",
        version_of("/usr/bin/prometheus"),
        version_of("/usr/bin/prometheus-blackbox-exporter"),
        version_of("/usr/bin/prometheus-alertmanager"),
    )
}

/// The Prometheus stack, started here: killed when dropped.
struct PrometheusStack {
    _blackbox: Daemon,
    _alertmanager: Daemon,
    _prometheus: Daemon,
    api: SocketAddr,
}

impl PrometheusStack {
    async fn start(
        dir: &Path,
        target: &str,
        hook: &str,
        interval_ms: u64,
        group_interval: &str,
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (bb, am, prom) = (free_addr(), free_addr(), free_addr());
        let timeout_ms = interval_ms * 8 / 10;
        let blackbox_yml = format!(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: {timeout_ms}ms\n    http:\n      preferred_ip_protocol: ip4\n"
        );
        let alertmanager_yml = format!(
            "route:\n  receiver: bench\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: {group_interval}\n  repeat_interval: 1h\nreceivers:\n  - name: bench\n    webhook_configs:\n      - url: '{hook}'\n        send_resolved: true\n"
        );
        let rules_yml = format!(
            "groups:\n  - name: detection\n    interval: {interval_ms}ms\n    rules:\n      - alert: {ALERT}\n        expr: probe_success == 0\n        for: 0s\n"
        );
        let prometheus_yml = format!(
            "global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {timeout_ms}ms\n  evaluation_interval: {interval_ms}ms\nrule_files: ['rules.yml']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\nscrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n    params:\n      module: [http_2xx]\n    static_configs:\n      - targets: ['{target}']\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: '{bb}'\n"
        );
        for (name, text) in [
            ("blackbox.yml", &blackbox_yml),
            ("alertmanager.yml", &alertmanager_yml),
            ("rules.yml", &rules_yml),
            ("prometheus.yml", &prometheus_yml),
        ] {
            std::fs::write(dir.join(name), text).with_context(|| format!("write {name}"))?;
        }
        let mut cmd = Command::new("/usr/bin/prometheus-blackbox-exporter");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("blackbox.yml").display()
        ))
        .arg(format!("--web.listen-address={bb}"));
        let blackbox = Daemon::spawn("blackbox exporter", cmd, &dir.join("blackbox.log"));
        let mut cmd = Command::new("/usr/bin/prometheus-alertmanager");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.join("alertmanager-data").display()
        ))
        .arg(format!("--web.listen-address={am}"))
        // No cluster listener (its default is 0.0.0.0:9094).
        .arg("--cluster.listen-address=");
        let alertmanager = Daemon::spawn("alertmanager", cmd, &dir.join("alertmanager.log"));
        let mut cmd = Command::new("/usr/bin/prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={prom}"));
        let prometheus = Daemon::spawn("prometheus", cmd, &dir.join("prometheus.log"));
        wait_ready(http, "the blackbox exporter", &format!("http://{bb}/")).await?;
        wait_ready(http, "Alertmanager", &format!("http://{am}/-/ready")).await?;
        wait_ready(http, "Prometheus", &format!("http://{prom}/-/ready")).await?;
        Ok(Self {
            _blackbox: blackbox,
            _alertmanager: alertmanager,
            _prometheus: prometheus,
            api: prom,
        })
    }

    /// `probe_success` of the target as Prometheus has it now.
    async fn probe_success(&self, http: &reqwest::Client) -> Option<String> {
        let v = get_json(
            http,
            &format!("http://{}/api/v1/query?query=probe_success", self.api),
        )
        .await?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    }
}

/// What one stack did in one outage, ms after the target went down.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The first failing check reached the target.
    check: Option<f64>,
    /// The stack's own detection time (`detected_ms` / `startsAt`).
    detected: Option<f64>,
    /// The webhook arrived.
    webhook: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    run: usize,
    down_at_ms: u64,
    watchstand: Seen,
    prometheus: Seen,
}

/// ms from `from` to `to` (negative if earlier).
#[allow(clippy::cast_precision_loss)]
fn ms_between(from: u64, to: u64) -> f64 {
    to as f64 - from as f64
}

fn first_failing_check(target: &HttpTarget, from_ms: u64, user_agent: &str) -> Option<u64> {
    target
        .requests_since(from_ms)
        .into_iter()
        .find(|r| !r.healthy && r.user_agent.starts_with(user_agent))
        .map(|r| r.at_ms)
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), thousands)
}

/// `p50 | p99 | max` cells of a column, or dashes.
fn cells(values: &[f64]) -> String {
    let p = |q: f64| show(percentile(values, q));
    let max = values
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    format!("{} | {} | {}", p(50.0), p(99.0), show(max))
}

/// Runs `bench detection`.
pub fn main(args: &Args) -> anyhow::Result<()> {
    let a = args.effective();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(&a))
}

#[allow(clippy::too_many_lines)]
async fn run(a: &Args) -> anyhow::Result<()> {
    if a.interval_ms < 100 {
        bail!("--interval-ms must be at least 100");
    }
    // Build (or find) the binaries before anything is timed.
    let _collector_bin = watchstand_tests::bin("watchstand-collector");
    let prometheus_absent = ensure_prometheus(a.install);
    let root = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("watchstand-bench-detection-")
        .tempdir_in(&root)
        .with_context(|| format!("temporary directory in {}", root.display()))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;

    let receiver = Receiver::default();
    let hook = receiver.start().await?;
    let target = HttpTarget::start().await;
    let prometheus_on = prometheus_absent.is_none();

    println!(
        "# detection: {} runs × {} outages of one loopback HTTP target (200 → 503), every stack started afresh for each run; probe interval {} ms, each outage after a random delay within one interval, down ≥ {} ms and until both stacks reported it, up ≥ {} ms and until both reported the recovery",
        a.runs, a.outages, a.interval_ms, a.down_ms, a.up_ms
    );
    println!(
        "# watchstand: collector (embedded rumqttd) + agent, product defaults (evaluate_every 10s, publish linger 200ms) except [incidents] down_after = 1, resolve_after = \"0s\", flapping off, burn-rate and SLA rules off; webhook on loopback"
    );
    match &prometheus_absent {
        None => println!("# prometheus: {}", prometheus_summary(a)),
        Some(why) => println!("# prometheus: not run: {why}"),
    }

    let mut outages = Vec::new();
    let mut per_run: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for run in 0..a.runs {
        let dir = tmp.path().join(format!("run-{}", run + 1));
        let got = run_once(a, run, &dir, &receiver, hook, &target, &http, prometheus_on).await?;
        let ws: Vec<f64> = got.iter().filter_map(|o| o.watchstand.webhook).collect();
        let prom: Vec<f64> = got.iter().filter_map(|o| o.prometheus.webhook).collect();
        let path: Vec<f64> = got
            .iter()
            .filter_map(|o| Some(o.prometheus.detected? - o.prometheus.check?))
            .collect();
        println!(
            "# run {}: watchstand p50 {} p99 {} ms; prometheus p50 {} p99 {} ms (its rule evaluation ran a median {} ms after the failing scrape: a phase fixed for the run)",
            run + 1,
            show(percentile(&ws, 50.0)),
            show(percentile(&ws, 99.0)),
            show(percentile(&prom, 50.0)),
            show(percentile(&prom, 99.0)),
            show(percentile(&path, 50.0)),
        );
        per_run.push((ws, prom));
        outages.extend(got);
    }
    let prometheus = prometheus_on.then_some(());

    // Report.
    println!();
    println!("| run | outage | down at (s into the run) | watchstand: first failing check | incident detected_ms | webhook | prometheus: first failing check | alert startsAt | webhook |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut run_start = (0, 0);
    let mut k = 0;
    for o in &outages {
        if o.run != run_start.0 {
            run_start = (o.run, o.down_at_ms);
            k = 0;
        }
        k += 1;
        println!(
            "| {} | {k} | {:.3} | {} | {} | {} | {} | {} | {} |",
            o.run,
            ms_between(run_start.1, o.down_at_ms) / 1_000.0,
            show(o.watchstand.check),
            show(o.watchstand.detected),
            show(o.watchstand.webhook),
            show(o.prometheus.check),
            show(o.prometheus.detected),
            show(o.prometheus.webhook),
        );
    }
    let col =
        |f: &dyn Fn(&Outage) -> Option<f64>| -> Vec<f64> { outages.iter().filter_map(f).collect() };
    let path = |s: &Seen| Some(s.webhook? - s.check?);
    let ws_webhook = col(&|o| o.watchstand.webhook);
    let prom_webhook = col(&|o| o.prometheus.webhook);
    println!();
    println!("ms after the target went down (nearest-rank percentiles over the outages each stack reported):");
    println!();
    println!("| measure | watchstand p50 | p99 | max | prometheus p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rows: [(&str, Vec<f64>, Vec<f64>); 4] = [
        (
            "first failing check reached the target (the probe's phase)",
            col(&|o| o.watchstand.check),
            col(&|o| o.prometheus.check),
        ),
        (
            "detected (incident `detected_ms` / alert `startsAt`)",
            col(&|o| o.watchstand.detected),
            col(&|o| o.prometheus.detected),
        ),
        (
            "**webhook received (detection)**",
            ws_webhook.clone(),
            prom_webhook.clone(),
        ),
        (
            "webhook − first failing check (the stack's own path)",
            col(&|o| path(&o.watchstand)),
            col(&|o| path(&o.prometheus)),
        ),
    ];
    for (name, ws, prom) in &rows {
        println!("| {name} | {} | {} |", cells(ws), cells(prom));
    }
    if a.runs > 1 {
        let across = |i: usize, q: f64| -> String {
            let v: Vec<f64> = per_run
                .iter()
                .filter_map(|r| percentile(if i == 0 { &r.0 } else { &r.1 }, q))
                .collect();
            Summary::of(&v).map_or_else(|| "—".to_owned(), |s| s.show(thousands))
        };
        println!();
        println!(
            "per-run figures, median (min – max) over the {} runs:",
            a.runs
        );
        println!();
        println!("| per run | watchstand | prometheus |");
        println!("|---|---:|---:|");
        println!(
            "| webhook p50 | {} | {} |",
            across(0, 50.0),
            across(1, 50.0)
        );
        println!(
            "| webhook p99 | {} | {} |",
            across(0, 99.0),
            across(1, 99.0)
        );
    }
    let missed_ws = outages.len() - ws_webhook.len();
    let missed_prom = if prometheus.is_some() {
        outages.len() - prom_webhook.len()
    } else {
        0
    };
    println!();
    println!(
        "reported: watchstand {}/{}, prometheus {}; target: watchstand p99 ≤ interval + 100 ms = {} ms",
        ws_webhook.len(),
        outages.len(),
        if prometheus.is_some() {
            format!("{}/{}", prom_webhook.len(), outages.len())
        } else {
            "not run".to_owned()
        },
        a.interval_ms + 100
    );
    let p = |v: &[f64], q: f64| show(percentile(v, q));
    let prom_part = if prometheus.is_some() {
        format!(
            "prometheus p50 {} ms p99 {} ms",
            p(&prom_webhook, 50.0),
            p(&prom_webhook, 99.0)
        )
    } else {
        "prometheus not run".to_owned()
    };
    let missed = if missed_ws + missed_prom > 0 {
        format!(", missed watchstand {missed_ws} prometheus {missed_prom}")
    } else {
        String::new()
    };
    println!(
        "detection: watchstand p50 {} ms p99 {} ms, {prom_part}, outages {}{missed}, runs {}",
        p(&ws_webhook, 50.0),
        p(&ws_webhook, 99.0),
        outages.len(),
        a.runs
    );
    Ok(())
}

/// One run: every stack started afresh in `dir`, `a.outages` outages, every stack stopped.
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
async fn run_once(
    a: &Args,
    run: usize,
    dir: &Path,
    receiver: &Receiver,
    hook: SocketAddr,
    target: &HttpTarget,
    http: &reqwest::Client,
    prometheus_on: bool,
) -> anyhow::Result<Vec<Outage>> {
    let http = http.clone();
    // Watchstand.
    let interval = format!("{}ms", a.interval_ms);
    let services = format!(
        r#"
[incidents]
down_after = 1
resolve_after = "0s"
burn_rate = []
sla_below_target = false
flapping = {{ enabled = false }}

[[webhooks]]
name = "bench"
url = "http://{hook}/watchstand"

[[services]]
id = "{SERVICE}"
name = "Web"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["{AGENT}/web"]
slo = {{ availability = 99.9, window = "1d" }}
"#
    );
    let collector = CollectorSpec::new(
        &dir.join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services,
    )
    .spawn()
    .await;
    let mut agent_spec = AgentSpec::new(
        &dir.join("agent"),
        AGENT,
        &collector.broker_url(),
        &format!(
            "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"{interval}\"\ntimeout = \"{}ms\"\n",
            target.url(),
            a.interval_ms * 8 / 10
        ),
    );
    // The product's publish defaults (linger 200 ms): state changes must not wait for it.
    agent_spec.extra = "[capacity]\ninterval = \"60s\"\n".to_owned();
    let _agent = agent_spec.spawn().await;

    // Prometheus.
    let prometheus = match prometheus_on {
        false => None,
        true => Some(
            PrometheusStack::start(
                &dir.join("prometheus"),
                &target.url(),
                &format!("http://{hook}/alertmanager"),
                a.interval_ms,
                &a.am_group_interval,
                &http,
            )
            .await?,
        ),
    };

    // Warm-up: both stacks have seen the target up.
    let warm = tokio::time::Instant::now();
    let ready = loop {
        // 404 until the collector has heard of the agent.
        let ws = collector
            .get_if_found(&format!("/api/v1/agents/{AGENT}/results?limit=1"))
            .await
            .and_then(|v| v.as_array().map(|r| !r.is_empty()))
            .unwrap_or(false);
        let prom = match &prometheus {
            Some(p) => p.probe_success(&http).await.as_deref() == Some("1"),
            None => true,
        };
        if ws && prom {
            break true;
        }
        if warm.elapsed() > Duration::from_secs(60) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !ready {
        bail!(
            "the stacks did not see the target up within 60 s (logs in {})",
            dir.display()
        );
    }
    tokio::time::sleep(Duration::from_millis(2 * a.interval_ms)).await;

    let limit = Duration::from_secs(a.timeout_s);
    let mut outages = Vec::new();
    let mut rng = rand::thread_rng();
    for i in 0..a.outages {
        let phase = rng.gen_range(0..a.interval_ms);
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let down_at = now_ms();
        target.set_healthy(false);
        let ws_open = poll(limit, || {
            receiver.first("watchstand", down_at, |b| watchstand_event(b, "opened"))
        })
        .await;
        let prom_open = match &prometheus {
            Some(_) => {
                poll(limit, || {
                    receiver.first("alertmanager", down_at, |b| {
                        alertmanager_status(b, "firing")
                    })
                })
                .await
            }
            None => None,
        };
        let held = now_ms().saturating_sub(down_at);
        if held < a.down_ms {
            tokio::time::sleep(Duration::from_millis(a.down_ms - held)).await;
        }
        let up_at = now_ms();
        target.set_healthy(true);

        let watchstand = Seen {
            check: first_failing_check(target, down_at, "watchstand-agent/")
                .map(|t| ms_between(down_at, t)),
            detected: ws_open
                .as_ref()
                .and_then(|h| h.body["incident"]["detected_ms"].as_u64())
                .map(|t| ms_between(down_at, t)),
            webhook: ws_open.as_ref().map(|h| ms_between(down_at, h.at_ms)),
        };
        let prometheus_seen = Seen {
            check: prometheus
                .as_ref()
                .and_then(|_| first_failing_check(target, down_at, "Blackbox Exporter/"))
                .map(|t| ms_between(down_at, t)),
            detected: prom_open
                .as_ref()
                .and_then(|h| {
                    h.body["alerts"]
                        .as_array()?
                        .iter()
                        .filter(|x| x["status"] == "firing")
                        .find_map(|x| x["startsAt"].as_str().and_then(epoch_ms))
                })
                .map(|t| ms_between(down_at, t)),
            webhook: prom_open.as_ref().map(|h| ms_between(down_at, h.at_ms)),
        };
        let o = Outage {
            run: run + 1,
            down_at_ms: down_at,
            watchstand,
            prometheus: prometheus_seen,
        };
        eprintln!(
            "run {} outage {:>2}/{}: watchstand check {} detected {} webhook {} ms; prometheus check {} startsAt {} webhook {} ms",
            run + 1,
            i + 1,
            a.outages,
            show(o.watchstand.check),
            show(o.watchstand.detected),
            show(o.watchstand.webhook),
            show(o.prometheus.check),
            show(o.prometheus.detected),
            show(o.prometheus.webhook),
        );
        outages.push(o);

        // Recovery: both stacks report it before the next outage.
        let ws_resolved = poll(limit, || {
            receiver.first("watchstand", up_at, |b| watchstand_event(b, "resolved"))
        })
        .await;
        if ws_resolved.is_none() {
            eprintln!("warning: watchstand did not report the recovery within {limit:?}");
        }
        if prometheus.is_some() {
            let resolved = poll(limit, || {
                receiver.first("alertmanager", up_at, |b| {
                    alertmanager_status(b, "resolved")
                })
            })
            .await;
            if resolved.is_none() {
                eprintln!("warning: prometheus did not report the recovery within {limit:?}");
            }
        }
        let held = now_ms().saturating_sub(up_at);
        if held < a.up_ms {
            tokio::time::sleep(Duration::from_millis(a.up_ms - held)).await;
        }
    }
    drop(prometheus);
    Ok(outages)
}
