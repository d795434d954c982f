//! What the collector's runbook engine uses to send a command: its [`CommandKey`] plus the
//! lifetime it gives each command. Every call gets a fresh random nonce and the validity window
//! `[now, now + lifetime]`.

use std::collections::BTreeMap;

use super::canonical::UnsignedCommand;
use super::key::{new_nonce, CommandKey};
use super::verify::MAX_LIFETIME_MS;
use crate::wire::v1::command::Command;

/// What a runbook step asks one agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// The target agent's site.
    pub site: String,
    /// The target agent.
    pub agent: String,
    /// Unique per attempt: an agent runs a command id at most once, and answers a re-send of it
    /// from its journal.
    pub command_id: String,
    /// The run.
    pub run_id: String,
    /// The step index.
    pub step: u32,
    /// The declared action id.
    pub action: String,
    /// Argument values by name.
    pub args: BTreeMap<String, String>,
}

/// Signs [`CommandRequest`]s with a fixed lifetime.
#[derive(Debug, Clone)]
pub struct Signer {
    key: CommandKey,
    lifetime_ms: u64,
}

impl Signer {
    /// A signer whose commands expire `lifetime` after they are signed (capped at the one day
    /// agents accept, at least 1 ms).
    pub fn new(key: CommandKey, lifetime: std::time::Duration) -> Self {
        let ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        Self {
            key,
            lifetime_ms: ms.clamp(1, MAX_LIFETIME_MS),
        }
    }

    /// The key (for its public half and id).
    pub fn key(&self) -> &CommandKey {
        &self.key
    }

    /// Signs `request` at `now_ms` with a fresh nonce.
    pub fn sign(&self, request: CommandRequest, now_ms: u64) -> Command {
        self.sign_until(request, now_ms, now_ms.saturating_add(self.lifetime_ms))
    }

    /// Signs `request` at `now_ms` with a fresh nonce, valid until `expires_ms` (at most the
    /// signer's lifetime after `now_ms`): a runbook attempt's command expires with the attempt.
    pub fn sign_until(&self, request: CommandRequest, now_ms: u64, expires_ms: u64) -> Command {
        let expires_ms = expires_ms.clamp(
            now_ms.saturating_add(1),
            now_ms.saturating_add(self.lifetime_ms),
        );
        self.key.sign(UnsignedCommand {
            site: request.site,
            agent: request.agent,
            command_id: request.command_id,
            run_id: request.run_id,
            step: request.step,
            action: request.action,
            args: request.args,
            issued_ms: now_ms,
            expires_ms,
            nonce: new_nonce(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Verifier;
    use crate::wire::v1::encode;

    #[test]
    fn signed_requests_verify_and_carry_fresh_nonces() {
        let signer = Signer::new(
            CommandKey::from_seed([1; 32]),
            std::time::Duration::from_secs(60),
        );
        let v = Verifier::new(signer.key().public(), "s", "a", 0);
        let request = CommandRequest {
            site: "s".into(),
            agent: "a".into(),
            command_id: "c".into(),
            run_id: "r".into(),
            step: 1,
            action: "x".into(),
            args: BTreeMap::new(),
        };
        let now = 1_767_225_600_000;
        let a = signer.sign(request.clone(), now);
        let b = signer.sign(request, now);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.expires_ms, now + 60_000);
        assert!(v.verify(&encode(&a), now + 60_000).is_ok());
        assert!(v.verify(&encode(&a), now + 60_001).is_err());
        let short = signer.sign_until(request_for_until(), now, now + 5_000);
        assert_eq!(short.expires_ms, now + 5_000);
        let capped = signer.sign_until(request_for_until(), now, now + 600_000);
        assert_eq!(capped.expires_ms, now + 60_000);
    }

    fn request_for_until() -> CommandRequest {
        CommandRequest {
            site: "s".into(),
            agent: "a".into(),
            command_id: "c2".into(),
            run_id: "r".into(),
            step: 0,
            action: "x".into(),
            args: BTreeMap::new(),
        }
    }
}
