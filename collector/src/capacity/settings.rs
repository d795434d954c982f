//! `[capacity]` of the collector config: thresholds per metric (defaults per metric family,
//! overridable per agent and metric), how long the 5-minute and hourly rollups are kept, and
//! the default forecast window and horizon. Raw as written, validated purely into
//! [`CapacitySettings`].
//!
//! ```toml
//! [capacity]
//! five_minute_retention = "90d"
//! hourly_retention = "730d"
//! window = "30d"      # the period a forecast fits by default
//! horizon = "365d"    # dates further out are "not crossing within horizon"
//!
//! [capacity.thresholds]   # per metric family (the name before `:`)
//! disk_used_pct = 85
//! disk_inodes_used_pct = 95
//!
//! [[capacity.overrides]]
//! agent = "db-1"                  # optional: every agent when absent
//! metric = "disk_used_pct:/var"   # a family, or one mount/interface of it
//! threshold = 95
//!
//! [capacity.incidents]            # see `super::incidents`
//! enabled = true
//! evaluate_every = "5m"           # capacity rules are judged this often, not per sample
//! threshold_for = "15m"           # threshold: every sample at or above it for this long
//! forecast_within = "14d"         # forecast: the interval's late date within this
//! forecast_min_r_squared = 0.5    # forecast: the fit's R² at least this
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::time::DAY_MS;

use super::forecast::{Aggregate, AlarmRule};

/// Metric families the agent sends: name, whether it is a percentage, how a day aggregates,
/// and the default threshold (None: no forecast unless configured).
const FAMILIES: &[(&str, bool, Aggregate, Option<f64>)] = &[
    ("cpu_pct", true, Aggregate::P95, Some(80.0)),
    ("load_1", false, Aggregate::P95, None),
    ("load_5", false, Aggregate::P95, None),
    ("load_15", false, Aggregate::P95, None),
    ("mem_used_bytes", false, Aggregate::Peak, None),
    ("mem_used_pct", true, Aggregate::Peak, Some(90.0)),
    ("swap_used_pct", true, Aggregate::Peak, Some(50.0)),
    ("disk_used_pct", true, Aggregate::Peak, Some(90.0)),
    ("disk_used_bytes", false, Aggregate::Peak, None),
    ("net_rx_bytes_per_s", false, Aggregate::P95, None),
    ("net_tx_bytes_per_s", false, Aggregate::P95, None),
    ("disk_inodes_used_pct", true, Aggregate::Peak, Some(90.0)),
    ("net_rx_errors_per_s", false, Aggregate::P95, None),
    ("net_tx_errors_per_s", false, Aggregate::P95, None),
    ("net_rx_drops_per_s", false, Aggregate::P95, None),
    ("net_tx_drops_per_s", false, Aggregate::P95, None),
    ("processes", false, Aggregate::Peak, None),
    ("uptime_s", false, Aggregate::Peak, None),
    ("fd_used_pct", true, Aggregate::Peak, Some(90.0)),
];

/// The family of a metric name: the part before `:` (`disk_used_pct:/var` → `disk_used_pct`).
pub fn family(metric: &str) -> &str {
    metric.split_once(':').map_or(metric, |(f, _)| f)
}

fn known(family: &str) -> Option<&'static (&'static str, bool, Aggregate, Option<f64>)> {
    FAMILIES.iter().find(|f| f.0 == family)
}

/// How a metric's days aggregate: its family's rule (p95 for rates and CPU, peak for what
/// fills up; peak for names the agent does not send).
pub fn aggregate_of(metric: &str) -> Aggregate {
    known(family(metric)).map_or(Aggregate::Peak, |f| f.2)
}

/// One `[[capacity.overrides]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverride {
    /// Only this agent (every agent when absent).
    #[serde(default)]
    pub agent: Option<String>,
    /// A family (`disk_used_pct`) or one metric (`disk_used_pct:/var`).
    pub metric: String,
    /// The threshold.
    pub threshold: f64,
}

/// `[capacity]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacitySection {
    /// How long 5-minute rollups are kept.
    #[serde(default = "default_five_minute_retention")]
    pub five_minute_retention: Duration,
    /// How long hourly rollups are kept.
    #[serde(default = "default_hourly_retention")]
    pub hourly_retention: Duration,
    /// The period a forecast fits by default.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Crossings further out are reported as not crossing within the horizon.
    #[serde(default = "default_horizon")]
    pub horizon: Duration,
    /// Thresholds per family, replacing the defaults.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// Thresholds per agent and/or metric.
    #[serde(default)]
    pub overrides: Vec<RawOverride>,
    /// Capacity incidents.
    #[serde(default)]
    pub incidents: RawCapacityIncidents,
}

/// `[capacity.incidents]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacityIncidents {
    /// Whether capacity incidents are evaluated at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often the capacity rules are evaluated.
    #[serde(default = "default_capacity_every")]
    pub evaluate_every: Duration,
    /// How long every sample must be at or above the threshold.
    #[serde(default = "default_threshold_for")]
    pub threshold_for: Duration,
    /// The late end of the crossing's interval must be within this of now.
    #[serde(default = "default_forecast_within")]
    pub forecast_within: Duration,
    /// The fit's R² must be at least this.
    #[serde(default = "default_min_r_squared")]
    pub forecast_min_r_squared: f64,
}

impl Default for RawCapacityIncidents {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluate_every: default_capacity_every(),
            threshold_for: default_threshold_for(),
            forecast_within: default_forecast_within(),
            forecast_min_r_squared: default_min_r_squared(),
        }
    }
}

const fn default_true() -> bool {
    true
}
const fn default_capacity_every() -> Duration {
    Duration::from_secs(300)
}
const fn default_threshold_for() -> Duration {
    Duration::from_secs(900)
}
const fn default_forecast_within() -> Duration {
    Duration::from_secs(14 * 86_400)
}
const fn default_min_r_squared() -> f64 {
    0.5
}

/// The validated `[capacity.incidents]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityIncidentSettings {
    /// Evaluated at all.
    pub enabled: bool,
    /// Evaluation period, ms.
    pub evaluate_every_ms: u64,
    /// Threshold rule: how long at or above, ms.
    pub threshold_for_ms: u64,
    /// Forecast rule: the alarm rule (within how many days, R² floor).
    pub alarm: AlarmRule,
}

impl Default for RawCapacitySection {
    fn default() -> Self {
        Self {
            five_minute_retention: default_five_minute_retention(),
            hourly_retention: default_hourly_retention(),
            window: default_window(),
            horizon: default_horizon(),
            thresholds: BTreeMap::new(),
            overrides: Vec::new(),
            incidents: RawCapacityIncidents::default(),
        }
    }
}

const fn default_five_minute_retention() -> Duration {
    Duration::from_secs(90 * 86_400)
}
const fn default_hourly_retention() -> Duration {
    Duration::from_secs(730 * 86_400)
}
const fn default_window() -> Duration {
    Duration::from_secs(30 * 86_400)
}
const fn default_horizon() -> Duration {
    Duration::from_secs(365 * 86_400)
}

/// A validated override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Only this agent, or every agent.
    pub agent: Option<String>,
    /// A family or one metric.
    pub metric: String,
    /// The threshold.
    pub threshold: f64,
}

/// The validated `[capacity]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySettings {
    /// 5-minute rollups are kept this long, ms.
    pub five_minute_retention_ms: u64,
    /// Hourly rollups are kept this long, ms.
    pub hourly_retention_ms: u64,
    /// Default forecast period, ms.
    pub window_ms: u64,
    /// Forecast horizon, days.
    pub horizon_days: f64,
    /// Family thresholds (defaults merged with `[capacity.thresholds]`).
    pub thresholds: BTreeMap<String, f64>,
    /// Per agent / metric thresholds.
    pub overrides: Vec<Override>,
    /// `[capacity.incidents]`.
    pub incidents: CapacityIncidentSettings,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        let mut p = Problems::default();
        validate(&RawCapacitySection::default(), &mut p)
    }
}

impl CapacitySettings {
    /// One line for `check`: thresholds, overrides, window, horizon, retention.
    pub fn summary(&self) -> String {
        let thresholds: Vec<String> = self
            .thresholds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let days = |ms: u64| ms / DAY_MS;
        let i = &self.incidents;
        let incidents = if i.enabled {
            format!(
                "incidents every {} s: threshold for {} s, forecast within {}d with R² ≥ {}",
                i.evaluate_every_ms / 1_000,
                i.threshold_for_ms / 1_000,
                i.alarm.within_days,
                i.alarm.min_r_squared
            )
        } else {
            "incidents off".to_owned()
        };
        format!(
            "thresholds {} · {} override(s) · forecast window {}d, horizon {}d · rollups 5-minute {}d, hourly {}d · {incidents}",
            thresholds.join(", "),
            self.overrides.len(),
            days(self.window_ms),
            self.horizon_days,
            days(self.five_minute_retention_ms),
            days(self.hourly_retention_ms)
        )
    }

    /// The threshold of `metric` on `agent`: the most specific override (this agent and this
    /// metric, this agent and its family, any agent and this metric, any agent and its family),
    /// else the family's threshold; None when the metric has none.
    pub fn threshold(&self, agent: &str, metric: &str) -> Option<f64> {
        let fam = family(metric);
        let candidates = [
            (Some(agent), metric),
            (Some(agent), fam),
            (None, metric),
            (None, fam),
        ];
        for (a, m) in candidates {
            if let Some(o) = self
                .overrides
                .iter()
                .find(|o| o.agent.as_deref() == a && o.metric == m)
            {
                return Some(o.threshold);
            }
        }
        self.thresholds.get(fam).copied()
    }
}

fn family_list() -> String {
    FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
}

/// Checks a threshold of `family` at `key`.
fn check_threshold(p: &mut Problems, key: &str, family_name: &str, value: f64) -> bool {
    let Some(&(_, pct, _, _)) = known(family_name) else {
        return false;
    };
    let ok = if pct {
        value > 0.0 && value <= 100.0
    } else {
        value > 0.0 && value.is_finite()
    };
    if !ok {
        let what = if pct {
            "is not a percentage in (0, 100]"
        } else {
            "is not a positive number"
        };
        p.push(key, format!("{value} {what}"));
    }
    ok
}

/// Validates `[capacity]`, recording every problem in `p`; pure.
pub fn validate(raw: &RawCapacitySection, p: &mut Problems) -> CapacitySettings {
    let five = raw.five_minute_retention.as_millis();
    let hourly = raw.hourly_retention.as_millis();
    if five < DAY_MS {
        p.push(
            "capacity.five_minute_retention",
            format!("{} is shorter than one day", raw.five_minute_retention),
        );
    }
    if hourly < five {
        p.push(
            "capacity.hourly_retention",
            format!(
                "{} is shorter than capacity.five_minute_retention ({})",
                raw.hourly_retention, raw.five_minute_retention
            ),
        );
    }
    if raw.window.as_millis() < 3 * DAY_MS {
        p.push(
            "capacity.window",
            format!(
                "{} is shorter than 3 days (a forecast needs at least 3 days)",
                raw.window
            ),
        );
    }
    if raw.horizon.as_millis() < DAY_MS {
        p.push(
            "capacity.horizon",
            format!("{} is shorter than one day", raw.horizon),
        );
    }
    let mut thresholds: BTreeMap<String, f64> = FAMILIES
        .iter()
        .filter_map(|f| Some((f.0.to_owned(), f.3?)))
        .collect();
    for (name, value) in &raw.thresholds {
        let key = format!("capacity.thresholds.{name}");
        if known(name).is_none() {
            p.push(
                key,
                format!("unknown metric {name:?}; expected one of {}", family_list()),
            );
        } else if check_threshold(p, &key, name, *value) {
            thresholds.insert(name.clone(), *value);
        }
    }
    let mut overrides: Vec<Override> = Vec::new();
    for (i, o) in raw.overrides.iter().enumerate() {
        let key = format!("capacity.overrides[{i}]");
        if let Some(agent) = &o.agent {
            p.check_id(&format!("{key}.agent"), agent);
        }
        let fam = family(&o.metric);
        if known(fam).is_none() || o.metric.ends_with(':') {
            p.push(
                format!("{key}.metric"),
                format!(
                    "unknown metric {:?}; expected one of {} (optionally with :mount or :interface)",
                    o.metric,
                    family_list()
                ),
            );
            continue;
        }
        if !check_threshold(p, &format!("{key}.threshold"), fam, o.threshold) {
            continue;
        }
        if let Some(j) = overrides
            .iter()
            .position(|x| x.agent == o.agent && x.metric == o.metric)
        {
            p.push(
                key,
                format!("the same agent and metric as capacity.overrides[{j}]"),
            );
            continue;
        }
        overrides.push(Override {
            agent: o.agent.clone(),
            metric: o.metric.clone(),
            threshold: o.threshold,
        });
    }
    let incidents = validate_incidents(&raw.incidents, raw.horizon, p);
    CapacitySettings {
        incidents,
        five_minute_retention_ms: five,
        hourly_retention_ms: hourly,
        window_ms: raw.window.as_millis(),
        horizon_days: raw.horizon.as_millis() as f64 / DAY_MS as f64,
        thresholds,
        overrides,
    }
}

/// Validates `[capacity.incidents]` (`horizon` is `capacity.horizon`).
fn validate_incidents(
    raw: &RawCapacityIncidents,
    horizon: Duration,
    p: &mut Problems,
) -> CapacityIncidentSettings {
    const KEY: &str = "capacity.incidents";
    if raw.evaluate_every.as_millis() < 1_000 {
        p.push(
            format!("{KEY}.evaluate_every"),
            format!("{} is shorter than 1s", raw.evaluate_every),
        );
    }
    if raw.threshold_for.as_millis() < 1_000 {
        p.push(
            format!("{KEY}.threshold_for"),
            format!("{} is shorter than 1s", raw.threshold_for),
        );
    }
    let within = raw.forecast_within.as_millis();
    if within < DAY_MS {
        p.push(
            format!("{KEY}.forecast_within"),
            format!("{} is shorter than one day", raw.forecast_within),
        );
    } else if within > horizon.as_millis() {
        p.push(
            format!("{KEY}.forecast_within"),
            format!(
                "{} is longer than capacity.horizon ({horizon})",
                raw.forecast_within
            ),
        );
    }
    let r2 = raw.forecast_min_r_squared;
    if !(0.0..=1.0).contains(&r2) {
        p.push(
            format!("{KEY}.forecast_min_r_squared"),
            format!("{r2} is not within [0, 1]"),
        );
    }
    CapacityIncidentSettings {
        enabled: raw.enabled,
        evaluate_every_ms: raw.evaluate_every.as_millis().max(1_000),
        threshold_for_ms: raw.threshold_for.as_millis().max(1_000),
        alarm: AlarmRule {
            within_days: within as f64 / DAY_MS as f64,
            min_r_squared: r2.clamp(0.0, 1.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapper {
        capacity: RawCapacitySection,
    }

    fn check(text: &str) -> Result<CapacitySettings, Vec<String>> {
        let raw: Wrapper = toml::from_str(text).expect("toml");
        let mut p = Problems::default();
        let s = validate(&raw.capacity, &mut p);
        p.finish(std::path::Path::new("c.toml"), s)
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = CapacitySettings::default();
        assert_eq!(s.threshold("a", "disk_used_pct:/"), Some(90.0));
        assert_eq!(s.threshold("a", "mem_used_pct"), Some(90.0));
        assert_eq!(s.threshold("a", "swap_used_pct"), Some(50.0));
        assert_eq!(s.threshold("a", "cpu_pct"), Some(80.0));
        assert_eq!(s.threshold("a", "load_1"), None);
        assert_eq!(s.threshold("a", "disk_inodes_used_pct:/var"), Some(90.0));
        assert_eq!(s.threshold("a", "fd_used_pct"), Some(90.0));
        assert_eq!(s.threshold("a", "net_rx_drops_per_s:eth0"), None);
        assert_eq!(s.threshold("a", "processes"), None);
        assert_eq!(s.threshold("a", "uptime_s"), None);
        assert_eq!(aggregate_of("net_tx_errors_per_s:eth0"), Aggregate::P95);
        assert_eq!(aggregate_of("disk_inodes_used_pct:/"), Aggregate::Peak);
        assert_eq!(s.five_minute_retention_ms, 90 * DAY_MS);
        assert_eq!(s.hourly_retention_ms, 730 * DAY_MS);
        assert_eq!(s.horizon_days, 365.0);
        assert_eq!(aggregate_of("cpu_pct"), Aggregate::P95);
        assert_eq!(aggregate_of("disk_used_pct:/var"), Aggregate::Peak);
        assert_eq!(
            s.summary(),
            "thresholds cpu_pct 80, disk_inodes_used_pct 90, disk_used_pct 90, fd_used_pct 90, mem_used_pct 90, swap_used_pct 50 · 0 override(s) · forecast window 30d, horizon 365d · rollups 5-minute 90d, hourly 730d · incidents every 300 s: threshold for 900 s, forecast within 14d with R² ≥ 0.5"
        );
        let i = s.incidents;
        assert!(i.enabled);
        assert_eq!(i.evaluate_every_ms, 300_000);
        assert_eq!(i.threshold_for_ms, 900_000);
        assert_eq!(i.alarm.within_days, 14.0);
        assert_eq!(i.alarm.min_r_squared, 0.5);
    }

    #[test]
    fn the_most_specific_override_wins() {
        let s = check(
            "[capacity]\n\
             thresholds = { disk_used_pct = 85 }\n\
             [[capacity.overrides]]\nmetric = \"disk_used_pct\"\nthreshold = 80\n\
             [[capacity.overrides]]\nmetric = \"disk_used_pct:/var\"\nthreshold = 70\n\
             [[capacity.overrides]]\nagent = \"db-1\"\nmetric = \"disk_used_pct\"\nthreshold = 95\n\
             [[capacity.overrides]]\nagent = \"db-1\"\nmetric = \"disk_used_pct:/var\"\nthreshold = 97\n\
             [[capacity.overrides]]\nagent = \"web\"\nmetric = \"load_1\"\nthreshold = 8\n\
             [[capacity.overrides]]\nmetric = \"disk_inodes_used_pct:/var\"\nthreshold = 80\n\
             [[capacity.overrides]]\nagent = \"web\"\nmetric = \"net_rx_drops_per_s\"\nthreshold = 50\n",
        )
        .expect("valid");
        assert_eq!(s.threshold("db-1", "disk_used_pct:/var"), Some(97.0));
        assert_eq!(s.threshold("db-1", "disk_used_pct:/"), Some(95.0));
        assert_eq!(s.threshold("web", "disk_used_pct:/var"), Some(70.0));
        assert_eq!(s.threshold("web", "disk_used_pct:/"), Some(80.0));
        assert_eq!(s.threshold("web", "load_1"), Some(8.0));
        assert_eq!(s.threshold("db-1", "load_1"), None);
        assert_eq!(s.thresholds["disk_used_pct"], 85.0);
        assert_eq!(s.threshold("db-1", "disk_inodes_used_pct:/var"), Some(80.0));
        assert_eq!(s.threshold("db-1", "disk_inodes_used_pct:/"), Some(90.0));
        assert_eq!(s.threshold("web", "net_rx_drops_per_s:eth0"), Some(50.0));
    }

    #[test]
    fn config_errors_name_the_key_and_quote_the_value() {
        let cases: &[(&str, &str)] = &[
            ("five_minute_retention = \"1h\"", "capacity.five_minute_retention: 1h is shorter than one day"),
            ("hourly_retention = \"30d\"", "capacity.hourly_retention: 30d is shorter than capacity.five_minute_retention (90d)"),
            ("window = \"2d\"", "capacity.window: 2d is shorter than 3 days (a forecast needs at least 3 days)"),
            ("horizon = \"1h\"\nincidents = { forecast_within = \"1d\" }", "capacity.horizon: 1h is shorter than one day\ncapacity.incidents.forecast_within: 1d is longer than capacity.horizon (1h)"),
            ("incidents = { evaluate_every = \"500ms\" }", "capacity.incidents.evaluate_every: 500ms is shorter than 1s"),
            ("incidents = { threshold_for = \"0s\" }", "capacity.incidents.threshold_for: 0s is shorter than 1s"),
            ("incidents = { forecast_within = \"12h\" }", "capacity.incidents.forecast_within: 12h is shorter than one day"),
            ("horizon = \"10d\"", "capacity.incidents.forecast_within: 14d is longer than capacity.horizon (10d)"),
            ("incidents = { forecast_min_r_squared = 1.5 }", "capacity.incidents.forecast_min_r_squared: 1.5 is not within [0, 1]"),
            ("incidents = { forecast_min_r_squared = -0.1 }", "capacity.incidents.forecast_min_r_squared: -0.1 is not within [0, 1]"),
            ("thresholds = { disk_used_pct = 150 }", "capacity.thresholds.disk_used_pct: 150 is not a percentage in (0, 100]"),
            ("thresholds = { load_1 = -2 }", "capacity.thresholds.load_1: -2 is not a positive number"),
            ("thresholds = { fd_used_pct = 120 }", "capacity.thresholds.fd_used_pct: 120 is not a percentage in (0, 100]"),
            ("overrides = [{ metric = \"net_rx_drops_per_s:eth0\", threshold = 0 }]", "capacity.overrides[0].threshold: 0 is not a positive number"),
            ("thresholds = { disk = 90 }", "capacity.thresholds.disk: unknown metric \"disk\"; expected one of cpu_pct, load_1, load_5, load_15, mem_used_bytes, mem_used_pct, swap_used_pct, disk_used_pct, disk_used_bytes, net_rx_bytes_per_s, net_tx_bytes_per_s, disk_inodes_used_pct, net_rx_errors_per_s, net_tx_errors_per_s, net_rx_drops_per_s, net_tx_drops_per_s, processes, uptime_s, fd_used_pct"),
            ("overrides = [{ metric = \"inodes\", threshold = 90 }]", "capacity.overrides[0].metric: unknown metric \"inodes\"; expected one of cpu_pct, load_1, load_5, load_15, mem_used_bytes, mem_used_pct, swap_used_pct, disk_used_pct, disk_used_bytes, net_rx_bytes_per_s, net_tx_bytes_per_s, disk_inodes_used_pct, net_rx_errors_per_s, net_tx_errors_per_s, net_rx_drops_per_s, net_tx_drops_per_s, processes, uptime_s, fd_used_pct (optionally with :mount or :interface)"),
            ("overrides = [{ metric = \"disk_used_pct:\", threshold = 90 }]", "capacity.overrides[0].metric: unknown metric \"disk_used_pct:\"; expected one of cpu_pct, load_1, load_5, load_15, mem_used_bytes, mem_used_pct, swap_used_pct, disk_used_pct, disk_used_bytes, net_rx_bytes_per_s, net_tx_bytes_per_s, disk_inodes_used_pct, net_rx_errors_per_s, net_tx_errors_per_s, net_rx_drops_per_s, net_tx_drops_per_s, processes, uptime_s, fd_used_pct (optionally with :mount or :interface)"),
            ("overrides = [{ agent = \"a b\", metric = \"cpu_pct\", threshold = 90 }]", "capacity.overrides[0].agent: id \"a b\" contains ' '; only letters, digits, '_', '.' and '-' are allowed"),
            ("overrides = [{ metric = \"mem_used_pct\", threshold = 0 }]", "capacity.overrides[0].threshold: 0 is not a percentage in (0, 100]"),
            ("overrides = [{ metric = \"cpu_pct\", threshold = 90 }, { metric = \"cpu_pct\", threshold = 95 }]", "capacity.overrides[1]: the same agent and metric as capacity.overrides[0]"),
        ];
        for (line, want) in cases {
            let got = check(&format!("[capacity]\n{line}\n")).expect_err(line);
            let want: Vec<String> = want.lines().map(str::to_owned).collect();
            assert_eq!(got, want, "{line}");
        }
        // Every problem at once.
        let all = check(
            "[capacity]\nwindow = \"1d\"\nhorizon = \"1s\"\nthresholds = { cpu_pct = 101 }\n",
        )
        .expect_err("four problems");
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(
            all[3],
            "capacity.incidents.forecast_within: 14d is longer than capacity.horizon (1s)"
        );
    }
}
