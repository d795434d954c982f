//! The capacity sampler: a second source for the outbox, beside the scheduler (probe →
//! scheduler → **outbox** ← capacity; outbox → publisher → mqtt). On its own interval it reads
//! CPU %, load averages, memory, swap, per-mount disk used/total and inodes, per-interface
//! network bytes/s and error/drop rates, the process count, the host's uptime and its file
//! handles in use, and sends one [`CapacitySample`] to the outbox writer. What sysinfo does not
//! give comes from `/proc` ([`procfs`]) and `statvfs` (inodes); a figure the host cannot give
//! is left out of the sample, not sent as 0.
//!
//! One long-lived `sysinfo` [`System`], [`Disks`] and [`Networks`] are kept: CPU usage and
//! network rates are differences between two refreshes, so a fresh instance per sample would
//! read zero. Network rates are computed here from the cumulative byte counters and the
//! measured time between samples, not from sysinfo's "since last refresh" values, so a delayed
//! tick does not inflate them; error and drop rates the same way from `/proc/net/dev`.
//! Sampling runs on the blocking pool (it reads `/proc`).

pub mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use sysinfo::{Disks, Networks, System};
use tokio::sync::mpsc;
use tokio::time::{interval_at, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{CapacitySample, DiskUsage, NetRate};

use crate::outbox::{Entry, Measurement};

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// sysinfo cannot read this platform's figures.
    #[error("capacity sampling unavailable: {0}")]
    Unavailable(#[from] sysinfo::Error),
}

/// Reads one host's figures; keeps what it needs for differences.
pub struct Sampler {
    system: System,
    disks: Disks,
    networks: Networks,
    /// Cumulative (rx, tx) bytes per interface at `last_at`.
    last_net: HashMap<String, (u64, u64)>,
    /// Cumulative error and drop counters per interface at `last_at` (None: not readable).
    last_dev: Option<HashMap<String, procfs::NetCounters>>,
    last_at: Instant,
    max_entry_bytes: usize,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        0.0
    }
}

impl Sampler {
    /// Takes the baseline readings. Samples taken later cover the time since this call.
    /// `max_entry_bytes` bounds one encoded sample; interfaces, then mounts, are left out
    /// beyond it.
    ///
    /// # Errors
    /// sysinfo does not support this platform.
    pub fn new(max_entry_bytes: usize) -> Result<Self, CapacityError> {
        let mut system = System::new()?;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let disks = Disks::new_with_refreshed_list()?;
        let networks = Networks::new_with_refreshed_list()?;
        let mut sampler = Self {
            system,
            disks,
            networks,
            last_net: HashMap::new(),
            last_dev: procfs::read_net_dev(Path::new(PROC)),
            last_at: Instant::now(),
            max_entry_bytes,
        };
        sampler.last_net = sampler.net_totals();
        Ok(sampler)
    }

    fn net_totals(&self) -> HashMap<String, (u64, u64)> {
        self.networks
            .iter()
            .map(|(name, data)| {
                (
                    name.to_string_lossy().into_owned(),
                    (data.total_received(), data.total_transmitted()),
                )
            })
            .collect()
    }

    /// One sample (its `seq` is 0; the outbox assigns it).
    pub fn sample(&mut self) -> CapacitySample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        self.last_at = now;

        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });

        let mut disks: BTreeMap<String, DiskUsage> = BTreeMap::new();
        for disk in self.disks.iter() {
            let total = disk.total_space();
            if total == 0 {
                continue;
            }
            let mount = disk.mount_point().to_string_lossy().into_owned();
            if disks.contains_key(&mount) {
                continue;
            }
            let (inodes_used, inodes_total) = inodes(disk.mount_point()).unzip();
            disks.insert(
                mount.clone(),
                DiskUsage {
                    mount,
                    used_bytes: total.saturating_sub(disk.available_space()),
                    total_bytes: total,
                    inodes_used,
                    inodes_total,
                },
            );
        }

        let totals = self.net_totals();
        let dev = procfs::read_net_dev(Path::new(PROC));
        let per_s = |now: u64, before: u64| {
            if elapsed > 0.0 {
                finite(now.saturating_sub(before) as f64 / elapsed)
            } else {
                0.0
            }
        };
        let mut nets: Vec<NetRate> = totals
            .iter()
            .map(|(iface, (rx, tx))| {
                let (prev_rx, prev_tx) = self.last_net.get(iface).copied().unwrap_or((*rx, *tx));
                let counters = dev.as_ref().and_then(|d| d.get(iface)).copied();
                let before = self
                    .last_dev
                    .as_ref()
                    .and_then(|d| d.get(iface))
                    .copied()
                    .or(counters);
                let errs = counters.zip(before);
                NetRate {
                    iface: iface.clone(),
                    rx_bytes_per_s: per_s(*rx, prev_rx),
                    tx_bytes_per_s: per_s(*tx, prev_tx),
                    rx_errors_per_s: errs.map(|(c, b)| per_s(c.rx_errors, b.rx_errors)),
                    tx_errors_per_s: errs.map(|(c, b)| per_s(c.tx_errors, b.tx_errors)),
                    rx_drops_per_s: errs.map(|(c, b)| per_s(c.rx_drops, b.rx_drops)),
                    tx_drops_per_s: errs.map(|(c, b)| per_s(c.tx_drops, b.tx_drops)),
                }
            })
            .collect();
        nets.sort_by(|a, b| a.iface.cmp(&b.iface));
        self.last_net = totals;
        self.last_dev = dev;
        let (fd_used, fd_max) = procfs::read_file_nr(Path::new(PROC)).unzip();

        let mut sample = CapacitySample {
            seq: 0,
            observed_ms: now_ms(),
            cpu_pct: finite(f64::from(self.system.global_cpu_usage())).min(100.0),
            load_1: finite(load.one),
            load_5: finite(load.five),
            load_15: finite(load.fifteen),
            mem_used_bytes: self.system.used_memory(),
            mem_total_bytes: self.system.total_memory(),
            swap_used_bytes: self.system.used_swap(),
            swap_total_bytes: self.system.total_swap(),
            disks: disks.into_values().collect(),
            nets,
            processes: procfs::count_processes(Path::new(PROC)),
            uptime_s: System::uptime().ok().filter(|u| *u > 0),
            fd_used,
            fd_max,
        };
        fit(&mut sample, self.max_entry_bytes);
        sample
    }
}

/// Where Linux mounts procfs.
const PROC: &str = "/proc";

/// `(used, total)` inodes of the file system mounted at `mount`; None when statvfs fails or
/// the file system has no fixed inode table (btrfs, vfat report 0 in total).
fn inodes(mount: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(mount).ok()?;
    #[allow(clippy::useless_conversion)] // fsfilcnt_t is u32 on some targets
    let (total, free) = (u64::from(st.files()), u64::from(st.files_free()));
    (total > 0).then(|| (total.saturating_sub(free), total))
}

/// Leaves out interfaces, then mounts, from the end until the sample fits `max_bytes` encoded
/// as an outbox entry (a host with hundreds of container interfaces must not stall the outbox).
pub fn fit(sample: &mut CapacitySample, max_bytes: usize) {
    let size = |s: &CapacitySample| {
        serde_json::to_vec(&Entry::Capacity(s.clone()))
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    };
    let (disks, nets) = (sample.disks.len(), sample.nets.len());
    while size(sample) > max_bytes {
        if sample.nets.pop().is_none() && sample.disks.pop().is_none() {
            break;
        }
    }
    if sample.disks.len() < disks || sample.nets.len() < nets {
        tracing::warn!(
            mounts_left_out = disks - sample.disks.len(),
            interfaces_left_out = nets - sample.nets.len(),
            max_bytes,
            "Capacity sample too large for one MQTT packet; some mounts or interfaces left out."
        );
    }
}

/// The sampling task.
#[derive(Debug)]
pub struct CapacityTask {
    interval: Duration,
    max_entry_bytes: usize,
    out: mpsc::Sender<Measurement>,
}

impl CapacityTask {
    /// Samples every `interval` into `out`.
    pub fn new(interval: Duration, max_entry_bytes: usize, out: mpsc::Sender<Measurement>) -> Self {
        Self {
            interval,
            max_entry_bytes,
            out,
        }
    }

    /// Runs until `shutdown`. A platform that sysinfo cannot read is logged once and the task
    /// ends; probes go on.
    pub async fn run(self, shutdown: CancellationToken) {
        let max = self.max_entry_bytes;
        let mut sampler = match tokio::task::spawn_blocking(move || Sampler::new(max)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Capacity sampling disabled.");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Capacity sampler failed to start.");
                return;
            }
        };
        let mut ticks = interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let taken = tokio::task::spawn_blocking(move || {
                let sample = sampler.sample();
                (sampler, sample)
            })
            .await;
            let sample = match taken {
                Ok((s, sample)) => {
                    sampler = s;
                    sample
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Capacity sample failed; sampling stops.");
                    return;
                }
            };
            if self.out.send(Measurement::Capacity(sample)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_this_host_with_sane_values() {
        let mut sampler = Sampler::new(256 * 1024).unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let s = sampler.sample();
        assert!((0.0..=100.0).contains(&s.cpu_pct), "{}", s.cpu_pct);
        assert!(s.mem_total_bytes > 0);
        assert!(s.mem_used_bytes <= s.mem_total_bytes);
        assert!(s.swap_used_bytes <= s.swap_total_bytes);
        assert!(s.load_1 >= 0.0 && s.load_1.is_finite());
        for d in &s.disks {
            assert!(d.used_bytes <= d.total_bytes, "{d:?}");
        }
        for n in &s.nets {
            assert!(
                n.rx_bytes_per_s.is_finite() && n.rx_bytes_per_s >= 0.0,
                "{n:?}"
            );
        }
        let mounts: std::collections::HashSet<_> = s.disks.iter().map(|d| &d.mount).collect();
        assert_eq!(mounts.len(), s.disks.len(), "one entry per mount");
    }

    /// The figures from `/proc` and statvfs on this (Linux) host: present, in range, and what
    /// the collector's validation accepts.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_linux_sample_has_inodes_error_rates_processes_uptime_and_file_handles() {
        use watchstand_shared::wire::v1::{decode, encode, CapacityBatch, MAX_PAYLOAD_BYTES};
        let mut sampler = Sampler::new(256 * 1024).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut s = sampler.sample();
        assert!(s.processes.unwrap() >= 1, "{:?}", s.processes);
        assert!(s.uptime_s.unwrap() > 0);
        let (used, max) = (s.fd_used.unwrap(), s.fd_max.unwrap());
        assert!(used > 0 && used <= max, "{used} of {max}");
        assert!(
            s.disks.iter().any(|d| d.inodes_total.is_some()),
            "some mount has an inode table: {:?}",
            s.disks
        );
        for d in &s.disks {
            assert_eq!(d.inodes_used.is_some(), d.inodes_total.is_some(), "{d:?}");
            assert!(d.inodes_used <= d.inodes_total, "{d:?}");
        }
        let lo = s.nets.iter().find(|n| n.iface == "lo").expect("lo listed");
        for (family, v) in lo.error_rates() {
            let v = v.unwrap_or_else(|| panic!("{family} of lo"));
            assert!(v.is_finite() && v >= 0.0, "{family} {v}");
        }
        s.seq = 1;
        let batch = CapacityBatch {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: "b".into(),
            samples: vec![s.clone()],
        };
        let back: CapacityBatch =
            decode(&encode(&batch), MAX_PAYLOAD_BYTES, s.observed_ms).expect("accepted");
        let names: Vec<String> = back.samples[0].metrics().into_iter().map(|m| m.0).collect();
        for want in [
            "processes",
            "uptime_s",
            "fd_used_pct",
            "net_rx_drops_per_s:lo",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(names.iter().any(|n| n.starts_with("disk_inodes_used_pct:")));
    }

    #[test]
    fn an_oversized_sample_leaves_out_interfaces_then_mounts_until_it_fits() {
        let mut s = CapacitySample {
            seq: 1,
            observed_ms: 1_800_000_000_000,
            cpu_pct: 1.0,
            load_1: 0.0,
            load_5: 0.0,
            load_15: 0.0,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            disks: (0..20)
                .map(|i| DiskUsage {
                    mount: format!("/mnt/{i}"),
                    used_bytes: 1,
                    total_bytes: 2,
                    inodes_used: Some(1),
                    inodes_total: Some(2),
                })
                .collect(),
            nets: (0..50)
                .map(|i| NetRate {
                    iface: format!("veth{i:04}"),
                    rx_bytes_per_s: 1.5,
                    tx_bytes_per_s: 2.5,
                    rx_errors_per_s: Some(0.0),
                    tx_errors_per_s: Some(0.0),
                    rx_drops_per_s: Some(0.25),
                    tx_drops_per_s: Some(0.0),
                })
                .collect(),
            processes: Some(100),
            uptime_s: Some(1_000),
            fd_used: Some(10),
            fd_max: Some(100),
        };
        fit(&mut s, 2_000);
        assert!(
            serde_json::to_vec(&Entry::Capacity(s.clone()))
                .unwrap()
                .len()
                <= 2_000
        );
        assert_eq!(s.disks.len(), 20, "interfaces go first");
        assert!(s.nets.len() < 50);
    }
}
