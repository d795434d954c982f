//! What a process costs, read from `/proc`: resident memory now (VmRSS, and its anonymous part
//! RssAnon: heap and stacks, without the mapped binary and libraries) and at its peak (VmHWM),
//! and CPU time used (utime + stime, including threads that have exited).

use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;

/// One reading of a process's memory and CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// When it was read.
    pub at: Instant,
    /// Resident set now, kB.
    pub rss_kb: u64,
    /// Anonymous resident memory now (heap, stacks), kB.
    pub anon_kb: u64,
    /// Peak resident set so far, kB.
    pub hwm_kb: u64,
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
}

impl Usage {
    /// CPU seconds used between `earlier` and `self`.
    pub fn cpu_since(&self, earlier: &Self) -> f64 {
        (self.cpu_s - earlier.cpu_s).max(0.0)
    }

    /// Wall seconds between `earlier` and `self`.
    pub fn secs_since(&self, earlier: &Self) -> f64 {
        self.at.duration_since(earlier.at).as_secs_f64()
    }
}

/// `VmRSS:` / `VmHWM:` style fields of `/proc/{pid}/status`, in kB.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory (VmHWM) of `pid`, or of this process, in kB.
pub fn peak_rss_kb(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    status_kb(&std::fs::read_to_string(path).ok()?, "VmHWM:")
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime of `/proc/{pid}/stat`, in ticks. The fields after the command name (which is
/// in parentheses and may hold spaces) start with the state: utime and stime are the 12th and
/// 13th of them.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Reads `pid`'s memory and CPU time now.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let at = Instant::now();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (has the process exited?)"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat: {stat}"))?;
    Ok(Usage {
        at,
        rss_kb: status_kb(&status, "VmRSS:").context("no VmRSS in /proc/pid/status")?,
        anon_kb: status_kb(&status, "RssAnon:").context("no RssAnon in /proc/pid/status")?,
        hwm_kb: status_kb(&status, "VmHWM:").context("no VmHWM in /proc/pid/status")?,
        cpu_s: ticks as f64 / clock_ticks(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 9 1 2";
        assert_eq!(cpu_ticks(stat), Some(10));
        assert_eq!(
            status_kb("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n", "VmRSS:"),
            Some(1024)
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let u = usage(std::process::id()).expect("usage of self");
        assert!(u.rss_kb > 0 && u.hwm_kb >= u.rss_kb);
    }
}
