//! The engine task's runbook state: the runs in progress, each current attempt's deadline, the
//! executor task of each attempt that has one, and incident triggers waiting for their `after`.
//!
//! - **One run per runbook.** A trigger (incident or operator) while a run of the runbook is in
//!   progress is recorded as a run with status `skipped` and the reason.
//! - **Stored before it is done.** Every change of a run is committed (with its incident
//!   timeline event and its webhook notifications, in one batch through the incident engine)
//!   before its effects are carried out: an executor is spawned only for an attempt already on
//!   record. `notify` steps queue their notification in the same batch as their outcome, so a
//!   crash can neither lose nor repeat one.
//! - **Deadlines** are epoch-ms values in a map the task sleeps on (no per-step sleeping task).
//!   A deadline that passes ends the attempt `timed_out` and aborts its executor.
//! - **Incident triggers** are re-derived, not stored: when the engine sees an active incident
//!   it has not looked at yet (every active incident after a restart), each runbook whose
//!   `on_incident` matches and that has no run for that incident yet gets a trigger due at the
//!   incident's detection + `after`; when due, the run starts if the incident is still active.
//! - **Agent actions.** An `agent_action` attempt's command is signed and stored with the
//!   attempt (same batch) before it is sent; its executor re-sends that same command until the
//!   agent's answer (an `EngineEvent::CommandAnswer` from ingest), the deadline or a cancel.
//! - **Restart.** Runs stored as running continue: approvals, `wait_for` and `rpo_check` (it
//!   only reads) are re-armed with their stored deadlines; an `agent_action` whose command was stored is re-armed and the
//!   stored command re-sent (the agent answers a command id it already ran from its journal,
//!   never running it twice); an `http` or `exec` attempt that was in progress is not run again
//!   blindly: it ends `failed` ([`exec::RESTARTED`]) and the step's retry policy decides.
//! - **Drills page nobody.** The webhook notices of a drill's runs (started, `notify` steps,
//!   finished) are not queued unless the drill has `notify = true`; then they carry `drill`
//!   (the drill run id), as the drill's incidents do. A held `notify` step still succeeds, its
//!   outcome saying it was held.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use watchstand_shared::time::now_ms;

use super::event::{EngineEvent, RunbookAction, RunbookError};
use super::Task;
use crate::runbook::agent_action::{self, CommandLink};
use crate::runbook::run::{Effect, Outcome, Run, RunStatus, Stale, Trigger};
use crate::runbook::store::RunStore;
use crate::runbook::{exec, rpo};
use crate::runbook::{Runbook, StepAction};
use crate::store::{Store, StoreBatch};

/// A timeline event for an incident: (incident id, event, detail).
type Note = (u64, String, String);
/// A webhook notification: (receiver or every one, event, body).
type Notice = (Option<String>, String, serde_json::Value);

/// The webhook body of a run event (`runbook_started`, `runbook_finished`, `runbook_skipped`,
/// `runbook_notify`).
#[derive(Debug, Serialize)]
struct RunNotice<'a> {
    event: &'a str,
    run: RunSummary<'a>,
    /// The `notify` step's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// The drill run this run belongs to (`null` outside drills): a receiver tells a drill's
    /// notices (sent only when the drill has `notify = true`) from real ones.
    drill: Option<u64>,
    sent_ms: u64,
}

#[derive(Debug, Serialize)]
struct RunSummary<'a> {
    id: u64,
    runbook: &'a str,
    service: &'a str,
    status: RunStatus,
    trigger: &'a Trigger,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn notice(
    event: &str,
    run: &Run,
    receiver: Option<String>,
    message: Option<&str>,
    now: u64,
) -> Notice {
    let body = RunNotice {
        event,
        run: RunSummary {
            id: run.id,
            runbook: &run.runbook,
            service: &run.service,
            status: run.status,
            trigger: &run.trigger,
            reason: run.reason.as_deref(),
        },
        message,
        drill: match run.trigger {
            Trigger::Drill { drill_run } => Some(drill_run),
            _ => None,
        },
        sent_ms: now,
    };
    (
        receiver,
        event.to_owned(),
        serde_json::to_value(&body).unwrap_or_default(),
    )
}

/// The runbook part of the engine task's state.
pub(super) struct Runbooks {
    books: BTreeMap<String, Arc<Runbook>>,
    store: RunStore,
    /// Runs in progress, by id.
    runs: BTreeMap<u64, Run>,
    next_id: u64,
    /// Per run in progress: its current attempt (step, attempt) and deadline, epoch ms.
    deadlines: BTreeMap<u64, (usize, u32, u64)>,
    /// Per run: the executor task of its current attempt.
    executors: HashMap<u64, tokio::task::AbortHandle>,
    /// Incident triggers waiting for `after`: (runbook, incident) → due, epoch ms.
    pending: BTreeMap<(String, u64), u64>,
    /// (runbook, incident) pairs that already have a run (started or skipped).
    triggered: HashSet<(String, u64)>,
    /// Active incidents already looked at for triggers.
    seen: HashSet<u64>,
    http: reqwest::Client,
    /// Executors send their outcomes here (weak: the queue closes when every handle is gone).
    events: mpsc::WeakSender<EngineEvent>,
    /// Runs stored as running when the task started, to resume.
    resume: Vec<u64>,
    /// Signs and sends `agent_action` commands (none: such attempts fail, see
    /// [`agent_action::NO_KEY`]).
    pub(super) commands: Option<CommandLink>,
    /// Ended runs and their steps, for `/metrics`.
    ended: super::snapshot::RunbookCounts,
}

impl std::fmt::Debug for Runbooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runbooks")
            .field("books", &self.books.len())
            .field("running", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl Runbooks {
    /// The runbooks of the config and the runs stored in `store`.
    ///
    /// # Errors
    /// Store failure.
    pub(super) fn load(
        books: &[Runbook],
        store: &Store,
        events: mpsc::WeakSender<EngineEvent>,
    ) -> Result<Self, crate::store::StoreError> {
        let runs_store = RunStore::new(store.clone());
        let mut runs = BTreeMap::new();
        let mut triggered = HashSet::new();
        let mut ended = super::snapshot::RunbookCounts::default();
        for run in runs_store.all()? {
            if run.status.is_final() {
                ended.ended(&run);
            }
            if let Trigger::Incident { incident } = run.trigger {
                triggered.insert((run.runbook.clone(), incident));
            }
            if run.status == RunStatus::Running {
                runs.insert(run.id, run);
            }
        }
        let http = reqwest::Client::builder()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Ok(Self {
            books: books
                .iter()
                .flat_map(Runbook::engine_books)
                .map(|b| (b.id.clone(), Arc::new(b)))
                .collect(),
            next_id: runs_store.next_id()?,
            store: runs_store,
            resume: runs.keys().copied().collect(),
            runs,
            deadlines: BTreeMap::new(),
            executors: HashMap::new(),
            pending: BTreeMap::new(),
            triggered,
            seen: HashSet::new(),
            http,
            events,
            commands: None,
            ended,
        })
    }

    /// The counts for `/metrics`: ended runs and steps, runs in progress.
    pub(super) fn counts(&self) -> super::snapshot::RunbookCounts {
        let mut counts = self.ended.clone();
        for run in self.runs.values() {
            *counts.running.entry(run.runbook.clone()).or_default() += 1;
        }
        counts
    }

    /// The book the engine runs under `id` (a runbook, or its drill / restore book).
    pub(super) fn book(&self, id: &str) -> Option<Arc<Runbook>> {
        self.books.get(id).cloned()
    }

    /// When the task must wake next for a deadline or a trigger, epoch ms.
    pub(super) fn next_due(&self) -> Option<u64> {
        let deadlines = self.deadlines.values().map(|(_, _, d)| *d);
        deadlines.chain(self.pending.values().copied()).min()
    }
}

impl Task {
    /// Resumes the runs stored as running (once, when the task starts).
    pub(super) async fn resume_runs(&mut self) {
        let now = now_ms();
        for id in std::mem::take(&mut self.runbooks.resume) {
            let Some(run) = self.runbooks.runs.get(&id).cloned() else {
                continue;
            };
            let book = self.runbooks.books.get(&run.runbook).cloned();
            let same_steps = book.as_ref().is_some_and(|b| {
                b.steps.len() == run.steps.len()
                    && b.steps
                        .iter()
                        .zip(&run.steps)
                        .all(|(a, r)| a.id == r.id && a.action.kind() == r.kind)
            });
            let Some(book) = book.filter(|_| same_steps) else {
                // Its runbook left the config or its steps changed: nothing can carry it on.
                let mut run = run;
                if let Ok(fx) = run.cancel(
                    "collector (runbook removed or changed since the run started)",
                    now,
                ) {
                    if let Err(e) = self.drive(run, fx, Vec::new(), Vec::new()).await {
                        tracing::error!(run = id, error = %e, "Cannot end a run of a runbook no longer configured.");
                    }
                }
                continue;
            };
            let Some((step, attempt)) = run.current().map(|(s, a)| (s, a.clone())) else {
                continue;
            };
            tracing::info!(run = id, runbook = %run.runbook, step = %run.steps[step].id, "Resuming a runbook run after a restart.");
            let stored_command = attempt.command.is_some();
            match &book.steps[step].action {
                StepAction::AgentAction { .. } if stored_command => {
                    // Sent before the crash, maybe run: the same command goes out again and
                    // the agent answers it (from its journal if it already ran it).
                    tracing::info!(run = id, command_id = ?attempt.command_id, "Re-sending the stored command of an unanswered agent action.");
                    self.runbooks
                        .deadlines
                        .insert(id, (step, attempt.n, attempt.deadline_ms));
                    self.spawn_executor(&run, &book, step, attempt.n, attempt.deadline_ms);
                }
                StepAction::Approval { .. }
                | StepAction::WaitFor { .. }
                | StepAction::RpoCheck { .. } => {
                    // Re-armed with the stored deadline (a passed one fires at once); an
                    // `rpo_check` only reads, so it reads again.
                    self.runbooks
                        .deadlines
                        .insert(id, (step, attempt.n, attempt.deadline_ms));
                    self.spawn_executor(&run, &book, step, attempt.n, attempt.deadline_ms);
                }
                StepAction::Http { .. }
                | StepAction::Exec { .. }
                | StepAction::Notify { .. }
                | StepAction::AgentAction { .. } => {
                    let mut run = run;
                    let outcome = Outcome::Failed {
                        reason: exec::RESTARTED.to_owned(),
                    };
                    match run.record(&book, step, attempt.n, outcome, now) {
                        Ok(fx) => {
                            if let Err(e) = self.drive(run, fx, Vec::new(), Vec::new()).await {
                                tracing::error!(run = id, error = %e, "Cannot resume a run.");
                            }
                        }
                        Err(e) => tracing::warn!(run = id, error = %e, "Resume: stale attempt."),
                    }
                }
            }
        }
    }

    /// Looks at active incidents not seen yet: each matching runbook without a run for that
    /// incident gets a trigger due at detection + `after`. A drill incident triggers nothing:
    /// the drill's own runbook run is the recovery under test, and a second (incident) run of
    /// the same plan would act on the service beside it and muddle what the drill measures.
    pub(super) fn look_for_triggers(&mut self) {
        let Some(engine) = &self.engine else {
            return;
        };
        let rb = &mut self.runbooks;
        let active: HashSet<u64> = engine.active().map(|i| i.id).collect();
        rb.seen.retain(|id| active.contains(id));
        for incident in engine.active() {
            if !rb.seen.insert(incident.id) {
                continue;
            }
            if let Some(drill) = incident.drill {
                tracing::info!(
                    incident = incident.id,
                    drill_run = drill,
                    "A drill incident triggers no incident runbook."
                );
                continue;
            }
            for book in rb.books.values() {
                let Some(t) = &book.on_incident else {
                    continue;
                };
                let key = (book.id.clone(), incident.id);
                if book.service != incident.service
                    || !t.matches(&incident.rule.key_part(), incident.priority)
                    || rb.triggered.contains(&key)
                {
                    continue;
                }
                let due = incident.detected_ms.saturating_add(t.after_ms);
                tracing::info!(runbook = %book.id, incident = incident.id, due_ms = due, "Incident triggers a runbook.");
                rb.pending.insert(key, due);
            }
        }
    }

    /// Deadlines and triggers that are due.
    pub(super) async fn runbook_timer(&mut self) {
        let now = now_ms();
        let due: Vec<(u64, usize, u32)> = self
            .runbooks
            .deadlines
            .iter()
            .filter(|(_, (_, _, d))| *d <= now)
            .map(|(run, (s, a, _))| (*run, *s, *a))
            .collect();
        for (run, step, attempt) in due {
            self.runbooks.deadlines.remove(&run);
            self.step_done(run, step, attempt, Outcome::TimedOut).await;
        }
        let triggers: Vec<(String, u64)> = self
            .runbooks
            .pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for (runbook, incident) in triggers {
            self.runbooks.pending.remove(&(runbook.clone(), incident));
            let still = self
                .engine
                .as_ref()
                .is_some_and(|e| e.active().any(|i| i.id == incident));
            if !still {
                tracing::info!(runbook = %runbook, incident, "Incident no longer active when its runbook trigger came due; no run.");
                continue;
            }
            if let Err(e) = self
                .start_run(&runbook, Trigger::Incident { incident })
                .await
            {
                tracing::error!(runbook = %runbook, incident, error = %e, "Cannot start a runbook run.");
            }
        }
    }

    /// An operator's runbook action.
    pub(super) async fn runbook_action(&mut self, action: RunbookAction) {
        let (reply, outcome) = match action {
            RunbookAction::Start { runbook, by, reply } => {
                let manual = self.runbooks.books.get(&runbook).map(|b| b.manual);
                let outcome = match manual {
                    None => Err(RunbookError::UnknownRunbook(runbook)),
                    Some(false) => Err(RunbookError::NotManual(runbook)),
                    Some(true) => self.start_run(&runbook, Trigger::Manual { by }).await,
                };
                (reply, outcome)
            }
            RunbookAction::Decide {
                run,
                approve,
                by,
                role,
                reply,
            } => (reply, self.decide(run, approve, &by, role).await),
            RunbookAction::Cancel { run, by, reply } => (reply, self.cancel(run, &by).await),
        };
        if reply.send(outcome).is_err() {
            tracing::debug!("Runbook action done after its request was dropped.");
        }
    }

    /// The outcome of attempt `attempt` of step `step` of run `run` (an executor, a deadline).
    pub(super) async fn step_done(
        &mut self,
        run: u64,
        step: usize,
        attempt: u32,
        outcome: Outcome,
    ) {
        let Some(mut r) = self.runbooks.runs.get(&run).cloned() else {
            tracing::debug!(run, "Outcome for a run not in progress; ignored.");
            return;
        };
        let Some(book) = self.runbooks.books.get(&r.runbook).cloned() else {
            return;
        };
        match r.record(&book, step, attempt, outcome, now_ms()) {
            Ok(fx) => {
                if let Err(e) = self.drive(r, fx, Vec::new(), Vec::new()).await {
                    tracing::error!(run, error = %e, "Cannot record a step outcome.");
                }
            }
            Err(e) => tracing::debug!(run, error = %e, "Stale step outcome ignored."),
        }
    }

    /// An agent's answer on `cmd/ack`: the outcome of the attempt waiting for that command, if
    /// one is (a re-sent answer, or one for an attempt that already timed out, changes nothing).
    pub(super) async fn command_answer(&mut self, ack: watchstand_shared::wire::v1::CmdAck) {
        let Some(command_id) = ack.command.as_ref().map(|c| c.command_id.clone()) else {
            tracing::debug!(agent = %ack.agent, "Command answer without a command id (unreadable command); nothing waits on it.");
            return;
        };
        let waiting = self.runbooks.runs.values().find_map(|r| {
            r.awaiting(&command_id)
                .filter(|(_, a)| a.command.as_ref().is_some_and(|c| c.agent == ack.agent))
                .map(|(step, a)| (r.id, step, a.n))
        });
        let Some((run, step, attempt)) = waiting else {
            tracing::debug!(command_id = %command_id, agent = %ack.agent, "Answer for a command no attempt waits on (answered already, timed out or another collector's); ignored.");
            return;
        };
        let outcome = agent_action::outcome(&ack);
        tracing::info!(run, step, attempt, command_id = %command_id, agent = %ack.agent, from_journal = ack.from_journal, outcome = ?outcome, "Agent answered a runbook command.");
        self.step_done(run, step, attempt, outcome).await;
    }

    async fn stored_or_missing(&self, id: u64) -> RunbookError {
        let store = self.runbooks.store.clone();
        match tokio::task::spawn_blocking(move || store.get(id)).await {
            Ok(Ok(Some(r))) => RunbookError::Stale(Stale::RunOver(id, r.status.as_str())),
            Ok(Err(e)) => RunbookError::Store(e),
            _ => RunbookError::RunNotFound(id),
        }
    }

    async fn decide(
        &mut self,
        id: u64,
        approve: bool,
        by: &str,
        role: crate::auth::Role,
    ) -> Result<Run, RunbookError> {
        let Some(mut run) = self.runbooks.runs.get(&id).cloned() else {
            return Err(match self.stored_or_missing(id).await {
                RunbookError::Stale(_) => RunbookError::NotAwaitingApproval(id),
                e => e,
            });
        };
        let book = self
            .runbooks
            .books
            .get(&run.runbook)
            .cloned()
            .ok_or_else(|| RunbookError::UnknownRunbook(run.runbook.clone()))?;
        let Some((step, attempt)) = run.current().map(|(s, a)| (s, a.n)) else {
            return Err(RunbookError::NotAwaitingApproval(id));
        };
        let StepAction::Approval { role: need } = &book.steps[step].action else {
            return Err(RunbookError::NotAwaitingApproval(id));
        };
        if role < *need {
            return Err(RunbookError::RoleTooLow {
                who: by.to_owned(),
                have: role.as_str(),
                need: need.as_str(),
                step: book.steps[step].id.clone(),
            });
        }
        let outcome = if approve {
            Outcome::Succeeded {
                detail: format!("approved by {by}"),
            }
        } else {
            Outcome::Rejected { by: by.to_owned() }
        };
        tracing::info!(run = id, step = %book.steps[step].id, by, approve, "Runbook approval decided.");
        let fx = run.record(&book, step, attempt, outcome, now_ms())?;
        self.drive(run, fx, Vec::new(), Vec::new()).await
    }

    pub(super) async fn cancel(&mut self, id: u64, by: &str) -> Result<Run, RunbookError> {
        let Some(mut run) = self.runbooks.runs.get(&id).cloned() else {
            return Err(self.stored_or_missing(id).await);
        };
        let fx = run.cancel(by, now_ms())?;
        tracing::info!(run = id, by, "Runbook run cancelled.");
        self.drive(run, fx, Vec::new(), Vec::new()).await
    }

    /// Starts a run of `runbook` (or records a skipped one when a run of it is in progress).
    pub(super) async fn start_run(
        &mut self,
        runbook: &str,
        trigger: Trigger,
    ) -> Result<Run, RunbookError> {
        let book = self
            .runbooks
            .books
            .get(runbook)
            .cloned()
            .ok_or_else(|| RunbookError::UnknownRunbook(runbook.to_owned()))?;
        let now = now_ms();
        let id = self.runbooks.next_id;
        self.runbooks.next_id += 1;
        if let Trigger::Incident { incident } = trigger {
            self.runbooks.triggered.insert((book.id.clone(), incident));
        }
        let busy = self
            .runbooks
            .runs
            .values()
            .find(|r| r.runbook == book.id)
            .map(|r| r.id);
        let (run, fx, event) = match busy {
            Some(other) => {
                let reason = format!("run {other} of runbook {:?} is in progress", book.id);
                tracing::info!(run = id, runbook = %book.id, %reason, "Runbook trigger skipped.");
                (
                    Run::skipped(id, &book, trigger, reason, now),
                    Vec::new(),
                    "runbook_skipped",
                )
            }
            None => {
                tracing::info!(run = id, runbook = %book.id, trigger = ?trigger, "Runbook run started.");
                let (run, fx) = Run::start(id, &book, trigger, now);
                (run, fx, "runbook_started")
            }
        };
        let mut notes = Vec::new();
        if let Trigger::Incident { incident } = run.trigger {
            notes.push((
                incident,
                event.to_owned(),
                format!("run {} of runbook {:?}", run.id, run.runbook),
            ));
        }
        let notices = vec![notice(event, &run, None, None, now)];
        self.drive(run, fx, notes, notices).await
    }

    /// Applies `effects` of a change to `run`: folds in what the engine does itself (notify,
    /// signing an agent action's command), commits the run with `notes` and `notices`, then carries
    /// out the rest (deadlines, executors, the end of the run). Returns the run as stored.
    async fn drive(
        &mut self,
        mut run: Run,
        effects: Vec<Effect>,
        mut notes: Vec<Note>,
        mut notices: Vec<Notice>,
    ) -> Result<Run, RunbookError> {
        let book = self.runbooks.books.get(&run.runbook).cloned();
        let now = now_ms();
        // A drill's runs page nobody unless the drill has `notify = true` (then their notices
        // carry `drill`), like the drill's incidents.
        let held = match run.trigger {
            Trigger::Drill { drill_run } => !self.drills.notifies(drill_run),
            _ => false,
        };
        let mut queue: VecDeque<Effect> = effects.into();
        let mut carry = Vec::new();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Begin {
                    step,
                    attempt,
                    deadline_ms,
                } => {
                    let Some(book) = &book else { continue };
                    let immediate = match &book.steps[step].action {
                        StepAction::Notify { webhook, .. } if held => Some(Outcome::Succeeded {
                            detail: format!(
                                "held: not sent to webhook {webhook:?} (a drill without notify)"
                            ),
                        }),
                        StepAction::Notify { webhook, message } => {
                            notices.push(notice(
                                "runbook_notify",
                                &run,
                                Some(webhook.clone()),
                                Some(message),
                                now,
                            ));
                            Some(Outcome::Succeeded {
                                detail: format!("queued for webhook {webhook:?}"),
                            })
                        }
                        StepAction::AgentAction {
                            agent,
                            action,
                            args,
                        } => {
                            let site = self.deps.registry.get(agent).map(|r| r.site);
                            match (&self.runbooks.commands, site) {
                                (None, _) => Some(Outcome::Failed {
                                    reason: agent_action::NO_KEY.to_owned(),
                                }),
                                (Some(_), None) => Some(Outcome::Failed {
                                    reason: format!(
                                        "agent {agent:?} has never connected to this collector (its site is unknown)"
                                    ),
                                }),
                                (Some(link), Some(site)) => {
                                    let command = link.sign(
                                        (run.id, step, attempt),
                                        &site,
                                        agent,
                                        action,
                                        args,
                                        now,
                                        deadline_ms,
                                    );
                                    // Stored with the attempt below, before it is sent.
                                    match run.note_command(step, attempt, command) {
                                        Ok(()) => None,
                                        Err(e) => Some(Outcome::Failed {
                                            reason: e.to_string(),
                                        }),
                                    }
                                }
                            }
                        }
                        _ => None,
                    };
                    match immediate {
                        Some(outcome) => {
                            queue.extend(
                                run.record(book, step, attempt, outcome, now)
                                    .unwrap_or_default(),
                            );
                        }
                        None => carry.push(effect),
                    }
                }
                Effect::Finished(status) => {
                    tracing::info!(run = run.id, runbook = %run.runbook, status = status.as_str(), reason = ?run.reason, "Runbook run finished.");
                    if let Trigger::Incident { incident } = run.trigger {
                        notes.push((
                            incident,
                            "runbook_finished".to_owned(),
                            format!(
                                "run {} of runbook {:?} {}",
                                run.id,
                                run.runbook,
                                status.as_str()
                            ),
                        ));
                    }
                    notices.push(notice("runbook_finished", &run, None, None, now));
                    carry.push(effect);
                }
            }
        }
        if held && !notices.is_empty() {
            tracing::debug!(
                run = run.id,
                notices = notices.len(),
                "Drill run notices held (the drill does not notify)."
            );
            notices.clear();
        }
        // Stored before anything is carried out.
        let mut batch = StoreBatch::default();
        RunStore::put(&mut batch, &run, self.runbooks.next_id);
        let queued = self
            .with_engine(move |e| {
                let notes: Vec<(u64, &str, String)> = notes
                    .iter()
                    .map(|(i, ev, d)| (*i, ev.as_str(), d.clone()))
                    .collect();
                e.commit_runbook(batch, &notes, &notices, now)
            })
            .await;
        let failure = match queued {
            Some(Ok(n)) => {
                if n > 0 {
                    self.deps.notifier.wake();
                }
                None
            }
            Some(Err(e)) => {
                tracing::error!(run = run.id, error = %e, "Cannot store a runbook run; its attempt is not carried out (its deadline ends it).");
                Some(RunbookError::Store(e))
            }
            None => Some(RunbookError::EngineStopped),
        };
        let stored = failure.is_none();
        if stored && matches!(run.trigger, Trigger::Drill { .. }) {
            // The drill looks at it after the current event (it may start a restore run).
            self.drills.updates.push(run.clone());
        }
        let id = run.id;
        if let Some(h) = self.runbooks.executors.remove(&id) {
            h.abort();
        }
        self.runbooks.deadlines.remove(&id);
        if run.status.is_final() {
            // Counted once: only runs in progress and new ones are driven, so a final run
            // here has just ended.
            self.runbooks.runs.remove(&id);
            self.runbooks.ended.ended(&run);
        } else {
            self.runbooks.runs.insert(id, run.clone());
        }
        for effect in carry {
            if let Effect::Begin {
                step,
                attempt,
                deadline_ms,
            } = effect
            {
                self.runbooks
                    .deadlines
                    .insert(id, (step, attempt, deadline_ms));
                if stored {
                    if let Some(book) = &book {
                        self.spawn_executor(&run, book, step, attempt, deadline_ms);
                    }
                }
            }
        }
        self.publish();
        match failure {
            None => Ok(run),
            Some(e) => Err(e),
        }
    }

    /// Spawns the executor of attempt `attempt` of step `step` (http, exec, wait_for, the
    /// re-sending of an agent action's stored command).
    fn spawn_executor(
        &mut self,
        run: &Run,
        book: &Runbook,
        step: usize,
        attempt: u32,
        deadline_ms: u64,
    ) {
        let timeout = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        let work: Pin<Box<dyn Future<Output = Outcome> + Send>> = match &book.steps[step].action {
            StepAction::Http {
                method,
                url,
                expect_status,
            } => {
                let (client, method, url, expect) = (
                    self.runbooks.http.clone(),
                    method.clone(),
                    url.clone(),
                    expect_status.clone(),
                );
                Box::pin(async move { exec::http(&client, &method, &url, &expect, timeout).await })
            }
            StepAction::Exec { argv } => {
                let argv = argv.clone();
                Box::pin(async move { exec::exec(&argv, timeout).await })
            }
            StepAction::WaitFor { service, hold_ms } => match self.deps.catalogue.get(service) {
                Some(s) => Box::pin(exec::wait_for(
                    self.deps.store.clone(),
                    Arc::new(s.clone()),
                    *hold_ms,
                )),
                None => {
                    let reason = format!("service {service:?} is not in the catalogue");
                    Box::pin(async move { Outcome::Failed { reason } })
                }
            },
            StepAction::AgentAction { .. } => {
                let command = run
                    .steps
                    .get(step)
                    .and_then(|s| s.attempts.iter().find(|a| a.n == attempt))
                    .and_then(|a| a.command.clone());
                match (self.runbooks.commands.clone(), command) {
                    (Some(link), Some(command)) => Box::pin(link.resend(command)),
                    (None, _) => Box::pin(async {
                        Outcome::Failed {
                            reason: agent_action::NO_KEY.to_owned(),
                        }
                    }),
                    (Some(_), None) => Box::pin(async {
                        Outcome::Failed {
                            reason: "no command stored for the attempt".to_owned(),
                        }
                    }),
                }
            }
            StepAction::RpoCheck { source, reads } => {
                match self.deps.catalogue.get(&book.service) {
                    Some(s) => {
                        let (client, source, reads, rpo_ms) = (
                            self.runbooks.http.clone(),
                            source.clone(),
                            *reads,
                            s.rpo.as_millis(),
                        );
                        Box::pin(async move {
                            rpo::check(&client, &source, reads, rpo_ms, timeout).await
                        })
                    }
                    None => {
                        let reason = format!("service {:?} is not in the catalogue", book.service);
                        Box::pin(async move { Outcome::Failed { reason } })
                    }
                }
            }
            StepAction::Approval { .. } | StepAction::Notify { .. } => return,
        };
        let events = self.runbooks.events.clone();
        let run_id = run.id;
        let task = tokio::spawn(async move {
            let outcome = work.await;
            if let Some(tx) = events.upgrade() {
                if tx
                    .send(EngineEvent::StepDone {
                        run: run_id,
                        step,
                        attempt,
                        outcome,
                    })
                    .await
                    .is_err()
                {
                    tracing::debug!(run = run_id, "Engine stopped; step outcome not told.");
                }
            }
        });
        self.runbooks.executors.insert(run_id, task.abort_handle());
    }
}
