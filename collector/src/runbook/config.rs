//! `[[runbooks]]` as written and validated: which service a runbook belongs to, what triggers it
//! (incidents by rule and priority after a delay, by hand) and its steps, each with a timeout,
//! retries and what a failure does to the run.
//!
//! Steps are written flat (`kind = "…"` plus that kind's fields) rather than as a serde-tagged
//! enum, so a field that does not belong to the kind gets a message naming both instead of
//! serde's generic "unknown field".

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};

use super::rpo::{Reads, RpoSource};
use crate::auth::Role;
use crate::incident::Priority;

/// `[[runbooks]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunbook {
    /// Runbook id.
    pub id: String,
    /// The service it restores.
    pub service: String,
    /// What it does, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Start it from incidents of the service.
    #[serde(default)]
    pub on_incident: Option<RawIncidentTrigger>,
    /// May an operator start it by hand (default yes).
    #[serde(default = "default_true")]
    pub manual: bool,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<RawStep>,
}

const fn default_true() -> bool {
    true
}

/// `on_incident = { rules, min_priority, after }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidentTrigger {
    /// Incident rules that trigger it (`service_down`, `burn_rate`, `burn_rate.fast`, …); empty:
    /// any rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Least urgent priority that triggers it (`P1` … `P4`); default `P4` (any).
    #[serde(default)]
    pub min_priority: Option<String>,
    /// How long the incident must stay active first (default 0).
    #[serde(default)]
    pub after: Option<Duration>,
}

/// One `[[runbooks.steps]]` as written: `kind` plus the fields that kind uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Step id, unique in the runbook (default `step-N`, 1-based).
    #[serde(default)]
    pub id: Option<String>,
    /// `agent_action`, `http`, `exec`, `wait_for`, `approval`, `notify`, `rpo_check`, or in
    /// drills `inject` / `restore` (which wrap the kind named by `via`).
    pub kind: String,
    /// `inject` / `restore`: the kind of step that does the work (`agent_action`, `http`,
    /// `exec`, …), whose fields the step then takes.
    #[serde(default)]
    pub via: Option<String>,
    /// How long one attempt may take.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Further attempts after a failed one (default 0).
    #[serde(default)]
    pub retries: Option<u32>,
    /// `abort` (default) or `continue`.
    #[serde(default)]
    pub on_failure: Option<String>,
    /// `agent_action`: target agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// `agent_action`: the action id declared in the agent's own config.
    #[serde(default)]
    pub action: Option<String>,
    /// `agent_action`: arguments (checked again by the agent against its own rules).
    #[serde(default)]
    pub args: Option<BTreeMap<String, String>>,
    /// `http`: method (default `POST`).
    #[serde(default)]
    pub method: Option<String>,
    /// `http`, `rpo_check`: URL.
    #[serde(default)]
    pub url: Option<String>,
    /// `rpo_check`: where the number is in the URL's JSON answer (RFC 6901, `/a/b`).
    #[serde(default)]
    pub pointer: Option<String>,
    /// `rpo_check`: what the number is, `lag_s` or `last_commit_unix`.
    #[serde(default)]
    pub reads: Option<String>,
    /// `http`: statuses that count as success (default any 2xx).
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
    /// `exec`, `rpo_check`: program and arguments on the collector host (no shell).
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// `wait_for`: the service whose measured state is awaited.
    #[serde(default)]
    pub service: Option<String>,
    /// `wait_for`: the state (`up`).
    #[serde(default)]
    pub state: Option<String>,
    /// `wait_for`: how long it must stay in that state.
    #[serde(default, rename = "for")]
    pub hold: Option<Duration>,
    /// `approval`: the least role that may approve (default `operator`).
    #[serde(default)]
    pub role: Option<String>,
    /// `notify`: the `[[webhooks]]` receiver.
    #[serde(default)]
    pub webhook: Option<String>,
    /// `notify`: the text.
    #[serde(default)]
    pub message: Option<String>,
}

/// A validated runbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    /// Id.
    pub id: String,
    /// Service it belongs to.
    pub service: String,
    /// Description.
    pub description: String,
    /// Incident trigger.
    pub on_incident: Option<IncidentTrigger>,
    /// Startable by hand.
    pub manual: bool,
    /// Steps.
    pub steps: Vec<Step>,
}

impl Runbook {
    /// Does it have `inject` or `restore` steps (can it be drilled)?
    pub fn has_drill_steps(&self) -> bool {
        self.steps.iter().any(|s| s.phase != Phase::Recover)
    }

    /// The books the engine runs: under the runbook's id its recovery steps only (incident and
    /// manual runs never inject); when it has drill steps, every step under
    /// [`drill_book_id`] and the restore steps alone under [`restore_book_id`] (run when a
    /// drill is aborted before its own restore steps ran).
    pub fn engine_books(&self) -> Vec<Runbook> {
        let with = |id: String, keep: &dyn Fn(&Step) -> bool| Runbook {
            id,
            steps: self.steps.iter().filter(|s| keep(s)).cloned().collect(),
            // Only drills start the drill books.
            on_incident: None,
            manual: false,
            ..self.clone()
        };
        let mut out = vec![Runbook {
            steps: self
                .steps
                .iter()
                .filter(|s| s.phase == Phase::Recover)
                .cloned()
                .collect(),
            ..self.clone()
        }];
        if self.has_drill_steps() {
            out.push(with(drill_book_id(&self.id), &|_| true));
            out.push(with(restore_book_id(&self.id), &|s| {
                s.phase == Phase::Restore
            }));
        }
        out
    }
}

/// The engine's id for runbook `id` run as a drill (`:` cannot occur in runbook ids).
pub fn drill_book_id(id: &str) -> String {
    format!("{id}:drill")
}

/// The engine's id for the restore steps of runbook `id` alone.
pub fn restore_book_id(id: &str) -> String {
    format!("{id}:restore")
}

/// When incidents start a runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentTrigger {
    /// Rule key parts (`service_down`, `burn_rate.fast`; `burn_rate` matches every burn-rate
    /// rule); empty: any rule.
    pub rules: Vec<String>,
    /// Least urgent priority that triggers.
    pub min_priority: Priority,
    /// Delay after the incident opened, ms.
    pub after_ms: u64,
}

impl IncidentTrigger {
    /// Does an incident of this rule (its key part) and priority trigger the runbook?
    pub fn matches(&self, rule_key: &str, priority: Priority) -> bool {
        let rule_ok = self.rules.is_empty()
            || self.rules.iter().any(|r| {
                r == rule_key
                    || rule_key
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            });
        rule_ok && priority <= self.min_priority
    }
}

/// What a failed step (after its retries) does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run ends `failed`.
    Abort,
    /// The run goes on with the next step.
    Continue,
}

/// The part a step plays in a drill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A recovery step: runs in every run of the runbook.
    #[default]
    Recover,
    /// `kind = "inject"`: causes the failure on purpose; runs only in drills.
    Inject,
    /// `kind = "restore"`: fails back; runs only in drills, and also when a drill is aborted.
    Restore,
}

impl Phase {
    /// As written in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Recover => "recover",
            Phase::Inject => "inject",
            Phase::Restore => "restore",
        }
    }
}

/// A validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Id, unique in the runbook.
    pub id: String,
    /// Recovery, or a drill's inject / restore.
    pub phase: Phase,
    /// One attempt's time limit, ms.
    pub timeout_ms: u64,
    /// Further attempts after a failure.
    pub retries: u32,
    /// What a final failure does.
    pub on_failure: OnFailure,
    /// What the step does.
    pub action: StepAction,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// A signed command to an agent, which runs its own declared action.
    AgentAction {
        /// Agent id.
        agent: String,
        /// Action id in the agent's config.
        action: String,
        /// Arguments.
        args: BTreeMap<String, String>,
    },
    /// An HTTP request from the collector.
    Http {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Success statuses (empty: any 2xx).
        expect_status: Vec<u16>,
    },
    /// A program on the collector host.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// Wait until a service is measured up and stays up.
    WaitFor {
        /// Service id.
        service: String,
        /// How long it must stay up, ms.
        hold_ms: u64,
    },
    /// An operator approves or rejects.
    Approval {
        /// Least role that may decide.
        role: Role,
    },
    /// A message to a webhook receiver.
    Notify {
        /// Receiver name.
        webhook: String,
        /// Text.
        message: String,
    },
    /// Read the recovery point and compare it with the runbook's service's `rpo`.
    RpoCheck {
        /// Where the number comes from.
        source: RpoSource,
        /// What it means.
        reads: Reads,
    },
}

impl StepAction {
    /// The kind as written.
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::AgentAction { .. } => "agent_action",
            StepAction::Http { .. } => "http",
            StepAction::Exec { .. } => "exec",
            StepAction::WaitFor { .. } => "wait_for",
            StepAction::Approval { .. } => "approval",
            StepAction::Notify { .. } => "notify",
            StepAction::RpoCheck { .. } => "rpo_check",
        }
    }

    /// The default time limit of one attempt of this kind.
    pub fn default_timeout_ms(kind: &str) -> u64 {
        match kind {
            "wait_for" => 600_000,
            "approval" => 3_600_000,
            "notify" | "http" | "rpo_check" => 30_000,
            _ => 60_000,
        }
    }
}

/// Incident rules a trigger may name (burn-rate rules also by `burn_rate.NAME`).
const RULES: [&str; 6] = [
    "service_down",
    "burn_rate",
    "latency",
    "sla_below_target",
    "unmonitored",
    "agent_offline",
];

/// Most steps in one runbook.
pub const MAX_STEPS: usize = 64;
/// Most retries of one step.
pub const MAX_RETRIES: u32 = 10;

/// What validation checks references against.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// Service ids in the catalogue.
    pub services: &'a HashSet<&'a str>,
    /// `[[webhooks]]` names.
    pub webhooks: &'a HashSet<&'a str>,
}

/// Validates every runbook, recording problems under `runbooks[id="…"]` keys.
pub fn validate(raw: &[RawRunbook], known: Known<'_>, p: &mut Problems) -> Vec<Runbook> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = if r.id.is_empty() {
            format!("runbooks[{i}]")
        } else {
            format!("runbooks[id={:?}]", r.id)
        };
        let before = p.len();
        p.check_id(&format!("{at}.id"), &r.id);
        if !seen.insert(r.id.as_str()) {
            p.push(
                format!("{at}.id"),
                format!("duplicate runbook id {:?}", r.id),
            );
        }
        if !known.services.contains(r.service.as_str()) {
            p.push(
                format!("{at}.service"),
                format!("{:?} is not a service in the catalogue", r.service),
            );
        }
        let on_incident = r
            .on_incident
            .as_ref()
            .and_then(|t| incident_trigger(t, &format!("{at}.on_incident"), p));
        if r.steps.is_empty() {
            p.push(format!("{at}.steps"), "a runbook needs at least one step");
        }
        if r.steps.len() > MAX_STEPS {
            p.push(
                format!("{at}.steps"),
                format!("{} steps; at most {MAX_STEPS}", r.steps.len()),
            );
        }
        let mut step_ids = HashSet::new();
        let mut steps = Vec::new();
        for (j, s) in r.steps.iter().enumerate() {
            let step_at = format!("{at}.steps[{j}]");
            if let Some(step) = step(s, j, &step_at, known, p) {
                if !step_ids.insert(step.id.clone()) {
                    p.push(
                        format!("{step_at}.id"),
                        format!("duplicate step id {:?}", step.id),
                    );
                }
                steps.push(step);
            }
        }
        if p.len() == before {
            out.push(Runbook {
                id: r.id.clone(),
                service: r.service.clone(),
                description: r.description.clone().unwrap_or_default(),
                on_incident,
                manual: r.manual,
                steps,
            });
        }
    }
    out
}

fn incident_trigger(t: &RawIncidentTrigger, at: &str, p: &mut Problems) -> Option<IncidentTrigger> {
    let mut ok = true;
    for (k, rule) in t.rules.iter().enumerate() {
        let base = rule.split_once('.').map_or(rule.as_str(), |(b, _)| b);
        let named_burn = base == "burn_rate" && rule.len() > "burn_rate.".len();
        if !(RULES.contains(&rule.as_str()) || named_burn) {
            p.push(
                format!("{at}.rules[{k}]"),
                format!(
                    "{rule:?} is not an incident rule; use one of {} (or burn_rate.NAME)",
                    RULES.join(", ")
                ),
            );
            ok = false;
        }
    }
    let min_priority = match t.min_priority.as_deref() {
        None => Priority::P4,
        Some(text) => match parse_priority(text) {
            Some(p) => p,
            None => {
                p.push(
                    format!("{at}.min_priority"),
                    format!("{text:?} is not a priority; use P1, P2, P3 or P4"),
                );
                ok = false;
                Priority::P4
            }
        },
    };
    ok.then(|| IncidentTrigger {
        rules: t.rules.clone(),
        min_priority,
        after_ms: t.after.map_or(0, |d| d.as_millis()),
    })
}

fn parse_priority(text: &str) -> Option<Priority> {
    match text {
        "P1" | "p1" => Some(Priority::P1),
        "P2" | "p2" => Some(Priority::P2),
        "P3" | "p3" => Some(Priority::P3),
        "P4" | "p4" => Some(Priority::P4),
        _ => None,
    }
}

/// Which optional fields each kind uses (the rest must be absent).
fn fields_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "agent_action" => &["agent", "action", "args"],
        "http" => &["method", "url", "expect_status"],
        "exec" => &["argv"],
        "wait_for" => &["service", "state", "for"],
        "approval" => &["role"],
        "notify" => &["webhook", "message"],
        "rpo_check" => &["url", "pointer", "argv", "reads"],
        _ => return None,
    })
}

/// The kind-specific fields present in a raw step, by name.
fn present(s: &RawStep) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut note = |set: bool, name: &'static str| {
        if set {
            out.push(name);
        }
    };
    note(s.agent.is_some(), "agent");
    note(s.action.is_some(), "action");
    note(s.args.is_some(), "args");
    note(s.method.is_some(), "method");
    note(s.url.is_some(), "url");
    note(s.pointer.is_some(), "pointer");
    note(s.reads.is_some(), "reads");
    note(s.expect_status.is_some(), "expect_status");
    note(s.argv.is_some(), "argv");
    note(s.service.is_some(), "service");
    note(s.state.is_some(), "state");
    note(s.hold.is_some(), "for");
    note(s.role.is_some(), "role");
    note(s.webhook.is_some(), "webhook");
    note(s.message.is_some(), "message");
    out
}

fn required<'s>(value: &'s Option<String>, key: &str, kind: &str, p: &mut Problems) -> &'s str {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => v,
        _ => {
            p.push(key, format!("kind = {kind:?} needs this field"));
            ""
        }
    }
}

/// `kind = "rpo_check"`: `reads`, and `url` (+ `pointer`) or `argv`.
fn rpo_check(s: &RawStep, at: &str, p: &mut Problems) -> StepAction {
    let reads = match s.reads.as_deref() {
        Some(text) => Reads::parse(text).unwrap_or_else(|| {
            p.push(
                format!("{at}.reads"),
                format!("{text:?} is not lag_s or last_commit_unix"),
            );
            Reads::LagS
        }),
        None => {
            p.push(
                format!("{at}.reads"),
                "kind = \"rpo_check\" needs reads = \"lag_s\" (replication lag, seconds) or \"last_commit_unix\" (last committed transaction, unix seconds)",
            );
            Reads::LagS
        }
    };
    let source = match (&s.url, &s.argv) {
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push(
                    format!("{at}.url"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
            let pointer = s.pointer.clone().unwrap_or_default();
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                p.push(
                    format!("{at}.pointer"),
                    format!("{pointer:?} is not a JSON pointer (\"/replication/lag_seconds\"; empty: the whole answer)"),
                );
            }
            RpoSource::Http {
                url: url.clone(),
                pointer,
            }
        }
        (None, Some(argv)) => {
            if argv.first().is_none_or(|a| a.trim().is_empty()) {
                p.push(
                    format!("{at}.argv"),
                    "kind = \"rpo_check\" needs argv = [\"program\", \"arg\", …] printing the number",
                );
            }
            if s.pointer.is_some() {
                p.push(
                    format!("{at}.pointer"),
                    "only with url (a program prints the number itself)",
                );
            }
            RpoSource::Exec { argv: argv.clone() }
        }
        (Some(_), Some(_)) => {
            p.push(format!("{at}.argv"), "give url or argv, not both");
            RpoSource::Exec { argv: Vec::new() }
        }
        (None, None) => {
            p.push(
                format!("{at}.url"),
                "kind = \"rpo_check\" needs url = \"http…\" (with pointer) or argv = [\"program\", …]",
            );
            RpoSource::Exec { argv: Vec::new() }
        }
    };
    StepAction::RpoCheck { source, reads }
}

fn step(s: &RawStep, index: usize, at: &str, known: Known<'_>, p: &mut Problems) -> Option<Step> {
    let phase = match s.kind.as_str() {
        "inject" => Phase::Inject,
        "restore" => Phase::Restore,
        _ => Phase::Recover,
    };
    if phase != Phase::Recover {
        // `inject` / `restore` wrap the kind named by `via`: validated as that kind.
        let via = match s.via.as_deref() {
            // An `rpo_check` measures; it neither breaks nor restores anything.
            Some(v)
                if !matches!(v, "inject" | "restore" | "rpo_check") && fields_of(v).is_some() =>
            {
                v
            }
            Some(v) => {
                p.push(
                    format!("{at}.via"),
                    format!("{v:?} is not a step kind; use agent_action, http, exec, wait_for, approval or notify"),
                );
                return None;
            }
            None => {
                p.push(
                    format!("{at}.via"),
                    format!(
                        "kind = {:?} needs via = \"agent_action\", \"http\", \"exec\", …",
                        s.kind
                    ),
                );
                return None;
            }
        };
        let inner = RawStep {
            kind: via.to_owned(),
            via: None,
            ..s.clone()
        };
        return step(&inner, index, at, known, p).map(|mut st| {
            st.phase = phase;
            st
        });
    }
    if s.via.is_some() {
        p.push(
            format!("{at}.via"),
            format!(
                "not a field of kind = {:?} (only inject and restore steps take it)",
                s.kind
            ),
        );
    }
    let Some(allowed) = fields_of(&s.kind) else {
        p.push(
            format!("{at}.kind"),
            format!(
                "{:?} is not a step kind; use agent_action, http, exec, wait_for, approval, notify, rpo_check, inject or restore",
                s.kind
            ),
        );
        return None;
    };
    let before = p.len();
    for field in present(s) {
        if !allowed.contains(&field) {
            p.push(
                format!("{at}.{field}"),
                format!(
                    "not a field of kind = {:?} (it takes {})",
                    s.kind,
                    allowed.join(", ")
                ),
            );
        }
    }
    let id = match &s.id {
        Some(id) => {
            p.check_id(&format!("{at}.id"), id);
            id.clone()
        }
        None => format!("step-{}", index + 1),
    };
    let timeout_ms = s.timeout.map_or_else(
        || StepAction::default_timeout_ms(&s.kind),
        |d| d.as_millis(),
    );
    if timeout_ms == 0 {
        p.push(format!("{at}.timeout"), "must be longer than 0s");
    }
    let retries = s.retries.unwrap_or(0);
    if retries > MAX_RETRIES {
        p.push(
            format!("{at}.retries"),
            format!("{retries} retries; at most {MAX_RETRIES}"),
        );
    }
    let on_failure = match s.on_failure.as_deref() {
        None | Some("abort") => OnFailure::Abort,
        Some("continue") => OnFailure::Continue,
        Some(other) => {
            p.push(
                format!("{at}.on_failure"),
                format!("{other:?} is not abort or continue"),
            );
            OnFailure::Abort
        }
    };
    let kind = s.kind.as_str();
    let action = match kind {
        "agent_action" => {
            let agent = required(&s.agent, &format!("{at}.agent"), kind, p).to_owned();
            if !agent.is_empty() {
                p.check_id(&format!("{at}.agent"), &agent);
            }
            let action = required(&s.action, &format!("{at}.action"), kind, p).to_owned();
            if !action.is_empty() {
                p.check_id(&format!("{at}.action"), &action);
            }
            StepAction::AgentAction {
                agent,
                action,
                args: s.args.clone().unwrap_or_default(),
            }
        }
        "http" => {
            let url = required(&s.url, &format!("{at}.url"), kind, p).to_owned();
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                p.push(
                    format!("{at}.url"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
            let method = s.method.clone().unwrap_or_else(|| "POST".into());
            if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
                p.push(
                    format!("{at}.method"),
                    format!("{method:?} is not GET, POST, PUT, PATCH, DELETE or HEAD"),
                );
            }
            let expect_status = s.expect_status.clone().unwrap_or_default();
            if let Some(bad) = expect_status.iter().find(|c| !(100..=599).contains(*c)) {
                p.push(
                    format!("{at}.expect_status"),
                    format!("{bad} is not an HTTP status"),
                );
            }
            StepAction::Http {
                method,
                url,
                expect_status,
            }
        }
        "exec" => {
            let argv = s.argv.clone().unwrap_or_default();
            if argv.first().is_none_or(|a| a.trim().is_empty()) {
                p.push(
                    format!("{at}.argv"),
                    "kind = \"exec\" needs argv = [\"program\", \"arg\", …]",
                );
            }
            StepAction::Exec { argv }
        }
        "wait_for" => {
            let service = s.service.clone().unwrap_or_default();
            if !known.services.contains(service.as_str()) {
                p.push(
                    format!("{at}.service"),
                    format!("{service:?} is not a service in the catalogue"),
                );
            }
            match s.state.as_deref() {
                None | Some("up") => {}
                Some(other) => p.push(
                    format!("{at}.state"),
                    format!("{other:?}: only state = \"up\" can be awaited"),
                ),
            }
            let hold_ms = s.hold.map_or(0, |d| d.as_millis());
            if hold_ms >= timeout_ms {
                p.push(
                    format!("{at}.for"),
                    format!(
                        "{hold_ms} ms is not shorter than the step's timeout ({timeout_ms} ms)"
                    ),
                );
            }
            StepAction::WaitFor { service, hold_ms }
        }
        "approval" => {
            let role = match s.role.as_deref().unwrap_or("operator").parse::<Role>() {
                Ok(Role::Viewer) => {
                    p.push(
                        format!("{at}.role"),
                        "a viewer may not approve; use operator or admin",
                    );
                    Role::Operator
                }
                Ok(role) => role,
                Err(e) => {
                    p.push(format!("{at}.role"), e);
                    Role::Operator
                }
            };
            StepAction::Approval { role }
        }
        "rpo_check" => rpo_check(s, at, p),
        _ => {
            let webhook = required(&s.webhook, &format!("{at}.webhook"), kind, p).to_owned();
            if !webhook.is_empty() && !known.webhooks.contains(webhook.as_str()) {
                p.push(
                    format!("{at}.webhook"),
                    format!("{webhook:?} is not a [[webhooks]] name"),
                );
            }
            let message = required(&s.message, &format!("{at}.message"), kind, p).to_owned();
            StepAction::Notify { webhook, message }
        }
    };
    (p.len() == before).then_some(Step {
        id,
        phase: Phase::Recover,
        timeout_ms,
        retries,
        on_failure,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<RawRunbook> {
        #[derive(Deserialize)]
        struct File {
            runbooks: Vec<RawRunbook>,
        }
        let file: File = toml::from_str(text).expect("test TOML parses");
        file.runbooks
    }

    fn check(text: &str) -> (Vec<Runbook>, Vec<String>) {
        let services: HashSet<&str> = ["shop", "db"].into_iter().collect();
        let webhooks: HashSet<&str> = ["ops"].into_iter().collect();
        let mut p = Problems::default();
        let out = validate(
            &parse(text),
            Known {
                services: &services,
                webhooks: &webhooks,
            },
            &mut p,
        );
        let errors = match p.finish(std::path::Path::new("services.toml"), ()) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect(),
        };
        (out, errors)
    }

    const FAILOVER: &str = r#"
[[runbooks]]
id = "shop-failover"
service = "shop"
description = "Promote the standby"
on_incident = { rules = ["service_down"], min_priority = "P2", after = "30s" }

[[runbooks.steps]]
id = "approve"
kind = "approval"
timeout = "15m"

[[runbooks.steps]]
id = "promote"
kind = "agent_action"
agent = "edge-1"
action = "promote"
args = { to = "standby" }
timeout = "20s"
retries = 2

[[runbooks.steps]]
kind = "wait_for"
service = "shop"
for = "10s"
timeout = "2m"

[[runbooks.steps]]
kind = "notify"
webhook = "ops"
message = "shop failed over"
on_failure = "continue"
"#;

    #[test]
    fn a_failover_runbook_validates_with_defaults_filled_in() {
        let (books, errors) = check(FAILOVER);
        assert_eq!(errors, Vec::<String>::new());
        let b = &books[0];
        assert_eq!(b.id, "shop-failover");
        assert!(b.manual);
        assert_eq!(
            b.on_incident,
            Some(IncidentTrigger {
                rules: vec!["service_down".into()],
                min_priority: Priority::P2,
                after_ms: 30_000
            })
        );
        let ids: Vec<&str> = b.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["approve", "promote", "step-3", "step-4"]);
        assert_eq!(
            b.steps[0].action,
            StepAction::Approval {
                role: Role::Operator
            }
        );
        assert_eq!(b.steps[0].timeout_ms, 900_000);
        assert_eq!(b.steps[1].retries, 2);
        assert_eq!(
            b.steps[1].action,
            StepAction::AgentAction {
                agent: "edge-1".into(),
                action: "promote".into(),
                args: [("to".to_owned(), "standby".to_owned())]
                    .into_iter()
                    .collect()
            }
        );
        assert_eq!(
            b.steps[2].action,
            StepAction::WaitFor {
                service: "shop".into(),
                hold_ms: 10_000
            }
        );
        assert_eq!(b.steps[2].on_failure, OnFailure::Abort);
        assert_eq!(b.steps[3].on_failure, OnFailure::Continue);
        assert_eq!(b.steps[3].timeout_ms, 30_000);
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let (books, errors) = check(
            r#"
[[runbooks]]
id = "bad"
service = "nope"
on_incident = { rules = ["down"], min_priority = "P9" }

[[runbooks.steps]]
kind = "agent_action"
agent = "edge-1"
url = "http://x"

[[runbooks.steps]]
kind = "teleport"

[[runbooks.steps]]
kind = "wait_for"
service = "shop"
state = "down"
for = "5m"
timeout = "1m"

[[runbooks.steps]]
kind = "approval"
role = "viewer"
on_failure = "shrug"

[[runbooks.steps]]
kind = "notify"
webhook = "pager"
message = "x"
retries = 11
"#,
        );
        assert!(books.is_empty());
        let at = "runbooks[id=\"bad\"]";
        let expected = [
            format!("{at}.service: \"nope\" is not a service in the catalogue"),
            format!("{at}.on_incident.rules[0]: \"down\" is not an incident rule; use one of service_down, burn_rate, latency, sla_below_target, unmonitored, agent_offline (or burn_rate.NAME)"),
            format!("{at}.on_incident.min_priority: \"P9\" is not a priority; use P1, P2, P3 or P4"),
            format!("{at}.steps[0].url: not a field of kind = \"agent_action\" (it takes agent, action, args)"),
            format!("{at}.steps[0].action: kind = \"agent_action\" needs this field"),
            format!("{at}.steps[1].kind: \"teleport\" is not a step kind; use agent_action, http, exec, wait_for, approval, notify, rpo_check, inject or restore"),
            format!("{at}.steps[2].state: \"down\": only state = \"up\" can be awaited"),
            format!("{at}.steps[2].for: 300000 ms is not shorter than the step's timeout (60000 ms)"),
            format!("{at}.steps[3].on_failure: \"shrug\" is not abort or continue"),
            format!("{at}.steps[3].role: a viewer may not approve; use operator or admin"),
            format!("{at}.steps[4].retries: 11 retries; at most 10"),
            format!("{at}.steps[4].webhook: \"pager\" is not a [[webhooks]] name"),
        ];
        assert_eq!(errors, expected);
    }

    #[test]
    fn duplicates_and_empty_runbooks_are_refused() {
        let (_, errors) = check(
            r#"
[[runbooks]]
id = "a"
service = "shop"
steps = []

[[runbooks]]
id = "a"
service = "shop"
[[runbooks.steps]]
id = "x"
kind = "exec"
argv = ["/bin/true"]
[[runbooks.steps]]
id = "x"
kind = "exec"
argv = []
"#,
        );
        assert_eq!(
            errors,
            [
                "runbooks[id=\"a\"].steps: a runbook needs at least one step",
                "runbooks[id=\"a\"].id: duplicate runbook id \"a\"",
                "runbooks[id=\"a\"].steps[1].argv: kind = \"exec\" needs argv = [\"program\", \"arg\", …]",
            ]
        );
    }

    #[test]
    fn rpo_check_steps_read_by_http_or_exec_and_bad_ones_are_named() {
        let (books, errors) = check(
            r#"
[[runbooks]]
id = "db"
service = "db"
[[runbooks.steps]]
id = "lag"
kind = "rpo_check"
url = "http://db-standby:9187/replication"
pointer = "/lag_seconds"
reads = "lag_s"
[[runbooks.steps]]
id = "commit"
kind = "rpo_check"
argv = ["/usr/local/bin/last-commit"]
reads = "last_commit_unix"
timeout = "5s"
"#,
        );
        assert_eq!(errors, Vec::<String>::new());
        let steps = &books[0].steps;
        assert_eq!(
            steps[0].action,
            StepAction::RpoCheck {
                source: RpoSource::Http {
                    url: "http://db-standby:9187/replication".into(),
                    pointer: "/lag_seconds".into()
                },
                reads: Reads::LagS
            }
        );
        assert_eq!(steps[0].timeout_ms, 30_000);
        assert_eq!(steps[0].action.kind(), "rpo_check");
        assert_eq!(
            steps[1].action,
            StepAction::RpoCheck {
                source: RpoSource::Exec {
                    argv: vec!["/usr/local/bin/last-commit".into()]
                },
                reads: Reads::LastCommitUnix
            }
        );
        let (books, errors) = check(
            r#"
[[runbooks]]
id = "bad"
service = "db"
[[runbooks.steps]]
kind = "rpo_check"
url = "http://x/"
[[runbooks.steps]]
kind = "rpo_check"
reads = "lag_ms"
argv = ["lag"]
pointer = "/x"
[[runbooks.steps]]
kind = "rpo_check"
reads = "lag_s"
url = "ftp://x"
pointer = "lag"
[[runbooks.steps]]
kind = "rpo_check"
reads = "lag_s"
url = "http://x/"
argv = ["lag"]
[[runbooks.steps]]
kind = "rpo_check"
reads = "lag_s"
method = "GET"
[[runbooks.steps]]
kind = "inject"
via = "rpo_check"
reads = "lag_s"
argv = ["lag"]
"#,
        );
        assert!(books.is_empty());
        let at = "runbooks[id=\"bad\"].steps";
        assert_eq!(
            errors,
            [
                format!("{at}[0].reads: kind = \"rpo_check\" needs reads = \"lag_s\" (replication lag, seconds) or \"last_commit_unix\" (last committed transaction, unix seconds)"),
                format!("{at}[1].reads: \"lag_ms\" is not lag_s or last_commit_unix"),
                format!("{at}[1].pointer: only with url (a program prints the number itself)"),
                format!("{at}[2].url: \"ftp://x\" is not an http(s) URL"),
                format!("{at}[2].pointer: \"lag\" is not a JSON pointer (\"/replication/lag_seconds\"; empty: the whole answer)"),
                format!("{at}[3].argv: give url or argv, not both"),
                format!("{at}[4].method: not a field of kind = \"rpo_check\" (it takes url, pointer, argv, reads)"),
                format!("{at}[4].url: kind = \"rpo_check\" needs url = \"http…\" (with pointer) or argv = [\"program\", …]"),
                format!("{at}[5].via: \"rpo_check\" is not a step kind; use agent_action, http, exec, wait_for, approval or notify"),
            ]
        );
    }

    #[test]
    fn triggers_match_rule_families_and_priorities() {
        let t = IncidentTrigger {
            rules: vec!["burn_rate".into(), "service_down".into()],
            min_priority: Priority::P2,
            after_ms: 0,
        };
        assert!(t.matches("service_down", Priority::P1));
        assert!(t.matches("burn_rate.fast", Priority::P2));
        assert!(t.matches("burn_rate", Priority::P2));
        assert!(!t.matches("burn_rate_x", Priority::P1));
        assert!(!t.matches("service_down", Priority::P3));
        assert!(!t.matches("latency", Priority::P1));
        let any = IncidentTrigger {
            rules: Vec::new(),
            min_priority: Priority::P4,
            after_ms: 0,
        };
        assert!(any.matches("agent_offline", Priority::P4));
    }
}
