//! A plain MQTT client for tests: publishes arbitrary bytes (malformed payloads, forged
//! batches) and collects what arrives on subscribed topics.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A connected test client.
#[derive(Debug)]
pub struct TestClient {
    /// The rumqttc client.
    pub client: AsyncClient,
    received: mpsc::UnboundedReceiver<Publish>,
    acks: mpsc::UnboundedReceiver<u16>,
    task: JoinHandle<()>,
}

impl TestClient {
    /// Connects to `url` (`mqtt://127.0.0.1:port`) as `id` and waits for the CONNACK.
    pub async fn connect(url: &str, id: &str) -> Self {
        Self::connect_as(url, id, None).await
    }

    /// As [`TestClient::connect`], with a user name and password.
    pub async fn connect_as(url: &str, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let rest = url.trim_start_matches("mqtt://");
        let (host, port) = rest.rsplit_once(':').expect("url has a port");
        let mut options = MqttOptions::new(id, host, port.parse().expect("port"));
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 1_000);
        let (tx, received) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ignored = r.send(()).is_ok();
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ignored = tx.send(p).is_ok();
                    }
                    Ok(Event::Incoming(Incoming::PubAck(a))) => {
                        let _ignored = ack_tx.send(a.pkid).is_ok();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("CONNACK within 10 s")
            .expect("event loop alive");
        Self {
            client,
            received,
            acks,
            task,
        }
    }

    /// Publishes `payload` to `topic` at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queue publish");
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("PUBACK within 10 s")
            .expect("event loop alive");
    }

    /// Subscribes to `filter` at QoS 1.
    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
    }

    /// The next message received within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Publish> {
        tokio::time::timeout(limit, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
