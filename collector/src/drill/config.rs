//! `[[drills]]` as written and validated: which service is drilled with which runbook, the
//! scenario and participants for the record, when it runs (`schedule`), when it is aborted
//! (`max_duration`), how long the service must stay up to count as recovered (`confirm`), and
//! whether its incidents still notify (marked as a drill).
//!
//! `schedule` is a cron expression (five fields, or six with seconds first; UTC, parsed by
//! `croner`: `0 10 * * MON#1` is the first Monday of each month at 10:00) or the shorthand `monthly first monday 10:00`
//! (`first` … `fourth` or `last`), which is turned into that expression.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};

use crate::runbook::Runbook;

/// `[[drills]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    /// Drill id.
    pub id: String,
    /// The service drilled.
    pub service: String,
    /// The runbook run in drill mode (it must belong to the service and have an `inject` step).
    pub runbook: String,
    /// What is tested, for the record.
    #[serde(default)]
    pub scenario: String,
    /// Who takes part, for the record.
    #[serde(default)]
    pub participants: Vec<String>,
    /// When it runs by itself (cron or `monthly <nth> <weekday> HH:MM`, UTC).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Aborted (restore runs) when still going after this long.
    #[serde(default)]
    pub max_duration: Option<Duration>,
    /// How long the service must stay measured up to count as recovered (default 30s).
    #[serde(default)]
    pub confirm: Option<Duration>,
    /// Do its incidents still notify (marked as a drill)? Default no.
    #[serde(default)]
    pub notify: bool,
    /// How often the service must be drilled (default 365d), for the yearly summary.
    #[serde(default)]
    pub interval: Option<Duration>,
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// As written.
    pub text: String,
    /// The cron expression it means.
    pub cron: croner::Cron,
}

impl Schedule {
    /// Parses a cron expression or the `monthly <nth> <weekday> HH:MM` shorthand.
    ///
    /// # Errors
    /// A sentence saying why it is not a schedule.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expr = monthly(text).unwrap_or_else(|| text.to_owned());
        let cron = croner::Cron::from_str(&expr).map_err(|e| {
            format!(
                "{text:?} is not a schedule ({e}); use a cron expression such as \"0 10 * * MON#1\" \
                 or \"monthly first monday 10:00\""
            )
        })?;
        Ok(Self {
            text: text.to_owned(),
            cron,
        })
    }

    /// The first time after `after_ms` (exclusive) the schedule fires, epoch ms (UTC).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = chrono::DateTime::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

/// `monthly first monday 10:00` → `0 10 * * MON#1`; `None` when `text` is not that shorthand.
fn monthly(text: &str) -> Option<String> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let [m, nth, day, at] = words.as_slice() else {
        return None;
    };
    if m != "monthly" {
        return None;
    }
    let nth = match nth.as_str() {
        "first" => "#1",
        "second" => "#2",
        "third" => "#3",
        "fourth" => "#4",
        "last" => "#L",
        _ => return None,
    };
    let day = match day.get(..3)? {
        d @ ("mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun") => d.to_uppercase(),
        _ => return None,
    };
    let (h, mi) = at.split_once(':')?;
    let (h, mi) = (h.parse::<u8>().ok()?, mi.parse::<u8>().ok()?);
    (h < 24 && mi < 60).then(|| format!("{mi} {h} * * {day}{nth}"))
}

/// A validated drill.
#[derive(Debug, Clone, PartialEq)]
pub struct Drill {
    /// Id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Runbook.
    pub runbook: String,
    /// Scenario.
    pub scenario: String,
    /// Participants.
    pub participants: Vec<String>,
    /// Schedule.
    pub schedule: Option<Schedule>,
    /// Abort after, ms.
    pub max_duration_ms: Option<u64>,
    /// Confirmation period, ms.
    pub confirm_ms: u64,
    /// Incidents still notify.
    pub notify: bool,
    /// Required drill interval, ms.
    pub interval_ms: u64,
}

/// Default confirmation period.
pub const DEFAULT_CONFIRM_MS: u64 = 30_000;
/// Default required interval between drills of a service: a year.
pub const DEFAULT_INTERVAL_MS: u64 = 365 * 86_400_000;

/// Validates every drill against the catalogue's services and the runbooks, recording problems
/// under `drills[id="…"]` keys.
pub fn validate(
    raw: &[RawDrill],
    services: &HashSet<&str>,
    runbooks: &[Runbook],
    p: &mut Problems,
) -> Vec<Drill> {
    let books: HashMap<&str, &Runbook> = runbooks.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let at = if d.id.is_empty() {
            format!("drills[{i}]")
        } else {
            format!("drills[id={:?}]", d.id)
        };
        let before = p.len();
        p.check_id(&format!("{at}.id"), &d.id);
        if !seen.insert(d.id.as_str()) {
            p.push(format!("{at}.id"), format!("duplicate drill id {:?}", d.id));
        }
        if !services.contains(d.service.as_str()) {
            p.push(
                format!("{at}.service"),
                format!("{:?} is not a service in the catalogue", d.service),
            );
        }
        match books.get(d.runbook.as_str()) {
            None => p.push(
                format!("{at}.runbook"),
                format!("{:?} is not a [[runbooks]] id", d.runbook),
            ),
            Some(b) if b.service != d.service => p.push(
                format!("{at}.runbook"),
                format!(
                    "runbook {:?} belongs to service {:?}, not {:?}",
                    b.id, b.service, d.service
                ),
            ),
            Some(b)
                if !b
                    .steps
                    .iter()
                    .any(|s| s.phase == crate::runbook::Phase::Inject) =>
            {
                p.push(
                    format!("{at}.runbook"),
                    format!(
                        "runbook {:?} has no kind = \"inject\" step, so a drill would test nothing",
                        b.id
                    ),
                )
            }
            Some(_) => {}
        }
        let schedule = d
            .schedule
            .as_deref()
            .and_then(|text| match Schedule::parse(text) {
                Ok(s) => Some(s),
                Err(e) => {
                    p.push(format!("{at}.schedule"), e);
                    None
                }
            });
        let max_duration_ms = d.max_duration.map(|m| m.as_millis());
        if max_duration_ms == Some(0) {
            p.push(format!("{at}.max_duration"), "must be longer than 0s");
        }
        let confirm_ms = d.confirm.map_or(DEFAULT_CONFIRM_MS, |c| c.as_millis());
        if confirm_ms == 0 {
            p.push(format!("{at}.confirm"), "must be longer than 0s");
        }
        let interval_ms = d.interval.map_or(DEFAULT_INTERVAL_MS, |c| c.as_millis());
        if interval_ms == 0 {
            p.push(format!("{at}.interval"), "must be longer than 0s");
        }
        if let Some(bad) = d.participants.iter().position(|x| x.trim().is_empty()) {
            p.push(format!("{at}.participants[{bad}]"), "must not be empty");
        }
        if p.len() == before {
            out.push(Drill {
                id: d.id.clone(),
                service: d.service.clone(),
                runbook: d.runbook.clone(),
                scenario: d.scenario.clone(),
                participants: d.participants.clone(),
                schedule,
                max_duration_ms,
                confirm_ms,
                notify: d.notify,
                interval_ms,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::config::{validate as validate_runbooks, Known, RawRunbook};

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        runbooks: Vec<RawRunbook>,
        #[serde(default)]
        drills: Vec<RawDrill>,
    }

    const BOOKS: &str = r#"
[[runbooks]]
id = "shop-failover"
service = "shop"
[[runbooks.steps]]
id = "break"
kind = "inject"
via = "http"
url = "http://127.0.0.1:9/fail"
[[runbooks.steps]]
id = "promote"
kind = "exec"
argv = ["/bin/true"]
[[runbooks.steps]]
id = "back"
kind = "restore"
via = "exec"
argv = ["/bin/true"]

[[runbooks]]
id = "db-failover"
service = "db"
[[runbooks.steps]]
kind = "exec"
argv = ["/bin/true"]
"#;

    fn check(drills: &str) -> (Vec<Drill>, Vec<String>) {
        let file: File = toml::from_str(&format!("{BOOKS}\n{drills}")).expect("test TOML");
        let services: HashSet<&str> = ["shop", "db"].into_iter().collect();
        let webhooks = HashSet::new();
        let mut p = Problems::default();
        let books = validate_runbooks(
            &file.runbooks,
            Known {
                services: &services,
                webhooks: &webhooks,
            },
            &mut p,
        );
        let out = validate(&file.drills, &services, &books, &mut p);
        let errors = match p.finish(std::path::Path::new("collector.toml"), ()) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect(),
        };
        (out, errors)
    }

    #[test]
    fn a_monthly_drill_validates_with_defaults() {
        let (drills, errors) = check(
            r#"
[[drills]]
id = "shop-dr"
service = "shop"
runbook = "shop-failover"
scenario = "Primary database host lost"
participants = ["ana (continuity manager)", "bo (DBA)"]
schedule = "monthly first monday 10:00"
max_duration = "30m"
"#,
        );
        assert_eq!(errors, Vec::<String>::new());
        let d = &drills[0];
        assert_eq!(d.confirm_ms, DEFAULT_CONFIRM_MS);
        assert_eq!(d.max_duration_ms, Some(1_800_000));
        assert!(!d.notify);
        let s = d.schedule.as_ref().expect("schedule");
        assert_eq!(s.cron.pattern.to_string(), "0 10 * * 1#1");
    }

    #[test]
    fn every_drill_problem_is_named_by_its_key() {
        let (drills, errors) = check(
            r#"
[[drills]]
id = "a"
service = "nope"
runbook = "gone"
schedule = "every tuesday"
max_duration = "0s"
confirm = "0s"
participants = [" "]

[[drills]]
id = "a"
service = "shop"
runbook = "db-failover"

[[drills]]
id = "c"
service = "db"
runbook = "db-failover"
"#,
        );
        assert!(drills.is_empty());
        assert_eq!(errors.len(), 9, "{errors:#?}");
        let at = "drills[id=\"a\"]";
        assert_eq!(
            errors[0],
            format!("{at}.service: \"nope\" is not a service in the catalogue")
        );
        assert_eq!(
            errors[1],
            format!("{at}.runbook: \"gone\" is not a [[runbooks]] id")
        );
        assert!(
            errors[2].starts_with(&format!(
                "{at}.schedule: \"every tuesday\" is not a schedule ("
            )),
            "{}",
            errors[2]
        );
        assert!(errors[2].ends_with(
            "use a cron expression such as \"0 10 * * MON#1\" or \"monthly first monday 10:00\""
        ));
        assert_eq!(
            errors[3],
            format!("{at}.max_duration: must be longer than 0s")
        );
        assert_eq!(errors[4], format!("{at}.confirm: must be longer than 0s"));
        assert_eq!(
            errors[5],
            format!("{at}.participants[0]: must not be empty")
        );
        assert_eq!(errors[6], format!("{at}.id: duplicate drill id \"a\""));
        assert_eq!(
            errors[7],
            format!(
                "{at}.runbook: runbook \"db-failover\" belongs to service \"db\", not \"shop\""
            )
        );
        assert_eq!(
            errors[8],
            "drills[id=\"c\"].runbook: runbook \"db-failover\" has no kind = \"inject\" step, so a drill would test nothing"
        );
    }

    #[test]
    fn schedules_fire_at_their_next_time_in_utc() {
        let s = Schedule::parse("monthly first monday 10:00").expect("parses");
        // 2026-12-01 00:00 UTC is a Tuesday: the first Monday is 2026-12-07.
        let from = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("date")
            .timestamp_millis() as u64;
        let next = s.next_after(from).expect("next");
        let want = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .expect("date")
            .timestamp_millis() as u64;
        assert_eq!(next, want);
        // Exclusive: from the firing instant itself, the next is January's first Monday.
        let again = s.next_after(want).expect("next");
        let jan = chrono::DateTime::parse_from_rfc3339("2027-01-04T10:00:00Z")
            .expect("date")
            .timestamp_millis() as u64;
        assert_eq!(again, jan);
        let cron = Schedule::parse("*/5 * * * *").expect("cron");
        assert_eq!(cron.next_after(from), Some(from + 300_000));
        // Six fields: the first is seconds (the e2e test's every-10-seconds drill).
        let secs = Schedule::parse("*/10 * * * * *").expect("seconds");
        assert_eq!(secs.next_after(from + 1), Some(from + 10_000));
        assert_eq!(secs.next_after(from + 10_000), Some(from + 20_000));
        let last = Schedule::parse("monthly last friday 16:30").expect("last");
        assert_eq!(
            last.next_after(from),
            Some(
                chrono::DateTime::parse_from_rfc3339("2026-12-25T16:30:00Z")
                    .expect("date")
                    .timestamp_millis() as u64
            )
        );
    }

    #[test]
    fn inject_and_restore_steps_wrap_other_kinds_and_need_via() {
        let (_, errors) = check(
            r#"
[[runbooks]]
id = "bad"
service = "shop"
[[runbooks.steps]]
kind = "inject"
[[runbooks.steps]]
kind = "restore"
via = "teleport"
[[runbooks.steps]]
kind = "restore"
via = "exec"
url = "http://x"
argv = ["/bin/true"]
[[runbooks.steps]]
kind = "exec"
via = "http"
argv = ["/bin/true"]
"#,
        );
        let at = "runbooks[id=\"bad\"]";
        assert_eq!(
            errors,
            [
                format!("{at}.steps[0].via: kind = \"inject\" needs via = \"agent_action\", \"http\", \"exec\", …"),
                format!("{at}.steps[1].via: \"teleport\" is not a step kind; use agent_action, http, exec, wait_for, approval or notify"),
                format!("{at}.steps[2].url: not a field of kind = \"exec\" (it takes argv)"),
                format!("{at}.steps[3].via: not a field of kind = \"exec\" (only inject and restore steps take it)"),
            ]
        );
    }
}
