//! The engine task's drill state: drill runs in progress, the next scheduled time of each drill,
//! and the drill marks the incident engine sees.
//!
//! - **Start** (operator or schedule): skipped with the reason when another drill of the
//!   service is in progress or the service has an active incident; otherwise the drill run is
//!   stored, then the runbook's drill book is started with `Trigger::Drill`.
//! - **Runbook runs feed the drill**: every committed change of a drill-triggered run is looked
//!   at after the event that caused it (`drill_updates`): the first inject's start becomes the
//!   drill window's start; when the drill book ends without its restore steps all succeeded
//!   the restore book runs alone; then the drill settles (confirmation period + the probes'
//!   hold time) and is measured from the store.
//! - **`max_duration`** cancels the drill book (the restore book then runs) and the verdict is
//!   `aborted` with the reason.
//! - **Restart**: drill runs stored in progress carry on; a runbook run that ended while the
//!   collector was down is looked at once at start.

use std::collections::{BTreeMap, HashMap};

use watchstand_shared::time::now_ms;

use super::Task;
use crate::config::catalogue::Service;
use crate::drill::measure::{self, IncidentLine, Outcome, SlaEffect, StepLine, Targets};
use crate::drill::run::{DrillRun, DrillStatus, DrillTrigger};
use crate::drill::{Drill, DrillStore, Review};
use crate::incident::record::IncidentStore;
use crate::runbook::config::{drill_book_id, restore_book_id};
use crate::runbook::run::{Run, RunStatus, StepStatus, Trigger};
use crate::runbook::store::RunStore;
use crate::runbook::{Phase, Runbook};
use crate::store::{Store, StoreError};

/// Why a drill action failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// No such drill.
    #[error("drill {0:?} not found")]
    UnknownDrill(String),
    /// No such drill run.
    #[error("drill run {0} not found")]
    RunNotFound(u64),
    /// Not finished yet.
    #[error("drill run {0} is not finished; review it once it is")]
    NotFinished(u64),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runbook side refused.
    #[error(transparent)]
    Runbook(#[from] super::RunbookError),
    /// The engine task is not running.
    #[error("the engine is not running")]
    EngineStopped,
}

/// Where a drill action's outcome goes.
pub type DrillReply = tokio::sync::oneshot::Sender<Result<DrillRun, DrillError>>;

/// What an operator can do to drills.
#[derive(Debug)]
pub enum DrillAction {
    /// Start drill `drill` now (a skipped run when it may not start).
    Start {
        /// Drill id.
        drill: String,
        /// Who.
        by: String,
        /// The drill run as stored.
        reply: DrillReply,
    },
    /// Record the review of finished drill run `run`.
    Review {
        /// Drill run id.
        run: u64,
        /// The review.
        review: Review,
        /// The drill run as stored.
        reply: DrillReply,
    },
}

/// The drill part of the engine task's state.
#[derive(Debug)]
pub(super) struct Drills {
    defs: BTreeMap<String, Drill>,
    store: DrillStore,
    /// Drill runs in progress (running, restoring, settling), by id.
    active: BTreeMap<u64, DrillRun>,
    next_id: u64,
    /// Next scheduled start per drill, epoch ms.
    next_fire: BTreeMap<String, u64>,
    /// Drill-triggered runbook runs changed by the current event, to look at after it.
    pub(super) updates: Vec<Run>,
    /// Runbook runs to look at once at start (they may have ended while the collector was down).
    resume: Vec<u64>,
}

impl Drills {
    /// The drills of the config and the drill runs stored in `store`; schedules from `now_ms`.
    ///
    /// # Errors
    /// Store failure.
    pub(super) fn load(drills: &[Drill], store: &Store, now_ms: u64) -> Result<Self, StoreError> {
        let ds = DrillStore::new(store.clone());
        let active: BTreeMap<u64, DrillRun> = ds
            .all()?
            .into_iter()
            .filter(|r| r.status.is_active())
            .map(|r| (r.id, r))
            .collect();
        let resume = active
            .values()
            .flat_map(|r| [r.run, r.restore_run])
            .flatten()
            .collect();
        Ok(Self {
            next_fire: drills
                .iter()
                .filter_map(|d| Some((d.id.clone(), d.schedule.as_ref()?.next_after(now_ms)?)))
                .collect(),
            defs: drills.iter().map(|d| (d.id.clone(), d.clone())).collect(),
            next_id: ds.next_id()?,
            store: ds,
            active,
            updates: Vec::new(),
            resume,
        })
    }

    /// The scheduled drills due at `now` (the caller's clock: the engine's, or a test's virtual
    /// one) with their planned times; each one's next time moves past `now`, so a drill fires
    /// once per planned time, and once only after a gap that skipped several.
    pub(super) fn due(&mut self, now: u64) -> Vec<(String, u64)> {
        let due: Vec<(String, u64)> = self
            .next_fire
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(d, t)| (d.clone(), *t))
            .collect();
        for (drill, _) in &due {
            let next = self
                .defs
                .get(drill)
                .and_then(|d| d.schedule.as_ref()?.next_after(now));
            match next {
                Some(n) => self.next_fire.insert(drill.clone(), n),
                None => self.next_fire.remove(drill),
            };
        }
        due
    }

    /// When the task must wake next for a schedule, an abort or the end of settling.
    pub(super) fn next_due(&self) -> Option<u64> {
        let runs = self.active.values().filter_map(|r| match r.status {
            DrillStatus::Running if r.aborted.is_none() => {
                r.max_duration_ms.map(|m| r.started_ms.saturating_add(m))
            }
            DrillStatus::Settling => r.settle_until_ms,
            _ => None,
        });
        runs.chain(self.next_fire.values().copied()).min()
    }

    /// Whether drill run `id` notifies (`notify = true`); a drill run not in progress does not.
    pub(super) fn notifies(&self, id: u64) -> bool {
        self.active.get(&id).is_some_and(|r| r.notify)
    }

    /// The services under drill: service → (drill run, notify).
    fn marks(&self) -> HashMap<String, (u64, bool)> {
        self.active
            .values()
            .map(|r| (r.service.clone(), (r.id, r.notify)))
            .collect()
    }
}

/// The step lines of `run` with the phases of `book`.
fn step_lines(run: &Run, book: Option<&Runbook>) -> Vec<StepLine> {
    run.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let started_ms = s.attempts.first().map(|a| a.started_ms);
            let ended_ms = s.attempts.last().and_then(|a| a.ended_ms);
            let last = s.attempts.last().and_then(|a| a.outcome.as_ref());
            let detail = last.map(crate::runbook::Outcome::text).unwrap_or_default();
            let rpo = match last {
                Some(crate::runbook::Outcome::RpoChecked { reading, .. }) => Some(reading.clone()),
                _ => None,
            };
            StepLine {
                run: run.id,
                id: s.id.clone(),
                phase: book
                    .and_then(|b| b.steps.get(i))
                    .map_or("recover", |st| st.phase.as_str())
                    .to_owned(),
                kind: s.kind.clone(),
                status: serde_json::to_value(s.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                started_ms,
                ended_ms,
                duration_s: started_ms.zip(ended_ms).map(|(a, b)| measure::secs(a, b)),
                attempts: s.attempts.len(),
                detail,
                rpo,
            }
        })
        .collect()
}

/// The longest time a result of `service` is held (2 × its probes' largest recent interval).
fn hold_ms(store: &Store, service: &Service, now: u64) -> u64 {
    let mut longest = 0;
    for p in &service.probes {
        if let Ok(obs) = store.observations(&p.agent, &p.probe, now.saturating_sub(600_000), now) {
            longest = obs
                .iter()
                .map(|o| o.interval_ms)
                .max()
                .unwrap_or(0)
                .max(longest);
        }
    }
    2 * longest
}

/// Measures drill run `d` from the store (blocking).
fn measure_run(
    store: &Store,
    service: &Service,
    d: &DrillRun,
    books: (Option<&Runbook>, Option<&Runbook>),
) -> Result<Outcome, StoreError> {
    let targets = Targets {
        name: service.name.clone(),
        criticality: format!("{:?}", service.criticality).to_lowercase(),
        rto_s: service.rto.as_millis() as f64 / 1e3,
        rpo_s: service.rpo.as_millis() as f64 / 1e3,
    };
    let end = d.settle_until_ms.or(d.ended_ms).unwrap_or_else(now_ms);
    let runs = RunStore::new(store.clone());
    let mut steps = Vec::new();
    if let Some(r) = d.run.map(|id| runs.get(id)).transpose()?.flatten() {
        steps.extend(step_lines(&r, books.0));
    }
    if let Some(r) = d.restore_run.map(|id| runs.get(id)).transpose()?.flatten() {
        steps.extend(step_lines(&r, books.1));
    }
    let mut deviations = d.deviations.clone();
    for s in &steps {
        if s.status != "succeeded" {
            deviations.push(format!(
                "step {:?} ({}) {}: {}",
                s.id, s.phase, s.status, s.detail
            ));
        } else if s.attempts > 1 {
            deviations.push(format!("step {:?} needed {} attempts", s.id, s.attempts));
        }
    }
    let (recovery, first_down_ms, sla) = match d.inject_ms {
        Some(inject) => {
            let span = measure::span(inject, end);
            let inputs = crate::availability::probe_inputs(store, service, span)?;
            let segments = crate::sla::service_segments(&service.sla, &inputs, &[], span);
            let rec = measure::recovery(&segments, d.confirm_ms);
            let first_down = inputs
                .iter()
                .flat_map(|i| i.observations.iter())
                .filter(|o| {
                    o.at_ms >= inject
                        && o.at_ms < end
                        && o.state == watchstand_shared::wire::v1::ProbeState::Down
                })
                .map(|o| o.at_ms)
                .min();
            let report = crate::availability::service_report(store, service, span)?;
            let sla = SlaEffect {
                from_ms: span.from_ms,
                to_ms: span.to_ms,
                drill_s: report.drill_s,
                downtime_s: report.downtime_s,
                unmonitored_s: report.unmonitored_s,
                uptime_s: report.uptime_s,
            };
            (rec, first_down, Some(sla))
        }
        None => (measure::Recovery::default(), None, None),
    };
    let incidents: Vec<IncidentLine> = IncidentStore::new(store.clone())
        .all()?
        .into_iter()
        .filter(|i| {
            i.service == d.service
                && d.inject_ms.is_some_and(|t| i.detected_ms >= t)
                && i.detected_ms <= end
        })
        .map(|i| IncidentLine {
            id: i.id,
            rule: i.rule.key_part(),
            detected_ms: i.detected_ms,
            resolved_ms: i.resolved_ms,
            drill: i.drill.is_some(),
            notified: i.last_notified_ms.is_some(),
        })
        .collect();
    let incident_ms = incidents.iter().map(|i| i.detected_ms).min();
    let rto_ms = service.rto.as_millis();
    let rpo = measure::rpo_result(&steps, service.rpo.as_millis());
    let (verdict, reason) =
        measure::judge(d.aborted.as_deref(), &recovery, d.inject_ms, rto_ms, &rpo);
    let since = |t: Option<u64>| d.inject_ms.zip(t).map(|(a, b)| measure::secs(a, b));
    Ok(Outcome {
        targets,
        inject_ms: d.inject_ms,
        first_down_ms,
        detect_s: since(first_down_ms),
        incident_ms,
        detect_incident_s: since(incident_ms),
        recovered_ms: recovery.recovered_ms,
        recover_s: since(recovery.recovered_ms),
        confirm_s: d.confirm_ms as f64 / 1e3,
        rto_met: d
            .inject_ms
            .zip(recovery.recovered_ms)
            .is_some_and(|(a, b)| b.saturating_sub(a) <= rto_ms),
        non_up_s: recovery.non_up_ms as f64 / 1e3,
        rpo,
        steps,
        incidents,
        sla,
        deviations,
        verdict,
        reason,
    })
}

impl Task {
    /// Gives the incident engine the services under drill now.
    fn sync_drill_marks(&mut self) {
        let marks = self.drills.marks();
        if let Some(e) = self.engine.as_mut() {
            e.set_drills(marks);
        }
    }

    /// Stores drill run `d` (blocking pool) and keeps it in the active map while in progress.
    async fn put_drill(&mut self, d: DrillRun) -> Result<DrillRun, DrillError> {
        let store = self.drills.store.clone();
        let copy = d.clone();
        tokio::task::spawn_blocking(move || store.put(&copy))
            .await
            .map_err(|_| DrillError::EngineStopped)??;
        if d.status.is_active() {
            self.drills.active.insert(d.id, d.clone());
        } else {
            self.drills.active.remove(&d.id);
        }
        self.sync_drill_marks();
        Ok(d)
    }

    /// At start: marks for the incident engine, and runbook runs of drills in progress that
    /// may have ended while the collector was down.
    pub(super) async fn resume_drills(&mut self) {
        self.sync_drill_marks();
        let runs = RunStore::new(self.deps.store.clone());
        for id in std::mem::take(&mut self.drills.resume) {
            if let Ok(Some(r)) = runs.get(id) {
                self.drills.updates.push(r);
            }
        }
        // A crash between storing a runbook run and storing its id in the drill: the run is
        // found by its trigger (resuming it may already have ended it).
        let unlinked = |d: &DrillRun| {
            (d.status == DrillStatus::Running && d.run.is_none())
                || (d.status == DrillStatus::Restoring && d.restore_run.is_none())
        };
        if self.drills.active.values().any(unlinked) {
            let found = match runs.all() {
                Ok(all) => all,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot read runbook runs to resume drills.");
                    Vec::new()
                }
            };
            for r in found {
                let Trigger::Drill { drill_run } = r.trigger else {
                    continue;
                };
                let Some(mut d) = self.drills.active.get(&drill_run).cloned() else {
                    continue;
                };
                let main = r.runbook == drill_book_id(&d.runbook);
                let restore = r.runbook == restore_book_id(&d.runbook);
                match d.status {
                    DrillStatus::Running if main && d.run.is_none() => d.run = Some(r.id),
                    DrillStatus::Restoring if restore && d.restore_run.is_none() => {
                        d.restore_run = Some(r.id);
                    }
                    _ => continue,
                }
                tracing::info!(
                    drill_run,
                    run = r.id,
                    "Drill resumes with its runbook run found by its trigger."
                );
                if let Err(e) = self.put_drill(d).await {
                    tracing::error!(drill_run, error = %e, "Cannot store a drill run.");
                }
                self.drills.updates.push(r);
            }
        }
        let orphans: Vec<DrillRun> = self
            .drills
            .active
            .values()
            .filter(|d| unlinked(d))
            .cloned()
            .collect();
        for mut d in orphans {
            if d.status == DrillStatus::Running {
                // Its runbook never started: nothing was injected.
                d.aborted = Some("the collector stopped before the runbook started".to_owned());
                self.settle(d).await;
            } else {
                // Its restore run never started: start it now.
                tracing::info!(
                    drill_run = d.id,
                    "Drill starts its restore steps after a restart."
                );
                self.start_restore(d).await;
            }
        }
        self.drill_updates().await;
    }

    /// An operator's drill action.
    pub(super) async fn drill_action(&mut self, action: DrillAction) {
        match action {
            DrillAction::Start { drill, by, reply } => {
                let out = self
                    .start_drill(&drill, DrillTrigger::Manual { by }, now_ms())
                    .await;
                if reply.send(out).is_err() {
                    tracing::debug!("Drill started after its request was dropped.");
                }
            }
            DrillAction::Review { run, review, reply } => {
                let out = self.review(run, review).await;
                if reply.send(out).is_err() {
                    tracing::debug!("Drill review stored after its request was dropped.");
                }
            }
        }
        self.drill_updates().await;
    }

    async fn review(&mut self, id: u64, review: Review) -> Result<DrillRun, DrillError> {
        let store = self.drills.store.clone();
        let found = tokio::task::spawn_blocking(move || store.get(id))
            .await
            .map_err(|_| DrillError::EngineStopped)??;
        let mut d = found.ok_or(DrillError::RunNotFound(id))?;
        if d.status != DrillStatus::Finished {
            return Err(DrillError::NotFinished(id));
        }
        d.review = Some(review);
        self.put_drill(d).await
    }

    /// Starts drill `id` at `now` (or stores it skipped with the reason).
    async fn start_drill(
        &mut self,
        id: &str,
        trigger: DrillTrigger,
        now: u64,
    ) -> Result<DrillRun, DrillError> {
        let def = self
            .drills
            .defs
            .get(id)
            .cloned()
            .ok_or_else(|| DrillError::UnknownDrill(id.to_owned()))?;
        let run_id = self.drills.next_id;
        self.drills.next_id += 1;
        let busy = self
            .drills
            .active
            .values()
            .find(|r| r.service == def.service)
            .map(|r| {
                format!(
                    "drill run {} of service {:?} is in progress",
                    r.id, def.service
                )
            });
        let incident = self.engine.as_ref().and_then(|e| {
            e.active()
                .filter(|i| i.service == def.service)
                .min_by_key(|i| i.id)
                .map(|i| {
                    format!(
                        "incident {} ({}) of service {:?} is open",
                        i.id,
                        i.rule.key_part(),
                        def.service
                    )
                })
        });
        let mut d = DrillRun {
            id: run_id,
            drill: def.id.clone(),
            service: def.service.clone(),
            runbook: def.runbook.clone(),
            scenario: def.scenario.clone(),
            participants: def.participants.clone(),
            confirm_ms: def.confirm_ms,
            max_duration_ms: def.max_duration_ms,
            notify: def.notify,
            trigger,
            status: DrillStatus::Running,
            started_ms: now,
            inject_ms: None,
            run: None,
            restore_run: None,
            aborted: None,
            skipped: None,
            deviations: Vec::new(),
            ended_ms: None,
            settle_until_ms: None,
            finished_ms: None,
            outcome: None,
            sealed_sha256: None,
            review: None,
        };
        if let Some(why) = busy.or(incident) {
            tracing::info!(drill = %def.id, run = run_id, reason = %why, "Drill skipped.");
            d.status = DrillStatus::Skipped;
            d.skipped = Some(why);
            d.ended_ms = Some(now);
            return self.put_drill(d).await;
        }
        tracing::info!(drill = %def.id, run = run_id, service = %def.service, "Drill started.");
        let d = self.put_drill(d).await?;
        match self
            .start_run(
                &drill_book_id(&def.runbook),
                Trigger::Drill { drill_run: run_id },
            )
            .await
        {
            Ok(run) => {
                let mut d = self.drills.active.get(&run_id).cloned().unwrap_or(d);
                d.run = Some(run.id);
                self.put_drill(d).await
            }
            Err(e) => {
                let mut d = d;
                d.aborted = Some(format!("the runbook could not start: {e}"));
                self.settle(d.clone()).await;
                Err(e.into())
            }
        }
    }

    /// Looks at the drill-triggered runbook runs changed since the last call.
    pub(super) async fn drill_updates(&mut self) {
        // Bounded: each update can start at most one restore run.
        for _ in 0..64 {
            let updates = std::mem::take(&mut self.drills.updates);
            if updates.is_empty() {
                return;
            }
            for run in updates {
                self.drill_run_changed(run).await;
            }
        }
    }

    async fn drill_run_changed(&mut self, run: Run) {
        let Trigger::Drill { drill_run } = run.trigger else {
            return;
        };
        let Some(mut d) = self.drills.active.get(&drill_run).cloned() else {
            return;
        };
        let is_main = d.run == Some(run.id) || (d.run.is_none() && d.restore_run != Some(run.id));
        let book = self.runbooks.book(&run.runbook);
        let mut changed = false;
        if is_main && d.run.is_none() {
            d.run = Some(run.id);
            changed = true;
        }
        if is_main && d.inject_ms.is_none() {
            let inject = book.as_ref().and_then(|b| {
                b.steps
                    .iter()
                    .zip(&run.steps)
                    .filter(|(s, _)| s.phase == Phase::Inject)
                    .find_map(|(_, r)| r.attempts.first().map(|a| a.started_ms))
            });
            if inject.is_some() {
                d.inject_ms = inject;
                changed = true;
            }
        }
        if !run.status.is_final() {
            if changed {
                if let Err(e) = self.put_drill(d).await {
                    tracing::error!(drill_run, error = %e, "Cannot store a drill run.");
                }
            }
            return;
        }
        if is_main && d.status == DrillStatus::Running {
            if run.status == RunStatus::Failed {
                d.deviations.push(format!(
                    "runbook run {} failed: {}",
                    run.id,
                    run.reason.clone().unwrap_or_default()
                ));
            }
            let restored = book.as_ref().is_some_and(|b| {
                b.steps
                    .iter()
                    .zip(&run.steps)
                    .filter(|(s, _)| s.phase == Phase::Restore)
                    .all(|(_, r)| r.status == StepStatus::Succeeded)
            });
            let has_restore = self
                .runbooks
                .book(&restore_book_id(&d.runbook))
                .is_some_and(|b| !b.steps.is_empty());
            if !restored && has_restore {
                d.status = DrillStatus::Restoring;
                let d = match self.put_drill(d).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(drill_run, error = %e, "Cannot store a drill run.");
                        return;
                    }
                };
                tracing::info!(drill_run, "Drill runs its restore steps on their own.");
                self.start_restore(d).await;
                return;
            }
            self.settle(d).await;
            return;
        }
        if d.status == DrillStatus::Restoring && !is_main {
            if run.status != RunStatus::Succeeded {
                d.deviations.push(format!(
                    "restore run {} {}: {}",
                    run.id,
                    run.status.as_str(),
                    run.reason.clone().unwrap_or_default()
                ));
            }
            d.restore_run = Some(run.id);
            self.settle(d).await;
        }
    }

    /// Starts the restore book of drill `d` (stored `restoring`) and records its run.
    async fn start_restore(&mut self, d: DrillRun) {
        let drill_run = d.id;
        match self
            .start_run(&restore_book_id(&d.runbook), Trigger::Drill { drill_run })
            .await
        {
            Ok(r) => {
                let mut d = self.drills.active.get(&drill_run).cloned().unwrap_or(d);
                d.restore_run = Some(r.id);
                if let Err(e) = self.put_drill(d).await {
                    tracing::error!(drill_run, error = %e, "Cannot store a drill run.");
                }
            }
            Err(e) => {
                let mut d = d;
                d.deviations
                    .push(format!("the restore steps could not start: {e}"));
                self.settle(d).await;
            }
        }
    }

    /// The runbook part is over: the drill window stays open for the confirmation period and
    /// the probes' hold time, then the drill is measured.
    async fn settle(&mut self, mut d: DrillRun) {
        let now = now_ms();
        let service = self.deps.catalogue.get(&d.service).cloned();
        let store = self.deps.store.clone();
        let hold = match service {
            Some(s) => tokio::task::spawn_blocking(move || hold_ms(&store, &s, now))
                .await
                .unwrap_or(0),
            None => 0,
        };
        d.status = DrillStatus::Settling;
        d.ended_ms = Some(now);
        d.settle_until_ms = Some(now + d.confirm_ms + hold);
        tracing::info!(
            drill_run = d.id,
            settle_ms = d.confirm_ms + hold,
            "Drill runbook over; settling before it is measured."
        );
        if let Err(e) = self.put_drill(d).await {
            tracing::error!(error = %e, "Cannot store a drill run.");
        }
    }

    /// Schedules, aborts and measurements due at `now` (the engine passes its clock; tests a
    /// virtual one).
    pub(super) async fn drill_timer(&mut self, now: u64) {
        for (drill, planned_ms) in self.drills.due(now) {
            tracing::info!(drill = %drill, planned_ms, "Scheduled drill is due.");
            if let Err(e) = self
                .start_drill(&drill, DrillTrigger::Schedule { planned_ms }, now)
                .await
            {
                tracing::error!(drill = %drill, error = %e, "Cannot start a scheduled drill.");
            }
        }
        let over: Vec<DrillRun> = self
            .drills
            .active
            .values()
            .filter(|r| {
                r.status == DrillStatus::Running
                    && r.aborted.is_none()
                    && r.max_duration_ms
                        .is_some_and(|m| r.started_ms.saturating_add(m) <= now)
            })
            .cloned()
            .collect();
        for mut d in over {
            let why = format!(
                "max_duration of {} s reached",
                d.max_duration_ms.unwrap_or(0) / 1_000
            );
            tracing::warn!(drill_run = d.id, %why, "Drill aborted; restore runs.");
            d.aborted = Some(why);
            let run = d.run;
            if let Err(e) = self.put_drill(d.clone()).await {
                tracing::error!(error = %e, "Cannot store a drill run.");
                continue;
            }
            match run {
                Some(run) => {
                    if let Err(e) = self.cancel(run, "drill (max_duration)").await {
                        tracing::warn!(run, error = %e, "Cannot cancel the drill's runbook run.");
                    }
                }
                None => self.settle(d).await,
            }
        }
        let settled: Vec<DrillRun> = self
            .drills
            .active
            .values()
            .filter(|r| {
                r.status == DrillStatus::Settling && r.settle_until_ms.is_some_and(|t| t <= now)
            })
            .cloned()
            .collect();
        for d in settled {
            self.finish_drill(d).await;
        }
        self.drill_updates().await;
    }

    async fn finish_drill(&mut self, mut d: DrillRun) {
        let Some(service) = self.deps.catalogue.get(&d.service).cloned() else {
            return;
        };
        let store = self.deps.store.clone();
        let books = (
            self.runbooks.book(&drill_book_id(&d.runbook)),
            self.runbooks.book(&restore_book_id(&d.runbook)),
        );
        let copy = d.clone();
        let measured = tokio::task::spawn_blocking(move || {
            measure_run(
                &store,
                &service,
                &copy,
                (books.0.as_deref(), books.1.as_deref()),
            )
        })
        .await;
        match measured {
            Ok(Ok(outcome)) => {
                tracing::info!(drill_run = d.id, verdict = outcome.verdict.as_str(), reason = %outcome.reason, "Drill finished.");
                d.outcome = Some(outcome);
                d.status = DrillStatus::Finished;
                d.finished_ms = Some(now_ms());
                d.sealed_sha256 = Some(crate::report::continuity::content_hash(&d));
                if let Err(e) = self.put_drill(d).await {
                    tracing::error!(error = %e, "Cannot store a finished drill run.");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(drill_run = d.id, error = %e, "Cannot measure a drill; retrying.")
            }
            Err(e) => tracing::error!(drill_run = d.id, error = %e, "Drill measurement failed."),
        }
    }
}
