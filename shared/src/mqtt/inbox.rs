//! The hand-over of incoming publishes from the MQTT driver to their consumer (collector ingest,
//! the agent's ack handling): a queue bounded by bytes with credit-based flow control.
//!
//! The driver takes credits (a message's payload and topic bytes plus a fixed overhead) before it
//! hands a message over, and waits while none are left; the consumer returns them as it takes
//! messages. That wait is safe only because **a consumer never waits on the driver**: it queues
//! its acks and publishes with `try_*` and keeps what does not fit for later, so it always comes
//! back to take more (a driver waiting for room while the consumer waits for the event loop was
//! the circular wait of issue 10, point 0). The broker's in-flight window cannot be the bound:
//! Mosquitto 2.0.11 was seen sending a million unacknowledged messages to a manual-ack client.
//! The [`InboxGauge`] shows what waits (messages, bytes, the peak), for health and logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rumqttc::Publish;
use tokio::sync::{mpsc, Semaphore};

/// Credits a message costs beyond its payload and topic bytes, so that tiny messages count too.
const OVERHEAD: usize = 128;

/// What waits in an inbox, shared by its two ends.
#[derive(Debug, Default)]
pub struct InboxGauge {
    messages: AtomicU64,
    bytes: AtomicU64,
    peak_messages: AtomicU64,
    peak_bytes: AtomicU64,
    received: AtomicU64,
    capacity_bytes: AtomicU64,
}

/// A reading of an [`InboxGauge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxLevel {
    /// Messages waiting now.
    pub messages: u64,
    /// Payload bytes waiting now.
    pub bytes: u64,
    /// Most messages ever waiting at once.
    pub peak_messages: u64,
    /// Most payload bytes ever waiting at once.
    pub peak_bytes: u64,
    /// Messages handed over since the start.
    pub received: u64,
    /// The inbox's capacity in credits (bytes).
    pub capacity_bytes: u64,
}

impl InboxGauge {
    /// The current level.
    pub fn level(&self) -> InboxLevel {
        InboxLevel {
            messages: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            peak_messages: self.peak_messages.load(Relaxed),
            peak_bytes: self.peak_bytes.load(Relaxed),
            received: self.received.load(Relaxed),
            capacity_bytes: self.capacity_bytes.load(Relaxed),
        }
    }

    fn add(&self, bytes: u64) {
        let m = self.messages.fetch_add(1, Relaxed) + 1;
        let b = self.bytes.fetch_add(bytes, Relaxed) + bytes;
        self.received.fetch_add(1, Relaxed);
        self.peak_messages.fetch_max(m, Relaxed);
        self.peak_bytes.fetch_max(b, Relaxed);
    }

    fn take(&self, bytes: u64) {
        self.messages.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(bytes, Relaxed);
    }
}

fn size(p: &Publish) -> u64 {
    p.payload.len() as u64
}

/// A message in the inbox with the credits it holds.
#[derive(Debug)]
struct Held {
    publish: Publish,
    credits: u32,
}

/// The driver's end.
#[derive(Debug, Clone)]
pub struct InboxSender {
    tx: mpsc::UnboundedSender<Held>,
    credits: Arc<Semaphore>,
    capacity: u32,
    /// The least a message costs, so that at most `capacity_messages` fit.
    min_cost: u32,
    gauge: Arc<InboxGauge>,
}

/// The consumer's end. Dropping it closes the inbox: a waiting [`InboxSender::push`] fails.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Held>,
    credits: Arc<Semaphore>,
    gauge: Arc<InboxGauge>,
}

/// A new inbox holding at most `capacity_bytes` of messages (counted as payload + topic +
/// a fixed overhead each; one message larger than that still passes, alone) and at most
/// `capacity_messages` messages. The message bound keeps the time to work through the inbox
/// short: the broker's PUBACKs and PINGRESPs wait behind it on the socket.
pub fn inbox(capacity_bytes: usize, capacity_messages: usize) -> (InboxSender, Inbox) {
    let capacity = u32::try_from(capacity_bytes.clamp(1, Semaphore::MAX_PERMITS))
        .unwrap_or(u32::MAX)
        .max(1);
    let min_cost = u32::try_from(capacity as usize / capacity_messages.max(1))
        .unwrap_or(u32::MAX)
        .max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let gauge = Arc::new(InboxGauge::default());
    gauge.capacity_bytes.store(u64::from(capacity), Relaxed);
    let credits = Arc::new(Semaphore::new(capacity as usize));
    (
        InboxSender {
            tx,
            credits: credits.clone(),
            capacity,
            min_cost,
            gauge: gauge.clone(),
        },
        Inbox { rx, credits, gauge },
    )
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.credits.close();
    }
}

/// The consumer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inbox's consumer is gone")]
pub struct InboxClosed;

impl InboxSender {
    fn cost(&self, p: &Publish) -> u32 {
        u32::try_from(p.payload.len() + p.topic.len() + OVERHEAD)
            .unwrap_or(u32::MAX)
            .max(self.min_cost)
            .min(self.capacity)
    }

    fn send(&self, publish: Publish, credits: u32) -> Result<(), InboxClosed> {
        let bytes = size(&publish);
        self.gauge.add(bytes);
        self.tx.send(Held { publish, credits }).map_err(|_| {
            self.gauge.take(bytes);
            InboxClosed
        })
    }

    /// Hands `p` over, waiting while the inbox is full.
    ///
    /// # Errors
    /// The consumer dropped its end.
    pub async fn push(&self, p: Publish) -> Result<(), InboxClosed> {
        let credits = self.cost(&p);
        self.credits
            .acquire_many(credits)
            .await
            .map_err(|_| InboxClosed)?
            .forget();
        self.send(p, credits)
    }

    /// Hands `p` over, waiting at most `patience` for room; past that it goes in over the
    /// bound (taking no credits). The bound is soft on purpose: while the driver waits it polls
    /// nothing, so neither our acks nor our keep-alive reach the broker, and a broker that
    /// hears nothing for its keep-alive closes the link (rumqttd, Mosquitto). Going over by
    /// one message per `patience` keeps the link alive while ingest is slower than the flood,
    /// and the overshoot grows by at most that rate.
    ///
    /// # Errors
    /// The consumer dropped its end.
    pub async fn push_within(
        &self,
        p: Publish,
        patience: std::time::Duration,
    ) -> Result<(), InboxClosed> {
        let credits = self.cost(&p);
        match tokio::time::timeout(patience, self.credits.acquire_many(credits)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                self.send(p, credits)
            }
            Ok(Err(_)) => Err(InboxClosed),
            Err(_) => self.send(p, 0),
        }
    }

    /// Hands `p` over if there is room now; gives it back otherwise.
    ///
    /// # Errors
    /// Full (with the message) or closed.
    pub fn try_push(&self, p: Publish) -> Result<(), Publish> {
        let credits = self.cost(&p);
        match self.credits.try_acquire_many(credits) {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(p),
        }
        // Closed after the credits were taken: the message is dropped (never acknowledged).
        let _closed = self.send(p, credits).is_err();
        Ok(())
    }
}

impl Inbox {
    fn taken(&self, held: Held) -> Publish {
        self.credits.add_permits(held.credits as usize);
        self.gauge.take(size(&held.publish));
        held.publish
    }

    /// The next publish; `None` once the driver is gone and everything was taken.
    pub async fn recv(&mut self) -> Option<Publish> {
        let held = self.rx.recv().await?;
        Some(self.taken(held))
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next publish if one waits.
    pub fn try_recv(&mut self) -> Option<Publish> {
        let held = self.rx.try_recv().ok()?;
        Some(self.taken(held))
    }

    /// The gauge both ends update.
    pub fn gauge(&self) -> Arc<InboxGauge> {
        self.gauge.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::QoS;

    fn publish(bytes: usize) -> Publish {
        Publish::new("t", QoS::AtLeastOnce, vec![0u8; bytes])
    }

    #[tokio::test]
    async fn the_gauge_counts_what_waits_and_a_full_inbox_holds_the_driver_back() {
        // Room for two messages of 10 bytes (10 + 1 + 128 credits each).
        let (tx, mut rx) = inbox(2 * 139, 100);
        tx.push(publish(10)).await.unwrap();
        tx.push(publish(10)).await.unwrap();
        let level = rx.gauge().level();
        assert_eq!((level.messages, level.bytes), (2, 20));
        let third = tx.try_push(publish(10));
        assert!(third.is_err(), "full");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(publish(10)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the driver waits for room");
        assert_eq!(rx.recv().await.map(|p| p.payload.len()), Some(10));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert!(rx.try_recv().is_some());
        let level = rx.gauge().level();
        assert_eq!(
            (level.messages, level.peak_messages, level.received),
            (1, 2, 3)
        );
    }

    #[tokio::test]
    async fn the_inbox_also_holds_at_most_its_message_count() {
        let (tx, _rx) = inbox(1_000_000, 3);
        for _ in 0..3 {
            assert!(tx.try_push(publish(1)).is_ok());
        }
        assert!(tx.try_push(publish(1)).is_err(), "three messages fill it");
    }

    #[tokio::test]
    async fn a_message_larger_than_the_inbox_still_passes_alone() {
        let (tx, mut rx) = inbox(100, 100);
        tx.push(publish(1_000)).await.unwrap();
        assert_eq!(rx.recv().await.map(|p| p.payload.len()), Some(1_000));
    }

    #[tokio::test]
    async fn a_driver_waiting_for_room_is_released_when_the_consumer_leaves() {
        let (tx, rx) = inbox(200, 100);
        tx.push(publish(10)).await.unwrap();
        let gauge = rx.gauge();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(publish(10)).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(InboxClosed));
        assert_eq!(tx.push(publish(3)).await, Err(InboxClosed));
        assert_eq!(gauge.level().messages, 1);
    }
}
