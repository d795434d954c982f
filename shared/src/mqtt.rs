//! The MQTT event-loop driver both binaries use: one task owns the rumqttc `EventLoop`, polls it
//! forever, waits with capped exponential backoff plus jitter after an error (rumqttc retries at
//! once otherwise: rumqtt issues #703, #918), hands incoming publishes to an [`Inbox`] bounded
//! by bytes, and reports connection changes so the owner can (re)subscribe and (re)publish its
//! birth.
//!
//! **Never stuck.** rumqttc reads the request channel (acks, publishes, DISCONNECT) only inside
//! `poll`, and only while its outgoing in-flight window has room; the window frees only when
//! `poll` reads the broker's PUBACKs, which arrive on the same socket behind the incoming
//! publishes. A driver that waited for room in the inbox while its consumer waited to queue an
//! ack or a publish was a circular wait (issue 10, point 0). The rule that breaks it: the
//! driver may wait for inbox credits (that is the back-pressure: the broker holds the rest), but
//! **a consumer never waits on the driver** — it queues acks and publishes with `try_*` and keeps
//! what does not fit for its next round, so it always comes back for more messages.
//!
//! **Clean stop.** The owner queues its last messages and DISCONNECT, then cancels the stop
//! token. The driver ends when it sees its DISCONNECT go out (the broker closing the socket
//! after it is expected, not a lost connection), when the connection fails while stopping (no
//! reconnect), or after the drain limit.

mod inbox;

pub use inbox::{inbox, Inbox, InboxClosed, InboxGauge, InboxLevel, InboxSender};

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
    publishes: InboxSender,
    connection: mpsc::UnboundedSender<ConnectionEvent>,
    name: &'static str,
    /// Since when rumqttc has held a packet-id collision (an outgoing publish whose id is still
    /// in flight), for [`MqttDriver::link_is_alive`].
    collision_since: Option<tokio::time::Instant>,
}

/// How long incoming traffic may keep a packet-id collision from timing out: a broker that
/// delivers but never acknowledges one of our publishes is still caught after this.
const COLLISION_PATIENCE: Duration = Duration::from_secs(60);

/// How long the driver waits for room in a full inbox before it hands a publish over past the
/// bound and polls again (see `InboxSender::push_within`).
const CREDIT_PATIENCE: Duration = Duration::from_millis(250);

/// Why a driver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverEnd {
    /// Its DISCONNECT went out.
    Disconnected,
    /// Stopped while not connected, or the connection ended while stopping.
    NotConnected,
    /// The drain limit passed before a DISCONNECT went out.
    DrainExpired,
    /// Every client handle is gone (rumqttc's `RequestsDone`).
    ClientsGone,
}

impl MqttDriver {
    /// A driver that hands incoming publishes to `publishes` and connection events to
    /// `connection`. `name` labels its log lines (`agent`, `collector`).
    pub fn new(
        eventloop: EventLoop,
        backoff: Backoff,
        publishes: InboxSender,
        connection: mpsc::UnboundedSender<ConnectionEvent>,
        name: &'static str,
    ) -> Self {
        Self {
            eventloop,
            backoff,
            publishes,
            connection,
            name,
            collision_since: None,
        }
    }

    fn report(&self, event: ConnectionEvent) {
        // The receiver gone means the owner is shutting down; there is nobody left to tell.
        if self.connection.send(event).is_err() {
            tracing::debug!(driver = self.name, "Connection event dropped: owner gone.");
        }
    }

    /// An incoming publish proves the link alive: clear rumqttc's "PINGRESP outstanding" flag.
    /// rumqttc pings every `keep_alive` whatever the traffic and drops the connection when the
    /// previous ping is still unanswered (`AwaitPingResp`). A broker that pushes a deep queue at
    /// us (Mosquitto 2.0.11 ignores its in-flight quota for a persistent session's backlog)
    /// queues its PINGRESP behind all of it, and with credit-based reading that answer can take
    /// longer than a keep-alive period — a healthy, busy link would be torn down and resumed
    /// every period. A link that delivers nothing between two pings still fails the check.
    ///
    /// The same holds for rumqttc's collision check (an outgoing publish whose packet id is
    /// still in flight waits for that id's PUBACK, and two pings without it end the
    /// connection): the PUBACK queues behind the backlog too. While publishes keep arriving, a
    /// collision may last up to [`COLLISION_PATIENCE`] before the check counts again.
    fn link_is_alive(
        eventloop: &mut EventLoop,
        collision_since: &mut Option<tokio::time::Instant>,
    ) {
        eventloop.state.await_pingresp = false;
        if eventloop.state.collision.is_none() {
            *collision_since = None;
            return;
        }
        let since = *collision_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < COLLISION_PATIENCE {
            eventloop.state.collision_ping_count = 0;
        }
    }

    /// Hands `p` to the consumer, waiting for room unless `stop` comes first. A message that
    /// cannot be handed over (stopping, or the consumer stopped after a store failure) stays
    /// unacknowledged: the broker redelivers it to the persistent session. Polling goes on
    /// regardless, so the owner's last publishes and DISCONNECT still go out.
    /// (A function of the inbox alone: the event loop is not `Sync`, so the future must not
    /// borrow the whole driver.)
    async fn hand_over(
        publishes: &InboxSender,
        name: &'static str,
        p: Publish,
        stop: &CancellationToken,
        consumer_gone: &mut bool,
    ) {
        let handed = if stop.is_cancelled() {
            publishes.try_push(p).is_ok()
        } else {
            tokio::select! {
                biased;
                () = stop.cancelled() => false,
                r = publishes.push_within(p, CREDIT_PATIENCE) => r.is_ok(),
            }
        };
        if !handed && !*consumer_gone {
            *consumer_gone = true;
            tracing::debug!(
                driver = name,
                "Incoming publishes left unacknowledged: their consumer stopped or is stopping."
            );
        }
    }

    /// Polls until stopped; see the module docs. After `stop` is cancelled it polls for at most
    /// `drain` so that queued requests (offline status, DISCONNECT) go out.
    pub async fn run(mut self, stop: CancellationToken, drain: Duration) -> DriverEnd {
        let mut connected = false;
        let mut consumer_gone = false;
        // The last connect failure's text, so a repeated reason is logged once at warn level.
        let mut last_failure: Option<String> = None;
        let end = loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => break None,
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
                    Self::link_is_alive(&mut self.eventloop, &mut self.collision_since);
                    Self::hand_over(&self.publishes, self.name, p, &stop, &mut consumer_gone).await;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    break Some(DriverEnd::Disconnected);
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break Some(DriverEnd::ClientsGone),
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    if stop.is_cancelled() {
                        break Some(DriverEnd::NotConnected);
                    }
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
                        () = stop.cancelled() => break Some(DriverEnd::NotConnected),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        if let Some(end) = end {
            tracing::debug!(driver = self.name, ?end, "MQTT driver ended.");
            return end;
        }
        if !connected {
            return DriverEnd::NotConnected;
        }
        // Stopping while connected: let queued requests (offline status, DISCONNECT) reach the
        // broker, taking incoming publishes meanwhile, never reconnecting.
        let deadline = tokio::time::Instant::now() + drain;
        let end = loop {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Err(_) => break DriverEnd::DrainExpired,
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => {
                    break DriverEnd::Disconnected
                }
                Ok(Ok(Event::Incoming(Incoming::Publish(p)))) => {
                    Self::link_is_alive(&mut self.eventloop, &mut self.collision_since);
                    Self::hand_over(&self.publishes, self.name, p, &stop, &mut consumer_gone).await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(driver = self.name, error = %e, "MQTT connection ended while stopping.");
                    break DriverEnd::NotConnected;
                }
            }
        };
        tracing::debug!(driver = self.name, ?end, "MQTT driver ended.");
        end
    }
}
