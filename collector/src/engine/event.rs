//! What the engine task reacts to: one enum for everything that can change the collector's
//! decisions. Ingest, the MQTT session and the API send events through the
//! [`super::EngineHandle`]; the task's own timers make [`EngineEvent::Tick`] and
//! [`EngineEvent::FollowUp`].
//!
//! The enum grows with the engine: the runbook and drill work adds its own variants (a command
//! outcome from an agent, a step timer, runbook operator actions with their replies) beside
//! these, handled by the same task, so they see incidents and probe changes in one order.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use crate::incident::engine::ActionError;
use crate::incident::record::Incident;
use crate::incident::trigger::LateRanges;

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
    /// Services down but not yet for `down_after` instants, looked at again (the task's timer).
    FollowUp(BTreeSet<String>),
    /// The MQTT session's connection to the broker (agent silence counts only while connected).
    Broker(BrokerEvent),
    /// An operator's action, with the channel its outcome goes back on.
    Operator(OperatorAction),
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
