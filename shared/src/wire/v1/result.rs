//! `{root}/v1/{site}/{agent}/results`: a batch of probe results (and gap records), QoS 1.

use serde::{Deserialize, Serialize};

use super::envelope::{check_id, check_seqs, check_timestamp, Envelope, RejectReason, Rejection};
use super::gap::GapRecord;

/// What a probe observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    /// Answered as expected.
    Up,
    /// Answered as expected but slower than its `degraded_after` threshold.
    Degraded,
    /// Did not answer as expected (refused, timed out, wrong status or body).
    Down,
}

impl ProbeState {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Up => "up",
            ProbeState::Degraded => "degraded",
            ProbeState::Down => "down",
        }
    }
}

/// One probe run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Per-boot sequence number (shared with capacity samples and gap records of the agent).
    pub seq: u64,
    /// Probe id, unique within the agent.
    pub probe: String,
    /// Probe kind (`http`, `tcp`, …).
    pub kind: String,
    /// What was probed (URL, `host:port`).
    pub target: String,
    /// When the check started, epoch ms.
    pub observed_ms: u64,
    /// The probe's configured interval: the collector holds a result for at most 2 × this.
    pub interval_ms: u64,
    /// The outcome.
    pub state: ProbeState,
    /// How long the check took, µs (the timeout when it timed out).
    pub latency_us: u64,
    /// Short error text when not up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Values the probe read (Nagios perfdata, Modbus registers), in the order read. Additive:
    /// absent when empty, so older collectors and agents are unaffected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<ProbeMetric>,
}

/// One value a probe read beside its state. The collector stores it as the capacity metric
/// `probe:{probe}:{name}` of the agent ([`ProbeMetric::stored_name`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeMetric {
    /// Label, e.g. `time` or `temperature`: 1..=[`MAX_METRIC_NAME_LEN`] bytes, no control
    /// characters.
    pub name: String,
    /// The value (finite; JSON has no NaN or infinity).
    pub value: f64,
    /// Unit of measure as the probe reported it (`s`, `%`, `B`, `c`…), at most
    /// [`MAX_METRIC_UOM_LEN`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uom: Option<String>,
}

impl ProbeMetric {
    /// A metric without a unit.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            value,
            uom: None,
        }
    }

    /// The capacity metric name the collector stores it under: `probe:{probe}:{name}`.
    pub fn stored_name(probe: &str, name: &str) -> String {
        format!("{PROBE_METRIC_PREFIX}{probe}:{name}")
    }

    /// Why this metric breaks the wire rules, if it does.
    pub fn problem(&self) -> Option<String> {
        if self.name.is_empty() || self.name.len() > MAX_METRIC_NAME_LEN {
            return Some(format!(
                "name {:?} is not 1..={MAX_METRIC_NAME_LEN} bytes",
                self.name
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Some(format!("name {:?} has a control character", self.name));
        }
        if !self.value.is_finite() {
            return Some(format!("value of {:?} is not finite", self.name));
        }
        if let Some(uom) = &self.uom {
            if uom.len() > MAX_METRIC_UOM_LEN || uom.chars().any(char::is_control) {
                return Some(format!(
                    "uom {uom:?} is longer than {MAX_METRIC_UOM_LEN} bytes or has a control character"
                ));
            }
        }
        None
    }
}

/// Prefix of the capacity metric names under which probe metrics are stored.
pub const PROBE_METRIC_PREFIX: &str = "probe:";
/// Most metrics one result carries; agents keep the first this many.
pub const MAX_METRICS: usize = 32;
/// Longest metric name.
pub const MAX_METRIC_NAME_LEN: usize = 64;
/// Longest unit of measure.
pub const MAX_METRIC_UOM_LEN: usize = 16;

/// Longest error text kept; agents truncate to this, the collector rejects longer.
pub const MAX_ERROR_LEN: usize = 512;
/// Longest target text accepted.
pub const MAX_TARGET_LEN: usize = 2_048;
/// Longest sensible interval (one day).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
/// Longest sensible latency (one hour), in µs.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A results batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBatch {
    /// Protocol version, 1.
    pub v: u64,
    /// Sending site.
    pub site: String,
    /// Sending agent.
    pub agent: String,
    /// The agent process's boot id; may be an earlier boot when the outbox re-sends.
    pub boot: String,
    /// Results, seq strictly increasing.
    #[serde(default)]
    pub results: Vec<ProbeResult>,
    /// Gap records for data the agent had to drop, seq strictly increasing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapRecord>,
}

impl Envelope for ResultBatch {
    fn version(&self) -> u64 {
        self.v
    }
    fn site(&self) -> &str {
        &self.site
    }
    fn agent(&self) -> &str {
        &self.agent
    }
    fn boot(&self) -> &str {
        &self.boot
    }

    fn validate_body(&self, now_ms: u64) -> Result<(), Rejection> {
        if self.results.is_empty() && self.gaps.is_empty() {
            return Err(Rejection::new(
                RejectReason::EmptyBatch,
                "results and gaps are both empty",
            ));
        }
        check_seqs("results", self.results.iter().map(|r| r.seq))?;
        check_seqs("gaps", self.gaps.iter().map(|g| g.seq))?;
        for (i, r) in self.results.iter().enumerate() {
            check_id(&format!("results[{i}].probe"), &r.probe)?;
            check_timestamp(&format!("results[{i}].observed_ms"), r.observed_ms, now_ms)?;
            let invalid = |what: String| Rejection::new(RejectReason::InvalidValue, what);
            if r.interval_ms == 0 || r.interval_ms > MAX_INTERVAL_MS {
                return Err(invalid(format!(
                    "results[{i}].interval_ms = {} is outside 1..={MAX_INTERVAL_MS}",
                    r.interval_ms
                )));
            }
            if r.latency_us > MAX_LATENCY_US {
                return Err(invalid(format!(
                    "results[{i}].latency_us = {} exceeds one hour",
                    r.latency_us
                )));
            }
            if r.kind.is_empty() || r.kind.len() > 32 {
                return Err(invalid(format!(
                    "results[{i}].kind {:?} is not a kind",
                    r.kind
                )));
            }
            if r.target.len() > MAX_TARGET_LEN {
                return Err(invalid(format!("results[{i}].target is too long")));
            }
            if r.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR_LEN) {
                return Err(invalid(format!("results[{i}].error is too long")));
            }
            if r.metrics.len() > MAX_METRICS {
                return Err(invalid(format!(
                    "results[{i}].metrics has {} entries; at most {MAX_METRICS}",
                    r.metrics.len()
                )));
            }
            for (j, m) in r.metrics.iter().enumerate() {
                if let Some(problem) = m.problem() {
                    return Err(invalid(format!("results[{i}].metrics[{j}]: {problem}")));
                }
            }
        }
        for (i, g) in self.gaps.iter().enumerate() {
            g.validate(&format!("gaps[{i}]"), now_ms)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, GapReason, MAX_PAYLOAD_BYTES};
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    pub(crate) fn sample() -> ResultBatch {
        ResultBatch {
            v: 1,
            site: "plant-1".into(),
            agent: "gw-1".into(),
            boot: "b1".into(),
            results: vec![
                ProbeResult {
                    seq: 7,
                    probe: "web".into(),
                    kind: "http".into(),
                    target: "http://127.0.0.1:8080/".into(),
                    observed_ms: NOW - 1_000,
                    interval_ms: 10_000,
                    state: ProbeState::Up,
                    latency_us: 1_234,
                    error: None,
                    metrics: vec![
                        ProbeMetric {
                            name: "time".into(),
                            value: 0.0012,
                            uom: Some("s".into()),
                        },
                        ProbeMetric::new("queue depth", 3.0),
                    ],
                },
                ProbeResult {
                    seq: 8,
                    probe: "db".into(),
                    kind: "tcp".into(),
                    target: "127.0.0.1:5432".into(),
                    observed_ms: NOW - 900,
                    interval_ms: 10_000,
                    state: ProbeState::Down,
                    latency_us: 2_000_000,
                    error: Some("connection refused".into()),
                    metrics: Vec::new(),
                },
            ],
            gaps: vec![GapRecord {
                seq: 9,
                boot: "b0".into(),
                from_seq: 1,
                to_seq: 100,
                from_ms: NOW - 60_000,
                to_ms: NOW - 30_000,
                reason: GapReason::OutboxFull,
            }],
        }
    }

    fn decode_text(text: &str) -> Result<ResultBatch, Rejection> {
        decode(text.as_bytes(), MAX_PAYLOAD_BYTES, NOW)
    }

    #[test]
    fn a_results_batch_round_trips() {
        let batch = sample();
        let bytes = encode(&batch);
        let back: ResultBatch = decode(&bytes, MAX_PAYLOAD_BYTES, NOW).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn unknown_fields_are_ignored_so_additions_stay_v1() {
        let mut value = serde_json::to_value(sample()).unwrap();
        value["future_field"] = serde_json::json!({"x": 1});
        value["results"][0]["also_new"] = serde_json::json!(true);
        let back: ResultBatch = decode_text(&value.to_string()).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn each_kind_of_malformed_payload_is_rejected_under_its_reason() {
        let good = serde_json::to_value(sample()).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            v.to_string()
        };
        let full = good.to_string();
        let cases: Vec<(String, RejectReason)> = vec![
            ("garbage".into(), RejectReason::NotJson),
            (full[..full.len() / 2].to_owned(), RejectReason::Truncated),
            ("".into(), RejectReason::Truncated),
            ("[1,2,3]".into(), RejectReason::Schema),
            ("{\"v\":1,\"x\":NaN}".into(), RejectReason::NotJson),
            (
                edit(&|v| v["v"] = 2.into()),
                RejectReason::UnsupportedVersion,
            ),
            (
                edit(&|v| v["v"] = "one".into()),
                RejectReason::UnsupportedVersion,
            ),
            (
                edit(&|v| v["results"][0]["seq"] = "7".into()),
                RejectReason::Schema,
            ),
            (
                edit(&|v| v["results"][0]["latency_us"] = (-5).into()),
                RejectReason::Schema,
            ),
            (
                edit(&|v| v["results"][0]["state"] = "sideways".into()),
                RejectReason::Schema,
            ),
            (
                edit(&|v| v["agent"] = serde_json::Value::Null),
                RejectReason::Schema,
            ),
            (
                edit(&|v| v["agent"] = "a/b".into()),
                RejectReason::InvalidId,
            ),
            (
                edit(&|v| v["results"][0]["probe"] = "".into()),
                RejectReason::InvalidId,
            ),
            (
                edit(&|v| v["results"][0]["observed_ms"] = 5.into()),
                RejectReason::TimestampOutOfRange,
            ),
            (
                edit(&|v| v["results"][0]["observed_ms"] = (NOW + 2 * 86_400_000).into()),
                RejectReason::TimestampOutOfRange,
            ),
            (
                edit(&|v| v["results"][1]["seq"] = 3.into()),
                RejectReason::SeqNotIncreasing,
            ),
            (
                edit(&|v| v["results"][0]["seq"] = 0.into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["interval_ms"] = 0.into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["metrics"][0]["name"] = "".into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["metrics"][0]["name"] = "x".repeat(65).into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["metrics"][0]["name"] = "a\u{0}b".into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["metrics"][0]["uom"] = "u".repeat(17).into()),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| {
                    v["results"][0]["metrics"] =
                        serde_json::json!(vec![serde_json::json!({"name": "m", "value": 1.0}); 33])
                }),
                RejectReason::InvalidValue,
            ),
            (
                edit(&|v| v["results"][0]["metrics"][0]["value"] = "high".into()),
                RejectReason::Schema,
            ),
            (
                edit(&|v| {
                    v["results"] = serde_json::json!([]);
                    v["gaps"] = serde_json::json!([]);
                }),
                RejectReason::EmptyBatch,
            ),
            (
                edit(&|v| v["gaps"][0]["from_seq"] = 500.into()),
                RejectReason::InvalidValue,
            ),
        ];
        for (text, reason) in cases {
            let err = decode_text(&text).unwrap_err();
            assert_eq!(err.reason, reason, "{text}: {err}");
        }
        let err = decode::<ResultBatch>(&[0xff, 0xfe, b'{'], MAX_PAYLOAD_BYTES, NOW).unwrap_err();
        assert_eq!(err.reason, RejectReason::NotUtf8);
        let err = decode::<ResultBatch>(full.as_bytes(), 16, NOW).unwrap_err();
        assert_eq!(err.reason, RejectReason::TooLarge);
    }

    #[test]
    fn a_result_without_metrics_omits_the_field_and_old_payloads_decode() {
        let mut batch = sample();
        batch.results[0].metrics.clear();
        let text = String::from_utf8(encode(&batch)).unwrap();
        assert!(!text.contains("metrics"), "{text}");
        let back: ResultBatch = decode_text(&text).unwrap();
        assert_eq!(back, batch);
        assert_eq!(
            ProbeMetric::stored_name("plc", "temperature"),
            "probe:plc:temperature"
        );
    }

    #[test]
    fn shape_errors_name_the_field_path() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["results"][1]["latency_us"] = "slow".into();
        let err = decode_text(&v.to_string()).unwrap_err();
        assert!(
            err.detail.starts_with("results[1].latency_us:"),
            "{}",
            err.detail
        );
    }
}
