//! What the agent benchmarks (`footprint`, `accuracy`) share: the Prometheus exporters they
//! compare against (installed from Debian when missing, each started on its own loopback port by
//! the harness), a blackbox_exporter probe request as Prometheus would send it, the loopback HTTP
//! target on a runtime of its own, and the real collector + agent pair.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, ExporterSpec};
use watchstand_tests::{Agent, Collector, Exporter, HttpTarget, RunningExporter};

/// Installs the Debian packages of `exporters` that are missing (`apt-get update`, then
/// `apt-get install`, as `.ci/run` does). Their post-install scripts may enable system services;
/// the benchmarks never use them (own config, own ports, own processes).
pub fn ensure_installed(exporters: &[Exporter]) -> anyhow::Result<()> {
    let missing: Vec<&str> = exporters
        .iter()
        .filter(|e| e.bin().is_none())
        .map(|e| e.package())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("# installing {} (apt-get)", missing.join(" "));
    let update = Command::new("apt-get")
        .arg("update")
        .status()
        .context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !install.success() {
        bail!("apt-get install {} failed ({install})", missing.join(" "));
    }
    for e in exporters {
        if e.bin().is_none() {
            bail!("{} is still not installed after apt-get", e.package());
        }
    }
    Ok(())
}

/// First line of `exe --version` (the exporters print it on stderr).
pub fn version(e: Exporter) -> String {
    let Some(exe) = e.bin() else {
        return format!("{} not installed", e.package());
    };
    Command::new(exe)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| format!("{} ?", e.package()))
}

/// Starts `e` in `dir` on a free loopback port.
pub async fn start_exporter(e: Exporter, dir: &Path) -> anyhow::Result<RunningExporter> {
    start_exporter_with(e, dir, None).await
}

/// Starts `e` in `dir` on a free loopback port, blackbox_exporter with `blackbox_config`
/// (YAML) instead of the bench's `http_2xx`-only one when given.
pub async fn start_exporter_with(
    e: Exporter,
    dir: &Path,
    blackbox_config: Option<String>,
) -> anyhow::Result<RunningExporter> {
    let mut spec = ExporterSpec::new(e, dir);
    spec.blackbox_config = blackbox_config;
    spec.spawn()
        .await
        .with_context(|| format!("{} is not installed", e.package()))
}

/// A keep-alive client for the bench's own requests to the exporters (as Prometheus keeps its
/// scrape connections).
pub fn scrape_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the scrape client")
}

/// What one blackbox probe reported.
#[derive(Debug, Clone, Copy)]
pub struct BlackboxProbe {
    /// `probe_success == 1`.
    pub success: bool,
    /// `probe_duration_seconds`.
    pub duration_s: f64,
}

/// The value of an unlabelled metric in Prometheus text format.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `GET /probe?target=…&module=http_2xx` on blackbox_exporter, as a Prometheus scrape of it.
pub async fn blackbox_probe(
    client: &reqwest::Client,
    blackbox: &RunningExporter,
    target: &str,
) -> anyhow::Result<BlackboxProbe> {
    blackbox_probe_module(client, blackbox, "http_2xx", target).await
}

/// `GET /probe?target=…&module=…` on blackbox_exporter, as a Prometheus scrape of it.
pub async fn blackbox_probe_module(
    client: &reqwest::Client,
    blackbox: &RunningExporter,
    module: &str,
    target: &str,
) -> anyhow::Result<BlackboxProbe> {
    let url = blackbox.spec.url("/probe");
    let text = client
        .get(&url)
        .query(&[("target", target), ("module", module)])
        .send()
        .await
        .with_context(|| format!("GET {url}?target={target}"))?
        .error_for_status()
        .with_context(|| format!("GET {url}?target={target}"))?
        .text()
        .await
        .with_context(|| format!("reading {url}?target={target}"))?;
    let duration_s = metric(&text, "probe_duration_seconds")
        .with_context(|| format!("no probe_duration_seconds in the answer of {url}: {text}"))?;
    Ok(BlackboxProbe {
        success: metric(&text, "probe_success") == Some(1.0),
        duration_s,
    })
}

/// The loopback HTTP target (the harness's [`HttpTarget`], answering every path with 200 `ok`)
/// on a tokio runtime of its own with one worker thread, so that its answers do not wait for the
/// bench's own tasks.
pub struct Target {
    /// The server (aborted on drop).
    pub http: HttpTarget,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Target {
    /// Starts the target.
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-target")
            .enable_all()
            .build()
            .context("the target's runtime")?;
        let http = runtime.block_on(HttpTarget::start());
        Ok(Self {
            http,
            runtime: Some(runtime),
        })
    }
}

impl Target {
    /// Runs `f` to completion on the target's runtime (starting more loopback servers there).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(f)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `[[probes]]` TOML: one `http` probe per URL, ids `p000`, `p001`, …
pub fn http_probes(urls: &[String], interval: &str, timeout: &str) -> String {
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            format!(
                "[[probes]]\nid = \"p{i:03}\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\n\n"
            )
        })
        .collect()
}

/// The real collector (embedded broker; its CPU is not what is measured) and the real agent
/// with `probes` and `extra` config, each in its own directory under `dir`. The agent's
/// entries are acknowledged by the collector as in production, so its outbox stays trimmed.
pub async fn start_pipeline(
    dir: &Path,
    agent_id: &str,
    probes: &str,
    extra: &str,
) -> anyhow::Result<(Collector, Agent)> {
    let broker = BrokerChoice::Embedded(watchstand_tests::free_addr());
    let collector = CollectorSpec::new(&dir.join("collector"), broker, "")
        .spawn()
        .await;
    let mut spec = AgentSpec::new(
        &dir.join("agent"),
        agent_id,
        &collector.broker_url(),
        probes,
    );
    extra.clone_into(&mut spec.extra);
    let agent = spec.spawn().await;
    Ok((collector, agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP probe_duration_seconds x\nprobe_dns_lookup_time_seconds 1e-05\nprobe_duration_seconds 0.000734\nprobe_success 1\n";
        assert_eq!(metric(text, "probe_duration_seconds"), Some(0.000_734));
        assert_eq!(metric(text, "probe_success"), Some(1.0));
        assert_eq!(metric(text, "probe"), None);
    }
}
