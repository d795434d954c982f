//! `{root}/v1/_collector/{id}/state`, retained: a collector announces itself `online` when it
//! connects and `offline` when it stops (itself, or the broker through its last will). Agents
//! read it to know whether anyone is there to acknowledge what they publish.

use serde::{Deserialize, Serialize};

use super::envelope::VERSION;

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectorState {
    /// The collector is connected and ingesting.
    Online,
    /// It stopped, or the broker published its last will.
    Offline,
}

/// The retained state message of one collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorStatus {
    /// Protocol version, 1.
    pub v: u64,
    /// The collector's id (`[collector].id`).
    pub id: String,
    /// Online or offline.
    pub state: CollectorState,
    /// When it was composed, epoch ms (for the last will: the connect time).
    pub at_ms: u64,
}

/// Why a collector state payload was not understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectorStatusError {
    /// Not the JSON object above.
    #[error("collector state is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// A version this build does not speak.
    #[error("collector state has unsupported version {0}")]
    Version(u64),
}

impl CollectorStatus {
    /// The state message of collector `id`, composed now.
    pub fn new(id: &str, state: CollectorState, at_ms: u64) -> Self {
        Self {
            v: VERSION,
            id: id.to_owned(),
            state,
            at_ms,
        }
    }

    /// The JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload.
    ///
    /// # Errors
    /// Not the expected JSON, or another protocol version.
    pub fn decode(payload: &[u8]) -> Result<Self, CollectorStatusError> {
        let status: Self = serde_json::from_slice(payload)?;
        if status.v != VERSION {
            return Err(CollectorStatusError::Version(status.v));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_in_the_documented_shape() {
        let s = CollectorStatus::new("main", CollectorState::Online, 1_800_000_000_000);
        let text = String::from_utf8(s.encode()).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"id":"main","state":"online","at_ms":1800000000000}"#
        );
        assert_eq!(CollectorStatus::decode(text.as_bytes()).unwrap(), s);
    }

    #[test]
    fn another_version_or_shape_is_refused() {
        assert!(matches!(
            CollectorStatus::decode(br#"{"v":2,"id":"m","state":"online","at_ms":1}"#),
            Err(CollectorStatusError::Version(2))
        ));
        assert!(CollectorStatus::decode(br#"{"v":1,"id":"m","state":"maybe","at_ms":1}"#).is_err());
        assert!(CollectorStatus::decode(b"").is_err());
    }
}
