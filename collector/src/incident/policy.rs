//! Incident rule settings: `[incidents]` in the collector config (defaults for every service),
//! `incidents = { … }` on a service (overrides), and `[[webhooks]]` (receivers). Raw types mirror
//! the TOML; `validate` reports every problem with its key and builds [`IncidentPolicy`] per
//! service.

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};

use super::Priority;

/// One burn-rate alert as written: fire when the burn rate over both `long` and `short` is at
/// least `factor` (Google SRE workbook, multi-window multi-burn-rate).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurnRateWindow {
    /// A name for the alert (`fast`, `slow`); part of the dedup key.
    pub name: String,
    /// Burn rate threshold (1 = spending the budget exactly over the SLO window).
    pub factor: f64,
    /// Long window.
    pub long: Duration,
    /// Short window (confirms the burn is still going on).
    pub short: Duration,
}

/// `flapping = { … }` as written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFlapping {
    /// Detect flapping at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Evaluations looked back on.
    #[serde(default = "default_flap_window")]
    pub window: usize,
    /// Flapping starts at this percent state change.
    #[serde(default = "default_flap_high")]
    pub high_pct: f64,
    /// Flapping stops at or below this percent state change.
    #[serde(default = "default_flap_low")]
    pub low_pct: f64,
}

impl Default for RawFlapping {
    fn default() -> Self {
        Self {
            enabled: true,
            window: default_flap_window(),
            high_pct: default_flap_high(),
            low_pct: default_flap_low(),
        }
    }
}

/// `[incidents]`, and the per-service `incidents = { … }` (every key optional there).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidentPolicy {
    /// How often rules are evaluated (global only).
    #[serde(default)]
    pub evaluate_every: Option<Duration>,
    /// Consecutive evaluations a service must be down before an incident opens.
    #[serde(default)]
    pub down_after: Option<u32>,
    /// Healthy this long (and not flapping) → resolved automatically; `"0s"` resolves on the
    /// first healthy evaluation.
    #[serde(default)]
    pub resolve_after: Option<Duration>,
    /// Re-notify an open, unacknowledged incident this often (`"0s"`: never).
    #[serde(default)]
    pub repeat_interval: Option<Duration>,
    /// Burn-rate alerts; `[]` turns them off.
    #[serde(default)]
    pub burn_rate: Option<Vec<BurnRateWindow>>,
    /// Share of a burn-rate rule's long window that must be measured before it may fire,
    /// percent.
    #[serde(default)]
    pub burn_rate_min_coverage_pct: Option<f64>,
    /// Window over which the latency objective is judged.
    #[serde(default)]
    pub latency_window: Option<Duration>,
    /// Open an incident when the SLO window's error budget is spent.
    #[serde(default)]
    pub sla_below_target: Option<bool>,
    /// Flap detection.
    #[serde(default)]
    pub flapping: Option<RawFlapping>,
    /// Whether outages found late in the data notify: `open_only` (default), `always`, `never`.
    #[serde(default)]
    pub notify_late: Option<NotifyLate>,
}

/// Whether a service-down incident found late in the data (a replay) notifies, as event `late`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotifyLate {
    /// Only if the outage is still going on when found (default).
    #[default]
    OpenOnly,
    /// Also outages already over when found.
    Always,
    /// Never: recorded only.
    Never,
}

/// `[[webhooks]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Receiver name (in logs and the notification outbox).
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Extra headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Shared secret: sent as `X-Watchstand-Secret` so the receiver can check the sender.
    #[serde(default)]
    pub secret: Option<String>,
    /// Priorities this receiver gets (default: all).
    #[serde(default)]
    pub priorities: Option<Vec<Priority>>,
}

/// Most consecutive evaluations `down_after` may ask for (each is recomputed from data).
pub const MAX_DOWN_AFTER: u32 = 1_000;

const fn default_true() -> bool {
    true
}
const fn default_flap_window() -> usize {
    20
}
const fn default_flap_high() -> f64 {
    50.0
}
const fn default_flap_low() -> f64 {
    25.0
}

/// The rules of one service, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentPolicy {
    /// Consecutive down evaluations before "service down" opens.
    pub down_after: u32,
    /// Healthy period before an automatic resolve, ms.
    pub resolve_after_ms: u64,
    /// Re-notification interval, ms (0 = never).
    pub repeat_interval_ms: u64,
    /// Burn-rate alerts.
    pub burn_rate: Vec<BurnRateWindow>,
    /// Measured share of the long window a burn-rate rule needs before it may fire, percent.
    pub burn_rate_min_coverage_pct: f64,
    /// Latency objective window, ms.
    pub latency_window_ms: u64,
    /// The SLA-below-target rule is on.
    pub sla_below_target: bool,
    /// Flap detection.
    pub flapping: RawFlapping,
    /// Whether outages found late notify.
    pub notify_late: NotifyLate,
}

/// Global settings after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSettings {
    /// Evaluation interval, ms.
    pub evaluate_every_ms: u64,
    /// Defaults for every service.
    pub defaults: IncidentPolicy,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            evaluate_every_ms: 10_000,
            defaults: IncidentPolicy {
                down_after: 2,
                resolve_after_ms: 60_000,
                repeat_interval_ms: 4 * 3_600_000,
                burn_rate: vec![
                    BurnRateWindow {
                        name: "fast".into(),
                        factor: 14.4,
                        long: Duration::from_secs(3_600),
                        short: Duration::from_secs(300),
                    },
                    BurnRateWindow {
                        name: "slow".into(),
                        factor: 6.0,
                        long: Duration::from_secs(6 * 3_600),
                        short: Duration::from_secs(1_800),
                    },
                ],
                burn_rate_min_coverage_pct: 90.0,
                latency_window_ms: 3_600_000,
                sla_below_target: true,
                flapping: RawFlapping::default(),
                notify_late: NotifyLate::OpenOnly,
            },
        }
    }
}

/// A webhook receiver after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Name.
    pub name: String,
    /// URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Shared secret.
    pub secret: Option<String>,
    /// Priorities it gets (empty: all).
    pub priorities: Vec<Priority>,
}

fn check_burn(p: &mut Problems, key: &str, windows: &[BurnRateWindow]) {
    for (i, w) in windows.iter().enumerate() {
        let at = format!("{key}.burn_rate[{i}]");
        p.check_id(&format!("{at}.name"), &w.name);
        if !(w.factor.is_finite() && w.factor > 0.0) {
            p.push(
                format!("{at}.factor"),
                format!("{} must be a positive number", w.factor),
            );
        }
        if w.short.as_millis() == 0 || w.short.as_millis() >= w.long.as_millis() {
            p.push(
                format!("{at}.short"),
                format!(
                    "{} must be positive and shorter than long {}",
                    w.short, w.long
                ),
            );
        }
    }
}

fn check_flapping(p: &mut Problems, key: &str, f: &RawFlapping) {
    if f.window < 3 {
        p.push(
            format!("{key}.flapping.window"),
            format!("{} is too small; use at least 3", f.window),
        );
    }
    if !(0.0..=100.0).contains(&f.low_pct)
        || !(0.0..=100.0).contains(&f.high_pct)
        || f.low_pct >= f.high_pct
    {
        p.push(
            format!("{key}.flapping"),
            format!(
                "low_pct {} must be below high_pct {}, both within 0..=100",
                f.low_pct, f.high_pct
            ),
        );
    }
}

/// Applies `raw` over `base`, checking what is set; `key` names the table in messages.
pub fn merge(
    base: &IncidentPolicy,
    raw: &RawIncidentPolicy,
    key: &str,
    p: &mut Problems,
) -> IncidentPolicy {
    let mut out = base.clone();
    if let Some(n) = raw.down_after {
        if n == 0 || n > MAX_DOWN_AFTER {
            p.push(
                format!("{key}.down_after"),
                format!("{n} is outside 1..={MAX_DOWN_AFTER}"),
            );
        }
        out.down_after = n.clamp(1, MAX_DOWN_AFTER);
    }
    if let Some(d) = raw.resolve_after {
        out.resolve_after_ms = d.as_millis();
    }
    if let Some(d) = raw.repeat_interval {
        out.repeat_interval_ms = d.as_millis();
    }
    if let Some(b) = &raw.burn_rate {
        check_burn(p, key, b);
        out.burn_rate = b.clone();
    }
    if let Some(c) = raw.burn_rate_min_coverage_pct {
        if !(0.0..=100.0).contains(&c) {
            p.push(
                format!("{key}.burn_rate_min_coverage_pct"),
                format!("{c} is outside 0..=100"),
            );
        }
        out.burn_rate_min_coverage_pct = c.clamp(0.0, 100.0);
    }
    if let Some(d) = raw.latency_window {
        if d.as_millis() < 60_000 {
            p.push(
                format!("{key}.latency_window"),
                format!("{d} is shorter than one minute"),
            );
        }
        out.latency_window_ms = d.as_millis();
    }
    if let Some(b) = raw.sla_below_target {
        out.sla_below_target = b;
    }
    if let Some(f) = &raw.flapping {
        check_flapping(p, key, f);
        out.flapping = *f;
    }
    if let Some(n) = raw.notify_late {
        out.notify_late = n;
    }
    out
}

/// Validates `[incidents]`.
pub fn settings(raw: &RawIncidentPolicy, p: &mut Problems) -> IncidentSettings {
    let mut s = IncidentSettings::default();
    if let Some(d) = raw.evaluate_every {
        if d.as_millis() < 1_000 {
            p.push(
                "incidents.evaluate_every",
                format!("{d} is too short; use at least 1s"),
            );
        }
        s.evaluate_every_ms = d.as_millis().max(1_000);
    }
    s.defaults = merge(&s.defaults, raw, "incidents", p);
    s
}

/// Validates `[[webhooks]]`.
pub fn webhooks(raw: &[RawWebhook], p: &mut Problems) -> Vec<Webhook> {
    let mut names = std::collections::HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, w)| {
            let at = format!("webhooks[{i}]");
            p.check_id(&format!("{at}.name"), &w.name);
            if !names.insert(w.name.clone()) {
                p.push(
                    format!("{at}.name"),
                    format!("duplicate webhook name {:?}", w.name),
                );
            }
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                p.push(
                    format!("{at}.url"),
                    format!("{:?} is not an http:// or https:// URL", w.url),
                );
            }
            Webhook {
                name: w.name.clone(),
                url: w.url.clone(),
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                secret: w.secret.clone(),
                priorities: w.priorities.clone().unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(toml_text: &str) -> Vec<String> {
        let raw: RawIncidentPolicy = toml::from_str(toml_text).expect("parses");
        let mut p = Problems::default();
        settings(&raw, &mut p);
        p.finish(std::path::Path::new("c.toml"), ())
            .err()
            .map(|e| e.errors.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn policy_errors_name_the_key() {
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("", vec![]),
            (
                "down_after = 0",
                vec!["incidents.down_after: 0 is outside 1..=1000"],
            ),
            (
                "evaluate_every = \"100ms\"",
                vec!["incidents.evaluate_every: 100ms is too short; use at least 1s"],
            ),
            (
                "burn_rate = [{ name = \"fast\", factor = 14.4, long = \"5m\", short = \"1h\" }]",
                vec!["incidents.burn_rate[0].short: 1h must be positive and shorter than long 5m"],
            ),
            (
                "burn_rate_min_coverage_pct = 120",
                vec!["incidents.burn_rate_min_coverage_pct: 120 is outside 0..=100"],
            ),
            (
                "flapping = { high_pct = 20, low_pct = 30 }",
                vec![
                    "incidents.flapping: low_pct 30 must be below high_pct 20, both within 0..=100",
                ],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(errors(input), expected, "input: {input}");
        }
    }

    #[test]
    fn a_service_override_changes_only_what_it_sets() {
        let base = IncidentSettings::default().defaults;
        let raw: RawIncidentPolicy =
            toml::from_str("down_after = 1\nflapping = { enabled = false }").expect("parses");
        let mut p = Problems::default();
        let merged = merge(&base, &raw, "services[id=\"web\"].incidents", &mut p);
        assert!(p.is_empty());
        assert_eq!(merged.down_after, 1);
        assert!(!merged.flapping.enabled);
        assert_eq!(merged.burn_rate, base.burn_rate);
        assert_eq!(merged.resolve_after_ms, base.resolve_after_ms);
    }
}
