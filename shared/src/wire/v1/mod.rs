//! Protocol v1: JSON objects with `"v": 1`, the agent id, a per-start `boot` id and a per-boot
//! increasing `seq` on every entry, so that the collector can drop duplicates and see gaps.
//!
//! One message per file: [`result`] and [`capacity`] batches (agent → collector), [`gap`]
//! records inside a results batch, [`status`] birth and last will, the collector's [`ack`]
//! watermark and its retained [`collector_state`]; the signed [`command`] and its `cmd/ack`
//! answer. [`envelope`] holds what they share: the version, the size limit, decoding, and the
//! closed set of reasons a payload is rejected.

pub mod ack;
pub mod capacity;
pub mod collector_state;
pub mod command;
pub mod envelope;
pub mod gap;
pub mod result;
pub mod status;

pub use ack::Ack;
pub use capacity::{CapacityBatch, CapacitySample, DiskUsage, NetRate};
pub use collector_state::{CollectorState, CollectorStatus, CollectorStatusError};
pub use command::{Answer, CmdAck, Command, CommandOutcome, CommandRef, OutcomeStatus, TAIL_BYTES};
pub use envelope::{decode, encode, Envelope, RejectReason, Rejection, MAX_PAYLOAD_BYTES, VERSION};
pub use gap::{GapReason, GapRecord};
pub use result::{ProbeMetric, ProbeResult, ProbeState, ResultBatch};
pub use status::{AgentState, ProbeInventory, Status};
