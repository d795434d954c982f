//! The MQTT connection block that both the agent and the collector config flatten in, and the
//! connector that turns it into `rumqttc::MqttOptions` with typed errors. `mqtts://` URLs use
//! the `[mqtt.tls]` block ([`super::mqtt_tls`]).

use super::mqtt_tls::{MqttTlsConfig, MqttTlsError};
use super::{ConfigError, Duration};
use rumqttc::{LastWill, MqttOptions, TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// MQTT protocol level. Only 3.1.1 is built; 5 is reserved so configs can say it explicitly later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MqttProtocol {
    /// MQTT 3.1.1, the default for the widest broker support.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
}

/// The `[mqtt]` block as written in TOML.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker address, `mqtt://host:port` (or `tcp://`), or `mqtts://host:port` for TLS.
    #[serde(default = "default_url")]
    pub url: String,
    /// Client id; defaults to a name derived from the agent or collector id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name; set together with `password` or not at all.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// Topic root (default `watchstand`).
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
    /// Protocol level (default `"3.1.1"`).
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Keep-alive interval; the broker fires the last will after 1.5 × this without traffic.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Duration,
    /// Largest packet sent or accepted, in bytes. Payloads are batched up to this size.
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: usize,
    /// Outgoing QoS 1 messages in flight before the client waits for PUBACKs.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// First reconnect delay; doubles per failure up to `reconnect_max`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Duration,
    /// Tuning knob (not in the shipped configs): requests (acks, publishes, subscriptions)
    /// queued for the client's event loop before a sender waits. Tests make it tiny to prove
    /// that nothing depends on its size.
    #[serde(default = "default_request_channel_capacity")]
    pub request_channel_capacity: usize,
    /// Tuning knob (not in the shipped configs): bytes of incoming messages held between the
    /// MQTT driver and their consumer; when full, the driver stops reading and the broker holds
    /// the rest. Tests make it tiny.
    #[serde(default = "default_inbox_max_bytes")]
    pub inbox_max_bytes: usize,
    /// Tuning knob: most incoming messages held there. Small enough that the consumer works
    /// through them well within `keep_alive` (the broker's PINGRESP waits behind them).
    #[serde(default = "default_inbox_max_messages")]
    pub inbox_max_messages: usize,
    /// `[mqtt.tls]`: CA, client certificate and key, server name; used with `mqtts://`.
    #[serde(default)]
    pub tls: MqttTlsConfig,
}

fn default_url() -> String {
    "mqtt://127.0.0.1:18830".to_owned()
}
fn default_topic_root() -> String {
    crate::topic::DEFAULT_ROOT.to_owned()
}
const fn default_keep_alive() -> Duration {
    Duration::from_secs(10)
}
const fn default_max_packet_size() -> usize {
    256 * 1024
}
const fn default_inflight() -> u16 {
    100
}
const fn default_reconnect_min() -> Duration {
    Duration::from_millis(200)
}
const fn default_reconnect_max() -> Duration {
    Duration::from_secs(10)
}
const fn default_request_channel_capacity() -> usize {
    1_024
}
const fn default_inbox_max_bytes() -> usize {
    16 * 1024 * 1024
}
const fn default_inbox_max_messages() -> usize {
    2_000
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            client_id: None,
            username: None,
            password: None,
            topic_root: default_topic_root(),
            protocol: MqttProtocol::default(),
            keep_alive: default_keep_alive(),
            max_packet_size: default_max_packet_size(),
            inflight: default_inflight(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            request_channel_capacity: default_request_channel_capacity(),
            inbox_max_bytes: default_inbox_max_bytes(),
            inbox_max_messages: default_inbox_max_messages(),
            tls: MqttTlsConfig::default(),
        }
    }
}

/// Hand-written so that the password never reaches a log line.
impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("topic_root", &self.topic_root)
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_size", &self.max_packet_size)
            .field("request_channel_capacity", &self.request_channel_capacity)
            .field("inbox_max_bytes", &self.inbox_max_bytes)
            .field("inbox_max_messages", &self.inbox_max_messages)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Why an MQTT config cannot become client options.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MqttConnectError {
    /// The URL is not `mqtt://host:port` or `mqtts://host:port`.
    #[error("url {url:?} is not mqtt://host:port or mqtts://host:port ({reason})")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Only one of username and password is set.
    #[error("username and password must be set together")]
    IncompleteCredentials,
    /// The client id is empty.
    #[error("client id must not be empty")]
    EmptyClientId,
    /// The TLS files cannot be loaded.
    #[error(transparent)]
    Tls(#[from] MqttTlsError),
}

impl MqttConfig {
    /// Host and port from the URL.
    ///
    /// # Errors
    /// Names the URL and what is wrong with it.
    pub fn host_port(&self) -> Result<(String, u16), MqttConnectError> {
        let bad = |reason| MqttConnectError::BadUrl {
            url: self.url.clone(),
            reason,
        };
        let rest = self
            .url
            .strip_prefix("mqtt://")
            .or_else(|| self.url.strip_prefix("tcp://"))
            .or_else(|| self.url.strip_prefix("mqtts://"))
            .ok_or_else(|| bad("scheme must be mqtt://, tcp:// or mqtts://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number 1-65535"))?;
        if port == 0 {
            return Err(bad("port is not a number 1-65535"));
        }
        Ok((host.trim_matches(['[', ']']).to_owned(), port))
    }

    /// Whether the URL asks for TLS (`mqtts://`).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("mqtts://")
    }

    /// Reads the TLS files as a connect would (for `check`): nothing to do without `mqtts://`.
    ///
    /// # Errors
    /// The first file that cannot be used, naming its key and path.
    pub fn check_files(&self) -> Result<(), MqttTlsError> {
        if self.uses_tls() {
            self.tls.client_config()?;
        }
        Ok(())
    }

    /// Warns when `config_file` holds `password` and is open to more than the service (see
    /// [`super::secret_file`]). The TLS key file is checked when it is loaded.
    pub fn warn_exposed_secrets(&self, config_file: &std::path::Path) {
        if self.password.is_some() {
            super::secret_file::warn_if_exposed("mqtt.password", config_file);
        }
    }

    /// Resolves relative TLS file paths against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        self.tls.resolve_paths(base);
    }

    /// Checks the block; `key` is where it sits in the file (e.g. `mqtt`).
    pub fn validate(&self, key: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Err(e) = self.host_port() {
            errors.push(ConfigError::new(format!("{key}.url"), e.to_string()));
        }
        errors.extend(self.tls.validate(&format!("{key}.tls"), self.uses_tls()));
        if self.username.is_some() != self.password.is_some() {
            errors.push(ConfigError::new(
                format!("{key}.username"),
                MqttConnectError::IncompleteCredentials.to_string(),
            ));
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() {
                errors.push(ConfigError::new(
                    format!("{key}.client_id"),
                    MqttConnectError::EmptyClientId.to_string(),
                ));
            }
        }
        if self.topic_root.is_empty()
            || self.topic_root.contains(['+', '#'])
            || self.topic_root.starts_with('/')
        {
            errors.push(ConfigError::new(
                format!("{key}.topic_root"),
                format!(
                    "topic root {:?} must be non-empty, without wildcards or a leading '/'",
                    self.topic_root
                ),
            ));
        }
        if self.max_packet_size < 1024 {
            errors.push(ConfigError::new(
                format!("{key}.max_packet_size"),
                format!(
                    "{} bytes is too small; use at least 1024",
                    self.max_packet_size
                ),
            ));
        }
        if self.keep_alive.as_millis() < 1_000 {
            errors.push(ConfigError::new(
                format!("{key}.keep_alive"),
                format!("{} is too short; use at least 1s", self.keep_alive),
            ));
        }
        if self.request_channel_capacity == 0 {
            errors.push(ConfigError::new(
                format!("{key}.request_channel_capacity"),
                "must be at least 1",
            ));
        }
        if self.inflight == 0 {
            errors.push(ConfigError::new(
                format!("{key}.inflight"),
                "must be at least 1",
            ));
        }
        errors
    }
}

/// Builds `MqttOptions` from a validated [`MqttConfig`].
#[derive(Debug, Clone)]
pub struct MqttConnector {
    config: MqttConfig,
}

impl MqttConnector {
    /// A connector for `config`.
    pub fn new(config: MqttConfig) -> Self {
        Self { config }
    }

    /// The config it was built from.
    pub fn config(&self) -> &MqttConfig {
        &self.config
    }

    /// Client options with `default_client_id` unless the config names one, the given clean
    /// session flag, and an optional retained last will.
    ///
    /// With an `mqtts://` URL this reads the `[mqtt.tls]` files.
    ///
    /// # Errors
    /// Bad URL, empty client id, half-set credentials, or TLS files that cannot be used.
    pub fn options(
        &self,
        default_client_id: &str,
        clean_session: bool,
        last_will: Option<LastWill>,
    ) -> Result<MqttOptions, MqttConnectError> {
        let (host, port) = self.config.host_port()?;
        let client_id = self
            .config
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_owned());
        if client_id.is_empty() {
            return Err(MqttConnectError::EmptyClientId);
        }
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(self.config.keep_alive.get())
            .set_clean_session(clean_session)
            .set_max_packet_size(self.config.max_packet_size, self.config.max_packet_size)
            .set_inflight(self.config.inflight)
            .set_request_channel_capacity(self.config.request_channel_capacity);
        match (&self.config.username, &self.config.password) {
            (Some(u), Some(p)) => {
                options.set_credentials(u.clone(), p.clone());
            }
            (None, None) => {}
            _ => return Err(MqttConnectError::IncompleteCredentials),
        }
        if let Some(will) = last_will {
            options.set_last_will(will);
        }
        if self.config.uses_tls() {
            let tls = self.config.tls.client_config()?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut MqttConfig)) -> Vec<String> {
        let mut c = MqttConfig::default();
        f(&mut c);
        c.validate("mqtt").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn config_errors_name_the_key_and_quote_the_value() {
        type Edit = Box<dyn FnOnce(&mut MqttConfig)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|c| c.url = "http://x:1".into()),
                "mqtt.url: url \"http://x:1\" is not mqtt://host:port or mqtts://host:port (scheme must be mqtt://, tcp:// or mqtts://)",
            ),
            (
                Box::new(|c| c.url = "mqtt://host".into()),
                "mqtt.url: url \"mqtt://host\" is not mqtt://host:port or mqtts://host:port (missing :port)",
            ),
            (
                Box::new(|c| c.url = "mqtt://host:99999".into()),
                "mqtt.url: url \"mqtt://host:99999\" is not mqtt://host:port or mqtts://host:port (port is not a number 1-65535)",
            ),
            (
                Box::new(|c| c.username = Some("u".into())),
                "mqtt.username: username and password must be set together",
            ),
            (
                Box::new(|c| c.client_id = Some(String::new())),
                "mqtt.client_id: client id must not be empty",
            ),
            (
                Box::new(|c| c.topic_root = "a/#".into()),
                "mqtt.topic_root: topic root \"a/#\" must be non-empty, without wildcards or a leading '/'",
            ),
            (
                Box::new(|c| c.max_packet_size = 10),
                "mqtt.max_packet_size: 10 bytes is too small; use at least 1024",
            ),
            (
                Box::new(|c| c.keep_alive = Duration::from_millis(10)),
                "mqtt.keep_alive: 10ms is too short; use at least 1s",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(with(f), vec![want.to_owned()]);
        }
        assert!(with(|_| {}).is_empty());
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let c = MqttConfig {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..MqttConfig::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn mqtts_url_needs_tls_settings_and_loads_them_at_connect() {
        assert_eq!(
            with(|c| c.url = "mqtts://127.0.0.1:8883".into()),
            vec!["mqtt.tls.ca_file: an mqtts:// url needs a CA file to verify the broker"]
        );
        let c = MqttConfig {
            url: "mqtts://127.0.0.1:8883".into(),
            tls: MqttTlsConfig {
                ca_file: Some("/nonexistent/ca.crt".into()),
                ..MqttTlsConfig::default()
            },
            ..MqttConfig::default()
        };
        assert!(c.validate("mqtt").is_empty());
        let err = MqttConnector::new(c)
            .options("agent-1", false, None)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mqtt.tls.ca_file: cannot read /nonexistent/ca.crt: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn connector_builds_options_from_the_url() {
        let c = MqttConfig {
            url: "mqtt://127.0.0.1:18830".into(),
            ..MqttConfig::default()
        };
        let opts = MqttConnector::new(c)
            .options("agent-1", false, None)
            .unwrap();
        assert_eq!(opts.broker_address(), ("127.0.0.1".to_owned(), 18830));
        assert_eq!(opts.client_id(), "agent-1");
        assert!(!opts.clean_session());
    }
}
