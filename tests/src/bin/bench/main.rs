//! `bench`: benchmarks against the peers and the physical limit, each figure a ratio or a
//! side-by-side measured in the same run on the same machine (see BENCHMARKS.md).
//!
//! - `bench ingest` (P1): simulated agents publish batched results through a Mosquitto this
//!   command starts; runs alternate between a bare rumqttc subscriber (A, the baseline: what the
//!   broker can deliver) and the real collector binary (B: stored, deduplicated, flushed and
//!   acknowledged), each on a fresh broker.
//! - `bench sla-query` (P6, P7): per-minute rollups of N services × D days loaded into a sled
//!   store through the storage trait, then an SLA (availability) computation for every service
//!   over the window, side by side with hourly aggregates and an in-memory floor.
//! - `bench detection` (P5): a loopback HTTP target goes down and up ≥ 20 times; time from down
//!   to the incident's webhook, the real collector + agent side by side with Prometheus +
//!   blackbox exporter + Alertmanager (Debian's packages, installed when missing) watching the
//!   same outages.
//! - `bench footprint` (P2, P3): the real agent with 50 and 200 HTTP probes at 10 s plus host
//!   sampling, against blackbox_exporter (driven at the same probe rate) + node_exporter on the
//!   same loopback targets: RSS and CPU per probe, agent and peer runs alternating.
//! - `bench accuracy` (P4): the agent's reported HTTP latency against a minimal reqwest client
//!   (the floor) and blackbox_exporter's `probe_duration_seconds`, interleaved on one target.
//!
//! - `bench forecast`: the capacity forecast's exhaustion dates against Prometheus'
//!   `predict_linear` method (OLS over the same window) on ≥ 1,000 seeded synthetic series:
//!   median and p90 error, false and missed "fills within 14 days" alarms.
//!
//! Each subcommand starts what it needs and stops exactly what it started (child processes are
//! killed when their handles drop, temporary directories are removed). Benchmarks do not fail on
//! a number: they exit 0 when they could measure, and print one final summary line. `--smoke`
//! runs tiny sizes (CI runs it so that the benchmarks do not rot).

// A benchmark reports on stdout (results) and stderr (progress): that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod accuracy;
mod detection;
mod footprint;
mod forecast;
mod ingest;
mod machine;
mod mix;
mod peers;
mod procfs;
mod sla_query;
mod stats;

use clap::{Parser, Subcommand};

/// Benchmarks of Watchstand against the peers and the physical limit.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// P1: collector ingest vs a bare MQTT subscriber, same load, same broker, same machine.
    Ingest(ingest::Args),
    /// P6 + P7: SLA over per-minute rollups at 100 / 1,000 / 10,000 services; bytes on disk.
    SlaQuery(sla_query::Args),
    /// P5: target down → incident webhook, Watchstand vs Prometheus + Alertmanager, same outages.
    Detection(detection::Args),
    /// P2 + P3: agent RSS and CPU per probe vs blackbox_exporter + node_exporter, same targets.
    Footprint(footprint::Args),
    /// P4: the agent's reported HTTP latency vs a minimal reqwest client and blackbox_exporter.
    Accuracy(accuracy::Args),
    /// Capacity forecast accuracy vs Prometheus' predict_linear (OLS) on seeded synthetic series.
    Forecast(forecast::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The harness builds the collector with `cargo build` run from the current directory:
    // make that the workspace whatever directory the bench was started from.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").exists() {
        std::env::set_current_dir(&workspace)?;
    }
    machine::print_header();
    match cli.command {
        Command::Ingest(args) => ingest::main(&args),
        Command::SlaQuery(args) => sla_query::main(&args),
        Command::Detection(args) => detection::main(&args),
        Command::Footprint(args) => footprint::main(&args),
        Command::Accuracy(args) => accuracy::main(&args),
        Command::Forecast(args) => forecast::main(&args),
    }
}
