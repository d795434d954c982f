//! The incident lifecycle: conditions in, incident records and notifications out.
//!
//! Per dedup key at most one active (open or acknowledged) incident. A breach with no active
//! incident opens one; a healthy period of `resolve_after` (not while flapping) resolves it; a
//! breach after that opens a new one with the same key. Flapping (see [`super::flapping`]) keeps
//! the incident open, marks it and holds notifications back. An incident whose cause is upstream
//! — an agent measuring the service is offline, or a service it depends on is down — is recorded
//! as inhibited and not notified.
//!
//! An incident resolved by hand while its condition still holds stays resolved: its key is
//! held (and the timeline says so) until the condition clears, and only a breach after that
//! opens a new incident — an operator's resolve is not overruled by the next evaluation.
//!
//! Every change is written with the notifications it causes in one flushed store batch; active
//! incidents are reloaded at start, so a restart never opens a second incident for a cause.

use std::collections::HashMap;

use serde_json::json;

use super::conditions::Condition;
use super::flapping::{self, FlapChange};
use super::policy::{IncidentPolicy, IncidentSettings, NotifyLate, Webhook};
use super::record::{Impact, Incident, IncidentStore, Notification};
use super::{IncidentState, Rule};
use crate::store::{Result, StoreBatch};

/// How long an outage found late is remembered for the timelines of window-rule incidents.
pub const LATE_MEMORY_MS: u64 = 3_600_000;

/// An outage found late in a service's data, remembered for the window-rule incidents (burn
/// rate, SLA) the same data may open.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FoundOutage {
    service: String,
    from_ms: u64,
    to_ms: Option<u64>,
    found_ms: u64,
}

/// A service's (depends_on, agents measuring it), for inhibition.
pub type Topology<'a> = dyn Fn(&str) -> (Vec<String>, Vec<String>) + 'a;

/// What an evaluation or an operator action did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Opened (id, key).
    Opened(u64, String),
    /// Resolved automatically.
    Resolved(u64, String),
    /// Flapping started.
    FlappingStarted(u64),
    /// Flapping stopped.
    FlappingStopped(u64),
    /// A notification was queued (incident id, event, receiver).
    Notified(u64, String, String),
    /// A notification was held back (flapping or inhibited).
    Held(u64, String),
    /// Recorded from late data (id, key); opened and maybe already resolved.
    FoundLate(u64, String),
}

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such incident.
    #[error("incident {0} not found")]
    NotFound(u64),
    /// It is resolved already.
    #[error("incident {0} is already resolved")]
    AlreadyResolved(u64),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The engine task is not running (the collector is stopping).
    #[error("the incident engine is not running")]
    EngineStopped,
}

/// The engine. Owned by the engine task ([`crate::engine`]); nothing else holds it.
pub struct Engine {
    store: IncidentStore,
    settings: IncidentSettings,
    policies: HashMap<String, IncidentPolicy>,
    webhooks: Vec<Webhook>,
    /// Active incidents by dedup key.
    active: HashMap<String, Incident>,
    /// Since when each active key has been healthy.
    healthy_since: HashMap<String, u64>,
    /// Flapping now, per key (kept without an incident too).
    flapping: HashMap<String, bool>,
    /// Incidents resolved by hand, by key, until an evaluation sees their condition clear.
    resolved_by_hand: HashMap<String, Incident>,
    next_id: u64,
    next_seq: u64,
    late_outages: Vec<FoundOutage>,
    /// Services being drilled now: service → (drill run, its incidents notify).
    drills: HashMap<String, (u64, bool)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active", &self.active.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the active incidents from `store`.
    ///
    /// # Errors
    /// Store failure.
    pub fn load(
        store: IncidentStore,
        settings: IncidentSettings,
        policies: HashMap<String, IncidentPolicy>,
        webhooks: Vec<Webhook>,
    ) -> Result<Self> {
        let (next_id, next_seq) = store.next_ids()?;
        let mut active = HashMap::new();
        let mut flapping = HashMap::new();
        let mut resolved_by_hand = HashMap::new();
        // Oldest first: a later incident of a key replaces what an earlier one said.
        let mut all = store.all()?;
        all.sort_by_key(|i| i.id);
        for i in all {
            if i.state.is_active() {
                resolved_by_hand.remove(&i.dedup_key);
                flapping.insert(i.dedup_key.clone(), i.flapping);
                active.insert(i.dedup_key.clone(), i);
            } else if i.held_until_clear {
                resolved_by_hand.insert(i.dedup_key.clone(), i);
            } else {
                resolved_by_hand.remove(&i.dedup_key);
            }
        }
        Ok(Self {
            store,
            settings,
            policies,
            webhooks,
            active,
            healthy_since: HashMap::new(),
            flapping,
            resolved_by_hand,
            next_id,
            next_seq,
            late_outages: Vec::new(),
            drills: HashMap::new(),
        })
    }

    /// The rules of `service` (defaults for agents and unknown services).
    pub fn policy(&self, service: &str) -> IncidentPolicy {
        self.policies
            .get(service)
            .cloned()
            .unwrap_or_else(|| self.settings.defaults.clone())
    }

    /// Global settings.
    pub fn settings(&self) -> &IncidentSettings {
        &self.settings
    }

    /// The services being drilled now (the engine task sets them whenever a drill starts or
    /// ends): service → (drill run, whether its incidents notify).
    pub fn set_drills(&mut self, drills: HashMap<String, (u64, bool)>) {
        self.drills = drills;
    }

    /// A drill incident whose drill does not (or no longer) notify: held back.
    fn drill_holds(&self, incident: &Incident) -> bool {
        incident.drill.is_some_and(|run| {
            !self
                .drills
                .get(&incident.service)
                .is_some_and(|(r, notify)| *r == run && *notify)
        })
    }

    /// Active incidents.
    pub fn active(&self) -> impl Iterator<Item = &Incident> {
        self.active.values()
    }

    fn notify(
        &mut self,
        batch: &mut StoreBatch,
        incident: &mut Incident,
        event: &str,
        now: u64,
        changes: &mut Vec<Change>,
    ) {
        let body = json!({
            "dedup_key": incident.dedup_key,
            "event": event,
            "incident": {
                "id": incident.id,
                "service": incident.service,
                "agent": incident.agent,
                "metric": incident.metric,
                "rule": incident.rule,
                "priority": incident.priority,
                "state": incident.state,
                "flapping": incident.flapping,
                "detected_ms": incident.detected_ms,
                "acknowledged_ms": incident.acknowledged_ms,
                "acknowledged_by": incident.acknowledged_by,
                "resolved_ms": incident.resolved_ms,
                "resolved_by": incident.resolved_by,
                "resolution_note": incident.resolution_note,
                "time_to_restore_s": incident.time_to_restore_s(),
                "impact": incident.impact,
                "summary": incident.summary,
                "late": incident.late,
                "found_late_ms": incident.found_late_ms,
                "drill": incident.drill,
            },
            "sent_ms": now,
        });
        let mut receivers = Vec::new();
        for w in &self.webhooks {
            if !w.priorities.is_empty() && !w.priorities.contains(&incident.priority) {
                continue;
            }
            let n = Notification {
                seq: self.next_seq,
                receiver: w.name.clone(),
                event: event.to_owned(),
                body: body.clone(),
                attempts: 0,
                next_at_ms: now,
                last_error: None,
            };
            self.next_seq += 1;
            IncidentStore::enqueue(batch, &n);
            IncidentStore::used_seqs_below(batch, self.next_seq);
            receivers.push(w.name.clone());
            changes.push(Change::Notified(
                incident.id,
                event.to_owned(),
                w.name.clone(),
            ));
        }
        incident.last_notified_ms = Some(now);
        if !receivers.is_empty() {
            incident.push(
                now,
                "notification_queued",
                None,
                format!("{event} → {}", receivers.join(", ")),
            );
        }
    }

    /// An operator's action on `incident` notifies like the incident's own events: not when it
    /// is inhibited, nor when it is a drill incident whose drill does not notify (its opening
    /// was not paged either, so its acknowledgement or resolution is not).
    fn notify_unless_held(
        &mut self,
        batch: &mut StoreBatch,
        incident: &mut Incident,
        event: &str,
        now: u64,
        changes: &mut Vec<Change>,
    ) {
        if incident.inhibited {
            return;
        }
        if self.drill_holds(incident) {
            incident.push(now, "notification_held", None, "drill incident");
            changes.push(Change::Held(incident.id, event.to_owned()));
            return;
        }
        self.notify(batch, incident, event, now, changes);
    }

    /// A new open incident for `c`, detected at `detected_ms`, with the next id.
    fn new_incident(
        &mut self,
        c: &Condition,
        detected_ms: u64,
        flapping: bool,
        inhibited_by: Option<String>,
    ) -> Incident {
        let incident = Incident {
            id: self.next_id,
            dedup_key: c.key.clone(),
            service: c.service.clone(),
            agent: c.agent.clone(),
            metric: c.rule.metric().map(str::to_owned),
            rule: c.rule.clone(),
            priority: c.priority,
            state: IncidentState::Open,
            flapping,
            inhibited: inhibited_by.is_some(),
            inhibited_by,
            detected_ms,
            acknowledged_ms: None,
            acknowledged_by: None,
            resolved_ms: None,
            resolved_by: None,
            resolution_note: None,
            impact: Impact {
                services: if c.service.is_empty() {
                    Vec::new()
                } else {
                    vec![c.service.clone()]
                },
                scope: if c.partial {
                    "partial".into()
                } else {
                    "full".into()
                },
            },
            summary: c.summary.clone(),
            last_notified_ms: None,
            timeline: Vec::new(),
            late: false,
            found_late_ms: None,
            drill: None,
            held_until_clear: false,
        };
        self.next_id += 1;
        incident
    }

    /// Adds to the timeline of a window-rule incident of a service the outages found late in its
    /// data within the last hour, at their own times, so the record says when it really happened.
    fn mark_late_data(&self, incident: &mut Incident, now: u64) {
        let service = incident.service.clone();
        for o in self
            .late_outages
            .iter()
            .filter(|o| o.service == service && now.saturating_sub(o.found_ms) <= LATE_MEMORY_MS)
        {
            incident.push(
                o.from_ms,
                "outage_in_data",
                None,
                format!("down from the data (found late at {})", o.found_ms),
            );
            if let Some(to) = o.to_ms {
                incident.push(to, "outage_in_data_ended", None, "");
            }
        }
        incident.timeline.sort_by_key(|e| e.at_ms);
    }

    /// Why `c` should not notify: an agent measuring its service is offline, or a service it
    /// depends on has an active service-down incident.
    fn inhibitor(
        &self,
        c: &Condition,
        offline_agents: &[String],
        depends_on: &[String],
        agents_of: &[String],
    ) -> Option<String> {
        if matches!(c.rule, Rule::AgentOffline) {
            return None;
        }
        if let Some(a) = agents_of.iter().find(|a| offline_agents.contains(a)) {
            return Some(format!("agent {a} offline"));
        }
        depends_on
            .iter()
            .find(|parent| {
                self.active
                    .contains_key(&format!("{}:{parent}", Rule::ServiceDown.key_part()))
            })
            .map(|parent| format!("service {parent} down"))
    }

    /// Applies the conditions evaluated at `now`; commits the changes and their notifications.
    /// `topology(service)` gives (depends_on, agents measuring it); `offline_agents` the agents
    /// offline now.
    ///
    /// # Errors
    /// Store failure (nothing of this evaluation is kept; the next one retries).
    pub fn evaluate(
        &mut self,
        now: u64,
        conditions: &[Condition],
        offline_agents: &[String],
        topology: &Topology<'_>,
    ) -> Result<Vec<Change>> {
        let mut batch = StoreBatch::default();
        let mut changes = Vec::new();
        // Parents first, so a child sees its parent's incident in this same evaluation.
        let mut ordered: Vec<&Condition> = conditions.iter().collect();
        ordered.sort_by_key(|c| {
            (
                !matches!(c.rule, Rule::AgentOffline),
                !matches!(c.rule, Rule::ServiceDown),
            )
        });
        for c in ordered {
            let policy = self.policy(&c.service);
            // Flap detection (service down only).
            let was_flapping = self.flapping.get(&c.key).copied().unwrap_or(false);
            let detect = policy.flapping.enabled && matches!(c.rule, Rule::ServiceDown);
            let tail = &c.history[c.history.len().saturating_sub(policy.flapping.window)..];
            let (flapping, flap_change) = if detect {
                flapping::update(
                    was_flapping,
                    tail,
                    policy.flapping.high_pct,
                    policy.flapping.low_pct,
                )
            } else {
                (false, was_flapping.then_some(FlapChange::Stopped))
            };
            // An incident is not resolved while its recent history is still unsettled (more
            // state changes than the low threshold), so a fast flap cannot close and reopen it
            // before flapping is recognised.
            let settled = !detect || flapping::percent_change(tail) <= policy.flapping.low_pct;
            self.flapping.insert(c.key.clone(), flapping);

            if let Some(mut incident) = self.active.remove(&c.key) {
                let mut dirty = false;
                match flap_change {
                    Some(FlapChange::Started) => {
                        incident.flapping = true;
                        incident.push(
                            now,
                            "flapping_started",
                            None,
                            "notifications held while it flaps",
                        );
                        changes.push(Change::FlappingStarted(incident.id));
                        dirty = true;
                    }
                    Some(FlapChange::Stopped) => {
                        incident.flapping = false;
                        incident.push(now, "flapping_stopped", None, "");
                        changes.push(Change::FlappingStopped(incident.id));
                        dirty = true;
                    }
                    None => {}
                }
                if c.breached {
                    self.healthy_since.remove(&c.key);
                    let repeat = policy.repeat_interval_ms;
                    if incident.state == IncidentState::Open
                        && repeat > 0
                        && !incident.inhibited
                        && !self.drill_holds(&incident)
                        && !incident.flapping
                        && incident
                            .last_notified_ms
                            .is_some_and(|t| now.saturating_sub(t) >= repeat)
                    {
                        self.notify(&mut batch, &mut incident, "repeat", now, &mut changes);
                        dirty = true;
                    }
                } else {
                    let since = *self.healthy_since.entry(c.key.clone()).or_insert(now);
                    if !incident.flapping
                        && settled
                        && now.saturating_sub(since) >= policy.resolve_after_ms
                    {
                        incident.state = IncidentState::Resolved;
                        incident.resolved_ms = Some(now);
                        incident.resolved_by = Some("auto".into());
                        incident.resolution_note = Some(format!(
                            "healthy for {} s",
                            now.saturating_sub(since) / 1_000
                        ));
                        incident.push(now, "resolved", Some("auto"), "healthy period passed");
                        changes.push(Change::Resolved(incident.id, c.key.clone()));
                        self.healthy_since.remove(&c.key);
                        if incident.inhibited || self.drill_holds(&incident) {
                            changes.push(Change::Held(incident.id, "resolved".into()));
                        } else {
                            self.notify(&mut batch, &mut incident, "resolved", now, &mut changes);
                        }
                        dirty = true;
                    }
                }
                if dirty {
                    IncidentStore::put(&mut batch, &incident);
                }
                if incident.state.is_active() {
                    self.active.insert(c.key.clone(), incident);
                }
                continue;
            }

            if let Some(mut resolved) = self.resolved_by_hand.remove(&c.key) {
                if c.breached {
                    if !resolved.held_until_clear {
                        resolved.held_until_clear = true;
                        resolved.push(
                            now,
                            "reopen_held",
                            None,
                            "the condition still holds after the manual resolve; a new incident \
                             opens only after it clears and breaches again",
                        );
                        IncidentStore::put(&mut batch, &resolved);
                    }
                    self.resolved_by_hand.insert(c.key.clone(), resolved);
                    continue;
                }
                if resolved.held_until_clear {
                    resolved.held_until_clear = false;
                    resolved.push(now, "condition_cleared", None, "");
                    IncidentStore::put(&mut batch, &resolved);
                }
                continue;
            }
            if !c.breached {
                continue;
            }
            let (depends_on, agents_of) = topology(&c.service);
            let inhibited_by = self.inhibitor(c, offline_agents, &depends_on, &agents_of);
            let mut incident = self.new_incident(c, now, flapping, inhibited_by.clone());
            if matches!(c.rule, Rule::BurnRate(_) | Rule::SlaBelowTarget) {
                self.mark_late_data(&mut incident, now);
            }
            incident.push(now, "opened", None, c.summary.clone());
            changes.push(Change::Opened(incident.id, c.key.clone()));
            if let Some((run, _)) = self.drills.get(&c.service) {
                incident.drill = Some(*run);
                incident.push(now, "drill", None, format!("opened during drill run {run}"));
            }
            if self.drill_holds(&incident) {
                incident.push(now, "notification_held", None, "drill incident");
                changes.push(Change::Held(incident.id, "opened".into()));
            } else if let Some(why) = &inhibited_by {
                incident.push(now, "inhibited", None, why.clone());
                changes.push(Change::Held(incident.id, "opened".into()));
            } else if flapping {
                incident.push(now, "notification_held", None, "flapping");
                changes.push(Change::Held(incident.id, "opened".into()));
            } else {
                self.notify(&mut batch, &mut incident, "opened", now, &mut changes);
            }
            IncidentStore::put(&mut batch, &incident);
            self.active.insert(c.key.clone(), incident);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(changes)
    }

    /// Whether a service-down incident already covers `[from_ms, to_ms)` of `service`: one
    /// active, or one of `known` whose outage (from its detection back `down_after` + 1 evaluations, or its
    /// own start if found late) to its resolution overlaps it.
    fn covered<'a>(
        &'a self,
        known: impl Iterator<Item = &'a Incident>,
        service: &str,
        from_ms: u64,
        to_ms: Option<u64>,
    ) -> bool {
        let every = self.settings.evaluate_every_ms;
        let lead = (u64::from(self.policy(service).down_after) + 1) * every;
        known
            .chain(self.active.values())
            .filter(|i| i.rule == Rule::ServiceDown && i.service == service)
            .any(|i| {
                let start = if i.late {
                    i.detected_ms
                } else {
                    i.detected_ms.saturating_sub(lead)
                };
                let end = i.resolved_ms.unwrap_or(u64::MAX);
                start < to_ms.unwrap_or(u64::MAX) && from_ms < end
            })
    }

    /// Records the outages found late in the data (see [`super::late`]) that no service-down
    /// incident covers: opened at the outage's own start, resolved at its own end if the data
    /// shows it over (`resolved_by` = `data`), marked `late` with `found_late_ms` = `now`. An
    /// outage still going on stays open for the live rule to resolve. Whether it notifies (event
    /// `late`) follows the service's `notify_late`; an outage in a drill window is a drill
    /// incident, held like one seen live.
    ///
    /// # Errors
    /// Store failure (nothing is kept; the next look retries).
    pub fn record_late(
        &mut self,
        now: u64,
        outages: &[super::late::LateOutage],
        offline_agents: &[String],
        topology: &Topology<'_>,
    ) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        if outages.is_empty() {
            return Ok(changes);
        }
        let all = self.store.all()?;
        let mut batch = StoreBatch::default();
        let mut opened: Vec<Incident> = Vec::new();
        for o in outages {
            let c = &o.condition;
            let found = FoundOutage {
                service: c.service.clone(),
                from_ms: o.from_ms,
                to_ms: o.to_ms,
                found_ms: now,
            };
            self.late_outages
                .retain(|f| now.saturating_sub(f.found_ms) <= LATE_MEMORY_MS && *f != found);
            self.late_outages.push(found);
            if self.covered(all.iter().chain(&opened), &c.service, o.from_ms, o.to_ms) {
                continue;
            }
            let (depends_on, agents_of) = topology(&c.service);
            let inhibited_by = self.inhibitor(c, offline_agents, &depends_on, &agents_of);
            let mut incident = self.new_incident(c, o.from_ms, false, inhibited_by.clone());
            incident.late = true;
            incident.found_late_ms = Some(now);
            incident.push(o.from_ms, "opened", None, c.summary.clone());
            if let Some(run) = o.drill {
                incident.drill = Some(run);
                incident.push(now, "drill", None, format!("an outage of drill run {run}"));
            }
            if let Some(to) = o.to_ms {
                incident.state = IncidentState::Resolved;
                incident.resolved_ms = Some(to);
                incident.resolved_by = Some("data".into());
                incident.resolution_note = Some("the data shows it up again".into());
                incident.push(to, "resolved", Some("data"), "up again in the data");
            }
            incident.push(
                now,
                "found_late",
                None,
                "results measured during the outage arrived late",
            );
            changes.push(Change::FoundLate(incident.id, c.key.clone()));
            let notify = match self.policy(&c.service).notify_late {
                NotifyLate::Always => true,
                NotifyLate::OpenOnly => o.to_ms.is_none(),
                NotifyLate::Never => false,
            };
            if self.drill_holds(&incident) {
                incident.push(now, "notification_held", None, "drill incident");
                changes.push(Change::Held(incident.id, "late".into()));
            } else if let Some(why) = &inhibited_by {
                incident.push(now, "inhibited", None, why.clone());
                changes.push(Change::Held(incident.id, "late".into()));
            } else if notify {
                self.notify(&mut batch, &mut incident, "late", now, &mut changes);
            } else {
                incident.push(
                    now,
                    "notification_held",
                    None,
                    "late and already over (notify_late)",
                );
                changes.push(Change::Held(incident.id, "late".into()));
            }
            IncidentStore::put(&mut batch, &incident);
            opened.push(incident);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        for incident in opened {
            if incident.state.is_active() {
                self.flapping.insert(incident.dedup_key.clone(), false);
                self.active.insert(incident.dedup_key.clone(), incident);
            }
        }
        Ok(changes)
    }

    /// Commits `batch` (a runbook run's record) together with what the run's change adds to the
    /// incidents' side: `timeline` (each `(incident, event, detail)`: an event on the triggering
    /// incident's timeline, active or not) and `notices` (each `(receiver, event, body)`:
    /// queued in the durable outbox for that `[[webhooks]]` receiver, or for every receiver
    /// when `None`). One batch, so a run's record and its notifications never part. Returns
    /// how many notifications were queued.
    ///
    /// # Errors
    /// Store failure; nothing is changed then.
    pub fn commit_runbook(
        &mut self,
        mut batch: StoreBatch,
        timeline: &[(u64, &str, String)],
        notices: &[(Option<String>, String, serde_json::Value)],
        now: u64,
    ) -> Result<usize> {
        let mut noted: Vec<(Option<String>, Incident)> = Vec::new();
        for (id, event, detail) in timeline {
            let id = *id;
            if let Some(pos) = noted.iter().position(|(_, i)| i.id == id) {
                noted[pos].1.push(now, event, None, detail.clone());
                IncidentStore::put(&mut batch, &noted[pos].1);
                continue;
            }
            let active = self
                .active
                .iter()
                .find(|(_, i)| i.id == id)
                .map(|(k, i)| (Some(k.clone()), i.clone()));
            let found = match active {
                Some(found) => Some(found),
                None => self.store.get(id)?.map(|i| (None, i)),
            };
            if let Some((key, mut incident)) = found {
                incident.push(now, event, None, detail.clone());
                IncidentStore::put(&mut batch, &incident);
                noted.push((key, incident));
            }
        }
        let mut queued = 0;
        for (receiver, event, body) in notices {
            for w in self
                .webhooks
                .iter()
                .filter(|w| receiver.as_ref().is_none_or(|r| *r == w.name))
            {
                let n = Notification {
                    seq: self.next_seq,
                    receiver: w.name.clone(),
                    event: event.clone(),
                    body: body.clone(),
                    attempts: 0,
                    next_at_ms: now,
                    last_error: None,
                };
                self.next_seq += 1;
                IncidentStore::enqueue(&mut batch, &n);
                queued += 1;
            }
        }
        if queued > 0 {
            IncidentStore::used_seqs_below(&mut batch, self.next_seq);
        }
        self.store.commit(batch)?;
        for (key, incident) in noted {
            if let Some(key) = key {
                self.active.insert(key, incident);
            }
        }
        Ok(queued)
    }

    /// Acknowledges incident `id` on behalf of `by`.
    ///
    /// # Errors
    /// Not found, already resolved, or a store failure.
    pub fn acknowledge(
        &mut self,
        id: u64,
        by: &str,
        comment: &str,
        now: u64,
    ) -> std::result::Result<Incident, ActionError> {
        self.act(id, now, |engine, incident, batch, changes| {
            if incident.state == IncidentState::Open {
                incident.state = IncidentState::Acknowledged;
                incident.acknowledged_ms = Some(now);
                incident.acknowledged_by = Some(by.to_owned());
            }
            incident.push(now, "acknowledged", Some(by), comment);
            engine.notify_unless_held(batch, incident, "acknowledged", now, changes);
        })
    }

    /// Resolves incident `id` by hand.
    ///
    /// # Errors
    /// Not found, already resolved, or a store failure.
    pub fn resolve(
        &mut self,
        id: u64,
        by: &str,
        note: &str,
        now: u64,
    ) -> std::result::Result<Incident, ActionError> {
        self.act(id, now, |engine, incident, batch, changes| {
            incident.state = IncidentState::Resolved;
            incident.resolved_ms = Some(now);
            incident.resolved_by = Some(by.to_owned());
            incident.resolution_note = Some(note.to_owned());
            incident.push(now, "resolved", Some(by), note);
            engine.notify_unless_held(batch, incident, "resolved", now, changes);
        })
    }

    fn act(
        &mut self,
        id: u64,
        _now: u64,
        f: impl FnOnce(&mut Self, &mut Incident, &mut StoreBatch, &mut Vec<Change>),
    ) -> std::result::Result<Incident, ActionError> {
        let key = self
            .active
            .iter()
            .find(|(_, i)| i.id == id)
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            return match self.store.get(id)? {
                Some(_) => Err(ActionError::AlreadyResolved(id)),
                None => Err(ActionError::NotFound(id)),
            };
        };
        let Some(mut incident) = self.active.remove(&key) else {
            return Err(ActionError::NotFound(id));
        };
        let mut batch = StoreBatch::default();
        let mut changes = Vec::new();
        f(self, &mut incident, &mut batch, &mut changes);
        IncidentStore::put(&mut batch, &incident);
        if let Err(e) = self.store.commit(batch) {
            // Keep the in-memory view as stored.
            if let Ok(Some(stored)) = self.store.get(id) {
                self.active.insert(key, stored);
            }
            return Err(e.into());
        }
        if incident.state.is_active() {
            self.active.insert(key.clone(), incident.clone());
        } else {
            self.healthy_since.remove(&key);
            // Resolved by hand (the only way `act` resolves): hold the key until an evaluation
            // sees the condition clear.
            self.resolved_by_hand.insert(key, incident.clone());
        }
        Ok(incident)
    }
}
