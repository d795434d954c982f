//! MQTT over TLS with client certificates against a real Mosquitto running the shipped
//! `configs/mosquitto/` (TLS listener with `require_certificate` and
//! `use_identity_as_username`, the shipped ACL) and certificates made fresh by the shipped
//! `configs/tls/make-certs.sh`: the agent and the collector deliver over mTLS; a certificate
//! pins an agent to its own topics; certificates from another CA, expired, or none are refused
//! and the agent's log says why (as it does when it does not trust the broker's certificate).

use std::path::Path;
use std::time::Duration;

use watchstand_tests::process::{Agent, AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::tls::{make_certs, make_certs_with, mqtt_tls_lines, ShippedMosquitto};
use watchstand_tests::{wait_for, HttpTarget};

fn probe(url: &str) -> String {
    format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
    )
}

fn agent_spec(dir: &Path, id: &str, url: &str, probes: &str, tls: &str) -> AgentSpec {
    let mut spec = AgentSpec::new(&dir.join(id), id, url, probes);
    spec.mqtt_extra = tls.to_owned();
    spec
}

fn log_of(agent: &Agent) -> String {
    std::fs::read_to_string(agent.spec.dir.join("agent.log")).unwrap_or_default()
}

/// The base64 lines of a PEM private key: none may appear in any log.
fn key_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_collector_deliver_over_mtls_and_a_certificate_pins_the_agent_to_its_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let certs = d.join("certs");
    make_certs(&certs, &["agent-a"], None);
    let Some(broker) = ShippedMosquitto::start(&d.join("mosquitto"), &certs, &[]).await else {
        return;
    };
    let mut spec = CollectorSpec::new(
        &d.join("collector"),
        BrokerChoice::External(broker.tls_url()),
        "",
    );
    spec.mqtt_extra = mqtt_tls_lines(&certs, Some("collector"));
    let collector = spec.spawn().await;

    let target = HttpTarget::start().await;
    let web = probe(&target.url_path("/health"));
    let a = agent_spec(
        d,
        "agent-a",
        &broker.tls_url(),
        &web,
        &mqtt_tls_lines(&certs, Some("agent-a")),
    )
    .spawn()
    .await;
    // Agent B's id with agent A's certificate: the broker knows it as agent-a.
    let impostor = agent_spec(
        d,
        "agent-b",
        &broker.tls_url(),
        &web,
        &mqtt_tls_lines(&certs, Some("agent-a")),
    )
    .spawn()
    .await;

    let stored = wait_for(
        "agent-a's results stored by the collector over mTLS",
        Duration::from_secs(60),
        || async {
            let rows = collector.get("/api/v1/agents/agent-a/results").await;
            rows.as_array().filter(|r| r.len() >= 3).map(Vec::len)
        },
    )
    .await;
    let published = wait_for(
        "the impostor connected and published (PUBACKed) results",
        Duration::from_secs(60),
        || async {
            let h = impostor.health().await;
            (h["mqtt_connected"] == true && h["published"].as_u64()? >= 3).then_some(h)
        },
    )
    .await;
    // Let a last batch of agent-a's (and the impostor's) reach the collector before looking.
    let before = stored;
    wait_for(
        "more of agent-a's results stored",
        Duration::from_secs(30),
        || async {
            let rows = collector.get("/api/v1/agents/agent-a/results").await;
            rows.as_array().filter(|r| r.len() > before).map(|_| ())
        },
    )
    .await;
    // An agent the collector never heard of has no results route (404), not an empty list.
    let forged = collector
        .get_if_found("/api/v1/agents/agent-b/results")
        .await;
    assert!(
        forged.is_none(),
        "nothing stored for agent-b although its impostor published {published}: {forged:?}"
    );
    assert!(
        collector.agent("agent-b").await.is_none(),
        "agent-b is unknown to the collector"
    );
    assert!(collector.agent("agent-a").await.is_some());
    assert_eq!(a.health().await["mqtt_connected"], true);

    // No private key material in any log.
    let mut logs = broker.log();
    for f in [
        d.join("collector/collector.log"),
        a.spec.dir.join("agent.log"),
        impostor.spec.dir.join("agent.log"),
    ] {
        logs.push_str(&std::fs::read_to_string(f).unwrap());
    }
    for key in ["agent-a.key", "collector.key", "broker.key"] {
        for line in key_lines(&certs.join(key)) {
            assert!(!logs.contains(&line), "{key} material in a log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_refuses_a_foreign_an_expired_or_no_client_certificate_and_the_agent_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let certs = d.join("certs");
    make_certs(&certs, &["agent-t"], None);
    // Signed by the right CA, but expired a day ago.
    make_certs(&certs, &["agent-old"], Some(-1));
    // A certificate for a known agent id, from another CA.
    let other = d.join("other-ca");
    make_certs(&other, &["agent-x"], None);
    let Some(broker) = ShippedMosquitto::start(&d.join("mosquitto"), &certs, &[]).await else {
        return;
    };
    let probes = probe("http://127.0.0.1:9/health");
    let foreign_tls = format!(
        "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        certs.join("ca.crt").display(),
        other.join("agent-x.crt").display(),
        other.join("agent-x.key").display()
    );
    let cases = [
        ("agent-x", foreign_tls, "received fatal alert: UnknownCA"),
        (
            "agent-old",
            mqtt_tls_lines(&certs, Some("agent-old")),
            "received fatal alert: CertificateExpired",
        ),
        (
            "agent-none",
            mqtt_tls_lines(&certs, None),
            "received fatal alert: CertificateRequired",
        ),
        // The other way round: the agent does not trust the broker's certificate.
        (
            "agent-t",
            format!(
                "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
                other.join("ca.crt").display(),
                certs.join("agent-t.crt").display(),
                certs.join("agent-t.key").display()
            ),
            // Both CAs share a name, so rustls reports BadSignature (UnknownIssuer otherwise).
            "invalid peer certificate: ",
        ),
    ];
    let mut agents = Vec::new();
    for (id, tls, reason) in &cases {
        let agent = agent_spec(d, id, &broker.tls_url(), &probes, tls)
            .spawn()
            .await;
        agents.push((agent, *reason));
    }
    for (agent, reason) in &agents {
        let line = wait_for(
            "the agent's log to say why the broker refused it",
            Duration::from_secs(30),
            || async {
                log_of(agent)
                    .lines()
                    .find(|l| l.contains("MQTT connect failed"))
                    .map(str::to_owned)
            },
        )
        .await;
        eprintln!("{}: {line}", agent.spec.id);
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains(reason),
            "{}: the reason {reason} in: {line}",
            agent.spec.id
        );
    }
    // Retried with backoff, never connected.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (agent, _) in &agents {
        let h = agent.health().await;
        assert_eq!(h["mqtt_connected"], false, "{}: {h}", agent.spec.id);
        assert_eq!(h["published"], 0, "{}: {h}", agent.spec.id);
    }
    for (agent, _) in &agents {
        // Once per reason, not once per retry.
        let warned = log_of(agent).matches("MQTT connect failed").count();
        assert_eq!(warned, 1, "{}: {}", agent.spec.id, log_of(agent));
    }
    // The broker saw each of them retry (the reconnect backoff is at most 1 s here).
    let log = broker.log();
    let attempts = log.matches("New connection from").count();
    assert!(
        attempts >= 2 * agents.len(),
        "{attempts} connection attempts for {} agents:\n{log}",
        agents.len()
    );
    assert!(
        log.contains("certificate verify failed")
            && log.contains("peer did not return a certificate"),
        "the broker says why too:\n{log}"
    );
}

/// Runs `binary check -c config`; returns the exit code, stdout and stderr.
fn check(binary: &str, config: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(watchstand_tests::bin(binary))
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_loads_the_tls_files_warns_about_open_secret_files_and_never_prints_the_password() {
    use std::os::unix::fs::PermissionsExt as _;
    const PASSWORD: &str = "pw-Zq81x-never-printed";
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let certs = d.join("certs");
    make_certs(&certs, &["agent-a", "agent-b"], None);
    let url = "mqtts://127.0.0.1:8883";
    let creds = format!("username = \"agent-a\"\npassword = \"{PASSWORD}\"\n");
    let mut agent = agent_spec(
        d,
        "agent-a",
        url,
        &probe("http://127.0.0.1:9/"),
        &format!("{creds}{}", mqtt_tls_lines(&certs, Some("agent-a"))),
    );
    let mut collector = CollectorSpec::new(
        &d.join("collector"),
        BrokerChoice::External(url.to_owned()),
        "",
    );
    collector.mqtt_extra = format!(
        "username = \"watchstand-collector\"\npassword = \"{PASSWORD}\"\n{}",
        mqtt_tls_lines(&certs, Some("collector"))
    );
    let configs = [
        ("watchstand-agent", agent.write_config()),
        ("watchstand-collector", collector.write_config()),
    ];
    for (binary, config) in &configs {
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (code, out, err) = check(binary, config);
        assert_eq!(code, 0, "{binary}: {out}{err}");
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "{out}{err}"
        );
        assert!(!err.contains("WARN"), "{binary}: private files: {err}");

        // A config holding a password readable by everyone is warned about, by key.
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, out, err) = check(binary, config);
        assert_eq!(code, 0, "{binary}: {out}{err}");
        assert!(
            err.contains("WARN") && err.contains("mqtt.password") && err.contains("644"),
            "{binary}: {err}"
        );
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "{out}{err}"
        );
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The agent's key readable by everyone: warned about, naming the key and the path.
    let key_a = certs.join("agent-a.key");
    std::fs::set_permissions(&key_a, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = check("watchstand-agent", &configs[0].1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("mqtt.tls.key_file") && err.contains(&key_a.display().to_string()),
        "{err}"
    );
    std::fs::set_permissions(&key_a, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key that does not match the certificate: `check` fails naming both files.
    agent.mqtt_extra = format!(
        "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
        certs.join("ca.crt").display(),
        certs.join("agent-a.crt").display(),
        certs.join("agent-b.key").display()
    );
    let config = agent.write_config();
    let (code, out, err) = check("watchstand-agent", &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "mqtt.tls.key_file: {} does not match the certificate in {}",
            certs.join("agent-b.key").display(),
            certs.join("agent-a.crt").display()
        )),
        "{out}"
    );
    // An unreadable CA for the collector.
    collector.mqtt_extra = format!(
        "tls = {{ ca_file = \"{}\" }}\n",
        d.join("missing-ca.crt").display()
    );
    let config = collector.write_config();
    let (code, out, err) = check("watchstand-collector", &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "mqtt.tls.ca_file: cannot read {}",
            d.join("missing-ca.crt").display()
        )),
        "{out}"
    );
}

/// A broker certificate that names only `broker.test`, reached at 127.0.0.1: refused by host
/// name unless `server_name = "broker.test"` says which name to verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_verifies_a_broker_certificate_that_does_not_name_the_url_host() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let certs = d.join("certs");
    make_certs_with(
        &certs,
        &["agent-n", "agent-s"],
        None,
        &[("BROKER_NAMES", "DNS:broker.test")],
    );
    let Some(broker) = ShippedMosquitto::start(&d.join("mosquitto"), &certs, &[]).await else {
        return;
    };
    let probes = probe("http://127.0.0.1:9/health");
    let plain = agent_spec(
        d,
        "agent-n",
        &broker.tls_url(),
        &probes,
        &mqtt_tls_lines(&certs, Some("agent-n")),
    )
    .spawn()
    .await;
    let named = agent_spec(
        d,
        "agent-s",
        &broker.tls_url(),
        &probes,
        &format!(
            "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\", server_name = \"broker.test\" }}\n",
            certs.join("ca.crt").display(),
            certs.join("agent-s.crt").display(),
            certs.join("agent-s.key").display()
        ),
    )
    .spawn()
    .await;
    wait_for(
        "the agent with server_name to connect",
        Duration::from_secs(30),
        || async { (named.health().await["mqtt_connected"] == true).then_some(()) },
    )
    .await;
    let line = wait_for(
        "the agent without server_name to say why it cannot connect",
        Duration::from_secs(30),
        || async {
            log_of(&plain)
                .lines()
                .find(|l| l.contains("MQTT connect failed"))
                .map(str::to_owned)
        },
    )
    .await;
    assert!(
        line.contains("certificate not valid for name \"127.0.0.1\""),
        "{line}"
    );
    assert_eq!(plain.health().await["mqtt_connected"], false);
}
