//! Agent actions: the agent runs only what its own config declares, on signed commands from the
//! collector. Place in the flow: broker → mqtt (`cmd` topic) → **actions** (verify, journal, run)
//! → ack sender → broker (`cmd/ack`).
//!
//! # Which commands run
//! Without `[commands]` the agent does not subscribe to its `cmd` topic at all. With `[commands]`
//! but no `[[actions]]` it answers every command with `no_actions`. Otherwise, in this order
//! (the first failure is the answer, see `RefusalReason`): the stateless checks of
//! [`Verifier::verify_signed`] (size, shape, key, signature, target agent); the journal (a
//! command id already run is answered with its stored outcome, never run again; the same id
//! with a different signature is `replayed`); expiry with the clock skew; the nonce (`replayed`
//! when seen before — durably, see [`journal`]); the action (`undeclared_action`); its
//! arguments (`argument_refused`); room to run (`busy`, at most [`MAX_WAITING`] accepted and not
//! finished). Then the nonce and a `started` journal entry are flushed to disk, and only then
//! does the action run.
//!
//! # Answers
//! Every answer goes out on `cmd/ack` (QoS 1) through a separate [`AckSender`] task with a
//! bounded queue: this task never waits on the MQTT driver (the driver may be waiting for this
//! task to take the next incoming message, the circular wait that `shared::mqtt::inbox`
//! describes). Refusals are logged and counted by reason; at most
//! `refusal_acks_per_second` of them are answered (see [`limiter`]). Outcomes are durable in the
//! journal before they are published, re-published after each reconnect for
//! [`REPUBLISH_WINDOW`], and answered again whenever the collector re-sends the command; that
//! re-send is the collector's end-to-end guarantee (see ARCHITECTURE.md, "Commands").

pub mod args;
pub mod config;
pub mod exec;
pub mod http;
pub mod journal;
pub mod limiter;
pub mod stats;
pub mod template;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use watchstand_shared::command::{Refusal, RefusalReason, VerifiedCommand, Verifier};
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{encode, Answer, CmdAck, CommandOutcome, CommandRef, VERSION};

pub use config::{Action, ActionKind, CommandSettings};
pub use journal::{EntryState, Journal, JournalEntry};
pub use stats::{CommandStats, CommandStatsView};

use crate::events;
use crate::mqtt::LinkState;
use limiter::RefusalLimiter;

/// Actions running at once.
pub const MAX_RUNNING: usize = 4;
/// Commands accepted and not finished (running or waiting to run); more are `busy`.
pub const MAX_WAITING: usize = 64;
/// Acks queued for the broker; beyond it they are dropped and counted.
pub const ACK_QUEUE: usize = 16_384;
/// After a reconnect, outcomes recorded this recently are published again.
pub const REPUBLISH_WINDOW: Duration = Duration::from_secs(600);
/// How often nonces and old outcomes are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Who answers: site, agent, boot, and the per-boot ack seq.
#[derive(Debug)]
struct Answerer {
    site: String,
    agent: String,
    boot: String,
    seq: u64,
    acks: mpsc::Sender<Vec<u8>>,
    stats: Arc<CommandStats>,
}

impl Answerer {
    fn send(&mut self, command: Option<CommandRef>, from_journal: bool, answer: Answer) {
        self.seq += 1;
        let ack = CmdAck {
            v: VERSION,
            site: self.site.clone(),
            agent: self.agent.clone(),
            boot: self.boot.clone(),
            seq: self.seq,
            at_ms: now_ms(),
            command,
            from_journal,
            answer,
        };
        if self.acks.try_send(encode(&ack)).is_err() {
            self.stats.dropped();
        }
    }
}

/// The task that verifies and runs commands.
#[derive(Debug)]
pub struct CommandsTask {
    settings: CommandSettings,
    verifier: Verifier,
    journal: Journal,
    answerer: Answerer,
    limiter: RefusalLimiter,
    link: watch::Receiver<LinkState>,
    http: reqwest::Client,
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// Entries left `started` by an earlier process, now `interrupted`: answered once connected.
    interrupted: Vec<JournalEntry>,
}

/// Everything [`CommandsTask::new`] needs.
#[derive(Debug)]
pub struct CommandsSetup {
    /// Validated `[commands]` and `[[actions]]`.
    pub settings: CommandSettings,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// This start's boot id.
    pub boot: String,
    /// The opened journal and the entries it found interrupted.
    pub journal: (Journal, Vec<JournalEntry>),
    /// The connection state (a new epoch re-publishes recent outcomes).
    pub link: watch::Receiver<LinkState>,
    /// Counters shown in `/health`.
    pub stats: Arc<CommandStats>,
    /// The ack sender's queue.
    pub acks: mpsc::Sender<Vec<u8>>,
}

impl CommandsTask {
    /// A task for the given setup.
    pub fn new(setup: CommandsSetup) -> Self {
        let skew_ms = u64::try_from(setup.settings.clock_skew.as_millis()).unwrap_or(u64::MAX);
        let verifier = Verifier::new(
            setup.settings.public_key.clone(),
            &setup.site,
            &setup.agent,
            skew_ms,
        );
        let limiter = RefusalLimiter::new(setup.settings.refusal_acks_per_second);
        Self {
            settings: setup.settings,
            verifier,
            journal: setup.journal.0,
            interrupted: setup.journal.1,
            answerer: Answerer {
                site: setup.site,
                agent: setup.agent,
                boot: setup.boot,
                seq: 0,
                acks: setup.acks,
                stats: setup.stats,
            },
            limiter,
            link: setup.link,
            http: reqwest::Client::new(),
            running: Arc::new(Semaphore::new(MAX_RUNNING)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs until `shutdown`: takes commands from `commands` (the payloads received on the
    /// `cmd` topic). Actions still running at shutdown are killed with the process; their
    /// journal entries become `interrupted` at the next start.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<JournalEntry>();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut epoch = 0;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(entry) = done_rx.recv() => self.answer_entry(entry, false),
                Some(payload) = commands.recv() => self.on_command(&payload, &done_tx).await,
                Ok(()) = self.link.changed() => {
                    let state = *self.link.borrow_and_update();
                    if state.connected && state.epoch != epoch {
                        epoch = state.epoch;
                        self.republish();
                    }
                }
                _ = prune.tick() => {
                    let journal = self.journal.clone();
                    let pruned = tokio::task::spawn_blocking(move || journal.prune(now_ms())).await;
                    match pruned {
                        Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "Command journal pruned."),
                        Ok(Err(e)) => events::StorageFailed { op: "prune command journal", error: &e }.emit(),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Publishes interrupted entries and recent outcomes again (after a (re)connect).
    fn republish(&mut self) {
        for entry in std::mem::take(&mut self.interrupted) {
            self.answer_entry(entry, true);
        }
        let since = now_ms()
            .saturating_sub(u64::try_from(REPUBLISH_WINDOW.as_millis()).unwrap_or(u64::MAX));
        match self.journal.finished_since(since) {
            Ok(entries) => {
                for entry in entries {
                    self.answer_entry(entry, true);
                }
            }
            Err(e) => events::StorageFailed {
                op: "read command journal",
                error: &e,
            }
            .emit(),
        }
    }

    fn answer_entry(&mut self, entry: JournalEntry, from_journal: bool) {
        if let EntryState::Finished { outcome, .. } = entry.state {
            self.answerer
                .send(Some(entry.command), from_journal, Answer::Outcome(outcome));
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.answerer.stats.refused(refusal.reason);
        events::CommandRefused { refusal: &refusal }.emit();
        if self.limiter.allow() {
            self.answerer.send(
                refusal.command,
                false,
                Answer::Refused {
                    reason: refusal.reason,
                    detail: refusal.detail,
                },
            );
        } else {
            self.answerer.stats.suppressed();
        }
    }

    async fn on_command(&mut self, payload: &[u8], done: &mpsc::UnboundedSender<JournalEntry>) {
        if self.settings.actions.is_empty() {
            return self.refuse(Refusal::new(
                RefusalReason::NoActions,
                "this agent declares no [[actions]]",
                None,
            ));
        }
        let command = match self.verifier.verify_signed(payload) {
            Ok(c) => c,
            Err(r) => return self.refuse(r),
        };
        let reference = command.reference();
        let store_failed = |e: &dyn std::fmt::Display| {
            Refusal::new(
                RefusalReason::StoreFailed,
                format!("command journal: {e}"),
                Some(reference.clone()),
            )
        };
        match self.journal.get(&command.command.command_id) {
            Err(e) => return self.refuse(store_failed(&e)),
            Ok(Some(entry)) if entry.signature == command.command.signature => {
                // Already run (or running): never again. A running one is answered when done.
                if matches!(entry.state, EntryState::Finished { .. }) {
                    self.answerer.stats.from_journal();
                    tracing::info!(command_id = %entry.command.command_id, "Command re-sent; answered from the journal, not run again.");
                    self.answer_entry(entry, true);
                }
                return;
            }
            Ok(Some(_)) => {
                return self.refuse(Refusal::new(
                    RefusalReason::Replayed,
                    format!(
                        "command id {} was already used by a different command",
                        command.command.command_id
                    ),
                    Some(reference),
                ))
            }
            Ok(None) => {}
        }
        let now = now_ms();
        if let Err(r) = self.verifier.check_time(&command, now) {
            return self.refuse(r);
        }
        match self.journal.nonce_seen(&command.nonce) {
            Err(e) => return self.refuse(store_failed(&e)),
            Ok(true) => {
                return self.refuse(Refusal::new(
                    RefusalReason::Replayed,
                    format!("nonce {} was already used", command.command.nonce),
                    Some(reference),
                ))
            }
            Ok(false) => {}
        }
        let Some(action) = self.settings.actions.get(&command.command.action).cloned() else {
            return self.refuse(Refusal::new(
                RefusalReason::UndeclaredAction,
                format!(
                    "action {:?} is not declared in this agent's config",
                    command.command.action
                ),
                Some(reference),
            ));
        };
        if let Err(detail) = args::check(&action.id, &action.args, &command.command.args) {
            return self.refuse(Refusal::new(
                RefusalReason::ArgumentRefused,
                detail,
                Some(reference),
            ));
        }
        if self.waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            return self.refuse(Refusal::new(
                RefusalReason::Busy,
                format!("{MAX_WAITING} commands are already accepted and not finished"),
                Some(reference),
            ));
        }
        let forget_after = command
            .command
            .expires_ms
            .saturating_add(self.verifier.skew_ms());
        let journal = self.journal.clone();
        let begin = {
            let command = command.clone();
            tokio::task::spawn_blocking(move || journal.begin(&command, forget_after, now)).await
        };
        match begin {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.refuse(store_failed(&e)),
            Err(e) => return self.refuse(store_failed(&e)),
        }
        self.answerer.stats.executed();
        events::CommandAccepted {
            command: &command.command,
        }
        .emit();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(execute(
            action,
            command,
            self.http.clone(),
            self.running.clone(),
            self.waiting.clone(),
            self.journal.clone(),
            done.clone(),
        ));
    }
}

/// Runs one accepted command and records its outcome.
async fn execute(
    action: Action,
    command: VerifiedCommand,
    http: reqwest::Client,
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    journal: Journal,
    done: mpsc::UnboundedSender<JournalEntry>,
) {
    let outcome: CommandOutcome = {
        // The semaphore is never closed; a failed acquire runs without the bound.
        let _permit = running.acquire().await;
        let args = &command.command.args;
        match &action.kind {
            ActionKind::Exec { argv } => exec::run(argv, args, action.timeout).await,
            ActionKind::Http { method, url } => {
                http::run(&http, method, url, args, action.timeout).await
            }
        }
    };
    events::CommandFinished {
        command_id: &command.command.command_id,
        action: &action.id,
        outcome: &outcome,
    }
    .emit();
    let entry = JournalEntry {
        command: command.reference(),
        signature: command.command.signature.clone(),
        state: EntryState::Finished {
            outcome,
            finished_ms: now_ms(),
        },
    };
    let stored = {
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || journal.finish(&entry)).await
    };
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => events::StorageFailed {
            op: "record command outcome",
            error: &e,
        }
        .emit(),
        Err(e) => tracing::warn!(error = %e, "Command outcome task failed."),
    }
    waiting.fetch_sub(1, Ordering::Relaxed);
    // The receiver is gone only at shutdown; the journal has the outcome.
    let _gone = done.send(entry).is_err();
}

/// Publishes queued acks on `cmd/ack`. It may wait on the MQTT client; nothing waits on it.
#[derive(Debug)]
pub struct AckSender {
    client: AsyncClient,
    topic: String,
}

impl AckSender {
    /// A sender publishing on `topic`.
    pub fn new(client: AsyncClient, topic: String) -> Self {
        Self { client, topic }
    }

    /// Runs until `shutdown` or until every queue sender is gone.
    pub async fn run(self, mut acks: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
        loop {
            let payload = tokio::select! {
                () = shutdown.cancelled() => return,
                p = acks.recv() => match p { Some(p) => p, None => return },
            };
            let sent = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.client.publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload) => r,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, topic = %self.topic, "Command ack not queued.");
            }
        }
    }
}

#[cfg(test)]
mod tests;
