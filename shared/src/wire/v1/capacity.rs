//! `{root}/v1/{site}/{agent}/capacity`: a batch of host capacity samples, QoS 1.

use serde::{Deserialize, Serialize};

use super::envelope::{check_seqs, check_timestamp, Envelope, RejectReason, Rejection};

/// Used and total bytes of one mounted file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Mount point.
    pub mount: String,
    /// Used bytes.
    pub used_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
}

/// Receive and transmit rates of one network interface since the previous sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetRate {
    /// Interface name.
    pub iface: String,
    /// Received bytes per second.
    pub rx_bytes_per_s: f64,
    /// Transmitted bytes per second.
    pub tx_bytes_per_s: f64,
}

/// One capacity sample of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacitySample {
    /// Per-boot sequence number (shared with results).
    pub seq: u64,
    /// When sampled, epoch ms.
    pub observed_ms: u64,
    /// CPU busy across all cores, 0–100.
    pub cpu_pct: f64,
    /// 1-minute load average.
    pub load_1: f64,
    /// 5-minute load average.
    pub load_5: f64,
    /// 15-minute load average.
    pub load_15: f64,
    /// Used memory, bytes.
    pub mem_used_bytes: u64,
    /// Total memory, bytes.
    pub mem_total_bytes: u64,
    /// Used swap, bytes.
    pub swap_used_bytes: u64,
    /// Total swap, bytes.
    pub swap_total_bytes: u64,
    /// Per mount.
    #[serde(default)]
    pub disks: Vec<DiskUsage>,
    /// Per interface.
    #[serde(default)]
    pub nets: Vec<NetRate>,
}

impl CapacitySample {
    /// Every metric of the sample as `(name, value)`: `cpu_pct`, `load_1`, `mem_used_pct`,
    /// `disk_used_pct:{mount}`, `net_rx_bytes_per_s:{iface}`, … The collector stores and
    /// queries these names; the capacity API takes them as `metric=`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let pct = |used: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                used as f64 * 100.0 / total as f64
            }
        };
        let mut out = vec![
            ("cpu_pct".to_owned(), self.cpu_pct),
            ("load_1".to_owned(), self.load_1),
            ("load_5".to_owned(), self.load_5),
            ("load_15".to_owned(), self.load_15),
            ("mem_used_bytes".to_owned(), self.mem_used_bytes as f64),
            (
                "mem_used_pct".to_owned(),
                pct(self.mem_used_bytes, self.mem_total_bytes),
            ),
            (
                "swap_used_pct".to_owned(),
                pct(self.swap_used_bytes, self.swap_total_bytes),
            ),
        ];
        for d in &self.disks {
            out.push((
                format!("disk_used_pct:{}", d.mount),
                pct(d.used_bytes, d.total_bytes),
            ));
            out.push((format!("disk_used_bytes:{}", d.mount), d.used_bytes as f64));
        }
        for n in &self.nets {
            out.push((format!("net_rx_bytes_per_s:{}", n.iface), n.rx_bytes_per_s));
            out.push((format!("net_tx_bytes_per_s:{}", n.iface), n.tx_bytes_per_s));
        }
        out
    }
}

/// A capacity batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityBatch {
    /// Protocol version, 1.
    pub v: u64,
    /// Sending site.
    pub site: String,
    /// Sending agent.
    pub agent: String,
    /// Boot id of the samples.
    pub boot: String,
    /// Samples, seq strictly increasing.
    pub samples: Vec<CapacitySample>,
}

impl Envelope for CapacityBatch {
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
        if self.samples.is_empty() {
            return Err(Rejection::new(RejectReason::EmptyBatch, "samples is empty"));
        }
        check_seqs("samples", self.samples.iter().map(|s| s.seq))?;
        for (i, s) in self.samples.iter().enumerate() {
            check_timestamp(&format!("samples[{i}].observed_ms"), s.observed_ms, now_ms)?;
            let floats = [
                ("cpu_pct", s.cpu_pct),
                ("load_1", s.load_1),
                ("load_5", s.load_5),
            ]
            .into_iter()
            .chain([("load_15", s.load_15)])
            .chain(s.nets.iter().flat_map(|n| {
                [
                    ("nets.rx_bytes_per_s", n.rx_bytes_per_s),
                    ("nets.tx_bytes_per_s", n.tx_bytes_per_s),
                ]
            }));
            for (field, value) in floats {
                if !value.is_finite() || value < 0.0 {
                    return Err(Rejection::new(
                        RejectReason::InvalidValue,
                        format!(
                            "samples[{i}].{field} = {value} is not a finite non-negative number"
                        ),
                    ));
                }
            }
            if s.cpu_pct > 100.0 {
                return Err(Rejection::new(
                    RejectReason::InvalidValue,
                    format!("samples[{i}].cpu_pct = {} exceeds 100", s.cpu_pct),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, MAX_PAYLOAD_BYTES};
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn sample() -> CapacityBatch {
        CapacityBatch {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: "b".into(),
            samples: vec![CapacitySample {
                seq: 1,
                observed_ms: NOW,
                cpu_pct: 12.5,
                load_1: 0.5,
                load_5: 0.4,
                load_15: 0.3,
                mem_used_bytes: 512,
                mem_total_bytes: 2048,
                swap_used_bytes: 0,
                swap_total_bytes: 0,
                disks: vec![DiskUsage {
                    mount: "/".into(),
                    used_bytes: 90,
                    total_bytes: 100,
                }],
                nets: vec![NetRate {
                    iface: "eth0".into(),
                    rx_bytes_per_s: 10.0,
                    tx_bytes_per_s: 20.0,
                }],
            }],
        }
    }

    #[test]
    fn a_capacity_batch_round_trips() {
        let b = sample();
        let back: CapacityBatch = decode(&encode(&b), MAX_PAYLOAD_BYTES, NOW).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn metrics_flatten_with_percentages() {
        let m = sample().samples[0].metrics();
        let get = |n: &str| m.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("mem_used_pct"), 25.0);
        assert_eq!(get("disk_used_pct:/"), 90.0);
        assert_eq!(get("swap_used_pct"), 0.0);
        assert_eq!(get("net_tx_bytes_per_s:eth0"), 20.0);
    }

    #[test]
    fn out_of_domain_values_are_rejected() {
        let mut b = sample();
        b.samples[0].cpu_pct = 150.0;
        let err = decode::<CapacityBatch>(&encode(&b), MAX_PAYLOAD_BYTES, NOW).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidValue);
        let mut b = sample();
        b.samples.clear();
        let err = decode::<CapacityBatch>(&encode(&b), MAX_PAYLOAD_BYTES, NOW).unwrap_err();
        assert_eq!(err.reason, RejectReason::EmptyBatch);
    }
}
