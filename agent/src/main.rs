//! `watchstand-agent`: the command line over the library's pipeline (probe → scheduler → outbox
//! → publisher → mqtt). It parses arguments, installs tracing and the signal handlers, and calls
//! `watchstand_agent::{load_config, run, probe_once}`.
//!
//! Exit codes: 0 ok; 1 `check` found problems (or `probe` saw a probe down); 2 error.

// `check` and `probe` print their results to stdout: that is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use watchstand_agent::probe::ProbeConfig;
use watchstand_agent::{load_config, ValidatedAgentConfig};
use watchstand_shared::config::LoadError;
use watchstand_shared::runtime::{install_tracing, shutdown_on_signals};
use watchstand_shared::wire::v1::{ProbeResult, ProbeState};

/// Exit code: success.
const EXIT_OK: u8 = 0;
/// Exit code: `check` found problems, or `probe` saw a probe that is down.
const EXIT_PROBLEMS: u8 = 1;
/// Exit code: an error stopped the command.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "watchstand-agent",
    version,
    about = "Watchstand agent: probes services, samples host capacity, publishes over MQTT"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing filter such as
    /// `watchstand_agent=debug,info`). Logs go to stderr.
    #[arg(long, global = true, default_value = "info", env = "WATCHSTAND_LOG")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or ctrl-c.
    Run {
        /// Config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate the config and print what would run; exit 1 listing every problem.
    Check {
        /// Config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the probes once (or only probe ID) and print the results.
    Probe {
        /// Config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Only this probe.
        id: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A load error as one message: its text already names the file and the cause, so the source
/// chain (which `{:#}` would append) is left out.
fn load(path: &Path) -> anyhow::Result<ValidatedAgentConfig> {
    load_config(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn describe_probe(p: &ProbeConfig) -> String {
    let schedule = format!("every {} timeout {}", p.interval(), p.timeout());
    match p {
        ProbeConfig::Http(h) => {
            let mut s = format!(
                "{} {} {schedule} expect {:?}",
                h.method, h.url, h.expect_status
            );
            if let Some(b) = &h.body_contains {
                s.push_str(&format!(" body_contains {b:?}"));
            }
            if let Some(r) = &h.body_regex {
                s.push_str(&format!(" body_regex {r:?}"));
            }
            if let Some(d) = h.degraded_after {
                s.push_str(&format!(" degraded_after {d}"));
            }
            if !h.tls_verify {
                s.push_str(" tls_verify=false");
            }
            if !h.headers.is_empty() {
                s.push_str(&format!(" headers {}", h.headers.len()));
            }
            s
        }
        ProbeConfig::Tcp(t) => format!("connect {} {schedule}", t.address),
        ProbeConfig::Exec(e) => format!("run {} {schedule}", e.target),
        ProbeConfig::Modbus(m) => format!(
            "read {:?} unit {} register {} count {} from {} {schedule}",
            m.function, m.unit, m.register, m.count, m.address
        ),
        ProbeConfig::Mqtt(m) => format!(
            "connect {}{} {schedule}",
            m.url,
            m.topic
                .as_deref()
                .map(|t| format!(" round trip {t:?}"))
                .unwrap_or_default()
        ),
        ProbeConfig::Dns(d) => {
            let mut s = format!("query {} {schedule}", d.target());
            if let Some(e) = &d.expect {
                s.push_str(&format!(" expect {e:?}"));
            }
            if let Some(c) = &d.contains {
                s.push_str(&format!(" contains {c:?}"));
            }
            if let Some(l) = d.degraded_after {
                s.push_str(&format!(" degraded_after {l}"));
            }
            s
        }
        ProbeConfig::Icmp(i) => {
            let mut s = format!(
                "ping {} x{} {} apart {schedule} max_loss_pct {}",
                i.host, i.count, i.interval_between, i.max_loss_pct
            );
            if let Some(l) = i.max_rtt {
                s.push_str(&format!(" max_rtt {l}"));
            }
            s
        }
        ProbeConfig::Tls(t) => format!(
            "handshake {} name {} {schedule} warn_days {} crit_days {} roots {}",
            t.address,
            t.name().unwrap_or("?"),
            t.warn_days,
            t.crit_days,
            t.ca_file
                .as_ref()
                .map_or_else(|| "mozilla".to_owned(), |p| p.display().to_string())
        ),
    }
}

fn print_plan(path: &Path, c: &ValidatedAgentConfig) {
    println!("{}: ok", path.display());
    println!(
        "agent     {}/{}  data_dir {}  max_concurrent_probes {}",
        c.site,
        c.agent_id,
        c.data_dir.display(),
        c.max_concurrent_probes
    );
    match c.health_listen {
        Some(addr) => println!("health    http://{addr}/health"),
        None => println!("health    off"),
    }
    println!(
        "mqtt      {}  topic_root {}  client_id {}  max_packet_size {}",
        c.mqtt.url,
        c.mqtt.topic_root,
        c.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| c.default_client_id()),
        c.mqtt.max_packet_size
    );
    if c.mqtt.uses_tls() {
        let t = &c.mqtt.tls;
        let show = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
        };
        println!(
            "tls       ca {}  cert {}  key {}  server_name {}",
            show(&t.ca_file),
            show(&t.cert_file),
            show(&t.key_file),
            t.server_name.as_deref().unwrap_or("(url host)")
        );
    }
    println!(
        "outbox    max_entries {}  max_bytes {}  resend_after {}",
        c.outbox.max_entries,
        c.outbox.max_bytes,
        watchstand_shared::config::Duration(c.outbox.resend_after)
    );
    println!(
        "publish   batch_max_entries {}  linger {}",
        c.publish.batch_max_entries,
        watchstand_shared::config::Duration(c.publish.linger)
    );
    println!(
        "capacity  every {}",
        watchstand_shared::config::Duration(c.capacity_interval)
    );
    println!("probes    {}", c.probes.len());
    let width = c.probes.iter().map(|p| p.id().len()).max().unwrap_or(0);
    for p in &c.probes {
        println!("  {:width$}  {:6}  {}", p.id(), p.kind(), describe_probe(p));
    }
    match &c.commands {
        None => println!("commands  off (no [commands]: the cmd topic is not subscribed)"),
        Some(s) => {
            println!(
                "commands  key {}  clock_skew {}  actions {}{}",
                s.public_key.key_id(),
                watchstand_shared::config::Duration(s.clock_skew),
                s.actions.len(),
                if s.actions.is_empty() {
                    " (every command is refused: no_actions)"
                } else {
                    ""
                }
            );
            let mut actions: Vec<_> = s.actions.values().collect();
            actions.sort_by(|a, b| a.id.cmp(&b.id));
            for a in actions {
                let (kind, what) = match &a.kind {
                    watchstand_agent::actions::ActionKind::Exec { argv } => {
                        ("exec", format!("{} template(s)", argv.len()))
                    }
                    watchstand_agent::actions::ActionKind::Http { method, .. } => {
                        ("http", method.to_string())
                    }
                };
                let args: Vec<&str> = a.args.keys().map(String::as_str).collect();
                println!(
                    "  {}  {kind}  {what}  timeout {}  args [{}]",
                    a.id,
                    watchstand_shared::config::Duration(a.timeout),
                    args.join(", ")
                );
            }
        }
    }
}

fn print_results(results: &[ProbeResult], json: bool) {
    if json {
        for r in results {
            let line = serde_json::json!({
                "probe": r.probe,
                "kind": r.kind,
                "target": r.target,
                "observed_ms": r.observed_ms,
                "state": r.state,
                "latency_us": r.latency_us,
                "error": r.error,
                "metrics": r.metrics,
            });
            println!("{line}");
        }
        return;
    }
    let width = results
        .iter()
        .map(|r| r.probe.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:width$}  KIND    STATE     LATENCY     TARGET / ERROR",
        "PROBE"
    );
    for r in results {
        let latency = format!("{:.1}ms", r.latency_us as f64 / 1_000.0);
        println!(
            "{:width$}  {:6}  {:8}  {:>10}  {}",
            r.probe,
            r.kind,
            r.state.as_str(),
            latency,
            r.target
        );
        if let Some(e) = &r.error {
            println!("{:width$}  {:6}  {:8}  {:>10}  {e}", "", "", "", "");
        }
        for m in &r.metrics {
            println!(
                "{:width$}  {:6}  {:8}  {:>10}  {} = {}{}",
                "",
                "",
                "",
                "metric",
                m.name,
                m.value,
                m.uom.as_deref().unwrap_or("")
            );
        }
    }
}

async fn main_inner(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check { config } => match load_config(&config) {
            Ok(c) => {
                c.mqtt.warn_exposed_secrets(&config);
                if let Err(e) = c.mqtt.check_files() {
                    println!("{}: {e}", config.display());
                    return Ok(EXIT_PROBLEMS);
                }
                // Builds each probe as `run` would: reads files such as a tls probe's ca_file.
                let clients = watchstand_agent::probe::HttpClients::default();
                for p in &c.probes {
                    if let Err(e) = watchstand_agent::probe::Probe::build_shared(p, &clients) {
                        println!("{}: {e}", config.display());
                        return Ok(EXIT_PROBLEMS);
                    }
                }
                print_plan(&config, &c);
                Ok(EXIT_OK)
            }
            Err(e @ (LoadError::Invalid(_) | LoadError::Parse { .. })) => {
                println!("{e}");
                Ok(EXIT_PROBLEMS)
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        },
        Command::Probe { config, id, json } => {
            let c = load(&config)?;
            let results = watchstand_agent::probe_once(&c, id.as_deref()).await?;
            print_results(&results, json);
            let all_up = results.iter().all(|r| r.state != ProbeState::Down);
            Ok(if all_up { EXIT_OK } else { EXIT_PROBLEMS })
        }
        Command::Run { config } => {
            let c = load(&config)?;
            c.mqtt.warn_exposed_secrets(&config);
            watchstand_agent::run(c, shutdown_on_signals()).await?;
            Ok(EXIT_OK)
        }
    }
}

/// One runtime thread: probes, outbox, publisher and MQTT are light, I/O-bound tasks. A
/// multi-threaded runtime cost more CPU per probe in wake-ups and work stealing than it saved
/// (`bench footprint`), and a worker thread each in RSS. Blocking work (sled flushes, host
/// sampling, the outbox open) runs on tokio's blocking pool, so the checks' timing is not held
/// up by it.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = install_tracing(&cli.log_level) {
        eprintln!("watchstand-agent: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    match main_inner(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "watchstand-agent: {}",
                watchstand_shared::runtime::error_report(e.as_ref())
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}
