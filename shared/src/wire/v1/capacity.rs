//! `{root}/v1/{site}/{agent}/capacity`: a batch of host capacity samples, QoS 1.
//!
//! Fields added after the first release (inodes, network errors and drops, processes, uptime,
//! file descriptors) are optional: absent from what older agents send, left out of what newer
//! agents send when the host cannot tell, and ignored by older collectors.

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
    /// Used inodes (total − free); absent when the file system has no fixed inode table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
    /// Total inodes; absent with `inodes_used`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes_total: Option<u64>,
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
    /// Receive errors per second (absent where the host does not count them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_errors_per_s: Option<f64>,
    /// Transmit errors per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_errors_per_s: Option<f64>,
    /// Received packets dropped per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_drops_per_s: Option<f64>,
    /// Transmit packets dropped per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_drops_per_s: Option<f64>,
}

impl NetRate {
    /// The optional error and drop rates with their metric family names.
    pub fn error_rates(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("net_rx_errors_per_s", self.rx_errors_per_s),
            ("net_tx_errors_per_s", self.tx_errors_per_s),
            ("net_rx_drops_per_s", self.rx_drops_per_s),
            ("net_tx_drops_per_s", self.tx_drops_per_s),
        ]
    }
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
    /// Processes running on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Seconds since the host booted (not since the agent started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// File handles allocated on the host (Linux `/proc/sys/fs/file-nr`: allocated − free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_used: Option<u64>,
    /// The host's file handle limit (`fs.file-max`); absent with `fd_used`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_max: Option<u64>,
}

impl CapacitySample {
    /// Every metric of the sample as `(name, value)`: `cpu_pct`, `load_1`, `mem_used_pct`,
    /// `disk_used_pct:{mount}`, `disk_inodes_used_pct:{mount}`, `net_rx_bytes_per_s:{iface}`,
    /// `net_rx_errors_per_s:{iface}`, `processes`, `uptime_s`, `fd_used_pct`, … Optional
    /// fields the sample lacks give no metric. The collector stores and queries these names;
    /// the capacity API takes them as `metric=`.
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
            if let (Some(used), Some(total)) = (d.inodes_used, d.inodes_total) {
                out.push((
                    format!("disk_inodes_used_pct:{}", d.mount),
                    pct(used, total),
                ));
            }
        }
        for n in &self.nets {
            out.push((format!("net_rx_bytes_per_s:{}", n.iface), n.rx_bytes_per_s));
            out.push((format!("net_tx_bytes_per_s:{}", n.iface), n.tx_bytes_per_s));
            for (family, value) in n.error_rates() {
                if let Some(v) = value {
                    out.push((format!("{family}:{}", n.iface), v));
                }
            }
        }
        if let Some(p) = self.processes {
            out.push(("processes".to_owned(), p as f64));
        }
        if let Some(u) = self.uptime_s {
            out.push(("uptime_s".to_owned(), u as f64));
        }
        if let (Some(used), Some(max)) = (self.fd_used, self.fd_max) {
            out.push(("fd_used_pct".to_owned(), pct(used, max)));
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
            }))
            .chain(s.nets.iter().flat_map(|n| {
                [
                    ("nets.rx_errors_per_s", n.rx_errors_per_s),
                    ("nets.tx_errors_per_s", n.tx_errors_per_s),
                    ("nets.rx_drops_per_s", n.rx_drops_per_s),
                    ("nets.tx_drops_per_s", n.tx_drops_per_s),
                ]
                .into_iter()
                .filter_map(|(field, v)| Some((field, v?)))
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
            for (j, d) in s.disks.iter().enumerate() {
                check_pair(
                    &format!("samples[{i}].disks[{j}]"),
                    ("inodes_used", d.inodes_used),
                    ("inodes_total", d.inodes_total),
                )?;
            }
            check_pair(
                &format!("samples[{i}]"),
                ("fd_used", s.fd_used),
                ("fd_max", s.fd_max),
            )?;
            if let Some(up) = s.uptime_s {
                if up.saturating_mul(1_000) > s.observed_ms {
                    return Err(Rejection::new(
                        RejectReason::InvalidValue,
                        format!(
                            "samples[{i}].uptime_s = {up} reaches before the epoch (observed_ms = {})",
                            s.observed_ms
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A used/total pair: both or neither, used at most total.
fn check_pair(
    at: &str,
    (used_name, used): (&str, Option<u64>),
    (total_name, total): (&str, Option<u64>),
) -> Result<(), Rejection> {
    match (used, total) {
        (None, None) => Ok(()),
        (Some(u), Some(t)) if u <= t => Ok(()),
        (Some(u), Some(t)) => Err(Rejection::new(
            RejectReason::InvalidValue,
            format!("{at}.{used_name} = {u} exceeds {total_name} = {t}"),
        )),
        (Some(_), None) => Err(Rejection::new(
            RejectReason::InvalidValue,
            format!("{at}.{used_name} is set without {total_name}"),
        )),
        (None, Some(_)) => Err(Rejection::new(
            RejectReason::InvalidValue,
            format!("{at}.{total_name} is set without {used_name}"),
        )),
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
                    inodes_used: Some(300),
                    inodes_total: Some(400),
                }],
                nets: vec![NetRate {
                    iface: "eth0".into(),
                    rx_bytes_per_s: 10.0,
                    tx_bytes_per_s: 20.0,
                    rx_errors_per_s: Some(0.5),
                    tx_errors_per_s: Some(0.0),
                    rx_drops_per_s: Some(1.25),
                    tx_drops_per_s: Some(0.0),
                }],
                processes: Some(212),
                uptime_s: Some(86_400),
                fd_used: Some(1_000),
                fd_max: Some(4_000),
            }],
        }
    }

    /// A batch as agents before the inode/error/process/uptime/fd fields sent it.
    const OLD_BATCH: &str = r#"{"v":1,"site":"s","agent":"a","boot":"b","samples":[{"seq":1,"observed_ms":1800000000000,"cpu_pct":12.5,"load_1":0.5,"load_5":0.4,"load_15":0.3,"mem_used_bytes":512,"mem_total_bytes":2048,"swap_used_bytes":0,"swap_total_bytes":0,"disks":[{"mount":"/","used_bytes":90,"total_bytes":100}],"nets":[{"iface":"eth0","rx_bytes_per_s":10.0,"tx_bytes_per_s":20.0}]}]}"#;

    fn names(m: &[(String, f64)]) -> Vec<&str> {
        m.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn an_old_agents_batch_decodes_and_a_sample_without_the_new_fields_encodes_as_before() {
        let old: CapacityBatch =
            decode(OLD_BATCH.as_bytes(), MAX_PAYLOAD_BYTES, NOW).expect("old batch");
        let s = &old.samples[0];
        assert_eq!(s.disks[0].inodes_used, None);
        assert_eq!(s.nets[0].rx_drops_per_s, None);
        assert_eq!((s.processes, s.uptime_s, s.fd_used), (None, None, None));
        assert_eq!(
            names(&s.metrics()),
            [
                "cpu_pct",
                "load_1",
                "load_5",
                "load_15",
                "mem_used_bytes",
                "mem_used_pct",
                "swap_used_pct",
                "disk_used_pct:/",
                "disk_used_bytes:/",
                "net_rx_bytes_per_s:eth0",
                "net_tx_bytes_per_s:eth0"
            ],
            "no metric for what the sample lacks"
        );
        // What an old collector reads: the same bytes as before (absent fields are left out).
        let again: serde_json::Value = serde_json::from_slice(&encode(&old)).unwrap();
        let want: serde_json::Value = serde_json::from_str(OLD_BATCH).unwrap();
        assert_eq!(again, want);
        // And a new batch still decodes where unknown fields are ignored (an old collector).
        let new = String::from_utf8(encode(&sample())).unwrap();
        for key in [
            "inodes_used",
            "rx_errors_per_s",
            "tx_drops_per_s",
            "processes",
            "uptime_s",
            "fd_used",
            "fd_max",
        ] {
            assert!(new.contains(&format!("\"{key}\":")), "{key} in {new}");
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
        assert_eq!(get("disk_inodes_used_pct:/"), 75.0);
        assert_eq!(get("net_rx_errors_per_s:eth0"), 0.5);
        assert_eq!(get("net_tx_errors_per_s:eth0"), 0.0);
        assert_eq!(get("net_rx_drops_per_s:eth0"), 1.25);
        assert_eq!(get("net_tx_drops_per_s:eth0"), 0.0);
        assert_eq!(get("processes"), 212.0);
        assert_eq!(get("uptime_s"), 86_400.0);
        assert_eq!(get("fd_used_pct"), 25.0);
        let mut b = sample();
        b.samples[0].disks[0].inodes_total = Some(0);
        b.samples[0].disks[0].inodes_used = Some(0);
        let m = b.samples[0].metrics();
        assert!(m.contains(&("disk_inodes_used_pct:/".to_owned(), 0.0)));
    }

    #[test]
    fn out_of_domain_new_fields_are_rejected_naming_the_field() {
        type Change = fn(&mut CapacitySample);
        let cases: Vec<(Change, &str)> = vec![
            (
                |s| s.nets[0].rx_errors_per_s = Some(-1.0),
                "samples[0].nets.rx_errors_per_s = -1 is not a finite non-negative number",
            ),
            (
                |s| s.nets[0].tx_drops_per_s = Some(f64::INFINITY),
                "samples[0].nets.tx_drops_per_s = inf is not a finite non-negative number",
            ),
            (
                |s| s.disks[0].inodes_used = Some(401),
                "samples[0].disks[0].inodes_used = 401 exceeds inodes_total = 400",
            ),
            (
                |s| s.disks[0].inodes_total = None,
                "samples[0].disks[0].inodes_used is set without inodes_total",
            ),
            (
                |s| s.fd_used = None,
                "samples[0].fd_max is set without fd_used",
            ),
            (
                |s| s.fd_used = Some(4_001),
                "samples[0].fd_used = 4001 exceeds fd_max = 4000",
            ),
            (
                |s| s.uptime_s = Some(1_800_000_001),
                "samples[0].uptime_s = 1800000001 reaches before the epoch (observed_ms = 1800000000000)",
            ),
        ];
        for (change, want) in cases {
            let mut b = sample();
            change(&mut b.samples[0]);
            // Infinity is not JSON; validate the decoded shape directly, as decode would.
            let err = b.validate_body(NOW).unwrap_err();
            assert_eq!(err.reason, RejectReason::InvalidValue, "{want}");
            assert_eq!(err.detail, want);
        }
        let mut b = sample();
        b.samples[0].nets[0].rx_errors_per_s = Some(-1.0);
        let err = decode::<CapacityBatch>(&encode(&b), MAX_PAYLOAD_BYTES, NOW).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidValue);
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
