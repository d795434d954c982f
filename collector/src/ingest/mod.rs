//! Ingest: MQTT messages in, durable store writes out, then acknowledgements — in that order.
//!
//! Flow per batch (habit: one owner drains its inbox in batches):
//! 1. block for the first publish, drain more without waiting, up to `batch_max` messages and
//!    `batch_max_bytes` of payload (so a backlog of any size drains in fixed memory);
//! 2. decode each (v1 checks; topic/payload agreement), reject by reason, drop duplicates by
//!    (agent, boot, seq), book gap records;
//! 3. commit the batch to the store and flush it;
//! 4. only then PUBACK the MQTT messages (manual acks on a persistent session) and publish the
//!    retained ack watermark of every (agent, boot) the batch touched.
//!
//! Probe metrics (`metrics` of a result: Nagios perfdata, Modbus values) are written to the
//! capacity tree as metric `probe:{probe}:{name}` at the result's `observed_ms`, so the capacity
//! API serves them and raw retention prunes them like host samples.
//!
//! After the commit (before the acks) the [`StateWatch`], if any, hands the services whose
//! probes changed state in the batch to the engine task (never waiting: what a full queue does
//! not take is handed over with the next batch or at the next ack retry); ingest never
//! evaluates. Agents' answers to runbook commands (`cmd/ack`) are handed to the engine task
//! the same way (nothing of them is stored by ingest: the engine stores the attempt's outcome).
//!
//! **Ingest never waits on the MQTT driver** (the driver waits for room in ingest's inbox, so
//! the other direction would be a circular wait): PUBACKs and watermarks are queued with
//! `try_*` (one of each in turn); what does not fit in the client's request channel (full while the event loop waits
//! for the broker's PUBACKs behind the incoming backlog) is kept — a packet id per message, the
//! newest seq per (agent, boot) — and queued on the next round, at least every
//! [`ACK_RETRY`]. A stop never interrupts a commit; what is committed but not yet acknowledged
//! is redelivered and dropped as a duplicate. Health hears of every commit and every queued
//! ack, so outstanding work with no progress is reported ([`crate::health`]).
//!
//! A bad message never stops ingest: it is counted, logged and acknowledged (so the broker does
//! not redeliver it forever). A store failure does stop it: nothing may be acknowledged that is
//! not durable, and an operator must act.

pub mod dedup;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Publish, QoS};
use tokio_util::sync::CancellationToken;
use watchstand_shared::mqtt::Inbox;
use watchstand_shared::storage::Write;
use watchstand_shared::time::now_ms;
use watchstand_shared::topic::{AgentTopic, Channel, TopicLayout};
use watchstand_shared::wire::v1::{
    self, Ack, AgentState, CapacityBatch, CmdAck, Envelope, ProbeMetric, RejectReason, Rejection,
    ResultBatch, Status,
};

use crate::engine::EngineHandle;
use crate::events::{Counters, DuplicatesDropped, GapBooked, PayloadRejected};
use crate::health::HealthState;
use crate::incident::trigger::StateWatch;
use crate::registry::Registry;
use crate::rollup::dirty_marks;
use crate::store::{capacity_key, gap_key, trees, Store, StoreBatch};
use dedup::SeqTracker;

/// How often acks that did not fit in the client's request channel are tried again while no
/// message arrives.
pub const ACK_RETRY: Duration = Duration::from_millis(10);

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Topic layout.
    pub layout: TopicLayout,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
    /// Most messages per store batch.
    pub batch_max: usize,
    /// Most payload bytes per store batch (a batch holds at least one message).
    pub batch_max_bytes: usize,
}

/// The ingest task.
pub struct Ingest {
    config: IngestConfig,
    store: Store,
    client: AsyncClient,
    inbox: Inbox,
    registry: Arc<Registry>,
    counters: Arc<Counters>,
    /// Where ingest reports a busy batch and a failed store write.
    health: Arc<HealthState>,
    /// Dedup state per (agent, boot), loaded from the store at start.
    trackers: HashMap<(String, String), SeqTracker>,
    /// Spots probe state changes for event-driven incident evaluation.
    watch: Option<StateWatch>,
    /// Where agents' answers to runbook commands (`cmd/ack`) go: the engine task.
    answers: Option<EngineHandle>,
    /// PUBACKs of committed messages not yet queued: (QoS, packet id).
    /// PUBACKs to queue, oldest first: they go out in the order the messages came, because
    /// brokers may require it (rumqttd drops a client on an out-of-order ack).
    pending_pubacks: VecDeque<(QoS, u16)>,
    /// Watermarks not yet queued: the newest seq per (site, agent, boot).
    pending_watermarks: BTreeMap<(String, String, String), u64>,
    /// A watermark goes next (PUBACKs and watermarks take turns).
    watermark_turn: bool,
    /// The (site, agent, boot) whose watermark was queued last.
    last_watermark: Option<(String, String, String)>,
}

/// What one message contributed to a batch, for the acks after the commit.
#[derive(Default)]
struct BatchEffects {
    /// (site, agent, boot) whose watermark to publish.
    touched: BTreeSet<(String, String, String)>,
    /// Agents whose registry record changed.
    agents: BTreeSet<String>,
    /// Answers to commands, handed to the engine after the commit.
    answers: Vec<CmdAck>,
}

impl Ingest {
    /// An ingest task reading `inbox`, writing `store`, acknowledging through `client`.
    ///
    /// # Errors
    /// The dedup state in the store cannot be read.
    pub fn new(
        config: IngestConfig,
        store: Store,
        client: AsyncClient,
        inbox: Inbox,
        registry: Arc<Registry>,
        counters: Arc<Counters>,
        health: Arc<HealthState>,
    ) -> anyhow::Result<Self> {
        let mut trackers = HashMap::new();
        for (key, tracker) in store
            .load_all::<SeqTracker>(trees::SEQS)
            .context("loading dedup state")?
        {
            if let Some((agent, boot)) = trees::parse_seqs_key(&key) {
                trackers.insert((agent, boot), tracker);
            }
        }
        Ok(Self {
            config,
            store,
            client,
            inbox,
            registry,
            counters,
            health,
            trackers,
            watch: None,
            answers: None,
            pending_pubacks: VecDeque::new(),
            pending_watermarks: BTreeMap::new(),
            watermark_turn: false,
            last_watermark: None,
        })
    }

    /// Hands the services of probes that change state to the incident evaluator (after each
    /// commit).
    #[must_use]
    pub fn with_state_watch(mut self, watch: StateWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Hands agents' answers to runbook commands (`cmd/ack`) to the engine task (after each
    /// commit, never waiting: see [`EngineHandle::try_command_answer`]).
    #[must_use]
    pub fn with_command_answers(mut self, engine: EngineHandle) -> Self {
        self.answers = Some(engine);
        self
    }

    /// Runs until `shutdown` or until the inbox closes. Messages still in the inbox at shutdown
    /// are not acknowledged, so the broker redelivers them to the persistent session.
    ///
    /// # Errors
    /// A store failure (nothing of the failed batch was acknowledged; health says so first).
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let outcome = self.batches(&shutdown).await;
        if outcome.is_ok() {
            self.health.ingest_busy(None);
        }
        outcome
    }

    async fn batches(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                msg = self.inbox.recv() => match msg {
                    Some(m) => m,
                    None => break,
                },
                () = tokio::time::sleep(ACK_RETRY), if self.acks_pending() || self.hand_over_pending() => {
                    self.hand_over();
                    self.queue_acks();
                    continue;
                }
            };
            if self.health.ingest_busy_since() == 0 {
                self.health.ingest_busy(Some(now_ms()));
            }
            let mut bytes = first.payload.len();
            let mut msgs = vec![first];
            while msgs.len() < self.config.batch_max && bytes < self.config.batch_max_bytes {
                match self.inbox.try_recv() {
                    Some(m) => {
                        bytes += m.payload.len();
                        msgs.push(m);
                    }
                    None => break,
                }
            }
            if let Err(e) = self.commit(msgs).await {
                // Health says so before the collector stops (it exits; a restart is safe).
                self.health.store_write_failed(format!("{e:#}"));
                return Err(e);
            }
            self.health.ingest_busy(Some(now_ms()));
            self.queue_acks();
        }
        // One last try, without waiting: every ack that goes out saves a redelivery.
        self.queue_acks();
        if self.acks_pending() {
            tracing::debug!(
                pubacks = self.pending_pubacks.len(),
                watermarks = self.pending_watermarks.len(),
                "Stopping with acks not yet queued; the broker redelivers those messages."
            );
        }
        Ok(())
    }

    /// State changes a full engine queue did not take yet.
    fn hand_over_pending(&self) -> bool {
        self.watch.as_ref().is_some_and(StateWatch::pending)
    }

    /// Hands state changes to the engine task (never waits).
    fn hand_over(&mut self) {
        if let Some(watch) = &mut self.watch {
            watch.fire();
        }
    }

    fn acks_pending(&self) -> bool {
        !self.pending_pubacks.is_empty() || !self.pending_watermarks.is_empty()
    }

    /// Queues as many pending PUBACKs and watermarks as the client's request channel takes
    /// now, without waiting, one of each in turn (so that a steady stream of messages cannot
    /// starve the watermarks, which would make the agents re-send and feed the stream); keeps
    /// the rest.
    fn queue_acks(&mut self) {
        let before = self.pending_pubacks.len() + self.pending_watermarks.len();
        loop {
            // Whoever went last goes second, across calls too: with a request channel that
            // takes one at a time, a fixed order would starve the second kind.
            type Queue = fn(&mut Ingest) -> bool;
            let (first, second): (Queue, Queue) = if self.watermark_turn {
                (Self::queue_watermark, Self::queue_puback)
            } else {
                (Self::queue_puback, Self::queue_watermark)
            };
            let queued = first(self) || second(self);
            if !queued {
                break;
            }
        }
        let after = self.pending_pubacks.len() + self.pending_watermarks.len();
        if after == 0 && self.inbox.is_empty() {
            self.health.ingest_busy(None);
        } else if after < before {
            self.health.ingest_busy(Some(now_ms()));
        }
    }

    /// Queues the next pending PUBACK if the request channel takes it now.
    fn queue_puback(&mut self) -> bool {
        let Some(&(qos, pkid)) = self.pending_pubacks.front() else {
            return false;
        };
        let mut ack = Publish::new("", qos, Vec::new());
        ack.pkid = pkid;
        if self.client.try_ack(&ack).is_err() {
            return false;
        }
        self.pending_pubacks.pop_front();
        self.watermark_turn = true;
        true
    }

    /// Queues the next pending watermark if the request channel takes it now.
    fn queue_watermark(&mut self) -> bool {
        // Round the agents in key order from the last one served, so that agents touched by
        // every batch cannot starve the others.
        let next = match &self.last_watermark {
            Some(last) => self
                .pending_watermarks
                .range((Bound::Excluded(last.clone()), Bound::Unbounded))
                .next()
                .or_else(|| self.pending_watermarks.iter().next()),
            None => self.pending_watermarks.iter().next(),
        };
        let Some((key, seq)) = next.map(|(k, s)| (k.clone(), *s)) else {
            return false;
        };
        let (site, agent, boot) = key.clone();
        let ack = Ack {
            v: v1::VERSION,
            site,
            agent,
            boot,
            seq,
        };
        let topic = self
            .config
            .layout
            .agent(&ack.site, &ack.agent, Channel::Ack);
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, v1::encode(&ack))
            .is_err()
        {
            return false;
        }
        self.pending_watermarks.remove(&key);
        self.last_watermark = Some(key);
        self.watermark_turn = false;
        true
    }

    /// Stores one batch of messages; adds its PUBACKs and watermarks to the pending acks.
    async fn commit(&mut self, msgs: Vec<Publish>) -> anyhow::Result<()> {
        let now = now_ms();
        let mut batch = StoreBatch::default();
        let mut effects = BatchEffects::default();
        for msg in &msgs {
            self.counters
                .messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(rejection) = self.handle(msg, now, &mut batch, &mut effects) {
                PayloadRejected {
                    topic: &msg.topic,
                    rejection: &rejection,
                }
                .emit(&self.counters);
            }
        }
        // State after data: a crash in between leaves the dedup state behind the data, which
        // costs a harmless idempotent rewrite on re-send, never a lost entry.
        for (_, agent, boot) in &effects.touched {
            if let Some(t) = self.trackers.get(&(agent.clone(), boot.clone())) {
                batch.put_json(trees::SEQS, trees::seqs_key(agent, boot), t);
            }
        }
        for agent in &effects.agents {
            let gaps_open = self
                .trackers
                .iter()
                .filter(|((a, _), _)| a == agent)
                .map(|(_, t)| t.missing())
                .sum();
            if let Some(site) = self.registry.get(agent).map(|r| r.site) {
                let record = self
                    .registry
                    .update(&site, agent, "", now, |r| r.gaps_open = gaps_open);
                batch.put_json(trees::AGENTS, trees::agent_key(agent), &record);
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.commit(batch))
            .await
            .context("store task")?
            .context("committing an ingest batch; nothing of it was acknowledged")?;
        self.counters
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hand_over();
        if let Some(engine) = &self.answers {
            for ack in effects.answers.drain(..) {
                if !engine.try_command_answer(ack) {
                    tracing::debug!("Engine queue full; a command answer is dropped (the command's next re-send brings it again).");
                }
            }
        }
        self.pending_pubacks.extend(
            msgs.iter()
                .filter(|m| m.qos != QoS::AtMostOnce)
                .map(|m| (m.qos, m.pkid)),
        );
        for key in effects.touched {
            let Some(t) = self.trackers.get(&(key.1.clone(), key.2.clone())) else {
                continue;
            };
            // Acked even when everything was a duplicate (set again, not only when it grew).
            self.pending_watermarks.insert(key, t.watermark());
        }
        Ok(())
    }

    /// Decodes one message and adds its writes to `batch`.
    fn handle(
        &mut self,
        msg: &Publish,
        now: u64,
        batch: &mut StoreBatch,
        effects: &mut BatchEffects,
    ) -> Result<(), Rejection> {
        let topic = self
            .config
            .layout
            .parse(&msg.topic)
            .map_err(|e| Rejection::new(RejectReason::UnknownTopic, e.to_string()))?;
        match topic.channel {
            Channel::Results => {
                let b: ResultBatch = self.decode(&topic, &msg.payload, now)?;
                self.ingest_results(&b, now, batch, effects);
            }
            Channel::Capacity => {
                let b: CapacityBatch = self.decode(&topic, &msg.payload, now)?;
                self.ingest_capacity(&b, now, batch, effects);
            }
            Channel::Status => {
                // An empty retained payload clears the topic; nothing to record.
                if msg.payload.is_empty() {
                    return Ok(());
                }
                let s: Status = self.decode(&topic, &msg.payload, now)?;
                let record = self.registry.apply_status(&s, now);
                if s.state == AgentState::Offline {
                    tracing::warn!(agent = %s.agent, site = %s.site, "Agent went offline.");
                } else {
                    tracing::info!(agent = %s.agent, site = %s.site, boot = %s.boot, "Agent online.");
                }
                batch.put_json(trees::AGENTS, trees::agent_key(&s.agent), &record);
            }
            Channel::CmdAck => {
                let ack: CmdAck = self.decode(&topic, &msg.payload, now)?;
                // An answer naming no command (to an unreadable one) matches no attempt.
                if ack.command.is_some() {
                    effects.answers.push(ack);
                }
            }
            Channel::Ack | Channel::Cmd => {
                return Err(Rejection::new(
                    RejectReason::UnknownTopic,
                    format!("{} is not an ingest channel", topic.channel),
                ));
            }
        }
        Ok(())
    }

    fn decode<M: Envelope>(
        &self,
        topic: &AgentTopic,
        payload: &[u8],
        now: u64,
    ) -> Result<M, Rejection> {
        let m: M = v1::decode(payload, self.config.max_payload_bytes, now)?;
        if m.site() != topic.site || m.agent() != topic.agent {
            return Err(Rejection::new(
                RejectReason::TopicMismatch,
                format!(
                    "payload says site {:?} agent {:?}, topic says {:?} {:?}",
                    m.site(),
                    m.agent(),
                    topic.site,
                    topic.agent
                ),
            ));
        }
        Ok(m)
    }

    fn tracker(&mut self, agent: &str, boot: &str) -> &mut SeqTracker {
        self.trackers
            .entry((agent.to_owned(), boot.to_owned()))
            .or_default()
    }

    fn ingest_results(
        &mut self,
        b: &ResultBatch,
        now: u64,
        batch: &mut StoreBatch,
        effects: &mut BatchEffects,
    ) {
        let (mut stored, mut dups) = (0u64, 0u64);
        // One lookup per message, not per result (the field, not `tracker()`, so that the state
        // watch can be borrowed beside it).
        let tracker = self
            .trackers
            .entry((b.agent.clone(), b.boot.clone()))
            .or_default();
        for r in &b.results {
            if tracker.insert(r.seq) {
                // Marks before the result they describe: `StoreBatch` writes the (deduplicated)
                // marks ahead of every other write, so a crash can leave a mark without its
                // result (recomputed harmlessly), never a result without its mark (a stale
                // rollup).
                for mark in dirty_marks(&b.agent, &r.probe, r.observed_ms, r.interval_ms) {
                    if let Write::Put(key, _) = mark {
                        batch.mark_dirty(key);
                    }
                }
                batch.push(trees::RESULTS, Store::result_write(&b.agent, &b.boot, r));
                // Probe metrics beside capacity samples: same tree, same query, same retention.
                for m in &r.metrics {
                    batch.push(
                        trees::CAPACITY,
                        Write::Put(
                            capacity_key(
                                &b.agent,
                                &ProbeMetric::stored_name(&r.probe, &m.name),
                                r.observed_ms,
                            ),
                            m.value.to_be_bytes().to_vec(),
                        ),
                    );
                }
                if let Some(watch) = &mut self.watch {
                    watch.observe(&b.agent, r);
                }
                stored += 1;
            } else {
                dups += 1;
            }
        }
        for g in &b.gaps {
            if !self.tracker(&b.agent, &b.boot).insert(g.seq) {
                dups += 1;
                continue;
            }
            stored += 1;
            batch.put_json(trees::GAPS, gap_key(&b.agent, g), g);
            let newly_lost = self
                .tracker(&b.agent, &g.boot)
                .insert_range(g.from_seq, g.to_seq);
            GapBooked {
                agent: &b.agent,
                boot: &g.boot,
                from_seq: g.from_seq,
                to_seq: g.to_seq,
                from_ms: g.from_ms,
                to_ms: g.to_ms,
            }
            .emit(&self.counters);
            self.registry.update(&b.site, &b.agent, &b.boot, now, |r| {
                r.lost_entries += newly_lost
            });
            effects
                .touched
                .insert((b.site.clone(), b.agent.clone(), g.boot.clone()));
        }
        self.counters
            .results_stored
            .fetch_add(stored, std::sync::atomic::Ordering::Relaxed);
        self.account(&b.site, &b.agent, &b.boot, now, stored, dups, effects);
    }

    fn ingest_capacity(
        &mut self,
        b: &CapacityBatch,
        now: u64,
        batch: &mut StoreBatch,
        effects: &mut BatchEffects,
    ) {
        let (mut stored, mut dups) = (0u64, 0u64);
        for s in &b.samples {
            if !self.tracker(&b.agent, &b.boot).insert(s.seq) {
                dups += 1;
                continue;
            }
            stored += 1;
            for (metric, value) in s.metrics() {
                batch.mark_capacity_dirty(crate::capacity::rollup::dirty_key(
                    &b.agent,
                    &metric,
                    s.observed_ms,
                ));
                batch.push(
                    trees::CAPACITY,
                    Write::Put(
                        capacity_key(&b.agent, &metric, s.observed_ms),
                        value.to_be_bytes().to_vec(),
                    ),
                );
            }
        }
        self.counters
            .samples_stored
            .fetch_add(stored, std::sync::atomic::Ordering::Relaxed);
        self.account(&b.site, &b.agent, &b.boot, now, stored, dups, effects);
    }

    /// Counts what a data message did and marks its (agent, boot) for an ack.
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        site: &str,
        agent: &str,
        boot: &str,
        now: u64,
        stored: u64,
        dups: u64,
        effects: &mut BatchEffects,
    ) {
        if dups > 0 {
            DuplicatesDropped {
                agent,
                boot,
                count: dups,
            }
            .emit(&self.counters);
        }
        self.registry.update(site, agent, boot, now, |r| {
            r.stored += stored;
            r.duplicates += dups;
        });
        // Acked even when everything was a duplicate: a re-send means the agent missed an ack.
        effects
            .touched
            .insert((site.to_owned(), agent.to_owned(), boot.to_owned()));
        effects.agents.insert(agent.to_owned());
    }
}

/// Subscribes the collector's client to every ingest channel (QoS 1), and — when it sends
/// commands (`answers`: a signing key is configured) — to agents' answers (`cmd/ack`, handed to
/// the engine). A collector that sends no command does not take other signers' answers.
///
/// # Errors
/// The client's request channel is closed.
pub async fn subscribe(
    client: &AsyncClient,
    layout: &TopicLayout,
    answers: bool,
) -> Result<(), rumqttc::ClientError> {
    for channel in [Channel::Results, Channel::Capacity, Channel::Status] {
        client
            .subscribe(layout.all_agents(channel), QoS::AtLeastOnce)
            .await?;
    }
    if answers {
        client
            .subscribe(layout.all_agents(Channel::CmdAck), QoS::AtLeastOnce)
            .await?;
    }
    Ok(())
}
