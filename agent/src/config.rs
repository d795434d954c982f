//! The agent's config, in three stages: raw serde types that mirror `agent.toml` exactly
//! ([`AgentConfig`], `deny_unknown_fields`), a pure [`AgentConfig::validate`] that reports every
//! problem at once with its key path, and the [`ValidatedAgentConfig`] that `run` builds the
//! pipeline (probe → scheduler → outbox → publisher → mqtt) from. No I/O happens here except
//! reading the file in [`load`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use watchstand_shared::config::{Duration, LoadError, MqttConfig, Problems};
use watchstand_shared::topic::TopicLayout;

use crate::actions::config::{ActionConfig, CommandsSection};
use crate::actions::CommandSettings;
use crate::probe::{ProbeConfig, ProbeLimits};

/// Room in one MQTT packet for everything of a one-result batch except its target: fixed and
/// variable header, topic, envelope (site, agent, boot) and the result's other fields with a
/// 200-character error text, rounded up.
const RESULT_OVERHEAD_BYTES: usize = 1_024;

/// The whole `agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[agent]`: identity, data dir, concurrency, health endpoint.
    pub agent: AgentSection,
    /// `[capacity]`: the host sampler.
    #[serde(default)]
    pub capacity: CapacitySection,
    /// `[outbox]`: caps and re-send timing of the durable outbox.
    #[serde(default)]
    pub outbox: OutboxSection,
    /// `[publish]`: batching.
    #[serde(default)]
    pub publish: PublishSection,
    /// `[mqtt]`: the broker connection (the block shared with the collector).
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// `[[probes]]`.
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    /// `[commands]`: the collector's public key and the command checks; absent = the agent
    /// takes no commands (does not subscribe to its `cmd` topic).
    #[serde(default)]
    pub commands: Option<CommandsSection>,
    /// `[[actions]]`: what commands may run.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Site id (`[A-Za-z0-9_.-]{1,64}`).
    pub site: String,
    /// Agent id, unique within the site.
    pub id: String,
    /// Directory of the durable outbox; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
    /// At most this many probes run at once.
    #[serde(default = "default_max_concurrent_probes")]
    pub max_concurrent_probes: usize,
    /// `host:port` of the local health endpoint; absent = no endpoint.
    #[serde(default)]
    pub health_listen: Option<String>,
}

const fn default_max_concurrent_probes() -> usize {
    32
}

/// `[capacity]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySection {
    /// Sampling interval.
    #[serde(default = "default_capacity_interval")]
    pub interval: Duration,
}

const fn default_capacity_interval() -> Duration {
    Duration::from_secs(30)
}

impl Default for CapacitySection {
    fn default() -> Self {
        Self {
            interval: default_capacity_interval(),
        }
    }
}

/// `[outbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Most entries kept; beyond it the oldest are dropped and a gap record is sent.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// Most bytes kept (keys and values).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Re-send from the watermark when it has not moved for this long while a collector is
    /// online (doubling per re-send without progress, see `publisher.rs`).
    #[serde(default = "default_resend_after")]
    pub resend_after: Duration,
    /// Warn ("not acknowledged by the collector") when published entries have waited this long
    /// for the collector's ack watermark while the agent was connected.
    #[serde(default = "default_unacked_alarm")]
    pub unacked_alarm: Duration,
}

const fn default_max_entries() -> usize {
    100_000
}
const fn default_max_bytes() -> u64 {
    64 * 1024 * 1024
}
const fn default_resend_after() -> Duration {
    Duration::from_secs(15)
}
const fn default_unacked_alarm() -> Duration {
    Duration::from_secs(30)
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            max_entries: default_max_entries(),
            max_bytes: default_max_bytes(),
            resend_after: default_resend_after(),
            unacked_alarm: default_unacked_alarm(),
        }
    }
}

/// `[publish]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSection {
    /// Most entries per batch.
    #[serde(default = "default_batch_max_entries")]
    pub batch_max_entries: usize,
    /// Longest wait for a batch to fill (a probe state change does not wait).
    #[serde(default = "default_linger")]
    pub linger: Duration,
}

const fn default_batch_max_entries() -> usize {
    500
}
const fn default_linger() -> Duration {
    Duration::from_millis(200)
}

impl Default for PublishSection {
    fn default() -> Self {
        Self {
            batch_max_entries: default_batch_max_entries(),
            linger: default_linger(),
        }
    }
}

/// Smallest `outbox.max_bytes`: a few capacity samples must fit.
pub const MIN_OUTBOX_BYTES: u64 = 64 * 1024;
/// Largest `publish.batch_max_entries`.
pub const MAX_BATCH_ENTRIES: usize = 10_000;
/// Longest `publish.linger`.
pub const MAX_LINGER: Duration = Duration::from_secs(10);

/// Outbox settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Most entries kept.
    pub max_entries: usize,
    /// Most bytes kept.
    pub max_bytes: u64,
    /// Re-send from the watermark after it has not moved for this long.
    pub resend_after: std::time::Duration,
    /// Raise the "not acknowledged by the collector" alarm after published entries waited this
    /// long (connected time) for the ack watermark.
    pub unacked_alarm: std::time::Duration,
}

/// Publisher settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// Most entries per batch.
    pub batch_max_entries: usize,
    /// Longest wait for a batch to fill.
    pub linger: std::time::Duration,
}

/// A config that passed every check; `run` builds the agent from it.
///
/// Fields are public so that an embedding program (the collector's `demo`) can read them;
/// changing them skips validation, so prefer generating TOML and calling [`from_str`].
#[derive(Debug, Clone)]
pub struct ValidatedAgentConfig {
    /// The file it came from (or a name such as `<demo>`), for messages.
    pub origin: PathBuf,
    /// Site id.
    pub site: String,
    /// Agent id.
    pub agent_id: String,
    /// Directory of the durable outbox.
    pub data_dir: PathBuf,
    /// Bound on concurrently running probes.
    pub max_concurrent_probes: usize,
    /// Health endpoint address, if any.
    pub health_listen: Option<SocketAddr>,
    /// Capacity sampling interval.
    pub capacity_interval: std::time::Duration,
    /// Outbox caps and re-send timing.
    pub outbox: OutboxSettings,
    /// Batching.
    pub publish: PublishSettings,
    /// The broker connection.
    pub mqtt: MqttConfig,
    /// The probes, each valid, ids unique, in file order.
    pub probes: Vec<ProbeConfig>,
    /// Commands and actions; `None` without `[commands]`.
    pub commands: Option<CommandSettings>,
}

impl ValidatedAgentConfig {
    /// The topic layout under the configured root.
    pub fn topics(&self) -> TopicLayout {
        TopicLayout::new(&self.mqtt.topic_root)
    }

    /// The client id used when `mqtt.client_id` is not set.
    pub fn default_client_id(&self) -> String {
        format!("watchstand-agent-{}-{}", self.site, self.agent_id)
    }
}

/// The key of probe `index`: by id when the id is usable and its first use, else by position.
fn probe_key(index: usize, probe: &ProbeConfig, is_duplicate: bool) -> String {
    if !is_duplicate && watchstand_shared::topic::validate_id(probe.id()).is_ok() {
        format!("probes[id={:?}]", probe.id())
    } else {
        format!("probes[{index}]")
    }
}

fn check_interval(
    problems: &mut Problems,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) {
    if value < min {
        problems.push(key, format!("{value} is too short; use at least {min}"));
    } else if value > max {
        problems.push(key, format!("{value} is too long; use at most {max}"));
    }
}

impl AgentConfig {
    /// Checks every rule and returns either the validated config or every problem found.
    /// Pure: no I/O. `origin` names the file in messages.
    ///
    /// # Errors
    /// All problems at once, each with its key path.
    pub fn validate(self, origin: &Path) -> Result<ValidatedAgentConfig, LoadError> {
        let mut problems = Problems::default();
        let a = &self.agent;
        problems.check_id("agent.site", &a.site);
        problems.check_id("agent.id", &a.id);
        if a.data_dir.as_os_str().is_empty() {
            problems.push("agent.data_dir", "must not be empty");
        }
        if a.max_concurrent_probes == 0 {
            problems.push("agent.max_concurrent_probes", "must be at least 1");
        }
        let health_listen = match &a.health_listen {
            None => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.push(
                        "agent.health_listen",
                        format!("{text:?} is not an IP address and port such as 127.0.0.1:9101"),
                    );
                    None
                }
            },
        };

        check_interval(
            &mut problems,
            "capacity.interval",
            self.capacity.interval,
            Duration::from_secs(1),
            crate::probe::MAX_INTERVAL,
        );

        let o = &self.outbox;
        if o.max_entries == 0 {
            problems.push("outbox.max_entries", "must be at least 1");
        }
        if o.max_bytes < MIN_OUTBOX_BYTES {
            problems.push(
                "outbox.max_bytes",
                format!(
                    "{} bytes is too small; use at least {MIN_OUTBOX_BYTES}",
                    o.max_bytes
                ),
            );
        }
        check_interval(
            &mut problems,
            "outbox.resend_after",
            o.resend_after,
            Duration::from_secs(1),
            Duration::from_secs(3_600),
        );
        check_interval(
            &mut problems,
            "outbox.unacked_alarm",
            o.unacked_alarm,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        );

        let p = &self.publish;
        if p.batch_max_entries == 0 {
            problems.push("publish.batch_max_entries", "must be at least 1");
        } else if p.batch_max_entries > MAX_BATCH_ENTRIES {
            problems.push(
                "publish.batch_max_entries",
                format!(
                    "{} is too many; use at most {MAX_BATCH_ENTRIES}",
                    p.batch_max_entries
                ),
            );
        }
        if p.linger > MAX_LINGER {
            problems.push(
                "publish.linger",
                format!("{} is too long; use at most {MAX_LINGER}", p.linger),
            );
        }

        problems.extend(self.mqtt.validate("mqtt"));

        let limits = ProbeLimits {
            max_target_len: self
                .mqtt
                .max_packet_size
                .saturating_sub(RESULT_OVERHEAD_BYTES + self.mqtt.topic_root.len())
                .min(watchstand_shared::wire::v1::result::MAX_TARGET_LEN),
        };
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (i, probe) in self.probes.iter().enumerate() {
            let first = first_seen.get(probe.id()).copied();
            let key = probe_key(i, probe, first.is_some());
            problems.check_id(&format!("{key}.id"), probe.id());
            if let Some(first) = first {
                problems.push(
                    format!("probes[{i}].id"),
                    format!(
                        "duplicate probe id {:?} (first used by probes[{first}])",
                        probe.id()
                    ),
                );
            } else {
                first_seen.insert(probe.id(), i);
            }
            probe.validate(&key, limits, &mut problems);
        }

        let commands =
            crate::actions::config::validate(self.commands.as_ref(), &self.actions, &mut problems);

        let validated = ValidatedAgentConfig {
            origin: origin.to_owned(),
            site: self.agent.site,
            agent_id: self.agent.id,
            data_dir: self.agent.data_dir,
            max_concurrent_probes: self.agent.max_concurrent_probes,
            health_listen,
            capacity_interval: self.capacity.interval.get(),
            outbox: OutboxSettings {
                max_entries: self.outbox.max_entries,
                max_bytes: self.outbox.max_bytes,
                resend_after: self.outbox.resend_after.get(),
                unacked_alarm: self.outbox.unacked_alarm.get(),
            },
            publish: PublishSettings {
                batch_max_entries: self.publish.batch_max_entries,
                linger: self.publish.linger.get(),
            },
            mqtt: self.mqtt,
            probes: self.probes,
            commands,
        };
        problems
            .finish(origin, validated)
            .map_err(LoadError::Invalid)
    }
}

/// Parses and validates config text; `origin` names it in messages.
///
/// # Errors
/// A TOML or shape error (unknown key, wrong type, unknown probe kind) prefixed with `origin`,
/// or every semantic problem at once.
pub fn from_str(text: &str, origin: &Path) -> Result<ValidatedAgentConfig, LoadError> {
    let raw: AgentConfig = watchstand_shared::config::from_toml(text, origin)?;
    raw.validate(origin)
}

/// Reads, parses and validates the config file at `path`; a relative `data_dir` is resolved
/// against the file's directory.
///
/// # Errors
/// The file cannot be read, does not parse, or breaks a rule (see [`from_str`]).
pub fn load(path: &Path) -> Result<ValidatedAgentConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = from_str(&text, path)?;
    // Relative paths are relative to the config file, as in the collector's config, so a
    // service manager's working directory does not matter.
    if config.data_dir.is_relative() {
        if let Some(base) = path.parent() {
            config.data_dir = base.join(&config.data_dir);
        }
    }
    if let Some(base) = path.parent() {
        config.mqtt.resolve_paths(base);
        for probe in &mut config.probes {
            match probe {
                crate::probe::ProbeConfig::Tls(tls) => tls.resolve_paths(base),
                crate::probe::ProbeConfig::Mqtt(mqtt) => mqtt.resolve_paths(base),
                _ => {}
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[agent]
site = "lab"
id = "agent-1"
data_dir = "./data"

[[probes]]
id = "web"
kind = "http"
url = "http://127.0.0.1:8080/health"
interval = "10s"
timeout = "5s"

[[probes]]
id = "db"
kind = "tcp"
address = "127.0.0.1:5432"
interval = "10s"
timeout = "3s"
"#;

    fn problems(text: &str) -> Vec<String> {
        match from_str(text, Path::new("agent.toml")) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(e)) => e.errors.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    /// `BASE` with `from` replaced by `to` (which must occur).
    fn edit(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from}");
        BASE.replacen(from, to, 1)
    }

    #[test]
    fn the_base_config_is_valid_and_defaults_apply() {
        let c = from_str(BASE, Path::new("agent.toml")).unwrap();
        assert_eq!(c.max_concurrent_probes, 32);
        assert_eq!(c.capacity_interval, std::time::Duration::from_secs(30));
        assert_eq!(c.outbox.max_entries, 100_000);
        assert_eq!(c.outbox.unacked_alarm, std::time::Duration::from_secs(30));
        assert_eq!(c.publish.batch_max_entries, 500);
        assert_eq!(c.mqtt.url, "mqtt://127.0.0.1:18830");
        assert_eq!(c.health_listen, None);
        match &c.probes[0] {
            ProbeConfig::Http(h) => {
                assert_eq!(h.method, "GET");
                assert_eq!(h.expect_status, vec![200]);
                assert!(h.tls_verify);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_semantic_problem_has_its_exact_message() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                edit("id = \"agent-1\"", "id = \"agent 1\""),
                vec!["agent.id: id \"agent 1\" contains ' '; only letters, digits, '_', '.' and '-' are allowed"],
            ),
            (
                edit("site = \"lab\"", "site = \"\""),
                vec!["agent.site: id \"\" must not be empty"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"10s\""),
                vec!["probes[id=\"web\"].timeout: 10s must be shorter than interval 10s"],
            ),
            (
                edit("interval = \"10s\"\ntimeout = \"5s\"", "interval = \"5s\"\ntimeout = \"10s\""),
                vec!["probes[id=\"web\"].timeout: 10s must be shorter than interval 5s"],
            ),
            (
                edit("interval = \"10s\"\ntimeout = \"5s\"", "interval = \"50ms\"\ntimeout = \"10ms\""),
                vec!["probes[id=\"web\"].interval: 50ms is too short; use at least 100ms"],
            ),
            (
                edit("timeout = \"3s\"", "timeout = \"0s\""),
                vec!["probes[id=\"db\"].timeout: must be longer than 0s"],
            ),
            (
                edit("id = \"db\"", "id = \"web\""),
                vec!["probes[1].id: duplicate probe id \"web\" (first used by probes[0])"],
            ),
            (
                edit("id = \"db\"", "id = \"web\"").replacen("timeout = \"3s\"", "timeout = \"30s\"", 1),
                vec![
                    "probes[1].id: duplicate probe id \"web\" (first used by probes[0])",
                    "probes[1].timeout: 30s must be shorter than interval 10s",
                ],
            ),
            (
                edit("id = \"web\"", "id = \"w/b\""),
                vec!["probes[0].id: id \"w/b\" contains '/'; only letters, digits, '_', '.' and '-' are allowed"],
            ),
            (
                edit("url = \"http://127.0.0.1:8080/health\"", "url = \"not a url\""),
                vec!["probes[id=\"web\"].url: url \"not a url\" is not a URL: relative URL without a base"],
            ),
            (
                edit("url = \"http://127.0.0.1:8080/health\"", "url = \"ftp://host/x\""),
                vec!["probes[id=\"web\"].url: url \"ftp://host/x\" must start with http:// or https://"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\nbody_regex = \"(unclosed\""),
                vec!["probes[id=\"web\"].body_regex: regex \"(unclosed\" does not compile: unclosed group"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\nmethod = \"FETCH\""),
                vec!["probes[id=\"web\"].method: method \"FETCH\" is not one of GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\nexpect_status = [200, 700]"),
                vec!["probes[id=\"web\"].expect_status: 700 is not an HTTP status (100-599)"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\nexpect_status = []"),
                vec!["probes[id=\"web\"].expect_status: must list at least one status"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\ndegraded_after = \"5s\""),
                vec!["probes[id=\"web\"].degraded_after: 5s must be shorter than timeout 5s"],
            ),
            (
                edit("timeout = \"5s\"", "timeout = \"5s\"\nheaders = { \"bad header\" = \"x\" }"),
                vec!["probes[id=\"web\"].headers: \"bad header\" is not a valid header name"],
            ),
            (
                edit("address = \"127.0.0.1:5432\"", "address = \"localhost\""),
                vec!["probes[id=\"db\"].address: address \"localhost\" is not host:port (port 1-65535; IPv6 as [::1]:port)"],
            ),
            (
                edit("data_dir = \"./data\"", "data_dir = \"./data\"\nmax_concurrent_probes = 0"),
                vec!["agent.max_concurrent_probes: must be at least 1"],
            ),
            (
                edit("data_dir = \"./data\"", "data_dir = \"./data\"\nhealth_listen = \"localhost\""),
                vec!["agent.health_listen: \"localhost\" is not an IP address and port such as 127.0.0.1:9101"],
            ),
            (
                format!("{BASE}\n[outbox]\nmax_entries = 0\nmax_bytes = 0\nresend_after = \"0s\"\nunacked_alarm = \"500ms\"\n"),
                vec![
                    "outbox.max_entries: must be at least 1",
                    "outbox.max_bytes: 0 bytes is too small; use at least 65536",
                    "outbox.resend_after: 0s is too short; use at least 1s",
                    "outbox.unacked_alarm: 500ms is too short; use at least 1s",
                ],
            ),
            (
                format!("{BASE}\n[outbox]\nunacked_alarm = \"2d\"\n"),
                vec!["outbox.unacked_alarm: 2d is too long; use at most 1d"],
            ),
            (
                format!("{BASE}\n[publish]\nbatch_max_entries = 0\nlinger = \"1m\"\n"),
                vec![
                    "publish.batch_max_entries: must be at least 1",
                    "publish.linger: 1m is too long; use at most 10s",
                ],
            ),
            (
                format!("{BASE}\n[capacity]\ninterval = \"0s\"\n"),
                vec!["capacity.interval: 0s is too short; use at least 1s"],
            ),
            (
                format!("{BASE}\n[mqtt]\nurl = \"http://x:1\"\nusername = \"u\"\n"),
                vec![
                    "mqtt.url: url \"http://x:1\" is not mqtt://host:port or mqtts://host:port (scheme must be mqtt://, tcp:// or mqtts://)",
                    "mqtt.username: username and password must be set together",
                ],
            ),
            (
                format!("{BASE}\n[mqtt]\nmax_packet_size = 1044\n"),
                vec![
                    "probes[id=\"web\"].url: is 28 bytes long; at most 10 fit in one result with this mqtt.max_packet_size",
                    "probes[id=\"db\"].address: is 14 bytes long; at most 10 fit in one result with this mqtt.max_packet_size",
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(problems(&text), want, "\n{text}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_the_file() {
        let text = edit("id = \"agent-1\"", "id = \"\"")
            .replacen("timeout = \"5s\"", "timeout = \"20s\"", 1)
            .replacen("address = \"127.0.0.1:5432\"", "address = \"nope\"", 1);
        let err = from_str(&text, Path::new("configs/x.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configs/x.toml: 3 problems\n  \
             configs/x.toml: agent.id: id \"\" must not be empty\n  \
             configs/x.toml: probes[id=\"web\"].timeout: 20s must be shorter than interval 10s\n  \
             configs/x.toml: probes[id=\"db\"].address: address \"nope\" is not host:port (port 1-65535; IPv6 as [::1]:port)"
        );
    }

    #[test]
    fn every_parse_level_mistake_is_reported_in_one_run_with_file_key_and_line() {
        let text = r#"
[agent]
id = "agent-1"
colour = "red"
data_dir = "./data"

[outbox]
resend_after = "5 seconds"

[mqtt]
protocol = "5"

[[probes]]
id = "web"
kind = "http"
url = "http://127.0.0.1:8080/health"
interval = "10s"
timeout = "3 parsecs"
bogus = 1

[[probes]]
id = "db"
kind = "snmp"
address = "127.0.0.1:5432"
interval = "10s"
timeout = "3s"

[[probes]]
id = "tcp2"
kind = "tcp"
interval = "10s"
timeout = 3
"#;
        let want = [
            "a.toml:2: agent.site: required key `site` is missing",
            "a.toml:4: agent.colour: unknown key `colour`; expected one of `site`, `id`, `data_dir`, `max_concurrent_probes`, `health_listen`",
            "a.toml:8: outbox.resend_after: invalid duration \"5 seconds\": missing unit; expected a duration like 500ms, 10s, 5m, 1h",
            "a.toml:11: mqtt.protocol: unknown variant `5`, expected `3.1.1`",
            "a.toml:18: probes[id=\"web\"].timeout: invalid duration \"3 parsecs\": missing unit; expected a duration like 500ms, 10s, 5m, 1h",
            "a.toml:19: probes[id=\"web\"].bogus: unknown key `bogus`; expected one of `id`, `url`, `interval`, `timeout`, `method`, `expect_status`, `body_contains`, `body_regex`, `degraded_after`, `tls_verify`, `headers`",
            // The other keys of a probe with an unknown kind are not judged against a guess.
            "a.toml:23: probes[id=\"db\"].kind: unknown variant `snmp`, expected one of `http`, `tcp`, `dns`, `icmp`, `tls`, `exec`, `modbus`, `mqtt`",
            "a.toml:28: probes[id=\"tcp2\"].address: required key `address` is missing",
            "a.toml:32: probes[id=\"tcp2\"].timeout: invalid type: integer `3`, expected a string",
        ];
        let err = from_str(text, Path::new("a.toml")).unwrap_err().to_string();
        let mut lines = err.lines();
        assert_eq!(lines.next(), Some("a.toml: 9 problems"), "{err}");
        let got: Vec<&str> = lines.map(str::trim_start).collect();
        assert_eq!(got, want, "{err}");
    }

    #[test]
    fn a_toml_syntax_error_is_reported_with_its_line() {
        let err = from_str("[agent\nsite = 1\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a.toml: TOML parse error at line 1"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_file_names_the_path() {
        let err = load(Path::new("/nonexistent/agent.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/agent.toml: cannot read: "),
            "{err}"
        );
    }

    #[test]
    fn relative_ca_files_of_tls_and_mqtt_probes_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[agent]\nsite = \"lab\"\nid = \"a1\"\ndata_dir = \"data\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\n[[probes]]\nid = \"broker\"\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:8883\"\nca_file = \"tls/ca.pem\"\ninterval = \"10s\"\ntimeout = \"2s\"\n\n[[probes]]\nid = \"cert\"\nkind = \"tls\"\naddress = \"127.0.0.1:443\"\nca_file = \"tls/ca.pem\"\ninterval = \"10s\"\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let want = Some(dir.path().join("tls/ca.pem"));
        match (&c.probes[0], &c.probes[1]) {
            (crate::probe::ProbeConfig::Mqtt(m), crate::probe::ProbeConfig::Tls(t)) => {
                assert_eq!(m.ca_file, want);
                assert_eq!(t.ca_file, want);
            }
            other => panic!("unexpected probes {other:?}"),
        }
    }

    #[test]
    fn the_shipped_agent_toml_loads_as_written() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.toml");
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.site.as_str(), c.agent_id.as_str()), ("lab", "agent-1"));
        assert_eq!(c.probes.len(), 4);
        assert_eq!(c.probes[0].id(), "collector-api");
        assert_eq!(c.probes[1].kind(), "tcp");
        assert_eq!(c.probes[2].kind(), "icmp");
        assert_eq!(c.probes[3].kind(), "mqtt");
        assert_eq!(c.health_listen, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(c.publish.linger, std::time::Duration::from_millis(200));
        assert_eq!(c.outbox.resend_after, std::time::Duration::from_secs(15));
    }
}
