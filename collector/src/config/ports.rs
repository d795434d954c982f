//! Whether the addresses the collector listens on are free: `collector check` reports a taken
//! one before `serve` fails on it, and both say what to change — on the collector and on the
//! agents' side, since they must point at the same broker.

use std::fmt;
use std::net::{SocketAddr, TcpListener};

use super::{BrokerMode, CollectorConfig};

/// What to do when `broker.listen` is taken.
pub const BROKER_HINT: &str = "another broker (Mosquitto on 1883?) or collector listens there: \
    set broker.listen to a free port and [mqtt] url of every agent (and its broker-port probe) \
    to the same address, or set broker.embedded = false and [mqtt] url to that broker";

/// What to do when `collector.listen` is taken.
pub const API_HINT: &str = "another collector or program listens there: set collector.listen \
    to a free address, and the agents' probes of the API and the CLI's --server to match";

/// A listen address that cannot be bound now.
#[derive(Debug)]
pub struct TakenPort {
    /// The config key (`broker.listen`, `collector.listen`).
    pub key: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The bind error.
    pub error: std::io::Error,
}

impl fmt::Display for TakenPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.key {
            "broker.listen" => BROKER_HINT,
            _ => API_HINT,
        };
        write!(
            f,
            "{}: cannot listen on {}: {} ({hint})",
            self.key, self.addr, self.error
        )
    }
}

/// The addresses `serve` would listen on that are taken now: the embedded broker's and the
/// API's. Each is bound and released at once.
pub fn taken(config: &CollectorConfig) -> Vec<TakenPort> {
    let mut wanted = Vec::new();
    if let BrokerMode::Embedded { listen } = config.broker {
        wanted.push(("broker.listen", listen));
    }
    wanted.push(("collector.listen", config.listen));
    wanted
        .into_iter()
        .filter_map(|(key, addr)| {
            TcpListener::bind(addr)
                .err()
                .map(|error| TakenPort { key, addr, error })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(broker: SocketAddr, api: SocketAddr) -> CollectorConfig {
        let text = format!(
            "[collector]\ndata_dir = \"d\"\nlisten = \"{api}\"\n\n[broker]\nembedded = true\nlisten = \"{broker}\"\n"
        );
        let raw = super::super::from_str(&text, Path::new("c.toml")).unwrap();
        super::super::validate(raw, Path::new("c.toml"), Path::new("/b")).unwrap()
    }

    fn free() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn a_taken_broker_or_api_port_is_reported_by_key_with_what_to_change() {
        let (broker, api) = (free(), free());
        assert!(taken(&config(broker, api)).is_empty());
        let held = TcpListener::bind(broker).unwrap();
        let found = taken(&config(broker, api));
        assert_eq!(found.len(), 1, "{found:?}");
        let text = found[0].to_string();
        assert!(
            text.starts_with(&format!("broker.listen: cannot listen on {broker}: ")),
            "{text}"
        );
        assert!(text.contains("[mqtt] url of every agent"), "{text}");
        drop(held);
        let _held = TcpListener::bind(api).unwrap();
        let found = taken(&config(broker, api));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "collector.listen");
    }
}
