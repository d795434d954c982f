//! Failover drills: a runbook run in drill mode (its `inject` and `restore` steps included) on
//! a service, on schedule or by hand, one per service at a time, with the service's non-up
//! time classified `drill` (never downtime), its incidents kept but not paged, and a
//! continuity test report measured from the stored probe results (the report itself is
//! [`crate::report::continuity`]).
//!
//! - [`config`]: `[[drills]]` as written and validated (schedule, `max_duration`, `confirm`).
//! - [`run`]: one drill run, the durable record the engine task keeps, with the review filled
//!   in afterwards.
//! - [`measure`]: time to detect / recover, the RPO result and the verdict (the definitions).
//! - [`store`]: where drill runs are kept.
//! - [`summary`]: the yearly summary (was every critical service drilled within its interval).
//!
//! The engine side (starting, aborting, resuming, measuring) is `engine::drills`.

pub mod cli;
pub mod config;
pub mod measure;
pub mod run;
pub mod store;
pub mod summary;

pub use config::{Drill, RawDrill, Schedule};
pub use run::{DrillRun, DrillStatus, DrillTrigger, Review};
pub use store::DrillStore;

/// The drill windows of `service` among `runs` as SLA spans (an open window ends at `now_ms`).
pub fn spans(runs: &[DrillRun], service: &str, now_ms: u64) -> Vec<crate::sla::Span> {
    runs.iter()
        .filter(|r| r.service == service)
        .filter_map(DrillRun::window)
        .map(|(from_ms, to)| crate::sla::Span {
            from_ms,
            to_ms: to.unwrap_or(now_ms).max(from_ms),
        })
        .collect()
}
