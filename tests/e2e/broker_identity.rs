//! Broker identity: an agent connected to a broker where no Watchstand collector is online (a
//! second Mosquitto on its port, as on a machine where 1883 was already taken) says so within
//! seconds, naming the broker URL and topic root, and `/health` shows `collector_online: false`
//! until a collector announces itself there. `collector check` reports a listen port that is
//! taken, by key.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::{bin, free_addr, wait_for};

const WARNING: &str = "No Watchstand collector is online on this broker";

const PROBE: &str = "[[probes]]\nid = \"self\"\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_a_broker_without_a_collector_warns_within_5s_naming_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let spec = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &mosquitto.url(),
        PROBE,
    );
    let log = spec.dir.join("agent.log");
    let spawned = Instant::now();
    let agent = spec.spawn().await;
    let connected = wait_for("the agent to connect", Duration::from_secs(10), || async {
        let h = agent.health().await;
        (h["mqtt_connected"] == true).then_some(Instant::now())
    })
    .await;
    let line = wait_for("the no-collector warning", Duration::from_secs(15), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find(|l| l.contains(WARNING))
                .map(|l| (l.to_owned(), Instant::now()))
        }
    })
    .await;
    let (line, warned) = line;
    eprintln!(
        "warned {:?} after the agent started, {:?} after it was seen connected: {line}",
        warned - spawned,
        warned.saturating_duration_since(connected)
    );
    assert!(
        warned.saturating_duration_since(connected) <= Duration::from_secs(5),
        "warned within 5 s of connecting: {line}"
    );
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&mosquitto.url()),
        "names the broker URL: {line}"
    );
    assert!(
        line.contains("topic_root") && line.contains("watchstand"),
        "names the topic root: {line}"
    );
    let h = agent.health().await;
    assert_eq!(h["collector_online"], false, "{h}");

    // Once, not per second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches(WARNING).count(), 1, "one warning per episode");

    // A collector comes online on that broker: the agent sees it.
    let _collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        "",
    )
    .spawn()
    .await;
    let h = wait_for("collector_online", Duration::from_secs(15), || async {
        let h = agent.health().await;
        (h["collector_online"] == true).then_some(h)
    })
    .await;
    eprintln!("after the collector started: {h}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("A collector is online on the broker"),
        "{text}"
    );
}

/// Runs `watchstand-collector check` on a config whose embedded broker and API listen on
/// `broker` and `api`; returns the exit code and output.
fn check(
    dir: &std::path::Path,
    broker: std::net::SocketAddr,
    api: std::net::SocketAddr,
) -> (i32, String) {
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[collector]\ndata_dir = \"data\"\nlisten = \"{api}\"\n\n[broker]\nembedded = true\nlisten = \"{broker}\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(bin("watchstand-collector"))
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn collector_check_reports_a_taken_broker_or_api_port_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, api) = (free_addr(), free_addr());
    let (code, text) = check(dir.path(), broker, api);
    assert_eq!(code, 0, "{text}");

    let held = TcpListener::bind(broker).unwrap();
    let (code, text) = check(dir.path(), broker, api);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("broker.listen: cannot listen on {broker}")),
        "{text}"
    );
    assert!(
        text.contains("[mqtt] url of every agent"),
        "says what to change on the agents: {text}"
    );
    drop(held);

    let _held = TcpListener::bind(api).unwrap();
    let (code, text) = check(dir.path(), broker, api);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("collector.listen: cannot listen on {api}")),
        "{text}"
    );
    assert!(!text.contains("broker.listen"), "{text}");
}

/// The shipped configs agree on one broker, and it is not 1883 (often a Mosquitto already):
/// the agent's `[mqtt] url` is the collector's embedded `broker.listen`, and the example
/// `broker-port` probe measures that broker, not whatever listens on 1883.
#[test]
fn the_shipped_configs_agree_on_a_broker_port_that_is_not_1883() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let collector = watchstand_collector::config::load(&root.join("collector.toml")).unwrap();
    let agent = watchstand_agent::load_config(&root.join("agent.toml")).unwrap();
    let watchstand_collector::config::BrokerMode::Embedded { listen } = collector.broker else {
        panic!("the quick start uses the embedded broker");
    };
    assert_ne!(listen.port(), 1883);
    assert_eq!(agent.mqtt.url, format!("mqtt://{listen}"));
    assert_eq!(collector.mqtt.url, format!("mqtt://{listen}"));
    let probe = agent
        .probes
        .iter()
        .find(|p| p.id() == "broker-port")
        .expect("the example broker-port probe");
    let watchstand_agent::probe::ProbeConfig::Tcp(tcp) = probe else {
        panic!("broker-port is a tcp probe");
    };
    assert_eq!(tcp.address, listen.to_string());
}

/// With the shipped Mosquitto ACL an agent may read the collectors' state topic (without it,
/// every agent would warn that no collector is online and re-send blindly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_acl_lets_agents_read_the_collector_state() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = watchstand_tests::mosquitto_bin() else {
        assert!(
            !watchstand_tests::mosquitto_required(),
            "Mosquitto is required in CI"
        );
        return;
    };
    let d = dir.path();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/mosquitto");
    std::fs::copy(root.join("watchstand.acl"), d.join("watchstand.acl")).unwrap();
    let passwd = d.join("watchstand.passwd");
    for (i, (user, pass)) in [("agent-1", "a1"), ("watchstand-collector", "c")]
        .iter()
        .enumerate()
    {
        let mut cmd = Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        let ok = cmd
            .args(["-b", passwd.to_str().unwrap(), user, pass])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mosquitto_passwd");
    }
    let port = watchstand_tests::free_port();
    std::fs::write(
        d.join("mosquitto.conf"),
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {p}\nacl_file {a}\nlog_dest stderr\n",
            p = passwd.display(),
            a = d.join("watchstand.acl").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["watchstand.passwd", "watchstand.acl", "mosquitto.conf"] {
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let mut cmd = Command::new(exe);
    cmd.args(["-c", d.join("mosquitto.conf").to_str().unwrap()]);
    let _broker =
        watchstand_tests::process::Daemon::spawn("mosquitto", cmd, &d.join("mosquitto.log"));
    let addr = format!("127.0.0.1:{port}");
    wait_for(
        "Mosquitto with the shipped ACL",
        Duration::from_secs(10),
        || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        },
    )
    .await;
    let url = format!("mqtt://{addr}");
    let mut agent = watchstand_tests::mqtt::TestClient::connect_as(
        &url,
        "watchstand-agent-lab-agent-1",
        Some(("agent-1", "a1")),
    )
    .await;
    agent.subscribe("watchstand/v1/_collector/+/state").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut collector = watchstand_tests::mqtt::TestClient::connect_as(
        &url,
        "watchstand-collector-main",
        Some(("watchstand-collector", "c")),
    )
    .await;
    let state = watchstand_shared::wire::v1::CollectorStatus::new(
        "main",
        watchstand_shared::wire::v1::CollectorState::Online,
        watchstand_tests::now_ms(),
    );
    collector
        .publish("watchstand/v1/_collector/main/state", state.encode())
        .await;
    let got = agent
        .next(Duration::from_secs(5))
        .await
        .expect("the agent reads the collector's state");
    assert_eq!(got.topic, "watchstand/v1/_collector/main/state");
}
