//! `{root}/v1/{site}/{agent}/status`, retained: the birth message (`online`, with the agent's
//! inventory) and the last will (`offline`) that the broker publishes when the agent vanishes.

use serde::{Deserialize, Serialize};

use super::envelope::{check_id, Envelope, Rejection};

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Birth: the agent connected.
    Online,
    /// Last will or orderly shutdown.
    Offline,
}

/// One probe an agent runs, as announced in its birth message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInventory {
    /// Probe id.
    pub id: String,
    /// Probe kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// Interval, ms.
    pub interval_ms: u64,
}

/// A status message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Protocol version, 1.
    pub v: u64,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// Boot id.
    pub boot: String,
    /// Online or offline.
    pub state: AgentState,
    /// When the state began, epoch ms. The last will is composed at connect time, so for it
    /// this is the connect time and the collector uses its own receipt time instead.
    #[serde(default)]
    pub at_ms: Option<u64>,
    /// Agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The probes the agent runs (birth only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeInventory>,
    /// Capacity sampling interval, ms (birth only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_interval_ms: Option<u64>,
}

impl Status {
    /// The slowest interval the agent announced (probes and capacity): silence past 3 × this
    /// means the agent is offline even without a last will.
    pub fn slowest_interval_ms(&self) -> Option<u64> {
        self.probes
            .iter()
            .map(|p| p.interval_ms)
            .chain(self.capacity_interval_ms)
            .max()
    }
}

impl Envelope for Status {
    fn version(&self) -> u64 {
        self.v
    }
    fn site(&self) -> &str {
        &self.site
    }
    fn agent(&self) -> &str {
        &self.agent
    }
    fn boot(&self) -> &str {
        &self.boot
    }
    fn validate_body(&self, _now_ms: u64) -> Result<(), Rejection> {
        for (i, p) in self.probes.iter().enumerate() {
            check_id(&format!("probes[{i}].id"), &p.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, MAX_PAYLOAD_BYTES};
    use super::*;

    #[test]
    fn birth_and_last_will_round_trip() {
        let birth = Status {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: "b".into(),
            state: AgentState::Online,
            at_ms: Some(1_800_000_000_000),
            version: Some("0.1.0".into()),
            probes: vec![ProbeInventory {
                id: "web".into(),
                kind: "http".into(),
                target: "http://127.0.0.1/".into(),
                interval_ms: 5_000,
            }],
            capacity_interval_ms: Some(30_000),
        };
        let back: Status = decode(&encode(&birth), MAX_PAYLOAD_BYTES, 0).unwrap();
        assert_eq!(back, birth);
        assert_eq!(back.slowest_interval_ms(), Some(30_000));
        let will = Status {
            state: AgentState::Offline,
            probes: vec![],
            capacity_interval_ms: None,
            ..birth
        };
        let back: Status = decode(&encode(&will), MAX_PAYLOAD_BYTES, 0).unwrap();
        assert_eq!(back.state, AgentState::Offline);
    }
}
