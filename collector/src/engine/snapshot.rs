//! The small typed view of the engine's state that readers (metrics, API, health) get without
//! touching the engine: published by the task after every evaluation and operator action.

use std::collections::BTreeMap;

use crate::incident::engine::Engine;
use crate::incident::{IncidentState, Priority, Rule};
use crate::runbook::run::Run;

/// One active (open or acknowledged) incident, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveIncident {
    /// Id.
    pub id: u64,
    /// Dedup key.
    pub dedup_key: String,
    /// Service (empty for agent incidents).
    pub service: String,
    /// Rule.
    pub rule: Rule,
    /// Priority.
    pub priority: Priority,
    /// Open or acknowledged.
    pub state: IncidentState,
}

/// Runbook runs by outcome, for `/metrics`: ended runs and the steps of ended runs since the
/// store began (counted from the stored runs at start, then as runs end), runs in progress now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunbookCounts {
    /// (runbook, final status) → ended runs.
    pub ended: BTreeMap<(String, &'static str), u64>,
    /// runbook → runs in progress.
    pub running: BTreeMap<String, u64>,
    /// (runbook, step kind, step status) → steps of ended runs.
    pub steps: BTreeMap<(String, String, &'static str), u64>,
}

impl RunbookCounts {
    /// Counts an ended run and its steps.
    pub fn ended(&mut self, run: &Run) {
        *self
            .ended
            .entry((run.runbook.clone(), run.status.as_str()))
            .or_default() += 1;
        for s in &run.steps {
            *self
                .steps
                .entry((run.runbook.clone(), s.kind.clone(), s.status.as_str()))
                .or_default() += 1;
        }
    }
}

/// The engine's state as of its last step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSnapshot {
    /// Active incidents, by id.
    pub active: Vec<ActiveIncident>,
    /// Runbook runs.
    pub runbooks: RunbookCounts,
    /// Evaluation rounds done since the task started.
    pub evaluations: u64,
    /// When the last evaluation round ran, epoch ms.
    pub last_evaluation_ms: Option<u64>,
}

impl EngineSnapshot {
    /// The active incidents of `engine`, with the given round counters.
    pub fn of(engine: &Engine, evaluations: u64, last_evaluation_ms: Option<u64>) -> Self {
        let mut active: Vec<ActiveIncident> = engine
            .active()
            .map(|i| ActiveIncident {
                id: i.id,
                dedup_key: i.dedup_key.clone(),
                service: i.service.clone(),
                rule: i.rule.clone(),
                priority: i.priority,
                state: i.state,
            })
            .collect();
        active.sort_by_key(|i| i.id);
        Self {
            active,
            runbooks: RunbookCounts::default(),
            evaluations,
            last_evaluation_ms,
        }
    }
}
