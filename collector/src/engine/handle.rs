//! The engine task's only entrances: [`EngineHandle`] (cloneable) sends events into its bounded
//! queue and reads the snapshot it publishes; nobody else touches incident state.

use std::collections::BTreeSet;

use tokio::sync::{mpsc, oneshot, watch};

use super::event::{BrokerEvent, EngineEvent, OperatorAction, RunbookAction, RunbookError};
use super::snapshot::EngineSnapshot;
use crate::incident::engine::ActionError;
use crate::incident::record::Incident;
use crate::incident::trigger::LateRanges;
use crate::runbook::run::Run;

/// Sends events to the engine task and reads what it last published. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    pub(super) tx: mpsc::Sender<EngineEvent>,
    pub(super) snapshot: watch::Receiver<EngineSnapshot>,
}

/// What did not fit in a full queue, given back to the sender to keep and hand over later.
pub type NotTaken = (BTreeSet<String>, LateRanges);

impl EngineHandle {
    /// Hands over what one ingest batch changed without ever waiting: on a full queue the
    /// changes come back (`Err`) for the caller to merge into its next hand-over. If the engine
    /// has stopped they are dropped (the collector is stopping).
    ///
    /// # Errors
    /// The queue is full; the changes are returned.
    pub fn try_probes_changed(
        &self,
        services: BTreeSet<String>,
        late: LateRanges,
    ) -> Result<(), NotTaken> {
        match self
            .tx
            .try_send(EngineEvent::ProbesChanged { services, late })
        {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(EngineEvent::ProbesChanged { services, late })) => {
                Err((services, late))
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
        }
    }

    /// Hands an agent's `cmd/ack` answer to the engine without waiting: on a full queue it is
    /// dropped (returns false) — the command is re-sent while unanswered, and the agent answers
    /// every re-send, so the answer comes again.
    pub fn try_command_answer(&self, ack: watchstand_shared::wire::v1::CmdAck) -> bool {
        match self.tx.try_send(EngineEvent::CommandAnswer(Box::new(ack))) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
        }
    }

    /// Tells the engine the broker connection changed (waits for room: rare, and the session
    /// task has nothing more urgent to do).
    pub async fn broker(&self, event: BrokerEvent) {
        if self.tx.send(EngineEvent::Broker(event)).await.is_err() {
            tracing::debug!("Engine stopped; broker change not told.");
        }
    }

    /// Acknowledges incident `id` on behalf of `by`; returns the incident as stored.
    ///
    /// # Errors
    /// Not found, already resolved, a store failure, or the engine is not running.
    pub async fn acknowledge(
        &self,
        id: u64,
        by: &str,
        comment: &str,
    ) -> Result<Incident, ActionError> {
        self.ask(|reply| OperatorAction::Acknowledge {
            id,
            by: by.to_owned(),
            comment: comment.to_owned(),
            reply,
        })
        .await
    }

    /// Resolves incident `id` by hand on behalf of `by`; returns the incident as stored.
    ///
    /// # Errors
    /// Not found, already resolved, a store failure, or the engine is not running.
    pub async fn resolve(&self, id: u64, by: &str, note: &str) -> Result<Incident, ActionError> {
        self.ask(|reply| OperatorAction::Resolve {
            id,
            by: by.to_owned(),
            note: note.to_owned(),
            reply,
        })
        .await
    }

    /// Starts runbook `runbook` by hand on behalf of `by`; returns the run as stored (a
    /// `skipped` run when another run of it is in progress).
    ///
    /// # Errors
    /// Unknown runbook, not startable by hand, a store failure, or the engine is not running.
    pub async fn start_runbook(&self, runbook: &str, by: &str) -> Result<Run, RunbookError> {
        self.ask_runbook(|reply| RunbookAction::Start {
            runbook: runbook.to_owned(),
            by: by.to_owned(),
            reply,
        })
        .await
    }

    /// Approves (`approve`) or rejects the approval run `run` waits on, on behalf of `by` with
    /// role `role`; returns the run as stored.
    ///
    /// # Errors
    /// Unknown run, not waiting for an approval, a role below the step's, a store failure, or
    /// the engine is not running.
    pub async fn decide(
        &self,
        run: u64,
        approve: bool,
        by: &str,
        role: crate::auth::Role,
    ) -> Result<Run, RunbookError> {
        self.ask_runbook(|reply| RunbookAction::Decide {
            run,
            approve,
            by: by.to_owned(),
            role,
            reply,
        })
        .await
    }

    /// Cancels run `run` on behalf of `by`; returns the run as stored.
    ///
    /// # Errors
    /// Unknown run, already over, a store failure, or the engine is not running.
    pub async fn cancel_run(&self, run: u64, by: &str) -> Result<Run, RunbookError> {
        self.ask_runbook(|reply| RunbookAction::Cancel {
            run,
            by: by.to_owned(),
            reply,
        })
        .await
    }

    /// Starts drill `drill` on behalf of `by`; the drill run as stored (`skipped` with the
    /// reason when it may not start).
    ///
    /// # Errors
    /// Unknown drill, a store failure, or the engine is not running.
    pub async fn start_drill(
        &self,
        drill: &str,
        by: &str,
    ) -> Result<crate::drill::DrillRun, super::drills::DrillError> {
        self.ask_drill(|reply| super::drills::DrillAction::Start {
            drill: drill.to_owned(),
            by: by.to_owned(),
            reply,
        })
        .await
    }

    /// Records the review of finished drill run `run`.
    ///
    /// # Errors
    /// Unknown or unfinished run, a store failure, or the engine is not running.
    pub async fn review_drill(
        &self,
        run: u64,
        review: crate::drill::Review,
    ) -> Result<crate::drill::DrillRun, super::drills::DrillError> {
        self.ask_drill(|reply| super::drills::DrillAction::Review { run, review, reply })
            .await
    }

    async fn ask_drill(
        &self,
        action: impl FnOnce(super::drills::DrillReply) -> super::drills::DrillAction,
    ) -> Result<crate::drill::DrillRun, super::drills::DrillError> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(EngineEvent::Drill(action(reply)))
            .await
            .map_err(|_| super::drills::DrillError::EngineStopped)?;
        outcome
            .await
            .map_err(|_| super::drills::DrillError::EngineStopped)?
    }

    async fn ask_runbook(
        &self,
        action: impl FnOnce(super::event::RunbookReply) -> RunbookAction,
    ) -> Result<Run, RunbookError> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(EngineEvent::Runbook(action(reply)))
            .await
            .map_err(|_| RunbookError::EngineStopped)?;
        outcome.await.map_err(|_| RunbookError::EngineStopped)?
    }

    async fn ask<T>(
        &self,
        action: impl FnOnce(super::event::Reply<T>) -> OperatorAction,
    ) -> Result<T, ActionError> {
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(EngineEvent::Operator(action(reply)))
            .await
            .map_err(|_| ActionError::EngineStopped)?;
        outcome.await.map_err(|_| ActionError::EngineStopped)?
    }

    /// What the engine last published (after every evaluation and action).
    pub fn snapshot(&self) -> EngineSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver of the snapshots, to wait for changes.
    pub fn watch(&self) -> watch::Receiver<EngineSnapshot> {
        self.snapshot.clone()
    }
}
