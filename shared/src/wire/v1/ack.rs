//! `{root}/v1/{site}/{agent}/ack`, retained: the collector's stored watermark for one boot of
//! the agent — every seq up to and including `seq` is durably stored (or booked as lost by a gap
//! record). The agent trims its outbox up to it, and only up to it.

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, Rejection};

/// The watermark for one (agent, boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Protocol version, 1.
    pub v: u64,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// The boot the watermark is for.
    pub boot: String,
    /// Highest contiguous seq stored.
    pub seq: u64,
}

impl Envelope for Ack {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, RejectReason, MAX_PAYLOAD_BYTES};
    use super::*;

    #[test]
    fn an_ack_round_trips_and_a_wrong_version_is_refused() {
        let ack = Ack {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: "b".into(),
            seq: 42,
        };
        let back: Ack = decode(&encode(&ack), MAX_PAYLOAD_BYTES, 0).unwrap();
        assert_eq!(back, ack);
        let v2 = Ack { v: 2, ..ack };
        let err = decode::<Ack>(&encode(&v2), MAX_PAYLOAD_BYTES, 0).unwrap_err();
        assert_eq!(err.reason, RejectReason::UnsupportedVersion);
    }
}
