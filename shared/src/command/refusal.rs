//! Why an agent did not run a command: a closed set, so that counters have bounded labels and
//! every refusal on `cmd/ack`, in the log and in `/health` uses the same stable name.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::wire::v1::command::CommandRef;

/// The reason a command was refused. The snake_case names are part of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// Not a v1 command: not JSON, cut short (truncated), a missing or mistyped field, a field
    /// out of its rules (id, nonce, signature encoding, expiry before issue, lifetime too long).
    Malformed,
    /// Larger than the command size limit.
    Oversized,
    /// `v` is not 1.
    UnsupportedVersion,
    /// Signed with a key this agent does not hold (`key_id` differs).
    UnknownKey,
    /// The signature does not verify against the canonical bytes.
    BadSignature,
    /// Addressed to another site or agent.
    OtherAgent,
    /// Past `expires_ms` plus the clock skew allowance.
    Expired,
    /// Issued further in the future than the clock skew allowance.
    NotYetValid,
    /// Its nonce was already used by another command (or its command id by different content).
    Replayed,
    /// The agent declares no `[[actions]]`: it accepts no command at all.
    NoActions,
    /// The action is not declared in the agent's config.
    UndeclaredAction,
    /// An argument is missing, undeclared, or outside its rule.
    ArgumentRefused,
    /// Too many commands waiting to run.
    Busy,
    /// The nonce or the journal entry could not be stored durably, so the command is not run.
    StoreFailed,
}

impl RefusalReason {
    /// Every reason, for zero-valued counters.
    pub const ALL: [RefusalReason; 14] = [
        RefusalReason::Malformed,
        RefusalReason::Oversized,
        RefusalReason::UnsupportedVersion,
        RefusalReason::UnknownKey,
        RefusalReason::BadSignature,
        RefusalReason::OtherAgent,
        RefusalReason::Expired,
        RefusalReason::NotYetValid,
        RefusalReason::Replayed,
        RefusalReason::NoActions,
        RefusalReason::UndeclaredAction,
        RefusalReason::ArgumentRefused,
        RefusalReason::Busy,
        RefusalReason::StoreFailed,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Malformed => "malformed",
            RefusalReason::Oversized => "oversized",
            RefusalReason::UnsupportedVersion => "unsupported_version",
            RefusalReason::UnknownKey => "unknown_key",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::OtherAgent => "other_agent",
            RefusalReason::Expired => "expired",
            RefusalReason::NotYetValid => "not_yet_valid",
            RefusalReason::Replayed => "replayed",
            RefusalReason::NoActions => "no_actions",
            RefusalReason::UndeclaredAction => "undeclared_action",
            RefusalReason::ArgumentRefused => "argument_refused",
            RefusalReason::Busy => "busy",
            RefusalReason::StoreFailed => "store_failed",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command: the reason, a detail naming the field, and what the command asked for when
/// it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    /// The counted reason.
    pub reason: RefusalReason,
    /// Names the field or value, for the ack and the log line.
    pub detail: String,
    /// The command's ids, when they could be read and pass the id rules.
    pub command: Option<CommandRef>,
}

impl Refusal {
    /// A refusal for `reason` with `detail`, about `command` if known.
    pub fn new(
        reason: RefusalReason,
        detail: impl Into<String>,
        command: Option<CommandRef>,
    ) -> Self {
        Self {
            reason,
            detail: detail.into(),
            command,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_name_that_serde_agrees_with() {
        let mut seen = std::collections::HashSet::new();
        for r in RefusalReason::ALL {
            assert!(seen.insert(r.as_str()), "{r}");
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
