//! Collector config: raw TOML types (exactly the file), a pure `validate()` that reports every
//! problem at once with its key path, and the validated [`CollectorConfig`] the rest of the
//! collector runs on. The service catalogue lives in [`catalogue`] and may come from its own
//! file (`collector.services_file`); [`ports`] checks that its listen addresses are free.

pub mod catalogue;
pub mod commands;
pub mod ports;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use watchstand_shared::config::{ConfigErrors, Duration, LoadError, MqttConfig, Problems};

pub use catalogue::{Catalogue, Criticality, ProbeRef, Service};

use crate::incident::policy::{
    self, IncidentPolicy, IncidentSettings, RawIncidentPolicy, RawWebhook, Webhook,
};

/// `[collector]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollectorSection {
    /// Collector id (used in its MQTT client id and state topic).
    #[serde(default = "default_id")]
    pub id: String,
    /// Store directory.
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long raw results and samples are kept.
    #[serde(default = "default_raw_retention")]
    pub raw_retention: Duration,
    /// How long rollups are kept.
    #[serde(default = "default_rollup_retention")]
    pub rollup_retention: Duration,
    /// Service catalogue file, relative to this config file.
    #[serde(default)]
    pub services_file: Option<PathBuf>,
    /// Largest MQTT payload accepted, bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Most messages per ingest batch (one flush and one ack round per batch).
    #[serde(default = "default_batch_max")]
    pub ingest_batch_max: usize,
    /// Most payload bytes per ingest batch (at least one message per batch), so that a backlog
    /// of any size drains in fixed memory.
    #[serde(default = "default_batch_max_bytes")]
    pub ingest_batch_max_bytes: usize,
    /// Ingest holding a batch this long without finishing it counts as stalled (WARN log,
    /// health `failing`).
    #[serde(default = "default_stall_after")]
    pub ingest_stall_after: Duration,
    /// sled's page cache, MiB of on-disk page bytes (the nodes in memory take several times
    /// that); the main lever on the collector's resident memory under a large backlog.
    #[serde(default = "default_store_cache_mib")]
    pub store_cache_mib: u64,
}

/// `[broker]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrokerSection {
    /// Run the embedded broker.
    #[serde(default = "default_true")]
    pub embedded: bool,
    /// Embedded broker listen address (loopback by default).
    #[serde(default = "default_broker_listen")]
    pub listen: String,
}

impl Default for RawBrokerSection {
    fn default() -> Self {
        Self {
            embedded: true,
            listen: default_broker_listen(),
        }
    }
}

/// The whole file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollectorConfig {
    /// `[collector]`.
    pub collector: RawCollectorSection,
    /// `[broker]`.
    #[serde(default)]
    pub broker: RawBrokerSection,
    /// `[mqtt]`.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// `[[services]]` inline (more may come from `services_file`).
    #[serde(default)]
    pub services: Vec<catalogue::RawService>,
    /// `[incidents]`: rule defaults.
    #[serde(default)]
    pub incidents: RawIncidentPolicy,
    /// `[[webhooks]]`: notification receivers.
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    /// `[[runbooks]]` inline (more may come from `services_file`).
    #[serde(default)]
    pub runbooks: Vec<crate::runbook::config::RawRunbook>,
    /// `[[drills]]`: failover drills of the runbooks.
    #[serde(default)]
    pub drills: Vec<crate::drill::RawDrill>,
    /// `[api]`: tokens and roles.
    #[serde(default)]
    pub api: crate::auth::RawApiSection,
    /// `[capacity]`: thresholds, rollup retention, forecast window and horizon.
    #[serde(default)]
    pub capacity: crate::capacity::RawCapacitySection,
    /// `[commands]`: the signing key of runbooks' agent actions.
    #[serde(default)]
    pub commands: commands::RawCommandsSection,
}

fn default_id() -> String {
    "main".into()
}
fn default_listen() -> String {
    "127.0.0.1:8088".into()
}
fn default_broker_listen() -> String {
    "127.0.0.1:18830".into()
}
const fn default_raw_retention() -> Duration {
    Duration::from_secs(35 * 86_400)
}
const fn default_rollup_retention() -> Duration {
    Duration::from_secs(400 * 86_400)
}
const fn default_max_payload() -> usize {
    watchstand_shared::wire::v1::MAX_PAYLOAD_BYTES
}
const fn default_batch_max() -> usize {
    1_000
}
const fn default_batch_max_bytes() -> usize {
    8 * 1024 * 1024
}
const fn default_store_cache_mib() -> u64 {
    crate::store::DEFAULT_CACHE_BYTES / (1024 * 1024)
}
const fn default_stall_after() -> Duration {
    Duration::from_secs(30)
}
const fn default_true() -> bool {
    true
}

/// Broker choice after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// Start rumqttd on this address; `[mqtt].url` is derived from it.
    Embedded {
        /// Listen address.
        listen: SocketAddr,
    },
    /// Connect to the broker at `[mqtt].url`.
    External,
}

/// The validated collector config.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Where it came from.
    pub origin: PathBuf,
    /// Collector id.
    pub id: String,
    /// Store directory (relative paths resolved against the config file's directory).
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Raw retention.
    pub raw_retention: Duration,
    /// Rollup retention.
    pub rollup_retention: Duration,
    /// Largest payload.
    pub max_payload_bytes: usize,
    /// Ingest batch size.
    pub ingest_batch_max: usize,
    /// Ingest batch size in payload bytes.
    pub ingest_batch_max_bytes: usize,
    /// When a batch held this long counts as stalled.
    pub ingest_stall_after: Duration,
    /// sled's page cache, bytes of on-disk pages.
    pub store_cache_bytes: u64,
    /// Broker.
    pub broker: BrokerMode,
    /// MQTT connection.
    pub mqtt: MqttConfig,
    /// Services.
    pub catalogue: Catalogue,
    /// Incident rule defaults and evaluation interval.
    pub incidents: IncidentSettings,
    /// Each service's incident rules (defaults merged with its overrides).
    pub incident_policies: HashMap<String, IncidentPolicy>,
    /// Webhook receivers.
    pub webhooks: Vec<Webhook>,
    /// Who may use the API (`[api]`).
    pub api: crate::auth::ApiAccess,
    /// `[capacity]`.
    pub capacity: crate::capacity::CapacitySettings,
    /// Continuity runbooks.
    pub runbooks: Vec<crate::runbook::Runbook>,
    /// `[commands]`.
    pub commands: commands::CommandSettings,
    /// Failover drills.
    pub drills: Vec<crate::drill::Drill>,
}

/// Reads, parses and validates a collector config and its services file.
///
/// # Errors
/// Unreadable file, TOML errors (with path, line and key), or every semantic problem at once.
pub fn load(path: &Path) -> Result<CollectorConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut raw = match from_str(&text, path) {
        Ok(raw) => raw,
        Err(LoadError::Invalid(mut errors)) => {
            // Report the services file's parse-level problems in the same run.
            let services_file = toml::from_str::<toml::Table>(&text).ok().and_then(|t| {
                t.get("collector")?
                    .get("services_file")?
                    .as_str()
                    .map(PathBuf::from)
            });
            if let Some(file) = services_file {
                if let Err(LoadError::Invalid(more)) =
                    catalogue::load_services_file(&base.join(file))
                {
                    errors.errors.extend(more.errors.into_iter().map(|mut e| {
                        e.file = Some(more.origin.clone());
                        e
                    }));
                }
            }
            return Err(LoadError::Invalid(errors));
        }
        Err(other) => return Err(other),
    };
    let inline = raw.services.len();
    let inline_runbooks = raw.runbooks.len();
    let mut services_path = None;
    if let Some(file) = &raw.collector.services_file {
        let resolved = base.join(file);
        let services = match catalogue::load_services_file(&resolved) {
            Ok(s) => s,
            // The fix is in this file's `collector.services_file` (or creating the file): say so.
            Err(LoadError::Read { source, .. }) => {
                let mut p = Problems::default();
                p.push(
                    "collector.services_file",
                    format!(
                        "{:?} cannot be read as {}: {source}",
                        file.display(),
                        resolved.display()
                    ),
                );
                return Err(LoadError::Invalid(p.finish(path, ()).err().unwrap_or_else(
                    || ConfigErrors {
                        origin: path.to_owned(),
                        errors: Vec::new(),
                    },
                )));
            }
            Err(other) => return Err(other),
        };
        raw.services.extend(services.services);
        raw.runbooks.extend(services.runbooks);
        services_path = Some(resolved);
    }
    let from_file = FromFile {
        services: (
            inline,
            raw.services[inline..]
                .iter()
                .map(|s| s.id.clone())
                .collect(),
        ),
        runbooks: (
            inline_runbooks,
            raw.runbooks[inline_runbooks..]
                .iter()
                .map(|r| r.id.clone())
                .collect(),
        ),
    };
    validate(raw, path, base).map_err(|mut e| {
        if let Some(services_path) = services_path {
            attribute_to_services_file(&mut e, &from_file, &services_path);
        }
        LoadError::Invalid(e)
    })
}

/// Which services and runbooks came from the services file: how many were inline before
/// them, and their ids.
struct FromFile {
    services: (usize, Vec<String>),
    runbooks: (usize, Vec<String>),
}

/// Marks the problems of services and runbooks that came from the services file
/// (`services[id="x"]…` or `services[i]…` with `i` past the inline ones; the same for
/// `runbooks`) as being in that file, so the message names the file to edit.
fn attribute_to_services_file(
    errors: &mut ConfigErrors,
    from_file: &FromFile,
    services_path: &Path,
) {
    for e in &mut errors.errors {
        let (rest, (inline, ids)) = if let Some(rest) = e.key.strip_prefix("services[") {
            (rest, &from_file.services)
        } else if let Some(rest) = e.key.strip_prefix("runbooks[") {
            (rest, &from_file.runbooks)
        } else {
            continue;
        };
        let Some((selector, _)) = rest.split_once(']') else {
            continue;
        };
        let in_file = if let Some(id) = selector.strip_prefix("id=") {
            ids.iter().any(|f| format!("{f:?}") == id)
        } else {
            selector.parse::<usize>().is_ok_and(|i| i >= *inline)
        };
        if in_file {
            e.file = Some(services_path.to_owned());
        }
    }
}

/// Parses TOML text; `origin` names the file in errors.
///
/// # Errors
/// TOML syntax or shape errors, prefixed with the file.
pub fn from_str(text: &str, origin: &Path) -> Result<RawCollectorConfig, LoadError> {
    watchstand_shared::config::from_toml(text, origin)
}

/// Checks everything; pure (no I/O). `base` resolves relative paths.
///
/// # Errors
/// Every problem, each naming its key.
pub fn validate(
    raw: RawCollectorConfig,
    origin: &Path,
    base: &Path,
) -> Result<CollectorConfig, ConfigErrors> {
    let mut p = Problems::default();
    p.check_id("collector.id", &raw.collector.id);
    let listen = parse_addr(&mut p, "collector.listen", &raw.collector.listen);
    p.extend(raw.mqtt.validate("mqtt"));
    if raw.broker.embedded && raw.mqtt.uses_tls() {
        p.push(
            "broker.embedded",
            format!(
                "the embedded broker has no TLS; set embedded = false to use {}",
                raw.mqtt.url
            ),
        );
    }
    let broker = if raw.broker.embedded {
        parse_addr(&mut p, "broker.listen", &raw.broker.listen)
            .map(|listen| BrokerMode::Embedded { listen })
    } else {
        Some(BrokerMode::External)
    };
    if raw.collector.max_payload_bytes < 1_024 {
        p.push(
            "collector.max_payload_bytes",
            format!(
                "{} is too small; use at least 1024",
                raw.collector.max_payload_bytes
            ),
        );
    }
    if raw.collector.ingest_batch_max == 0 {
        p.push("collector.ingest_batch_max", "must be at least 1");
    }
    if raw.collector.ingest_batch_max_bytes < 1_024 {
        p.push(
            "collector.ingest_batch_max_bytes",
            format!(
                "{} is too small; use at least 1024",
                raw.collector.ingest_batch_max_bytes
            ),
        );
    }
    if !(1..=65_536).contains(&raw.collector.store_cache_mib) {
        p.push(
            "collector.store_cache_mib",
            format!(
                "{} is out of range; use 1 to 65536 (MiB)",
                raw.collector.store_cache_mib
            ),
        );
    }
    if raw.collector.ingest_stall_after.as_millis() < 1_000 {
        p.push(
            "collector.ingest_stall_after",
            format!(
                "{} is too short; use at least 1s",
                raw.collector.ingest_stall_after
            ),
        );
    }
    if raw.collector.raw_retention.as_millis() < 86_400_000 {
        p.push(
            "collector.raw_retention",
            format!("{} is shorter than one day", raw.collector.raw_retention),
        );
    }
    let catalogue = catalogue::validate(&raw.services, &mut p);
    let incidents = policy::settings(&raw.incidents, &mut p);
    let incident_policies = raw
        .services
        .iter()
        .map(|s| {
            let policy = match &s.incidents {
                Some(o) => policy::merge(
                    &incidents.defaults,
                    o,
                    &format!("services[id={:?}].incidents", s.id),
                    &mut p,
                ),
                None => incidents.defaults.clone(),
            };
            (s.id.clone(), policy)
        })
        .collect();
    let webhooks = policy::webhooks(&raw.webhooks, &mut p);
    let runbooks = {
        let services = raw.services.iter().map(|s| s.id.as_str()).collect();
        let webhook_names = webhooks.iter().map(|w| w.name.as_str()).collect();
        crate::runbook::config::validate(
            &raw.runbooks,
            crate::runbook::config::Known {
                services: &services,
                webhooks: &webhook_names,
            },
            &mut p,
        )
    };
    let commands = commands::validate(&raw.commands, &runbooks, base, &mut p);
    let drills = {
        let services = raw.services.iter().map(|s| s.id.as_str()).collect();
        crate::drill::config::validate(&raw.drills, &services, &runbooks, &mut p)
    };
    let api = crate::auth::validate(&raw.api, listen, base, &mut p);
    let capacity = crate::capacity::settings::validate(&raw.capacity, &mut p);
    let data_dir = base.join(&raw.collector.data_dir);
    match (listen, broker) {
        (Some(listen), Some(broker)) if p.is_empty() => Ok(CollectorConfig {
            origin: origin.to_owned(),
            id: raw.collector.id,
            data_dir,
            listen,
            raw_retention: raw.collector.raw_retention,
            rollup_retention: raw.collector.rollup_retention,
            max_payload_bytes: raw.collector.max_payload_bytes,
            ingest_batch_max: raw.collector.ingest_batch_max,
            ingest_batch_max_bytes: raw.collector.ingest_batch_max_bytes,
            ingest_stall_after: raw.collector.ingest_stall_after,
            store_cache_bytes: raw.collector.store_cache_mib * 1024 * 1024,
            broker,
            mqtt: {
                let mut mqtt = raw.mqtt;
                mqtt.resolve_paths(base);
                mqtt
            },
            catalogue,
            incidents,
            incident_policies,
            webhooks,
            api,
            capacity,
            runbooks,
            commands,
            drills,
        }),
        _ => Err(p.finish(origin, ()).err().unwrap_or_else(|| ConfigErrors {
            origin: origin.to_owned(),
            errors: Vec::new(),
        })),
    }
}

fn parse_addr(p: &mut Problems, key: &str, text: &str) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(
                key,
                format!("{text:?} is not an address like 127.0.0.1:8088"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[collector]\ndata_dir = \"d\"\n";

    fn errors(text: &str) -> Vec<String> {
        let origin = Path::new("c.toml");
        match from_str(text, origin) {
            Err(e) => vec![e.to_string()],
            Ok(raw) => match validate(raw, origin, Path::new("/base")) {
                Ok(_) => vec![],
                Err(e) => e.errors.iter().map(ToString::to_string).collect(),
            },
        }
    }

    #[test]
    fn a_minimal_config_is_valid_with_the_embedded_broker_on_loopback() {
        let raw = from_str(MINIMAL, Path::new("c.toml")).unwrap();
        let c = validate(raw, Path::new("c.toml"), Path::new("/base")).unwrap();
        assert_eq!(c.data_dir, Path::new("/base/d"));
        assert_eq!(
            c.broker,
            BrokerMode::Embedded {
                listen: "127.0.0.1:18830".parse().unwrap()
            }
        );
        assert_eq!(c.listen, "127.0.0.1:8088".parse().unwrap());
        assert_eq!(c.store_cache_bytes, 16 * 1024 * 1024);
        let raw = from_str(
            "[collector]\ndata_dir = \"d\"\nstore_cache_mib = 8\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let c = validate(raw, Path::new("c.toml"), Path::new("/base")).unwrap();
        assert_eq!(c.store_cache_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn config_errors_name_file_key_and_value() {
        let cases: &[(&str, &str)] = &[
            ("[collector]\n", "c.toml: 1 problem\n  c.toml:1: collector.data_dir: required key `data_dir` is missing"),
            ("[collector]\ndata_dir = \"d\"\nlisten = \"nowhere\"\n", "collector.listen: \"nowhere\" is not an address like 127.0.0.1:8088"),
            ("[collector]\ndata_dir = \"d\"\nid = \"a b\"\n", "collector.id: id \"a b\" contains ' '; only letters, digits, '_', '.' and '-' are allowed"),
            ("[collector]\ndata_dir = \"d\"\nraw_retention = \"1h\"\n", "collector.raw_retention: 1h is shorter than one day"),
            ("[collector]\ndata_dir = \"d\"\nstore_cache_mib = 0\n", "collector.store_cache_mib: 0 is out of range; use 1 to 65536 (MiB)"),
            ("[collector]\ndata_dir = \"d\"\n[broker]\nlisten = \"x\"\n", "broker.listen: \"x\" is not an address like 127.0.0.1:8088"),
            ("[collector]\ndata_dir = \"d\"\n[mqtt]\nurl = \"http://x\"\n", "mqtt.url: url \"http://x\" is not mqtt://host:port or mqtts://host:port (scheme must be mqtt://, tcp:// or mqtts://)"),
            ("[collector]\ndata_dir = \"d\"\n[mqtt]\nurl = \"mqtts://b:8883\"\ntls = { ca_file = \"ca.crt\" }\n", "broker.embedded: the embedded broker has no TLS; set embedded = false to use mqtts://b:8883"),
            ("[collector]\ndata_dir = \"d\"\n[broker]\nembedded = false\n[mqtt]\nurl = \"mqtts://b:8883\"\ntls = { server_name = \"b\" }\n", "mqtt.tls.ca_file: an mqtts:// url needs a CA file to verify the broker"),
        ];
        for (text, want) in cases {
            assert_eq!(errors(text), vec![(*want).to_owned()], "{text}");
        }
        let unknown = errors("[collector]\ndata_dir = \"d\"\nbogus = 1\n");
        assert!(
            unknown[0]
                .starts_with("c.toml: 1 problem\n  c.toml:3: collector.bogus: unknown key `bogus`"),
            "{unknown:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "[collector]\ndata_dir = \"d\"\nlisten = \"x\"\nid = \"\"\n[mqtt]\nkeep_alive = \"1ms\"\n";
        assert_eq!(errors(text).len(), 3);
    }

    #[test]
    fn every_parse_level_mistake_of_both_files_is_reported_in_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let collector = dir.path().join("collector.toml");
        let services = dir.path().join("services.toml");
        std::fs::write(
            &collector,
            "[collector]\n\
             data_dir = \"d\"\n\
             services_file = \"services.toml\"\n\
             raw_retention = \"5 seconds\"\n\
             colour = \"red\"\n\
             [broker]\n\
             embedded = \"yes\"\n\
             [mqtt]\n\
             keep_alive = 10\n",
        )
        .unwrap();
        std::fs::write(
            &services,
            "[[services]]\n\
             id = \"web\"\n\
             name = \"Web\"\n\
             criticality = \"urgent\"\n\
             rto = \"1 hour\"\n\
             rpo = \"5m\"\n\
             probes = [\"agent-1/web\"]\n\
             slo = { availability = 99.9, windw = \"30d\" }\n",
        )
        .unwrap();
        let c = collector.display().to_string();
        let s = services.display().to_string();
        let want = [
            format!("{c}:4: collector.raw_retention: invalid duration \"5 seconds\": missing unit; expected a duration like 500ms, 10s, 5m, 1h"),
            format!("{c}:5: collector.colour: unknown key `colour`; expected one of `id`, `data_dir`, `listen`, `raw_retention`, `rollup_retention`, `services_file`, `max_payload_bytes`, `ingest_batch_max`, `ingest_batch_max_bytes`, `ingest_stall_after`, `store_cache_mib`"),
            format!("{c}:7: broker.embedded: invalid type: string \"yes\", expected a boolean"),
            format!("{c}:9: mqtt.keep_alive: invalid type: integer `10`, expected a string"),
            format!("{s}:4: services[id=\"web\"].criticality: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`"),
            format!("{s}:5: services[id=\"web\"].rto: invalid duration \"1 hour\": missing unit; expected a duration like 500ms, 10s, 5m, 1h"),
            format!("{s}:8: services[id=\"web\"].slo.windw: unknown key `windw`; expected one of `availability`, `window`, `latency_ms`, `latency_pct`"),
        ];
        let err = load(&collector).unwrap_err().to_string();
        let got: Vec<&str> = err.lines().skip(1).map(str::trim_start).collect();
        assert_eq!(got, want, "{err}");
    }

    #[test]
    fn a_missing_services_file_names_the_key_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let collector = dir.path().join("collector.toml");
        std::fs::write(
            &collector,
            "[collector]\ndata_dir = \"d\"\nservices_file = \"nope.toml\"\n",
        )
        .unwrap();
        let err = load(&collector).unwrap_err().to_string();
        let c = collector.display();
        let resolved = dir.path().join("nope.toml");
        assert_eq!(
            err,
            format!(
                "{c}: 1 problem\n  {c}: collector.services_file: \"nope.toml\" cannot be read as {}: No such file or directory (os error 2)",
                resolved.display()
            )
        );
    }

    #[test]
    fn semantic_problems_of_the_services_file_name_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let collector = dir.path().join("collector.toml");
        std::fs::write(
            &collector,
            "[collector]\ndata_dir = \"d\"\nservices_file = \"services.toml\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("services.toml"),
            "[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"1h\"\nrpo = \"5m\"\nprobes = [\"agent-1/web\"]\nslo = { availability = 150.0 }\n",
        )
        .unwrap();
        let err = load(&collector).unwrap_err().to_string();
        let services = dir.path().join("services.toml");
        assert!(err.lines().count() > 1, "{err}");
        assert!(
            err.lines().skip(1).all(|l| l
                .trim_start()
                .starts_with(&format!("{}: services[id=\"web\"]", services.display()))),
            "{err}"
        );
    }

    #[test]
    fn runbooks_load_from_the_services_file_and_their_problems_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let collector = dir.path().join("collector.toml");
        std::fs::write(
            &collector,
            "[collector]\ndata_dir = \"d\"\nservices_file = \"services.toml\"\n[commands]\nkey_file = \"command.key\"\n",
        )
        .unwrap();
        let service = "[[services]]\nid = \"web\"\nname = \"Web\"\ncriticality = \"high\"\nrto = \"1h\"\nrpo = \"5m\"\nprobes = [\"agent-1/web\"]\nslo = { availability = 99.9 }\n";
        let runbook = "[[runbooks]]\nid = \"web-failover\"\nservice = \"web\"\n[[runbooks.steps]]\nkind = \"agent_action\"\nagent = \"agent-1\"\naction = \"promote\"\n";
        let services = dir.path().join("services.toml");
        std::fs::write(&services, format!("{service}\n{runbook}")).unwrap();
        let config = load(&collector).unwrap();
        assert_eq!(config.runbooks.len(), 1);
        assert_eq!(config.runbooks[0].service, "web");
        assert_eq!(config.runbooks[0].steps[0].id, "step-1");

        std::fs::write(
            &services,
            format!(
                "{service}\n{}",
                runbook.replace("service = \"web\"", "service = \"mail\"")
            ),
        )
        .unwrap();
        let err = load(&collector).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{}: runbooks[id=\"web-failover\"].service: \"mail\" is not a service in the catalogue",
                services.display()
            )),
            "{err}"
        );
    }
}
