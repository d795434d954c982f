//! The hand-over of incoming publishes from the MQTT driver to their consumer (collector ingest,
//! the agent's ack handling) — a queue the driver can always push to without waiting.
//!
//! The driver must never wait on its consumer: the consumer acknowledges and publishes through
//! the same event loop the driver polls, so a driver waiting for room while the consumer waits
//! for the event loop is a circular wait (issue 10, point 0). The queue is therefore unbounded;
//! what bounds it is the broker's in-flight window towards this client: with manual acks the
//! consumer acknowledges only what it has processed, and the broker sends no more than its
//! window of unacknowledged messages. The [`InboxGauge`] shows what waits (messages, bytes, the
//! peak), for health and logs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use rumqttc::Publish;
use tokio::sync::mpsc;

/// What waits in an inbox, shared by its two ends.
#[derive(Debug, Default)]
pub struct InboxGauge {
    messages: AtomicU64,
    bytes: AtomicU64,
    peak_messages: AtomicU64,
    peak_bytes: AtomicU64,
    received: AtomicU64,
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

/// The driver's end: pushing never waits.
#[derive(Debug, Clone)]
pub struct InboxSender {
    tx: mpsc::UnboundedSender<Publish>,
    gauge: Arc<InboxGauge>,
}

/// The consumer's end.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Publish>,
    gauge: Arc<InboxGauge>,
}

/// A new inbox.
pub fn inbox() -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gauge = Arc::new(InboxGauge::default());
    (
        InboxSender {
            tx,
            gauge: gauge.clone(),
        },
        Inbox { rx, gauge },
    )
}

/// The consumer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the inbox's consumer is gone")]
pub struct InboxClosed;

impl InboxSender {
    /// Hands `p` over without waiting.
    ///
    /// # Errors
    /// The consumer dropped its end.
    pub fn push(&self, p: Publish) -> Result<(), InboxClosed> {
        let bytes = size(&p);
        self.gauge.add(bytes);
        self.tx.send(p).map_err(|_| {
            self.gauge.take(bytes);
            InboxClosed
        })
    }
}

impl Inbox {
    /// The next publish; `None` once the driver is gone and everything was taken.
    pub async fn recv(&mut self) -> Option<Publish> {
        let p = self.rx.recv().await?;
        self.gauge.take(size(&p));
        Some(p)
    }

    /// The next publish if one waits.
    pub fn try_recv(&mut self) -> Option<Publish> {
        let p = self.rx.try_recv().ok()?;
        self.gauge.take(size(&p));
        Some(p)
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
    async fn pushing_never_waits_and_the_gauge_counts_what_waits() {
        let (tx, mut rx) = inbox();
        for _ in 0..50_000 {
            tx.push(publish(10)).unwrap();
        }
        let level = rx.gauge().level();
        assert_eq!((level.messages, level.bytes), (50_000, 500_000));
        assert_eq!(rx.recv().await.map(|p| p.payload.len()), Some(10));
        assert!(rx.try_recv().is_some());
        let level = rx.gauge().level();
        assert_eq!((level.messages, level.bytes), (49_998, 499_980));
        assert_eq!((level.peak_messages, level.received), (50_000, 50_000));
    }

    #[tokio::test]
    async fn a_push_after_the_consumer_left_fails_and_counts_nothing() {
        let (tx, rx) = inbox();
        let gauge = rx.gauge();
        drop(rx);
        assert_eq!(tx.push(publish(3)), Err(InboxClosed));
        assert_eq!(gauge.level().messages, 0);
    }
}
