//! The availability pipeline: a scripted 20 s outage inside a 60 s run at a 1 s interval,
//! measured by the real agent, carried by a real broker, reported by the collector's SLA API;
//! then the agent is SIGKILLed. Run against the embedded broker and against Mosquitto.
//!
//! One run checks four things, each against the truth the test itself caused:
//! - `web` (`all` over the failing target): `downtime_s` within 1 s of the outage;
//! - `shop` (`any` over primary + standby): 100 %, the outage reported as `partial_outage_s`;
//! - `web-maint` (the same probe, a maintenance window over the outage): `downtime_s` 0;
//! - after SIGKILL of the agent: offline by last will, then `unmonitored_s`, not downtime.

use std::time::Duration;

use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{free_addr, now_ms, rfc3339, wait_for, HttpTarget, TcpTarget};

/// When the run starts, after everything is up.
const SETTLE_MS: u64 = 8_000;
const OUTAGE_FROM_S: u64 = 20;
const OUTAGE_TO_S: u64 = 40;
const RUN_S: u64 = 60;
/// The maintenance window ends this long after the outage, to cover the check that sees the
/// recovery (at most one interval later).
const MAINT_TAIL_MS: u64 = 1_500;

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

async fn sleep_until_ms(t: u64) {
    let now = now_ms();
    if t > now {
        tokio::time::sleep(Duration::from_millis(t - now)).await;
    }
}

fn services(outage_from: u64, outage_to: u64) -> String {
    format!(
        r#"
[[services]]
id = "web"
name = "Web (all)"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-1/primary"]
mode = "all"
slo = {{ availability = 99.0, window = "1d" }}

[[services]]
id = "web-maint"
name = "Web with maintenance over the outage"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-1/primary"]
mode = "all"
slo = {{ availability = 99.0, window = "1d" }}
maintenance = [ {{ from = "{from}", to = "{to}" }} ]

[[services]]
id = "shop"
name = "Shop (any over primary + standby)"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["agent-1/primary", "agent-1/standby"]
mode = "any"
slo = {{ availability = 99.9, window = "1d" }}

[[services]]
id = "port"
name = "TCP port"
criticality = "medium"
rto = "5m"
rpo = "1m"
probes = ["agent-1/port"]
mode = "all"
slo = {{ availability = 99.0, window = "1d" }}
"#,
        from = rfc3339(outage_from),
        to = rfc3339(outage_to + MAINT_TAIL_MS),
    )
}

fn probes(primary: &HttpTarget, standby: &HttpTarget, port: &TcpTarget) -> String {
    format!(
        r#"
[[probes]]
id = "primary"
kind = "http"
url = "{}"
interval = "1s"
timeout = "800ms"

[[probes]]
id = "standby"
kind = "http"
url = "{}"
interval = "1s"
timeout = "800ms"

[[probes]]
id = "port"
kind = "tcp"
address = "{}"
interval = "1s"
timeout = "800ms"
"#,
        primary.url(),
        standby.url(),
        port.addr
    )
}

/// Seconds since this host booted, from `/proc/uptime`.
fn host_uptime_s() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("uptime seconds")
}

/// The agent's host figures beyond CPU/memory/disk bytes (inodes, interface errors and
/// drops, processes, uptime, file handles), as the collector lists and serves them.
async fn host_figures_arrive_through_the_capacity_api(collector: &watchstand_tests::Collector) {
    let listed = collector.get("/api/v1/capacity?agent=agent-1").await;
    let current = |name: &str| -> f64 {
        listed["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|e| e["metric"] == name))
            .and_then(|e| e["current"].as_f64())
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
    };
    let processes = current("processes");
    // At least the agent, the collector and this test run on this host.
    assert!(processes >= 3.0, "processes {processes}");
    let fd = current("fd_used_pct");
    assert!(fd > 0.0 && fd <= 100.0, "fd_used_pct {fd}");
    for family in [
        "net_rx_errors_per_s",
        "net_tx_errors_per_s",
        "net_rx_drops_per_s",
        "net_tx_drops_per_s",
    ] {
        let v = current(&format!("{family}:lo"));
        assert!(v.is_finite() && v >= 0.0, "{family}:lo {v}");
    }
    let inodes: Vec<f64> = listed["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["metric"]
                .as_str()
                .is_some_and(|m| m.starts_with("disk_inodes_used_pct:"))
        })
        .filter_map(|e| e["current"].as_f64())
        .collect();
    assert!(
        !inodes.is_empty() && inodes.iter().all(|v| *v > 0.0 && *v <= 100.0),
        "disk_inodes_used_pct: {inodes:?} in {listed}"
    );
    // Uptime is the host's, not the agent's: it matches /proc/uptime, and grows with the
    // samples' own clock between samples.
    let series = collector
        .get("/api/v1/capacity?agent=agent-1&metric=uptime_s")
        .await;
    let points: Vec<(f64, f64)> = series["metrics"][0]["points"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    assert!(points.len() >= 3, "uptime_s points: {series}");
    let (last_ms, last_up) = points[points.len() - 1];
    let age_s = (now_ms() as f64 - last_ms) / 1_000.0;
    let host = host_uptime_s();
    eprintln!(
        "host figures: processes {processes}, fd_used_pct {fd:.4}, inodes {inodes:?}, uptime_s {last_up} ({age_s:.1} s old) vs /proc/uptime {host:.1}"
    );
    assert!(
        (host - age_s - last_up).abs() <= 2.0,
        "uptime_s {last_up} taken {age_s} s ago vs host uptime {host}"
    );
    for w in points.windows(2) {
        let (clock, up) = ((w[1].0 - w[0].0) / 1_000.0, w[1].1 - w[0].1);
        assert!(
            (clock - up).abs() <= 1.5,
            "uptime grew {up} s in {clock} s: {series}"
        );
    }
}

async fn run(use_mosquitto: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut _mosquitto = None;
    let broker = if use_mosquitto {
        let spec = MosquittoSpec::new(&dir.path().join("mosquitto"));
        let Some(m) = spec.spawn().await else {
            return;
        };
        _mosquitto = Some(m);
        BrokerChoice::External(spec.url())
    } else {
        BrokerChoice::Embedded(free_addr())
    };
    let primary = HttpTarget::start().await;
    let standby = HttpTarget::start().await;
    let mut port = TcpTarget::start().await;

    let base = now_ms() + SETTLE_MS;
    let planned_from = base + OUTAGE_FROM_S * 1_000;
    let planned_to = base + OUTAGE_TO_S * 1_000;
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        broker,
        &services(planned_from, planned_to),
    )
    .spawn()
    .await;
    let mut agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes(&primary, &standby, &port),
    )
    .spawn()
    .await;
    wait_for(
        "the agent in the registry",
        Duration::from_secs(20),
        || async {
            collector
                .agent("agent-1")
                .await
                .filter(|a| a["state"] == "online")
        },
    )
    .await;

    // The outage, as the test causes it: these instants are the truth.
    sleep_until_ms(planned_from).await;
    primary.set_healthy(false);
    port.close();
    let down_at = now_ms();
    sleep_until_ms(planned_to).await;
    primary.set_healthy(true);
    port.open().await;
    let up_at = now_ms();
    let truth_s = (up_at - down_at) as f64 / 1_000.0;
    let end = base + RUN_S * 1_000;
    sleep_until_ms(end + 3_000).await;

    let web = collector.sla("web", base, end).await;
    let error = f(&web, "downtime_s") - truth_s;
    eprintln!(
        "[{}] web: downtime_s {} vs truth {truth_s} (error {error:+.3} s), availability_pct {}",
        if use_mosquitto {
            "mosquitto"
        } else {
            "embedded"
        },
        f(&web, "downtime_s"),
        f(&web, "availability_pct")
    );
    assert!(error.abs() <= 1.0, "downtime off by {error} s: {web}");
    let (up, down) = (f(&web, "uptime_s"), f(&web, "downtime_s"));
    assert!(
        (f(&web, "availability_pct") - 100.0 * up / (up + down)).abs() < 1e-6,
        "{web}"
    );
    assert!(
        (up + down + f(&web, "unmonitored_s") - RUN_S as f64).abs() < 1e-6,
        "{web}"
    );
    assert!(
        f(&web, "unmonitored_s") < 1.0,
        "the agent measured the whole run: {web}"
    );
    assert_eq!(web["outages"], 1, "{web}");
    assert_eq!(web["met"], false, "{web}");

    let port_sla = collector.sla("port", base, end).await;
    assert!(
        (f(&port_sla, "downtime_s") - truth_s).abs() <= 1.0,
        "tcp: {port_sla}"
    );

    let shop = collector.sla("shop", base, end).await;
    eprintln!(
        "shop: availability_pct {} partial_outage_s {}",
        f(&shop, "availability_pct"),
        f(&shop, "partial_outage_s")
    );
    assert_eq!(f(&shop, "availability_pct"), 100.0, "{shop}");
    assert_eq!(f(&shop, "downtime_s"), 0.0, "{shop}");
    assert!(
        (f(&shop, "partial_outage_s") - truth_s).abs() <= 1.0,
        "{shop}"
    );

    let maint = collector.sla("web-maint", base, end).await;
    let window_s = (planned_to + MAINT_TAIL_MS - planned_from) as f64 / 1_000.0;
    eprintln!(
        "web-maint: downtime_s {} maintenance_s {}",
        f(&maint, "downtime_s"),
        f(&maint, "maintenance_s")
    );
    assert_eq!(f(&maint, "downtime_s"), 0.0, "{maint}");
    assert!(
        (f(&maint, "maintenance_s") - window_s).abs() < 0.01,
        "{maint}"
    );
    assert!(
        (f(&maint, "maintenance_s") - truth_s).abs() <= 2.0,
        "{maint}"
    );
    assert_eq!(f(&maint, "availability_pct"), 100.0, "{maint}");

    host_figures_arrive_through_the_capacity_api(&collector).await;

    // SIGKILL: the broker fires the retained last will; the probes' last results hold for at
    // most 2 × interval, then the time is unmonitored, never down.
    agent.kill();
    let killed = now_ms();
    wait_for(
        "the agent offline by last will",
        Duration::from_secs(15),
        || async {
            collector
                .agent("agent-1")
                .await
                .filter(|a| a["state"] == "offline")
        },
    )
    .await;
    sleep_until_ms(killed + 6_000).await;
    let after = collector.sla("web", killed, killed + 6_000).await;
    eprintln!("after SIGKILL: {after}");
    assert_eq!(f(&after, "downtime_s"), 0.0, "{after}");
    assert!(
        f(&after, "unmonitored_s") >= 3.9,
        "at most 2 × 1 s of hold: {after}"
    );
    assert!(f(&after, "uptime_s") <= 2.1, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_partial_outage_maintenance_and_sigkill_on_the_embedded_broker() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_partial_outage_maintenance_and_sigkill_on_mosquitto() {
    run(true).await;
}
