//! Typed internal events of every stage (probe → scheduler → outbox → publisher → mqtt). Each is
//! one struct whose `emit()` writes one log line (structured fields first, then a capitalised
//! sentence) and bumps a process-wide counter whose labels come from enums, so the set of
//! counters is fixed. ERROR is used only for data loss or when an operator must act.

use std::sync::atomic::{AtomicU64, Ordering};

use watchstand_shared::wire::v1::ProbeState;

/// A counter that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Metric names, one constant each.
pub mod names {
    /// Probe checks by state.
    pub const PROBE_CHECKS: &str = "watchstand_agent_probe_checks_total";
    /// Measurements refused by the outbox (too large for one packet).
    pub const MEASUREMENTS_REJECTED: &str = "watchstand_agent_measurements_rejected_total";
    /// Entries dropped at the outbox cap.
    pub const OUTBOX_DROPPED: &str = "watchstand_agent_outbox_dropped_total";
    /// Storage failures.
    pub const STORAGE_ERRORS: &str = "watchstand_agent_storage_errors_total";
    /// MQTT connections made.
    pub const MQTT_CONNECTS: &str = "watchstand_agent_mqtt_connects_total";
    /// MQTT connections lost or failed.
    pub const MQTT_DISCONNECTS: &str = "watchstand_agent_mqtt_disconnects_total";
    /// Ack messages ignored.
    pub const ACKS_IGNORED: &str = "watchstand_agent_acks_ignored_total";
    /// Batches published.
    pub const BATCHES_PUBLISHED: &str = "watchstand_agent_batches_published_total";
    /// Re-sends started.
    pub const RESENDS: &str = "watchstand_agent_resends_total";
    /// Publish requests that failed.
    pub const PUBLISH_ERRORS: &str = "watchstand_agent_publish_errors_total";
    /// Episodes of published entries not acknowledged by the collector within
    /// `outbox.unacked_alarm`.
    pub const UNACKED_ALARMS: &str = "watchstand_agent_unacked_alarms_total";
    /// Warnings that no collector is online on the broker.
    pub const NO_COLLECTOR_WARNINGS: &str = "watchstand_agent_no_collector_warnings_total";
}

/// Process-wide counters.
#[derive(Debug)]
pub struct Counters {
    /// Checks by state: up, degraded, down.
    pub probe_checks: [Counter; 3],
    /// See [`names::MEASUREMENTS_REJECTED`].
    pub measurements_rejected: Counter,
    /// See [`names::OUTBOX_DROPPED`].
    pub outbox_dropped: Counter,
    /// See [`names::STORAGE_ERRORS`].
    pub storage_errors: Counter,
    /// See [`names::MQTT_CONNECTS`].
    pub mqtt_connects: Counter,
    /// See [`names::MQTT_DISCONNECTS`].
    pub mqtt_disconnects: Counter,
    /// See [`names::ACKS_IGNORED`].
    pub acks_ignored: Counter,
    /// See [`names::BATCHES_PUBLISHED`].
    pub batches_published: Counter,
    /// Re-sends by reason: reconnect, stalled, collector online.
    pub resends: [Counter; 3],
    /// See [`names::PUBLISH_ERRORS`].
    pub publish_errors: Counter,
    /// See [`names::UNACKED_ALARMS`].
    pub unacked_alarms: Counter,
    /// See [`names::NO_COLLECTOR_WARNINGS`].
    pub no_collector_warnings: Counter,
}

/// The counters of this process.
pub static COUNTERS: Counters = Counters {
    probe_checks: [Counter::new(), Counter::new(), Counter::new()],
    measurements_rejected: Counter::new(),
    outbox_dropped: Counter::new(),
    storage_errors: Counter::new(),
    mqtt_connects: Counter::new(),
    mqtt_disconnects: Counter::new(),
    acks_ignored: Counter::new(),
    batches_published: Counter::new(),
    resends: [Counter::new(), Counter::new(), Counter::new()],
    publish_errors: Counter::new(),
    unacked_alarms: Counter::new(),
    no_collector_warnings: Counter::new(),
};

/// Every counter as `(name, labels, value)`, for export.
pub fn snapshot() -> Vec<(&'static str, &'static str, u64)> {
    let c = &COUNTERS;
    vec![
        (names::PROBE_CHECKS, "state=up", c.probe_checks[0].get()),
        (
            names::PROBE_CHECKS,
            "state=degraded",
            c.probe_checks[1].get(),
        ),
        (names::PROBE_CHECKS, "state=down", c.probe_checks[2].get()),
        (
            names::MEASUREMENTS_REJECTED,
            "",
            c.measurements_rejected.get(),
        ),
        (names::OUTBOX_DROPPED, "", c.outbox_dropped.get()),
        (names::STORAGE_ERRORS, "", c.storage_errors.get()),
        (names::MQTT_CONNECTS, "", c.mqtt_connects.get()),
        (names::MQTT_DISCONNECTS, "", c.mqtt_disconnects.get()),
        (names::ACKS_IGNORED, "", c.acks_ignored.get()),
        (names::BATCHES_PUBLISHED, "", c.batches_published.get()),
        (names::RESENDS, "reason=reconnect", c.resends[0].get()),
        (names::RESENDS, "reason=stalled", c.resends[1].get()),
        (
            names::RESENDS,
            "reason=collector_online",
            c.resends[2].get(),
        ),
        (
            names::NO_COLLECTOR_WARNINGS,
            "",
            c.no_collector_warnings.get(),
        ),
        (names::PUBLISH_ERRORS, "", c.publish_errors.get()),
        (names::UNACKED_ALARMS, "", c.unacked_alarms.get()),
    ]
}

/// A probe finished one check.
#[derive(Debug)]
pub struct ProbeChecked<'a> {
    /// Probe id.
    pub probe: &'a str,
    /// Outcome.
    pub state: ProbeState,
    /// Latency, µs.
    pub latency_us: u64,
    /// Error text when not up.
    pub error: Option<&'a str>,
}

impl ProbeChecked<'_> {
    /// Logs (debug) and counts by state.
    pub fn emit(self) {
        let index = match self.state {
            ProbeState::Up => 0,
            ProbeState::Degraded => 1,
            ProbeState::Down => 2,
        };
        COUNTERS.probe_checks[index].add(1);
        tracing::debug!(
            probe = self.probe,
            state = self.state.as_str(),
            latency_us = self.latency_us,
            error = self.error,
            "Probe checked."
        );
    }
}

/// The outbox refused a measurement that cannot fit one MQTT packet.
#[derive(Debug)]
pub struct MeasurementRejected {
    /// `result` or `capacity`.
    pub what: &'static str,
    /// Its encoded size.
    pub bytes: usize,
    /// The most one entry may take.
    pub limit: usize,
}

impl MeasurementRejected {
    /// Logs (error: the measurement is lost) and counts.
    pub fn emit(self) {
        COUNTERS.measurements_rejected.add(1);
        tracing::error!(
            what = self.what,
            bytes = self.bytes,
            limit = self.limit,
            "Measurement too large for one MQTT packet; it was not stored. Raise mqtt.max_packet_size."
        );
    }
}

/// The outbox reached its cap and started dropping its oldest entries into a new gap record.
/// Logged once per gap record, not per dropped entry, so a long outage does not flood the log.
#[derive(Debug)]
pub struct OutboxOverflow<'a> {
    /// Boot of the dropped entries.
    pub boot: &'a str,
    /// First dropped seq of the new range.
    pub from_seq: u64,
    /// Seq of the gap record that books the range.
    pub gap_seq: u64,
}

impl OutboxOverflow<'_> {
    /// Logs (error: data loss).
    pub fn emit(self) {
        tracing::error!(
            boot = self.boot,
            from_seq = self.from_seq,
            gap_seq = self.gap_seq,
            "Outbox full; dropping the oldest entries and booking them in a gap record."
        );
    }
}

/// Entries dropped at the outbox cap (counted; the log line is [`OutboxOverflow`]).
#[derive(Debug)]
pub struct OutboxDropped {
    /// How many.
    pub count: u64,
}

impl OutboxDropped {
    /// Counts.
    pub fn emit(self) {
        COUNTERS.outbox_dropped.add(self.count);
    }
}

/// A storage call failed.
pub struct StorageFailed<'a> {
    /// What was being done.
    pub op: &'static str,
    /// The error.
    pub error: &'a dyn std::fmt::Display,
}

impl StorageFailed<'_> {
    /// Logs (error: an operator must look at the disk) and counts.
    pub fn emit(self) {
        COUNTERS.storage_errors.add(1);
        tracing::error!(op = self.op, error = %self.error, "Outbox storage failed.");
    }
}

/// The outbox's store began failing (disk full, I/O error): logged once per episode, however
/// many writes fail during it (each is counted in `storage_errors`).
pub struct OutboxStoreFailing<'a> {
    /// What failed first.
    pub op: &'static str,
    /// The error.
    pub error: &'a dyn std::fmt::Display,
}

impl OutboxStoreFailing<'_> {
    /// Logs (error: results are being lost until the disk has room) and counts.
    pub fn emit(self) {
        COUNTERS.storage_errors.add(1);
        tracing::error!(op = self.op, error = %self.error, "Outbox cannot store measurements (disk full?); booking them as lost until it can.");
    }
}

/// The outbox's store works again after a failing episode.
#[derive(Debug)]
pub struct OutboxStoreRecovered {
    /// How long it failed.
    pub failed_ms: u64,
    /// Entries booked as lost in gap records (measurements refused, and entries the store had
    /// accepted but not made durable).
    pub lost_entries: u64,
    /// Gap records written for them.
    pub gap_records: u64,
}

impl OutboxStoreRecovered {
    /// Logs.
    pub fn emit(self) {
        tracing::warn!(
            failed_ms = self.failed_ms,
            lost_entries = self.lost_entries,
            gap_records = self.gap_records,
            "Outbox store works again; the measurements it lost are booked in gap records."
        );
    }
}

/// The MQTT connection came up.
#[derive(Debug)]
pub struct MqttConnected {
    /// Connection number since start (1 = first).
    pub epoch: u64,
}

impl MqttConnected {
    /// Logs and counts.
    pub fn emit(self) {
        COUNTERS.mqtt_connects.add(1);
        tracing::info!(epoch = self.epoch, "Agent connected to the broker.");
    }
}

/// The MQTT connection failed or dropped.
#[derive(Debug)]
pub struct MqttDisconnected<'a> {
    /// The error.
    pub error: &'a str,
}

impl MqttDisconnected<'_> {
    /// Logs (debug: the driver already logged it with its retry delay) and counts.
    pub fn emit(self) {
        COUNTERS.mqtt_disconnects.add(1);
        tracing::debug!(error = self.error, "Agent disconnected from the broker.");
    }
}

/// Why an ack message was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckIgnoreReason {
    /// Not a valid v1 ack.
    Invalid,
    /// For another site or agent.
    NotForUs,
    /// For a boot the outbox no longer holds.
    UnknownBoot,
}

/// An ack message was ignored.
#[derive(Debug)]
pub struct AckIgnored<'a> {
    /// Why.
    pub reason: AckIgnoreReason,
    /// Detail for the log line.
    pub detail: &'a str,
}

impl AckIgnored<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        COUNTERS.acks_ignored.add(1);
        match self.reason {
            AckIgnoreReason::UnknownBoot => {
                tracing::debug!(
                    detail = self.detail,
                    "Ack for a boot with nothing left to trim ignored."
                );
            }
            reason => {
                tracing::warn!(?reason, detail = self.detail, "Ack ignored.");
            }
        }
    }
}

/// A batch went to the broker.
#[derive(Debug)]
pub struct BatchPublished<'a> {
    /// `results` or `capacity`.
    pub channel: &'static str,
    /// Boot of the batch.
    pub boot: &'a str,
    /// Entries in it.
    pub entries: usize,
    /// Payload bytes.
    pub bytes: usize,
}

impl BatchPublished<'_> {
    /// Logs (debug) and counts.
    pub fn emit(self) {
        COUNTERS.batches_published.add(1);
        tracing::debug!(
            channel = self.channel,
            boot = self.boot,
            entries = self.entries,
            bytes = self.bytes,
            "Batch published."
        );
    }
}

/// Why the publisher goes back to the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendReason {
    /// A new MQTT connection (the broker may have lost what was in flight).
    Reconnect,
    /// The watermark has not moved for the (backed-off) `resend_after` while a collector was
    /// online.
    Stalled,
    /// A collector came online on the broker: what it may have missed is sent once, at once.
    CollectorOnline,
}

/// The publisher re-sends unacked entries of a boot from its watermark.
#[derive(Debug)]
pub struct Resend<'a> {
    /// The boot.
    pub boot: &'a str,
    /// The watermark it restarts after.
    pub watermark: u64,
    /// How far it had published.
    pub published_upto: u64,
    /// Why.
    pub reason: ResendReason,
}

impl Resend<'_> {
    /// Logs and counts by reason.
    pub fn emit(self) {
        let index = match self.reason {
            ResendReason::Reconnect => 0,
            ResendReason::Stalled => 1,
            ResendReason::CollectorOnline => 2,
        };
        COUNTERS.resends[index].add(1);
        tracing::info!(
            boot = self.boot,
            watermark = self.watermark,
            published_upto = self.published_upto,
            reason = ?self.reason,
            "Re-sending unacknowledged entries from the watermark."
        );
    }
}

/// A publish request could not be handed to the MQTT client.
pub struct PublishFailed<'a> {
    /// The error.
    pub error: &'a dyn std::fmt::Display,
}

impl PublishFailed<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        COUNTERS.publish_errors.add(1);
        tracing::warn!(error = %self.error, "Publish failed; entries stay in the outbox.");
    }
}

/// Entries were published while connected, but the collector's ack watermark has not covered
/// them for `outbox.unacked_alarm`: the broker took them (on MQTT 3.1.1 even a publish an ACL
/// denies is PUBACKed) and nothing reached the collector's store. Once per episode.
#[derive(Debug)]
pub struct UnackedAlarm<'a> {
    /// The boot whose entries wait.
    pub boot: &'a str,
    /// The oldest seq waiting (watermark + 1).
    pub oldest_seq: u64,
    /// Highest seq published.
    pub published_upto: u64,
    /// How long the oldest has waited (connected time).
    pub age: std::time::Duration,
}

impl UnackedAlarm<'_> {
    /// Logs (warn: an operator must look at the collector or the broker's ACL) and counts.
    pub fn emit(self) {
        COUNTERS.unacked_alarms.add(1);
        tracing::warn!(
            boot = self.boot,
            oldest_seq = self.oldest_seq,
            published_upto = self.published_upto,
            age_ms = u64::try_from(self.age.as_millis()).unwrap_or(u64::MAX),
            "Published entries not acknowledged by the collector; they stay in the outbox. Check that the collector runs and that the broker lets this agent publish."
        );
    }
}

/// The collector's watermark moved again after an [`UnackedAlarm`]: the episode is over.
#[derive(Debug)]
pub struct AckedAgain<'a> {
    /// The boot.
    pub boot: &'a str,
    /// The new watermark.
    pub watermark: u64,
    /// How long the episode lasted since the oldest entry was published.
    pub after: std::time::Duration,
}

impl AckedAgain<'_> {
    /// Logs.
    pub fn emit(self) {
        tracing::info!(
            boot = self.boot,
            watermark = self.watermark,
            after_ms = u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX),
            "Published entries acknowledged again by the collector."
        );
    }
}

/// Connected to the broker, but no Watchstand collector has announced itself online on it:
/// nothing published will be acknowledged (the wrong broker, a wrong `topic_root`, or the
/// collector is down).
#[derive(Debug)]
pub struct NoCollectorOnline<'a> {
    /// The broker URL from the config.
    pub broker: &'a str,
    /// The topic root from the config.
    pub topic_root: &'a str,
    /// The retained state topic the agent watches.
    pub topic: &'a str,
    /// Collectors seen offline on it (empty: none ever announced).
    pub offline: &'a [String],
}

impl NoCollectorOnline<'_> {
    /// Logs and counts.
    pub fn emit(self) {
        COUNTERS.no_collector_warnings.add(1);
        tracing::warn!(
            broker = %self.broker,
            topic_root = %self.topic_root,
            topic = %self.topic,
            offline = ?self.offline,
            "No Watchstand collector is online on this broker; results wait in the outbox \
             (check [mqtt] url and topic_root against the collector's, and that it runs)."
        );
    }
}

/// A collector announced itself online (after none was).
#[derive(Debug)]
pub struct CollectorOnline<'a> {
    /// Its id.
    pub id: &'a str,
}

impl CollectorOnline<'_> {
    /// Logs.
    pub fn emit(self) {
        tracing::info!(collector = self.id, "A collector is online on the broker.");
    }
}

/// A command was refused (counted by reason in `/health`, by the caller's `CommandStats`).
#[derive(Debug)]
pub struct CommandRefused<'a> {
    /// Why.
    pub refusal: &'a watchstand_shared::command::Refusal,
}

impl CommandRefused<'_> {
    /// Logs (warn: someone sent a command this agent will not run).
    pub fn emit(self) {
        let c = self.refusal.command.as_ref();
        tracing::warn!(
            reason = self.refusal.reason.as_str(),
            detail = %self.refusal.detail,
            command_id = c.map_or("", |c| c.command_id.as_str()),
            action = c.map_or("", |c| c.action.as_str()),
            "Command refused."
        );
    }
}

/// A command passed every check and its action starts.
#[derive(Debug)]
pub struct CommandAccepted<'a> {
    /// The command.
    pub command: &'a watchstand_shared::wire::v1::Command,
}

impl CommandAccepted<'_> {
    /// Logs.
    pub fn emit(self) {
        tracing::info!(
            command_id = %self.command.command_id,
            run_id = %self.command.run_id,
            step = self.command.step,
            action = %self.command.action,
            "Command accepted; running its action."
        );
    }
}

/// An action ended.
#[derive(Debug)]
pub struct CommandFinished<'a> {
    /// The command id.
    pub command_id: &'a str,
    /// The action id.
    pub action: &'a str,
    /// How it ended.
    pub outcome: &'a watchstand_shared::wire::v1::CommandOutcome,
}

impl CommandFinished<'_> {
    /// Logs.
    pub fn emit(self) {
        tracing::info!(
            command_id = self.command_id,
            action = self.action,
            status = self.outcome.status.as_str(),
            exit_code = ?self.outcome.exit_code,
            http_status = ?self.outcome.http_status,
            duration_ms = self.outcome.duration_ms,
            "Action finished."
        );
    }
}
