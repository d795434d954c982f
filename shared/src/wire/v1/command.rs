//! `{root}/v1/{site}/{agent}/cmd` (collector → agent, QoS 1, not retained): a signed request to
//! run one action the agent declares; and `{root}/v1/{site}/{agent}/cmd/ack` (agent → collector,
//! QoS 1, not retained): the answer, either a refusal with its reason or the action's outcome.
//!
//! The signature covers the canonical bytes of every field but itself (see
//! [`crate::command::canonical`]), not the JSON text, so that re-serialising cannot change what
//! was signed. Checking a command is [`crate::command::Verifier`]'s job; this file only holds the
//! shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::RefusalReason;

use super::envelope::{check_id, Envelope, Rejection};

/// A signed command, as published on `cmd`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Protocol version, 1.
    pub v: u64,
    /// The target agent's site.
    pub site: String,
    /// The target agent.
    pub agent: String,
    /// Unique per command attempt; an agent runs a command id at most once.
    pub command_id: String,
    /// The runbook run it belongs to.
    pub run_id: String,
    /// The step's index in the run.
    pub step: u32,
    /// The action id, as declared in the agent's `[[actions]]`.
    pub action: String,
    /// Argument values by name; each is checked against the action's rule.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// When the collector signed it (epoch ms).
    pub issued_ms: u64,
    /// After this (plus the agent's clock skew allowance) the command is refused.
    pub expires_ms: u64,
    /// 16 random bytes as 32 lower-case hex digits; an agent accepts each nonce once.
    pub nonce: String,
    /// Fingerprint of the signing key ([`crate::command::PublicKey::key_id`]).
    pub key_id: String,
    /// Ed25519 signature over the canonical bytes, standard base64 (64 bytes).
    pub signature: String,
}

impl std::fmt::Debug for Command {
    // Argument values may be operational details (host names, paths): left out of debug output,
    // like the signature, which is noise in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("site", &self.site)
            .field("agent", &self.agent)
            .field("command_id", &self.command_id)
            .field("run_id", &self.run_id)
            .field("step", &self.step)
            .field("action", &self.action)
            .field("args", &self.args.keys().collect::<Vec<_>>())
            .field("issued_ms", &self.issued_ms)
            .field("expires_ms", &self.expires_ms)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What a command asked for, echoed in its ack so the collector can match the answer (only ids
/// that pass the id rules are echoed: the rest of an unreadable command is not repeated).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandRef {
    /// The command id.
    pub command_id: String,
    /// The run id.
    #[serde(default)]
    pub run_id: String,
    /// The step index.
    #[serde(default)]
    pub step: u32,
    /// The action id.
    #[serde(default)]
    pub action: String,
}

/// How an executed action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Exit code 0, or an HTTP status below 400.
    Succeeded,
    /// A non-zero exit code (or killed by a signal), or an HTTP status of 400 or more.
    Failed,
    /// Still running at its timeout; the process was killed or the request dropped.
    TimedOut,
    /// It could not be started (program missing, connection refused…).
    Error,
    /// The agent stopped (crash, kill) while it ran; the agent does not know how it ended
    /// and does not run it again.
    Interrupted,
}

impl OutcomeStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Succeeded => "succeeded",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::TimedOut => "timed_out",
            OutcomeStatus::Error => "error",
            OutcomeStatus::Interrupted => "interrupted",
        }
    }
}

/// The outcome of an executed action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// How it ended.
    pub status: OutcomeStatus,
    /// The exit code of an `exec` action (absent when killed by a signal or never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The status of an `http` action's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// When it started (epoch ms).
    pub started_ms: u64,
    /// How long it ran.
    pub duration_ms: u64,
    /// The last bytes of standard output (of an `http` action: of the response body), lossy
    /// UTF-8, at most [`TAIL_BYTES`].
    #[serde(default)]
    pub stdout_tail: String,
    /// The last bytes of standard error, at most [`TAIL_BYTES`].
    #[serde(default)]
    pub stderr_tail: String,
    /// Why it could not start or was cut short, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Most bytes kept of each of stdout and stderr.
pub const TAIL_BYTES: usize = 4 * 1024;

/// The answer in a [`CmdAck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// Not run: why.
    Refused {
        /// The counted reason.
        reason: RefusalReason,
        /// Names the field or value.
        detail: String,
    },
    /// Run (now, or earlier: see [`CmdAck::from_journal`]).
    Outcome(CommandOutcome),
}

/// The answer to one command, as published on `cmd/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdAck {
    /// Protocol version, 1.
    pub v: u64,
    /// The answering agent's site.
    pub site: String,
    /// The answering agent.
    pub agent: String,
    /// The agent's boot id.
    pub boot: String,
    /// Per boot, increasing with every ack the agent publishes.
    pub seq: u64,
    /// When the agent answered (epoch ms).
    pub at_ms: u64,
    /// The command answered; absent when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandRef>,
    /// True when this outcome comes from the agent's journal: the command id had already been
    /// run (or had started, then the agent stopped) and was not run again.
    #[serde(default)]
    pub from_journal: bool,
    /// Refusal or outcome.
    pub answer: Answer,
}

impl Envelope for CmdAck {
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
        // What the collector matches on; the rest is shown as sent.
        if let Some(c) = &self.command {
            check_id("command.command_id", &c.command_id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::v1::encode;

    #[test]
    fn an_ack_with_a_refusal_and_one_with_an_outcome_round_trip() {
        let refusal = CmdAck {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: "b".into(),
            seq: 1,
            at_ms: 1_700_000_000_000,
            command: None,
            from_journal: false,
            answer: Answer::Refused {
                reason: RefusalReason::BadSignature,
                detail: "x".into(),
            },
        };
        let text = String::from_utf8(encode(&refusal)).unwrap();
        assert!(
            text.contains(r#""answer":{"kind":"refused","reason":"bad_signature","detail":"x"}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<CmdAck>(&text).unwrap(), refusal);
        let outcome = CmdAck {
            command: Some(CommandRef {
                command_id: "c1".into(),
                run_id: "r".into(),
                step: 2,
                action: "promote".into(),
            }),
            from_journal: true,
            answer: Answer::Outcome(CommandOutcome {
                status: OutcomeStatus::Succeeded,
                exit_code: Some(0),
                http_status: None,
                started_ms: 1,
                duration_ms: 2,
                stdout_tail: "ok\n".into(),
                stderr_tail: String::new(),
                error: None,
            }),
            ..refusal
        };
        let text = String::from_utf8(encode(&outcome)).unwrap();
        assert!(
            text.contains(r#""kind":"outcome","status":"succeeded""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<CmdAck>(&text).unwrap(), outcome);
    }
}
