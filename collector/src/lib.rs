//! Watchstand collector: receives what agents measure over MQTT, stores it durably, and reports
//! SLA attainment per service.
//!
//! # Flow
//! ```text
//! agents ─► broker (embedded rumqttd or Mosquitto) ─► ingest ─► store (sled) ─► SLA ─► API / CLI
//!                 ▲                                      │
//!                 └────────── ack watermark ◄────────────┘ (after the flush)
//! ```
//!
//! # Layout
//! - [`config`]: raw TOML → pure `validate()` → [`config::CollectorConfig`]; the service catalogue.
//! - [`broker`]: the embedded rumqttd (port check, readiness by a real connect).
//! - [`ingest`]: decode, dedupe by (agent, boot, seq), book gaps, commit, then acknowledge.
//! - [`store`]: the collector's trees over the shared storage trait.
//! - [`rollup`]: per-probe per-minute rollups, recomputed from raw data.
//! - [`capacity`]: capacity rollups (5-minute, hourly), forecasts, `[capacity]` settings.
//! - [`registry`]: agents, their online/offline state and counters.
//! - [`incident`]: rules, the incident lifecycle, flapping, inhibition, webhook notifications.
//! - [`engine`]: the one task that owns incident state, fed by one queue of `EngineEvent`s.
//! - [`sla`]: the SLA arithmetic (pure); [`availability`] feeds it from the store.
//! - [`auth`]: roles, API tokens, `[api]`; [`audit`]: the hash-chained audit log.
//! - [`report`]: the ISO/IEC 20000 reports (availability, service, incident, capacity, the
//!   continuity test report of a drill run) as JSON, CSV, Markdown and HTML.
//! - [`api`]: the HTTP API and `/metrics`; [`cli`] its command-line clients.
//! - [`server`]: wires all of the above for `serve`; [`demo`] runs the whole loop on loopback.
//! - [`events`]: ingest counters and their log lines.
//! - [`verify`]: the store's invariant checker (crash tests, audits).

pub mod api;
pub mod audit;
pub mod auth;
pub mod availability;
pub mod broker;
pub mod capacity;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod drill;
pub mod engine;
pub mod events;
pub mod health;
pub mod human;
pub mod incident;
pub mod ingest;
pub mod registry;
pub mod report;
pub mod rollup;
pub mod runbook;
pub mod server;
pub mod sla;
pub mod store;
pub mod verify;
