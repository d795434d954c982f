//! Reports end to end: real collector and agent binaries, a real broker, an HTTP target that
//! fails for a scripted 8 s (as the demo's billing API does) → the availability report, fetched
//! with the `report` CLI, has one outage whose length equals the scripted outage within one
//! probe interval, and the same downtime as the SLA API for the same window. The CLI writes
//! Markdown and HTML files; a bad format is refused naming the parameter.

use std::time::Duration;

use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::{free_addr, now_ms, wait_for, HttpTarget};

/// The probe's interval, ms.
const INTERVAL_MS: u64 = 1_000;
/// How long the target fails, ms.
const OUTAGE_MS: u64 = 8_000;

const SERVICES: &str = r#"
[[services]]
id = "billing"
name = "Billing API"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-1/billing"]
slo = { availability = 99.0, window = "1d" }
"#;

/// Runs `watchstand-collector report …`; returns (exit code, stderr).
fn report_cli(server: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(watchstand_tests::bin("watchstand-collector"))
        .arg("report")
        .args(args)
        .args(["--server", server])
        .output()
        .expect("run the CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_outage_is_the_availability_reports_downtime_within_one_probe_interval() {
    let dir = tempfile::tempdir().unwrap();
    let target = HttpTarget::start().await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        SERVICES,
    );
    let collector = spec.spawn().await;
    let probes = format!(
        "[[probes]]\nid = \"billing\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n",
        target.url()
    );
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;
    let from = now_ms();
    // Measured up first, then the scripted outage, then up again.
    wait_for("the first results", Duration::from_secs(20), || async {
        let sla = collector.sla("billing", from, now_ms().max(from + 1)).await;
        (sla["uptime_s"].as_f64()? >= 3.0).then_some(())
    })
    .await;
    target.set_healthy(false);
    let down_at = now_ms();
    tokio::time::sleep(Duration::from_millis(OUTAGE_MS)).await;
    target.set_healthy(true);
    let up_at = now_ms();
    let scripted_s = (up_at - down_at) as f64 / 1_000.0;
    // The recovery is measured and stored: up results after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for("the recovery", Duration::from_secs(20), || async {
        let sla = collector
            .sla("billing", up_at + INTERVAL_MS, up_at + 3 * INTERVAL_MS)
            .await;
        (sla["uptime_s"].as_f64()? >= 1.5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to = now_ms();
    let server = collector.url("");
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let json_path = dir.path().join("availability.json");
    let (code, stderr) = report_cli(
        &server,
        &[
            "availability",
            "--from",
            &from_text,
            "--to",
            &to_text,
            "--format",
            "json",
            "--out",
            json_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let billing = &report["services"][0];
    assert_eq!(billing["service"], "billing", "{report}");
    let outages = billing["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{billing}");
    let downtime_s = billing["sla"]["downtime_s"].as_f64().unwrap();
    let outage_s = outages[0]["duration_s"].as_f64().unwrap();
    eprintln!(
        "scripted outage {scripted_s:.3} s, report downtime {downtime_s:.3} s, outage {} → {}",
        outages[0]["from_ms"], outages[0]["to_ms"]
    );
    assert_eq!(outage_s, downtime_s, "the one outage is all the downtime");
    let interval_s = INTERVAL_MS as f64 / 1_000.0;
    assert!(
        (downtime_s - scripted_s).abs() <= interval_s,
        "downtime {downtime_s} s vs scripted {scripted_s} s: more than one interval apart"
    );
    let start = outages[0]["from_ms"].as_u64().unwrap();
    assert!(
        start >= down_at && start <= down_at + INTERVAL_MS,
        "outage starts {start}, target failed at {down_at}"
    );
    // The same window through the SLA API says the same.
    let sla = collector.sla("billing", from, to).await;
    assert_eq!(sla["downtime_s"], billing["sla"]["downtime_s"]);
    assert_eq!(sla["availability_pct"], billing["sla"]["availability_pct"]);

    // Markdown and HTML files from the CLI.
    for (format, needle) in [
        ("md", "# Availability measurement report"),
        ("html", "<!DOCTYPE html>"),
    ] {
        let path = dir.path().join(format!("availability.{format}"));
        let (code, stderr) = report_cli(
            &server,
            &[
                "availability",
                "--from",
                &from_text,
                "--to",
                &to_text,
                "--format",
                format,
                "--out",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(needle), "{format}: {text}");
        assert!(text.contains("Billing API"), "{format}: {text}");
    }
    // A bad format is refused by the server, naming the parameter; nothing is written.
    let bad = dir.path().join("bad.pdf");
    let (code, stderr) = report_cli(
        &server,
        &[
            "availability",
            "--from",
            &from_text,
            "--format",
            "pdf",
            "--out",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid format: \"pdf\""), "{stderr}");
    assert!(!bad.exists());
}
