//! Watchstand's shared crate: everything the agent and the collector must agree on.
//!
//! # Layout
//! - [`command`]: signed commands: canonical bytes, keys, the stateless verifier and the
//!   closed set of refusal reasons.
//! - [`wire`]: the MQTT payloads of protocol v1, one message per file, with decode/encode and
//!   the reasons a payload is rejected.
//! - [`topic`]: the topic layout (`{root}/v1/{site}/{agent}/{channel}`) and id validation.
//! - [`config`]: config pieces both binaries use: durations (`"10s"`), the MQTT connection block,
//!   key-path errors, and the reconnect backoff.
//! - [`storage`]: the storage trait with its sled engine and the in-memory model that the
//!   conformance suite checks it against. The agent's outbox and the collector's store both use it.
//! - [`mqtt`]: the event-loop driver task (backoff, publish routing, connection events).
//! - [`process`]: the one process runner (argv, deadline, process-group kill, bounded output)
//!   of the agent's `exec` actions and probe and the collector's runbook `exec` step.
//! - [`runtime`]: the binaries' edge: log subscriber, shutdown on SIGINT/SIGTERM.
//! - [`secrets`]: a redacting `Secret` string and the check for secret files others can read.
//! - [`time`]: the wall clock in epoch milliseconds, the unit of every `*_ms` field.
#![deny(missing_docs)]

pub mod command;
pub mod config;
pub mod mqtt;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod storage;
pub mod time;
pub mod topic;
pub mod wire;
