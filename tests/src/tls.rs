//! MQTT over TLS in tests: certificates made fresh by the shipped `configs/tls/make-certs.sh`,
//! and the shipped `configs/mosquitto/` (config and ACL) run in a real Mosquitto with its
//! listeners moved to free loopback ports and its paths into the test's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Daemon;
use crate::{free_port, wait_for};

/// The repository's `configs/` directory.
pub fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Runs `configs/tls/make-certs.sh OUT agents…` (a CA, `broker`, `collector`, one cert per
/// agent; an existing CA in `out` is reused). `days` sets `DAYS` (`-1`: already expired).
pub fn make_certs(out: &Path, agents: &[&str], days: Option<i32>) {
    make_certs_with(out, agents, days, &[]);
}

/// [`make_certs`] with extra environment for the script (`BROKER_NAMES`, `COLLECTOR_CN`).
pub fn make_certs_with(out: &Path, agents: &[&str], days: Option<i32>, env: &[(&str, &str)]) {
    let mut cmd = Command::new("sh");
    cmd.envs(env.iter().copied());
    cmd.arg(configs_dir().join("tls/make-certs.sh"))
        .arg(out)
        .args(agents);
    if let Some(days) = days {
        cmd.env("DAYS", days.to_string());
    }
    let out = cmd
        .output()
        .expect("run make-certs.sh (needs sh and openssl)");
    assert!(
        out.status.success(),
        "make-certs.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[mqtt]` lines for a client using `certs/ca.crt` and `certs/{name}.crt`/`.key` (no client
/// certificate when `name` is `None`).
pub fn mqtt_tls_lines(certs: &Path, name: Option<&str>) -> String {
    let ca = certs.join("ca.crt");
    match name {
        Some(n) => format!(
            "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}\n",
            ca.display(),
            certs.join(format!("{n}.crt")).display(),
            certs.join(format!("{n}.key")).display()
        ),
        None => format!("tls = {{ ca_file = \"{}\" }}\n", ca.display()),
    }
}

/// The shipped `mosquitto.conf` with the plain listener on `plain`, the TLS listener on `tls`
/// (both on 127.0.0.1), certificates from `certs/`, and every other path under `dir`.
pub fn shipped_mosquitto_conf(dir: &Path, plain: u16, tls: u16, certs: &Path) -> String {
    let d = dir.display().to_string();
    std::fs::read_to_string(configs_dir().join("mosquitto/mosquitto.conf"))
        .expect("read configs/mosquitto/mosquitto.conf")
        .replace("listener 1883", &format!("listener {plain} 127.0.0.1"))
        .replace("listener 8883", &format!("listener {tls} 127.0.0.1"))
        .replace("/etc/mosquitto/certs/", &format!("{}/", certs.display()))
        .replace(
            "/etc/mosquitto/watchstand.passwd",
            &format!("{d}/watchstand.passwd"),
        )
        .replace(
            "/etc/mosquitto/watchstand.acl",
            &format!("{d}/watchstand.acl"),
        )
        .replace("/var/lib/mosquitto/", &format!("{d}/"))
        .replace(
            "/run/mosquitto/mosquitto.pid",
            &format!("{d}/mosquitto.pid"),
        )
        .replace(
            "/var/log/mosquitto/mosquitto.log",
            &format!("{d}/mosquitto.log"),
        )
}

/// A Mosquitto running the shipped config and ACL (see [`shipped_mosquitto_conf`]).
#[derive(Debug)]
pub struct ShippedMosquitto {
    /// Its directory (config, ACL, password file, log).
    pub dir: PathBuf,
    /// The plain (password) listener's port.
    pub plain_port: u16,
    /// The TLS (client certificate) listener's port.
    pub tls_port: u16,
    daemon: Daemon,
}

impl ShippedMosquitto {
    /// Starts it in `dir` with the certificates in `certs` (from [`make_certs`]) and one
    /// password user per `(user, password)`. `None` when Mosquitto is not installed and not
    /// required (outside CI).
    pub async fn start(dir: &Path, certs: &Path, users: &[(&str, &str)]) -> Option<Self> {
        let Some(exe) = crate::mosquitto_bin() else {
            assert!(
                !crate::mosquitto_required(),
                "Mosquitto is not installed but CI is set: install it (apt-get install mosquitto)"
            );
            eprintln!("WARNING: Mosquitto not installed; skipping (set CI=true to make this fail)");
            return None;
        };
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        let (plain_port, tls_port) = (free_port(), free_port());
        std::fs::write(
            dir.join("mosquitto.conf"),
            shipped_mosquitto_conf(dir, plain_port, tls_port, certs),
        )
        .expect("write mosquitto.conf");
        std::fs::copy(
            configs_dir().join("mosquitto/watchstand.acl"),
            dir.join("watchstand.acl"),
        )
        .expect("copy watchstand.acl");
        let passwd = dir.join("watchstand.passwd");
        std::fs::write(&passwd, "").expect("create watchstand.passwd");
        for (user, pass) in users {
            let ok = Command::new("mosquitto_passwd")
                .args(["-b", &passwd.display().to_string(), user, pass])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mosquitto_passwd {user}");
        }
        {
            // Mosquitto started as root drops to the `mosquitto` user for its store and log, and
            // before it loads the certificates: give it the broker's key as an operator would.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .expect("chmod mosquitto dir");
            std::fs::set_permissions(certs, std::fs::Permissions::from_mode(0o755))
                .expect("chmod certs dir");
            let key = certs.join("broker.key");
            let owned = Command::new("chown")
                .arg("mosquitto")
                .arg(&key)
                .status()
                .is_ok_and(|s| s.success());
            if !owned {
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod broker.key");
            }
        }
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(dir.join("mosquitto.conf"));
        let daemon = Daemon::spawn("mosquitto", cmd, &dir.join("stderr.log"));
        for port in [plain_port, tls_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_for(
                "Mosquitto with the shipped config to listen",
                Duration::from_secs(10),
                || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
            )
            .await;
        }
        Some(Self {
            dir: dir.to_owned(),
            plain_port,
            tls_port,
            daemon,
        })
    }

    /// `mqtts://127.0.0.1:{tls_port}`.
    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port)
    }

    /// The broker's log so far (its log file and stderr).
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default());
        text
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }
}
