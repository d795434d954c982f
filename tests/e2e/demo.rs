//! The demo end to end: the real `watchstand-collector demo` binary (embedded broker, collector,
//! agent, loopback services) runs its first outage cycle — the shop's primary fails and the
//! runbook fails over, billing fails for 10 s — and its drill of the shop. Then the availability
//! report, fetched from the demo's API with the token it printed, must show as each service's
//! downtime exactly the outages the demo's services really had (the times the demo printed when
//! it switched them: the script's truth), within one probe interval; the shop's drill outage
//! shows as `drill_s`, never as downtime. The drill's report files are in the data dir.
//!
//! One cycle is 90 s and the drill ends at about 95 s: the test takes about 100 s, mostly
//! waiting (the demo's load is one agent probing four targets every second).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchstand_tests::{bin, free_addr, now_ms, Daemon};

/// The demo's probe interval, ms.
const INTERVAL_MS: u64 = 1_000;

/// The demo's output so far.
fn output(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The demo's `[demo] …` lines, and its `  Name:  value` banner lines.
fn demo_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| l.starts_with("[demo]"))
}

/// The value of the banner line `  {label}   value …` (first word).
fn banner(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} line in the demo's output:\n{text}"))
        .to_owned()
}

/// A change the demo printed, with its time: `[demo] … at 2026-12-07T20:31:05.250Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    PrimaryScripted(bool),
    PrimaryFault(bool),
    OnStandby(bool),
    Billing(bool),
}

fn changes(text: &str) -> Vec<(u64, Change)> {
    let mut out = Vec::new();
    for line in demo_lines(text) {
        let change = if line.contains("shop-primary FAILS") {
            Change::PrimaryScripted(false)
        } else if line.contains("shop-primary is healthy again") {
            Change::PrimaryScripted(true)
        } else if line.contains("shop-primary BROKEN by") {
            Change::PrimaryFault(true)
        } else if line.contains("shop-primary HEALED by") {
            Change::PrimaryFault(false)
        } else if line.contains("answers from the standby") {
            Change::OnStandby(true)
        } else if line.contains("answers from the primary") {
            Change::OnStandby(false)
        } else if line.contains("billing-http FAILS") {
            Change::Billing(false)
        } else if line.contains("billing-http is healthy again") {
            Change::Billing(true)
        } else {
            continue;
        };
        let at = line
            .rsplit_once(" at ")
            .and_then(|(_, t)| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
            .unwrap_or_else(|| panic!("no time on {line:?}"));
        out.push((u64::try_from(at.timestamp_millis()).unwrap(), change));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The down stretches `[from, to)` of the shop and of billing within `[start, end)`, replayed
/// from the printed changes (the standby never fails; billing is down while its HTTP API is).
#[allow(clippy::type_complexity)]
fn truth(changes: &[(u64, Change)], start: u64, end: u64) -> (Vec<(u64, u64)>, Vec<(u64, u64)>) {
    let (mut scripted, mut fault, mut standby, mut billing) = (true, false, false, true);
    let (mut shop, mut bill) = (Vec::new(), Vec::new());
    let (mut shop_since, mut bill_since): (Option<u64>, Option<u64>) = (None, None);
    for &(at, change) in changes.iter().filter(|(at, _)| *at < end) {
        match change {
            Change::PrimaryScripted(up) => scripted = up,
            Change::PrimaryFault(broken) => fault = broken,
            Change::OnStandby(on) => standby = on,
            Change::Billing(up) => billing = up,
        }
        // Down while the shop answers from the primary and the primary is failed or broken.
        let shop_down = (fault || !scripted) && !standby;
        match (shop_down, shop_since) {
            (true, None) => shop_since = Some(at),
            (false, Some(since)) => {
                shop.push((since, at));
                shop_since = None;
            }
            _ => {}
        }
        match (!billing, bill_since) {
            (true, None) => bill_since = Some(at),
            (false, Some(since)) => {
                bill.push((since, at));
                bill_since = None;
            }
            _ => {}
        }
    }
    shop.extend(shop_since.map(|s| (s, end)));
    bill.extend(bill_since.map(|s| (s, end)));
    let clip = |v: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
        v.into_iter()
            .map(|(a, b)| (a.max(start), b.min(end)))
            .filter(|(a, b)| a < b)
            .collect()
    };
    (clip(shop), clip(bill))
}

/// Seconds of `stretches` inside (`inside = true`) or outside `[from, to)`.
fn seconds(stretches: &[(u64, u64)], window: (u64, u64), inside: bool) -> f64 {
    let ms: u64 = stretches
        .iter()
        .map(|&(a, b)| {
            let overlap = b.min(window.1).saturating_sub(a.max(window.0));
            if inside {
                overlap
            } else {
                (b - a) - overlap
            }
        })
        .sum();
    ms as f64 / 1_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_availability_report_has_the_scripted_outages_as_downtime_and_its_drill_as_drill_time(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let log = dir.path().join("demo.log");
    let from = now_ms();
    let mut cmd = Command::new(bin("watchstand-collector"));
    cmd.arg("demo")
        .args(["--listen", &free_addr().to_string()])
        .arg("--data-dir")
        .arg(&data)
        .args(["--duration", "6m"]);
    let mut demo = Daemon::spawn("demo", cmd, &log);

    // The first cycle and the drill: done when the demo prints where the report is.
    let deadline = Instant::now() + Duration::from_secs(300);
    let text = loop {
        let text = output(&log);
        if text.contains("[demo]   again:") {
            break text;
        }
        assert!(demo.running(), "the demo stopped:\n{text}");
        assert!(
            Instant::now() < deadline,
            "no drill report after 300 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let to = now_ms();
    let api = banner(&text, "API:");
    let api = api.trim_end_matches("/api/v1/services").to_owned();
    let token = banner(&text, "Token:");
    assert!(token.starts_with("wst_"), "{token}");

    // The story told the drill: its verdict, figures and the report files.
    let verdict = demo_lines(&text)
        .find(|l| l.contains("finished: verdict"))
        .unwrap_or_else(|| panic!("no verdict line:\n{text}"));
    assert!(verdict.contains("verdict MET"), "{verdict}\n{text}");
    assert!(text.contains("[demo]   time to recover:"), "{text}");
    let reports = data.join("reports");
    let md_path = demo_lines(&text)
        .find_map(|l| l.strip_prefix("[demo]   report: "))
        .unwrap_or_else(|| panic!("no report path:\n{text}"));
    let md = std::fs::read_to_string(md_path.trim()).unwrap();
    assert!(md_path.trim().starts_with(reports.to_str().unwrap()));
    assert!(
        md.starts_with("# IT service continuity test report"),
        "{md}"
    );
    let json_path = Path::new(md_path.trim()).with_extension("json");
    let drill: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(drill["service"], "shop", "{drill}");
    assert_eq!(drill["outcome"]["verdict"], "met", "{drill}");
    let window = (
        drill["outcome"]["sla"]["from_ms"].as_u64().unwrap(),
        drill["outcome"]["sla"]["to_ms"].as_u64().unwrap(),
    );

    // The availability report of the demo's data, from its API.
    let response = reqwest::Client::new()
        .get(format!("{api}/api/v1/reports/availability"))
        .query(&[
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("format", "json".to_owned()),
        ])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let report: Value = response.json().await.unwrap();
    let service = |id: &str| -> Value {
        report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == id)
            .unwrap_or_else(|| panic!("no {id} in {report}"))
            .clone()
    };
    let (shop, billing) = (service("shop"), service("billing"));

    // The truth the demo printed, against the report.
    let changes = changes(&text);
    let (shop_down, billing_down) = truth(&changes, from, to);
    let interval_s = INTERVAL_MS as f64 / 1_000.0;
    let figures = [
        (
            "shop downtime_s",
            seconds(&shop_down, window, false),
            shop["sla"]["downtime_s"].as_f64().unwrap(),
        ),
        (
            "shop drill_s",
            seconds(&shop_down, window, true),
            shop["sla"]["drill_s"].as_f64().unwrap(),
        ),
        (
            "billing downtime_s",
            seconds(&billing_down, (0, 0), false),
            billing["sla"]["downtime_s"].as_f64().unwrap(),
        ),
    ];
    eprintln!(
        "shop down (truth): {shop_down:?}; drill window {window:?}; billing down: {billing_down:?}"
    );
    for (what, expected, measured) in figures {
        eprintln!("{what}: scripted {expected:.3} s, report {measured:.3} s");
    }
    // The cycle really ran: one scripted shop outage before the failover, the drill's outage
    // inside its window, billing's 10 s.
    assert!(
        shop_down.len() >= 2 && !billing_down.is_empty(),
        "{shop_down:?} {billing_down:?}\n{text}"
    );
    assert!(
        figures[0].1 > 0.5 && figures[1].1 > 0.5 && figures[2].1 > 8.0,
        "{figures:?}"
    );
    for (what, expected, measured) in figures {
        assert!(
            (measured - expected).abs() <= interval_s,
            "{what}: report {measured} s vs scripted {expected} s: more than one interval apart\n{text}"
        );
    }
    assert_eq!(billing["sla"]["drill_s"].as_f64(), Some(0.0), "{billing}");
    // The drill is no outage: the shop's outages are its scripted ones (one, unless the next
    // cycle's had begun), billing's its own.
    let scripted = shop_down
        .iter()
        .filter(|&&(a, b)| a < window.0 || b > window.1)
        .count();
    assert_eq!(
        shop["outages"].as_array().unwrap().len(),
        scripted,
        "{shop}"
    );
    assert_eq!(
        billing["outages"].as_array().unwrap().len(),
        billing_down.len(),
        "{billing}"
    );
    demo.kill();
}
