//! Every file in `configs/` goes through its real loader: the TOML files through the binaries'
//! `check`, the collector and agent configs run against each other, the Mosquitto config and
//! ACL in a real Mosquitto, the systemd units' command lines through the binaries' argument
//! parsers. A file this test does not know fails it, so new configs get covered.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use watchstand_tests::mqtt::TestClient;
use watchstand_tests::{bin, free_addr, now_ms, wait_for};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Copies the TOML configs to `to/configs/` and makes the collector's key where collector.toml
/// names it (`../data/command.key`) with `keys generate`, as README's set-up does.
fn copy_with_key(root: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("configs")).unwrap();
    for f in ["agent.toml", "collector.toml", "services.toml"] {
        std::fs::copy(root.join(f), to.join("configs").join(f)).unwrap();
    }
    std::fs::create_dir_all(to.join("data")).unwrap();
    let key = to.join("data/command.key");
    check(
        "watchstand-collector",
        &["keys", "generate", "--out", key.to_str().unwrap()],
    );
}

fn check(binary: &str, args: &[&str]) -> String {
    let out = Command::new(bin(binary)).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{binary} {args:?} failed:\n{text}");
    text
}

#[test]
fn every_file_in_configs_is_known_and_loads() {
    let root = configs_dir();
    let mut files = Vec::new();
    all_files(&root, &mut files);
    let known = [
        "agent.toml",
        "collector.toml",
        "services.toml",
        "mosquitto/mosquitto.conf",
        "mosquitto/watchstand.acl",
        "mosquitto/README.md",
        "tls/make-certs.sh",
        "systemd/watchstand-agent.service",
        "systemd/watchstand-collector.service",
    ];
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        assert!(
            known.contains(&rel.as_str()),
            "configs/{rel} is not covered by this test"
        );
    }

    // The collector's signing key is made by `keys generate`, never shipped: the configs run
    // from a copy next to a fresh key, at the path collector.toml names.
    let copy = tempfile::tempdir().unwrap();
    copy_with_key(&root, copy.path());
    let agent = copy.path().join("configs/agent.toml");
    let collector = copy.path().join("configs/collector.toml");
    let out = check(
        "watchstand-agent",
        &["check", "-c", agent.to_str().unwrap()],
    );
    assert!(
        out.contains("collector-api") && out.contains("broker-port"),
        "{out}"
    );
    let out = check(
        "watchstand-collector",
        &["check", "-c", collector.to_str().unwrap()],
    );
    // services.toml is loaded through collector.toml's services_file.
    assert!(out.contains("messaging-failover"), "{out}");
    let services = std::fs::read_to_string(root.join("services.toml")).unwrap();
    for line in services.lines().filter(|l| l.starts_with("id = ")) {
        let id = line.trim_start_matches("id = ").trim_matches('"');
        assert!(
            out.contains(id),
            "service {id} from services.toml not loaded:\n{out}"
        );
    }

    // The systemd units' command lines parse (run as `check` against the repo's configs).
    for (unit, binary, config) in [
        ("watchstand-agent.service", "watchstand-agent", &agent),
        (
            "watchstand-collector.service",
            "watchstand-collector",
            &collector,
        ),
    ] {
        let text = std::fs::read_to_string(root.join("systemd").join(unit)).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit}: no ExecStart"));
        let words: Vec<&str> = exec.split_whitespace().collect();
        assert!(words[0].ends_with(binary), "{unit}: {exec}");
        assert!(matches!(words[1], "run" | "serve"), "{unit}: {exec}");
        assert_eq!(words[2], "-c", "{unit}: {exec}");
        check(binary, &["check", "-c", config.to_str().unwrap()]);
    }
}

/// The example agent and collector configs, as they are except for ports and data dirs (this
/// machine may run a broker on 1883), run against each other: the agent's probe of the
/// collector's API shows up as the `collector` service being up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_agent_and_collector_configs_run_against_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let root = configs_dir();
    let (api, broker, health) = (free_addr(), free_addr(), free_addr());
    let rewrite = |text: String| {
        text.replace("127.0.0.1:8088", &api.to_string())
            .replace("127.0.0.1:18830", &broker.to_string())
            .replace("127.0.0.1:9101", &health.to_string())
            .replace("../data/", "./data/")
    };
    for f in ["agent.toml", "collector.toml", "services.toml"] {
        let text = rewrite(std::fs::read_to_string(root.join(f)).unwrap());
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    check(
        "watchstand-collector",
        &[
            "keys",
            "generate",
            "--out",
            dir.path().join("data/command.key").to_str().unwrap(),
        ],
    );
    let spawn = |binary: &str, sub: &str, config: &str, log: &str| {
        let log = std::fs::File::create(dir.path().join(log)).unwrap();
        Command::new(bin(binary))
            .args([sub, "-c", dir.path().join(config).to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut collector = spawn(
        "watchstand-collector",
        "serve",
        "collector.toml",
        "collector.log",
    );
    let client = reqwest::Client::new();
    // The agent's first check runs within a second of its start: start it once the collector's
    // API answers, as a host whose collector is already running would (before that, the
    // `collector` service is really down).
    let health_url = format!("http://{api}/api/v1/health");
    wait_for("the collector's API", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), health_url.clone());
        async move { client.get(&url).send().await.ok().map(|_| ()) }
    })
    .await;
    let mut agent = spawn("watchstand-agent", "run", "agent.toml", "agent.log");
    let started = now_ms();
    let url = format!("http://{api}/api/v1/services/collector/sla?from={started}");
    let outcome = tokio::time::timeout(
        Duration::from_secs(40),
        wait_for(
            "the collector service measured up",
            Duration::from_secs(40),
            || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let v: serde_json::Value =
                        client.get(&url).send().await.ok()?.json().await.ok()?;
                    (v["uptime_s"].as_f64()? > 0.0).then_some(v)
                }
            },
        ),
    )
    .await;
    let _a = agent.kill().is_ok();
    let _c = collector.kill().is_ok();
    let _aw = agent.wait().is_ok();
    let _cw = collector.wait().is_ok();
    let sla = outcome.unwrap_or_else(|_| {
        panic!(
            "no measurement; logs:\n{}\n{}",
            std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        )
    });
    assert_eq!(sla["downtime_s"], 0.0, "{sla}");
}

/// `configs/mosquitto/` in a real Mosquitto (port and paths moved to a temporary directory):
/// an agent may publish its own results, not another agent's; the collector user reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_config_and_acl_enforce_one_agent_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    // The TLS listener needs its certificates (configs/tls/make-certs.sh).
    let certs = dir.path().join("certs");
    watchstand_tests::tls::make_certs(&certs, &[], None);
    let Some(broker) = watchstand_tests::tls::ShippedMosquitto::start(
        &dir.path().join("mosquitto"),
        &certs,
        &[
            ("agent-1", "a1"),
            ("agent-2", "a2"),
            ("watchstand-collector", "c"),
        ],
    )
    .await
    else {
        return;
    };
    let url = format!("mqtt://127.0.0.1:{}", broker.plain_port);

    let mut collector = TestClient::connect_as(
        &url,
        "watchstand-collector-main",
        Some(("watchstand-collector", "c")),
    )
    .await;
    collector.subscribe("watchstand/v1/+/+/results").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut agent = TestClient::connect_as(
        &url,
        "watchstand-agent-lab-agent-1",
        Some(("agent-1", "a1")),
    )
    .await;
    agent
        .publish("watchstand/v1/lab/agent-2/results", b"forged".to_vec())
        .await;
    agent
        .publish("watchstand/v1/lab/agent-1/results", b"own".to_vec())
        .await;
    let got = collector
        .next(Duration::from_secs(5))
        .await
        .expect("the agent's own results arrive");
    assert_eq!(
        &got.payload[..],
        b"own",
        "the forged publish (PUBACKed all the same) must not arrive first"
    );
    assert!(
        collector.next(Duration::from_millis(500)).await.is_none(),
        "nothing else arrives"
    );
}
