//! The stateless checks of a received command, in a fixed order, each failure a typed
//! [`Refusal`]:
//!
//! 1. size (`oversized`) — before any parsing;
//! 2. shape (`malformed`, `unsupported_version`): JSON of the v1 shape, ids by the id rules, a
//!    32-hex-digit nonce, a 64-byte base64 signature, `expires_ms` after `issued_ms` and at most
//!    [`MAX_LIFETIME_MS`] later, at most [`MAX_ARGS`] arguments of at most [`MAX_ARG_BYTES`];
//! 3. key (`unknown_key`), then signature (`bad_signature`, strict Ed25519 verification);
//! 4. target (`other_agent`);
//! 5. time ([`Verifier::check_time`]: `expired`, `not_yet_valid`, both with the clock skew
//!    allowance) — separate, because an agent answers a re-sent command it already ran from its
//!    journal even after the command expired.
//!
//! Nothing here reads the clock or any state: the caller passes `now_ms`, and the nonce, action
//! and argument checks are the agent's (they need its journal and its config).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::Signature;

use super::canonical::{canonical_bytes, NONCE_BYTES};
use super::key::PublicKey;
use super::refusal::{Refusal, RefusalReason};
use crate::topic::validate_id;
use crate::wire::v1::command::{Command, CommandRef};
use crate::wire::v1::VERSION;

/// Largest command payload accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// Most arguments in one command.
pub const MAX_ARGS: usize = 32;
/// Longest argument value, in bytes.
pub const MAX_ARG_BYTES: usize = 1024;
/// Longest allowed `expires_ms - issued_ms`: one day. It bounds how long an agent must remember
/// a nonce.
pub const MAX_LIFETIME_MS: u64 = 86_400_000;

/// A command whose signature, key and target were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCommand {
    /// The command as received.
    pub command: Command,
    /// The nonce's bytes.
    pub nonce: [u8; NONCE_BYTES],
    /// The signature's bytes: two deliveries of one command id carry the same signature
    /// (Ed25519 signing is deterministic), a different command under a reused id does not.
    pub signature: [u8; 64],
}

impl VerifiedCommand {
    /// The ids to echo in acks.
    pub fn reference(&self) -> CommandRef {
        reference(&self.command)
    }
}

/// The ids of `c` that pass the id rules (others are left empty).
fn reference(c: &Command) -> CommandRef {
    let ok = |s: &str| {
        if validate_id(s).is_ok() {
            s.to_owned()
        } else {
            String::new()
        }
    };
    CommandRef {
        command_id: ok(&c.command_id),
        run_id: ok(&c.run_id),
        step: c.step,
        action: ok(&c.action),
    }
}

/// Checks commands for one agent against one public key.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: PublicKey,
    site: String,
    agent: String,
    skew_ms: u64,
    max_bytes: usize,
}

impl Verifier {
    /// A verifier for commands to `site`/`agent` signed by `key`, allowing `skew_ms` of clock
    /// difference in both directions.
    pub fn new(key: PublicKey, site: &str, agent: &str, skew_ms: u64) -> Self {
        Self {
            key,
            site: site.to_owned(),
            agent: agent.to_owned(),
            skew_ms,
            max_bytes: MAX_COMMAND_BYTES,
        }
    }

    /// The clock skew allowance.
    pub fn skew_ms(&self) -> u64 {
        self.skew_ms
    }

    /// Checks size, shape, key, signature and target (steps 1–4 of the module docs).
    ///
    /// # Errors
    /// The first check that fails, as a [`Refusal`] naming the field.
    pub fn verify_signed(&self, payload: &[u8]) -> Result<VerifiedCommand, Refusal> {
        use RefusalReason as R;
        if payload.len() > self.max_bytes {
            return Err(Refusal::new(
                R::Oversized,
                format!("{} bytes, limit {}", payload.len(), self.max_bytes),
                None,
            ));
        }
        let command: Command = serde_json::from_slice(payload).map_err(|e| {
            #[derive(serde::Deserialize)]
            struct VersionOnly {
                v: serde_json::Value,
            }
            match serde_json::from_slice::<VersionOnly>(payload) {
                Ok(VersionOnly { v }) if v.as_u64() != Some(VERSION) => Refusal::new(
                    R::UnsupportedVersion,
                    format!("v = {v}, this agent speaks v{VERSION}"),
                    None,
                ),
                _ => Refusal::new(R::Malformed, e.to_string(), None),
            }
        })?;
        let r = reference(&command);
        let malformed = |detail: String| Refusal::new(R::Malformed, detail, Some(r.clone()));
        if command.v != VERSION {
            return Err(Refusal::new(
                R::UnsupportedVersion,
                format!("v = {}, this agent speaks v{VERSION}", command.v),
                Some(r),
            ));
        }
        for (field, id) in [
            ("site", &command.site),
            ("agent", &command.agent),
            ("command_id", &command.command_id),
            ("run_id", &command.run_id),
            ("action", &command.action),
        ] {
            if let Err(e) = validate_id(id) {
                return Err(malformed(format!("{field} {id:?} {e}")));
            }
        }
        let nonce = parse_nonce(&command.nonce).ok_or_else(|| {
            malformed(format!(
                "nonce must be {} lower-case hex digits",
                2 * NONCE_BYTES
            ))
        })?;
        let signature: [u8; 64] = BASE64
            .decode(&command.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("signature must be 64 bytes in standard base64".into()))?;
        if command.expires_ms <= command.issued_ms {
            return Err(malformed(format!(
                "expires_ms {} is not after issued_ms {}",
                command.expires_ms, command.issued_ms
            )));
        }
        if command.expires_ms - command.issued_ms > MAX_LIFETIME_MS {
            return Err(malformed(format!(
                "lifetime {} ms exceeds {MAX_LIFETIME_MS} ms",
                command.expires_ms - command.issued_ms
            )));
        }
        if command.args.len() > MAX_ARGS {
            return Err(malformed(format!(
                "{} args, at most {MAX_ARGS}",
                command.args.len()
            )));
        }
        for (name, value) in &command.args {
            if validate_id(name).is_err() {
                return Err(malformed(format!(
                    "argument name {name:?} breaks the id rules"
                )));
            }
            if value.len() > MAX_ARG_BYTES {
                return Err(malformed(format!(
                    "args.{name} is {} bytes, at most {MAX_ARG_BYTES}",
                    value.len()
                )));
            }
        }
        if command.key_id != self.key.key_id() {
            return Err(Refusal::new(
                R::UnknownKey,
                format!(
                    "key_id {:?} is not this agent's key {}",
                    command.key_id.chars().take(64).collect::<String>(),
                    self.key.key_id()
                ),
                Some(r),
            ));
        }
        let sig = Signature::from_bytes(&signature);
        if self
            .key
            .verifying()
            .verify_strict(&canonical_bytes(&command), &sig)
            .is_err()
        {
            return Err(Refusal::new(
                R::BadSignature,
                "the signature does not verify with the configured public key",
                Some(r),
            ));
        }
        if command.site != self.site || command.agent != self.agent {
            return Err(Refusal::new(
                R::OtherAgent,
                format!(
                    "addressed to {}/{}, this is {}/{}",
                    command.site, command.agent, self.site, self.agent
                ),
                Some(r),
            ));
        }
        Ok(VerifiedCommand {
            command,
            nonce,
            signature,
        })
    }

    /// Checks the validity window at `now_ms`, with the skew allowance both ways.
    ///
    /// # Errors
    /// `expired` or `not_yet_valid`.
    pub fn check_time(&self, command: &VerifiedCommand, now_ms: u64) -> Result<(), Refusal> {
        let c = &command.command;
        if now_ms > c.expires_ms.saturating_add(self.skew_ms) {
            return Err(Refusal::new(
                RefusalReason::Expired,
                format!(
                    "expired at {} ({} ms ago, skew allowance {} ms)",
                    c.expires_ms,
                    now_ms - c.expires_ms,
                    self.skew_ms
                ),
                Some(command.reference()),
            ));
        }
        if c.issued_ms > now_ms.saturating_add(self.skew_ms) {
            return Err(Refusal::new(
                RefusalReason::NotYetValid,
                format!(
                    "issued_ms {} is {} ms ahead of this agent's clock (skew allowance {} ms)",
                    c.issued_ms,
                    c.issued_ms - now_ms,
                    self.skew_ms
                ),
                Some(command.reference()),
            ));
        }
        Ok(())
    }

    /// [`Verifier::verify_signed`] then [`Verifier::check_time`].
    ///
    /// # Errors
    /// The first check that fails.
    pub fn verify(&self, payload: &[u8], now_ms: u64) -> Result<VerifiedCommand, Refusal> {
        let command = self.verify_signed(payload)?;
        self.check_time(&command, now_ms)?;
        Ok(command)
    }
}

fn parse_nonce(text: &str) -> Option<[u8; NONCE_BYTES]> {
    if text.len() != 2 * NONCE_BYTES {
        return None;
    }
    let mut out = [0u8; NONCE_BYTES];
    for (i, b) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        if !pair.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::command::key::new_nonce;
    use crate::command::{CommandKey, UnsignedCommand};
    use crate::wire::v1::encode;

    const NOW: u64 = 1_767_225_600_000;
    const SKEW: u64 = 30_000;

    fn unsigned() -> UnsignedCommand {
        UnsignedCommand {
            site: "lab".into(),
            agent: "db-2".into(),
            command_id: "c-1".into(),
            run_id: "r-1".into(),
            step: 0,
            action: "promote".into(),
            args: BTreeMap::from([("role".to_owned(), "primary".to_owned())]),
            issued_ms: NOW,
            expires_ms: NOW + 60_000,
            nonce: new_nonce(),
        }
    }

    fn setup() -> (CommandKey, Verifier) {
        let key = CommandKey::from_seed([7; 32]);
        let verifier = Verifier::new(key.public(), "lab", "db-2", SKEW);
        (key, verifier)
    }

    fn reason(v: &Verifier, payload: &[u8], now: u64) -> RefusalReason {
        v.verify(payload, now).unwrap_err().reason
    }

    #[test]
    fn a_signed_command_for_this_agent_within_its_window_verifies() {
        let (key, v) = setup();
        let c = key.sign(unsigned());
        let ok = v.verify(&encode(&c), NOW).unwrap();
        assert_eq!(ok.command, c);
        // Both ends of the window, skew included.
        assert!(v.verify(&encode(&c), NOW + 60_000 + SKEW).is_ok());
        assert!(v.verify(&encode(&c), NOW - SKEW).is_ok());
    }

    #[test]
    fn each_stateless_refusal_has_its_reason() {
        use RefusalReason as R;
        let (key, v) = setup();
        let good = key.sign(unsigned());
        let enc = |c: &Command| encode(c);
        let tamper = |f: &dyn Fn(&mut Command)| {
            let mut c = good.clone();
            f(&mut c);
            enc(&c)
        };
        let resign = |f: &dyn Fn(&mut UnsignedCommand)| {
            let mut u = unsigned();
            f(&mut u);
            enc(&key.sign(u))
        };
        let other_key = CommandKey::from_seed([8; 32]).sign(unsigned());
        let mut forged = other_key.clone();
        forged.key_id = good.key_id.clone();
        let whole = enc(&good);
        let mut big = good.clone();
        big.run_id = "x".repeat(MAX_COMMAND_BYTES);
        let cases: Vec<(&str, Vec<u8>, R)> = vec![
            ("oversized", enc(&big), R::Oversized),
            ("truncated", whole[..whole.len() / 2].to_vec(), R::Malformed),
            ("not json", b"rm -rf /".to_vec(), R::Malformed),
            ("empty", Vec::new(), R::Malformed),
            ("v2", tamper(&|c| c.v = 2), R::UnsupportedVersion),
            (
                "bad id",
                tamper(&|c| c.command_id = "a b".into()),
                R::Malformed,
            ),
            (
                "short nonce",
                tamper(&|c| c.nonce = "00".into()),
                R::Malformed,
            ),
            (
                "upper nonce",
                tamper(&|c| c.nonce = "A".repeat(32)),
                R::Malformed,
            ),
            (
                "sig not b64",
                tamper(&|c| c.signature = "***".into()),
                R::Malformed,
            ),
            (
                "expiry first",
                resign(&|u| u.expires_ms = u.issued_ms),
                R::Malformed,
            ),
            (
                "too long",
                resign(&|u| u.expires_ms = u.issued_ms + MAX_LIFETIME_MS + 1),
                R::Malformed,
            ),
            (
                "huge arg",
                resign(&|u| {
                    u.args.insert("x".into(), "y".repeat(MAX_ARG_BYTES + 1));
                }),
                R::Malformed,
            ),
            (
                "bad arg name",
                resign(&|u| {
                    u.args.insert("a;b".into(), String::new());
                }),
                R::Malformed,
            ),
            ("wrong key", enc(&other_key), R::UnknownKey),
            ("forged", enc(&forged), R::BadSignature),
            (
                "changed arg",
                tamper(&|c| {
                    c.args.insert("role".into(), "standby".into());
                }),
                R::BadSignature,
            ),
            (
                "changed action",
                tamper(&|c| c.action = "wipe".into()),
                R::BadSignature,
            ),
            (
                "zero signature",
                tamper(&|c| c.signature = BASE64.encode([0u8; 64])),
                R::BadSignature,
            ),
            (
                "other agent",
                resign(&|u| u.agent = "db-1".into()),
                R::OtherAgent,
            ),
            (
                "other site",
                resign(&|u| u.site = "prod".into()),
                R::OtherAgent,
            ),
            (
                "expired",
                resign(&|u| {
                    u.issued_ms = NOW - 120_000;
                    u.expires_ms = NOW - SKEW - 1;
                }),
                R::Expired,
            ),
            (
                "future",
                resign(&|u| {
                    u.issued_ms = NOW + SKEW + 1;
                    u.expires_ms = NOW + 120_000;
                }),
                R::NotYetValid,
            ),
        ];
        for (name, payload, want) in cases {
            assert_eq!(reason(&v, &payload, NOW), want, "{name}");
        }
    }

    #[test]
    fn a_refusal_echoes_only_ids_that_pass_the_id_rules() {
        let (key, v) = setup();
        let mut c = key.sign(unsigned());
        c.action = "x y".into();
        let r = v.verify(&encode(&c), NOW).unwrap_err();
        let echoed = r.command.unwrap();
        assert_eq!(echoed.command_id, "c-1");
        assert_eq!(echoed.action, "");
    }

    #[test]
    fn signing_is_deterministic_so_a_resent_command_carries_the_same_signature() {
        let (key, v) = setup();
        let u = unsigned();
        let a = v.verify(&encode(&key.sign(u.clone())), NOW).unwrap();
        let b = v.verify(&encode(&key.sign(u)), NOW).unwrap();
        assert_eq!(a.signature, b.signature);
    }
}
