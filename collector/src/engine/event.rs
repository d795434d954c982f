//! What the engine task reacts to: one enum for everything that can change the collector's
//! decisions. Ingest, the MQTT session and the API send events through the
//! [`super::EngineHandle`]; the task's own timers make [`EngineEvent::Tick`] and
//! [`EngineEvent::FollowUp`].
//!
//! Runbooks have their own variants beside these — operator actions with replies
//! ([`RunbookAction`]) and step outcomes from executor tasks ([`EngineEvent::StepDone`]) —
//! handled by the same task, so they see incidents and probe changes in one order. Step
//! deadlines and delayed incident triggers are the task's own timer (`RunbookTimer`); agents'
//! answers to runbook commands come from ingest as [`EngineEvent::CommandAnswer`]. Drills will
//! add theirs the same way.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use crate::auth::Role;
use crate::incident::engine::ActionError;
use crate::incident::record::Incident;
use crate::incident::trigger::LateRanges;
use crate::runbook::run::{Outcome, Run};

/// Where an operator action's outcome goes (the API awaits it).
pub type Reply<T> = oneshot::Sender<Result<T, ActionError>>;

/// One thing the engine task handles.
#[derive(Debug)]
pub enum EngineEvent {
    /// From ingest, after a committed batch: the services of probes whose state changed (to
    /// evaluate their service-down rule now) and the observation ranges of results that arrived
    /// late (to look in the data for outages no live evaluation saw).
    ProbesChanged {
        /// Services to evaluate now (always including those of `late`).
        services: BTreeSet<String>,
        /// Per service, the range of late results.
        late: LateRanges,
    },
    /// The periodic evaluation of every rule (the task's `evaluate_every` timer).
    Tick,
    /// The periodic evaluation of the capacity rules (the task's `[capacity.incidents]
    /// evaluate_every` timer; see [`crate::capacity::incidents`]).
    CapacityTick,
    /// Services down but not yet for `down_after` instants, looked at again (the task's timer).
    FollowUp(BTreeSet<String>),
    /// The MQTT session's connection to the broker (agent silence counts only while connected).
    Broker(BrokerEvent),
    /// An operator's action, with the channel its outcome goes back on.
    Operator(OperatorAction),
    /// An operator's runbook action (start, approve, reject, cancel), with its reply channel.
    Runbook(RunbookAction),
    /// An executor task ended attempt `attempt` of step `step` of run `run`.
    StepDone {
        /// Run id.
        run: u64,
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
        /// How it ended.
        outcome: Outcome,
    },
    /// A step deadline, a delayed incident trigger, a drill's schedule, abort or end of
    /// settling is due (the task's timer).
    RunbookTimer,
    /// An agent's answer to a command, from `cmd/ack` (ingest, `try_send`: a lost one is
    /// answered again on the command's next re-send).
    CommandAnswer(Box<watchstand_shared::wire::v1::CmdAck>),
    /// An operator's drill action (start, review), with its reply channel.
    Drill(super::drills::DrillAction),
}

/// Why a runbook action failed.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    /// No such runbook.
    #[error("runbook {0:?} not found")]
    UnknownRunbook(String),
    /// `manual = false`.
    #[error("runbook {0:?} cannot be started by hand (manual = false)")]
    NotManual(String),
    /// No such run.
    #[error("run {0} not found")]
    RunNotFound(u64),
    /// The run is not waiting for an approval.
    #[error("run {0} is not waiting for an approval")]
    NotAwaitingApproval(u64),
    /// The approver's role is below the step's.
    #[error("{who} is {have}; approving step {step:?} needs {need}")]
    RoleTooLow {
        /// Who tried.
        who: String,
        /// Their role.
        have: &'static str,
        /// The step's role.
        need: &'static str,
        /// Step id.
        step: String,
    },
    /// The run is over.
    #[error(transparent)]
    Stale(#[from] crate::runbook::run::Stale),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The engine task is not running (the collector is stopping).
    #[error("the engine is not running")]
    EngineStopped,
}

/// Where a runbook action's outcome goes.
pub type RunbookReply = oneshot::Sender<Result<Run, RunbookError>>;

/// What an operator can do to runbooks (the API's runbook writes). `by` is the API token's
/// name, `role` its role.
#[derive(Debug)]
pub enum RunbookAction {
    /// Start runbook `runbook` by hand (a skipped run when one is in progress).
    Start {
        /// Runbook id.
        runbook: String,
        /// Who.
        by: String,
        /// The run as stored.
        reply: RunbookReply,
    },
    /// Approve (`approve = true`) or reject the approval step run `run` waits on.
    Decide {
        /// Run id.
        run: u64,
        /// Approve or reject.
        approve: bool,
        /// Who.
        by: String,
        /// Their role.
        role: Role,
        /// The run as stored.
        reply: RunbookReply,
    },
    /// Cancel run `run`.
    Cancel {
        /// Run id.
        run: u64,
        /// Who.
        by: String,
        /// The run as stored.
        reply: RunbookReply,
    },
}

/// The collector's connection to the broker changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerEvent {
    /// (Re)connected at this instant, epoch ms.
    Connected {
        /// When.
        at_ms: u64,
    },
    /// Lost the broker at this instant, epoch ms.
    Disconnected {
        /// When.
        at_ms: u64,
    },
}

/// What an operator can do to an incident (the API's writes).
#[derive(Debug)]
pub enum OperatorAction {
    /// Acknowledge incident `id`.
    Acknowledge {
        /// Incident id.
        id: u64,
        /// Who (the API token's name).
        by: String,
        /// Comment for the timeline.
        comment: String,
        /// The incident as stored after the action.
        reply: Reply<Incident>,
    },
    /// Resolve incident `id` by hand.
    Resolve {
        /// Incident id.
        id: u64,
        /// Who (the API token's name).
        by: String,
        /// Resolution note.
        note: String,
        /// The incident as stored after the action.
        reply: Reply<Incident>,
    },
}
