//! The network probe kinds — `dns`, `icmp`, `tls` — against real servers on 127.0.0.1 that the
//! tests start: a DNS server answering, NXDOMAIN, SERVFAIL, REFUSED, silent and truncated; TLS servers
//! with certificates made here (valid, 10 and 5 days left, expired, wrong name, self-signed);
//! ICMP to 127.0.0.1 and, inside a network namespace the test makes, to a blackholed address,
//! to a host that stops answering, and without privileges. Then all three kinds through the real
//! agent → broker → collector path, with a DNS outage the test causes measured by the SLA API.

use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::RData;
use serde_json::Value;
use watchstand_agent::probe::{DnsProbeConfig, Observation, Probe, ProbeConfig, TlsProbeConfig};
use watchstand_shared::wire::v1::ProbeState;
use watchstand_tests::dns::{Behaviour, DnsServer};
use watchstand_tests::netns::Netns;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::tls_target::{self_signed, TestCa, TlsTarget};
use watchstand_tests::{free_addr, now_ms, wait_for};

async fn check(config: ProbeConfig) -> Observation {
    Probe::build(&config)
        .expect("build the probe")
        .check()
        .await
}

fn ok_records() -> Behaviour {
    Behaviour::Answer(vec![
        RData::A(A::new(192, 0, 2, 10)),
        RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()])),
    ])
}

#[tokio::test]
async fn dns_answers_nxdomain_servfail_refused_and_silence_each_give_their_state() {
    let dns = DnsServer::start().await;
    dns.set("ok.test", ok_records());
    dns.set("gone.test", Behaviour::NxDomain);
    dns.set("broken.test", Behaviour::ServFail);
    dns.set("closed.test", Behaviour::Refused);
    dns.set("mute.test", Behaviour::Silent);
    let server = dns.addr.to_string();
    let probe = |name: &str, rtype: &str| DnsProbeConfig::new("dns", name, rtype, Some(&server));

    let mut c = probe("ok.test", "A");
    c.expect = Some(vec!["192.0.2.10".into()]);
    let o = check(ProbeConfig::Dns(c)).await;
    assert_eq!(
        (o.state, o.error.as_deref()),
        (ProbeState::Up, None),
        "{o:?}"
    );
    assert!(o.latency > Duration::ZERO && o.latency < Duration::from_secs(1));

    let mut c = probe("OK.test.", "txt");
    c.contains = Some("spf1 -all".into());
    let o = check(ProbeConfig::Dns(c)).await;
    assert_eq!(o.state, ProbeState::Up, "{o:?}");

    let cases = [
        (
            "ok.test",
            "A",
            Some("192.0.2.99"),
            "\"192.0.2.99\" not among the answers [\"192.0.2.10\"]",
        ),
        ("ok.test", "AAAA", None, "no AAAA record for ok.test"),
        ("gone.test", "A", None, "NXDOMAIN: gone.test does not exist"),
        (
            "unknown.test",
            "MX",
            None,
            "NXDOMAIN: unknown.test does not exist",
        ),
        (
            "broken.test",
            "A",
            None,
            "SERVFAIL: the server failed to answer for broken.test",
        ),
        (
            "closed.test",
            "A",
            None,
            "REFUSED: the server refused closed.test",
        ),
    ];
    for (name, rtype, expect, error) in cases {
        let mut c = probe(name, rtype);
        c.expect = expect.map(|e| vec![e.to_owned()]);
        let o = check(ProbeConfig::Dns(c)).await;
        assert_eq!(o.state, ProbeState::Down, "{name} {rtype}: {o:?}");
        assert_eq!(o.error.as_deref(), Some(error), "{name} {rtype}");
    }

    // A truncated UDP answer is asked again over TCP.
    dns.set(
        "big.test",
        Behaviour::Truncated(vec![RData::A(A::new(192, 0, 2, 20))]),
    );
    let mut c = probe("big.test", "A");
    c.expect = Some(vec!["192.0.2.20".into()]);
    let o = check(ProbeConfig::Dns(c)).await;
    assert_eq!(
        (o.state, o.error.as_deref()),
        (ProbeState::Up, None),
        "{o:?}"
    );
    assert_eq!(dns.tcp_queries(), 1);

    // Silence: one retransmission at half the wait, then down naming the server.
    let before = dns.queries();
    let mut c = probe("mute.test", "A");
    c.timeout = watchstand_shared::config::Duration::from_millis(400);
    let o = check(ProbeConfig::Dns(c)).await;
    assert_eq!(o.state, ProbeState::Down);
    assert_eq!(
        o.error.as_deref(),
        Some(format!("no answer from {server} within 380ms").as_str()),
        "{o:?}"
    );
    assert!(o.latency >= Duration::from_millis(380), "{o:?}");
    assert_eq!(
        dns.queries() - before,
        2,
        "the query and one retransmission"
    );
}

#[tokio::test]
async fn tls_certificates_valid_expiring_expired_misnamed_and_self_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Watchstand Test CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let cases = [
        (
            "valid",
            ca.issue(&["localhost"], -1, 90),
            ProbeState::Up,
            "90 days left; issuer \"Watchstand Test CA\", subject \"localhost\", expires ",
        ),
        (
            "10 days left",
            ca.issue(&["localhost"], -1, 10),
            ProbeState::Degraded,
            "10 days left, under warn_days 21; ",
        ),
        (
            "5 days left",
            ca.issue(&["localhost"], -1, 5),
            ProbeState::Down,
            "5 days left, under crit_days 7; ",
        ),
        (
            "expired",
            ca.issue(&["localhost"], -30, -3),
            ProbeState::Down,
            "expired 2 days ago; issuer \"Watchstand Test CA\"",
        ),
        (
            "wrong name",
            ca.issue(&["other.test"], -1, 90),
            ProbeState::Down,
            "name mismatch: localhost is not in SANs [\"other.test\"]; ",
        ),
        (
            "self-signed",
            self_signed(&["localhost"], 90),
            ProbeState::Down,
            "invalid chain: self-signed and not trusted; issuer \"localhost\"",
        ),
    ];
    for (what, leaf, state, text) in cases {
        let server = TlsTarget::start(&leaf).await;
        let mut c = TlsProbeConfig::new("cert", &server.addr.to_string());
        c.server_name = Some("localhost".into());
        c.ca_file = Some(ca_file.clone());
        let o = check(ProbeConfig::Tls(c)).await;
        assert_eq!(o.state, state, "{what}: {o:?}");
        let error = o.error.unwrap_or_default();
        assert!(error.starts_with(text), "{what}: {error}");
    }

    // Without ca_file the test CA is unknown (Mozilla's roots).
    let server = TlsTarget::start(&ca.issue(&["localhost"], -1, 90)).await;
    let mut c = TlsProbeConfig::new("cert", &server.addr.to_string());
    c.server_name = Some("localhost".into());
    let o = check(ProbeConfig::Tls(c)).await;
    assert_eq!(o.state, ProbeState::Down);
    assert!(
        o.error
            .as_deref()
            .unwrap_or_default()
            .starts_with("invalid chain: unknown issuer \"Watchstand Test CA\"; "),
        "{o:?}"
    );

    // Not TLS at all: a plain TCP listener that closes at once.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((s, _)) = plain.accept().await {
            drop(s);
        }
    });
    let o = check(ProbeConfig::Tls(TlsProbeConfig::new(
        "cert",
        &addr.to_string(),
    )))
    .await;
    closer.abort();
    assert_eq!(o.state, ProbeState::Down);
    assert!(o.error.unwrap().starts_with("handshake: "));
}

/// One `watchstand-agent probe --json` run inside `ns` (as `nobody` when `unprivileged`):
/// `(probe id, state, error)` per line.
fn probe_in(ns: &Netns, dir: &Path, unprivileged: bool) -> Vec<(String, String, String)> {
    let agent = dir.join("watchstand-agent");
    let agent = agent.to_str().unwrap();
    let config = dir.join("agent.toml");
    let mut cmd = if unprivileged {
        let mut c = ns.command("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", agent]);
        c
    } else {
        ns.command(agent)
    };
    let out = cmd
        .args(["probe", "--json", "-c", config.to_str().unwrap()])
        .output()
        .expect("run watchstand-agent probe in the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<_> = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            (
                v["probe"].as_str().unwrap_or_default().to_owned(),
                v["state"].as_str().unwrap_or_default().to_owned(),
                v["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        !lines.is_empty(),
        "no results; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

#[tokio::test]
async fn icmp_loopback_blackhole_silence_and_privileges_in_a_network_namespace() {
    let Some(ns) = Netns::create_or_skip("icmp in a network namespace") else {
        return;
    };
    // The agent binary and its config where `nobody` can read them.
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::copy(
        watchstand_tests::bin("watchstand-agent"),
        dir.path().join("watchstand-agent"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agent.toml"),
        r#"
[agent]
site = "lab"
id = "icmp-ns"
data_dir = "/nonexistent/outbox"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[probes]]
id = "lo"
kind = "icmp"
host = "127.0.0.1"
interval = "10s"
timeout = "1s"
interval_between = "20ms"

[[probes]]
id = "blackholed"
kind = "icmp"
host = "127.0.0.2"
interval = "10s"
timeout = "1s"
interval_between = "20ms"
"#,
    )
    .unwrap();
    ns.ip(&[
        "route",
        "add",
        "blackhole",
        "127.0.0.2/32",
        "table",
        "local",
    ])
    .unwrap();

    // Root: the namespace's default ping_group_range ("1 0") refuses datagram sockets, so this
    // is the raw-socket path.
    ns.sysctl("net.ipv4.ping_group_range", "1 0").unwrap();
    let seen = probe_in(&ns, dir.path(), false);
    let (lo, hole) = (&seen[0], &seen[1]);
    assert_eq!((lo.0.as_str(), lo.1.as_str()), ("lo", "up"), "{seen:?}");
    assert!(
        lo.2.starts_with("3/3 replies, 0% loss, rtt min/median/max "),
        "{seen:?}"
    );
    assert_eq!(
        (hole.0.as_str(), hole.1.as_str()),
        ("blackholed", "down"),
        "{seen:?}"
    );
    assert!(
        hole.2
            .starts_with("no route to 127.0.0.2 (blackhole route?)"),
        "{seen:?}"
    );

    // Unprivileged without the sysctl: neither socket opens; the error names both ways.
    let seen = probe_in(&ns, dir.path(), true);
    assert_eq!(seen[0].1, "down", "{seen:?}");
    assert!(
        seen[0]
            .2
            .starts_with("cannot open an ICMP socket: unprivileged ICMP is not allowed")
            && seen[0].2.contains("ping_group_range")
            && seen[0].2.contains("CAP_NET_RAW"),
        "{seen:?}"
    );

    // Unprivileged with the sysctl: the datagram-socket path.
    ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
        .unwrap();
    let seen = probe_in(&ns, dir.path(), true);
    assert_eq!(seen[0].1, "up", "{seen:?}");
    assert!(seen[0].2.starts_with("3/3 replies, 0% loss"), "{seen:?}");

    // A host that stops answering: every request lost, down after the wait.
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1").unwrap();
    for unprivileged in [false, true] {
        let seen = probe_in(&ns, dir.path(), unprivileged);
        assert_eq!(seen[0].1, "down", "{seen:?}");
        assert_eq!(seen[0].2, "0/3 replies, 100% loss", "{seen:?}");
    }
}

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

const SERVICES: &str = r#"
[[services]]
id = "dns"
name = "DNS"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-net/dns"]
mode = "all"
slo = { availability = 99.0, window = "1d" }

[[services]]
id = "cert"
name = "Certificate"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-net/cert"]
mode = "all"
slo = { availability = 99.0, window = "1d" }

[[services]]
id = "old-cert"
name = "Expired certificate"
criticality = "low"
rto = "5m"
rpo = "1m"
probes = ["agent-net/old-cert"]
mode = "all"
slo = { availability = 99.0, window = "1d" }

[[services]]
id = "ping"
name = "Loopback ping"
criticality = "low"
rto = "5m"
rpo = "1m"
probes = ["agent-net/ping"]
mode = "all"
slo = { availability = 99.0, window = "1d" }
"#;

/// The latest stored result of `probe` in a results export.
fn latest<'a>(rows: &'a Value, probe: &str) -> Option<&'a Value> {
    rows.as_array()?
        .iter()
        .filter(|r| r["probe"] == probe)
        .max_by_key(|r| r["observed_ms"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_tls_and_icmp_through_agent_broker_and_collector() {
    const SETTLE_MS: u64 = 6_000;
    const OUTAGE_FROM_S: u64 = 6;
    const OUTAGE_TO_S: u64 = 14;
    const RUN_S: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start().await;
    dns.set("ok.test", ok_records());
    let ca = TestCa::new("Watchstand Test CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let cert = TlsTarget::start(&ca.issue(&["localhost"], -1, 90)).await;
    let old_cert = TlsTarget::start(&ca.issue(&["localhost"], -30, -3)).await;
    let probes = format!(
        r#"
[[probes]]
id = "dns"
kind = "dns"
name = "ok.test"
record_type = "A"
server = "{dns}"
expect = ["192.0.2.10"]
interval = "1s"
timeout = "800ms"

[[probes]]
id = "cert"
kind = "tls"
address = "{cert}"
server_name = "localhost"
ca_file = "{ca}"
interval = "1s"
timeout = "800ms"

[[probes]]
id = "old-cert"
kind = "tls"
address = "{old}"
server_name = "localhost"
ca_file = "{ca}"
interval = "1s"
timeout = "800ms"

[[probes]]
id = "ping"
kind = "icmp"
host = "127.0.0.1"
count = 2
interval_between = "50ms"
interval = "1s"
timeout = "800ms"
"#,
        dns = dns.addr,
        cert = cert.addr,
        old = old_cert.addr,
        ca = ca_file.display(),
    );
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        SERVICES,
    )
    .spawn()
    .await;
    let base = now_ms() + SETTLE_MS;
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-net",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;
    wait_for(
        "the agent in the registry",
        Duration::from_secs(20),
        || async {
            collector
                .agent("agent-net")
                .await
                .filter(|a| a["state"] == "online")
        },
    )
    .await;
    let inventory = collector.get("/api/v1/agents/agent-net").await;
    let kinds: Vec<&str> = inventory["agent"]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["dns", "tls", "tls", "icmp"], "{inventory}");

    // The outage, as the test causes it: the DNS server answers SERVFAIL.
    sleep_until_ms(base + OUTAGE_FROM_S * 1_000).await;
    dns.set("ok.test", Behaviour::ServFail);
    let down_at = now_ms();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let rows = collector.get("/api/v1/agents/agent-net/results").await;
    let during = latest(&rows, "dns").expect("dns results stored");
    assert_eq!(during["state"], "down", "{during}");
    assert_eq!(
        during["error"], "SERVFAIL: the server failed to answer for ok.test",
        "{during}"
    );
    sleep_until_ms(base + OUTAGE_TO_S * 1_000).await;
    dns.set("ok.test", ok_records());
    let up_at = now_ms();
    let truth_s = (up_at - down_at) as f64 / 1_000.0;
    let end = base + RUN_S * 1_000;
    sleep_until_ms(end + 3_000).await;

    let sla = collector.sla("dns", base, end).await;
    eprintln!(
        "dns: downtime_s {} vs truth {truth_s}: {sla}",
        f(&sla, "downtime_s")
    );
    assert!(
        (f(&sla, "downtime_s") - truth_s).abs() <= 1.0,
        "dns downtime vs truth {truth_s}: {sla}"
    );
    assert_eq!(sla["outages"], 1, "{sla}");
    for (service, availability) in [("cert", 100.0), ("ping", 100.0), ("old-cert", 0.0)] {
        let sla = collector.sla(service, base, end).await;
        assert_eq!(
            f(&sla, "availability_pct"),
            availability,
            "{service}: {sla}"
        );
        assert!(f(&sla, "unmonitored_s") < 1.0, "{service}: {sla}");
    }

    let rows = collector.get("/api/v1/agents/agent-net/results").await;
    let state_and_error = |probe: &str| {
        let r = latest(&rows, probe).unwrap_or_else(|| panic!("no result of {probe}"));
        (
            r["state"].as_str().unwrap_or_default().to_owned(),
            r["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(state_and_error("dns"), ("up".to_owned(), String::new()));
    let (state, text) = state_and_error("cert");
    assert_eq!(state, "up");
    assert!(
        text.starts_with("90 days left; issuer \"Watchstand Test CA\""),
        "{text}"
    );
    let (state, text) = state_and_error("old-cert");
    assert_eq!(state, "down");
    assert!(text.starts_with("expired 2 days ago; "), "{text}");
    let (state, text) = state_and_error("ping");
    assert_eq!(state, "up");
    assert!(
        text.starts_with("2/2 replies, 0% loss, rtt min/median/max "),
        "{text}"
    );

    // The icmp and tls metrics, stored as capacity metrics and served by the capacity API.
    let points = |probe: &'static str, name: &'static str| {
        let collector = &collector;
        async move {
            let v = collector
                .get(&format!(
                    "/api/v1/capacity?agent=agent-net&metric=probe:{probe}:{name}"
                ))
                .await;
            v["metrics"][0]["points"]
                .as_array()
                .map(|points| points.iter().filter_map(|p| p[1].as_f64()).collect())
                .unwrap_or_default()
        }
    };
    let loss: Vec<f64> = points("ping", "loss_pct").await;
    assert!(
        !loss.is_empty() && loss.iter().all(|v| *v == 0.0),
        "{loss:?}"
    );
    let rtt: Vec<f64> = points("ping", "rtt_median_ms").await;
    assert!(
        !rtt.is_empty() && rtt.iter().all(|v| (0.0..800.0).contains(v)),
        "{rtt:?}"
    );
    let days: Vec<f64> = points("cert", "days_left").await;
    assert!(
        !days.is_empty() && days.iter().all(|v| *v == 90.0),
        "{days:?}"
    );
    let old: Vec<f64> = points("old-cert", "days_left").await;
    assert!(!old.is_empty() && old.iter().all(|v| *v == -3.0), "{old:?}");
}
