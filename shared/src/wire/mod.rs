//! The MQTT payloads, by protocol version. Only v1 exists; a v2 would be a sibling module.

pub mod v1;
