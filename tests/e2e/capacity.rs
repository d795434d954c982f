//! Capacity end to end: an agent-equivalent publishes host samples with past timestamps
//! through a real broker into the real collector binary; the forecast API and the CLI answer
//! from the rollups; the rollups equal a recount of the raw samples after collector SIGKILLs;
//! capacity incidents (forecast, threshold) open and resolve through the engine task and
//! reach a webhook receiver on loopback.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use watchstand_tests::mqtt::TestClient;
use watchstand_tests::process::{BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{bin, free_addr, now_ms, wait_for};

const DAY: u64 = 86_400_000;
const TOPIC: &str = "watchstand/v1/lab/host-1/capacity";
const DISK_TOTAL: u64 = 1_000_000_000_000;

/// One sample as the agent sends it: the disk `/data` at `disk_pct`, CPU at `cpu_pct`.
fn sample(seq: u64, at: u64, disk_pct: f64, cpu_pct: f64) -> Value {
    json!({
        "seq": seq, "observed_ms": at, "cpu_pct": cpu_pct,
        "load_1": 0.5, "load_5": 0.5, "load_15": 0.5,
        "mem_used_bytes": 4_000_000_000u64, "mem_total_bytes": 16_000_000_000u64,
        "swap_used_bytes": 0, "swap_total_bytes": 2_000_000_000u64,
        "disks": [{"mount": "/data", "total_bytes": DISK_TOTAL,
                   "used_bytes": (DISK_TOTAL as f64 * disk_pct / 100.0).round() as u64}],
        "nets": [],
    })
}

fn batch(boot: &str, samples: Vec<Value>) -> Vec<u8> {
    batch_of("host-1", boot, samples)
}

fn batch_of(agent: &str, boot: &str, samples: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "site": "lab", "agent": agent, "boot": boot, "samples": samples,
    }))
    .unwrap()
}

/// Runs the collector's CLI against `api`; returns stdout.
fn cli(api: std::net::SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new(bin("watchstand-collector"))
        .arg("capacity")
        .args(args)
        .arg("--server")
        .arg(format!("http://{api}"))
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "capacity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// 30 days of `/data` filling 1 %/day from 40 % (a sample every 30 min), CPU on a daily cycle
/// with no trend: the disk reaches 90 % 50 days after the first sample, and the forecast API's
/// date is within its interval of that; CPU is "no trend"; the CLI shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_a_filling_disk_are_forecast_within_the_interval_of_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        "",
    );
    let collector = spec.spawn().await;
    let mut client = TestClient::connect(&spec.broker.url(), "host-1-equivalent").await;
    let start = now_ms() - 30 * DAY + 3_600_000;
    let truth = start + 50 * DAY;
    let step = 30 * 60_000;
    let n = (now_ms() - start) / step;
    let samples: Vec<Value> = (0..n)
        .map(|k| {
            let at = start + k * step;
            let day = (at - start) as f64 / DAY as f64;
            let cpu = 35.0 + 25.0 * (std::f64::consts::TAU * day).sin();
            sample(k + 1, at, 40.0 + day, cpu)
        })
        .collect();
    for chunk in samples.chunks(48) {
        client.publish(TOPIC, batch("boot-1", chunk.to_vec())).await;
    }
    let path = "/api/v1/capacity/forecast?agent=host-1&metric=disk_used_pct:/data";
    // Rolled up within a few rollup passes (every 5 s).
    let view = wait_for("the 30-day forecast", Duration::from_secs(60), || async {
        let v = collector.get_if_found(path).await?;
        (v["forecast"]["days_used"].as_u64() >= Some(29)).then_some(v)
    })
    .await;
    let f = &view["forecast"];
    assert_eq!(view["resolution"], "hour", "{view}");
    assert_eq!(f["outcome"], "crossing", "{view}");
    let date = f["date_ms"].as_u64().unwrap();
    let (earliest, latest) = (
        f["earliest_ms"].as_u64().unwrap(),
        f["latest_ms"].as_u64().unwrap(),
    );
    assert!(earliest <= date && date <= latest, "{view}");
    assert!(
        earliest <= truth && truth <= latest,
        "truth {truth} outside [{earliest}, {latest}]: {view}"
    );
    eprintln!(
        "capacity e2e: projected {} (truth {}), interval {} .. {} ({:.1} h wide), slope {}/day",
        date,
        truth,
        earliest,
        latest,
        (latest - earliest) as f64 / 3_600_000.0,
        f["fit"]["slope_per_day"]
    );

    let summary = collector.get("/api/v1/capacity/summary").await;
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows[0]["metric"], "disk_used_pct:/data", "{summary}");
    assert_eq!(rows[0]["projected_ms"].as_u64(), Some(date));
    let cpu = rows.iter().find(|r| r["metric"] == "cpu_pct").unwrap();
    assert_eq!(cpu["outcome"], "no_trend", "{cpu}");
    assert_eq!(cpu["threshold"], 80.0);

    // The CLI shows the same forecast.
    let json_out = cli(
        spec.api,
        &[
            "forecast",
            "--agent",
            "host-1",
            "--metric",
            "disk_used_pct:/data",
            "--format",
            "json",
        ],
    );
    let parsed: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(parsed["forecast"]["date_ms"].as_u64(), Some(date));
    let csv = cli(spec.api, &["summary", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("agent,metric,current,peak,p95,threshold,headroom,trend_per_day,outcome,projected_ms,projected_earliest_ms,projected_latest_ms,r_squared")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("host-1,disk_used_pct:/data,"),
        "{csv}"
    );
    let table = cli(
        spec.api,
        &[
            "forecast",
            "--agent",
            "host-1",
            "--metric",
            "disk_used_pct:/data",
        ],
    );
    assert!(table.contains("crossing"), "{table}");
    eprintln!("{table}");
    eprintln!("{}", cli(spec.api, &["summary", "--agent", "host-1"]));
}

/// The collector SIGKILLed at random points while samples arrive (through Mosquitto, which
/// holds them for its persistent session); after every kill each capacity bucket not marked
/// dirty equals a recount of the raw samples, and after a clean stop every bucket does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_rollups_equal_a_recount_after_collector_sigkills() {
    let rounds: usize = std::env::var("WATCHSTAND_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    );
    // Register the collector's persistent session before anything is published.
    let mut first = spec.spawn().await;
    first.terminate();
    let stop = tokio_util::sync::CancellationToken::new();
    let url = mosquitto.url();
    let start = now_ms() - DAY;
    let publisher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = TestClient::connect(&url, "host-1-equivalent").await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xcafe);
            let mut seq = 0u64;
            while !stop.is_cancelled() {
                // Ten samples 5 s apart per batch (all in the past: ~17,000 would reach now);
                // now and then a re-send of the last batch (duplicates).
                let samples: Vec<Value> = (0..10)
                    .map(|_| {
                        seq += 1;
                        let at = start + seq * 5_000;
                        sample(
                            seq,
                            at,
                            50.0 + rng.gen_range(0.0..1.0),
                            rng.gen_range(0.0..100.0),
                        )
                    })
                    .collect();
                client
                    .publish(TOPIC, batch("boot-1", samples.clone()))
                    .await;
                if rng.gen_bool(0.1) {
                    client.publish(TOPIC, batch("boot-1", samples)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seq
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut checked = 0;
    for round in 0..rounds {
        let mut collector = spec.spawn().await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..7_000))).await;
        collector.kill();
        let store = watchstand_collector::store::Store::open(&spec.dir.join("data"))
            .expect("store opens after SIGKILL");
        let report = watchstand_collector::verify::verify(&store).expect("verify");
        drop(store);
        assert_eq!(report.rollups_wrong, 0, "round {round}: {report:?}");
        checked += report.capacity_buckets_checked;
    }
    stop.cancel();
    let published = publisher.await.unwrap();
    // A clean run drains what Mosquitto held and runs the final rollup pass at its stop.
    let mut collector = spec.spawn().await;
    let last_at = start + published * 5_000;
    wait_for("every sample stored", Duration::from_secs(60), || async {
        let v = collector
            .get("/api/v1/capacity?agent=host-1&metric=cpu_pct&from=0")
            .await;
        let newest = v["metrics"][0]["points"]
            .as_array()
            .and_then(|p| p.last().cloned())?;
        (newest[0].as_u64()? >= last_at).then_some(())
    })
    .await;
    assert!(collector.terminate(), "clean stop");
    let store = watchstand_collector::store::Store::open(&spec.dir.join("data")).unwrap();
    let report = watchstand_collector::verify::verify(&store).unwrap();
    let dirty = store
        .tree(watchstand_collector::store::trees::CAPACITY_DIRTY)
        .unwrap()
        .len()
        .unwrap();
    assert_eq!(report.rollups_wrong, 0, "{report:?}");
    assert_eq!(dirty, 0, "the final pass cleared every mark");
    assert!(report.capacity_buckets_checked > 100, "{report:?}");
    eprintln!(
        "capacity crash rounds ({rounds} SIGKILLs, {published} samples): every bucket equals its recount; {checked} checked during the rounds, {} at the end",
        report.capacity_buckets_checked
    );
}

/// A webhook receiver on loopback that keeps every body it gets.
#[derive(Clone, Default)]
struct Hook {
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start(&self) -> std::net::SocketAddr {
        let got = self.got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        addr
    }

    /// (event, dedup key) of every notification received.
    fn events(&self) -> Vec<(String, String)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["event"].as_str().unwrap_or_default().to_owned(),
                    b["dedup_key"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// The incident of `key` as the incidents API lists it, if any.
async fn incident(collector: &watchstand_tests::process::Collector, key: &str) -> Option<Value> {
    let list = collector.get("/api/v1/incidents").await;
    list.as_array()?
        .iter()
        .find(|i| i["dedup_key"] == key)
        .cloned()
}

/// Capacity incidents end to end, evaluated every second by the collector's engine task:
/// `host-1` publishes 24.5 days of `/data` growing 1 %/day from 50 % (a sample every 30 min,
/// ending 5.5 days ago: 90 % is 10.5 days from now) → the forecast incident opens and its
/// webhook arrives; then a cleanup (5.5 days at 30 %) → it resolves. `host-2`'s `/data` at
/// 95 % for 12 minutes (`threshold_for = "10m"`) → the threshold incident opens; a sample
/// at 50 % → it resolves. The incidents API and CLI show kind, agent and metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_incidents_open_and_resolve_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::default();
    let hook_addr = hook.start().await;
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &format!(
            "[capacity.incidents]\nevaluate_every = \"1s\"\nthreshold_for = \"10m\"\n\n[incidents]\nresolve_after = \"1s\"\n\n[[webhooks]]\nname = \"ops\"\nurl = \"http://{hook_addr}/hook\"\n"
        ),
    );
    let collector = spec.spawn().await;
    let mut client = TestClient::connect(&spec.broker.url(), "hosts-equivalent").await;
    let now = now_ms();
    let step = 30 * 60_000;
    let start = now - 30 * DAY;
    let cleanup_at = now - 11 * DAY / 2;
    let growth: Vec<Value> = (0..(cleanup_at - start) / step)
        .map(|k| {
            let at = start + k * step;
            sample(k + 1, at, 50.0 + (at - start) as f64 / DAY as f64, 10.0)
        })
        .collect();
    let mut seq = growth.len() as u64;
    for chunk in growth.chunks(48) {
        client.publish(TOPIC, batch("boot-1", chunk.to_vec())).await;
    }
    let forecast_key = "capacity_forecast:host-1:disk_used_pct:/data";
    let opened = wait_for("the forecast incident", Duration::from_secs(90), || async {
        incident(&collector, forecast_key).await
    })
    .await;
    assert_eq!(opened["state"], "open", "{opened}");
    assert_eq!(opened["agent"], "host-1");
    assert_eq!(opened["metric"], "disk_used_pct:/data");
    assert_eq!(opened["rule"]["kind"], "capacity_forecast");
    assert_eq!(opened["priority"], "P4");
    let summary = opened["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("disk_used_pct:/data on host-1 projected to reach 90 on "),
        "{summary}"
    );
    // Its date is ~10.5 days out: the forecast API says the same.
    let view = collector
        .get("/api/v1/capacity/forecast?agent=host-1&metric=disk_used_pct:/data")
        .await;
    let date = view["forecast"]["date_ms"].as_u64().unwrap();
    let truth = start + 40 * DAY;
    assert!(date.abs_diff(truth) < DAY, "{view}");
    wait_for("the forecast webhook", Duration::from_secs(30), || async {
        hook.events()
            .contains(&("opened".to_owned(), forecast_key.to_owned()))
            .then_some(())
    })
    .await;
    let body = hook
        .got
        .lock()
        .unwrap()
        .iter()
        .find(|b| b["dedup_key"] == forecast_key)
        .cloned()
        .unwrap();
    assert_eq!(body["incident"]["metric"], "disk_used_pct:/data", "{body}");
    assert_eq!(body["incident"]["agent"], "host-1");
    assert_eq!(body["incident"]["rule"]["kind"], "capacity_forecast");

    // The cleanup: 30 % from 5.5 days ago until now. The step is found, the fit after it
    // is flat, the rule clears and the incident resolves.
    let cleanup: Vec<Value> = (0..(now - cleanup_at) / step)
        .map(|k| {
            seq += 1;
            sample(seq, cleanup_at + k * step, 30.0, 10.0)
        })
        .collect();
    for chunk in cleanup.chunks(48) {
        client.publish(TOPIC, batch("boot-1", chunk.to_vec())).await;
    }
    let resolved = wait_for(
        "the forecast incident resolved",
        Duration::from_secs(90),
        || async {
            incident(&collector, forecast_key)
                .await
                .filter(|i| i["state"] == "resolved")
        },
    )
    .await;
    assert_eq!(resolved["resolved_by"], "auto", "{resolved}");
    let view = collector
        .get("/api/v1/capacity/forecast?agent=host-1&metric=disk_used_pct:/data")
        .await;
    assert!(view["forecast"]["step_at_ms"].as_u64().is_some(), "{view}");
    assert_ne!(view["forecast"]["outcome"], "crossing", "{view}");

    // The threshold rule: host-2's /data at 95 % for the last 12 minutes.
    let topic2 = "watchstand/v1/lab/host-2/capacity";
    let now = now_ms();
    let high: Vec<Value> = (0..=24)
        .map(|k| sample(k + 1, now - 12 * 60_000 + k * 30_000, 95.0, 10.0))
        .collect();
    client
        .publish(topic2, batch_of("host-2", "boot-1", high))
        .await;
    let threshold_key = "capacity_threshold:host-2:disk_used_pct:/data";
    let opened = wait_for(
        "the threshold incident",
        Duration::from_secs(60),
        || async { incident(&collector, threshold_key).await },
    )
    .await;
    assert_eq!(opened["state"], "open", "{opened}");
    assert_eq!(opened["rule"]["kind"], "capacity_threshold");
    assert_eq!(opened["metric"], "disk_used_pct:/data");
    assert_eq!(opened["priority"], "P3");
    // The CLI lists it with its metric.
    let out = std::process::Command::new(bin("watchstand-collector"))
        .args(["incidents", "list", "--format", "csv", "--server"])
        .arg(format!("http://{}", spec.api))
        .output()
        .expect("run the CLI");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{csv}");
    assert!(
        csv.lines().any(|l| l
            .contains("host-2,disk_used_pct:/data,capacity_threshold:host-2:disk_used_pct:/data")),
        "{csv}"
    );
    client
        .publish(
            topic2,
            batch_of("host-2", "boot-1", vec![sample(26, now_ms(), 50.0, 10.0)]),
        )
        .await;
    wait_for(
        "the threshold incident resolved",
        Duration::from_secs(60),
        || async {
            incident(&collector, threshold_key)
                .await
                .filter(|i| i["state"] == "resolved")
        },
    )
    .await;
    wait_for(
        "both resolved webhooks",
        Duration::from_secs(30),
        || async {
            let events = hook.events();
            [forecast_key, threshold_key]
                .iter()
                .all(|k| events.contains(&("resolved".to_owned(), (*k).to_owned())))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "capacity incidents e2e: forecast {} (truth {truth}), webhooks {:?}",
        date,
        hook.events()
    );
}
