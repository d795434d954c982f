//! The agent's MQTT side: the last stage of probe → scheduler → outbox → publisher → **mqtt**.
//!
//! One driver task (the shared [`MqttDriver`]) owns the rumqttc `EventLoop` and reconnects with
//! capped exponential backoff plus jitter. This module's [`MqttLink`] task reacts to what the
//! driver reports:
//! - on every CONNACK it subscribes to the agent's own `/ack` topic (QoS 1) and publishes the
//!   retained birth `Status` (online, probe inventory, intervals, version), then tells the
//!   publisher through a `watch` of [`LinkState`] (a new `epoch` means "re-send from the
//!   watermark");
//! - incoming `Ack`s for this site and agent trim the outbox (other payloads are counted and
//!   ignored);
//! - it also subscribes to every collector's retained `_collector/+/state` and keeps the
//!   [`Presence`] the publisher re-sends by (see `collectors.rs`); connected for a few seconds
//!   with no collector online, it warns, naming the broker URL and topic root;
//! - with `[commands]` it also subscribes to the agent's own `cmd` topic and hands those
//!   payloads to the actions task (`actions/`);
//! - the broker publishes the retained `offline` last will if the agent vanishes; on orderly
//!   shutdown the agent publishes it itself and then disconnects.
//!
//! `clean_session = true`: the outbox, not the broker session, is what makes delivery durable;
//! in-flight messages lost with a session are re-sent from the watermark.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, LastWill, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use watchstand_shared::config::{Backoff, MqttConnectError, MqttConnector};
use watchstand_shared::mqtt::{ConnectionEvent, Inbox, MqttDriver};
use watchstand_shared::time::now_ms;
use watchstand_shared::topic::{Channel, TopicLayout};
use watchstand_shared::wire::v1::{decode, encode, Ack, AgentState, Status, VERSION};

use crate::collectors::{Collectors, NoCollectorAlarm, Presence};
use crate::config::ValidatedAgentConfig;
use crate::events::{self, AckIgnoreReason};
use crate::outbox::{AckOutcome, Outbox};

/// How long shutdown keeps the event loop running for the offline status and DISCONNECT.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The connection as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// Connected now.
    pub connected: bool,
    /// Connections made since start; a new value means a new session.
    pub epoch: u64,
}

/// Why the MQTT side could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// The `[mqtt]` block cannot become client options.
    #[error("mqtt: {0}")]
    Connect(#[from] MqttConnectError),
}

/// The birth message of this agent.
pub fn birth_status(config: &ValidatedAgentConfig, boot: &str) -> Status {
    Status {
        v: VERSION,
        site: config.site.clone(),
        agent: config.agent_id.clone(),
        boot: boot.to_owned(),
        state: AgentState::Online,
        at_ms: Some(now_ms()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        probes: config.probes.iter().map(|p| p.inventory()).collect(),
        capacity_interval_ms: Some(
            u64::try_from(config.capacity_interval.as_millis()).unwrap_or(u64::MAX),
        ),
    }
}

/// The offline status (last will, and the orderly-shutdown message).
pub fn offline_status(config: &ValidatedAgentConfig, boot: &str) -> Status {
    Status {
        v: VERSION,
        site: config.site.clone(),
        agent: config.agent_id.clone(),
        boot: boot.to_owned(),
        state: AgentState::Offline,
        at_ms: Some(now_ms()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        probes: Vec::new(),
        capacity_interval_ms: None,
    }
}

/// The agent's MQTT task; see the module docs.
pub struct MqttLink {
    driver: MqttDriver,
    publishes: Inbox,
    connection: mpsc::UnboundedReceiver<ConnectionEvent>,
    state: LinkTask,
}

/// What the task keeps besides the driver and its channels.
struct LinkTask {
    client: AsyncClient,
    link: watch::Sender<LinkState>,
    outbox: Arc<Outbox>,
    site: String,
    agent: String,
    status_topic: String,
    ack_topic: String,
    /// Birth status; `at_ms` is refreshed on each connect.
    birth: Status,
    offline: Status,
    max_packet_size: usize,
    topics: TopicLayout,
    broker_url: String,
    /// Collector states seen on this connection, and their summary for the publisher.
    collectors: Collectors,
    presence: watch::Sender<Presence>,
    no_collector: NoCollectorAlarm,
    /// With `[commands]`: the agent's `cmd` topic and the commands task's queue.
    commands: Option<(String, mpsc::Sender<Vec<u8>>)>,
}

impl std::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLink")
            .field("status_topic", &self.state.status_topic)
            .finish_non_exhaustive()
    }
}

impl MqttLink {
    /// Builds the client (with the retained offline last will), the driver and the link state
    /// channel. Nothing connects until [`MqttLink::run`].
    ///
    /// # Errors
    /// The `[mqtt]` block cannot become client options.
    pub fn build(
        config: &ValidatedAgentConfig,
        boot: &str,
        outbox: Arc<Outbox>,
    ) -> Result<(Self, AsyncClient, watch::Receiver<LinkState>), MqttError> {
        let topics = config.topics();
        let status_topic = topics.agent(&config.site, &config.agent_id, Channel::Status);
        let ack_topic = topics.agent(&config.site, &config.agent_id, Channel::Ack);
        let offline = offline_status(config, boot);
        let will = LastWill::new(
            status_topic.clone(),
            encode(&offline),
            QoS::AtLeastOnce,
            true,
        );
        let options = MqttConnector::new(config.mqtt.clone()).options(
            &config.default_client_id(),
            true,
            Some(will),
        )?;
        let (client, eventloop) =
            AsyncClient::new(options.clone(), options.request_channel_capacity());
        let (publish_tx, publishes) = watchstand_shared::mqtt::inbox(
            config.mqtt.inbox_max_bytes,
            config.mqtt.inbox_max_messages,
        );
        let (connection_tx, connection) = mpsc::unbounded_channel();
        let backoff = Backoff::new(
            config.mqtt.reconnect_min.get(),
            config.mqtt.reconnect_max.get(),
        );
        let driver = MqttDriver::new(eventloop, backoff, publish_tx, connection_tx, "agent");
        let (link, link_rx) = watch::channel(LinkState::default());
        let (presence, _) = watch::channel(Presence::Unknown);
        Ok((
            Self {
                driver,
                publishes,
                connection,
                state: LinkTask {
                    client: client.clone(),
                    link,
                    outbox,
                    site: config.site.clone(),
                    agent: config.agent_id.clone(),
                    status_topic,
                    ack_topic,
                    birth: birth_status(config, boot),
                    offline,
                    max_packet_size: config.mqtt.max_packet_size,
                    topics,
                    broker_url: config.mqtt.url.clone(),
                    collectors: Collectors::default(),
                    presence,
                    no_collector: NoCollectorAlarm::default(),
                    commands: None,
                },
            },
            client,
            link_rx,
        ))
    }

    /// Subscribes to the agent's `cmd` topic on every connect and hands its payloads to
    /// `commands` (the actions task, which never waits on the MQTT driver, so waiting for room
    /// in its queue here cannot close a circle).
    pub fn with_commands(mut self, commands: mpsc::Sender<Vec<u8>>) -> Self {
        let topic = self
            .state
            .topics
            .agent(&self.state.site, &self.state.agent, Channel::Cmd);
        self.state.commands = Some((topic, commands));
        self
    }

    /// What is known about collectors on the broker, for the publisher and health.
    pub fn presence(&self) -> watch::Receiver<Presence> {
        self.state.presence.subscribe()
    }

    /// Runs until `shutdown`, then publishes the retained offline status, disconnects, and lets
    /// the driver drain for at most [`DRAIN`].
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            driver,
            mut publishes,
            mut connection,
            state: mut link,
        } = self;
        let driver_stop = CancellationToken::new();
        let mut driver_task = tokio::spawn(driver.run(driver_stop.clone(), DRAIN));
        loop {
            let alarm_due = link.no_collector.due();
            let alarm = async move {
                match alarm_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(event) = connection.recv() => match event {
                    ConnectionEvent::Connected { .. } => link.on_connected(),
                    ConnectionEvent::Disconnected { error } => {
                        if link.link.borrow().connected {
                            link.link.send_modify(|l| l.connected = false);
                        }
                        // The next connection gets the retained states again.
                        link.collectors.clear();
                        link.presence.send_replace(Presence::Unknown);
                        events::MqttDisconnected { error: &error }.emit();
                    }
                },
                Some(publish) = publishes.recv() => match &link.commands {
                    Some((topic, queue)) if publish.topic == topic.as_str() => {
                        // Only when the actions task has stopped (shutdown) does this fail.
                        let _stopped = queue.send(publish.payload.to_vec()).await.is_err();
                    }
                    _ => link.on_publish(&publish),
                },
                () = alarm => {}
                _ = &mut driver_task => {
                    tracing::error!("MQTT driver stopped unexpectedly; nothing more is published.");
                    link.link.send_modify(|l| l.connected = false);
                    shutdown.cancelled().await;
                    return;
                }
            }
            link.check_collectors();
        }
        if link.link.borrow().connected {
            link.offline.at_ms = Some(now_ms());
            let queued = link
                .client
                .try_publish(
                    link.status_topic.as_str(),
                    QoS::AtLeastOnce,
                    true,
                    encode(&link.offline),
                )
                .and_then(|()| link.client.try_disconnect());
            if let Err(e) = queued {
                tracing::warn!(error = %e, "Offline status or disconnect not queued.");
            }
        }
        driver_stop.cancel();
        // The driver no longer hands publishes over while stopping (nobody waits on this task):
        // it ends once the DISCONNECT went out, the connection ended, or the drain limit passed.
        if let Err(e) = driver_task.await {
            tracing::warn!(error = %e, "MQTT driver task failed.");
        }
        link.link.send_modify(|l| l.connected = false);
        tracing::info!("Agent disconnected from the broker.");
    }
}

impl LinkTask {
    fn on_connected(&mut self) {
        // try_* because this task must never wait on the request channel: the driver may be
        // blocked handing us an incoming publish at the same moment.
        if let Err(e) = self
            .client
            .try_subscribe(self.ack_topic.as_str(), QoS::AtLeastOnce)
        {
            tracing::warn!(error = %e, topic = %self.ack_topic, "Subscribe to acks not queued.");
        }
        if let Some((topic, _)) = &self.commands {
            if let Err(e) = self.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                tracing::warn!(error = %e, topic = %topic, "Subscribe to commands not queued.");
            }
        }
        let states = self.topics.all_collector_states();
        if let Err(e) = self.client.try_subscribe(states.as_str(), QoS::AtLeastOnce) {
            tracing::warn!(error = %e, topic = %states, "Subscribe to collector states not queued.");
        }
        self.birth.at_ms = Some(now_ms());
        if let Err(e) = self.client.try_publish(
            self.status_topic.as_str(),
            QoS::AtLeastOnce,
            true,
            encode(&self.birth),
        ) {
            tracing::warn!(error = %e, "Birth status not queued.");
        }
        let epoch = self.link.borrow().epoch + 1;
        self.link.send_replace(LinkState {
            connected: true,
            epoch,
        });
        events::MqttConnected { epoch }.emit();
    }

    /// Warns when connected without a collector online for [`NO_COLLECTOR_GRACE`](crate::collectors::NO_COLLECTOR_GRACE).
    fn check_collectors(&mut self) {
        let connected = self.link.borrow().connected;
        let presence = self.collectors.presence();
        if self
            .no_collector
            .update(connected, presence, tokio::time::Instant::now())
        {
            events::NoCollectorOnline {
                broker: &self.broker_url,
                topic_root: self.topics.root(),
                topic: &self.topics.all_collector_states(),
                offline: &self.collectors.offline(),
            }
            .emit();
        }
    }

    /// A message on a collector's state topic.
    fn on_collector_state(&mut self, id: &str, payload: &[u8]) {
        match self.collectors.apply(id, payload) {
            Ok(true) => {
                let presence = self.collectors.presence();
                let was = self.presence.send_replace(presence);
                if presence == Presence::Online && was != Presence::Online {
                    events::CollectorOnline { id }.emit();
                }
                tracing::debug!(collector = id, ?presence, "Collector state changed.");
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(collector = id, error = %e, "Collector state ignored."),
        }
    }

    fn on_publish(&mut self, publish: &Publish) {
        if let Some(id) = self.topics.parse_collector_state(&publish.topic) {
            let id = id.to_owned();
            self.on_collector_state(&id, &publish.payload);
            return;
        }
        if publish.topic != self.ack_topic {
            tracing::debug!(topic = %publish.topic, "Unexpected publish ignored.");
            return;
        }
        if publish.payload.is_empty() {
            // A cleared retained message, not an ack.
            return;
        }
        let ack: Ack = match decode(&publish.payload, self.max_packet_size, now_ms()) {
            Ok(a) => a,
            Err(e) => {
                events::AckIgnored {
                    reason: AckIgnoreReason::Invalid,
                    detail: &e.to_string(),
                }
                .emit();
                return;
            }
        };
        if ack.site != self.site || ack.agent != self.agent {
            events::AckIgnored {
                reason: AckIgnoreReason::NotForUs,
                detail: &format!("ack for {}/{}", ack.site, ack.agent),
            }
            .emit();
            return;
        }
        match self.outbox.apply_ack(&ack.boot, ack.seq) {
            Ok(AckOutcome::Trimmed { removed, .. }) => {
                tracing::debug!(boot = %ack.boot, seq = ack.seq, removed, "Ack applied.");
            }
            Ok(AckOutcome::Stale) => {}
            Ok(AckOutcome::UnknownBoot) => events::AckIgnored {
                reason: AckIgnoreReason::UnknownBoot,
                detail: &ack.boot,
            }
            .emit(),
            // During a store-failing episode the outbox counts it and logged it once.
            Err(_) if self.outbox.is_store_failing() => {}
            Err(e) => events::StorageFailed {
                op: "trim",
                error: &e,
            }
            .emit(),
        }
    }
}
