//! End-to-end tests: the real binaries, a real broker (embedded rumqttd and Mosquitto), real
//! HTTP/TCP targets on 127.0.0.1. One binary, one module per concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod bench_smoke;
mod burst;
mod clean_stop;
mod configs;
mod delivery;
mod faults;
mod faults_agent;
mod health;
mod incidents;
mod malformed;
mod pipeline;
mod shutdown;
