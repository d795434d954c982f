//! The engine task: the single owner of the collector's decisions. It owns the incident
//! lifecycle ([`crate::incident::engine::Engine`]) and the collector's presence (since when it
//! hears its agents), and nothing else may change them: everything reaches it as an
//! [`EngineEvent`] on one bounded queue, in one order.
//!
//! | event | sent by | does |
//! |---|---|---|
//! | `ProbesChanged` | ingest, after each committed batch (`try_send`, never waits) | service-down evaluation of those services; late ranges looked at in the data |
//! | `Tick` | the task's `evaluate_every` timer | every rule of every service |
//! | `FollowUp` | the task's timer | service-down again for services down but not yet for `down_after` |
//! | `Broker` | the MQTT session task | presence: agent silence counts only while connected |
//! | `Operator` | the API (ack, resolve), with a `oneshot` reply | the action, committed; the outcome replied |
//! | `CapacityTick` | the task's `[capacity.incidents] evaluate_every` timer | the capacity rules of every agent and metric ([`crate::capacity::incidents`]) |
//! | `Runbook`, `StepDone`, `RunbookTimer` | the API, executor tasks, the task's timer | runbook runs (see `runbooks`) |
//! | `CommandAnswer` | ingest (`cmd/ack`, `try_send`) | the answered `agent_action` attempt's outcome |
//!
//! Readers never lock the engine: the task publishes an [`EngineSnapshot`] on a `watch` after
//! every step (metrics read it), and incident records are read from the store. The task wakes
//! the notifier through the [`crate::incident::notify::Wake`] it holds when a step queued a
//! notification.
//!
//! **Coalescing.** After taking one event the task drains what else is queued (up to the
//! queue's capacity) before it evaluates, so a burst of state changes — however many ingest
//! batches — makes one evaluation round, and a round that has both the tick and services runs
//! both in one blocking call. Ingest never waits on a full queue: it keeps what did not fit
//! and hands it over with its next batch or its ack retry (see [`crate::incident::trigger`]);
//! the tick covers every service-down rule meanwhile.
//!
//! Store work (evaluations read the store and commit) runs on the blocking pool: the task
//! moves the engine into the blocking call and gets it back, so ownership never leaves the
//! task. A panic inside is caught and the engine kept, as the shared mutex's poison was
//! ignored before.
//!
//! **Room to grow.** Runbooks and approvals are state of this same task (their events: operator
//! actions with replies, step outcomes, the step timer, agents' command answers); drills add
//! theirs to [`EngineEvent`] when they are built — no placeholder variants exist before then.

#[cfg(test)]
mod drill_tests;
pub mod drills;
pub mod event;
pub mod handle;
#[cfg(test)]
mod runbook_tests;
mod runbooks;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchstand_shared::time::now_ms;

pub use event::{BrokerEvent, EngineEvent, OperatorAction, RunbookAction, RunbookError};
pub use handle::EngineHandle;
pub use snapshot::{ActiveIncident, EngineSnapshot, RunbookCounts};

use crate::capacity::report::CapacityContext;
use crate::config::Catalogue;
use crate::incident::engine::{ActionError, Change, Engine};
use crate::incident::presence::{self, Presence};
use crate::incident::trigger::{self, LateRanges};
use crate::incident::{self, notify};
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// Events the queue holds before senders wait (the API, the session) or keep theirs (ingest).
pub const QUEUE_CAPACITY: usize = 1_024;

/// The task's side of the queue and of the snapshot.
#[derive(Debug)]
pub struct EngineInbox {
    rx: mpsc::Receiver<EngineEvent>,
    snapshot: watch::Sender<EngineSnapshot>,
    /// For the task's own executors (weak: the queue still closes when every handle is gone).
    weak: mpsc::WeakSender<EngineEvent>,
    runbooks: Option<runbooks::Runbooks>,
    capacity: Option<Arc<CapacityContext>>,
    drills: Option<drills::Drills>,
}

impl EngineInbox {
    /// Loads `books` and the runs stored in `store` for the task to carry on (without it the
    /// task has no runbooks).
    ///
    /// # Errors
    /// Store failure or a corrupt run record.
    pub fn load_runbooks(
        &mut self,
        books: &[crate::runbook::Runbook],
        store: &Store,
    ) -> Result<(), StoreError> {
        self.runbooks = Some(runbooks::Runbooks::load(books, store, self.weak.clone())?);
        Ok(())
    }

    /// Lets the task judge the capacity rules with `ctx` every
    /// `[capacity.incidents] evaluate_every` (without it, or with them disabled, it does not).
    pub fn watch_capacity(&mut self, ctx: Arc<CapacityContext>) {
        self.capacity = Some(ctx);
    }

    /// Lets the runbooks send `agent_action` commands through `link` (after
    /// [`Self::load_runbooks`]; without it such attempts fail naming the missing key).
    pub fn set_command_link(&mut self, link: crate::runbook::agent_action::CommandLink) {
        if let Some(r) = &mut self.runbooks {
            r.commands = Some(link);
        }
    }

    /// Loads `drills` and the drill runs stored in `store` (without it the task has none).
    ///
    /// # Errors
    /// Store failure or a corrupt drill record.
    pub fn load_drills(
        &mut self,
        drills: &[crate::drill::Drill],
        store: &Store,
    ) -> Result<(), StoreError> {
        self.drills = Some(drills::Drills::load(drills, store, now_ms())?);
        Ok(())
    }

    /// The next queued event, if one is queued now (tests look at what was handed over).
    pub fn try_next(&mut self) -> Option<EngineEvent> {
        self.rx.try_recv().ok()
    }
}

/// A queue for the engine task: the handle for senders and readers, the inbox for [`run`].
/// `initial` is what readers see until the task's first step.
pub fn channel(initial: EngineSnapshot) -> (EngineHandle, EngineInbox) {
    channel_with(QUEUE_CAPACITY, initial)
}

/// [`channel`] with a given queue capacity.
pub fn channel_with(capacity: usize, initial: EngineSnapshot) -> (EngineHandle, EngineInbox) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (snapshot_tx, snapshot) = watch::channel(initial);
    let weak = tx.downgrade();
    (
        EngineHandle { tx, snapshot },
        EngineInbox {
            rx,
            snapshot: snapshot_tx,
            weak,
            runbooks: None,
            capacity: None,
            drills: None,
        },
    )
}

/// What the task reads besides its own state.
#[derive(Debug, Clone)]
pub struct EngineDeps {
    /// The store (conditions are read from it; the engine commits to it).
    pub store: Store,
    /// The service catalogue.
    pub catalogue: Arc<Catalogue>,
    /// The agent registry (ingest keeps it).
    pub registry: Arc<Registry>,
    /// Wakes the notifier.
    pub notifier: notify::Wake,
    /// How long after the start the first periodic evaluation runs (`serve`: at once).
    pub first_tick: std::time::Duration,
}

use crate::incident::LATE_RETRY_MS;

/// The evaluation work gathered from the events of one round.
#[derive(Debug, Default)]
struct Round {
    /// Every rule of every service (the tick).
    all: bool,
    /// The service-down rule of these services.
    services: BTreeSet<String>,
    /// Late ranges handed over.
    late: LateRanges,
    /// The capacity rules.
    capacity: bool,
}

impl Round {
    fn is_empty(&self) -> bool {
        !self.all && !self.capacity && self.services.is_empty() && self.late.is_empty()
    }
}

/// What one round's blocking evaluation gives back.
type Evaluated = (Vec<Change>, Vec<String>, LateRanges);

struct Task {
    /// `None` only while it is on the blocking pool.
    engine: Option<Engine>,
    deps: EngineDeps,
    presence: Presence,
    snapshot: watch::Sender<EngineSnapshot>,
    every_ms: u64,
    /// Services down but not yet for `down_after` instants: when to look at them again.
    follow_ups: BTreeMap<String, Instant>,
    /// Late ranges whose data showed a down stretch without its end yet: looked at again on
    /// every tick for at most `LATE_RETRY_MS` after they were first handed over.
    late_again: LateRanges,
    late_since: BTreeMap<String, u64>,
    last_wake_ms: Option<u64>,
    evaluations: u64,
    last_evaluation_ms: Option<u64>,
    /// Runbook runs, their deadlines and executors, incident triggers.
    runbooks: runbooks::Runbooks,
    /// What the capacity rules read (None: not judged).
    capacity: Option<Arc<CapacityContext>>,
    /// Drill runs in progress, schedules.
    drills: drills::Drills,
}

/// Runs the engine task until `shutdown` (or until every handle is gone): evaluates every
/// `evaluate_every` and on the events it receives, one step at a time.
pub async fn run(
    mut inbox: EngineInbox,
    engine: Engine,
    deps: EngineDeps,
    shutdown: CancellationToken,
) {
    let every = std::time::Duration::from_millis(engine.settings().evaluate_every_ms);
    let mut tick = tokio::time::interval_at(Instant::now() + deps.first_tick, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some(mut task) = Task::new(&mut inbox, engine, deps) else {
        return;
    };
    let mut capacity_tick = task.capacity.as_ref().map(|c| {
        let every = std::time::Duration::from_millis(c.settings.incidents.evaluate_every_ms);
        let mut t = tokio::time::interval_at(Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    task.resume_runs().await;
    task.resume_drills().await;
    task.look_for_triggers();
    task.publish();
    loop {
        let next_follow_up = task.follow_ups.values().min().copied();
        let next_runbook = match (task.runbooks.next_due(), task.drills.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let runbook_timer = async move {
            match next_runbook {
                Some(due) => {
                    tokio::time::sleep(std::time::Duration::from_millis(
                        due.saturating_sub(now_ms()),
                    ))
                    .await;
                }
                None => std::future::pending().await,
            }
        };
        let follow_up = async move {
            match next_follow_up {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let capacity_due = async {
            match capacity_tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = tick.tick() => EngineEvent::Tick,
            () = capacity_due => EngineEvent::CapacityTick,
            event = inbox.rx.recv() => match event {
                Some(e) => e,
                None => break,
            },
            () = follow_up => EngineEvent::FollowUp(task.due_follow_ups()),
            () = runbook_timer => EngineEvent::RunbookTimer,
        };
        let mut round = Round::default();
        task.handle(first, &mut round).await;
        // Everything queued meanwhile joins this round (bounded, so a flood cannot starve the
        // evaluation).
        for _ in 0..QUEUE_CAPACITY {
            let Ok(event) = inbox.rx.try_recv() else {
                break;
            };
            task.handle(event, &mut round).await;
        }
        if !round.is_empty() {
            task.evaluate(round).await;
        }
        if task.engine.is_none() {
            tracing::error!("The incident engine was lost; the engine task stops.");
            break;
        }
    }
}

/// An engine task for API tests: `engine` over `store` and `catalogue`, no agents, no notifier,
/// no periodic evaluation (only what the tests send). Needs a Tokio runtime.
#[cfg(test)]
pub(crate) fn spawn_for_tests(
    engine: Engine,
    store: Store,
    catalogue: Arc<Catalogue>,
) -> EngineHandle {
    spawn_for_tests_with(engine, store, catalogue, &[])
}

/// [`spawn_for_tests`] with runbooks.
#[cfg(test)]
pub(crate) fn spawn_for_tests_with(
    engine: Engine,
    store: Store,
    catalogue: Arc<Catalogue>,
    books: &[crate::runbook::Runbook],
) -> EngineHandle {
    let (handle, mut inbox) = channel(EngineSnapshot::of(&engine, 0, None));
    inbox
        .load_runbooks(books, &store)
        .expect("runbook runs load");
    let deps = EngineDeps {
        store,
        catalogue,
        registry: Arc::new(Registry::new(Vec::new())),
        notifier: notify::wake_channel().0,
        first_tick: std::time::Duration::from_secs(86_400),
    };
    tokio::spawn(run(inbox, engine, deps, CancellationToken::new()));
    handle
}

impl Task {
    /// The task's state: `engine`, and the runbooks, drills and capacity context `inbox` was
    /// given (taken from it); `None` (logged) when stored runs cannot be read.
    fn new(inbox: &mut EngineInbox, engine: Engine, deps: EngineDeps) -> Option<Self> {
        let books = match inbox.runbooks.take() {
            Some(b) => b,
            None => match runbooks::Runbooks::load(&[], &deps.store, inbox.weak.clone()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot read runbook runs; the engine task stops.");
                    return None;
                }
            },
        };
        let drills = match inbox.drills.take() {
            Some(d) => d,
            None => match drills::Drills::load(&[], &deps.store, now_ms()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot read drill runs; the engine task stops.");
                    return None;
                }
            },
        };
        Some(Self {
            capacity: inbox
                .capacity
                .take()
                .filter(|c| c.settings.incidents.enabled),
            drills,
            runbooks: books,
            every_ms: engine.settings().evaluate_every_ms,
            engine: Some(engine),
            deps,
            presence: Presence::default(),
            snapshot: inbox.snapshot.clone(),
            follow_ups: BTreeMap::new(),
            late_again: LateRanges::new(),
            late_since: BTreeMap::new(),
            last_wake_ms: None,
            evaluations: 0,
            last_evaluation_ms: None,
        })
    }

    fn due_follow_ups(&mut self) -> BTreeSet<String> {
        let now = Instant::now();
        let due: BTreeSet<String> = self
            .follow_ups
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(s, _)| s.clone())
            .collect();
        self.follow_ups.retain(|s, _| !due.contains(s));
        due
    }

    /// Applies one event: evaluation work joins `round`; presence and operator actions are
    /// done at once.
    async fn handle(&mut self, event: EngineEvent, round: &mut Round) {
        match event {
            EngineEvent::Tick => round.all = true,
            EngineEvent::CapacityTick => round.capacity = true,
            EngineEvent::FollowUp(services) => round.services.extend(services),
            EngineEvent::ProbesChanged { services, late } => {
                round.services.extend(services);
                for (service, range) in late {
                    trigger::widen(&mut round.late, &service, range);
                }
            }
            EngineEvent::Broker(BrokerEvent::Connected { at_ms }) => {
                self.presence.connected(at_ms);
            }
            EngineEvent::Broker(BrokerEvent::Disconnected { at_ms }) => {
                self.presence.disconnected(at_ms);
            }
            EngineEvent::Operator(action) => self.act(action).await,
            EngineEvent::Runbook(action) => self.runbook_action(action).await,
            EngineEvent::StepDone {
                run,
                step,
                attempt,
                outcome,
            } => self.step_done(run, step, attempt, outcome).await,
            EngineEvent::RunbookTimer => {
                self.runbook_timer().await;
                self.drill_timer(now_ms()).await;
            }
            EngineEvent::CommandAnswer(ack) => self.command_answer(*ack).await,
            EngineEvent::Drill(action) => self.drill_action(action).await,
        }
        // Runbook runs of drills changed by this event.
        self.drill_updates().await;
    }

    /// Runs `f` on the engine on the blocking pool; `None` if the engine is gone (a previous
    /// loss) or `f` panicked (the engine is kept).
    async fn with_engine<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Engine) -> R + Send + 'static,
    ) -> Option<R> {
        let mut engine = self.engine.take()?;
        let joined = tokio::task::spawn_blocking(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut engine)));
            (engine, out)
        })
        .await;
        match joined {
            Ok((engine, out)) => {
                self.engine = Some(engine);
                match out {
                    Ok(r) => Some(r),
                    Err(_) => {
                        tracing::error!("An incident engine step panicked; its work is dropped.");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Incident engine task failed.");
                None
            }
        }
    }

    fn publish(&self) {
        if let Some(engine) = &self.engine {
            let mut snapshot =
                EngineSnapshot::of(engine, self.evaluations, self.last_evaluation_ms);
            snapshot.runbooks = self.runbooks.counts();
            self.snapshot.send_replace(snapshot);
        }
    }

    async fn act(&mut self, action: OperatorAction) {
        let (reply, outcome) = match action {
            OperatorAction::Acknowledge {
                id,
                by,
                comment,
                reply,
            } => (
                reply,
                self.with_engine(move |e| e.acknowledge(id, &by, &comment, now_ms()))
                    .await,
            ),
            OperatorAction::Resolve {
                id,
                by,
                note,
                reply,
            } => (
                reply,
                self.with_engine(move |e| e.resolve(id, &by, &note, now_ms()))
                    .await,
            ),
        };
        let outcome = outcome.unwrap_or(Err(ActionError::EngineStopped));
        if outcome.is_ok() {
            // The action may have queued a notification (acknowledged, resolved).
            self.deps.notifier.wake();
            self.publish();
        }
        if reply.send(outcome).is_err() {
            // The asker has gone (a closed HTTP request); the action stands as committed.
            tracing::debug!("Operator action done after its request was dropped.");
        }
    }

    /// One evaluation round: late ranges, then every rule (tick) and/or the service-down rule
    /// of the services named, at one instant.
    async fn evaluate(&mut self, round: Round) {
        let Round {
            all,
            services,
            mut late,
            capacity,
        } = round;
        let capacity = self.capacity.clone().filter(|_| capacity);
        let now = now_ms();
        // A wake-up far later than the tick: the collector itself was frozen, and heard nobody.
        if self
            .last_wake_ms
            .is_some_and(|t| presence::is_freeze(t, now, self.every_ms))
        {
            tracing::warn!(
                gap_ms = now.saturating_sub(self.last_wake_ms.unwrap_or(now)),
                "The collector was frozen; agents get a grace of their silence threshold."
            );
            self.presence.resumed(now);
        }
        self.last_wake_ms = Some(now);
        let hearing = self.presence.hearing();
        for service in late.keys() {
            self.late_since.entry(service.clone()).or_insert(now);
        }
        if all {
            for (service, range) in std::mem::take(&mut self.late_again) {
                trigger::widen(&mut late, &service, range);
            }
        }
        // Kept to look again if this evaluation fails.
        let looked_at = late.clone();
        let (s, c, r) = (
            self.deps.store.clone(),
            self.deps.catalogue.clone(),
            self.deps.registry.clone(),
        );
        let outcome = self
            .with_engine(move |e| -> Result<Evaluated, StoreError> {
                let (mut changes, again) =
                    incident::evaluate_late(e, &s, &c, &r, hearing, &late, now)?;
                if all {
                    changes.extend(incident::evaluate_once(e, &s, &c, &r, hearing, now)?);
                }
                if let Some(ctx) = &capacity {
                    let agents: Vec<String> = r.snapshot().into_iter().map(|a| a.agent).collect();
                    changes.extend(crate::capacity::incidents::evaluate(
                        e, &s, ctx, &agents, now,
                    )?);
                }
                let mut pending = Vec::new();
                if !services.is_empty() {
                    let (more, p) =
                        incident::evaluate_services(e, &s, &c, &r, hearing, &services, now)?;
                    changes.extend(more);
                    pending = p;
                }
                Ok((changes, pending, again))
            })
            .await;
        match outcome {
            Some(Ok((changes, pending, again))) => {
                if incident::log_changes(changes) {
                    self.deps.notifier.wake();
                }
                let next = Instant::now() + std::time::Duration::from_millis(self.every_ms);
                for service in pending {
                    self.follow_ups.entry(service).or_insert(next);
                }
                for (service, range) in again {
                    trigger::widen(&mut self.late_again, &service, range);
                }
                let late_again = &self.late_again;
                self.late_since.retain(|service, since| {
                    late_again.contains_key(service) && now.saturating_sub(*since) <= LATE_RETRY_MS
                });
                let late_since = &self.late_since;
                self.late_again
                    .retain(|service, _| late_since.contains_key(service));
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "Incident evaluation failed; retrying next round.");
                self.late_again.extend(looked_at);
            }
            None => {
                self.late_again.extend(looked_at);
            }
        }
        self.evaluations += 1;
        self.last_evaluation_ms = Some(now);
        self.look_for_triggers();
        self.publish();
    }
}
