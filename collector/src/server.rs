//! `serve`: wires the collector together and runs it until told to stop.
//!
//! Start order: store (sled lock: one collector per data dir) → embedded broker (if configured)
//! → HTTP listener (so a taken port fails before anything connects) → MQTT client with a
//! persistent session, manual acks and a retained last will on the collector state topic →
//! ingest (with a state watch that hands probe state changes to the engine task), rollups, the
//! engine task (incident decisions) and the notifier, API.
//!
//! Stop order (on the shutdown token): stop the API, stop ingest (messages not yet stored stay
//! unacknowledged and the broker redelivers them to the persistent session), final rollup pass,
//! publish the retained offline state, disconnect — the MQTT driver ends when its DISCONNECT
//! went out, so nothing reconnects during the stop — flush the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use watchstand_shared::config::{Backoff, MqttConnector};
use watchstand_shared::mqtt::{ConnectionEvent, MqttDriver};

use crate::health::HealthState;
use watchstand_shared::time::now_ms;
use watchstand_shared::topic::TopicLayout;
use watchstand_shared::wire::v1::{CollectorState, CollectorStatus};

use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::broker::{EmbeddedBroker, EmbeddedBrokerConfig};
use crate::config::{BrokerMode, CollectorConfig};
use crate::engine::{self, BrokerEvent, EngineDeps, EngineHandle, EngineSnapshot};
use crate::events::Counters;
use crate::incident::{self, engine::Engine, record::IncidentStore};
use crate::ingest::{self, Ingest, IngestConfig};
use crate::registry::{AgentRecord, Registry};
use crate::rollup::{self, Retention};
use crate::runbook::agent_action::CommandLink;
use crate::store::{trees, Store, StoreError};

/// How often dirty rollup buckets are recomputed.
pub const ROLLUP_EVERY: Duration = Duration::from_secs(5);
/// How often due webhook notifications are sent.
const NOTIFY_EVERY: Duration = Duration::from_millis(500);
/// How long the MQTT driver may drain (offline state, DISCONNECT) at shutdown; it ends as soon
/// as its DISCONNECT went out.
const MQTT_DRAIN: Duration = Duration::from_secs(2);
/// How long the stop waits to queue the offline state and DISCONNECT (the driver keeps polling,
/// so this only runs out when the request channel is full while the broker is away).
const MQTT_QUEUE_LIMIT: Duration = Duration::from_millis(500);
/// The collector's MQTT socket receive buffer, bytes.
const MQTT_RECV_BUFFER: u32 = 256 * 1024;
/// Bytes a packet may carry beyond the payload limit (topic, headers) at the embedded broker.
const PACKET_HEADROOM: usize = 64 * 1024;

/// The retained payload of `watchstand/v1/_collector/{id}/state` (the shared wire type agents
/// read to know a collector is online).
fn state_payload(id: &str, state: CollectorState) -> Vec<u8> {
    CollectorStatus::new(id, state, now_ms()).encode()
}

/// A started collector.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// The broker URL the collector (and local agents) use.
    pub broker_url: String,
    /// Ends when the collector has stopped (after the shutdown token is cancelled) or failed.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Starts the collector; returns once the store is open, the broker (if embedded) accepts
/// connections and the API listens.
///
/// # Errors
/// The store cannot be opened (held by another collector, damaged, disk full), the broker or API port is taken,
/// or the MQTT options are invalid.
pub async fn start(
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    // `validate` already refuses this; a config built in code must not slip past it.
    if config.api.is_open() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "[api]: no tokens configured while collector.listen {} is not a loopback address; \
             add [[api.tokens]] (watchstand-collector token create) or listen on 127.0.0.1",
            config.listen
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let store = {
        let dir = config.data_dir.clone();
        let cache_bytes = config.store_cache_bytes;
        let opened = tokio::task::spawn_blocking(move || Store::open_with_cache(&dir, cache_bytes))
            .await
            .context("store open task failed")?;
        // The "another collector" hint only when the lock really is held: a full disk or a
        // damaged store must not send the operator hunting for a second process.
        let hint = match &opened {
            Err(StoreError::Storage(e)) if e.is_locked() => {
                " (is another collector using this data_dir?)"
            }
            _ => "",
        };
        opened.with_context(|| {
            format!(
                "cannot open the store in {}{hint}",
                config.data_dir.display()
            )
        })?
    };

    let mut mqtt = config.mqtt.clone();
    if let BrokerMode::Embedded { listen } = config.broker {
        let broker = EmbeddedBroker::start(&EmbeddedBrokerConfig {
            listen,
            // Headroom so an oversized payload reaches ingest and is counted as `too_large`
            // instead of silently disconnecting its sender.
            max_payload_bytes: config.max_payload_bytes + PACKET_HEADROOM,
            max_inflight: usize::from(mqtt.inflight),
        })
        .await?;
        mqtt.url = broker.url();
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the API on {} (collector.listen; {})",
                config.listen,
                crate::config::ports::API_HINT
            )
        })?;
    let api_addr = listener.local_addr().context("API listener address")?;
    let tls = config.api.tls.as_ref().map(api::tls::load).transpose()?;

    let layout = TopicLayout::new(&mqtt.topic_root);
    let state_topic = layout.collector_state(&config.id);
    let will = LastWill::new(
        state_topic.clone(),
        state_payload(&config.id, CollectorState::Offline),
        QoS::AtLeastOnce,
        true,
    );
    let mut options = MqttConnector::new(mqtt.clone())
        .options(
            &format!("watchstand-collector-{}", config.id),
            false,
            Some(will),
        )
        .context("[mqtt]")?;
    options.set_manual_acks(true);
    // Incoming packets larger than the client accepts would disconnect it, and a persistent
    // session would redeliver the same packet forever: accept more than any broker in front of
    // us lets through, and let ingest reject it by size.
    options.set_max_packet_size(
        config.max_payload_bytes.max(mqtt.max_packet_size) + 2 * PACKET_HEADROOM,
        mqtt.max_packet_size,
    );
    let (client, mut eventloop) =
        AsyncClient::new(options.clone(), options.request_channel_capacity());
    // A small socket receive buffer: the broker's PUBACKs and PINGRESPs queue behind the
    // incoming publishes, so what the kernel may buffer beyond the inbox must stay small too.
    let mut network = eventloop.network_options();
    network.set_tcp_recv_buffer_size(MQTT_RECV_BUFFER);
    eventloop.set_network_options(network);
    // Bounded by bytes: when full the driver stops reading and the broker holds the rest. Safe
    // because ingest never waits on the driver (its acks go out with try_*).
    let (publish_tx, inbox) =
        watchstand_shared::mqtt::inbox(mqtt.inbox_max_bytes, mqtt.inbox_max_messages);
    let health = Arc::new(HealthState::new(
        inbox.gauge(),
        config.ingest_stall_after.as_millis(),
    ));
    let (connection_tx, connection) = mpsc::unbounded_channel();
    let driver = MqttDriver::new(
        eventloop,
        Backoff::new(mqtt.reconnect_min.get(), mqtt.reconnect_max.get()),
        publish_tx,
        connection_tx,
        "collector",
    );

    let records = store
        .load_all::<AgentRecord>(trees::AGENTS)
        .context("loading the agent registry")?
        .into_iter()
        .map(|(_, r)| r);
    let registry = Arc::new(Registry::new(records));
    let counters = Arc::new(Counters::default());
    let ingest = Ingest::new(
        IngestConfig {
            layout: layout.clone(),
            max_payload_bytes: config.max_payload_bytes,
            batch_max: config.ingest_batch_max,
            batch_max_bytes: config.ingest_batch_max_bytes,
        },
        store.clone(),
        client.clone(),
        inbox,
        registry.clone(),
        counters.clone(),
        health.clone(),
    )?;
    let catalogue = Arc::new(config.catalogue.clone());
    let incident_store = IncidentStore::new(store.clone());
    let incidents = Engine::load(
        incident_store.clone(),
        config.incidents.clone(),
        config.incident_policies.clone(),
        config.webhooks.clone(),
    )
    .context("loading incidents")?;
    let (engine, mut engine_inbox) = engine::channel(EngineSnapshot::of(&incidents, 0, None));
    engine_inbox
        .load_runbooks(&config.runbooks, &store)
        .context("loading runbook runs")?;
    engine_inbox
        .load_drills(&config.drills, &store)
        .context("loading drill runs")?;
    let answers = config.commands.key_file.is_some();
    if let Some(key) = config.commands.load_key()? {
        tracing::info!(key_id = %key.public().key_id(), "Runbook agent actions are signed with this key.");
        engine_inbox.set_command_link(CommandLink::new(
            key,
            client.clone(),
            layout.clone(),
            config.commands.resend_every,
        ));
    }
    let ingest = ingest
        .with_state_watch(incident::trigger::StateWatch::new(
            &catalogue,
            engine.clone(),
        ))
        .with_command_answers(engine.clone());
    let capacity_retention = crate::capacity::rollup::Retention {
        raw_ms: config.raw_retention.as_millis(),
        five_minutes_ms: config.capacity.five_minute_retention_ms,
        hours_ms: config.capacity.hourly_retention_ms,
    };
    let capacity_ctx = Arc::new(crate::capacity::report::CapacityContext {
        settings: config.capacity.clone(),
        retention: capacity_retention,
    });
    engine_inbox.watch_capacity(capacity_ctx.clone());
    let (notifier_wake, notifier_wakeups) = incident::notify::wake_channel();
    let app = api::router(AppState {
        store: store.clone(),
        catalogue: catalogue.clone(),
        registry: registry.clone(),
        counters,
        collector_id: config.id.clone(),
        started_ms: now_ms(),
        incidents: engine.clone(),
        runbooks: Arc::new(config.runbooks.clone()),
        drills: Arc::new(config.drills.clone()),
        health: health.clone(),
        access: Arc::new(config.api.clone()),
        audit: AuditLog::new(store.clone()),
        capacity: capacity_ctx,
    });

    tracing::info!(
        id = %config.id,
        api = %api_addr,
        broker = %mqtt.url,
        data_dir = %config.data_dir.display(),
        services = config.catalogue.services.len(),
        api_tokens = config.api.tokens.len(),
        api_tls = config.api.tls.is_some(),
        "Collector started."
    );
    let broker_url = mqtt.url.clone();
    let task = tokio::spawn(async move {
        let driver_stop = CancellationToken::new();
        let ingest_stop = CancellationToken::new();
        let rollup_stop = CancellationToken::new();
        let driver = tokio::spawn(driver.run(driver_stop.clone(), MQTT_DRAIN));
        let session = tokio::spawn(keep_session(
            client.clone(),
            Subscriptions { layout, answers },
            state_topic.clone(),
            config.id.clone(),
            connection,
            engine,
            health.clone(),
        ));
        let watchdog_stop = CancellationToken::new();
        let watchdog = tokio::spawn(crate::health::watchdog::run(health, watchdog_stop.clone()));
        let mut ingest = tokio::spawn(ingest.run(ingest_stop.clone()));
        let rollups = tokio::spawn(rollup::run(
            store.clone(),
            Retention {
                raw_ms: config.raw_retention.as_millis(),
                rollup_ms: config.rollup_retention.as_millis(),
            },
            ROLLUP_EVERY,
            rollup_stop.clone(),
        ));
        let capacity_rollups = tokio::spawn(crate::capacity::rollup::run(
            store.clone(),
            capacity_retention,
            ROLLUP_EVERY,
            rollup_stop.clone(),
        ));
        let incidents_stop = CancellationToken::new();
        let evaluator = tokio::spawn(engine::run(
            engine_inbox,
            incidents,
            EngineDeps {
                store: store.clone(),
                catalogue,
                registry,
                notifier: notifier_wake,
                first_tick: Duration::ZERO,
            },
            incidents_stop.clone(),
        ));
        let notifier = tokio::spawn(incident::notify::run(
            incident_store,
            config.webhooks.clone(),
            NOTIFY_EVERY,
            notifier_wakeups,
            incidents_stop.clone(),
        ));
        let api_stop = shutdown.clone();
        let api = tokio::spawn(async move {
            let stopped = async move { api_stop.cancelled().await };
            match tls {
                Some(acceptor) => {
                    axum::serve(api::tls::TlsListener::new(listener, acceptor)?, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
            }
        });

        // Run until asked to stop, or until ingest fails (a store failure: stop loudly rather
        // than acknowledge what is not stored).
        let ingest_outcome = tokio::select! {
            () = shutdown.cancelled() => None,
            r = &mut ingest => Some(r),
        };
        tracing::info!("Collector stopping.");
        shutdown.cancel();
        ingest_stop.cancel();
        let ingest_outcome = match ingest_outcome {
            Some(r) => r,
            None => ingest.await,
        };
        incidents_stop.cancel();
        for (name, task) in [("engine", evaluator), ("notifier", notifier)] {
            if let Err(e) = task.await {
                tracing::warn!(task = name, error = %e, "Task failed at shutdown.");
            }
        }
        rollup_stop.cancel();
        if let Err(e) = rollups.await {
            tracing::warn!(error = %e, "Rollup task failed at shutdown.");
        }
        if let Err(e) = capacity_rollups.await {
            tracing::warn!(error = %e, "Capacity rollup task failed at shutdown.");
        }
        session.abort();
        watchdog_stop.cancel();
        let queued = tokio::time::timeout(MQTT_QUEUE_LIMIT, async {
            client
                .publish(
                    state_topic,
                    QoS::AtLeastOnce,
                    true,
                    state_payload(&config.id, CollectorState::Offline),
                )
                .await?;
            client.disconnect().await
        })
        .await;
        match queued {
            Ok(Ok(())) => {}
            // The broker's last will announces the offline state instead.
            Ok(Err(e)) => tracing::debug!(error = %e, "Offline state or DISCONNECT not queued."),
            Err(_) => tracing::debug!("Offline state or DISCONNECT not queued in time."),
        }
        driver_stop.cancel();
        match driver.await {
            Ok(end) => tracing::debug!(?end, "MQTT driver ended."),
            Err(e) => tracing::warn!(error = %e, "MQTT driver task failed."),
        }
        if let Err(e) = watchdog.await {
            tracing::warn!(error = %e, "Watchdog task failed at shutdown.");
        }
        match api.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "API server error."),
            Err(e) => tracing::warn!(error = %e, "API task failed."),
        }
        let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::error!("Final store flush failed.");
        }
        tracing::info!("Collector stopped.");
        ingest_outcome.context("ingest task")?
    });
    Ok(Running {
        api_addr,
        broker_url,
        task,
    })
}

/// What the session subscribes to: the agents' channels under `layout`, and `cmd/ack` when
/// `answers`.
struct Subscriptions {
    layout: TopicLayout,
    answers: bool,
}

/// On every (re)connect: subscribe to the ingest channels (and `cmd/ack` when `answers`: the
/// collector signs commands) and publish the retained online state.
/// Subscribing again on a kept session is harmless and covers a broker that lost it. Connects
/// and disconnects are told to the engine task (agent silence counts only while connected).
async fn keep_session(
    client: AsyncClient,
    subscriptions: Subscriptions,
    state_topic: String,
    id: String,
    mut connection: mpsc::UnboundedReceiver<ConnectionEvent>,
    engine: EngineHandle,
    health: Arc<HealthState>,
) {
    while let Some(event) = connection.recv().await {
        match event {
            ConnectionEvent::Connected { session_present } => {
                let at_ms = now_ms();
                health.broker(true, None);
                tracing::info!(session_present, "Collector connected to the broker.");
                let outcome = async {
                    ingest::subscribe(&client, &subscriptions.layout, subscriptions.answers)
                        .await?;
                    client
                        .publish(
                            state_topic.clone(),
                            QoS::AtLeastOnce,
                            true,
                            state_payload(&id, CollectorState::Online),
                        )
                        .await
                }
                .await;
                // After the subscriptions are queued: a busy engine never delays them.
                engine.broker(BrokerEvent::Connected { at_ms }).await;
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "Could not queue subscriptions; the client is closing.");
                    return;
                }
            }
            ConnectionEvent::Disconnected { error } => {
                let at_ms = now_ms();
                health.broker(false, Some(error.clone()));
                tracing::warn!(error = %error, "Collector lost the broker; reconnecting with backoff.");
                engine.broker(BrokerEvent::Disconnected { at_ms }).await;
            }
        }
    }
}

/// Runs the collector until `shutdown` is cancelled.
///
/// # Errors
/// Start-up failures, or ingest stopping on a store failure.
pub async fn run(config: CollectorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(config, shutdown).await?;
    running.task.await.context("collector task")?
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn start_refuses_a_non_loopback_listen_without_tokens_naming_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "[collector]\ndata_dir = \"d\"\nlisten = \"127.0.0.1:0\"\n[broker]\nlisten = \"127.0.0.1:0\"\n";
        let raw = crate::config::from_str(text, Path::new("c.toml")).expect("parses");
        let mut config =
            crate::config::validate(raw, Path::new("c.toml"), dir.path()).expect("valid");
        config.listen = "0.0.0.0:0".parse().expect("address");
        let err = start(config, CancellationToken::new())
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.starts_with("[api]: no tokens configured"), "{err}");
        assert!(!dir.path().join("d").exists(), "nothing was opened");
    }
}
