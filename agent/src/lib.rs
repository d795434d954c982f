//! Watchstand agent: probes services, samples host capacity, and publishes what it measured over
//! MQTT to the collector, losing nothing while the broker or the collector is away.
//!
//! # Flow
//! ```text
//! probe ─► scheduler ─┐
//!                     ├─► outbox writer ─► outbox (sled) ─► publisher ─► mqtt ─► broker
//! capacity sampler ───┘                        ▲                           │
//!                                              └──── ack watermark ◄───────┘
//! ```
//!
//! # Layout
//! - [`config`]: raw TOML types → pure `validate()` → [`ValidatedAgentConfig`].
//! - [`probe`]: the probe kinds (`http`, `tcp`), one module each, behind the `Check` trait.
//! - [`scheduler`]: per-probe intervals with jitter, hard timeouts, a concurrency bound.
//! - [`capacity`]: the sysinfo sampler on its own interval.
//! - [`outbox`]: the durable bounded spool: seqs per boot, watermark trimming, gap records.
//! - [`publisher`]: batching, QoS 1, re-send from the watermark, bounded in flight.
//! - [`mqtt`]: the connection: birth, last will, ack subscription, reconnect backoff.
//! - [`collectors`]: which collectors are online on the broker (re-sends and the warning).
//! - [`actions`]: signed commands from the collector: verify, journal (nonce, run-once), run the
//!   declared action, answer on `cmd/ack`.
//! - [`health`]: the optional local `GET /health`.
//! - [`events`]: typed internal events (one log line and one counter each).
//!
//! Embedding: [`run`] installs no tracing subscriber and no signal handler; the caller owns
//! both and stops the agent by cancelling the token it passes in.

pub mod actions;
pub mod capacity;
pub mod collectors;
pub mod config;
pub mod events;
pub mod health;
pub mod mqtt;
pub mod outbox;
pub mod probe;
pub mod publisher;
pub mod scheduler;
#[cfg(test)]
pub(crate) mod testutil;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchstand_shared::config::LoadError;
use watchstand_shared::storage::{ReopeningSled, Storage};
use watchstand_shared::topic::Channel;
use watchstand_shared::wire::v1::ProbeResult;

pub use config::ValidatedAgentConfig;

use crate::capacity::CapacityTask;
use crate::health::HealthState;
use crate::mqtt::MqttLink;
use crate::outbox::{Outbox, OutboxLimits};
use crate::probe::Probe;
use crate::publisher::{MqttSink, Publisher};
use crate::scheduler::Scheduler;

/// How long an orderly shutdown may take before the remaining tasks are aborted.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Loads and validates the agent config at `path`.
///
/// # Errors
/// The file cannot be read, does not parse (the message names the file, line and key), or
/// breaks rules (every problem at once, each naming the file and key path).
pub fn load_config(path: &Path) -> Result<ValidatedAgentConfig, LoadError> {
    config::load(path)
}

/// Parses and validates config text; `origin` names it in messages (e.g. `<demo>`).
///
/// # Errors
/// As [`load_config`], without the read.
pub fn load_config_str(text: &str, origin: &Path) -> Result<ValidatedAgentConfig, LoadError> {
    config::from_str(text, origin)
}

/// Runs every configured probe once (or only probe `id`), concurrently, and returns the results
/// in config order. Nothing is stored or published.
///
/// # Errors
/// `id` names no probe, or a probe cannot be built.
pub async fn probe_once(
    config: &ValidatedAgentConfig,
    id: Option<&str>,
) -> anyhow::Result<Vec<ProbeResult>> {
    let selected: Vec<_> = config
        .probes
        .iter()
        .filter(|p| id.is_none_or(|id| p.id() == id))
        .collect();
    if let (Some(id), true) = (id, selected.is_empty()) {
        anyhow::bail!(
            "{}: no probe with id {id:?} (probes: {})",
            config.origin.display(),
            config
                .probes
                .iter()
                .map(|p| p.id())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let clients = probe::HttpClients::default();
    let mut handles = Vec::new();
    for probe in selected {
        let probe = Probe::build_shared(probe, &clients)?;
        handles.push(tokio::spawn(
            async move { scheduler::check_once(&probe).await },
        ));
    }
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.context("probe task failed")?);
    }
    Ok(results)
}

/// Waits for `handle` until `deadline`; aborts it and says so if it is late.
async fn join_by<T>(name: &str, mut handle: JoinHandle<T>, deadline: Instant) -> Option<T> {
    match tokio::time::timeout_at(deadline, &mut handle).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::warn!(task = name, error = %e, "Task failed during shutdown.");
            None
        }
        Err(_) => {
            handle.abort();
            tracing::warn!(
                task = name,
                "Task did not finish before the shutdown deadline; aborted."
            );
            None
        }
    }
}

/// Runs the agent until `shutdown` is cancelled, then shuts down in order: stop intake
/// (schedulers, sampler, health), append what was measured and flush the outbox, stop the
/// publisher, publish the retained offline status and disconnect; all within
/// [`SHUTDOWN_DEADLINE`].
///
/// Installs no tracing subscriber and no signal handler (the caller's job).
///
/// # Errors
/// Start-up failures: the data dir or outbox cannot be opened (e.g. another agent holds it),
/// a probe or the MQTT client cannot be built, the health address cannot be bound.
pub async fn run(config: ValidatedAgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let storage = {
        let dir = data_dir.clone();
        let opened = tokio::task::spawn_blocking(move || ReopeningSled::open(&dir))
            .await
            .context("outbox open task failed")?;
        // The "another agent" hint only when the lock really is held.
        let hint = match &opened {
            Err(e) if e.is_locked() => " (is another agent using this data_dir?)",
            _ => "",
        };
        opened.with_context(|| format!("cannot open the outbox in {}{hint}", data_dir.display()))?
    };
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let journal = match &config.commands {
        Some(_) => Some(
            actions::Journal::open(storage.clone(), watchstand_shared::time::now_ms())
                .with_context(|| {
                    format!("cannot open the command journal in {}", data_dir.display())
                })?,
        ),
        None => None,
    };
    let topics = config.topics();
    let max_entry_bytes = publisher::max_entry_bytes(
        config.mqtt.max_packet_size,
        &topics,
        &config.site,
        &config.agent_id,
    );
    let outbox = Arc::new(
        Outbox::open(
            storage,
            OutboxLimits {
                max_entries: config.outbox.max_entries,
                max_bytes: config.outbox.max_bytes,
                max_entry_bytes,
            },
        )
        .with_context(|| format!("cannot open the outbox in {}", data_dir.display()))?,
    );
    let boot = outbox.boot_id();
    let clients = probe::HttpClients::default();
    let probes = config
        .probes
        .iter()
        .map(|p| Probe::build_shared(p, &clients))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut mqtt, client, link) = MqttLink::build(&config, &boot, outbox.clone())?;
    // With [commands]: the actions task, fed from the cmd topic, answering through its own
    // ack sender (see actions/mod.rs for why the two are separate tasks).
    let mut commands = None;
    let mut command_stats = None;
    if let (Some(settings), Some(journal)) = (config.commands.clone(), journal) {
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (ack_tx, ack_rx) = mpsc::channel(actions::ACK_QUEUE);
        mqtt = mqtt.with_commands(cmd_tx);
        let stats = Arc::new(actions::CommandStats::new(settings.actions.len()));
        command_stats = Some(stats.clone());
        let task = actions::CommandsTask::new(actions::CommandsSetup {
            settings,
            site: config.site.clone(),
            agent: config.agent_id.clone(),
            boot: boot.clone(),
            journal,
            link: link.clone(),
            stats,
            acks: ack_tx,
        });
        let sender = actions::AckSender::new(
            client.clone(),
            topics.agent(&config.site, &config.agent_id, Channel::CmdAck),
        );
        commands = Some((task, cmd_rx, sender, ack_rx));
    }
    let presence = mqtt.presence();
    let health_listener = match config.health_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for health on {addr}"))?,
        ),
        None => None,
    };

    let results_topic = topics.agent(&config.site, &config.agent_id, Channel::Results);
    let max_payload = publisher::payload_limit(
        config.mqtt.max_packet_size,
        results_topic.len().max(
            topics
                .agent(&config.site, &config.agent_id, Channel::Capacity)
                .len(),
        ),
    );
    let publisher = Publisher::new(
        outbox.clone(),
        MqttSink::new(client, &topics, &config.site, &config.agent_id),
        link.clone(),
        &config.site,
        &config.agent_id,
        config.publish.clone(),
        config.outbox.resend_after,
        config.outbox.unacked_alarm,
        max_payload,
    )
    .with_presence(presence.clone());
    let stats = outbox.stats();
    tracing::info!(
        site = %config.site,
        agent = %config.agent_id,
        boot = %boot,
        probes = config.probes.len(),
        outbox_entries = stats.entries,
        earlier_boots = stats.boots.len().saturating_sub(1),
        broker = %config.mqtt.url,
        "Agent started."
    );

    let intake = CancellationToken::new();
    let publisher_stop = CancellationToken::new();
    let mqtt_stop = CancellationToken::new();
    let (measurements, received) = mpsc::channel(1_024);

    let health = health_listener.map(|listener| {
        let state = Arc::new(HealthState {
            site: config.site.clone(),
            agent: config.agent_id.clone(),
            boot: boot.clone(),
            outbox: outbox.clone(),
            link: link.clone(),
            published: publisher.stats(),
            presence,
            commands: command_stats,
        });
        tokio::spawn(health::serve(listener, state, intake.clone()))
    });
    let scheduler = tokio::spawn(
        Scheduler::new(probes, config.max_concurrent_probes, measurements.clone())
            .run(intake.clone()),
    );
    let capacity = tokio::spawn(
        CapacityTask::new(config.capacity_interval, max_entry_bytes, measurements)
            .run(intake.clone()),
    );
    let commands = commands.map(|(task, cmd_rx, sender, ack_rx)| {
        (
            tokio::spawn(task.run(cmd_rx, intake.clone())),
            tokio::spawn(sender.run(ack_rx, publisher_stop.clone())),
        )
    });
    let writer = tokio::spawn(outbox::run_writer(outbox.clone(), received));
    let publisher = tokio::spawn(publisher.run(publisher_stop.clone()));
    let mqtt = tokio::spawn(mqtt.run(mqtt_stop.clone()));

    shutdown.cancelled().await;
    tracing::info!("Agent stopping.");
    let deadline = Instant::now() + SHUTDOWN_DEADLINE;

    // 1. Stop intake.
    intake.cancel();
    join_by("scheduler", scheduler, deadline).await;
    join_by("capacity", capacity, deadline).await;
    let ack_sender = match commands {
        Some((task, sender)) => {
            join_by("commands", task, deadline).await;
            Some(sender)
        }
        None => None,
    };
    if let Some(health) = health {
        if let Some(Err(e)) = join_by("health", health, deadline).await {
            tracing::warn!(error = %e, "Health endpoint failed.");
        }
    }
    // 2. Everything measured is appended (the writer ends when its senders are gone), then
    //    made durable.
    join_by("outbox writer", writer, deadline).await;
    if let Err(e) = outbox.flush().await {
        events::StorageFailed {
            op: "flush at shutdown",
            error: &e,
        }
        .emit();
    }
    // 3. Stop publishing; 4. offline status and disconnect.
    publisher_stop.cancel();
    join_by("publisher", publisher, deadline).await;
    if let Some(sender) = ack_sender {
        join_by("command acks", sender, deadline).await;
    }
    mqtt_stop.cancel();
    join_by("mqtt", mqtt, deadline).await;
    let stats = outbox.stats();
    tracing::info!(
        boot = %boot,
        outbox_entries = stats.entries,
        "Agent stopped; unacknowledged entries stay in the outbox for the next start."
    );
    Ok(())
}
