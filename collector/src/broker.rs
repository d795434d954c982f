//! The embedded MQTT broker (rumqttd) for a quick start: first stage of the collector's flow
//! (broker → ingest → store → SLA → API).
//!
//! rumqttd logs and carries on when its port is taken, and keeps nothing on disk, so this module
//! adds what an operator needs: the port is checked before start (taken → a clear start-up
//! error), readiness is proven with a real MQTT connect, and nothing else in the collector
//! depends on it being this broker rather than Mosquitto, EMQX or HiveMQ.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};
use thiserror::Error;

/// Why the embedded broker did not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The listen address is in use or not bindable.
    // The OS error is part of the message, not a `source`: printed once, not twice.
    #[error("embedded broker cannot listen on {addr} (broker.listen): {error} ({hint})", hint = crate::config::ports::BROKER_HINT)]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The bind error.
        error: std::io::Error,
    },
    /// The broker thread could not be spawned.
    #[error("embedded broker thread: {0}")]
    Thread(std::io::Error),
    /// It did not accept an MQTT connection in time.
    #[error("embedded broker on {addr} did not accept an MQTT connection within {waited:?}: {last_error}")]
    NotReady {
        /// The address.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// The last connect error.
        last_error: String,
    },
}

/// Settings of the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    /// Where to listen (loopback unless told otherwise).
    pub listen: SocketAddr,
    /// Largest payload accepted from a client, bytes.
    pub max_payload_bytes: usize,
    /// QoS 1 messages in flight per connection.
    pub max_inflight: usize,
}

/// A running embedded broker. It runs on its own threads until the process exits: rumqttd has
/// no stop handle, which is acceptable because it lives exactly as long as the collector.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL for an `[mqtt]` block.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Starts the broker and waits until a real MQTT connect succeeds.
    ///
    /// # Errors
    /// The port is taken, the thread cannot start, or the broker never accepts a connection.
    pub async fn start(config: &EmbeddedBrokerConfig) -> Result<Self, BrokerError> {
        let addr = config.listen;
        // rumqttd reports success even when its listener fails to bind, so bind first ourselves
        // to turn a taken port into an error that names it.
        let probe = TcpListener::bind(addr).map_err(|error| BrokerError::Bind { addr, error })?;
        let addr = probe
            .local_addr()
            .map_err(|error| BrokerError::Bind { addr, error })?;
        drop(probe);

        let broker_config = rumqttd_config(addr, config);
        std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(broker_config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "Embedded broker stopped.");
                }
            })
            .map_err(BrokerError::Thread)?;

        wait_ready(addr, Duration::from_secs(10)).await?;
        tracing::info!(%addr, "Embedded broker ready.");
        Ok(Self { addr })
    }
}

fn rumqttd_config(addr: SocketAddr, config: &EmbeddedBrokerConfig) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}

/// Connects with a throwaway client until a CONNACK arrives or `limit` passes.
async fn wait_ready(addr: SocketAddr, limit: Duration) -> Result<(), BrokerError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = String::from("no attempt");
    while tokio::time::Instant::now() < deadline {
        let mut options = MqttOptions::new(
            format!("watchstand-readiness-{}", std::process::id()),
            addr.ip().to_string(),
            addr.port(),
        );
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 4);
        match tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => {
                // Best effort: the connection is dropped with the event loop either way.
                if let Err(e) = client.try_disconnect() {
                    tracing::debug!(error = %e, "Readiness client disconnect failed.");
                }
                return Ok(());
            }
            Ok(Ok(other)) => last_error = format!("unexpected {other:?}"),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "connect timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BrokerError::NotReady {
        addr,
        waited: limit,
        last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: SocketAddr) -> EmbeddedBrokerConfig {
        EmbeddedBrokerConfig {
            listen,
            max_payload_bytes: 256 * 1024,
            max_inflight: 100,
        }
    }

    #[tokio::test]
    async fn embedded_broker_accepts_a_real_mqtt_connect() {
        let broker = EmbeddedBroker::start(&config("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        assert_ne!(broker.addr().port(), 0);
        wait_ready(broker.addr(), Duration::from_secs(2))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_startup_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = EmbeddedBroker::start(&config(addr)).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("embedded broker cannot listen"), "{text}");
    }
}
