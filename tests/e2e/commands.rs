//! Signed commands end to end: the real agent binary, the collector's embedded broker on a free
//! port, and this test acting as the collector's signer — it publishes straight onto the agent's
//! `cmd` topic and reads `cmd/ack`. The declared action appends one line to a file, so "ran" and
//! "did not run" are counted on disk, not inferred from acks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rumqttc::QoS;
use watchstand_shared::command::{new_nonce, CommandKey, UnsignedCommand};
use watchstand_shared::wire::v1::{encode, Answer, CmdAck, Command, OutcomeStatus};
use watchstand_tests::mqtt::TestClient;
use watchstand_tests::now_ms;
use watchstand_tests::process::{Agent, AgentSpec, BrokerChoice, Collector, CollectorSpec};

const CMD: &str = "watchstand/v1/lab/db-2/cmd";
const CMD_ACK: &str = "watchstand/v1/lab/db-2/cmd/ack";

/// A broker (the collector's embedded one), an agent `db-2` that accepts commands signed by
/// `key`, and a client subscribed to the agent's `cmd/ack`.
struct Rig {
    _dir: tempfile::TempDir,
    _collector: Collector,
    spec: AgentSpec,
    agent: Agent,
    client: TestClient,
    key: CommandKey,
    lines: PathBuf,
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerChoice::Embedded(watchstand_tests::free_addr());
        let collector = CollectorSpec::new(&dir.path().join("collector"), broker.clone(), "")
            .spawn()
            .await;
        let key = CommandKey::generate();
        let lines = dir.path().join("ran.txt");
        let addr = broker.url().trim_start_matches("mqtt://").to_owned();
        let mut spec = AgentSpec::new(
            &dir.path().join("agent"),
            "db-2",
            &broker.url(),
            &format!(
                "[[probes]]\nid = \"broker\"\nkind = \"tcp\"\naddress = \"{addr}\"\ninterval = \"10s\"\ntimeout = \"1s\"\n"
            ),
        );
        spec.extra.push_str(&format!(
            r#"
[commands]
public_key = "{public}"
clock_skew = "30s"
refusal_acks_per_second = 100000

[[actions]]
id = "append"
kind = "exec"
argv = ["/bin/sh", "-c", "printf '%s\n' \"$1\" >> \"$2\"", "append", "{{word}}", "{lines}"]
timeout = "10s"
[actions.args.word]
regex = "[a-z]{{1,16}}"

[[actions]]
id = "promote"
kind = "exec"
argv = ["/bin/sh", "-c", "printf '%s\n' \"$1\" >> \"$2\"", "promote", "{{role}}", "{lines}"]
timeout = "10s"
[actions.args.role]
allowed = ["primary", "standby"]
"#,
            public = key.public().to_base64(),
            lines = lines.display(),
        ));
        let agent = spec.spawn().await;
        let mut client = TestClient::connect(&broker.url(), "test-signer").await;
        client.subscribe(CMD_ACK).await;
        wait_subscribed(&agent).await;
        // The subscription above is in place once the broker answered a round trip.
        client.publish("test/noop", b"x".to_vec()).await;
        Self {
            _dir: dir,
            _collector: collector,
            spec,
            agent,
            client,
            key,
            lines,
        }
    }

    fn command(&self, id: &str, action: &str, args: &[(&str, &str)]) -> UnsignedCommand {
        let now = now_ms();
        UnsignedCommand {
            site: "lab".into(),
            agent: "db-2".into(),
            command_id: id.into(),
            run_id: "run-1".into(),
            step: 0,
            action: action.into(),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            issued_ms: now,
            expires_ms: now + 60_000,
            nonce: new_nonce(),
        }
    }

    async fn send(&mut self, payload: Vec<u8>) {
        self.client.publish(CMD, payload).await;
    }

    /// The next ack within `limit`.
    async fn ack(&mut self, limit: Duration) -> CmdAck {
        let p = self.client.next(limit).await.expect("an ack on cmd/ack");
        assert_eq!(p.topic, CMD_ACK);
        serde_json::from_slice(&p.payload).expect("a v1 CmdAck")
    }

    async fn health_commands(&self) -> serde_json::Value {
        self.agent.health().await["commands"].clone()
    }
}

/// Waits until the agent is connected (it subscribes to `cmd` on connect).
async fn wait_subscribed(agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.health().await["mqtt_connected"] != true {
        assert!(Instant::now() < deadline, "agent never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its SUBSCRIBE follows the CONNACK at once; give the broker a moment to apply it.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn outcome(ack: &CmdAck) -> (&str, OutcomeStatus, bool) {
    match &ack.answer {
        Answer::Outcome(o) => (
            ack.command.as_ref().map_or("", |c| c.command_id.as_str()),
            o.status,
            ack.from_journal,
        ),
        other => panic!("expected an outcome, got {other:?}"),
    }
}

fn refusal(ack: &CmdAck) -> &'static str {
    match &ack.answer {
        Answer::Refused { reason, .. } => reason.as_str(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_runs_once_a_resend_is_answered_from_the_journal_and_a_replay_stays_refused_after_a_restart(
) {
    let mut rig = Rig::start().await;
    let first = rig
        .key
        .sign(rig.command("c-1", "append", &[("word", "hello")]));
    rig.send(encode(&first)).await;
    let ack = rig.ack(Duration::from_secs(20)).await;
    assert_eq!(outcome(&ack), ("c-1", OutcomeStatus::Succeeded, false));
    assert_eq!(line_count(&rig.lines), 1);

    // The same command again (a QoS 1 duplicate, or a collector re-send): the stored outcome.
    rig.send(encode(&first)).await;
    let again = rig.ack(Duration::from_secs(20)).await;
    assert_eq!(outcome(&again), ("c-1", OutcomeStatus::Succeeded, true));
    assert_eq!(again.answer, ack.answer);
    assert_eq!(line_count(&rig.lines), 1);

    // SIGKILL: nothing orderly. The nonce and the outcome were on disk before the answer.
    rig.agent.kill();
    rig.agent = rig.spec.spawn().await;
    wait_subscribed(&rig.agent).await;
    // After the restart the agent may re-publish recent outcomes; skip those.
    let mut replay = rig.command("c-2", "append", &[("word", "again")]);
    replay.nonce = first.nonce.clone();
    rig.send(encode(&rig.key.sign(replay))).await;
    rig.send(encode(&first)).await;
    let mut replayed = None;
    let mut resent = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replayed.is_none() || resent.is_none() {
        assert!(Instant::now() < deadline, "answers after the restart");
        let ack = rig.ack(Duration::from_secs(20)).await;
        match &ack.answer {
            Answer::Refused { .. } => replayed = Some(ack),
            Answer::Outcome(_) if ack.from_journal => {
                // Either the re-publish after connect or the answer to the re-send; both are
                // the stored outcome of c-1, never a new run.
                assert_eq!(outcome(&ack), ("c-1", OutcomeStatus::Succeeded, true));
                if rig.health_commands().await["answered_from_journal"] == 1 {
                    resent = Some(ack);
                }
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let replayed = replayed.unwrap();
    assert_eq!(refusal(&replayed), "replayed");
    assert_eq!(replayed.command.as_ref().unwrap().command_id, "c-2");
    assert_eq!(line_count(&rig.lines), 1, "nothing ran a second time");
    let h = rig.health_commands().await;
    assert_eq!(h["executed"], 0, "{h}");
    assert_eq!(h["refused"]["replayed"], 1, "{h}");
}

/// The hostile kinds, each with the reason it must be refused with.
const KINDS: [(&str, &str); 11] = [
    ("wrong_key", "unknown_key"),
    ("bad_signature", "bad_signature"),
    ("truncated", "malformed"),
    ("expired", "expired"),
    ("future_dated", "not_yet_valid"),
    ("replayed", "replayed"),
    ("other_agent", "other_agent"),
    ("undeclared_action", "undeclared_action"),
    ("argument_outside_rule", "argument_refused"),
    ("oversized", "oversized"),
    ("shell_metacharacters", "argument_refused"),
];

const SHELL: [&str; 8] = [
    "a; touch /tmp/pwned",
    "$(id)",
    "`id`",
    "a | tee x",
    "a && reboot",
    "a\nb",
    "../../etc/passwd",
    "primary; rm -rf /",
];

#[tokio::test]
async fn ten_thousand_hostile_commands_run_nothing_and_each_is_refused_with_its_reason() {
    const PER_KIND: usize = 910; // 11 kinds: 10,010 commands
    let mut rig = Rig::start().await;
    // One legitimate command first: its nonce is what the replays reuse.
    let legit = rig
        .key
        .sign(rig.command("legit", "append", &[("word", "ok")]));
    rig.send(encode(&legit)).await;
    assert_eq!(
        outcome(&rig.ack(Duration::from_secs(20)).await),
        ("legit", OutcomeStatus::Succeeded, false)
    );
    assert_eq!(line_count(&rig.lines), 1);

    let started = Instant::now();
    let stranger = CommandKey::generate();
    let mut payloads = Vec::with_capacity(PER_KIND * KINDS.len());
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for i in 0..PER_KIND {
        for (kind, reason) in KINDS {
            let id = format!("h-{kind}-{i}");
            let base = rig.command(&id, "append", &[("word", "x")]);
            let now = base.issued_ms;
            let payload: Vec<u8> = match kind {
                "wrong_key" => encode(&stranger.sign(base)),
                "bad_signature" => {
                    let mut c: Command = stranger.sign(base);
                    c.key_id = rig.key.public().key_id().to_owned();
                    encode(&c)
                }
                "truncated" => {
                    let full = encode(&rig.key.sign(base));
                    full[..(i % (full.len() - 1)).max(1)].to_vec()
                }
                "expired" => encode(&rig.key.sign(UnsignedCommand {
                    issued_ms: now - 600_000,
                    expires_ms: now - 31_000 - i as u64,
                    ..base
                })),
                "future_dated" => encode(&rig.key.sign(UnsignedCommand {
                    // Well past the 30 s skew: generating and sending all of them takes seconds.
                    issued_ms: now + 300_000 + i as u64,
                    expires_ms: now + 900_000,
                    ..base
                })),
                "replayed" => encode(&rig.key.sign(UnsignedCommand {
                    nonce: legit.nonce.clone(),
                    ..base
                })),
                "other_agent" => encode(&rig.key.sign(UnsignedCommand {
                    agent: format!("db-{}", 3 + i % 5),
                    ..base
                })),
                "undeclared_action" => encode(&rig.key.sign(UnsignedCommand {
                    action: ["reboot", "wipe", "shell", "exec"][i % 4].into(),
                    ..base
                })),
                "argument_outside_rule" => {
                    let mut u = rig.command(&id, "promote", &[("role", "leader")]);
                    if i % 3 == 1 {
                        u.args.insert("extra".into(), "1".into());
                    } else if i % 3 == 2 {
                        u.args.clear();
                    }
                    encode(&rig.key.sign(u))
                }
                "oversized" => {
                    let mut c = rig.key.sign(base);
                    c.run_id = "x".repeat(20_000);
                    encode(&c)
                }
                "shell_metacharacters" => {
                    let (action, arg) = if i % 2 == 0 {
                        ("append", "word")
                    } else {
                        ("promote", "role")
                    };
                    encode(&rig.key.sign(rig.command(
                        &id,
                        action,
                        &[(arg, SHELL[i % SHELL.len()])],
                    )))
                }
                other => unreachable!("{other}"),
            };
            payloads.push(payload);
            *expected.entry(reason).or_default() += 1;
        }
    }
    let total = payloads.len();
    assert!(total >= 10_000);
    // Pipelined: queue every publish, then read the answers.
    let client = rig.client.client.clone();
    let sender = tokio::spawn(async move {
        for p in payloads {
            client
                .publish(CMD, QoS::AtLeastOnce, false, p)
                .await
                .expect("queue publish");
        }
    });
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut answered = 0;
    while answered < total {
        assert!(
            Instant::now() < deadline,
            "{answered} of {total} answered; by reason {got:?}"
        );
        let ack = rig.ack(Duration::from_secs(30)).await;
        match &ack.answer {
            Answer::Refused { reason, .. } => {
                *got.entry(reason.as_str().to_owned()).or_default() += 1;
                answered += 1;
            }
            Answer::Outcome(o) => panic!("a hostile command produced an outcome: {o:?} {ack:?}"),
        }
    }
    sender.await.unwrap();
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    assert_eq!(got, want);
    assert_eq!(line_count(&rig.lines), 1, "a hostile command ran");
    let h = rig.health_commands().await;
    let counted: HashMap<String, u64> = serde_json::from_value(h["refused"].clone()).unwrap();
    for (reason, n) in &want {
        assert_eq!(counted[reason], *n, "/health refused.{reason}: {h}");
    }
    assert_eq!(h["refused_total"], total as u64, "{h}");
    assert_eq!(h["executed"], 1, "{h}");
    assert_eq!(h["refusal_acks_suppressed"], 0, "{h}");
    eprintln!(
        "commands: {total} hostile commands refused in {:.1} s: {got:?}",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn keys_generate_writes_a_private_0600_key_prints_the_agent_line_and_never_overwrites_silently() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("command.key");
    let run = |force: bool| {
        let mut cmd = std::process::Command::new(watchstand_tests::bin("watchstand-collector"));
        cmd.args(["keys", "generate", "--out"]).arg(&out);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let first = run(false);
    assert!(first.status.success(), "{first:?}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = CommandKey::load(&out).unwrap();
    let stdout = String::from_utf8(first.stdout).unwrap();
    let line = format!("public_key = \"{}\"", key.public().to_base64());
    assert!(
        stdout.contains("[commands]") && stdout.contains(&line),
        "{stdout}"
    );
    assert!(stdout.contains(key.public().key_id()), "{stdout}");

    let second = run(false);
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("exists; refusing to overwrite it (use --force"),
        "{stderr}"
    );
    assert_eq!(CommandKey::load(&out).unwrap().public(), key.public());

    assert!(run(true).status.success());
    assert_ne!(CommandKey::load(&out).unwrap().public(), key.public());
}
