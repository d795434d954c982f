//! One runbook run as a pure state machine: steps in order, attempts with deadlines, retries,
//! `on_failure`, cancellation. No I/O and no clock of its own: the engine feeds it outcomes and
//! the time, carries out the [`Effect`]s it returns, and stores the [`Run`] after every change
//! (before carrying out the effects, so a crash never loses a started attempt).
//!
//! Outcomes are idempotent: an outcome for an attempt that is not the current one, or that
//! already ended, changes nothing (a re-sent `cmd/ack`, a timer that fires after the answer).

use serde::{Deserialize, Serialize};

use watchstand_shared::wire::v1::Command;

use super::config::{OnFailure, Runbook};
use super::rpo::RpoReading;

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    /// An incident matched the runbook's `on_incident`.
    Incident {
        /// Incident id.
        incident: u64,
    },
    /// An operator started it.
    Manual {
        /// Who (the token's name).
        by: String,
    },
    /// A drill runs it (its steps in drill mode, or its restore steps after an abort).
    Drill {
        /// Drill run id.
        drill_run: u64,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A step is in progress.
    Running,
    /// Every step ended and none aborted the run.
    Succeeded,
    /// A step failed with `on_failure = "abort"`.
    Failed,
    /// An operator cancelled it.
    Cancelled,
    /// Never ran: another run of the runbook was in progress when it was triggered.
    Skipped,
}

impl RunStatus {
    /// Over for good.
    pub const fn is_final(self) -> bool {
        !matches!(self, RunStatus::Running)
    }

    /// As written in APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "skipped" => RunStatus::Skipped,
            other => {
                return Err(format!(
                    "{other:?} is not a run status (running, succeeded, failed, cancelled, skipped)"
                ))
            }
        })
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not reached yet.
    Pending,
    /// An attempt is in progress.
    Running,
    /// An attempt succeeded.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Never ran: the run ended before it.
    Skipped,
    /// Its attempt was cancelled with the run.
    Cancelled,
}

impl StepStatus {
    /// As written in APIs.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Done; `detail` says what was seen (exit code, status, who approved).
    Succeeded {
        /// What was seen.
        detail: String,
    },
    /// An `rpo_check` step read the recovery point (a success whether or not the RPO was met;
    /// see [`super::rpo`]).
    RpoChecked {
        /// The reading in words.
        detail: String,
        /// The reading.
        reading: RpoReading,
    },
    /// Did not work.
    Failed {
        /// Why.
        reason: String,
    },
    /// No answer within the step's timeout.
    TimedOut,
    /// An approval was rejected.
    Rejected {
        /// Who.
        by: String,
    },
    /// The run was cancelled while the attempt was in progress.
    Cancelled {
        /// Who.
        by: String,
    },
}

impl Outcome {
    fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. } | Outcome::RpoChecked { .. })
    }

    /// What was seen or why it did not work, in words (empty for a plain success without
    /// detail).
    pub fn text(&self) -> String {
        match self {
            Outcome::Succeeded { detail } | Outcome::RpoChecked { detail, .. } => detail.clone(),
            Outcome::Failed { reason } => reason.clone(),
            Outcome::TimedOut => "timed out".to_owned(),
            Outcome::Rejected { by } => format!("rejected by {by}"),
            Outcome::Cancelled { by } => format!("cancelled by {by}"),
        }
    }
}

/// One attempt of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub n: u32,
    /// When it began, epoch ms.
    pub started_ms: u64,
    /// When it times out, epoch ms.
    pub deadline_ms: u64,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// The signed command sent for it (`agent_action` steps), so a restarted collector asks for
    /// that command's outcome instead of running the action again.
    pub command_id: Option<String>,
    /// That command as signed and sent: a restarted collector re-sends exactly it (same id and
    /// nonce), which the agent answers from its journal if it already ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Step kind.
    pub kind: String,
    /// Where it is.
    pub status: StepStatus,
    /// Its attempts, in order.
    pub attempts: Vec<Attempt>,
}

/// A run: the durable record and the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Run id.
    pub id: u64,
    /// Runbook id.
    pub runbook: String,
    /// Its service.
    pub service: String,
    /// What started it.
    pub trigger: Trigger,
    /// Where it is.
    pub status: RunStatus,
    /// When it started, epoch ms.
    pub started_ms: u64,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Every step of the runbook, in order.
    pub steps: Vec<StepRecord>,
}

/// What the engine must do after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Carry out attempt `attempt` of step `step` (index) and report its outcome by `deadline_ms`.
    Begin {
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
        /// When it times out.
        deadline_ms: u64,
    },
    /// The run ended.
    Finished(RunStatus),
}

/// Why an outcome was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The run is over.
    #[error("run {0} is already {1}")]
    RunOver(u64, &'static str),
    /// Not the attempt in progress (a re-sent answer, a late timer).
    #[error("step {step} attempt {attempt} is not in progress")]
    NotCurrent {
        /// Step index.
        step: usize,
        /// Attempt.
        attempt: u32,
    },
}

impl Run {
    /// A new run of `book`, its first step begun at `now_ms`.
    pub fn start(id: u64, book: &Runbook, trigger: Trigger, now_ms: u64) -> (Run, Vec<Effect>) {
        let mut run = Run {
            id,
            runbook: book.id.clone(),
            service: book.service.clone(),
            trigger,
            status: RunStatus::Running,
            started_ms: now_ms,
            ended_ms: None,
            reason: None,
            steps: book
                .steps
                .iter()
                .map(|s| StepRecord {
                    id: s.id.clone(),
                    kind: s.action.kind().to_owned(),
                    status: StepStatus::Pending,
                    attempts: Vec::new(),
                })
                .collect(),
        };
        let effects = run.begin(book, 0, now_ms);
        (run, effects)
    }

    /// A run of `book` that never ran because `reason` (another run in progress): recorded
    /// `skipped` at `now_ms`, every step skipped.
    pub fn skipped(id: u64, book: &Runbook, trigger: Trigger, reason: String, now_ms: u64) -> Run {
        let (mut run, _) = Run::start(id, book, trigger, now_ms);
        for s in &mut run.steps {
            s.status = StepStatus::Skipped;
            s.attempts.clear();
        }
        run.status = RunStatus::Skipped;
        run.reason = Some(reason);
        run.ended_ms = Some(now_ms);
        run
    }

    /// The step in progress and its current attempt, if the run is running.
    pub fn current(&self) -> Option<(usize, &Attempt)> {
        if self.status.is_final() {
            return None;
        }
        let index = self
            .steps
            .iter()
            .position(|s| s.status == StepStatus::Running)?;
        Some((index, self.steps[index].attempts.last()?))
    }

    /// Applies the outcome of attempt `attempt` of step `step`.
    ///
    /// # Errors
    /// [`Stale`] when that attempt is not the one in progress; nothing changed.
    pub fn record(
        &mut self,
        book: &Runbook,
        step: usize,
        attempt: u32,
        outcome: Outcome,
        now_ms: u64,
    ) -> Result<Vec<Effect>, Stale> {
        self.check_current(step, attempt)?;
        let success = outcome.is_success();
        if let Some(a) = self.steps[step].attempts.last_mut() {
            a.ended_ms = Some(now_ms);
            a.outcome = Some(outcome.clone());
        }
        if success {
            self.steps[step].status = StepStatus::Succeeded;
            return Ok(self.begin(book, step + 1, now_ms));
        }
        let spec = &book.steps[step];
        let rejected = matches!(outcome, Outcome::Rejected { .. });
        // A rejected approval is a decision, not a fault: it is not retried.
        if !rejected && attempt <= spec.retries {
            return Ok(self.begin_attempt(book, step, attempt + 1, now_ms));
        }
        self.steps[step].status = StepStatus::Failed;
        match spec.on_failure {
            OnFailure::Continue => Ok(self.begin(book, step + 1, now_ms)),
            OnFailure::Abort => {
                let why = match &outcome {
                    Outcome::Failed { reason } => reason.clone(),
                    Outcome::TimedOut => "timed out".to_owned(),
                    Outcome::Rejected { by } => format!("rejected by {by}"),
                    Outcome::Cancelled { by } => format!("cancelled by {by}"),
                    Outcome::Succeeded { .. } | Outcome::RpoChecked { .. } => String::new(),
                };
                let attempts = self.steps[step].attempts.len();
                let reason = format!(
                    "step {:?} failed after {attempts} attempt{}: {why}",
                    spec.id,
                    if attempts == 1 { "" } else { "s" }
                );
                Ok(self.finish(RunStatus::Failed, Some(reason), step + 1, now_ms))
            }
        }
    }

    /// Notes the command sent for the attempt in progress (stored before it is sent).
    ///
    /// # Errors
    /// [`Stale`] when that attempt is not the one in progress.
    pub fn note_command(
        &mut self,
        step: usize,
        attempt: u32,
        command: Command,
    ) -> Result<(), Stale> {
        self.check_current(step, attempt)?;
        if let Some(a) = self.steps[step].attempts.last_mut() {
            a.command_id = Some(command.command_id.clone());
            a.command = Some(command);
        }
        Ok(())
    }

    /// The (step, attempt) in progress whose command is `command_id`.
    pub fn awaiting(&self, command_id: &str) -> Option<(usize, &Attempt)> {
        self.current()
            .filter(|(_, a)| a.outcome.is_none() && a.command_id.as_deref() == Some(command_id))
    }

    /// Cancels the run: the attempt in progress ends `cancelled`, later steps are skipped.
    ///
    /// # Errors
    /// [`Stale::RunOver`] when the run already ended.
    pub fn cancel(&mut self, by: &str, now_ms: u64) -> Result<Vec<Effect>, Stale> {
        if self.status.is_final() {
            return Err(Stale::RunOver(self.id, self.status.as_str()));
        }
        let mut next = self.steps.len();
        if let Some((index, _)) = self.current() {
            let step = &mut self.steps[index];
            step.status = StepStatus::Cancelled;
            if let Some(a) = step.attempts.last_mut() {
                a.ended_ms = Some(now_ms);
                a.outcome = Some(Outcome::Cancelled { by: by.to_owned() });
            }
            next = index + 1;
        }
        Ok(self.finish(
            RunStatus::Cancelled,
            Some(format!("cancelled by {by}")),
            next,
            now_ms,
        ))
    }

    fn check_current(&self, step: usize, attempt: u32) -> Result<(), Stale> {
        if self.status.is_final() {
            return Err(Stale::RunOver(self.id, self.status.as_str()));
        }
        match self.current() {
            Some((index, a)) if index == step && a.n == attempt && a.outcome.is_none() => Ok(()),
            _ => Err(Stale::NotCurrent { step, attempt }),
        }
    }

    /// Begins step `index` (or ends the run `succeeded` past the last step).
    fn begin(&mut self, book: &Runbook, index: usize, now_ms: u64) -> Vec<Effect> {
        if index >= self.steps.len() {
            return self.finish(RunStatus::Succeeded, None, index, now_ms);
        }
        self.begin_attempt(book, index, 1, now_ms)
    }

    fn begin_attempt(&mut self, book: &Runbook, index: usize, n: u32, now_ms: u64) -> Vec<Effect> {
        let deadline_ms = now_ms.saturating_add(book.steps[index].timeout_ms);
        let step = &mut self.steps[index];
        step.status = StepStatus::Running;
        step.attempts.push(Attempt {
            n,
            started_ms: now_ms,
            deadline_ms,
            ended_ms: None,
            outcome: None,
            command_id: None,
            command: None,
        });
        vec![Effect::Begin {
            step: index,
            attempt: n,
            deadline_ms,
        }]
    }

    fn finish(
        &mut self,
        status: RunStatus,
        reason: Option<String>,
        skip_from: usize,
        now_ms: u64,
    ) -> Vec<Effect> {
        for s in self.steps.iter_mut().skip(skip_from) {
            if s.status == StepStatus::Pending {
                s.status = StepStatus::Skipped;
            }
        }
        self.status = status;
        self.reason = reason;
        self.ended_ms = Some(now_ms);
        vec![Effect::Finished(status)]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::auth::Role;
    use crate::runbook::config::{Step, StepAction};

    fn step(id: &str, retries: u32, on_failure: OnFailure, action: StepAction) -> Step {
        Step {
            phase: crate::runbook::config::Phase::Recover,
            id: id.into(),
            timeout_ms: 1_000,
            retries,
            on_failure,
            action,
        }
    }

    fn command(id: &str) -> Command {
        watchstand_shared::command::CommandKey::from_seed([3; 32]).sign(
            watchstand_shared::command::UnsignedCommand {
                site: "s".into(),
                agent: "edge-1".into(),
                command_id: id.into(),
                run_id: "9".into(),
                step: 1,
                action: "promote".into(),
                args: BTreeMap::new(),
                issued_ms: 0,
                expires_ms: 1_000,
                nonce: "00".repeat(16),
            },
        )
    }

    fn book() -> Runbook {
        let promote = StepAction::AgentAction {
            agent: "edge-1".into(),
            action: "promote".into(),
            args: BTreeMap::new(),
        };
        Runbook {
            id: "failover".into(),
            service: "shop".into(),
            description: String::new(),
            on_incident: None,
            manual: true,
            steps: vec![
                step(
                    "approve",
                    0,
                    OnFailure::Abort,
                    StepAction::Approval {
                        role: Role::Operator,
                    },
                ),
                step("promote", 1, OnFailure::Abort, promote),
                step(
                    "tell",
                    0,
                    OnFailure::Continue,
                    StepAction::Notify {
                        webhook: "ops".into(),
                        message: "x".into(),
                    },
                ),
                step(
                    "confirm",
                    0,
                    OnFailure::Abort,
                    StepAction::WaitFor {
                        service: "shop".into(),
                        hold_ms: 100,
                    },
                ),
            ],
        }
    }

    fn ok() -> Outcome {
        Outcome::Succeeded {
            detail: "ok".into(),
        }
    }

    fn fail() -> Outcome {
        Outcome::Failed {
            reason: "exit 1".into(),
        }
    }

    fn statuses(run: &Run) -> Vec<StepStatus> {
        run.steps.iter().map(|s| s.status).collect()
    }

    #[test]
    fn a_run_walks_every_step_and_retries_what_may_be_retried() {
        let b = book();
        let (mut run, fx) = Run::start(7, &b, Trigger::Manual { by: "ana".into() }, 1_000);
        assert_eq!(
            fx,
            [Effect::Begin {
                step: 0,
                attempt: 1,
                deadline_ms: 2_000
            }]
        );
        assert_eq!(
            run.record(&b, 0, 1, ok(), 1_100),
            Ok(vec![Effect::Begin {
                step: 1,
                attempt: 1,
                deadline_ms: 2_100
            }])
        );
        run.note_command(1, 1, command("c-1")).expect("current");
        // First attempt fails, the one retry begins.
        assert_eq!(
            run.record(&b, 1, 1, fail(), 1_200),
            Ok(vec![Effect::Begin {
                step: 1,
                attempt: 2,
                deadline_ms: 2_200
            }])
        );
        assert_eq!(run.steps[1].attempts[0].command_id.as_deref(), Some("c-1"));
        assert_eq!(
            run.record(&b, 1, 2, ok(), 1_300),
            Ok(vec![Effect::Begin {
                step: 2,
                attempt: 1,
                deadline_ms: 2_300
            }])
        );
        // A failed notify with on_failure = continue does not stop the run.
        assert_eq!(
            run.record(&b, 2, 1, Outcome::TimedOut, 2_300),
            Ok(vec![Effect::Begin {
                step: 3,
                attempt: 1,
                deadline_ms: 3_300
            }])
        );
        assert_eq!(
            run.record(&b, 3, 1, ok(), 2_500),
            Ok(vec![Effect::Finished(RunStatus::Succeeded)])
        );
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.ended_ms, Some(2_500));
        assert_eq!(
            statuses(&run),
            [
                StepStatus::Succeeded,
                StepStatus::Succeeded,
                StepStatus::Failed,
                StepStatus::Succeeded
            ]
        );
        assert_eq!(run.steps[1].attempts.len(), 2);
    }

    #[test]
    fn retries_run_out_and_abort_the_run_skipping_the_rest() {
        let b = book();
        let (mut run, _) = Run::start(1, &b, Trigger::Incident { incident: 3 }, 0);
        run.record(&b, 0, 1, ok(), 10).expect("current");
        run.record(&b, 1, 1, fail(), 20).expect("current");
        let fx = run
            .record(&b, 1, 2, Outcome::TimedOut, 1_020)
            .expect("current");
        assert_eq!(fx, [Effect::Finished(RunStatus::Failed)]);
        assert_eq!(
            run.reason.as_deref(),
            Some("step \"promote\" failed after 2 attempts: timed out")
        );
        assert_eq!(
            statuses(&run),
            [
                StepStatus::Succeeded,
                StepStatus::Failed,
                StepStatus::Skipped,
                StepStatus::Skipped
            ]
        );
    }

    #[test]
    fn a_rejected_approval_ends_the_run_without_a_retry() {
        let mut b = book();
        b.steps[0].retries = 3;
        let (mut run, _) = Run::start(1, &b, Trigger::Manual { by: "ana".into() }, 0);
        let fx = run
            .record(&b, 0, 1, Outcome::Rejected { by: "bob".into() }, 5)
            .expect("current");
        assert_eq!(fx, [Effect::Finished(RunStatus::Failed)]);
        assert_eq!(
            run.reason.as_deref(),
            Some("step \"approve\" failed after 1 attempt: rejected by bob")
        );
        assert_eq!(run.steps[0].attempts.len(), 1);
    }

    #[test]
    fn stale_and_repeated_outcomes_change_nothing() {
        let b = book();
        let (mut run, _) = Run::start(1, &b, Trigger::Manual { by: "ana".into() }, 0);
        run.record(&b, 0, 1, ok(), 10).expect("current");
        let before = run.clone();
        // The approval answered twice, a late timer for it, a future step, a wrong attempt.
        assert_eq!(
            run.record(&b, 0, 1, ok(), 11),
            Err(Stale::NotCurrent {
                step: 0,
                attempt: 1
            })
        );
        assert_eq!(
            run.record(&b, 0, 1, Outcome::TimedOut, 1_000),
            Err(Stale::NotCurrent {
                step: 0,
                attempt: 1
            })
        );
        assert_eq!(
            run.record(&b, 2, 1, ok(), 12),
            Err(Stale::NotCurrent {
                step: 2,
                attempt: 1
            })
        );
        assert_eq!(
            run.record(&b, 1, 2, ok(), 12),
            Err(Stale::NotCurrent {
                step: 1,
                attempt: 2
            })
        );
        assert_eq!(run, before);
    }

    #[test]
    fn cancelling_ends_the_current_attempt_and_only_once() {
        let b = book();
        let (mut run, _) = Run::start(1, &b, Trigger::Manual { by: "ana".into() }, 0);
        run.record(&b, 0, 1, ok(), 10).expect("current");
        assert_eq!(
            run.cancel("bob", 50),
            Ok(vec![Effect::Finished(RunStatus::Cancelled)])
        );
        assert_eq!(
            run.steps[1].attempts[0].outcome,
            Some(Outcome::Cancelled { by: "bob".into() })
        );
        assert_eq!(
            statuses(&run),
            [
                StepStatus::Succeeded,
                StepStatus::Cancelled,
                StepStatus::Skipped,
                StepStatus::Skipped
            ]
        );
        assert_eq!(run.cancel("bob", 60), Err(Stale::RunOver(1, "cancelled")));
        assert_eq!(
            run.record(&b, 1, 1, ok(), 70),
            Err(Stale::RunOver(1, "cancelled"))
        );
        assert_eq!(run.current(), None);
    }

    #[test]
    fn a_skipped_run_has_no_attempts_and_is_final() {
        let b = book();
        let run = Run::skipped(
            3,
            &b,
            Trigger::Manual { by: "ana".into() },
            "run 2 in progress".into(),
            40,
        );
        assert_eq!(run.status, RunStatus::Skipped);
        assert!(run.status.is_final());
        assert_eq!(run.current(), None);
        assert!(run
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Skipped && s.attempts.is_empty()));
        assert_eq!("skipped".parse::<RunStatus>(), Ok(RunStatus::Skipped));
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn a_run_round_trips_through_its_stored_form() {
        let b = book();
        let (mut run, _) = Run::start(9, &b, Trigger::Incident { incident: 4 }, 0);
        run.record(&b, 0, 1, ok(), 10).expect("current");
        run.note_command(1, 1, command("c-9")).expect("current");
        assert_eq!(run.awaiting("c-9").map(|(i, _)| i), Some(1));
        assert!(run.awaiting("c-1").is_none());
        let bytes = serde_json::to_vec(&run).expect("serialises");
        let back: Run = serde_json::from_slice(&bytes).expect("deserialises");
        assert_eq!(back, run);
        assert_eq!(
            back.current().map(|(i, a)| (i, a.command_id.clone())),
            Some((1, Some("c-9".into())))
        );
    }
}
