//! Signed commands: the collector signs an action request with its Ed25519 key, the agent checks
//! it before it runs anything. Place in the flow: runbook step → **sign** → `cmd` topic → agent
//! **verify** → action → `cmd/ack`.
//!
//! - [`canonical`]: the exact bytes that are signed (not JSON: a domain-separation prefix and
//!   length-prefixed fields in a fixed order), so that a re-serialisation cannot change what was
//!   signed and no two commands share their bytes.
//! - [`key`]: the collector's private key ([`CommandKey`], file format, 0600) and the agents'
//!   [`PublicKey`] with its fingerprint (`key_id`).
//! - [`verify`]: the stateless checks (size, shape, key, signature, target agent, expiry with
//!   clock skew) that return a typed [`Refusal`]. The stateful ones (nonce replay, the action and
//!   argument rules, the journal of executed command ids) are the agent's.
//! - [`signer`]: what the runbook engine signs with: the key, a lifetime, a fresh nonce each.
//! - [`refusal`]: the closed set of reasons, each with a stable snake_case name used in acks,
//!   logs and `/health` counts.

pub mod canonical;
pub mod key;
pub mod refusal;
pub mod signer;
pub mod verify;

pub use canonical::{canonical_bytes, UnsignedCommand, DOMAIN, NONCE_BYTES};
pub use key::{new_nonce, CommandKey, KeyError, PublicKey};
pub use refusal::{Refusal, RefusalReason};
pub use signer::{CommandRequest, Signer};
pub use verify::{
    VerifiedCommand, Verifier, MAX_ARGS, MAX_ARG_BYTES, MAX_COMMAND_BYTES, MAX_LIFETIME_MS,
};
