//! Probes: the first stage of the agent's flow (**probe** → scheduler → outbox → publisher →
//! mqtt). One probe checks one target once and reports an [`Observation`].
//!
//! Probe kinds are a closed set: [`ProbeConfig`] is the serde enum tagged by `kind` in TOML, and
//! [`ProbeKind`] the runtime enum it builds. Each kind lives in its own module (`http`, `tcp`)
//! with a config type, a runtime type that implements [`Check`], and its own validation. Adding a
//! kind is one new file, one variant and one arm per `match`. Kinds: `http`, `tcp`, `dns`,
//! `icmp`, `tls`, `exec`, `modbus`, `mqtt`. Kinds that read values (`exec` perfdata, `modbus`
//! registers) return them as [`Observation::metrics`].

pub mod dns;
pub mod exec;
pub mod http;
pub mod icmp;
pub mod modbus;
pub mod mqtt;
pub mod tcp;
pub mod tls;

use std::future::Future;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::wire::v1::{ProbeInventory, ProbeMetric, ProbeState};

pub use dns::{DnsProbe, DnsProbeConfig};
pub use exec::{ExecProbe, ExecProbeConfig};
pub use http::{HttpClients, HttpProbe, HttpProbeConfig};
pub use icmp::{IcmpProbe, IcmpProbeConfig};
pub use modbus::{ModbusProbe, ModbusProbeConfig};
pub use mqtt::{MqttProbe, MqttProbeConfig};
pub use tcp::{TcpProbe, TcpProbeConfig};
pub use tls::{TlsProbe, TlsProbeConfig};

/// Longest error text a probe reports; longer texts are cut at a character boundary.
pub const MAX_ERROR_CHARS: usize = 200;

/// Shortest probe interval accepted: 100 ms, for gateways that watch fast-failing equipment.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest probe interval accepted (the wire protocol's limit: one day).
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// One `[[probes]]` entry as written in TOML, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeConfig {
    /// `kind = "http"`: an HTTP(S) request with status, body and latency checks.
    Http(HttpProbeConfig),
    /// `kind = "tcp"`: a TCP connect.
    Tcp(TcpProbeConfig),
    /// `kind = "dns"`: one DNS query, judged by its answer.
    Dns(DnsProbeConfig),
    /// `kind = "icmp"`: echo requests, judged by loss and round-trip time.
    Icmp(IcmpProbeConfig),
    /// `kind = "tls"`: a TLS handshake, judged by the certificate (chain, name, expiry).
    Tls(TlsProbeConfig),
    /// `kind = "exec"`: a Nagios-protocol check plugin.
    Exec(ExecProbeConfig),
    /// `kind = "modbus"`: a Modbus TCP read judged by value ranges.
    Modbus(ModbusProbeConfig),
    /// `kind = "mqtt"`: an MQTT broker connect and optional round trip.
    Mqtt(MqttProbeConfig),
}

/// Limits that depend on the rest of the config (the MQTT packet size bounds the target length).
#[derive(Debug, Clone, Copy)]
pub struct ProbeLimits {
    /// Longest target (URL, address) whose results still fit one MQTT packet.
    pub max_target_len: usize,
}

impl ProbeConfig {
    /// The probe id.
    pub fn id(&self) -> &str {
        match self {
            ProbeConfig::Http(c) => &c.id,
            ProbeConfig::Tcp(c) => &c.id,
            ProbeConfig::Dns(c) => &c.id,
            ProbeConfig::Icmp(c) => &c.id,
            ProbeConfig::Tls(c) => &c.id,
            ProbeConfig::Exec(c) => &c.id,
            ProbeConfig::Modbus(c) => &c.id,
            ProbeConfig::Mqtt(c) => &c.id,
        }
    }

    /// The wire name of the kind (`http`, `tcp`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeConfig::Http(_) => http::KIND,
            ProbeConfig::Tcp(_) => tcp::KIND,
            ProbeConfig::Dns(_) => dns::KIND,
            ProbeConfig::Icmp(_) => icmp::KIND,
            ProbeConfig::Tls(_) => tls::KIND,
            ProbeConfig::Exec(_) => exec::KIND,
            ProbeConfig::Modbus(_) => modbus::KIND,
            ProbeConfig::Mqtt(_) => mqtt::KIND,
        }
    }

    /// What is probed, as reported in results.
    pub fn target(&self) -> &str {
        match self {
            ProbeConfig::Http(c) => &c.url,
            ProbeConfig::Tcp(c) => &c.address,
            ProbeConfig::Dns(c) => c.target(),
            ProbeConfig::Icmp(c) => &c.host,
            ProbeConfig::Tls(c) => &c.address,
            ProbeConfig::Exec(c) => &c.target,
            ProbeConfig::Modbus(c) => &c.address,
            ProbeConfig::Mqtt(c) => &c.url,
        }
    }

    /// How often the probe runs.
    pub fn interval(&self) -> Duration {
        match self {
            ProbeConfig::Http(c) => c.interval,
            ProbeConfig::Tcp(c) => c.interval,
            ProbeConfig::Dns(c) => c.interval,
            ProbeConfig::Icmp(c) => c.interval,
            ProbeConfig::Tls(c) => c.interval,
            ProbeConfig::Exec(c) => c.interval,
            ProbeConfig::Modbus(c) => c.interval,
            ProbeConfig::Mqtt(c) => c.interval,
        }
    }

    /// The hard timeout of one check.
    pub fn timeout(&self) -> Duration {
        match self {
            ProbeConfig::Http(c) => c.timeout,
            ProbeConfig::Tcp(c) => c.timeout,
            ProbeConfig::Dns(c) => c.timeout,
            ProbeConfig::Icmp(c) => c.timeout,
            ProbeConfig::Tls(c) => c.timeout,
            ProbeConfig::Exec(c) => c.timeout,
            ProbeConfig::Modbus(c) => c.timeout,
            ProbeConfig::Mqtt(c) => c.timeout,
        }
    }

    /// The probe as announced in the birth message.
    pub fn inventory(&self) -> ProbeInventory {
        ProbeInventory {
            id: self.id().to_owned(),
            kind: self.kind().to_owned(),
            target: self.target().to_owned(),
            interval_ms: self.interval().as_millis(),
        }
    }

    /// Pure checks of this probe; `key` is its place in the file (e.g. `probes[id="web"]`).
    /// The id itself is checked by the caller, which also knows about duplicates.
    pub fn validate(&self, key: &str, limits: ProbeLimits, problems: &mut Problems) {
        let (interval, timeout) = (self.interval(), self.timeout());
        if interval < MIN_INTERVAL {
            problems.push(
                format!("{key}.interval"),
                format!("{interval} is too short; use at least {MIN_INTERVAL}"),
            );
        } else if interval > MAX_INTERVAL {
            problems.push(
                format!("{key}.interval"),
                format!("{interval} is too long; use at most {MAX_INTERVAL}"),
            );
        }
        if timeout.as_millis() == 0 {
            problems.push(format!("{key}.timeout"), "must be longer than 0s");
        } else if timeout >= interval {
            problems.push(
                format!("{key}.timeout"),
                format!("{timeout} must be shorter than interval {interval}"),
            );
        }
        let target_key = match self {
            ProbeConfig::Http(_) => "url",
            ProbeConfig::Tcp(_) | ProbeConfig::Modbus(_) => "address",
            ProbeConfig::Exec(_) => "command",
            ProbeConfig::Mqtt(_) => "url",
            ProbeConfig::Dns(_) => "name",
            ProbeConfig::Icmp(_) => "host",
            ProbeConfig::Tls(_) => "address",
        };
        let len = self.target().len();
        if len > limits.max_target_len {
            problems.push(
                format!("{key}.{target_key}"),
                format!(
                    "is {len} bytes long; at most {} fit in one result with this mqtt.max_packet_size",
                    limits.max_target_len
                ),
            );
        }
        match self {
            ProbeConfig::Http(c) => c.validate(key, problems),
            ProbeConfig::Tcp(c) => c.validate(key, problems),
            ProbeConfig::Dns(c) => c.validate(key, problems),
            ProbeConfig::Icmp(c) => c.validate(key, problems),
            ProbeConfig::Tls(c) => c.validate(key, problems),
            ProbeConfig::Exec(c) => c.validate(key, problems),
            ProbeConfig::Modbus(c) => c.validate(key, problems),
            ProbeConfig::Mqtt(c) => c.validate(key, problems),
        }
    }
}

/// What one check observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Up, degraded or down.
    pub state: ProbeState,
    /// How long the check took (the timeout when it timed out).
    pub latency: StdDuration,
    /// Short error text when not up (at most [`MAX_ERROR_CHARS`] characters).
    pub error: Option<String>,
    /// Values read by the check (perfdata, registers); published beside the result.
    pub metrics: Vec<ProbeMetric>,
}

impl Observation {
    /// An `up` observation.
    pub fn up(latency: StdDuration) -> Self {
        Self {
            state: ProbeState::Up,
            latency,
            error: None,
            metrics: Vec::new(),
        }
    }

    /// A `down` observation with a (shortened) error text.
    pub fn down(latency: StdDuration, error: impl Into<String>) -> Self {
        Self {
            state: ProbeState::Down,
            latency,
            error: Some(short_error(error.into())),
            metrics: Vec::new(),
        }
    }

    /// A `degraded` observation with a (shortened) error text.
    pub fn degraded(latency: StdDuration, error: impl Into<String>) -> Self {
        Self {
            state: ProbeState::Degraded,
            ..Self::down(latency, error)
        }
    }

    /// The same observation carrying `metrics`.
    pub fn with_metrics(self, metrics: Vec<ProbeMetric>) -> Self {
        Self { metrics, ..self }
    }

    /// Turns `up` into `degraded` when the latency exceeds `threshold`.
    pub fn with_threshold(self, threshold: Option<StdDuration>) -> Self {
        match threshold {
            Some(limit) if self.state == ProbeState::Up && self.latency > limit => Self {
                state: ProbeState::Degraded,
                error: Some(format!(
                    "slow: {}ms over degraded_after {}",
                    self.latency.as_millis(),
                    Duration(limit)
                )),
                ..self
            },
            _ => self,
        }
    }
}

/// Cuts `text` to [`MAX_ERROR_CHARS`] characters (on a character boundary) and flattens lines.
pub fn short_error(text: String) -> String {
    let flat = if text.contains(['\n', '\r']) {
        text.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text
    };
    match flat.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => flat[..cut].to_owned(),
        None => flat,
    }
}

/// One probe kind at run time: checks its target once.
pub trait Check {
    /// The wire name of the kind.
    fn kind(&self) -> &'static str;
    /// What is probed.
    fn target(&self) -> &str;
    /// Runs one check. The caller enforces the hard timeout; the check may also stop earlier.
    fn check(&self) -> impl Future<Output = Observation> + Send;
}

/// Why a probe could not be built from a validated config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("probe {id:?}: cannot build http client: {source}")]
    HttpClient {
        /// The probe id.
        id: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// A value that validation accepted could not be used (a bug in validation).
    #[error("probe {id:?}: {what}")]
    Invalid {
        /// The probe id.
        id: String,
        /// What could not be used.
        what: String,
    },
}

/// The runtime variants, one per kind.
#[derive(Debug)]
pub enum ProbeKind {
    /// An HTTP probe (boxed: it is much larger than the others).
    Http(Box<HttpProbe>),
    /// A TCP probe.
    Tcp(TcpProbe),
    /// A DNS probe.
    Dns(DnsProbe),
    /// An ICMP echo probe.
    Icmp(IcmpProbe),
    /// A TLS certificate probe (boxed: it holds a verifier and roots).
    Tls(Box<TlsProbe>),
    /// A check plugin.
    Exec(ExecProbe),
    /// A Modbus TCP read.
    Modbus(ModbusProbe),
    /// An MQTT broker check (boxed: it holds a whole MQTT client config).
    Mqtt(Box<MqttProbe>),
    /// A scripted probe for scheduler tests.
    #[cfg(test)]
    Fake(crate::testutil::FakeProbe),
}

/// A runnable probe: its id, schedule, and kind.
#[derive(Debug)]
pub struct Probe {
    /// The probe id.
    pub id: String,
    /// How often it runs.
    pub interval: StdDuration,
    /// Hard timeout of one check.
    pub timeout: StdDuration,
    /// The kind-specific runtime.
    pub kind: ProbeKind,
}

impl Probe {
    /// Builds the runtime probe from its (validated) config.
    ///
    /// # Errors
    /// The HTTP client cannot be built, or a value validation accepted cannot be used.
    pub fn build(config: &ProbeConfig) -> Result<Self, ProbeError> {
        Self::build_shared(config, &HttpClients::default())
    }

    /// As [`Probe::build`], taking HTTP clients from `clients` (shared by the probes of an
    /// agent).
    ///
    /// # Errors
    /// As [`Probe::build`].
    pub fn build_shared(config: &ProbeConfig, clients: &HttpClients) -> Result<Self, ProbeError> {
        let kind = match config {
            ProbeConfig::Http(c) => ProbeKind::Http(Box::new(HttpProbe::build(c, clients)?)),
            ProbeConfig::Tcp(c) => ProbeKind::Tcp(TcpProbe::build(c)),
            ProbeConfig::Dns(c) => ProbeKind::Dns(DnsProbe::build(c)?),
            ProbeConfig::Icmp(c) => ProbeKind::Icmp(IcmpProbe::build(c)),
            ProbeConfig::Tls(c) => ProbeKind::Tls(Box::new(TlsProbe::build(c)?)),
            ProbeConfig::Exec(c) => ProbeKind::Exec(ExecProbe::build(c)),
            ProbeConfig::Modbus(c) => ProbeKind::Modbus(ModbusProbe::build(c)),
            ProbeConfig::Mqtt(c) => ProbeKind::Mqtt(Box::new(MqttProbe::build(c))),
        };
        Ok(Self {
            id: config.id().to_owned(),
            interval: config.interval().get(),
            timeout: config.timeout().get(),
            kind,
        })
    }

    /// The wire name of the kind.
    pub fn kind(&self) -> &'static str {
        match &self.kind {
            ProbeKind::Http(p) => p.kind(),
            ProbeKind::Tcp(p) => p.kind(),
            ProbeKind::Dns(p) => p.kind(),
            ProbeKind::Icmp(p) => p.kind(),
            ProbeKind::Tls(p) => p.kind(),
            ProbeKind::Exec(p) => p.kind(),
            ProbeKind::Modbus(p) => p.kind(),
            ProbeKind::Mqtt(p) => p.kind(),
            #[cfg(test)]
            ProbeKind::Fake(p) => p.kind(),
        }
    }

    /// What is probed.
    pub fn target(&self) -> &str {
        match &self.kind {
            ProbeKind::Http(p) => p.target(),
            ProbeKind::Tcp(p) => p.target(),
            ProbeKind::Dns(p) => p.target(),
            ProbeKind::Icmp(p) => p.target(),
            ProbeKind::Tls(p) => p.target(),
            ProbeKind::Exec(p) => p.target(),
            ProbeKind::Modbus(p) => p.target(),
            ProbeKind::Mqtt(p) => p.target(),
            #[cfg(test)]
            ProbeKind::Fake(p) => p.target(),
        }
    }

    /// Runs one check under the hard timeout: a check that does not finish in time is `down`
    /// with latency = timeout.
    pub async fn check(&self) -> Observation {
        let run = async {
            match &self.kind {
                ProbeKind::Http(p) => p.check().await,
                ProbeKind::Tcp(p) => p.check().await,
                ProbeKind::Dns(p) => p.check().await,
                ProbeKind::Icmp(p) => p.check().await,
                ProbeKind::Tls(p) => p.check().await,
                ProbeKind::Exec(p) => p.check().await,
                ProbeKind::Modbus(p) => p.check().await,
                ProbeKind::Mqtt(p) => p.check().await,
                #[cfg(test)]
                ProbeKind::Fake(p) => p.check().await,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(observation) => observation,
            Err(_) => Observation::down(
                self.timeout,
                format!("timed out after {}", Duration(self.timeout)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_is_cut_to_two_hundred_characters_on_a_char_boundary() {
        let long = "é".repeat(300);
        let cut = short_error(long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert_eq!(short_error("a\n  b\r\nc".into()), "a b c");
    }

    #[test]
    fn latency_over_threshold_turns_up_into_degraded_but_never_down_into_degraded() {
        let slow = Observation::up(StdDuration::from_millis(800))
            .with_threshold(Some(StdDuration::from_millis(500)));
        assert_eq!(slow.state, ProbeState::Degraded);
        assert_eq!(
            slow.error.as_deref(),
            Some("slow: 800ms over degraded_after 500ms")
        );
        let fast = Observation::up(StdDuration::from_millis(100))
            .with_threshold(Some(StdDuration::from_millis(500)));
        assert_eq!(fast.state, ProbeState::Up);
        let down = Observation::down(StdDuration::from_millis(900), "refused")
            .with_threshold(Some(StdDuration::from_millis(500)));
        assert_eq!(down.state, ProbeState::Down);
    }
}
