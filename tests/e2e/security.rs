//! Security end to end, with the real binaries: a collector with `[[api.tokens]]` (one made by
//! `token create`) answers 401/403 by role, records who acknowledged and resolved an incident
//! from their tokens, keeps an audit log that `audit verify` checks offline (exit 0 untouched,
//! 1 naming the first bad record after tampering, 2 while the collector holds the store), and
//! never writes a token into its log. A collector on 0.0.0.0 without tokens refuses to start.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use watchstand_collector::store::{trees, Store};
use watchstand_tests::process::{create_token, AgentSpec, BrokerChoice, CollectorSpec};
use watchstand_tests::{bin, free_addr, free_port, wait_for, HttpTarget};

fn collector_cli(args: &[&str]) -> Output {
    Command::new(bin("watchstand-collector"))
        .args(args)
        .env_remove("WATCHSTAND_TOKEN")
        .output()
        .expect("run watchstand-collector")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn request(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut r = client.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_and_the_audit_log_hold_end_to_end_and_no_token_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (ana, ana_toml) = create_token("ana", "operator");
    let (bo, bo_toml) = create_token("bo", "operator");
    let (vic, vic_toml) = create_token("vic", "viewer");
    let (root, root_toml) = create_token("root", "admin");
    let target = HttpTarget::start().await;
    let services = format!(
        r#"
{ana_toml}
{bo_toml}
{vic_toml}
{root_toml}
[incidents]
evaluate_every = "1s"
down_after = 1
resolve_after = "1h"
burn_rate = []
sla_below_target = false

[[services]]
id = "web"
name = "Web"
criticality = "high"
rto = "5m"
rpo = "1m"
probes = ["agent-1/web"]
slo = {{ availability = 99.9, window = "1d" }}
"#
    );
    let spec = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services,
    );
    let mut collector = spec.spawn().await;
    let probes = format!(
        "[[probes]]\nid = \"web\"\nkind = \"http\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n",
        target.url()
    );
    let mut agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;

    // Health is public; everything else needs a token of the right role.
    let url = |p: &str| collector.url(p);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    assert_eq!(
        request(get.clone(), &url("/api/v1/health"), None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        request(get.clone(), &url("/api/v1/services"), None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        request(get.clone(), &url("/metrics"), Some(&vic), None)
            .await
            .0,
        200
    );
    assert_eq!(
        request(get.clone(), &url("/api/v1/audit"), Some(&ana), None)
            .await
            .0,
        403
    );

    target.set_healthy(false);
    let incident = wait_for(
        "the service-down incident",
        Duration::from_secs(60),
        || async {
            let (status, list) = request(
                get.clone(),
                &url("/api/v1/incidents?state=open"),
                Some(&vic),
                None,
            )
            .await;
            assert_eq!(status, 200, "{list}");
            list.as_array()?.first().cloned()
        },
    )
    .await;
    let id = incident["id"].as_u64().unwrap();
    let ack_url = url(&format!("/api/v1/incidents/{id}/ack"));
    let resolve_url = url(&format!("/api/v1/incidents/{id}/resolve"));

    // A viewer may not act; a body naming someone is refused; nothing changes either way.
    let before = request(
        get.clone(),
        &url(&format!("/api/v1/incidents/{id}")),
        Some(&vic),
        None,
    )
    .await
    .1;
    let comment = serde_json::json!({"comment": "on it"});
    assert_eq!(
        request(post.clone(), &ack_url, Some(&vic), Some(comment.clone()))
            .await
            .0,
        403
    );
    assert_eq!(
        request(post.clone(), &ack_url, None, Some(comment.clone()))
            .await
            .0,
        401
    );
    assert_eq!(
        request(
            post.clone(),
            &resolve_url,
            Some(&vic),
            Some(comment.clone())
        )
        .await
        .0,
        403
    );
    let forged = serde_json::json!({"by": "somebody-else"});
    assert_eq!(
        request(post.clone(), &ack_url, Some(&ana), Some(forged))
            .await
            .0,
        400
    );
    let after = request(
        get.clone(),
        &url(&format!("/api/v1/incidents/{id}")),
        Some(&vic),
        None,
    )
    .await
    .1;
    assert_eq!(before, after, "refused requests changed the incident");

    // ana acknowledges from the CLI with a token file; bo resolves with WATCHSTAND_TOKEN.
    let token_file = dir.path().join("ana.token");
    std::fs::write(&token_file, format!("{ana}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = collector.url("");
    let out = collector_cli(&[
        "incidents",
        "ack",
        &id.to_string(),
        "--comment",
        "on it",
        "--server",
        &server,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("readable by its group or other users"),
        "{}",
        text(&out)
    );
    let out = Command::new(bin("watchstand-collector"))
        .args([
            "incidents",
            "resolve",
            &id.to_string(),
            "--comment",
            "failed over",
        ])
        .args(["--server", &server])
        .env("WATCHSTAND_TOKEN", &bo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (_, resolved) = request(
        get.clone(),
        &url(&format!("/api/v1/incidents/{id}")),
        Some(&vic),
        None,
    )
    .await;
    assert_eq!(resolved["acknowledged_by"], "ana", "{resolved}");
    assert_eq!(resolved["resolved_by"], "bo", "{resolved}");

    // The audit log names each, and the refusals.
    let (status, audit) = request(get.clone(), &url("/api/v1/audit"), Some(&root), None).await;
    assert_eq!(status, 200, "{audit}");
    let records = audit["records"].as_array().unwrap();
    let has = |actor: &str, action: &str, outcome: &str| {
        records.iter().any(|r| {
            r["actor"] == actor && r["action"] == action && r["outcome"].as_str() == Some(outcome)
        })
    };
    assert!(has("ana", "incident.ack", "ok"), "{audit}");
    assert!(has("bo", "incident.resolve", "ok"), "{audit}");
    assert!(has("vic", "incident.ack", "refused 403"), "{audit}");
    assert!(has("anonymous", "incident.ack", "refused 401"), "{audit}");
    assert!(has("ana", "audit.read", "refused 403"), "{audit}");
    assert!(has("ana", "incident.ack", "error 400"), "{audit}");
    assert_eq!(audit["verification"]["broken"], Value::Null, "{audit}");
    let count = audit["verification"]["records"].as_u64().unwrap();

    // While the collector holds the store, verify says so and fails (exit 2).
    let data = spec.dir.join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let out = collector_cli(&["audit", "verify", "--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a collector running"),
        "{}",
        text(&out)
    );

    agent.terminate();
    assert!(collector.terminate(), "the collector stops cleanly");

    // No token value in the collector's log (nor the agent's).
    for log in [
        spec.dir.join("collector.log"),
        dir.path().join("agent").join("agent.log"),
    ] {
        let Ok(content) = std::fs::read_to_string(&log) else {
            continue;
        };
        for t in [&ana, &bo, &vic, &root] {
            assert!(
                !content.contains(t.as_str()),
                "{} holds a token",
                log.display()
            );
        }
    }
    assert!(std::fs::read_to_string(spec.dir.join("collector.log"))
        .unwrap()
        .contains("Collector started"));

    // `check` names the tokens' holders and roles, never a token.
    let config = spec.dir.join("collector.toml");
    let out = collector_cli(&["check", "-c", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout
            .contains("API access: 4 token(s): ana operator, bo operator, vic viewer, root admin"),
        "{}",
        text(&out)
    );
    for t in [&ana, &bo, &vic, &root] {
        assert!(!stdout.contains(t.as_str()));
    }

    // Offline: untouched → exit 0 with the count; one flipped byte → exit 1 naming the record.
    let out = collector_cli(&["audit", "verify", "--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("audit log ok: {count} records")),
        "{stdout}"
    );
    tamper(&data, 2);
    let out = collector_cli(&["audit", "verify", "--data-dir", &data_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("audit log broken at record 2:"), "{stdout}");
}

/// Flips one byte of audit record `seq` in the stopped collector's store.
fn tamper(data: &Path, seq: u64) {
    let store = Store::open(data).expect("open the stopped collector's store");
    let tree = store.tree(trees::AUDIT).unwrap();
    let mut value = tree.get(&seq.to_be_bytes()).unwrap().expect("the record");
    let at = value.len() / 2;
    value[at] ^= 0x01;
    tree.put(&seq.to_be_bytes(), &value).unwrap();
    store.flush().unwrap();
}

#[tokio::test]
async fn a_collector_on_all_interfaces_without_tokens_refuses_to_start_naming_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[collector]\ndata_dir = \"data\"\nlisten = \"0.0.0.0:{}\"\n[broker]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = collector_cli(&["serve", "-c", config]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api.tokens: none configured"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("not a loopback address"), "{}", text(&out));
    assert!(!dir.path().join("data").exists(), "nothing was started");
    let out = collector_cli(&["check", "-c", config]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("api.tokens"),
        "{}",
        text(&out)
    );
}

/// A self-signed certificate for 127.0.0.1 and its key (`cert.pem`, `key.pem` in `dir`) made
/// with openssl; `None` (the test skips) without openssl.
fn self_signed(dir: &Path, name: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // Not a CA: webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .ok()?;
    out.status.success().then_some((cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_tls_with_its_certificate_and_a_mismatched_key_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path(), "api") else {
        eprintln!("openssl not found: skipping the API TLS test");
        return;
    };
    let Some((_, other_key)) = self_signed(dir.path(), "other") else {
        return;
    };
    let token = watchstand_collector::auth::Token::generate();
    let write = |key: &Path| {
        let path = dir.path().join("collector.toml");
        std::fs::write(
            &path,
            format!(
                "[collector]\ndata_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n[broker]\nlisten = \"{}\"\n[api]\ntls_cert = {:?}\ntls_key = {:?}\n{}",
                free_addr(),
                cert.display().to_string(),
                key.display().to_string(),
                token.config_lines("ana", watchstand_collector::auth::Role::Viewer)
            ),
        )
        .unwrap();
        watchstand_collector::config::load(&path).expect("valid config")
    };

    let stop = tokio_util::sync::CancellationToken::new();
    let running = watchstand_collector::server::start(write(&key), stop.clone())
        .await
        .expect("starts with TLS");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let https = |p: &str| format!("https://{}{p}", running.api_addr);
    let health = client
        .get(https("/api/v1/health"))
        .send()
        .await
        .expect("https");
    assert_eq!(health.status().as_u16(), 200);
    let r = client.get(https("/api/v1/services")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .get(https("/api/v1/services"))
        .bearer_auth(token.secret.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The CLI trusts the private CA with --ca-file.
    let out = Command::new(bin("watchstand-collector"))
        .args(["agents", "--format", "json", "--server", &https("")])
        .arg("--ca-file")
        .arg(&cert)
        .env("WATCHSTAND_TOKEN", token.secret.expose())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = collector_cli(&["agents", "--server", &https("")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown CA is refused: {}",
        text(&out)
    );
    // Plain HTTP on the TLS port gets no API answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/api/v1/health", running.api_addr))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    stop.cancel();
    running.task.await.unwrap().expect("clean stop");

    let err = watchstand_collector::server::start(
        write(&other_key),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(
        err.contains("api.tls_key") && err.contains("does not go with the certificate"),
        "{err}"
    );
}

#[test]
fn audit_verify_names_the_first_bad_record_of_each_kind_of_tampering() {
    use watchstand_collector::audit::{AuditLog, Entry, Outcome};
    let root = tempfile::tempdir().unwrap();
    // (what is done to a log of 6 records, the record `audit verify` must name)
    type Tamper = fn(&dyn watchstand_shared::storage::Tree);
    let cases: [(&str, Tamper, u64); 5] = [
        ("untouched", |_| {}, 0),
        (
            "one byte flipped in record 3",
            |t| {
                let mut v = t.get(&3u64.to_be_bytes()).unwrap().unwrap();
                let at = v.len() - 10;
                v[at] ^= 0x01;
                t.put(&3u64.to_be_bytes(), &v).unwrap();
            },
            3,
        ),
        (
            "record 4 deleted",
            |t| t.delete(&4u64.to_be_bytes()).unwrap(),
            4,
        ),
        (
            "records 2 and 5 swapped",
            |t| {
                let two = t.get(&2u64.to_be_bytes()).unwrap().unwrap();
                let five = t.get(&5u64.to_be_bytes()).unwrap().unwrap();
                t.put(&2u64.to_be_bytes(), &five).unwrap();
                t.put(&5u64.to_be_bytes(), &two).unwrap();
            },
            2,
        ),
        (
            "tail truncated after record 4",
            |t| {
                t.delete(&5u64.to_be_bytes()).unwrap();
                t.delete(&6u64.to_be_bytes()).unwrap();
            },
            5,
        ),
    ];
    let nowhere = root.path().join("no-store-here");
    let out = collector_cli(&["audit", "verify", "--data-dir", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!nowhere.exists(), "verify created nothing");
    for (i, (what, tamper, bad)) in cases.into_iter().enumerate() {
        let data = root.path().join(format!("data-{i}"));
        {
            let store = Store::open(&data).unwrap();
            let log = AuditLog::new(store.clone());
            for n in 0..6u64 {
                let entry = Entry {
                    actor: ["ana", "bo"][usize::try_from(n % 2).unwrap()].into(),
                    role: Some(watchstand_collector::auth::Role::Operator),
                    action: "incident.ack".into(),
                    target: format!("POST /api/v1/incidents/{n}/ack"),
                    outcome: Outcome::Ok,
                    detail: "200 OK".into(),
                };
                log.append(entry, 1_000 + n).unwrap();
            }
            tamper(store.tree(trees::AUDIT).unwrap().as_ref());
            store.flush().unwrap();
        }
        let out = collector_cli(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if bad == 0 {
            assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
            assert!(
                stdout.contains("audit log ok: 6 records"),
                "{what}: {stdout}"
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
            assert!(
                stdout.contains(&format!("audit log broken at record {bad}:")),
                "{what}: {stdout}"
            );
        }
    }
}
