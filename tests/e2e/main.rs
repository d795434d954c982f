//! End-to-end tests: the real binaries, a real broker (embedded rumqttd and Mosquitto), real
//! HTTP/TCP targets on 127.0.0.1. One binary, one module per concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod backlog;
mod bench_smoke;
mod broker_identity;
mod burst;
mod capacity;
mod clean_stop;
mod commands;
mod configs;
mod dashboard;
mod delivery;
mod demo;
mod disk_full;
mod drills;
mod drills_paging;
mod faults;
mod faults_agent;
mod first_hour;
mod health;
mod incidents;
mod incidents_truth;
mod malformed;
mod mqtt_tls;
mod pipeline;
mod probes_gw;
mod probes_net;
mod reports;

mod runbook_actions;
mod runbooks;
mod security;
mod shutdown;
