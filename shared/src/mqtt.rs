//! The MQTT event-loop driver both binaries use: one task owns the rumqttc `EventLoop`, polls it
//! forever, waits with capped exponential backoff plus jitter after an error (rumqttc retries at
//! once otherwise: rumqtt issues #703, #918), forwards incoming publishes to a bounded channel,
//! and reports connection changes so the owner can (re)subscribe and (re)publish its birth.

use std::time::Duration;

use rumqttc::{Event, EventLoop, Incoming, Publish};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Backoff;

/// A change in the connection, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// CONNACK received; `session_present` tells whether the broker kept our session.
    Connected {
        /// The broker still had our persistent session (subscriptions, queued messages).
        session_present: bool,
    },
    /// The connection failed or dropped; the driver is backing off before reconnecting.
    Disconnected {
        /// The error, for logs and health.
        error: String,
    },
}

/// Drives one rumqttc `EventLoop`.
pub struct MqttDriver {
    eventloop: EventLoop,
    backoff: Backoff,
    publishes: mpsc::Sender<Publish>,
    connection: mpsc::UnboundedSender<ConnectionEvent>,
    name: &'static str,
}

impl MqttDriver {
    /// A driver that sends incoming publishes to `publishes` and connection events to
    /// `connection`. `name` labels its log lines (`agent`, `collector`).
    pub fn new(
        eventloop: EventLoop,
        backoff: Backoff,
        publishes: mpsc::Sender<Publish>,
        connection: mpsc::UnboundedSender<ConnectionEvent>,
        name: &'static str,
    ) -> Self {
        Self {
            eventloop,
            backoff,
            publishes,
            connection,
            name,
        }
    }

    fn report(&self, event: ConnectionEvent) {
        // The receiver gone means the owner is shutting down; there is nobody left to tell.
        if self.connection.send(event).is_err() {
            tracing::debug!(driver = self.name, "Connection event dropped: owner gone.");
        }
    }

    /// Polls until `shutdown` is cancelled. Keeps polling for `drain` after cancellation so that
    /// a final publish (offline status) and DISCONNECT go out.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) {
        let mut connected = false;
        // The last connect failure's text, so a repeated reason is logged once at warn level.
        let mut last_failure: Option<String> = None;
        loop {
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connected = true;
                    last_failure = None;
                    self.backoff.reset();
                    tracing::info!(
                        driver = self.name,
                        session_present = ack.session_present,
                        "MQTT connected."
                    );
                    self.report(ConnectionEvent::Connected {
                        session_present: ack.session_present,
                    });
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if self.publishes.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    let error = e.to_string();
                    if connected {
                        tracing::warn!(driver = self.name, error = %e, retry_in = ?delay, "MQTT connection lost.");
                    } else if last_failure.as_deref() != Some(error.as_str()) {
                        // A new reason (TLS handshake refused, bad credentials, broker down) is
                        // worth a warning; the same reason again at every retry is not.
                        tracing::warn!(driver = self.name, error = %e, retry_in = ?delay, "MQTT connect failed.");
                    } else {
                        tracing::debug!(driver = self.name, error = %e, retry_in = ?delay, "MQTT connect failed.");
                    }
                    last_failure = Some(error);
                    connected = false;
                    self.report(ConnectionEvent::Disconnected {
                        error: e.to_string(),
                    });
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if connected {
            // Let queued requests (offline status, DISCONNECT) reach the broker.
            let deadline = tokio::time::Instant::now() + drain;
            while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, self.eventloop.poll()).await
            {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        }
    }
}
