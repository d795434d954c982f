//! Child processes under test: the collector, agents, Mosquitto, and any other program a
//! benchmark starts ([`Daemon`]: Prometheus, exporters). Each is described by a spec
//! (its directory, ports, config) that can be spawned again after a kill, so restart tests keep
//! their data. Handles kill their process on drop and print its log tail when the test failed.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{bin, free_addr, wait_for, Exporter};

/// A running child with its log file.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log file");
        let err = file.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ignored = c.kill().is_ok();
            let _reaped = c.wait().is_ok();
        }
    }

    /// SIGTERM, then wait at most `limit` for exit; SIGKILL after. Returns the exit success.
    fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {}", self.name);
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ignored = c.kill().is_ok();
        let _reaped = c.wait().is_ok();
        false
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {}", self.name);
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "----- last log lines of {} ({}) -----",
                self.name,
                self.log.display()
            );
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// The health body, which is JSON also when it says `failing` (HTTP 503).
async fn get_health_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !(r.status().is_success() || r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE) {
        return None;
    }
    r.json().await.ok()
}

async fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Which broker the collector uses.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// The collector's embedded rumqttd on this address.
    Embedded(SocketAddr),
    /// An external broker URL (`mqtt://127.0.0.1:port`).
    External(String),
}

impl BrokerChoice {
    /// The URL agents use.
    pub fn url(&self) -> String {
        match self {
            Self::Embedded(a) => format!("mqtt://{a}"),
            Self::External(u) => u.clone(),
        }
    }
}

/// How to run a collector.
#[derive(Debug, Clone)]
pub struct CollectorSpec {
    /// Its directory (config, data, log).
    pub dir: PathBuf,
    /// API address.
    pub api: SocketAddr,
    /// Broker.
    pub broker: BrokerChoice,
    /// `[[services]]` TOML.
    pub services: String,
    /// Extra lines for its `[mqtt]` section (`username`, `password`, …).
    pub mqtt_extra: String,
    /// Extra lines for its `[collector]` section (`ingest_batch_max = 100`, …).
    pub collector_extra: String,
}

impl CollectorSpec {
    /// A collector in `dir` with a free API port.
    pub fn new(dir: &Path, broker: BrokerChoice, services: &str) -> Self {
        std::fs::create_dir_all(dir).expect("collector dir");
        Self {
            dir: dir.to_owned(),
            api: free_addr(),
            broker,
            services: services.to_owned(),
            mqtt_extra: String::new(),
            collector_extra: String::new(),
        }
    }

    /// Writes `collector.toml`; returns its path.
    pub fn write_config(&self) -> PathBuf {
        let (embedded, listen, url) = match &self.broker {
            BrokerChoice::Embedded(a) => (true, a.to_string(), format!("mqtt://{a}")),
            BrokerChoice::External(u) => (false, "127.0.0.1:1883".to_owned(), u.clone()),
        };
        let text = format!(
            "[collector]\nid = \"test\"\ndata_dir = \"data\"\nlisten = \"{}\"\n{}\n\n[broker]\nembedded = {embedded}\nlisten = \"{listen}\"\n\n[mqtt]\nurl = \"{url}\"\nreconnect_max = \"1s\"\n{}\n\n{}\n",
            self.api, self.collector_extra, self.mqtt_extra, self.services
        );
        let path = self.dir.join("collector.toml");
        std::fs::write(&path, text).expect("write collector.toml");
        path
    }

    /// Starts the collector without waiting for it (it may exit at once: a test playing
    /// systemd restarts it).
    pub fn start(&self) -> Collector {
        let config = self.write_config();
        let mut cmd = Command::new(bin("watchstand-collector"));
        cmd.arg("serve")
            .arg("-c")
            .arg(&config)
            .env("WATCHSTAND_LOG", "info");
        Collector {
            spec: self.clone(),
            proc: Proc::spawn("collector", cmd, &self.dir.join("collector.log")),
        }
    }

    /// Starts the collector and waits until its API answers.
    pub async fn spawn(&self) -> Collector {
        let config = self.write_config();
        let mut cmd = Command::new(bin("watchstand-collector"));
        cmd.arg("serve")
            .arg("-c")
            .arg(&config)
            .env("WATCHSTAND_LOG", "info");
        let proc = Proc::spawn("collector", cmd, &self.dir.join("collector.log"));
        let c = Collector {
            spec: self.clone(),
            proc,
        };
        let url = c.url("/api/v1/health");
        wait_for("the collector API", Duration::from_secs(30), || {
            get_health_json(&url)
        })
        .await;
        c
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    /// How it was started.
    pub spec: CollectorSpec,
    proc: Proc,
}

impl Collector {
    /// `http://api{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.spec.api)
    }

    /// GET a JSON document; panics on errors.
    pub async fn get(&self, path: &str) -> Value {
        let url = self.url(path);
        let r = http()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status();
        let body = r.text().await.expect("body");
        assert!(status.is_success(), "GET {url}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
    }

    /// GET `path` as JSON, or `None` while it answers 404 (an agent the collector has not heard
    /// of yet); any other failure panics.
    pub async fn get_if_found(&self, path: &str) -> Option<Value> {
        let (status, body) = self.get_raw(path).await;
        if status == 404 {
            return None;
        }
        assert!((200..300).contains(&status), "GET {path}: {status}: {body}");
        Some(
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}")),
        )
    }

    /// GET, returning the status and body text.
    pub async fn get_raw(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        let r = http()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// The SLA report of `service` over `[from_ms, to_ms)`.
    pub async fn sla(&self, service: &str, from_ms: u64, to_ms: u64) -> Value {
        self.get(&format!(
            "/api/v1/services/{service}/sla?from={from_ms}&to={to_ms}"
        ))
        .await
    }

    /// `GET /api/v1/health` (its body also when it answers 503, `failing`).
    pub async fn health(&self) -> Value {
        let url = self.url("/api/v1/health");
        get_health_json(&url)
            .await
            .unwrap_or_else(|| panic!("GET {url}: no health body"))
    }

    /// SIGTERM; whether it exited 0 within `limit`, and how long it took.
    pub fn terminate_within(&mut self, limit: Duration) -> (bool, Duration) {
        let t0 = std::time::Instant::now();
        let ok = self.proc.terminate(limit);
        (ok, t0.elapsed())
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// One agent's registry entry.
    pub async fn agent(&self, id: &str) -> Option<Value> {
        let agents = self.get("/api/v1/agents").await;
        agents
            .as_array()?
            .iter()
            .find(|a| a["agent"] == id)
            .cloned()
    }

    /// The broker URL for agents.
    pub fn broker_url(&self) -> String {
        self.spec.broker.url()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM and wait; true if it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        self.proc.terminate(Duration::from_secs(20))
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// SIGSTOP: the process holds still (its sockets stay open, nothing is read or acked).
    pub fn pause(&self) {
        self.proc.signal("STOP");
    }

    /// SIGCONT after [`Collector::pause`].
    pub fn resume(&self) {
        self.proc.signal("CONT");
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// How to run an agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Its directory (config, outbox, log).
    pub dir: PathBuf,
    /// Agent id.
    pub id: String,
    /// Site.
    pub site: String,
    /// Broker URL.
    pub broker_url: String,
    /// Health endpoint.
    pub health: SocketAddr,
    /// `[[probes]]` TOML.
    pub probes: String,
    /// Extra TOML sections (`[outbox]`, `[publish]`, `[capacity]`).
    pub extra: String,
    /// Extra lines for its `[mqtt]` section (`username`, `password`, …).
    pub mqtt_extra: String,
}

impl AgentSpec {
    /// An agent `id` at site `lab` in `dir`.
    pub fn new(dir: &Path, id: &str, broker_url: &str, probes: &str) -> Self {
        std::fs::create_dir_all(dir).expect("agent dir");
        Self {
            dir: dir.to_owned(),
            id: id.to_owned(),
            site: "lab".to_owned(),
            broker_url: broker_url.to_owned(),
            health: free_addr(),
            probes: probes.to_owned(),
            extra: "[capacity]\ninterval = \"5s\"\n\n[publish]\nlinger = \"50ms\"\n".to_owned(),
            mqtt_extra: String::new(),
        }
    }

    /// Writes `agent.toml`; returns its path.
    pub fn write_config(&self) -> PathBuf {
        let text = format!(
            "[agent]\nsite = \"{}\"\nid = \"{}\"\ndata_dir = \"outbox\"\nhealth_listen = \"{}\"\n\n[mqtt]\nurl = \"{}\"\nreconnect_max = \"1s\"\n{}\n\n{}\n{}\n",
            self.site, self.id, self.health, self.broker_url, self.mqtt_extra, self.extra, self.probes
        );
        let path = self.dir.join("agent.toml");
        std::fs::write(&path, text).expect("write agent.toml");
        path
    }

    /// Starts the agent without waiting for it (it may exit at once: a test playing systemd
    /// restarts it).
    pub fn start(&self) -> Agent {
        let config = self.write_config();
        let mut cmd = Command::new(bin("watchstand-agent"));
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .env("WATCHSTAND_LOG", "info");
        Agent {
            spec: self.clone(),
            proc: Proc::spawn(
                &format!("agent {}", self.id),
                cmd,
                &self.dir.join("agent.log"),
            ),
        }
    }

    /// Starts the agent and waits until its health endpoint answers.
    pub async fn spawn(&self) -> Agent {
        let config = self.write_config();
        let mut cmd = Command::new(bin("watchstand-agent"));
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .env("WATCHSTAND_LOG", "info");
        let proc = Proc::spawn(
            &format!("agent {}", self.id),
            cmd,
            &self.dir.join("agent.log"),
        );
        let a = Agent {
            spec: self.clone(),
            proc,
        };
        let url = format!("http://{}/health", self.health);
        wait_for("the agent health endpoint", Duration::from_secs(30), || {
            get_json(&url)
        })
        .await;
        a
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// How it was started.
    pub spec: AgentSpec,
    proc: Proc,
}

impl Agent {
    /// `GET /health`.
    pub async fn health(&self) -> Value {
        let url = format!("http://{}/health", self.spec.health);
        get_json(&url)
            .await
            .unwrap_or_else(|| panic!("agent health at {url}"))
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM and wait; true if it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        self.proc.terminate(Duration::from_secs(20))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }
}

/// How to run a Prometheus exporter for the benchmarks: its own directory (config, log) and its
/// own free loopback port. The Debian packages also install system services; nothing here uses
/// or touches them.
#[derive(Debug, Clone)]
pub struct ExporterSpec {
    /// Which exporter.
    pub exporter: Exporter,
    /// Its directory (config, log).
    pub dir: PathBuf,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    /// blackbox_exporter's config (YAML); [`BLACKBOX_CONFIG`] unless set.
    pub blackbox_config: Option<String>,
}

/// The blackbox_exporter config the benchmarks use: one `http_2xx` module (GET, any 2xx),
/// IPv4 as the targets are on 127.0.0.1.
pub const BLACKBOX_CONFIG: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n";

impl ExporterSpec {
    /// `exporter` in `dir` on a free loopback port.
    pub fn new(exporter: Exporter, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("exporter dir");
        Self {
            exporter,
            dir: dir.to_owned(),
            addr: free_addr(),
            blackbox_config: None,
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts the exporter and waits until `GET /metrics` answers. `None` when it is not
    /// installed and not required (outside CI); panics when it is required.
    pub async fn spawn(&self) -> Option<RunningExporter> {
        let package = self.exporter.package();
        let Some(exe) = self.exporter.bin() else {
            assert!(
                !crate::ci(),
                "{package} is not installed but CI is set: install it (apt-get install {package}) — .ci/run does"
            );
            crate::skip("this test", &format!("{package} is not installed"));
            return None;
        };
        let mut cmd = Command::new(exe);
        cmd.arg(format!("--web.listen-address={}", self.addr));
        if self.exporter == Exporter::Blackbox {
            let conf = self.dir.join("blackbox.yml");
            let config = self.blackbox_config.as_deref().unwrap_or(BLACKBOX_CONFIG);
            std::fs::write(&conf, config).expect("write blackbox.yml");
            cmd.arg(format!("--config.file={}", conf.display()));
        }
        let proc = Proc::spawn(package, cmd, &self.dir.join(format!("{package}.log")));
        let url = self.url("/metrics");
        wait_for(
            &format!("{package} to answer on {url}"),
            Duration::from_secs(15),
            || async {
                let r = http().get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
        Some(RunningExporter {
            spec: self.clone(),
            proc,
        })
    }
}

/// A running exporter (killed when dropped).
#[derive(Debug)]
pub struct RunningExporter {
    /// How it was started.
    pub spec: ExporterSpec,
    proc: Proc,
}

impl RunningExporter {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// How to run Mosquitto.
#[derive(Debug, Clone)]
pub struct MosquittoSpec {
    /// Its directory (config, persistence, log).
    pub dir: PathBuf,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Extra config lines.
    pub extra: String,
}

impl MosquittoSpec {
    /// Mosquitto in `dir` on a free port, persistence on, queues as `configs/mosquitto/`
    /// recommends, anonymous access (loopback only).
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        // Mosquitto started as root drops to the `mosquitto` user: let it write its store here.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .expect("chmod mosquitto dir");
        }
        Self {
            dir: dir.to_owned(),
            port: crate::free_port(),
            extra: String::new(),
        }
    }

    /// `mqtt://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts Mosquitto and waits until it accepts TCP connections. `None` when Mosquitto is not
    /// installed and not required (outside CI); panics when it is required.
    pub async fn spawn(&self) -> Option<Mosquitto> {
        let Some(exe) = crate::mosquitto_bin() else {
            assert!(
                !crate::mosquitto_required(),
                "Mosquitto is not installed but CI is set: install it (apt-get install mosquitto) — .ci/run does"
            );
            crate::skip("the Mosquitto variant", "Mosquitto is not installed");
            return None;
        };
        let conf = self.dir.join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 100000\nmax_inflight_messages 100\nmessage_size_limit 262144\nlog_dest stderr\n{extra}\n",
            port = self.port,
            dir = self.dir.display(),
            extra = self.extra
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(&conf);
        let proc = Proc::spawn("mosquitto", cmd, &self.dir.join("mosquitto.log"));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(
            "Mosquitto to listen",
            Duration::from_secs(10),
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        Some(Mosquitto { proc })
    }
}

/// A running Mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    proc: Proc,
}

impl Mosquitto {
    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Its log so far (`log_dest stderr`).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }
}

/// Any other program a test or benchmark starts (Prometheus, an exporter, …): its output goes to
/// `log`, and it is killed (this process only, by its pid) when the handle drops.
#[derive(Debug)]
pub struct Daemon {
    proc: Proc,
}

impl Daemon {
    /// Starts `cmd` as `name`, output appended to `log`; panics if it cannot be started.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Self {
        Self {
            proc: Proc::spawn(name, cmd, log),
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// `watchstand-collector token create --name NAME --role ROLE`: the token (shown once) and the
/// `[[api.tokens]]` TOML lines to paste (which hold its hash only).
pub fn create_token(name: &str, role: &str) -> (String, String) {
    let out = Command::new(bin("watchstand-collector"))
        .args(["token", "create", "--name", name, "--role", role])
        .env_remove("WATCHSTAND_TOKEN")
        .output()
        .expect("run watchstand-collector token create");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "token create: exit {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("wst_"))
        .unwrap_or_else(|| panic!("no token in {stdout}"))
        .to_owned();
    let toml = stdout[stdout.find("[[api.tokens]]").expect("config lines")..].to_owned();
    assert!(
        !toml.contains(&token),
        "the config holds the hash only: {toml}"
    );
    (token, toml)
}
