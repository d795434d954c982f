//! The benchmarks' smoke runs: every `bench` subcommand at tiny sizes, so that the benchmarks
//! keep building and running. Benchmarks do not fail CI on a number: these check only that each
//! subcommand exits 0 and prints its final summary line.

use std::process::Command;
use std::time::Instant;

/// Runs `bench <args>` and returns its stdout; panics on a failure, with its output.
fn bench(args: &[&str]) -> String {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("bench {args:?} took {:.1} s", start.elapsed().as_secs_f64());
    stdout
}

fn final_line(stdout: &str) -> &str {
    stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

#[test]
fn bench_ingest_smoke_runs_and_reports() {
    if watchstand_tests::mosquitto_bin().is_none() {
        assert!(
            !watchstand_tests::mosquitto_required(),
            "Mosquitto is not installed but CI is set"
        );
        watchstand_tests::skip("bench ingest smoke run", "Mosquitto is not installed");
        return;
    }
    let out = bench(&["ingest", "--smoke"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("ingest: ")
            && last.contains(" results/s, baseline ")
            && last.contains(", ratio ")
            && last.contains(", lost "),
        "unexpected final line {last:?}:\n{out}"
    );
}

#[test]
fn bench_sla_query_smoke_runs_and_reports() {
    let out = bench(&["sla-query", "--smoke"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("sla-query: ") && last.contains("bytes/probe-minute"),
        "unexpected final line {last:?}:\n{out}"
    );
    assert!(
        !out.contains("| NO |"),
        "the three read paths disagree on the sums:\n{out}"
    );
}

#[test]
fn bench_detection_smoke_runs_side_by_side_and_reports() {
    let missing = watchstand_tests::prometheus_missing();
    if !missing.is_empty() {
        assert!(
            !watchstand_tests::mosquitto_required(),
            "{missing:?} not installed but CI is set: install them (apt-get install prometheus prometheus-blackbox-exporter prometheus-alertmanager) — .ci/run does"
        );
        watchstand_tests::skip(
            "bench detection smoke run",
            &format!("{} not installed", missing.join(", ")),
        );
        return;
    }
    // Never installs from a test: the packages are there (checked above).
    let out = bench(&["detection", "--smoke", "--install", "never"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("detection: watchstand p50 ")
            && last.contains(" ms, prometheus p50 ")
            && last.contains(" outages 2"),
        "unexpected final line {last:?}:\n{out}"
    );
    assert!(!last.contains("missed"), "a stack missed an outage:\n{out}");
}

/// Whether the Prometheus exporters are installed; when they are not, a CI run fails and a
/// laptop run skips (the bench itself would install them with apt-get; a test does not).
fn exporters_installed(what: &str, which: &[watchstand_tests::Exporter]) -> bool {
    let missing: Vec<&str> = which
        .iter()
        .filter(|e| e.bin().is_none())
        .map(|e| e.package())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !watchstand_tests::ci(),
        "{} not installed but CI is set (.ci/run installs them)",
        missing.join(", ")
    );
    watchstand_tests::skip(what, &format!("{} not installed", missing.join(", ")));
    false
}

#[test]
fn bench_footprint_smoke_runs_and_reports() {
    use watchstand_tests::Exporter;
    if !exporters_installed(
        "bench footprint smoke run",
        &[Exporter::Blackbox, Exporter::Node],
    ) {
        return;
    }
    let out = bench(&["footprint", "--smoke"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("footprint: probes ")
            && last.contains(" MiB vs peers ")
            && last.contains(", cpu/probe ")
            && last.contains(" µs vs blackbox ")
            && last.ends_with(')'),
        "unexpected final line {last:?}:\n{out}"
    );
}

#[test]
fn bench_footprint_mixed_smoke_runs_every_kind_and_reports() {
    use watchstand_tests::Exporter;
    if !exporters_installed(
        "bench footprint --kinds smoke run",
        &[Exporter::Blackbox, Exporter::Node],
    ) {
        return;
    }
    let out = bench(&[
        "footprint",
        "--smoke",
        "--kinds",
        "http,tcp,dns,icmp,tls,exec",
    ]);
    let last = final_line(&out);
    assert!(
        last.starts_with("footprint: probes 6 (http,tcp,dns,icmp,tls,exec), rss ")
            && last.contains(" µs vs blackbox ")
            && last.ends_with(')'),
        "unexpected final line {last:?}:\n{out}"
    );
    assert!(
        out.contains(
            "# 6 probes: 1 http, 1 tcp, 1 dns, 1 icmp, 1 tls, 1 exec; blackbox runs 5 of them"
        ),
        "{out}"
    );
}

#[test]
fn bench_accuracy_smoke_runs_and_reports() {
    if !exporters_installed(
        "bench accuracy smoke run",
        &[watchstand_tests::Exporter::Blackbox],
    ) {
        return;
    }
    let out = bench(&["accuracy", "--smoke"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("accuracy: agent p50 ")
            && last.contains(" µs, floor ")
            && last.contains(" µs), blackbox p50 ")
            && last.ends_with(" µs"),
        "unexpected final line {last:?}:\n{out}"
    );
}

#[test]
fn bench_forecast_smoke_runs_and_reports() {
    let out = bench(&["forecast", "--smoke"]);
    let last = final_line(&out);
    assert!(
        last.starts_with("forecast: p90 error ") && last.contains("predict_linear"),
        "unexpected final line {last:?}:\n{out}"
    );
    assert!(out.contains("| Watchstand (alarm rule) |"), "{out}");
}
