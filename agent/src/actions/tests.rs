//! The commands task on its own: real exec actions, the journal on a storage that can fail, acks
//! read from its queue. Each stateful refusal reason and the run-once rule, without a broker.

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use watchstand_shared::command::{new_nonce, CommandKey, UnsignedCommand};
use watchstand_shared::storage::Storage;
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{encode, Answer, CmdAck, OutcomeStatus};

use super::*;
use crate::testutil::FullableStorage;

struct Harness {
    key: CommandKey,
    commands: mpsc::Sender<Vec<u8>>,
    acks: mpsc::Receiver<Vec<u8>>,
    stats: Arc<CommandStats>,
    stop: CancellationToken,
}

fn start(actions: &str, storage: &FullableStorage) -> Harness {
    let key = CommandKey::from_seed([9; 32]);
    let text = format!(
        "[agent]\nsite = \"lab\"\nid = \"db-2\"\ndata_dir = \"x\"\n[commands]\npublic_key = \"{}\"\n{actions}",
        key.public().to_base64()
    );
    let config = crate::config::from_str(&text, Path::new("agent.toml")).unwrap();
    let settings = config.commands.unwrap();
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let journal = Journal::open(storage, now_ms()).unwrap();
    let (ack_tx, acks) = mpsc::channel(100);
    let (cmd_tx, cmd_rx) = mpsc::channel(10);
    let stats = Arc::new(CommandStats::new(settings.actions.len()));
    let task = CommandsTask::new(CommandsSetup {
        settings,
        site: "lab".into(),
        agent: "db-2".into(),
        boot: "b".into(),
        journal,
        link: watch::channel(LinkState::default()).1,
        stats: stats.clone(),
        acks: ack_tx,
    });
    let stop = CancellationToken::new();
    tokio::spawn(task.run(cmd_rx, stop.clone()));
    Harness {
        key,
        commands: cmd_tx,
        acks,
        stats,
        stop,
    }
}

impl Harness {
    fn unsigned(&self, id: &str, action: &str, word: &str) -> UnsignedCommand {
        let now = now_ms();
        UnsignedCommand {
            site: "lab".into(),
            agent: "db-2".into(),
            command_id: id.into(),
            run_id: "r".into(),
            step: 0,
            action: action.into(),
            args: [("word".to_owned(), word.to_owned())].into(),
            issued_ms: now,
            expires_ms: now + 60_000,
            nonce: new_nonce(),
        }
    }

    async fn send(&mut self, command: UnsignedCommand) -> CmdAck {
        self.commands
            .send(encode(&self.key.sign(command)))
            .await
            .unwrap();
        self.next().await
    }

    async fn next(&mut self) -> CmdAck {
        let bytes = tokio::time::timeout(Duration::from_secs(20), self.acks.recv())
            .await
            .expect("an ack within 20 s")
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

fn reason(ack: &CmdAck) -> &'static str {
    match &ack.answer {
        Answer::Refused { reason, .. } => reason.as_str(),
        Answer::Outcome(o) => panic!("ran: {o:?}"),
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test]
async fn a_command_runs_once_and_every_stateful_refusal_has_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let storage = FullableStorage::default();
    let mut h = start(
        &format!(
            "[[actions]]\nid = \"append\"\nkind = \"exec\"\nargv = [\"/bin/sh\", \"-c\", \"echo \\\"$1\\\" >> {}\", \"x\", \"{{word}}\"]\ntimeout = \"5s\"\n[actions.args.word]\nregex = \"[a-z]+\"\n",
            file.display()
        ),
        &storage,
    );
    let first = h.unsigned("c1", "append", "one");
    let ack = h.send(first.clone()).await;
    match &ack.answer {
        Answer::Outcome(o) => assert_eq!(
            (o.status, ack.from_journal),
            (OutcomeStatus::Succeeded, false)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(lines(&file), 1);

    // The same command: from the journal. Same id, other content: replayed. Same nonce: replayed.
    let again = h.send(first.clone()).await;
    assert!(again.from_journal);
    assert_eq!(again.answer, ack.answer);
    let other_content = UnsignedCommand {
        args: [("word".to_owned(), "two".to_owned())].into(),
        ..first.clone()
    };
    assert_eq!(reason(&h.send(other_content).await), "replayed");
    let same_nonce = UnsignedCommand {
        nonce: first.nonce.clone(),
        ..h.unsigned("c2", "append", "two")
    };
    assert_eq!(reason(&h.send(same_nonce).await), "replayed");
    assert_eq!(
        reason(&h.send(h.unsigned("c3", "reboot", "x")).await),
        "undeclared_action"
    );
    assert_eq!(
        reason(&h.send(h.unsigned("c4", "append", "$(id)")).await),
        "argument_refused"
    );

    // The disk is full: the nonce cannot be made durable, so the command does not run.
    storage.set_full(true);
    assert_eq!(
        reason(&h.send(h.unsigned("c5", "append", "five")).await),
        "store_failed"
    );
    assert_eq!(lines(&file), 1);

    let v = h.stats.view();
    assert_eq!(
        (v.executed, v.answered_from_journal, v.refused_total),
        (1, 1, 5)
    );
    assert_eq!(v.refused["replayed"], 2);
    h.stop.cancel();
}

#[tokio::test]
async fn with_commands_but_no_actions_every_command_is_refused() {
    let mut h = start("", &FullableStorage::default());
    assert_eq!(
        reason(&h.send(h.unsigned("c1", "append", "x")).await),
        "no_actions"
    );
    h.commands.send(b"garbage".to_vec()).await.unwrap();
    assert_eq!(reason(&h.next().await), "no_actions");
    assert_eq!(h.stats.view().refused["no_actions"], 2);
}

#[tokio::test]
async fn a_started_command_left_by_a_crash_is_answered_interrupted_and_never_run() {
    let storage = FullableStorage::default();
    let key = CommandKey::from_seed([9; 32]);
    let now = now_ms();
    let c = key.sign(UnsignedCommand {
        site: "lab".into(),
        agent: "db-2".into(),
        command_id: "c1".into(),
        run_id: "r".into(),
        step: 0,
        action: "append".into(),
        args: [("word".to_owned(), "x".to_owned())].into(),
        issued_ms: now,
        expires_ms: now + 60_000,
        nonce: new_nonce(),
    });
    let verified = watchstand_shared::command::Verifier::new(key.public(), "lab", "db-2", 0)
        .verify(&encode(&c), now)
        .unwrap();
    {
        let s: Arc<dyn Storage> = Arc::new(storage.clone());
        let (j, _) = Journal::open(s, now).unwrap();
        j.begin(&verified, now + 60_000, now).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let mut h = start(
        &format!(
            "[[actions]]\nid = \"append\"\nkind = \"exec\"\nargv = [\"/bin/sh\", \"-c\", \"echo x >> {}\", \"{{word}}\"]\ntimeout = \"5s\"\n[actions.args.word]\nregex = \"[a-z]+\"\n",
            file.display()
        ),
        &storage,
    );
    h.commands.send(encode(&c)).await.unwrap();
    let ack = h.next().await;
    assert!(ack.from_journal);
    match ack.answer {
        Answer::Outcome(o) => assert_eq!(o.status, OutcomeStatus::Interrupted),
        other => panic!("{other:?}"),
    }
    assert_eq!(lines(&file), 0);
}
