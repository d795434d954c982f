//! The `tcp` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): a check
//! is one TCP connect to `host:port`; connected is up, anything else is down.

use std::time::Instant;

use serde::Deserialize;
use tokio::net::TcpStream;
use watchstand_shared::config::{Duration, Problems};

use super::{Check, Observation};

/// The wire name of this kind.
pub const KIND: &str = "tcp";

/// A `kind = "tcp"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// `host:port` (IPv6 as `[::1]:port`).
    pub address: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
}

/// Splits `host:port` without resolving it; `None` when it is not of that shape.
pub fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        // A bare IPv6 address has more colons; it needs brackets to carry a port.
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return None;
    }
    Some((host, port))
}

impl TcpProbeConfig {
    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if split_address(&self.address).is_none() {
            problems.push(
                format!("{key}.address"),
                format!(
                    "address {:?} is not host:port (port 1-65535; IPv6 as [::1]:port)",
                    self.address
                ),
            );
        }
    }
}

/// A runnable TCP probe.
#[derive(Debug)]
pub struct TcpProbe {
    address: String,
}

impl TcpProbe {
    /// The runtime probe of a validated config.
    pub fn build(config: &TcpProbeConfig) -> Self {
        Self {
            address: config.address.clone(),
        }
    }
}

impl Check for TcpProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.address
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        match TcpStream::connect(self.address.as_str()).await {
            // Dropping the stream closes it at once; the target sees a connect and a close.
            Ok(_stream) => Observation::up(start.elapsed()),
            Err(e) => Observation::down(start.elapsed(), format!("connect: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Probe, ProbeConfig};
    use watchstand_shared::wire::v1::ProbeState;

    fn probe(address: String) -> Probe {
        Probe::build(&ProbeConfig::Tcp(TcpProbeConfig {
            id: "port".into(),
            address,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_listening_port_is_up() {
        let target = crate::testutil::tcp_target().await;
        let o = probe(target.to_string()).check().await;
        assert_eq!(o.state, ProbeState::Up, "{o:?}");
    }

    #[tokio::test]
    async fn a_refused_port_is_down_with_the_reason() {
        let address = crate::testutil::closed_port().await;
        let o = probe(address.to_string()).check().await;
        assert_eq!(o.state, ProbeState::Down);
        let error = o.error.unwrap();
        assert!(error.starts_with("connect: "), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }

    #[test]
    fn addresses_are_host_colon_port() {
        assert_eq!(split_address("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_address("db.local:5432"), Some(("db.local", 5432)));
        assert_eq!(split_address("[::1]:443"), Some(("::1", 443)));
        for bad in [
            "localhost",
            ":80",
            "h:0",
            "h:70000",
            "::1:80",
            "h:x",
            "a b:1",
        ] {
            assert_eq!(split_address(bad), None, "{bad}");
        }
    }
}
