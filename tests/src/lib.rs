//! The end-to-end harness: the real `watchstand-agent` and `watchstand-collector` binaries, a
//! real broker (the collector's embedded rumqttd, or a Mosquitto started here on a free port),
//! and real HTTP/TCP targets on 127.0.0.1 whose health a test switches.
//!
//! Every process a test starts is killed when its handle drops; every wait is bounded.
//! Process logs go to files in the test's temporary directory and are printed when a wait
//! fails, so a red test says what the processes saw.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::missing_panics_doc
)]

pub mod browser;
pub mod dns;
pub mod modbus;
pub mod mqtt;
pub mod netns;
pub mod oracle;
pub mod process;
pub mod relay;
pub mod runbook;
pub mod sim;
/// A small tmpfs a test fills (shared with the storage crash harness).
#[path = "../../shared/tests/support/small_fs.rs"]
pub mod small_fs;
pub mod target;
pub mod tls;
pub mod tls_target;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use process::{Agent, Collector, Daemon, Mosquitto, RunningExporter};
pub use target::{HttpTarget, TcpTarget};

/// Epoch milliseconds now.
pub fn now_ms() -> u64 {
    watchstand_shared::time::now_ms()
}

/// A free loopback port (bound and released; the race with other processes is accepted).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

/// A free loopback address.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Directory holding the built binaries (`target/<profile>`), building them on first use with
/// the same cargo and profile as the running test. `WATCHSTAND_BIN_DIR` names a directory of
/// binaries built beforehand instead (nothing is built): a benchmark on a machine whose target
/// directory other builds share keeps running the binaries it started with.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("WATCHSTAND_BIN_DIR").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            for name in ["watchstand-agent", "watchstand-collector"] {
                assert!(
                    dir.join(name).exists(),
                    "WATCHSTAND_BIN_DIR={} holds no {name}",
                    dir.display()
                );
            }
            return dir;
        }
        let exe = std::env::current_exe().expect("current exe");
        let dir = profile_dir_of(&exe).expect("the executable lives in target/<profile>");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "watchstand-agent",
            "-p",
            "watchstand-collector",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd.status().expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

/// `target/<profile>` of a built executable: test binaries live in `target/<profile>/deps`
/// (`e2e-<hash>`), bin targets such as `bench` directly in `target/<profile>`.
pub fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let parent = exe.parent()?;
    if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().map(Path::to_path_buf)
    } else {
        Some(parent.to_path_buf())
    }
}

/// Path of a built binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Polls `f` every 100 ms until it returns `Some`, at most `limit`; panics with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RFC 3339 (UTC, milliseconds) of an epoch-ms instant, for configs.
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1_000).expect("epoch fits");
    let nanos = u32::try_from((ms % 1_000) * 1_000_000).expect("nanos fit");
    chrono::DateTime::from_timestamp(secs, nanos)
        .expect("valid instant")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether `CI` is set (to anything but empty, `false` or `0`): tests that need an installed
/// tool (Mosquitto, the Prometheus exporters) must then fail when it is missing, not skip.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Reports a test that skips (a tool it needs is not installed, outside CI) with a `SKIP` line
/// on the process's real stderr: the test harness captures `eprintln!` of passing tests, so a
/// skip would otherwise read as a plain `ok`.
pub fn skip(what: &str, why: &str) {
    use std::io::Write as _;
    let line = format!("SKIP {what}: {why} (set CI=true to make this fail)\n");
    // Not `eprintln!`: written to the stderr handle directly, it is not captured.
    let _ignored = std::io::stderr().write_all(line.as_bytes()).is_ok();
}

/// Whether tests that need Mosquitto must run (CI) or may skip with a warning (a laptop
/// without it).
pub fn mosquitto_required() -> bool {
    ci()
}

/// The Mosquitto binary, if installed.
pub fn mosquitto_bin() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The Debian packages of the Prometheus stack that `bench detection` compares with, and the
/// binary each installs.
pub const PROMETHEUS_PACKAGES: [(&str, &str); 3] = [
    ("prometheus", "/usr/bin/prometheus"),
    (
        "prometheus-blackbox-exporter",
        "/usr/bin/prometheus-blackbox-exporter",
    ),
    (
        "prometheus-alertmanager",
        "/usr/bin/prometheus-alertmanager",
    ),
];

/// The packages of [`PROMETHEUS_PACKAGES`] whose binary is missing.
pub fn prometheus_missing() -> Vec<&'static str> {
    PROMETHEUS_PACKAGES
        .iter()
        .filter(|(_, bin)| !Path::new(bin).exists())
        .map(|(package, _)| *package)
        .collect()
}

/// The peers the agent is benchmarked against: Debian's `prometheus-blackbox-exporter` and
/// `prometheus-node-exporter` packages (`apt-get install`; `.ci/run` installs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    /// blackbox_exporter: probes targets on `GET /probe?target=…&module=…`.
    Blackbox,
    /// node_exporter: host metrics on `GET /metrics`.
    Node,
}

impl Exporter {
    /// The Debian package (and binary) name.
    pub fn package(self) -> &'static str {
        match self {
            Self::Blackbox => "prometheus-blackbox-exporter",
            Self::Node => "prometheus-node-exporter",
        }
    }

    /// The installed binary, if any.
    pub fn bin(self) -> Option<PathBuf> {
        ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(self.package()))
            .find(|p| p.exists())
    }
}
