//! The gateway probe kinds against real servers on 127.0.0.1 that the tests start: `exec` with
//! Debian's monitoring-plugins and test-written plugins, `modbus` against a tokio-modbus server
//! whose registers change, `mqtt` against Mosquitto. Each runs once through the real agent →
//! broker → collector path, its state, SLA and metrics read back through the collector's API.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use watchstand_agent::probe::{Probe, ProbeConfig};
use watchstand_shared::process::all_ended;
use watchstand_shared::wire::v1::ProbeState;
use watchstand_tests::modbus::{f32_words, ModbusTarget};
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{free_addr, now_ms, wait_for, Agent, Collector, HttpTarget, TcpTarget};

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn probe(toml: &str) -> Probe {
    let c: ProbeConfig = toml::from_str(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
    Probe::build(&c).unwrap()
}

/// One service per probe id, `all` over `agent-1/{id}`.
fn services(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            format!(
                "[[services]]\nid = \"{id}\"\nname = \"{id}\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"agent-1/{id}\"]\nmode = \"all\"\nslo = {{ availability = 99.0, window = \"1d\" }}\n\n"
            )
        })
        .collect()
}

/// The collector (embedded broker) with one service per probe of `ids`, and agent `agent-1`
/// running `probes` (`[[probes]]` entries) against it; the epoch ms between the two starts.
async fn pipeline(dir: &Path, ids: &[&str], probes: &str) -> (Collector, Agent, u64) {
    let collector = CollectorSpec::new(
        &dir.join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services(ids),
    )
    .spawn()
    .await;
    let start = now_ms();
    let agent = AgentSpec::new(
        &dir.join("agent"),
        "agent-1",
        &collector.broker_url(),
        probes,
    )
    .spawn()
    .await;
    (collector, agent, start)
}

/// An `exec` probe's keys (of a `[[probes]]` entry).
fn exec_probe(id: &str, command: &[String], interval: &str, timeout: &str) -> String {
    format!(
        "id = \"{id}\"\nkind = \"exec\"\ncommand = {command:?}\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\n"
    )
}

/// An `mqtt` probe's keys: a round trip through the broker at `url`.
fn mqtt_probe(url: &str, interval: &str, timeout: &str) -> String {
    format!(
        "id = \"broker\"\nkind = \"mqtt\"\nurl = \"{url}\"\ninterval = \"{interval}\"\ntimeout = \"{timeout}\"\ntopic = \"watchstand/probe/rt\"\n"
    )
}

/// The newest stored result of `probe` (through `GET /api/v1/agents/agent-1/results`).
async fn latest(collector: &watchstand_tests::Collector, probe: &str) -> Option<Value> {
    let rows = collector
        .get_if_found("/api/v1/agents/agent-1/results")
        .await?;
    rows.as_array()?
        .iter()
        .filter(|r| r["probe"] == probe)
        .max_by_key(|r| r["observed_ms"].as_u64().unwrap_or(0))
        .cloned()
}

/// Waits until the newest result of `probe` has `state` (and an error containing `text`).
async fn wait_state(
    collector: &watchstand_tests::Collector,
    probe: &str,
    state: &str,
    text: Option<&str>,
) -> Value {
    wait_for(
        &format!("{probe} {state} {text:?} in the collector"),
        Duration::from_secs(30),
        || async {
            latest(collector, probe).await.filter(|r| {
                r["state"] == state
                    && text.is_none_or(|t| r["error"].as_str().is_some_and(|e| e.contains(t)))
            })
        },
    )
    .await
}

/// The stored points of a probe metric (`probe:{probe}:{name}`) through the capacity API.
async fn metric_points(
    collector: &watchstand_tests::Collector,
    probe: &str,
    name: &str,
) -> Vec<f64> {
    let metric = format!("probe:{probe}:{name}");
    let v = collector
        .get(&format!(
            "/api/v1/capacity?agent=agent-1&metric={}",
            metric.replace(' ', "%20")
        ))
        .await;
    v["metrics"][0]["points"]
        .as_array()
        .map(|points| points.iter().filter_map(|p| p[1].as_f64()).collect())
        .unwrap_or_default()
}

/// The installed monitoring-plugins, or `None` (skipped outside CI; a failure in CI).
fn plugins() -> Option<&'static str> {
    let missing: Vec<_> = ["check_dummy", "check_tcp", "check_http"]
        .into_iter()
        .filter(|p| !Path::new(PLUGINS).join(p).exists())
        .collect();
    if missing.is_empty() {
        return Some(PLUGINS);
    }
    assert!(
        !watchstand_tests::ci(),
        "monitoring-plugins missing ({missing:?}) but CI is set: apt-get install monitoring-plugins — .ci/run does"
    );
    watchstand_tests::skip(
        "the exec probe tests",
        "Debian's monitoring-plugins are not installed",
    );
    None
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn monitoring_plugins_run_unchanged_with_their_exit_codes_and_perfdata() {
    let Some(dir_p) = plugins() else { return };
    let tcp = TcpTarget::start().await;
    let http = HttpTarget::start().await;
    let run = |args: &[String]| probe(&exec_probe("p", args, "10s", "5s"));
    let o = run(&[
        format!("{dir_p}/check_tcp"),
        "-H".into(),
        "127.0.0.1".into(),
        "-p".into(),
        tcp.addr.port().to_string(),
    ])
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");
    assert!(
        o.metrics
            .iter()
            .any(|m| m.name == "time" && m.uom.as_deref() == Some("s")),
        "{o:?}"
    );
    let o = run(&[
        format!("{dir_p}/check_http"),
        "-I".into(),
        "127.0.0.1".into(),
        "-p".into(),
        http.addr.port().to_string(),
        "-u".into(),
        "/".into(),
    ])
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");
    assert!(o.metrics.iter().any(|m| m.name == "size"), "{o:?}");
    http.set_healthy(false);
    let o = run(&[
        format!("{dir_p}/check_http"),
        "-I".into(),
        "127.0.0.1".into(),
        "-p".into(),
        http.addr.port().to_string(),
    ])
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    assert!(
        o.error.as_deref().unwrap().contains("HTTP CRITICAL"),
        "{o:?}"
    );
    let closed = free_addr();
    let o = run(&[
        format!("{dir_p}/check_tcp"),
        "-H".into(),
        "127.0.0.1".into(),
        "-p".into(),
        closed.port().to_string(),
    ])
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    assert!(o.error.as_deref().unwrap().contains("refused"), "{o:?}");

    for (code, state, text) in [
        ("0", ProbeState::Up, None),
        ("1", ProbeState::Degraded, Some("WARNING: dummy says 1")),
        ("2", ProbeState::Down, Some("CRITICAL: dummy says 2")),
        ("3", ProbeState::Down, Some("UNKNOWN: dummy says 3")),
    ] {
        let o = run(&[
            format!("{dir_p}/check_dummy"),
            code.into(),
            format!("dummy says {code}"),
        ])
        .check()
        .await;
        assert_eq!(
            (o.state, o.error.as_deref()),
            (state, text),
            "check_dummy {code}"
        );
    }
}

#[tokio::test]
async fn exec_probes_through_the_pipeline_with_sla_metrics_and_no_leftover_processes() {
    let Some(dir_p) = plugins() else { return };
    let dir = tempfile::tempdir().unwrap();
    let tcp = TcpTarget::start().await;
    let http = HttpTarget::start().await;
    let perf = dir.path().join("check_perf");
    write_script(
        &perf,
        "echo 'OK - queue fine | depth=7;50;100;0 '\\''oldest msg'\\''=1.5s;;;0'",
    );
    let hang = dir.path().join("check_hang");
    let pids = dir.path().join("pids");
    write_script(
        &hang,
        &format!(
            "echo $$ >> {p}\nsleep 60 &\necho $! >> {p}\nsleep 60",
            p = pids.display()
        ),
    );
    let plugin = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let (tcp_port, http_port) = (tcp.addr.port().to_string(), http.addr.port().to_string());
    let commands = [
        (
            "tcp",
            plugin(&[
                &format!("{dir_p}/check_tcp"),
                "-H",
                "127.0.0.1",
                "-p",
                &tcp_port,
            ]),
        ),
        (
            "http",
            plugin(&[
                &format!("{dir_p}/check_http"),
                "-I",
                "127.0.0.1",
                "-p",
                &http_port,
                "-u",
                "/",
            ]),
        ),
        (
            "dummy0",
            plugin(&[&format!("{dir_p}/check_dummy"), "0", "fine"]),
        ),
        (
            "dummy1",
            plugin(&[&format!("{dir_p}/check_dummy"), "1", "warm"]),
        ),
        (
            "dummy2",
            plugin(&[&format!("{dir_p}/check_dummy"), "2", "broken"]),
        ),
        (
            "dummy3",
            plugin(&[&format!("{dir_p}/check_dummy"), "3", "no idea"]),
        ),
        ("perf", plugin(&[&perf.display().to_string()])),
        ("hang", plugin(&[&hang.display().to_string()])),
    ];
    let probes: String = commands
        .iter()
        .map(|(id, command)| {
            let timeout = if *id == "hang" { "500ms" } else { "800ms" };
            format!("[[probes]]\n{}\n", exec_probe(id, command, "1s", timeout))
        })
        .collect();
    let ids: Vec<&str> = commands.iter().map(|(id, _)| *id).collect();
    let (collector, mut agent, start) = pipeline(dir.path(), &ids, &probes).await;

    wait_state(&collector, "tcp", "up", None).await;
    wait_state(&collector, "http", "up", None).await;
    wait_state(&collector, "dummy0", "up", None).await;
    wait_state(&collector, "dummy1", "degraded", Some("WARNING: warm")).await;
    wait_state(&collector, "dummy2", "down", Some("CRITICAL: broken")).await;
    wait_state(&collector, "dummy3", "down", Some("UNKNOWN: no idea")).await;
    wait_state(&collector, "perf", "up", None).await;
    let hung = wait_state(&collector, "hang", "down", Some("timed out after 500ms")).await;
    assert!(hung["latency_us"].as_u64().unwrap() < 800_000, "{hung}");

    // Metrics: the perfdata, stored beside capacity samples and served by the capacity API.
    let depth = wait_for(
        "probe:perf:depth points",
        Duration::from_secs(10),
        || async {
            let p = metric_points(&collector, "perf", "depth").await;
            (!p.is_empty()).then_some(p)
        },
    )
    .await;
    assert!(depth.iter().all(|v| *v == 7.0), "{depth:?}");
    assert!(metric_points(&collector, "perf", "oldest msg")
        .await
        .iter()
        .all(|v| *v == 1.5));
    assert!(!metric_points(&collector, "tcp", "time").await.is_empty());
    let listed = collector
        .get("/api/v1/capacity?agent=agent-1")
        .await
        .to_string();
    for name in [
        "probe:perf:depth",
        "probe:perf:oldest msg",
        "probe:http:size",
    ] {
        assert!(listed.contains(name), "{name} not listed: {listed}");
    }

    // SLA as the collector reports it: always up, never up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = now_ms();
    let good = collector.sla("dummy0", start, end).await;
    let bad = collector.sla("dummy2", start, end).await;
    eprintln!(
        "dummy0 availability {} / dummy2 availability {}",
        good["availability_pct"], bad["availability_pct"]
    );
    assert_eq!(good["availability_pct"].as_f64(), Some(100.0), "{good}");
    assert_eq!(bad["availability_pct"].as_f64(), Some(0.0), "{bad}");
    assert!(bad["downtime_s"].as_f64().unwrap() > 0.0, "{bad}");

    // The hanging plugin and the child it forked are killed every time.
    assert!(agent.terminate(), "the agent stops cleanly");
    let text = std::fs::read_to_string(&pids).unwrap();
    let all: Vec<u32> = text.lines().map(|p| p.trim().parse().unwrap()).collect();
    assert!(all.len() >= 4, "at least two runs: {all:?}");
    assert!(
        all_ended(&all, Duration::from_secs(5)).await,
        "a plugin process still runs: {all:?}"
    );
}

#[tokio::test]
async fn modbus_values_are_judged_by_range_and_each_check_is_its_own_connection() {
    let plc = ModbusTarget::start(3).await;
    plc.set_holding(10, &f32_words(21.5));
    plc.set_holding(12, &[0x0002, 0x0001]);
    plc.set_input(0, &[65535, 7]);
    plc.set_coils(4, &[true, false]);
    let base = format!(
        "kind = \"modbus\"\naddress = \"{}\"\ninterval = \"10s\"\ntimeout = \"2s\"\nunit = 3\n",
        plc.addr
    );
    let temp = probe(&format!(
        "id = \"temp\"\n{base}function = \"holding_registers\"\nregister = 10\ndata_type = \"f32\"\nnames = [\"temperature\"]\nup = [0.0, 50.0]\ndegraded = [50.0, 80.0]\n"
    ));
    let o = temp.check().await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");
    assert_eq!(o.metrics.len(), 1);
    assert_eq!(
        (o.metrics[0].name.as_str(), o.metrics[0].value),
        ("temperature", 21.5)
    );
    plc.set_holding(10, &f32_words(60.25));
    let o = temp.check().await;
    assert_eq!(o.state, ProbeState::Degraded, "{o:?}");
    assert_eq!(
        o.error.as_deref(),
        Some("temperature = 60.25 outside up [0, 50], in degraded [50, 80]")
    );
    plc.set_holding(10, &f32_words(95.0));
    let o = temp.check().await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    assert_eq!(
        o.error.as_deref(),
        Some("temperature = 95 outside up [0, 50] and degraded [50, 80]")
    );
    assert_eq!(o.metrics[0].value, 95.0);

    // Word order and types; defaults names by function and address.
    let o = probe(&format!(
        "id = \"w\"\n{base}function = \"holding_registers\"\nregister = 12\ndata_type = \"u32\"\nword_order = \"little\"\n"
    ))
    .check()
    .await;
    assert_eq!(
        (o.metrics[0].name.as_str(), o.metrics[0].value),
        ("hr12", 65538.0),
        "{o:?}"
    );
    let o = probe(&format!(
        "id = \"i\"\n{base}function = \"input_registers\"\nregister = 0\ncount = 2\ndata_type = \"i16\"\n"
    ))
    .check()
    .await;
    let values: Vec<_> = o
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.value))
        .collect();
    assert_eq!(values, [("ir0", -1.0), ("ir1", 7.0)]);
    let o = probe(&format!(
        "id = \"c\"\n{base}function = \"coils\"\nregister = 4\ncount = 2\nup = [1.0, 1.0]\n"
    ))
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    assert_eq!(o.error.as_deref(), Some("co5 = 0 outside up [1, 1]"));
    let o = probe(&format!(
        "id = \"d\"\n{base}function = \"discrete_inputs\"\nregister = 4\n"
    ))
    .check()
    .await;
    assert_eq!((o.state, o.metrics[0].value), (ProbeState::Up, 1.0));

    // The device's exceptions are down with the reason.
    let o = probe(&format!(
        "id = \"x\"\n{base}function = \"holding_registers\"\nregister = 63\ndata_type = \"u32\"\n"
    ))
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Down);
    assert!(
        o.error
            .as_deref()
            .unwrap()
            .starts_with("exception from unit 3: "),
        "{o:?}"
    );
    let o = probe(&format!(
        "id = \"u\"\nkind = \"modbus\"\naddress = \"{}\"\ninterval = \"10s\"\ntimeout = \"2s\"\nunit = 9\nfunction = \"coils\"\nregister = 0\n",
        plc.addr
    ))
    .check()
    .await;
    assert_eq!(o.state, ProbeState::Down);
    assert!(
        o.error
            .as_deref()
            .unwrap()
            .starts_with("exception from unit 9: "),
        "{o:?}"
    );

    plc.set_holding(10, &f32_words(21.5));
    // Connect per check: every check opened its own connection and closed it.
    let accepted = plc.accepted();
    assert_eq!(accepted, 9, "one connection per check");
    wait_for(
        "the probe's connections closed",
        Duration::from_secs(2),
        || async { (plc.open_now() == 0).then_some(()) },
    )
    .await;
    // While another client holds the one-client gateway, the check is down, and up again
    // once it lets go: nothing of the probe stays connected between checks.
    let holder = tokio_modbus::client::tcp::connect(plc.addr).await.unwrap();
    wait_for("the holder connected", Duration::from_secs(2), || async {
        (plc.open_now() == 1).then_some(())
    })
    .await;
    let o = temp.check().await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    assert_eq!(plc.refused(), 1);
    drop(holder);
    wait_for("the holder gone", Duration::from_secs(2), || async {
        (plc.open_now() == 0).then_some(())
    })
    .await;
    let o = temp.check().await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");
    assert_eq!(plc.accepted(), accepted + 2);
}

#[tokio::test]
async fn modbus_through_the_pipeline_with_state_changes_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let plc = ModbusTarget::start(1).await;
    plc.set_holding(0, &[20]);
    let probes = format!(
        "[[probes]]\nid = \"plc\"\nkind = \"modbus\"\naddress = \"{}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\nfunction = \"holding_registers\"\nregister = 0\nnames = [\"level\"]\nup = [0.0, 50.0]\ndegraded = [50.0, 80.0]\n",
        plc.addr
    );
    let (collector, _agent, start) = pipeline(dir.path(), &["plc"], &probes).await;
    wait_state(&collector, "plc", "up", None).await;
    plc.set_holding(0, &[65]);
    wait_state(
        &collector,
        "plc",
        "degraded",
        Some("level = 65 outside up [0, 50]"),
    )
    .await;
    plc.set_holding(0, &[90]);
    wait_state(&collector, "plc", "down", Some("level = 90")).await;
    plc.set_holding(0, &[30]);
    wait_state(&collector, "plc", "up", None).await;
    let end = now_ms();
    let points = metric_points(&collector, "plc", "level").await;
    for v in [20.0, 65.0, 90.0, 30.0] {
        assert!(points.contains(&v), "{v} missing from {points:?}");
    }
    let sla = collector.sla("plc", start, end).await;
    eprintln!("modbus plc: {sla}");
    let pct = sla["availability_pct"].as_f64().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{sla}");
    // Down from the check that saw 90 to the next one (one interval, about 1 s).
    assert!(sla["downtime_s"].as_f64().unwrap() > 0.5, "{sla}");
    assert!(plc.refused() == 0, "the agent never held two connections");
}

#[tokio::test]
async fn mqtt_round_trip_through_mosquitto_up_then_down_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(mut mosquitto) = spec.spawn().await else {
        return;
    };
    let direct = probe(&mqtt_probe(&spec.url(), "10s", "2s")).check().await;
    assert_eq!(direct.state, ProbeState::Up, "{direct:?}");
    assert!(direct.latency > Duration::ZERO);

    let probes = format!("[[probes]]\n{}", mqtt_probe(&spec.url(), "1s", "800ms"));
    let (collector, _agent, start) = pipeline(dir.path(), &["broker"], &probes).await;
    wait_state(&collector, "broker", "up", None).await;
    mosquitto.kill();
    let down = wait_state(&collector, "broker", "down", Some("connect")).await;
    eprintln!("mqtt probe with the broker gone: {down}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sla = collector.sla("broker", start, now_ms()).await;
    assert!(sla["downtime_s"].as_f64().unwrap() >= 1.0, "{sla}");
    assert!(sla["uptime_s"].as_f64().unwrap() > 0.0, "{sla}");
    let log = mosquitto.log_text();
    assert!(log.contains("watchstand-probe-broker-"), "{log}");
}

#[tokio::test]
async fn mqtt_probe_over_tls_checks_the_ca_and_the_password() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (certs, other) = (dir.path().join("certs"), dir.path().join("other"));
    watchstand_tests::tls::make_certs(&certs, &[], None);
    watchstand_tests::tls::make_certs(&other, &[], None);
    // Mosquitto started as root reads its key as the `mosquitto` user.
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        certs.join("broker.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut spec = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let passwd = spec.dir.join("passwd");
    std::fs::write(&passwd, "").unwrap();
    if watchstand_tests::mosquitto_bin().is_some() {
        let ok = std::process::Command::new("mosquitto_passwd")
            .args(["-b", &passwd.display().to_string(), "gw", "s3cret"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mosquitto_passwd");
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls_port = watchstand_tests::free_port();
    spec.extra = format!(
        "allow_anonymous false\npassword_file {passwd}\nlistener {tls_port} 127.0.0.1\ncafile {c}/ca.crt\ncertfile {c}/broker.crt\nkeyfile {c}/broker.key\n",
        passwd = passwd.display(),
        c = certs.display()
    );
    let Some(_mosquitto) = spec.spawn().await else {
        return;
    };
    let check = |ca: &Path, credentials: &str| {
        let toml = format!(
            "id = \"tls-broker\"\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:{tls_port}\"\ninterval = \"10s\"\ntimeout = \"3s\"\nca_file = \"{}\"\ntopic = \"gw/rt\"\n{credentials}",
            ca.display()
        );
        async move { probe(&toml).check().await }
    };
    let creds = "username = \"gw\"\npassword = \"s3cret\"\n";
    let o = check(&certs.join("ca.crt"), creds).await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");
    let o = check(&other.join("ca.crt"), creds).await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    let e = o.error.unwrap();
    eprintln!("wrong CA: {e}");
    assert!(
        e.starts_with("connect: ") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    let o = check(
        &certs.join("ca.crt"),
        "username = \"gw\"\npassword = \"wrong\"\n",
    )
    .await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    eprintln!("wrong password: {:?}", o.error);
    assert!(
        o.error.as_deref().unwrap().starts_with("connect: "),
        "{o:?}"
    );
    let o = check(&dir.path().join("missing.pem"), creds).await;
    assert_eq!(o.state, ProbeState::Down, "{o:?}");
    let e = o.error.unwrap();
    eprintln!("missing CA file: {e}");
    assert!(e.contains("ca_file: cannot read"), "{e}");
}
