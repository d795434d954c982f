//! The host figures sysinfo does not give, read from Linux `/proc`: per-interface error and
//! drop counters (`/proc/net/dev`), file handles in use (`/proc/sys/fs/file-nr`) and the
//! number of processes (the numeric entries of `/proc`). The parsers are pure functions of the
//! file's text; the readers return `None` where the file is missing (another OS) or unreadable,
//! so the sample simply leaves the field out.

use std::collections::HashMap;
use std::path::Path;

/// Cumulative error and drop counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetCounters {
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_drops: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Transmit packets dropped.
    pub tx_drops: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `iface: rx(bytes packets errs drop fifo
/// frame compressed multicast) tx(bytes packets errs drop fifo colls carrier compressed)`.
/// Lines that do not have that shape are left out.
pub fn parse_net_dev(text: &str) -> HashMap<String, NetCounters> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((iface, fields)) = line.split_once(':') else {
            continue;
        };
        let iface = iface.trim();
        let numbers: Option<Vec<u64>> = fields
            .split_whitespace()
            .map(|f| f.parse::<u64>().ok())
            .collect();
        let Some(n) = numbers else {
            continue;
        };
        if iface.is_empty() || n.len() < 16 {
            continue;
        }
        out.insert(
            iface.to_owned(),
            NetCounters {
                rx_errors: n[2],
                rx_drops: n[3],
                tx_errors: n[10],
                tx_drops: n[11],
            },
        );
    }
    out
}

/// Parses `/proc/sys/fs/file-nr` (`allocated free max`) into `(used, max)`, used being
/// allocated − free (free is always 0 since Linux 2.6).
pub fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(allocated)), Some(Ok(free)), Some(Ok(max)), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return None;
    };
    let used = allocated.saturating_sub(free);
    (max > 0 && used <= max).then_some((used, max))
}

/// Whether a `/proc` entry names a process (all digits).
pub fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// Error and drop counters of every interface, from `{proc}/net/dev`.
pub fn read_net_dev(proc: &Path) -> Option<HashMap<String, NetCounters>> {
    let text = std::fs::read_to_string(proc.join("net/dev")).ok()?;
    let parsed = parse_net_dev(&text);
    (!parsed.is_empty()).then_some(parsed)
}

/// `(used, max)` file handles of the host, from `{proc}/sys/fs/file-nr`.
pub fn read_file_nr(proc: &Path) -> Option<(u64, u64)> {
    parse_file_nr(&std::fs::read_to_string(proc.join("sys/fs/file-nr")).ok()?)
}

/// The number of processes visible in `proc` (this PID namespace).
pub fn count_processes(proc: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(proc).ok()?;
    let n = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_pid))
        .count() as u64;
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net/dev` of a Linux 6.1 host (spacing as the kernel writes it).
    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 3498219197 2810910    0    0    0     0          0         0 3498219197 2810910    0    0    0     0       0          0
  eth0: 91823741 120934   17  342    0     3          0      1201 12398412  88123    2    5    0     0       0          0
docker0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";

    #[test]
    fn net_dev_gives_errors_and_drops_per_interface() {
        let m = parse_net_dev(NET_DEV);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m["eth0"],
            NetCounters {
                rx_errors: 17,
                rx_drops: 342,
                tx_errors: 2,
                tx_drops: 5
            }
        );
        assert_eq!(m["lo"], NetCounters::default());
        assert_eq!(m["docker0"], NetCounters::default());
    }

    #[test]
    fn net_dev_lines_of_another_shape_are_left_out() {
        let text = "\
 face |bytes
  eth1:12 1 9 8 0 0 0 0 13 1 7 6 0 0 0 0
  bad: 1 2 3
  nan: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16
  : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
";
        let m = parse_net_dev(text);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(
            m["eth1"],
            NetCounters {
                rx_errors: 9,
                rx_drops: 8,
                tx_errors: 7,
                tx_drops: 6
            },
            "no space after the colon (older kernels) parses too"
        );
        assert!(parse_net_dev("").is_empty());
    }

    #[test]
    fn file_nr_is_used_and_max() {
        assert_eq!(parse_file_nr("1951\t0\t2466239\n"), Some((1951, 2466239)));
        assert_eq!(parse_file_nr("3000 1000 10000"), Some((2000, 10000)));
        assert_eq!(
            parse_file_nr("1024\t0\t9223372036854775807\n"),
            Some((1024, 9_223_372_036_854_775_807))
        );
        for bad in ["", "1 2", "1 2 3 4", "a 0 3", "1 0 0", "20 0 10", "-1 0 10"] {
            assert_eq!(parse_file_nr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pids_are_the_numeric_entries() {
        assert!(is_pid("1"));
        assert!(is_pid("4194304"));
        for not in ["", "self", "net", "1a", "-1", "sys"] {
            assert!(!is_pid(not), "{not:?}");
        }
    }

    #[test]
    fn the_readers_read_a_proc_like_directory_and_say_none_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(read_net_dev(p), None);
        assert_eq!(read_file_nr(p), None);
        assert_eq!(count_processes(p), None, "no pid entries");
        std::fs::create_dir_all(p.join("net")).unwrap();
        std::fs::create_dir_all(p.join("sys/fs")).unwrap();
        std::fs::write(p.join("net/dev"), NET_DEV).unwrap();
        std::fs::write(p.join("sys/fs/file-nr"), "10\t0\t100\n").unwrap();
        for pid in ["1", "42", "977"] {
            std::fs::create_dir(p.join(pid)).unwrap();
        }
        assert_eq!(read_net_dev(p).unwrap()["eth0"].rx_drops, 342);
        assert_eq!(read_file_nr(p), Some((10, 100)));
        assert_eq!(count_processes(p), Some(3));
    }
}
