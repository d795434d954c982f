//! The publisher: the fourth stage of probe → scheduler → outbox → **publisher** → mqtt. It
//! reads the outbox in seq order, per boot, and publishes `ResultBatch`es (results and gap
//! records) on `/results` and `CapacityBatch`es on `/capacity`, QoS 1.
//!
//! - **Batching**: a batch closes at `batch_max_entries`, at the MQTT `max_packet_size` (never
//!   exceeded), or when the oldest new entry has waited `linger`, or at once when a result whose
//!   state differs from its probe's previous one is pending ([`Outbox::urgent_after`]): an
//!   outage or a recovery reaches the collector without the linger; unchanged results keep
//!   batching.
//! - **No delete on PUBACK**: a PUBACK only proves the broker got it. Only the collector's ack
//!   watermark trims the outbox (the MQTT task applies it; see `mqtt.rs`).
//! - **Re-send**: per boot the publisher remembers how far it published, and goes back to the
//!   watermark to publish again (the collector drops duplicates by (agent, boot, seq)) only when
//!   that can help — i.e. when a collector is there to read it ([`Presence`], from the retained
//!   collector states):
//!   - when a collector comes online, once, at once (it may have missed what it was sent);
//!   - after a reconnect, once a collector is seen online on the new connection (or, if none
//!     announces itself within [`NO_COLLECTOR_GRACE`], at once: an older collector that does
//!     not announce; until then nothing is published, to avoid a double send);
//!   - when the watermark has not moved while a collector is online (or none announces), with
//!     exponential back-off: after `resend_after`, then 2×, 4×, … up to [`MAX_RESEND_FACTOR`] ×
//!     `resend_after` (at most [`MAX_RESEND_DELAY`]); a move of the watermark resets it.
//!
//!   While every collector announced is offline nothing is re-sent: the broker queues what is
//!   published for the collector's session, and re-sending would only multiply that queue.
//! - **Bounded in flight**: per boot it never publishes more than [`INFLIGHT_BATCHES`] ×
//!   `batch_max_entries` entries beyond the watermark, so a collector that is away does not make
//!   the agent flood the broker.
//! - **Gap records first**: gap records beyond what the window allows are published ahead of it,
//!   before the entries of the same cycle, outside the window. A gap record is tiny, and the
//!   collector's watermark cannot pass a dropped range before its record arrives: behind a full
//!   window it would block the drain while the outbox, still at its cap, drops entries already
//!   published. Those drops are not booked as lost while the collector may have them (see
//!   "Dropping at the cap" in `outbox.rs`); re-sending from the watermark books them, because
//!   they can no longer be re-sent.
//! - **Durable first**: after reading and before publishing it calls
//!   [`Outbox::ensure_durable`], one flush per cycle.
//! - **Unacknowledged alarm**: when entries it published while connected have waited
//!   `outbox.unacked_alarm` for the watermark (re-sends do not restart the clock, a reconnect
//!   does), it warns once per episode ("not acknowledged by the collector") and shows it in
//!   [`PublisherStats::unacknowledged`]; the next move of that boot's watermark ends the
//!   episode. On MQTT 3.1.1 a broker PUBACKs even a publish its ACL denies, so this, not the
//!   PUBACK, is how such a loss becomes visible.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchstand_shared::time::now_ms;
use watchstand_shared::topic::{Channel, TopicLayout, MAX_ID_LEN};
use watchstand_shared::wire::v1::{encode, CapacityBatch, ResultBatch, VERSION};

use crate::collectors::{Presence, NO_COLLECTOR_GRACE};
use crate::config::PublishSettings;
use crate::events::{self, ResendReason};
use crate::mqtt::LinkState;
use crate::outbox::{Entry, Outbox};

/// Batches per boot that may be published beyond the ack watermark.
pub const INFLIGHT_BATCHES: usize = 8;

/// The stalled re-send delay doubles up to this many times `resend_after`.
pub const MAX_RESEND_FACTOR: u32 = 8;

/// ... and never beyond this.
pub const MAX_RESEND_DELAY: Duration = Duration::from_secs(5 * 60);

/// MQTT PUBLISH overhead besides topic and payload: fixed header (1 + up to 4 length bytes),
/// topic length (2) and packet id (2).
const PUBLISH_HEADER_BYTES: usize = 9;

/// The largest payload that fits one packet on `topic_len`-byte topics.
pub fn payload_limit(max_packet_size: usize, topic_len: usize) -> usize {
    max_packet_size.saturating_sub(PUBLISH_HEADER_BYTES + topic_len)
}

/// Envelope bytes of a batch without entries (ids at their longest, both lists present).
fn envelope_bytes(site: &str, agent: &str, boot_len: usize) -> usize {
    // {"v":1,"site":"…","agent":"…","boot":"…","results":[],"gaps":[]}
    let sample = ResultBatch {
        v: VERSION,
        site: site.to_owned(),
        agent: agent.to_owned(),
        boot: "x".repeat(boot_len),
        results: Vec::new(),
        gaps: Vec::new(),
    };
    encode(&sample).len() + ",\"gaps\":[]".len()
}

/// The largest outbox entry that still fits one packet alone, for the agent's topics.
pub fn max_entry_bytes(
    max_packet_size: usize,
    topics: &TopicLayout,
    site: &str,
    agent: &str,
) -> usize {
    let topic_len = topics.agent(site, agent, Channel::Capacity).len();
    payload_limit(max_packet_size, topic_len)
        .saturating_sub(envelope_bytes(site, agent, MAX_ID_LEN))
}

/// One payload ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// `Results` or `Capacity`.
    pub channel: Channel,
    /// The encoded batch.
    pub payload: Vec<u8>,
    /// Entries in it.
    pub entries: usize,
}

/// Splits `entries` (one boot, seq order) into batches of at most `max_entries` entries and
/// `max_payload` bytes each: results and gap records to `/results`, samples to `/capacity`.
/// An entry larger than `max_payload` on its own still gets a batch of its own (the outbox
/// refuses such entries, so this does not happen).
pub fn build_batches(
    site: &str,
    agent: &str,
    boot: &str,
    entries: &[Entry],
    max_entries: usize,
    max_payload: usize,
) -> Vec<Outgoing> {
    let envelope = envelope_bytes(site, agent, boot.len());
    let max_entries = max_entries.max(1);
    let mut out = Vec::new();
    let mut results = ResultBatch {
        v: VERSION,
        site: site.to_owned(),
        agent: agent.to_owned(),
        boot: boot.to_owned(),
        results: Vec::new(),
        gaps: Vec::new(),
    };
    let mut capacity = CapacityBatch {
        v: VERSION,
        site: site.to_owned(),
        agent: agent.to_owned(),
        boot: boot.to_owned(),
        samples: Vec::new(),
    };
    let (mut results_bytes, mut capacity_bytes) = (envelope, envelope);

    fn close_results(batch: &mut ResultBatch, out: &mut Vec<Outgoing>) {
        let n = batch.results.len() + batch.gaps.len();
        if n > 0 {
            out.push(Outgoing {
                channel: Channel::Results,
                payload: encode(batch),
                entries: n,
            });
            batch.results.clear();
            batch.gaps.clear();
        }
    }
    fn close_capacity(batch: &mut CapacityBatch, out: &mut Vec<Outgoing>) {
        if !batch.samples.is_empty() {
            out.push(Outgoing {
                channel: Channel::Capacity,
                payload: encode(batch),
                entries: batch.samples.len(),
            });
            batch.samples.clear();
        }
    }

    for entry in entries {
        // Each entry costs its own JSON plus a separating comma.
        let size = match entry {
            Entry::Result(r) => encode(r).len(),
            Entry::Capacity(c) => encode(c).len(),
            Entry::Gap(g) => encode(g).len(),
        } + 1;
        match entry {
            Entry::Capacity(sample) => {
                if capacity.samples.len() >= max_entries || capacity_bytes + size > max_payload {
                    close_capacity(&mut capacity, &mut out);
                    capacity_bytes = envelope;
                }
                capacity.samples.push(sample.clone());
                capacity_bytes += size;
            }
            Entry::Result(_) | Entry::Gap(_) => {
                let n = results.results.len() + results.gaps.len();
                if n >= max_entries || results_bytes + size > max_payload {
                    close_results(&mut results, &mut out);
                    results_bytes = envelope;
                }
                match entry {
                    Entry::Result(r) => results.results.push(r.clone()),
                    Entry::Gap(g) => results.gaps.push(g.clone()),
                    Entry::Capacity(_) => {}
                }
                results_bytes += size;
            }
        }
    }
    close_results(&mut results, &mut out);
    close_capacity(&mut capacity, &mut out);
    out
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The MQTT client's request channel is closed (the driver stopped).
    #[error("mqtt client closed: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// Where batches go: the MQTT client in production, a recorder in tests.
pub trait Sink: Send + Sync {
    /// Hands one payload to the broker connection, QoS 1, not retained.
    fn publish(
        &self,
        channel: Channel,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// The production sink: a clone of the MQTT client and the agent's topics.
#[derive(Debug, Clone)]
pub struct MqttSink {
    client: AsyncClient,
    results_topic: String,
    capacity_topic: String,
}

impl MqttSink {
    /// A sink publishing under `topics` for one agent.
    pub fn new(client: AsyncClient, topics: &TopicLayout, site: &str, agent: &str) -> Self {
        Self {
            client,
            results_topic: topics.agent(site, agent, Channel::Results),
            capacity_topic: topics.agent(site, agent, Channel::Capacity),
        }
    }
}

impl Sink for MqttSink {
    async fn publish(&self, channel: Channel, payload: Vec<u8>) -> Result<(), PublishError> {
        let topic = match channel {
            Channel::Capacity => &self.capacity_topic,
            _ => &self.results_topic,
        };
        self.client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }
}

/// Published entries waiting for the collector's watermark (the oldest such stretch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unacknowledged {
    /// The boot of the oldest waiting stretch.
    pub boot: String,
    /// Its oldest waiting seq (watermark + 1).
    pub oldest_seq: u64,
    /// Highest seq published of that boot.
    pub published_upto: u64,
    /// Epoch ms since which it waits (connected time: a reconnect restarts it).
    pub since_ms: u64,
    /// The wait passed `outbox.unacked_alarm`: "not acknowledged by the collector".
    pub alarm: bool,
}

/// Counters the health endpoint shows.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Entries published (first sends and re-sends).
    pub published: AtomicU64,
    /// Entries published again after a re-send.
    pub resent: AtomicU64,
    /// "Not acknowledged by the collector" episodes since start.
    pub unacked_alarms: AtomicU64,
    /// The oldest stretch of published, unacknowledged entries, if any.
    unacked: Mutex<Option<Unacknowledged>>,
}

impl PublisherStats {
    /// The oldest stretch of published entries the collector has not acknowledged yet.
    pub fn unacknowledged(&self) -> Option<Unacknowledged> {
        self.unacked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_unacknowledged(&self, view: Option<Unacknowledged>) {
        *self.unacked.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }
}

/// Epoch ms of the monotonic instant `at` (in the past).
fn wall_ms(at: Instant) -> u64 {
    now_ms().saturating_sub(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Per-boot progress.
#[derive(Debug, Clone)]
struct Cursor {
    /// The boot id.
    id: String,
    /// The watermark as last seen.
    watermark: u64,
    /// Highest seq published in the current pass (back to the watermark on a re-send).
    published_upto: u64,
    /// Highest seq ever published (to count re-sends).
    max_published: u64,
    /// When the watermark last moved or an unacked stretch began.
    last_progress: Instant,
    /// When new entries of the current boot started to wait for their batch to fill.
    pending_since: Option<Instant>,
    /// Highest gap record seq published ahead of the window in the current pass (back to the
    /// watermark on a re-send); the window skips gap records up to it.
    gaps_ahead_upto: u64,
    /// Highest gap record seq ever published ahead (to count re-sends).
    max_gap_ahead: u64,
    /// Since when published entries wait for the watermark (and that instant in epoch ms):
    /// set by the first publish beyond the watermark, restarted when the watermark moves or
    /// the connection is new, kept across re-sends.
    unacked_since: Option<(Instant, u64)>,
    /// The "not acknowledged by the collector" alarm is raised for this boot.
    alarmed: bool,
    /// Stalled re-sends since the watermark last moved (the back-off exponent).
    stalled_resends: u32,
}

impl Cursor {
    fn new(id: &str, watermark: u64, now: Instant) -> Self {
        Self {
            id: id.to_owned(),
            watermark,
            published_upto: watermark,
            max_published: watermark,
            last_progress: now,
            pending_since: None,
            gaps_ahead_upto: watermark,
            max_gap_ahead: watermark,
            unacked_since: None,
            alarmed: false,
            stalled_resends: 0,
        }
    }

    /// Published entries wait for the watermark.
    fn outstanding(&self) -> bool {
        self.max_published > self.watermark
    }

    /// The collector's watermark moved to `watermark`: progress; ends an alarm episode.
    fn watermark_moved(&mut self, watermark: u64, now: Instant) {
        let since = self.unacked_since.map(|(at, _)| at);
        self.watermark = watermark;
        self.last_progress = now;
        self.stalled_resends = 0;
        self.unacked_since = self.outstanding().then(|| (now, wall_ms(now)));
        if self.alarmed {
            self.alarmed = false;
            events::AckedAgain {
                boot: &self.id,
                watermark,
                after: since.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            }
            .emit();
        }
    }
}

/// The publisher task.
pub struct Publisher<S> {
    outbox: Arc<Outbox>,
    sink: S,
    link: watch::Receiver<LinkState>,
    presence: watch::Receiver<Presence>,
    site: String,
    agent: String,
    settings: PublishSettings,
    resend_after: Duration,
    unacked_alarm: Duration,
    max_payload: usize,
    stats: Arc<PublisherStats>,
    cursors: HashMap<u64, Cursor>,
}

impl<S> std::fmt::Debug for Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("site", &self.site)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl<S: Sink> Publisher<S> {
    /// A publisher of `outbox` into `sink`, following the connection state in `link`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        outbox: Arc<Outbox>,
        sink: S,
        link: watch::Receiver<LinkState>,
        site: &str,
        agent: &str,
        settings: PublishSettings,
        resend_after: Duration,
        unacked_alarm: Duration,
        max_payload: usize,
    ) -> Self {
        // Without collector states (see `with_presence`) it acts as if one were always online.
        let (_, presence) = watch::channel(Presence::Online);
        Self {
            outbox,
            sink,
            link,
            presence,
            site: site.to_owned(),
            agent: agent.to_owned(),
            settings,
            resend_after,
            unacked_alarm,
            max_payload,
            stats: Arc::new(PublisherStats::default()),
            cursors: HashMap::new(),
        }
    }

    /// Re-sends follow `presence` (which collectors are online on the broker).
    #[must_use]
    pub fn with_presence(mut self, presence: watch::Receiver<Presence>) -> Self {
        self.presence = presence;
        self
    }

    /// How long the watermark of `c` may stand still before the next stalled re-send.
    fn resend_delay(&self, c: &Cursor) -> Duration {
        let cap = (self.resend_after * MAX_RESEND_FACTOR)
            .min(MAX_RESEND_DELAY)
            .max(self.resend_after);
        self.resend_after
            .saturating_mul(1_u32 << c.stalled_resends.min(16))
            .min(cap)
    }

    /// A stalled re-send can reach a collector: one is online, or none announces at all.
    fn stalled_resend_allowed(&self) -> bool {
        *self.presence.borrow() != Presence::Offline
    }

    /// A new connection: time without a broker is not the collector's silence, so the
    /// unacknowledged clock of a boot not yet in alarm restarts.
    fn connection_restarted(&mut self) {
        let now = Instant::now();
        for c in self.cursors.values_mut() {
            if !c.alarmed && c.unacked_since.is_some() {
                c.unacked_since = Some((now, wall_ms(now)));
            }
        }
    }

    /// The counters, for the health endpoint.
    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// Most entries per boot published beyond the watermark: [`INFLIGHT_BATCHES`] batches, but
    /// never more than half the outbox, so that a small outbox is never all in flight at once.
    /// Gap records sent ahead do not count.
    fn window(&self) -> usize {
        (self.settings.batch_max_entries * INFLIGHT_BATCHES)
            .min(self.outbox.limits().max_entries / 2)
            .max(1)
    }

    /// Tells the outbox that boot `ordinal` is re-sent from its watermark: what was dropped
    /// after being read and is not acknowledged yet can no longer be re-sent, so it is booked.
    fn rewind_outbox(&self, ordinal: u64) {
        if let Err(e) = self.outbox.rewind(ordinal) {
            events::StorageFailed {
                op: "rewind",
                error: &e,
            }
            .emit();
        }
    }

    /// Goes back to the watermark for every boot with unacked published entries (and books
    /// their unbooked drops); the stalled back-off starts over.
    fn rewind_all(&mut self, reason: ResendReason) {
        let now = Instant::now();
        let boots = self.outbox.boots();
        for boot in boots {
            self.rewind_outbox(boot.ordinal);
            if let Some(c) = self.cursors.get_mut(&boot.ordinal) {
                if boot.watermark > c.watermark {
                    c.watermark_moved(boot.watermark, now);
                }
                // What went ahead on the old connection may be lost with it.
                c.gaps_ahead_upto = c.watermark;
                c.stalled_resends = 0;
                if c.published_upto > c.watermark {
                    events::Resend {
                        boot: &boot.id,
                        watermark: c.watermark,
                        published_upto: c.published_upto,
                        reason,
                    }
                    .emit();
                    c.published_upto = c.watermark;
                    c.last_progress = now;
                }
            }
        }
    }

    /// Publishes what is due; returns when it next needs to wake (linger or re-send timer).
    async fn pump(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut soonest = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        // A failing store: what it lost goes ahead of everything, from memory (see "Store
        // failures" in `outbox.rs`); offered again until a send succeeds, and stored and sent
        // again by recovery in any case.
        if self.outbox.is_store_failing() {
            if let Some((boot, gaps)) = self.outbox.take_memory_gaps() {
                if self.send(&boot, &gaps).await.is_ok() {
                    self.outbox.memory_gaps_published();
                    self.count_published(gaps.len(), 0);
                }
            }
            soonest(now + Duration::from_secs(1));
        }
        let boots = self.outbox.boots();
        let gone: Vec<u64> = self
            .cursors
            .keys()
            .copied()
            .filter(|ordinal| !boots.iter().any(|b| b.ordinal == *ordinal))
            .collect();
        for ordinal in gone {
            // A boot leaves the outbox when its watermark covered everything.
            if let Some(mut c) = self.cursors.remove(&ordinal) {
                let upto = c.max_published.max(c.watermark);
                c.watermark_moved(upto, now);
            }
        }
        let window = self.window();
        for boot in boots {
            let mut c = self
                .cursors
                .get(&boot.ordinal)
                .cloned()
                .unwrap_or_else(|| Cursor::new(&boot.id, boot.watermark, now));
            if boot.watermark > c.watermark {
                c.watermark_moved(boot.watermark, now);
            }
            c.published_upto = c.published_upto.max(c.watermark);
            let resend_allowed = self.stalled_resend_allowed();
            if resend_allowed
                && c.published_upto > c.watermark
                && now >= c.last_progress + self.resend_delay(&c)
            {
                events::Resend {
                    boot: &boot.id,
                    watermark: c.watermark,
                    published_upto: c.published_upto,
                    reason: ResendReason::Stalled,
                }
                .emit();
                c.published_upto = c.watermark;
                c.gaps_ahead_upto = c.watermark;
                c.last_progress = now;
                c.stalled_resends = c.stalled_resends.saturating_add(1);
                self.rewind_outbox(boot.ordinal);
            }
            let outcome = self
                .publish_boot(
                    &boot.id,
                    boot.ordinal,
                    boot.last_seq,
                    boot.is_current,
                    &mut c,
                    window,
                    now,
                )
                .await;
            if let Some(t) = outcome {
                soonest(t);
            }
            if resend_allowed && c.published_upto > c.watermark {
                soonest(c.last_progress + self.resend_delay(&c));
            }
            if let Some(t) = self.check_unacked(&mut c, now) {
                soonest(t);
            }
            self.cursors.insert(boot.ordinal, c);
        }
        self.show_unacked();
        wake
    }

    /// Raises the alarm of boot cursor `c` when its published entries waited
    /// `unacked_alarm`; otherwise returns when they will have.
    fn check_unacked(&self, c: &mut Cursor, now: Instant) -> Option<Instant> {
        if !c.outstanding() {
            c.unacked_since = None;
            return None;
        }
        let (since, _) = c.unacked_since?;
        if c.alarmed {
            return None;
        }
        let due = since + self.unacked_alarm;
        if now < due {
            return Some(due);
        }
        c.alarmed = true;
        self.stats.unacked_alarms.fetch_add(1, Ordering::Relaxed);
        events::UnackedAlarm {
            boot: &c.id,
            oldest_seq: c.watermark + 1,
            published_upto: c.max_published,
            age: now.saturating_duration_since(since),
        }
        .emit();
        None
    }

    /// Publishes the oldest waiting stretch for the health endpoint.
    fn show_unacked(&self) {
        let oldest = self
            .cursors
            .values()
            .filter(|c| c.outstanding())
            .filter_map(|c| c.unacked_since.map(|(at, ms)| (at, ms, c)))
            .min_by_key(|(at, _, _)| *at)
            .map(|(_, since_ms, c)| Unacknowledged {
                boot: c.id.clone(),
                oldest_seq: c.watermark + 1,
                published_upto: c.max_published,
                since_ms,
                alarm: c.alarmed,
            });
        self.stats.set_unacknowledged(oldest);
    }

    /// Publishes the due entries of one boot: gap records ahead of the window, then the next
    /// entries in seq order as far as the window allows. Returns a linger deadline if it waits
    /// for more.
    #[allow(clippy::too_many_arguments)]
    async fn publish_boot(
        &self,
        boot: &str,
        ordinal: u64,
        last_seq: u64,
        is_current: bool,
        c: &mut Cursor,
        window: usize,
        now: Instant,
    ) -> Option<Instant> {
        let batch_max = self.settings.batch_max_entries;
        let retry = Some(now + Duration::from_secs(1));
        loop {
            // The window pass: what the window allows, unless a small batch lingers.
            let mut linger_until = None;
            let mut entries = Vec::new();
            if last_seq > c.published_upto {
                // The window counts entries, not seqs: seqs dropped at the cap leave holes, and
                // the oldest entries present must always be publishable.
                let in_flight = self
                    .outbox
                    .count(ordinal, c.watermark, c.published_upto, window);
                if in_flight < window {
                    let room = (window - in_flight).min(batch_max);
                    let fresh = c.published_upto >= c.max_published;
                    if is_current
                        && fresh
                        && self.outbox.count(ordinal, c.published_upto, last_seq, room) < room
                        && !self.outbox.urgent_after(ordinal, c.published_upto)
                    {
                        let since = *c.pending_since.get_or_insert(now);
                        if now < since + self.settings.linger {
                            linger_until = Some(since + self.settings.linger);
                        }
                    }
                    if linger_until.is_none() {
                        entries = match self.outbox.read(ordinal, c.published_upto, last_seq, room)
                        {
                            Ok(e) => e,
                            Err(e) => {
                                // During a store-failing episode the outbox logged it once.
                                if !self.outbox.is_store_failing() {
                                    events::StorageFailed {
                                        op: "read",
                                        error: &e,
                                    }
                                    .emit();
                                }
                                return retry;
                            }
                        };
                        if entries.is_empty() {
                            // Everything left was dropped at the cap (and booked, or waiting
                            // for the watermark as an unbooked drop).
                            c.published_upto = last_seq;
                            continue;
                        }
                    }
                }
            }
            let pass_upto = entries.last().map(Entry::seq);
            // Gap records beyond the pass go ahead of it, whatever the window holds. They are
            // read (which freezes the open one) after the pass: by then the oldest entries, the
            // next to be dropped at the cap, are read, so a drop racing the collector's ack is
            // held for that ack instead of needing a new gap record.
            let ahead_after = pass_upto.unwrap_or(c.published_upto).max(c.gaps_ahead_upto);
            let gaps = match self
                .outbox
                .read_gaps(ordinal, ahead_after, last_seq, batch_max)
            {
                Ok(g) => g,
                Err(e) => {
                    if !self.outbox.is_store_failing() {
                        events::StorageFailed {
                            op: "read",
                            error: &e,
                        }
                        .emit();
                    }
                    return retry;
                }
            };
            // Gap records the pass meets again already went ahead.
            let sent_ahead = c.gaps_ahead_upto;
            entries.retain(|e| !matches!(e, Entry::Gap(g) if g.seq <= sent_ahead));
            if gaps.is_empty() && pass_upto.is_none() {
                return linger_until;
            }
            if self.outbox.ensure_durable().await.is_err() {
                // The outbox counts it and logs once per store-failing episode.
                return retry;
            }
            if let Some(last_gap) = gaps.last().map(Entry::seq) {
                if self.send(boot, &gaps).await.is_err() {
                    return retry;
                }
                let resent = gaps
                    .iter()
                    .filter(|g| g.seq() <= c.max_gap_ahead.max(c.max_published))
                    .count();
                self.count_published(gaps.len(), resent);
                c.gaps_ahead_upto = last_gap;
                c.max_gap_ahead = c.max_gap_ahead.max(last_gap);
            }
            let Some(last) = pass_upto else {
                // Only gap records went: the window is full or a batch lingers.
                continue;
            };
            if self.send(boot, &entries).await.is_err() {
                return retry;
            }
            let resent = entries
                .iter()
                .filter(|e| e.seq() <= c.max_published)
                .count();
            self.count_published(entries.len(), resent);
            if c.published_upto == c.watermark {
                // An unacked stretch begins; the re-send timer counts from here.
                c.last_progress = now;
            }
            if c.unacked_since.is_none() {
                c.unacked_since = Some((now, wall_ms(now)));
            }
            c.published_upto = last;
            c.max_published = c.max_published.max(last);
            c.pending_since = None;
        }
    }

    /// Publishes `entries` (one boot, seq order) in batches.
    async fn send(&self, boot: &str, entries: &[Entry]) -> Result<(), PublishError> {
        for batch in build_batches(
            &self.site,
            &self.agent,
            boot,
            entries,
            self.settings.batch_max_entries,
            self.max_payload,
        ) {
            let (entries, bytes, channel) = (batch.entries, batch.payload.len(), batch.channel);
            if let Err(e) = self.sink.publish(channel, batch.payload).await {
                events::PublishFailed { error: &e }.emit();
                return Err(e);
            }
            events::BatchPublished {
                channel: channel.suffix(),
                boot,
                entries,
                bytes,
            }
            .emit();
        }
        Ok(())
    }

    fn count_published(&self, entries: usize, resent: usize) {
        self.stats
            .published
            .fetch_add(entries as u64, Ordering::Relaxed);
        self.stats
            .resent
            .fetch_add(resent as u64, Ordering::Relaxed);
    }

    /// Runs until `shutdown`. Publishes only while connected; re-sends as the module docs say.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut epoch_seen = 0;
        let mut link_open = true;
        let mut presence_open = true;
        // A new connection owes a re-send from the watermark, due once a collector is online.
        let mut owed_resend = false;
        // Until then (at most NO_COLLECTOR_GRACE), a new connection waits for the retained
        // collector states before it publishes.
        let mut hold_until: Option<Instant> = None;
        let mut was_online = false;
        loop {
            let link = *self.link.borrow_and_update();
            let presence = *self.presence.borrow_and_update();
            let now = Instant::now();
            let wake = if link.connected {
                if link.epoch != epoch_seen {
                    epoch_seen = link.epoch;
                    self.connection_restarted();
                    owed_resend = true;
                    hold_until = Some(now + NO_COLLECTOR_GRACE);
                }
                if presence != Presence::Unknown || hold_until.is_some_and(|t| now >= t) {
                    hold_until = None;
                }
                match hold_until {
                    Some(t) => Some(t),
                    None => {
                        if owed_resend && presence != Presence::Offline {
                            owed_resend = false;
                            self.rewind_all(ResendReason::Reconnect);
                        } else if presence == Presence::Online && !was_online {
                            self.rewind_all(ResendReason::CollectorOnline);
                        }
                        was_online = presence == Presence::Online;
                        self.pump().await
                    }
                }
            } else {
                None
            };
            let timer = async move {
                match wake {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                changed = self.link.changed(), if link_open => {
                    if changed.is_err() {
                        // The MQTT task is gone: nothing more can be published.
                        link_open = false;
                    }
                }
                changed = self.presence.changed(), if presence_open => {
                    if changed.is_err() {
                        // No more news about collectors: the last known presence stands.
                        presence_open = false;
                    }
                }
                () = self.outbox.changed() => {}
                () = timer => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Measurement, OutboxLimits};
    use crate::testutil::FakeCollector;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use watchstand_shared::storage::MemoryStorage;
    use watchstand_shared::wire::v1::{
        decode, CapacitySample, GapReason, GapRecord, ProbeResult, ProbeState,
    };

    const T0: u64 = 1_800_000_000_000;

    fn result(seq: u64, error: Option<String>) -> ProbeResult {
        ProbeResult {
            seq,
            probe: "web".into(),
            kind: "http".into(),
            target: "http://127.0.0.1:8080/health".into(),
            observed_ms: T0 + seq,
            interval_ms: 10_000,
            state: if error.is_some() {
                ProbeState::Down
            } else {
                ProbeState::Up
            },
            latency_us: 1_000,
            error,
            metrics: Vec::new(),
        }
    }

    fn sample(seq: u64) -> CapacitySample {
        CapacitySample {
            seq,
            observed_ms: T0 + seq,
            cpu_pct: 12.5,
            load_1: 0.5,
            load_5: 0.4,
            load_15: 0.3,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            swap_used_bytes: 0,
            swap_total_bytes: 0,
            disks: Vec::new(),
            nets: Vec::new(),
            processes: None,
            uptime_s: None,
            fd_used: None,
            fd_max: None,
        }
    }

    fn seqs_of(batches: &[Outgoing]) -> Vec<u64> {
        let mut seqs = Vec::new();
        for b in batches {
            match b.channel {
                Channel::Results => {
                    let r: ResultBatch = decode(&b.payload, usize::MAX, T0).unwrap();
                    seqs.extend(r.results.iter().map(|r| r.seq));
                    seqs.extend(r.gaps.iter().map(|g| g.seq));
                }
                _ => {
                    let c: CapacityBatch = decode(&b.payload, usize::MAX, T0).unwrap();
                    seqs.extend(c.samples.iter().map(|s| s.seq));
                }
            }
        }
        seqs.sort_unstable();
        seqs
    }

    #[test]
    fn batches_hold_at_most_batch_max_entries() {
        let entries: Vec<Entry> = (1..=25).map(|s| Entry::Result(result(s, None))).collect();
        let batches = build_batches("lab", "a1", "0123456789abcdef", &entries, 10, 256 * 1024);
        let sizes: Vec<usize> = batches.iter().map(|b| b.entries).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(seqs_of(&batches), (1..=25).collect::<Vec<_>>());
    }

    #[test]
    fn batches_never_exceed_the_payload_limit() {
        let entries: Vec<Entry> = (1..=200)
            .map(|s| Entry::Result(result(s, Some("é".repeat(150)))))
            .collect();
        for limit in [1_000, 4_096, 20_000] {
            let batches = build_batches("lab", "a1", "0123456789abcdef", &entries, 500, limit);
            for b in &batches {
                assert!(b.payload.len() <= limit, "{} > {limit}", b.payload.len());
                assert!(b.entries >= 1);
            }
            assert_eq!(
                seqs_of(&batches),
                (1..=200).collect::<Vec<_>>(),
                "every entry once"
            );
        }
    }

    #[test]
    fn results_and_gaps_go_to_results_and_samples_to_capacity() {
        let entries = vec![
            Entry::Result(result(1, None)),
            Entry::Capacity(sample(2)),
            Entry::Gap(GapRecord {
                seq: 3,
                boot: "old".into(),
                from_seq: 1,
                to_seq: 9,
                from_ms: T0,
                to_ms: T0 + 9,
                reason: GapReason::OutboxFull,
            }),
            Entry::Result(result(4, Some("refused".into()))),
        ];
        let batches = build_batches("lab", "a1", "b1", &entries, 500, 64 * 1024);
        assert_eq!(batches.len(), 2);
        let r: ResultBatch = decode(&batches[0].payload, usize::MAX, T0).unwrap();
        assert_eq!(batches[0].channel, Channel::Results);
        assert_eq!(
            r.results.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(
            (r.site.as_str(), r.agent.as_str(), r.boot.as_str()),
            ("lab", "a1", "b1")
        );
        let c: CapacityBatch = decode(&batches[1].payload, usize::MAX, T0).unwrap();
        assert_eq!(batches[1].channel, Channel::Capacity);
        assert_eq!(c.samples[0].seq, 2);
    }

    #[test]
    fn max_entry_bytes_leaves_room_for_the_envelope_and_topic() {
        let topics = TopicLayout::default();
        let limit = max_entry_bytes(4_096, &topics, "lab", "a1");
        let topic = topics.agent("lab", "a1", Channel::Capacity);
        assert!(limit + envelope_bytes("lab", "a1", 64) + topic.len() + 9 <= 4_096);
        assert!(limit > 3_500, "{limit}");
    }

    /// A sink that records payloads by seq.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Outgoing>>>);

    impl Sink for Recorder {
        async fn publish(&self, channel: Channel, payload: Vec<u8>) -> Result<(), PublishError> {
            self.0.lock().unwrap().push(Outgoing {
                channel,
                payload,
                entries: 0,
            });
            Ok(())
        }
    }

    impl Recorder {
        fn seqs(&self) -> Vec<u64> {
            let all = self.0.lock().unwrap().clone();
            let mut out = Vec::new();
            for b in all {
                let r: ResultBatch = decode(&b.payload, usize::MAX, T0).unwrap();
                out.extend(r.results.iter().map(|r| r.seq));
            }
            out
        }
        fn clear(&self) {
            self.0.lock().unwrap().clear();
        }
    }

    impl Recorder {
        fn gaps(&self) -> Vec<GapRecord> {
            let all = self.0.lock().unwrap().clone();
            all.iter()
                .flat_map(|b| {
                    decode::<ResultBatch>(&b.payload, usize::MAX, T0)
                        .unwrap()
                        .gaps
                })
                .collect()
        }
    }

    struct Rig {
        outbox: Arc<Outbox>,
        sink: Recorder,
        link: watch::Sender<LinkState>,
        presence: watch::Sender<Presence>,
        stop: CancellationToken,
        stats: Arc<PublisherStats>,
    }

    fn rig(batch_max_entries: usize) -> Rig {
        rig_capped(batch_max_entries, 100_000)
    }

    fn rig_capped(batch_max_entries: usize, max_entries: usize) -> Rig {
        rig_with(batch_max_entries, max_entries, Duration::from_secs(30))
    }

    fn rig_with(batch_max_entries: usize, max_entries: usize, unacked_alarm: Duration) -> Rig {
        let outbox = Arc::new(
            Outbox::open(
                Arc::new(MemoryStorage::new()),
                OutboxLimits {
                    max_entries,
                    max_bytes: u64::MAX,
                    max_entry_bytes: 64 * 1024,
                },
            )
            .unwrap(),
        );
        let sink = Recorder::default();
        let (link, link_rx) = watch::channel(LinkState::default());
        let (presence, presence_rx) = watch::channel(Presence::Unknown);
        let publisher = Publisher::new(
            outbox.clone(),
            sink.clone(),
            link_rx,
            "lab",
            "a1",
            PublishSettings {
                batch_max_entries,
                linger: Duration::from_millis(200),
            },
            Duration::from_secs(15),
            unacked_alarm,
            256 * 1024,
        )
        .with_presence(presence_rx);
        let stats = publisher.stats();
        let stop = CancellationToken::new();
        tokio::spawn(publisher.run(stop.clone()));
        Rig {
            outbox,
            sink,
            link,
            presence,
            stop,
            stats,
        }
    }

    impl Rig {
        fn append(&self, n: u64) {
            for _ in 0..n {
                self.outbox
                    .append(Measurement::Result(result(0, None)))
                    .unwrap();
            }
        }
        /// Connects, and a collector is online (its retained state came with the connection).
        fn connect(&self, epoch: u64) {
            self.connect_to(epoch, Presence::Online);
        }
        /// Connects to a broker where collectors are as `presence` says.
        fn connect_to(&self, epoch: u64, presence: Presence) {
            self.presence.send_replace(presence);
            self.link.send_replace(LinkState {
                connected: true,
                epoch,
            });
        }
        /// As the MQTT task does: the connection and what it said about collectors are gone.
        fn disconnect(&self) {
            self.link.send_modify(|l| l.connected = false);
            self.presence.send_replace(Presence::Unknown);
        }
        /// How many times seq `seq` of the current boot was published.
        fn copies(&self, seq: u64) -> usize {
            self.sink.seqs().iter().filter(|s| **s == seq).count()
        }
        /// Hands `collector` what was published since `fed` and applies its ack.
        fn deliver(&self, collector: &mut FakeCollector, fed: &mut usize) {
            collector_feed(self, collector, fed);
            let boot = self.outbox.boot_id();
            self.outbox
                .apply_ack(&boot, collector.watermark(&boot))
                .unwrap();
        }
    }

    async fn settle(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_published_while_disconnected_and_everything_after_connect() {
        let rig = rig(100);
        rig.append(5);
        settle(1_000).await;
        assert!(rig.sink.seqs().is_empty());
        rig.connect(1);
        settle(1_000).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3, 4, 5]);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_batch_waits_for_linger_and_a_full_one_goes_at_once() {
        let rig = rig(10);
        rig.connect(1);
        settle(10).await;
        rig.append(3);
        settle(100).await;
        assert!(rig.sink.seqs().is_empty(), "lingering");
        settle(200).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3]);
        rig.sink.clear();
        rig.append(10);
        settle(1).await;
        assert_eq!(
            rig.sink.seqs(),
            (4..=13).collect::<Vec<_>>(),
            "full batch without linger"
        );
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_change_is_published_at_once_and_unchanged_results_keep_lingering() {
        let rig = rig(10);
        rig.connect(1);
        settle(10).await;
        let append = |state: Option<&str>| {
            rig.outbox
                .append(Measurement::Result(result(0, state.map(str::to_owned))))
                .unwrap();
        };
        // The first result of a probe, up: nothing to hurry.
        append(None);
        settle(100).await;
        assert!(rig.sink.seqs().is_empty(), "an up first result lingers");
        settle(200).await;
        assert_eq!(rig.sink.seqs(), vec![1]);
        rig.sink.clear();
        // Unchanged: lingers; then the probe goes down: that result and the pending one go at
        // once.
        append(None);
        settle(50).await;
        assert!(rig.sink.seqs().is_empty(), "unchanged results linger");
        append(Some("503"));
        settle(1).await;
        assert_eq!(rig.sink.seqs(), vec![2, 3], "the change goes at once");
        rig.sink.clear();
        // Still down: unchanged again, lingers.
        append(Some("503"));
        settle(50).await;
        assert!(rig.sink.seqs().is_empty(), "still down: lingers");
        settle(200).await;
        assert_eq!(rig.sink.seqs(), vec![4]);
        rig.sink.clear();
        // The recovery is a change too.
        append(None);
        settle(1).await;
        assert_eq!(rig.sink.seqs(), vec![5], "the recovery goes at once");
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_result_that_is_not_up_goes_at_once() {
        let rig = rig(10);
        rig.connect(1);
        settle(10).await;
        rig.outbox
            .append(Measurement::Result(result(0, Some("refused".into()))))
            .unwrap();
        settle(1).await;
        assert_eq!(rig.sink.seqs(), vec![1]);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn publishing_stops_at_the_in_flight_window_until_the_watermark_moves() {
        let rig = rig(10);
        rig.append(200);
        rig.connect(1);
        settle(1_000).await;
        let window = (10 * INFLIGHT_BATCHES) as u64;
        assert!(
            window < 100_000 / 2,
            "the outbox cap does not shrink the window here"
        );
        assert_eq!(rig.sink.seqs(), (1..=window).collect::<Vec<_>>());
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 50).unwrap();
        settle(1_000).await;
        assert_eq!(*rig.sink.seqs().last().unwrap(), 50 + window);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn acked_entries_are_not_resent_and_a_stalled_watermark_triggers_a_resend() {
        let rig = rig(100);
        rig.connect(1);
        rig.append(10);
        settle(1_000).await;
        assert_eq!(rig.sink.seqs().len(), 10);
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 6).unwrap();
        rig.sink.clear();
        settle(10_000).await;
        assert!(rig.sink.seqs().is_empty(), "no re-send before resend_after");
        settle(6_000).await;
        assert_eq!(
            rig.sink.seqs(),
            vec![7, 8, 9, 10],
            "re-sent from the watermark"
        );
        assert_eq!(rig.stats.resent.load(Ordering::Relaxed), 4);
        assert_eq!(rig.stats.published.load(Ordering::Relaxed), 14);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_resends_everything_above_the_watermark() {
        let rig = rig(100);
        rig.connect(1);
        rig.append(8);
        settle(1_000).await;
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 3).unwrap();
        rig.disconnect();
        settle(100).await;
        rig.sink.clear();
        rig.connect(2);
        settle(100).await;
        assert_eq!(rig.sink.seqs(), vec![4, 5, 6, 7, 8]);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_resends_back_off_doubling_up_to_eight_times_resend_after() {
        let rig = rig(100);
        rig.connect(1);
        rig.append(3);
        settle(1_000).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3]);
        // Published at 0.2 s; nobody acks. Watch for 400 s, one-second steps.
        let mut resends_at = Vec::new();
        let mut copies = 1;
        for second in 1..=400_u64 {
            settle(1_000).await;
            let now = rig.copies(1);
            if now > copies {
                assert_eq!(now, copies + 1, "one re-send at a time");
                copies = now;
                resends_at.push(second);
            }
        }
        // resend_after = 15 s: 15, then 30, 60, 120 (the cap, 8 × 15 s), 120, …
        assert_eq!(resends_at, vec![15, 45, 105, 225, 345], "{resends_at:?}");
        assert_eq!(rig.stats.resent.load(Ordering::Relaxed), 3 * 5);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_moving_watermark_resets_the_back_off() {
        let rig = rig(100);
        rig.connect(1);
        rig.append(10);
        settle(1_000).await;
        // Two stalled re-sends (15.2 s, 45.2 s): the next would wait 60 s.
        settle(50_000).await;
        assert_eq!(rig.copies(1), 3);
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 5).unwrap();
        rig.sink.clear();
        settle(14_000).await;
        assert!(
            rig.sink.seqs().is_empty(),
            "15 s after the move, not before"
        );
        settle(2_000).await;
        assert_eq!(
            rig.sink.seqs(),
            vec![6, 7, 8, 9, 10],
            "back to resend_after"
        );
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_resent_while_no_collector_is_online_and_once_when_one_comes_online() {
        let rig = rig(100);
        rig.connect_to(1, Presence::Offline);
        rig.append(5);
        settle(1_000).await;
        // First sends still go: the broker queues them for the collector's session.
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3, 4, 5]);
        settle(600_000).await;
        assert_eq!(
            rig.sink.seqs(),
            vec![1, 2, 3, 4, 5],
            "10 min with the collector offline: no re-send"
        );
        assert_eq!(rig.stats.resent.load(Ordering::Relaxed), 0);
        rig.sink.clear();
        rig.presence.send_replace(Presence::Online);
        settle(10).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3, 4, 5], "once, at once");
        settle(14_000).await;
        assert_eq!(
            rig.sink.seqs().len(),
            5,
            "no second copy before resend_after"
        );
        // It goes away again, and comes back: one more re-send.
        rig.presence.send_replace(Presence::Offline);
        settle(600_000).await;
        assert_eq!(rig.sink.seqs().len(), 5);
        rig.presence.send_replace(Presence::Online);
        settle(10).await;
        assert_eq!(rig.sink.seqs().len(), 10);
        assert_eq!(rig.stats.resent.load(Ordering::Relaxed), 10);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_resends_only_once_a_collector_is_online() {
        let rig = rig(100);
        rig.connect(1);
        rig.append(5);
        settle(1_000).await;
        rig.disconnect();
        rig.sink.clear();
        rig.connect_to(2, Presence::Offline);
        settle(1_000).await;
        assert!(
            rig.sink.seqs().is_empty(),
            "nothing re-sent to an absent collector"
        );
        rig.append(2);
        settle(1_000).await;
        assert_eq!(rig.sink.seqs(), vec![6, 7], "new entries still go");
        rig.presence.send_replace(Presence::Online);
        settle(10).await;
        assert_eq!(rig.sink.seqs(), vec![6, 7, 1, 2, 3, 4, 5, 6, 7]);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn where_no_collector_announces_itself_the_agent_falls_back_to_backed_off_resends() {
        let rig = rig(100);
        rig.append(3);
        rig.connect_to(1, Presence::Unknown);
        settle(1_000).await;
        assert!(
            rig.sink.seqs().is_empty(),
            "waits for the retained collector states first"
        );
        settle(2_500).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3], "published after the grace");
        settle(16_000).await;
        assert_eq!(rig.copies(1), 2, "re-sent after resend_after");
        // Published at 3.2 s, re-sent at 18.2 s; the next one is due at 48.2 s.
        settle(28_000).await;
        assert_eq!(rig.copies(1), 2, "then after 2 × resend_after, not before");
        settle(2_000).await;
        assert_eq!(rig.copies(1), 3);
        rig.stop.cancel();
    }

    fn alarms(rig: &Rig) -> u64 {
        rig.stats.unacked_alarms.load(Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn published_entries_the_collector_never_acks_raise_one_alarm_until_the_watermark_moves()
    {
        let rig = rig_with(100, 100_000, Duration::from_secs(5));
        rig.connect(1);
        rig.append(3);
        settle(1_000).await;
        assert_eq!(rig.sink.seqs(), vec![1, 2, 3]);
        let waiting = rig.stats.unacknowledged().unwrap();
        assert_eq!(
            (waiting.oldest_seq, waiting.published_upto, waiting.alarm),
            (1, 3, false)
        );
        assert_eq!(waiting.boot, rig.outbox.boot_id());
        settle(3_000).await;
        assert!(!rig.stats.unacknowledged().unwrap().alarm, "4 s < 5 s");
        assert_eq!(alarms(&rig), 0);
        settle(1_500).await;
        let alarm = rig.stats.unacknowledged().unwrap();
        assert!(alarm.alarm, "published 200 ms in, 5 s passed: {alarm:?}");
        assert_eq!(
            alarm.since_ms, waiting.since_ms,
            "the clock did not restart"
        );
        assert_eq!(alarms(&rig), 1);

        // The stalled re-send (15 s) publishes again; the episode goes on, one alarm.
        settle(15_000).await;
        assert!(rig.stats.resent.load(Ordering::Relaxed) >= 3);
        assert_eq!(rig.stats.unacknowledged().unwrap(), alarm);
        assert_eq!(alarms(&rig), 1, "once per episode");

        // A partial ack moves the watermark: the episode ends, the clock restarts for the rest.
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 2).unwrap();
        settle(10).await;
        let rest = rig.stats.unacknowledged().unwrap();
        assert_eq!((rest.oldest_seq, rest.alarm), (3, false));
        // (since_ms is wall-clock time, which paused tokio time does not move.)
        settle(4_900).await;
        assert_eq!(alarms(&rig), 1, "the clock restarted at the ack");
        settle(200).await;
        assert!(rig.stats.unacknowledged().unwrap().alarm, "a new episode");
        assert_eq!(alarms(&rig), 2);

        // Everything acked: nothing waits.
        rig.outbox.apply_ack(&rig.outbox.boot_id(), 3).unwrap();
        settle(10).await;
        assert_eq!(rig.stats.unacknowledged(), None);
        settle(30_000).await;
        assert_eq!(alarms(&rig), 2);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn the_unacked_clock_counts_connected_time_only() {
        let rig = rig_with(100, 100_000, Duration::from_secs(5));
        rig.connect(1);
        rig.append(2);
        settle(1_000).await;
        rig.disconnect();
        settle(30_000).await;
        assert_eq!(alarms(&rig), 0, "no broker: not the collector's silence");
        rig.connect(2);
        settle(4_000).await;
        assert_eq!(alarms(&rig), 0, "the clock restarted on the new connection");
        assert!(!rig.stats.unacknowledged().unwrap().alarm);
        settle(1_500).await;
        assert_eq!(alarms(&rig), 1);
        assert!(rig.stats.unacknowledged().unwrap().alarm);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_steadily_moving_watermark_never_raises_the_alarm() {
        let rig = rig_with(10, 100_000, Duration::from_secs(5));
        rig.connect(1);
        let boot = rig.outbox.boot_id();
        for _ in 0..60 {
            rig.append(10);
            settle(500).await;
            let max = rig.sink.seqs().into_iter().max().unwrap();
            // The collector lags one batch behind.
            rig.outbox.apply_ack(&boot, max.saturating_sub(10)).unwrap();
        }
        assert_eq!(alarms(&rig), 0);
        assert!(!rig.stats.unacknowledged().unwrap().alarm);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_overflow_the_oldest_entries_left_and_the_gap_record_are_delivered() {
        let rig = rig_capped(100, 20);
        rig.append(50);
        let present = rig.outbox.count(1, 0, u64::MAX, usize::MAX);
        assert_eq!(present, 20);
        rig.connect(1);
        let boot = rig.outbox.boot_id();
        // A collector that acks its contiguous watermark: the outbox drains completely.
        let mut collector = FakeCollector::default();
        let mut delivered = 0;
        for _ in 0..10 {
            settle(500).await;
            rig.deliver(&mut collector, &mut delivered);
        }
        assert_eq!(rig.outbox.stats().entries, 0);
        let gaps = rig.sink.gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].from_seq, 1);
        let results = rig.sink.seqs();
        assert_eq!(results.len(), 19);
        assert_eq!(*results.first().unwrap(), gaps[0].to_seq + 1);
        assert_eq!(collector.watermark(&boot), rig.outbox.boots()[0].last_seq);
        rig.stop.cancel();
    }

    /// The rig's outbox seqs dropped while it held them (not in the outbox, never published).
    fn published_seqs(rig: &Rig) -> BTreeSet<u64> {
        let mut all: BTreeSet<u64> = rig.sink.seqs().into_iter().collect();
        all.extend(rig.sink.gaps().iter().map(|g| g.seq));
        all
    }

    /// The blocked-window situation: the broker goes away with entries in flight, the outbox
    /// overflows until the gap record sits behind more entries than the window holds, then the
    /// broker comes back while results keep coming at their interval, the outbox at its cap.
    /// Returns the rig, the collector, how far it was fed, and the seqs of the results the
    /// collector never got before the broker went away.
    async fn overflow_then_reconnect(
        collector_lag_ms: u64,
    ) -> (Rig, FakeCollector, usize, BTreeSet<u64>) {
        // Window = min(10 × 8, 200 / 2) = 80 entries.
        let rig = rig_capped(10, 200);
        let mut collector = FakeCollector::default();
        let mut fed = 0;
        rig.connect(1);
        // Steady state: one result per 100 ms, acked as it goes.
        for _ in 0..30 {
            rig.append(1);
            settle(100).await;
            rig.deliver(&mut collector, &mut fed);
        }
        assert_eq!(rig.outbox.stats().entries, 0);
        // Three more are published and stored, but the broker dies before their ack comes back.
        rig.append(3);
        settle(300).await;
        collector_feed(&rig, &mut collector, &mut fed);
        rig.disconnect();
        // 250 results while the broker is away: 3 + 250 + the gap record over the cap of 200
        // drops 54, the 3 in flight (seqs 31..=33) and 51 never sent (34..=84), and the gap
        // record ends up behind ~145 entries, beyond the window of 80.
        rig.append(250);
        settle(100).await;
        let stats = rig.outbox.stats();
        assert_eq!(
            (stats.entries, stats.dropped, stats.gap_records),
            (200, 54, 1)
        );
        let sent = published_seqs(&rig);
        let never_sent: BTreeSet<u64> = (1..=rig.outbox.boots()[0].last_seq)
            .filter(|s| !sent.contains(s) && rig.outbox.count(1, s - 1, *s, 1) == 0)
            .collect();
        rig.sink.clear();
        fed = 0;
        rig.connect(2);
        settle(1).await;
        // Results keep coming; the collector comes back `collector_lag_ms` after the agent.
        let mut t = 0;
        while t < 5_000 {
            if t >= collector_lag_ms {
                rig.deliver(&mut collector, &mut fed);
            }
            rig.append(1);
            settle(100).await;
            t += 100;
        }
        // The last result lingers for its batch.
        settle(500).await;
        rig.deliver(&mut collector, &mut fed);
        (rig, collector, fed, never_sent)
    }

    /// Feeds the collector without acking (the ack is lost with the broker).
    fn collector_feed(rig: &Rig, collector: &mut FakeCollector, fed: &mut usize) {
        let all = rig.sink.0.lock().unwrap().clone();
        for b in &all[*fed..] {
            collector.ingest(b.channel, &b.payload, T0);
        }
        *fed = all.len();
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_record_behind_a_full_window_goes_ahead_and_books_only_what_never_arrived() {
        let (rig, collector, _, never_sent) = overflow_then_reconnect(0).await;
        let boot = rig.outbox.boot_id();
        // The first thing published on the new connection is the gap record, alone.
        let first: ResultBatch =
            decode(&rig.sink.0.lock().unwrap()[0].payload, usize::MAX, T0).unwrap();
        assert_eq!((first.results.len(), first.gaps.len()), (0, 1), "{first:?}");
        // One gap record, booking the 51 results never sent and the 3 whose ack was lost with
        // the broker (the agent cannot know the collector has them), nothing published later.
        let gaps = collector.gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(rig.outbox.stats().gap_records, 1);
        let gap = &gaps[0];
        assert_eq!((gap.from_seq, gap.to_seq), (31, 84), "{gap:?}");
        assert_eq!(
            never_sent,
            (34..=84).collect(),
            "the 3 in flight were sent, the rest was not"
        );
        let stored = collector.results(&boot);
        let needless: Vec<u64> = (gap.from_seq..=gap.to_seq)
            .filter(|s| stored.contains(s))
            .collect();
        assert_eq!(
            needless,
            vec![31, 32, 33],
            "only what was in flight at the outage"
        );
        let stats = rig.outbox.stats();
        assert_eq!(
            stats.dropped_delivered, 0,
            "the collector acked at once: {stats:?}"
        );
        // Drained: the first ack after the reconnect covered the range and the window.
        assert!(stats.entries <= 2, "{stats:?}");
        let last = rig.outbox.boots()[0].last_seq;
        assert_eq!(
            collector.watermark(&boot),
            last,
            "nothing missing at the collector"
        );
        rig.outbox.check_integrity().unwrap();
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn drops_while_the_collector_lags_behind_the_broker_wait_for_its_ack_and_are_not_booked()
    {
        // The broker is back but the collector reconnects 1.5 s after the agent: 15 more results
        // arrive at the cap, each dropping an entry published on the new connection.
        let (rig, collector, _, never_sent) = overflow_then_reconnect(1_500).await;
        let boot = rig.outbox.boot_id();
        let gaps = collector.gaps();
        assert_eq!(
            gaps.len(),
            1,
            "no second record for the drops that raced the ack: {gaps:?}"
        );
        assert_eq!((gaps[0].from_seq, gaps[0].to_seq), (31, 84));
        assert_eq!(never_sent, (34..=84).collect());
        let stats = rig.outbox.stats();
        assert_eq!(stats.gap_records, 1);
        assert_eq!(stats.dropped, 54 + 15, "{stats:?}");
        assert_eq!(
            stats.dropped_delivered, 15,
            "settled by the ack, not booked: {stats:?}"
        );
        let stored = collector.results(&boot);
        let last = rig.outbox.boots()[0].last_seq;
        assert_eq!(collector.watermark(&boot), last);
        // Every result the agent measured reached the collector except the 51 never sent.
        let missing: Vec<u64> = (1..=last)
            .filter(|s| !stored.contains(s) && !never_sent.contains(s) && *s != gaps[0].seq)
            .collect();
        assert_eq!(missing, Vec::<u64>::new());
        assert!(stats.entries <= 2, "{stats:?}");
        rig.outbox.check_integrity().unwrap();
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_books_drops_the_collector_never_got() {
        let rig = rig_capped(10, 40);
        let boot = rig.outbox.boot_id();
        rig.append(40);
        rig.connect(1);
        settle(10).await;
        // 20 published (the window), then 5 more results drop 5 of them: not booked.
        assert_eq!(rig.sink.seqs(), (1..=20).collect::<Vec<_>>());
        rig.append(5);
        settle(10).await;
        let stats = rig.outbox.stats();
        assert_eq!((stats.dropped, stats.gap_records), (5, 0), "{stats:?}");
        // The broker lost all of it; the next connection re-sends from the watermark, and the
        // 5 dropped entries can only be booked.
        rig.disconnect();
        rig.sink.clear();
        rig.connect(2);
        settle(10).await;
        let gaps = rig.sink.gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!((gaps[0].from_seq, gaps[0].to_seq), (1, 5));
        let mut collector = FakeCollector::default();
        let mut fed = 0;
        for _ in 0..10 {
            rig.deliver(&mut collector, &mut fed);
            settle(300).await;
        }
        assert_eq!(collector.watermark(&boot), rig.outbox.boots()[0].last_seq);
        assert_eq!(rig.outbox.stats().entries, 0);
        assert_eq!(rig.outbox.stats().dropped_delivered, 0);
        rig.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn entries_of_an_earlier_boot_are_sent_under_their_own_boot_id() {
        let storage = MemoryStorage::new();
        let limits = OutboxLimits {
            max_entries: 1_000,
            max_bytes: u64::MAX,
            max_entry_bytes: 64 * 1024,
        };
        let old_boot = {
            let old = Outbox::open(Arc::new(storage.clone()), limits).unwrap();
            for _ in 0..3 {
                old.append(Measurement::Result(result(0, None))).unwrap();
            }
            old.boot_id()
        };
        let outbox = Arc::new(Outbox::open(Arc::new(storage), limits).unwrap());
        outbox.append(Measurement::Result(result(0, None))).unwrap();
        let sink = Recorder::default();
        let (link, link_rx) = watch::channel(LinkState {
            connected: true,
            epoch: 1,
        });
        let publisher = Publisher::new(
            outbox.clone(),
            sink.clone(),
            link_rx,
            "lab",
            "a1",
            PublishSettings {
                batch_max_entries: 100,
                linger: Duration::from_millis(200),
            },
            Duration::from_secs(15),
            Duration::from_secs(30),
            256 * 1024,
        );
        let stop = CancellationToken::new();
        tokio::spawn(publisher.run(stop.clone()));
        settle(1_000).await;
        let batches = sink.0.lock().unwrap().clone();
        let decoded: Vec<ResultBatch> = batches
            .iter()
            .map(|b| decode(&b.payload, usize::MAX, T0).unwrap())
            .collect();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].boot, old_boot);
        assert_eq!(
            decoded[0].results.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(decoded[1].boot, outbox.boot_id());
        assert_eq!(decoded[1].results[0].seq, 1);
        stop.cancel();
        drop(link);
    }
}
