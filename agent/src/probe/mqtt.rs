//! The `mqtt` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): checks
//! that an MQTT broker (a gateway's local one, say) accepts a client and, with `topic`, carries
//! a message: the probe subscribes, publishes a fresh token at QoS 1 and waits until the broker
//! delivers it back.
//!
//! Each check is its own short session (clean session, a client id unique to the check), closed
//! with DISCONNECT, so nothing stays on the broker. Latency is the connect (CONNACK) or, with a
//! topic, connect + round trip. TLS (`mqtts://`) verifies the broker against `ca_file`.
//! This is a separate client from the agent's own publishing connection: it probes a broker,
//! it never carries the agent's data.

use std::path::PathBuf;
use std::time::Instant;

use rand::Rng as _;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};
use serde::Deserialize;
use watchstand_shared::config::{Duration, MqttConfig, MqttConnector, MqttTlsConfig, Problems};

use super::{Check, Observation};

/// The wire name of this kind.
pub const KIND: &str = "mqtt";

/// Longest round-trip topic.
pub const MAX_TOPIC_LEN: usize = 256;

/// A `kind = "mqtt"` probe as written in TOML (its Debug output hides the password).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
    /// CA certificate(s) (PEM, absolute path) to verify the broker with `mqtts://`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// User name; set together with `password` or not at all.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// With a topic the probe publishes there and must receive the message back.
    #[serde(default)]
    pub topic: Option<String>,
    /// Up but slower than this is `degraded`.
    #[serde(default)]
    pub degraded_after: Option<Duration>,
}

impl std::fmt::Debug for MqttProbeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttProbeConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("topic", &self.topic)
            .field("degraded_after", &self.degraded_after)
            .finish()
    }
}

impl MqttProbeConfig {
    /// The connection settings in the shape the shared MQTT connector takes.
    fn mqtt(&self) -> MqttConfig {
        MqttConfig {
            url: self.url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            keep_alive: Duration::from_secs(30),
            tls: MqttTlsConfig {
                ca_file: self.ca_file.clone(),
                ..MqttTlsConfig::default()
            },
            ..MqttConfig::default()
        }
    }

    /// Resolves a relative `ca_file` against `base` (the config file's directory), as the
    /// `tls` kind does.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(path) = self.ca_file.as_mut().filter(|p| p.is_relative()) {
            *path = base.join(&*path);
        }
    }

    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        // The shared block's checks, their keys moved from `tls.ca_file` to this probe's keys.
        for e in self.mqtt().validate(key) {
            let sub = e.key.strip_prefix(key).unwrap_or(&e.key);
            let at = match sub {
                ".tls" | ".tls.ca_file" => format!("{key}.ca_file"),
                ".url" | ".username" => e.key.clone(),
                // Defaults of keys this probe does not have cannot be wrong.
                _ => continue,
            };
            let message = if sub == ".tls" {
                "needs an mqtts:// url (the url is plain mqtt://)".to_owned()
            } else {
                e.message
            };
            problems.push(at, message);
        }
        if let Some(topic) = &self.topic {
            if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic.contains(['+', '#', '\0']) {
                problems.push(
                    format!("{key}.topic"),
                    format!(
                        "topic {topic:?} must be 1-{MAX_TOPIC_LEN} bytes without wildcards (+, #)"
                    ),
                );
            }
        }
        if let Some(limit) = self.degraded_after {
            if limit.as_millis() == 0 {
                problems.push(format!("{key}.degraded_after"), "must be longer than 0s");
            } else if limit >= self.timeout {
                problems.push(
                    format!("{key}.degraded_after"),
                    format!("{limit} must be shorter than timeout {}", self.timeout),
                );
            }
        }
    }
}

/// A runnable MQTT probe.
#[derive(Debug)]
pub struct MqttProbe {
    id: String,
    url: String,
    connector: MqttConnector,
    topic: Option<String>,
    degraded_after: Option<std::time::Duration>,
}

impl MqttProbe {
    /// The runtime probe of a validated config (TLS files are read at each check, so a renewed
    /// CA is picked up).
    pub fn build(config: &MqttProbeConfig) -> Self {
        Self {
            id: config.id.clone(),
            url: config.url.clone(),
            connector: MqttConnector::new(config.mqtt()),
            topic: config.topic.clone(),
            degraded_after: config.degraded_after.map(|d| d.get()),
        }
    }

    /// Connects, round-trips when asked; `Err` carries the reason.
    async fn session(
        &self,
        client: &AsyncClient,
        events: &mut rumqttc::EventLoop,
    ) -> Result<(), String> {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
        let Some(topic) = &self.topic else {
            return Ok(());
        };
        let token = format!("watchstand probe {:016x}", rand::thread_rng().gen::<u64>());
        client
            .subscribe(topic.as_str(), QoS::AtLeastOnce)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        client
            .publish(
                topic.as_str(),
                QoS::AtLeastOnce,
                false,
                token.clone().into_bytes(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(ack)))
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
                {
                    return Err(format!("subscribe to {topic:?} refused by the broker"));
                }
                Ok(Event::Incoming(Packet::Publish(p)))
                    if p.topic == *topic && p.payload.as_ref() == token.as_bytes() =>
                {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(format!("round trip: {e}")),
            }
        }
    }
}

impl Check for MqttProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.url
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let client_id = format!(
            "watchstand-probe-{}-{:08x}",
            self.id,
            rand::thread_rng().gen::<u32>()
        );
        let options = match self.connector.options(&client_id, true, None) {
            Ok(o) => o,
            // The shared connector names the agent's keys; here they are this probe's.
            Err(e) => {
                return Observation::down(
                    start.elapsed(),
                    e.to_string().replace("mqtt.tls.", "").replace("mqtt.", ""),
                )
            }
        };
        let (client, mut events) = AsyncClient::new(options, 10);
        let outcome = self.session(&client, &mut events).await;
        let latency = start.elapsed();
        if outcome.is_ok() {
            // A clean goodbye; bounded so a broker that stops answering costs no more.
            if client.try_disconnect().is_ok() {
                let _sent = tokio::time::timeout(std::time::Duration::from_millis(200), async {
                    while events.poll().await.is_ok() {}
                })
                .await
                .is_ok();
            }
        }
        match outcome {
            Ok(()) => Observation::up(latency).with_threshold(self.degraded_after),
            Err(e) => Observation::down(latency, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::probe_problems;

    #[test]
    fn debug_output_hides_the_password() {
        let c: crate::probe::ProbeConfig = toml::from_str(
            "kind = \"mqtt\"\nid = \"b\"\nurl = \"mqtt://127.0.0.1:1883\"\ninterval = \"10s\"\ntimeout = \"2s\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let text = format!("{c:?} {:?}", crate::probe::Probe::build(&c).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let got = probe_problems(
            r#"
id = "broker"
kind = "mqtt"
url = "http://127.0.0.1:1883"
interval = "10s"
timeout = "2s"
username = "u"
topic = "a/+/b"
degraded_after = "3s"
"#,
        );
        assert_eq!(
            got,
            [
                "probes[id=\"broker\"].url: url \"http://127.0.0.1:1883\" is not mqtt://host:port or mqtts://host:port (scheme must be mqtt://, tcp:// or mqtts://)",
                "probes[id=\"broker\"].username: username and password must be set together",
                "probes[id=\"broker\"].topic: topic \"a/+/b\" must be 1-256 bytes without wildcards (+, #)",
                "probes[id=\"broker\"].degraded_after: 3s must be shorter than timeout 2s",
            ]
        );
        let got = probe_problems(
            "id = \"broker\"\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:8883\"\ninterval = \"10s\"\ntimeout = \"2s\"\n",
        );
        assert_eq!(
            got,
            ["probes[id=\"broker\"].ca_file: an mqtts:// url needs a CA file to verify the broker"]
        );
        let got = probe_problems(
            "id = \"broker\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\ninterval = \"10s\"\ntimeout = \"2s\"\nca_file = \"ca.pem\"\n",
        );
        assert_eq!(
            got,
            ["probes[id=\"broker\"].ca_file: needs an mqtts:// url (the url is plain mqtt://)",]
        );
    }
}
