//! Continuity runbooks: a service's recovery procedure as ordered steps that trigger from
//! incidents or by hand, one run per runbook at a time, every step and attempt on record.
//!
//! - [`config`]: `[[runbooks]]` as written and validated.
//! - [`run`]: one run as a pure state machine (steps, attempts, retries, `on_failure`,
//!   cancellation) that the engine drives and stores after every change.
//! - [`store`]: where runs are kept.
//! - [`exec`]: the executors of `http`, `exec` and `wait_for` steps (tasks that report one
//!   outcome back to the engine); approvals and notifications are done by the engine itself.
//! - [`agent_action`]: signed commands to agents (sign once per attempt, re-send until
//!   answered, the answer as an outcome).
//! - [`rpo`]: the `rpo_check` step (a recovery point read by http or exec, compared with the
//!   service's `rpo`).

pub mod agent_action;
pub mod config;
pub mod exec;
pub mod rpo;
pub mod run;
pub mod store;

pub use config::{IncidentTrigger, OnFailure, Phase, Runbook, Step, StepAction};
pub use run::{Effect, Outcome, Run, RunStatus, StepStatus, Trigger};
