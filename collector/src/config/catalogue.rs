//! The service catalogue: what a service is (id, name, criticality, RTO/RPO), which probes
//! measure it (`agent/probe`), how they combine, its SLO and its maintenance windows. Raw TOML
//! types here are validated into [`Service`]s whose SLA part is the `sla` module's own spec.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use watchstand_shared::config::{Duration, LoadError, Problems};

use crate::sla::{self, LatencyObjective, MaintenanceWindow, Mode, ServiceSlaSpec, Window};

/// Business criticality from the business impact analysis; incidents take their priority from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    /// Must not fail.
    Critical,
    /// Important.
    High,
    /// Normal.
    Medium,
    /// Can wait.
    Low,
}

/// `slo = { … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Availability target, percent.
    pub availability: f64,
    /// `"30d"` (rolling) or `"month"` (calendar).
    #[serde(default = "default_window")]
    pub window: String,
    /// Latency objective threshold, ms.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Share of checks that must be under `latency_ms`, percent.
    #[serde(default)]
    pub latency_pct: Option<f64>,
}

fn default_window() -> String {
    "30d".into()
}

/// One `maintenance = [ … ]` entry: either `from`/`to` (RFC 3339) or `weekly`/`at`/`duration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Fixed window start, RFC 3339.
    #[serde(default)]
    pub from: Option<String>,
    /// Fixed window end, RFC 3339.
    #[serde(default)]
    pub to: Option<String>,
    /// Weekly window day (`mon` … `sun`).
    #[serde(default)]
    pub weekly: Option<String>,
    /// Weekly window start, `HH:MM` UTC.
    #[serde(default)]
    pub at: Option<String>,
    /// Weekly window length.
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Why (shown in reports).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `[[services]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Service id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Criticality.
    pub criticality: Criticality,
    /// Recovery time objective.
    pub rto: Duration,
    /// Recovery point objective.
    pub rpo: Duration,
    /// Probes as `agent/probe`.
    pub probes: Vec<String>,
    /// `all`, `any` or `quorum:N`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The SLO.
    pub slo: RawSlo,
    /// Maintenance windows.
    #[serde(default)]
    pub maintenance: Vec<RawMaintenance>,
    /// Count unmonitored time as downtime.
    #[serde(default)]
    pub count_unknown_as_down: bool,
    /// Services this one depends on (their outages inhibit this one's incidents).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Incident rule overrides (`down_after`, `resolve_after`, `burn_rate`, `flapping`, …).
    #[serde(default)]
    pub incidents: Option<crate::incident::policy::RawIncidentPolicy>,
}

fn default_mode() -> String {
    "all".into()
}

/// A probe reference `agent/probe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProbeRef {
    /// Agent id.
    pub agent: String,
    /// Probe id on that agent.
    pub probe: String,
}

impl std::fmt::Display for ProbeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.agent, self.probe)
    }
}

/// A validated service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Criticality.
    pub criticality: Criticality,
    /// RTO.
    pub rto: Duration,
    /// RPO.
    pub rpo: Duration,
    /// Probes.
    pub probes: Vec<ProbeRef>,
    /// The mode as written, for display.
    pub mode_text: String,
    /// The SLO window.
    pub window: Window,
    /// The window as written, for display.
    pub window_text: String,
    /// Everything the SLA arithmetic needs.
    pub sla: ServiceSlaSpec,
    /// Dependencies.
    pub depends_on: Vec<String>,
}

/// All services, in file order.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// Services.
    pub services: Vec<Service>,
}

impl Catalogue {
    /// A service by id.
    pub fn get(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }
}

/// What a services file holds: `[[services]]` and the `[[runbooks]]` that restore them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    /// Services.
    #[serde(default)]
    pub services: Vec<RawService>,
    /// Runbooks.
    #[serde(default)]
    pub runbooks: Vec<crate::runbook::config::RawRunbook>,
}

/// Reads the `[[services]]` and `[[runbooks]]` of a services file.
///
/// # Errors
/// Unreadable file or TOML errors, naming the services file.
pub fn load_services_file(path: &Path) -> Result<ServicesFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    watchstand_shared::config::from_toml(&text, path)
}

/// Validates every service, recording problems under `services[id="…"]` keys.
pub fn validate(raw: &[RawService], p: &mut Problems) -> Catalogue {
    let mut seen = HashSet::new();
    let mut services = Vec::new();
    let ids: HashSet<&str> = raw.iter().map(|s| s.id.as_str()).collect();
    for (i, s) in raw.iter().enumerate() {
        let at = if s.id.is_empty() {
            format!("services[{i}]")
        } else {
            format!("services[id={:?}]", s.id)
        };
        p.check_id(&format!("{at}.id"), &s.id);
        if !seen.insert(s.id.clone()) {
            p.push(
                format!("{at}.id"),
                format!("duplicate service id {:?}", s.id),
            );
        }
        if s.probes.is_empty() {
            p.push(format!("{at}.probes"), "a service needs at least one probe");
        }
        let mut probes = Vec::new();
        for (j, text) in s.probes.iter().enumerate() {
            match text.split_once('/') {
                Some((agent, probe))
                    if watchstand_shared::topic::validate_id(agent).is_ok()
                        && watchstand_shared::topic::validate_id(probe).is_ok() =>
                {
                    probes.push(ProbeRef {
                        agent: agent.to_owned(),
                        probe: probe.to_owned(),
                    });
                }
                _ => p.push(
                    format!("{at}.probes[{j}]"),
                    format!("{text:?} is not agent/probe (ids of [A-Za-z0-9_.-])"),
                ),
            }
        }
        let mode = match Mode::from_str(&s.mode) {
            Ok(m) => {
                if let Err(e) = m.check_probe_count(s.probes.len()) {
                    p.push(format!("{at}.mode"), e.to_string());
                }
                Some(m)
            }
            Err(e) => {
                p.push(format!("{at}.mode"), e.to_string());
                None
            }
        };
        let window = match Window::from_str(&s.slo.window) {
            Ok(w) => Some(w),
            Err(e) => {
                p.push(format!("{at}.slo.window"), e.to_string());
                None
            }
        };
        let a = s.slo.availability;
        if !(a > 0.0 && a <= 100.0) {
            p.push(
                format!("{at}.slo.availability"),
                format!("{a} is not a percentage in (0, 100]"),
            );
        }
        let latency = match (s.slo.latency_ms, s.slo.latency_pct) {
            (None, None) => None,
            (Some(ms), Some(pct)) if ms > 0.0 && pct > 0.0 && pct <= 100.0 => {
                Some(LatencyObjective {
                    latency_ms: ms,
                    pct,
                })
            }
            (Some(_), Some(_)) => {
                p.push(
                    format!("{at}.slo.latency_ms"),
                    "latency_ms must be > 0 and latency_pct in (0, 100]",
                );
                None
            }
            _ => {
                p.push(
                    format!("{at}.slo.latency_ms"),
                    "latency_ms and latency_pct must be set together",
                );
                None
            }
        };
        let mut maintenance = Vec::new();
        for (j, m) in s.maintenance.iter().enumerate() {
            match maintenance_window(m) {
                Ok(w) => maintenance.push(w),
                Err(e) => p.push(format!("{at}.maintenance[{j}]"), e),
            }
        }
        for dep in &s.depends_on {
            if !ids.contains(dep.as_str()) || dep == &s.id {
                p.push(
                    format!("{at}.depends_on"),
                    format!("{dep:?} is not another service in the catalogue"),
                );
            }
        }
        if let (Some(mode), Some(window)) = (mode, window) {
            services.push(Service {
                id: s.id.clone(),
                name: s.name.clone(),
                criticality: s.criticality,
                rto: s.rto,
                rpo: s.rpo,
                probes,
                mode_text: s.mode.clone(),
                window,
                window_text: s.slo.window.clone(),
                sla: ServiceSlaSpec {
                    mode,
                    target_pct: a,
                    latency,
                    maintenance,
                    count_unknown_as_down: s.count_unknown_as_down,
                },
                depends_on: s.depends_on.clone(),
            });
        }
    }
    Catalogue { services }
}

fn maintenance_window(m: &RawMaintenance) -> Result<MaintenanceWindow, String> {
    match (&m.from, &m.to, &m.weekly, &m.at, &m.duration) {
        (Some(from), Some(to), None, None, None) => {
            let from_ms = sla::maintenance::parse_rfc3339_ms(from).map_err(|e| e.to_string())?;
            let to_ms = sla::maintenance::parse_rfc3339_ms(to).map_err(|e| e.to_string())?;
            if from_ms >= to_ms {
                return Err(format!("from {from:?} is not before to {to:?}"));
            }
            Ok(MaintenanceWindow::Fixed { from_ms, to_ms })
        }
        (None, None, Some(day), Some(at), Some(duration)) => {
            let weekday = sla::maintenance::parse_weekday(day).map_err(|e| e.to_string())?;
            let start_minute = sla::maintenance::parse_hh_mm(at).map_err(|e| e.to_string())?;
            if duration.as_millis() == 0 || duration.as_millis() > 7 * 86_400_000 {
                return Err(format!("duration {duration} must be between 1ms and 7d"));
            }
            Ok(MaintenanceWindow::Weekly {
                weekday,
                start_minute,
                duration_ms: duration.as_millis(),
            })
        }
        _ => Err(
            "give either from + to (RFC 3339) or weekly + at + duration, e.g. { weekly = \"sun\", at = \"02:00\", duration = \"2h\" }"
                .into(),
        ),
    }
}
