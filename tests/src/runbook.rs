//! Fixtures of the runbook e2e tests (`runbooks`, `runbook_actions`): the service `web` with
//! fast incident settings, the collector CLI run against a test's collector, and waits on a
//! run's stored state.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::process::Collector;
use crate::wait_for;

/// The collector config's service part: `head` (e.g. a `[commands]` block), fast incident
/// settings (evaluated every second, down after 2 checks, resolved after 3 s, no burn-rate or
/// SLA rules), the critical service `web` measured by `agent-1/web`, then `runbooks`.
pub fn web_service(head: &str, runbooks: &str) -> String {
    format!(
        r#"
{head}
[incidents]
evaluate_every = "1s"
down_after = 2
resolve_after = "3s"
burn_rate = []
sla_below_target = false

[[services]]
id = "web"
name = "Web"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["agent-1/web"]
slo = {{ availability = 99.9, window = "1d" }}
{runbooks}
"#
    )
}

/// Runs the collector CLI binary with `args` against `collector` (`--server`, anonymous).
pub fn cli(collector: &Collector, args: &[&str]) -> Output {
    std::process::Command::new(crate::bin("watchstand-collector"))
        .args(args)
        .arg("--server")
        .arg(collector.url(""))
        .output()
        .expect("run watchstand-collector")
}

/// [`cli`] that must succeed; its stdout.
pub fn cli_ok(collector: &Collector, args: &[&str]) -> String {
    let out = cli(collector, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts runbook `id` from the CLI; the run as JSON.
pub fn start_run(collector: &Collector, id: &str) -> Value {
    let out = cli_ok(collector, &["runbooks", "run", id, "--format", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits (at most 40 s) until run `id` satisfies `f`; the run.
pub async fn run_until(
    collector: &Collector,
    id: u64,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, Duration::from_secs(40), || async {
        let run = collector.get(&format!("/api/v1/runbook-runs/{id}")).await;
        f(&run).then_some(run)
    })
    .await
}

/// [`run_until`] the run is no longer `running`.
pub async fn run_ended(collector: &Collector, id: u64, what: &str) -> Value {
    run_until(collector, id, what, |r| r["status"] != "running").await
}

/// The lines in the file at `path` (0 when it does not exist): how often a step's command ran.
pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}
