//! What a drill measured, from the stored probe results (the same stream SLA and incidents
//! read), and its verdict. Definitions (also in the README):
//!
//! - **inject** — when the first `inject` step's first attempt began.
//! - **time to detect (probe)** — inject → the first stored result at or after inject, of any
//!   probe of the service, whose state is `down`.
//! - **time to detect (incident)** — inject → detection time of the first incident of the
//!   service opened at or after inject.
//! - **time to recover** — inject → the start of the first stretch, after the service was first
//!   measured non-up, in which the service (its probes combined by its `mode`/quorum, as the
//!   SLA sees it) is up for at least the confirmation period without a break. Compared with
//!   the service's `rto`.
//! - **non-up time** — down plus unmonitored time of the service from inject to the end of the
//!   drill window; the SLA classifies exactly this as `drill`.
//! - **RPO result** — from the drill's `rpo_check` steps (see [`crate::runbook::rpo`]): `met`
//!   when every reading was within the service's `rpo`, `not met` when one was not (the worst
//!   is reported), `not checked` when the drill has no such step or none read a value.
//!
//! Verdict: `aborted` when the drill was aborted; otherwise `not_met` when the failure was
//! never measured, the service never recovered within the window, recovery took longer
//! than the RTO, or the RPO was not met; otherwise `met`.

use serde::{Deserialize, Serialize};

use crate::runbook::rpo::RpoReading;
use crate::sla::{ServiceClass, ServiceSegment, Span};

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Recovered within the RTO.
    Met,
    /// Not recovered, or not within the RTO, or the failure was never seen.
    NotMet,
    /// Aborted (`max_duration`, a failed step).
    Aborted,
}

impl Verdict {
    /// As written in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::Aborted => "aborted",
        }
    }
}

/// When the failure showed and when the service recovered, from its classified timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Start of the first non-up stretch at or after inject, epoch ms.
    pub first_non_up_ms: Option<u64>,
    /// Start of the first up stretch of at least the confirmation period after it.
    pub recovered_ms: Option<u64>,
    /// Non-up (down + unknown) time in the segments, ms.
    pub non_up_ms: u64,
}

/// Finds the failure and the confirmed recovery in `segments` (the service's timeline from
/// inject on, without drill overlay). An up stretch still going at the end of the segments
/// counts when it is already `confirm_ms` long.
pub fn recovery(segments: &[ServiceSegment], confirm_ms: u64) -> Recovery {
    let mut out = Recovery::default();
    // Adjacent up segments (partial outages split them) are one stretch.
    let mut up_since: Option<u64> = None;
    for seg in segments {
        let up = seg.class == ServiceClass::Up;
        if !up && seg.class != ServiceClass::Maintenance {
            out.non_up_ms += seg.span.to_ms - seg.span.from_ms;
        }
        if out.first_non_up_ms.is_none() {
            if matches!(seg.class, ServiceClass::Down | ServiceClass::Unknown) {
                out.first_non_up_ms = Some(seg.span.from_ms);
            }
            continue;
        }
        if up {
            let since = *up_since.get_or_insert(seg.span.from_ms);
            if out.recovered_ms.is_none() && seg.span.to_ms.saturating_sub(since) >= confirm_ms {
                out.recovered_ms = Some(since);
            }
        } else {
            up_since = None;
        }
    }
    out
}

/// One step of the drill as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLine {
    /// Runbook run it belongs to.
    pub run: u64,
    /// Step id.
    pub id: String,
    /// `inject`, `recover` or `restore`.
    pub phase: String,
    /// The kind that did the work.
    pub kind: String,
    /// How it ended (`succeeded`, `failed`, `skipped`, `cancelled`, …).
    pub status: String,
    /// When its first attempt began, epoch ms.
    pub started_ms: Option<u64>,
    /// When its last attempt ended, epoch ms.
    pub ended_ms: Option<u64>,
    /// Ended − started, seconds.
    pub duration_s: Option<f64>,
    /// Attempts made.
    pub attempts: usize,
    /// The last attempt's detail or reason.
    pub detail: String,
    /// What an `rpo_check` step read (its last attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<RpoReading>,
}

/// The RPO result of a drill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpoStatus {
    /// Every reading was within the RPO.
    Met,
    /// A reading was over the RPO.
    NotMet,
    /// No `rpo_check` step read a value.
    #[default]
    NotChecked,
}

impl RpoStatus {
    /// As written in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            RpoStatus::Met => "met",
            RpoStatus::NotMet => "not met",
            RpoStatus::NotChecked => "not checked",
        }
    }
}

/// The recovery point check of a drill: the worst reading of its `rpo_check` steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RpoResult {
    /// Met, not met, not checked.
    pub status: RpoStatus,
    /// The service's RPO, seconds.
    pub rpo_s: f64,
    /// The worst recovery point read, seconds.
    pub lag_s: Option<f64>,
    /// The step that read it.
    pub step: Option<String>,
    /// When it was read, epoch ms.
    pub at_ms: Option<u64>,
    /// Readings taken.
    pub readings: usize,
    /// In words.
    pub detail: String,
}

/// The RPO result from the drill's steps (`rpo_check` steps that read a value, and those that
/// could not), against `rpo_ms`.
pub fn rpo_result(steps: &[StepLine], rpo_ms: u64) -> RpoResult {
    let rpo_s = rpo_ms as f64 / 1e3;
    let read: Vec<(&StepLine, &RpoReading)> = steps
        .iter()
        .filter_map(|s| Some((s, s.rpo.as_ref()?)))
        .collect();
    let worst = read.iter().max_by_key(|(_, r)| (!r.met, r.lag_ms));
    let Some((step, reading)) = worst else {
        let failed: Vec<String> = steps
            .iter()
            .filter(|s| s.kind == "rpo_check")
            .map(|s| format!("step {:?} {}: {}", s.id, s.status, s.detail))
            .collect();
        let detail = if failed.is_empty() {
            "no rpo_check step in this drill".to_owned()
        } else {
            format!("nothing was read ({})", failed.join("; "))
        };
        return RpoResult {
            rpo_s,
            detail,
            ..RpoResult::default()
        };
    };
    let met = read.iter().all(|(_, r)| r.met);
    RpoResult {
        status: if met {
            RpoStatus::Met
        } else {
            RpoStatus::NotMet
        },
        rpo_s,
        lag_s: Some(reading.lag_ms as f64 / 1e3),
        step: Some(step.id.clone()),
        at_ms: Some(reading.at_ms),
        readings: read.len(),
        detail: format!(
            "recovery point {:.1} s {} the RPO of {:.1} s (step {:?}, {} = {})",
            reading.lag_ms as f64 / 1e3,
            if reading.met { "within" } else { "over" },
            reading.rpo_ms as f64 / 1e3,
            step.id,
            reading.reads.as_str(),
            reading.value
        ),
    }
}

/// An incident seen during the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentLine {
    /// Incident id.
    pub id: u64,
    /// Rule.
    pub rule: String,
    /// Detected, epoch ms.
    pub detected_ms: u64,
    /// Resolved, epoch ms.
    pub resolved_ms: Option<u64>,
    /// Marked as a drill incident (not paged unless the drill notifies).
    pub drill: bool,
    /// A notification was queued for it.
    pub notified: bool,
}

/// The service's BIA targets at the time of the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Service name.
    pub name: String,
    /// Criticality.
    pub criticality: String,
    /// RTO, seconds.
    pub rto_s: f64,
    /// RPO, seconds.
    pub rpo_s: f64,
}

/// The SLA over the drill window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaEffect {
    /// Window start (inject), epoch ms.
    pub from_ms: u64,
    /// Window end (end of settling), epoch ms.
    pub to_ms: u64,
    /// Time classified `drill`.
    pub drill_s: f64,
    /// Unplanned downtime (0 unless something else failed).
    pub downtime_s: f64,
    /// Unmonitored time outside the drill's classification.
    pub unmonitored_s: f64,
    /// Up time.
    pub uptime_s: f64,
}

/// Everything measured, fixed when the drill finished (so the report, and its hash, do not
/// change when incidents or the catalogue change later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// BIA targets.
    pub targets: Targets,
    /// Inject, epoch ms.
    pub inject_ms: Option<u64>,
    /// First down result, epoch ms.
    pub first_down_ms: Option<u64>,
    /// Inject → first down result, seconds.
    pub detect_s: Option<f64>,
    /// First incident's detection, epoch ms.
    pub incident_ms: Option<u64>,
    /// Inject → incident, seconds.
    pub detect_incident_s: Option<f64>,
    /// Confirmed recovery, epoch ms.
    pub recovered_ms: Option<u64>,
    /// Inject → recovery, seconds.
    pub recover_s: Option<f64>,
    /// Confirmation period, seconds.
    pub confirm_s: f64,
    /// Recovery within the RTO.
    pub rto_met: bool,
    /// Non-up time from inject to the end of the window, seconds.
    pub non_up_s: f64,
    /// The recovery point check (`not checked` in records from before it existed).
    #[serde(default)]
    pub rpo: RpoResult,
    /// Steps as they ran.
    pub steps: Vec<StepLine>,
    /// Incidents of the service opened during the drill.
    pub incidents: Vec<IncidentLine>,
    /// SLA over the drill window.
    pub sla: Option<SlaEffect>,
    /// What did not go to plan.
    pub deviations: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// Seconds between two epoch-ms instants.
pub fn secs(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1_000.0
}

/// The verdict and its reason from the figures: the recovery against the RTO, then the RPO
/// result (a reading over the RPO makes a drill that met its RTO `not met`).
pub fn judge(
    aborted: Option<&str>,
    r: &Recovery,
    inject_ms: Option<u64>,
    rto_ms: u64,
    rpo: &RpoResult,
) -> (Verdict, String) {
    let (verdict, reason) = judge_rto(aborted, r, inject_ms, rto_ms);
    match (verdict, rpo.status) {
        (Verdict::Aborted, _) | (_, RpoStatus::Met | RpoStatus::NotChecked) => (verdict, reason),
        (Verdict::Met | Verdict::NotMet, RpoStatus::NotMet) => (
            Verdict::NotMet,
            format!("{reason}; RPO not met: {}", rpo.detail),
        ),
    }
}

fn judge_rto(
    aborted: Option<&str>,
    r: &Recovery,
    inject_ms: Option<u64>,
    rto_ms: u64,
) -> (Verdict, String) {
    if let Some(why) = aborted {
        return (Verdict::Aborted, format!("aborted: {why}"));
    }
    let Some(inject) = inject_ms else {
        return (Verdict::NotMet, "no inject step ran".to_owned());
    };
    if r.first_non_up_ms.is_none() {
        return (
            Verdict::NotMet,
            "the injected failure was never measured (the service stayed up)".to_owned(),
        );
    }
    let Some(rec) = r.recovered_ms else {
        return (
            Verdict::NotMet,
            "the service was not measured up for the confirmation period before the drill ended"
                .to_owned(),
        );
    };
    let took = rec.saturating_sub(inject);
    if took > rto_ms {
        (
            Verdict::NotMet,
            format!(
                "recovered in {:.1} s, over the RTO of {:.1} s",
                took as f64 / 1e3,
                rto_ms as f64 / 1e3
            ),
        )
    } else {
        (
            Verdict::Met,
            format!(
                "recovered in {:.1} s, within the RTO of {:.1} s",
                took as f64 / 1e3,
                rto_ms as f64 / 1e3
            ),
        )
    }
}

/// The segments of `[from, to)` (helper for callers building the span).
pub fn span(from_ms: u64, to_ms: u64) -> Span {
    Span {
        from_ms,
        to_ms: to_ms.max(from_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(from: u64, to: u64, class: ServiceClass) -> ServiceSegment {
        ServiceSegment {
            span: Span {
                from_ms: from,
                to_ms: to,
            },
            class,
            partial_outage: false,
        }
    }

    #[test]
    fn recovery_needs_the_confirmation_period_without_a_break() {
        use ServiceClass::{Down, Unknown, Up};
        let segs = [
            seg(0, 1_000, Up),
            seg(1_000, 5_000, Down),
            seg(5_000, 7_000, Up), // too short: 2 s < 3 s
            seg(7_000, 8_000, Unknown),
            seg(8_000, 9_000, Up),
            seg(9_000, 12_000, Up), // joined with the previous: 4 s from 8 s
        ];
        let r = recovery(&segs, 3_000);
        assert_eq!(r.first_non_up_ms, Some(1_000));
        assert_eq!(r.recovered_ms, Some(8_000));
        assert_eq!(r.non_up_ms, 5_000);
        assert_eq!(recovery(&segs, 5_000).recovered_ms, None);
        assert_eq!(recovery(&[seg(0, 9_000, Up)], 1_000), Recovery::default());
    }

    #[test]
    fn the_verdict_compares_recovery_with_the_rto() {
        let r = Recovery {
            first_non_up_ms: Some(2_000),
            recovered_ms: Some(31_000),
            non_up_ms: 29_000,
        };
        let none = RpoResult::default();
        assert_eq!(judge(None, &r, Some(1_000), 30_000, &none).0, Verdict::Met);
        let (v, why) = judge(None, &r, Some(1_000), 20_000, &none);
        assert_eq!(v, Verdict::NotMet);
        assert_eq!(why, "recovered in 30.0 s, over the RTO of 20.0 s");
        let (v, why) = judge(
            Some("max_duration 10 s reached"),
            &r,
            Some(1_000),
            30_000,
            &none,
        );
        assert_eq!(
            (v, why.as_str()),
            (Verdict::Aborted, "aborted: max_duration 10 s reached")
        );
        let never = Recovery::default();
        assert_eq!(
            judge(None, &never, Some(1_000), 30_000, &none).0,
            Verdict::NotMet
        );
        let stuck = Recovery {
            recovered_ms: None,
            ..r
        };
        assert_eq!(
            judge(None, &stuck, Some(1_000), 30_000, &none).0,
            Verdict::NotMet
        );
    }

    fn rpo_step(id: &str, lag_ms: Option<u64>, rpo_ms: u64) -> StepLine {
        StepLine {
            run: 1,
            id: id.into(),
            phase: "recover".into(),
            kind: "rpo_check".into(),
            status: if lag_ms.is_some() {
                "succeeded"
            } else {
                "failed"
            }
            .into(),
            started_ms: Some(5_000),
            ended_ms: Some(5_100),
            duration_s: Some(0.1),
            attempts: 1,
            detail: if lag_ms.is_some() {
                String::new()
            } else {
                "HTTP 503".into()
            },
            rpo: lag_ms.map(|lag_ms| RpoReading {
                reads: crate::runbook::rpo::Reads::LagS,
                value: (lag_ms as f64 / 1e3).to_string(),
                at_ms: 5_100,
                lag_ms,
                rpo_ms,
                met: lag_ms <= rpo_ms,
            }),
        }
    }

    #[test]
    fn the_rpo_result_is_the_worst_reading_and_decides_a_met_rto() {
        let none = rpo_result(&[], 60_000);
        assert_eq!(
            (none.status, none.rpo_s, none.detail.as_str()),
            (
                RpoStatus::NotChecked,
                60.0,
                "no rpo_check step in this drill"
            )
        );
        let unread = rpo_result(&[rpo_step("lag", None, 60_000)], 60_000);
        assert_eq!(unread.status, RpoStatus::NotChecked);
        assert_eq!(
            unread.detail,
            "nothing was read (step \"lag\" failed: HTTP 503)"
        );
        let met = rpo_result(
            &[
                rpo_step("before", Some(2_000), 60_000),
                rpo_step("after", Some(60_000), 60_000),
            ],
            60_000,
        );
        assert_eq!(
            (met.status, met.lag_s, met.step.as_deref(), met.readings),
            (RpoStatus::Met, Some(60.0), Some("after"), 2)
        );
        // One reading over the RPO decides, and it is the one reported even when a later
        // reading is within it.
        let missed = rpo_result(
            &[
                rpo_step("before", Some(61_000), 60_000),
                rpo_step("after", Some(1_000), 60_000),
            ],
            60_000,
        );
        assert_eq!(
            (missed.status, missed.lag_s, missed.step.as_deref()),
            (RpoStatus::NotMet, Some(61.0), Some("before"))
        );
        assert_eq!(
            missed.detail,
            "recovery point 61.0 s over the RPO of 60.0 s (step \"before\", lag_s = 61)"
        );
        let r = Recovery {
            first_non_up_ms: Some(2_000),
            recovered_ms: Some(31_000),
            non_up_ms: 29_000,
        };
        let (v, why) = judge(None, &r, Some(1_000), 60_000, &missed);
        assert_eq!(v, Verdict::NotMet);
        assert_eq!(
            why,
            "recovered in 30.0 s, within the RTO of 60.0 s; RPO not met: recovery point 61.0 s over the RPO of 60.0 s (step \"before\", lag_s = 61)"
        );
        assert_eq!(judge(None, &r, Some(1_000), 60_000, &met).0, Verdict::Met);
        assert_eq!(
            judge(Some("max_duration"), &r, Some(1_000), 60_000, &missed).0,
            Verdict::Aborted
        );
    }
}
