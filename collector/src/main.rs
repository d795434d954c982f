//! `watchstand-collector`: the binary's edge — arguments, logging, signals, exit codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use watchstand_collector::cli::{self, ApiClient, Format};
use watchstand_collector::{config, demo, server};
use watchstand_shared::config::Duration;

/// Watchstand collector: ingest, store, SLA, API.
#[derive(Debug, Parser)]
#[command(name = "watchstand-collector", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (embedded broker if configured, ingest, API).
    Serve {
        /// Collector config file.
        #[arg(short, long, default_value = "configs/collector.toml")]
        config: PathBuf,
    },
    /// Validate the config (and its services file) and print what would run.
    Check {
        /// Collector config file.
        #[arg(short, long, default_value = "configs/collector.toml")]
        config: PathBuf,
    },
    /// Run the whole loop on loopback: broker, collector, an agent, demo services with a
    /// scripted outage, a live SLA summary. Ctrl-C stops it.
    Demo {
        /// Preferred API address (a free port is used when it is taken).
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        /// Stop after this long (e.g. `2m`); default: until Ctrl-C.
        #[arg(long)]
        duration: Option<Duration>,
        /// Keep data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// SLA attainment per service, from a running collector's API.
    Sla {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Start (RFC 3339 or epoch ms); default: the service's SLO window.
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339 or epoch ms); default: now.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The collector's API.
        #[arg(
            long,
            env = "WATCHSTAND_SERVER",
            default_value = "http://127.0.0.1:8088"
        )]
        server: String,
    },
    /// The agent registry of a running collector.
    Agents {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The collector's API.
        #[arg(
            long,
            env = "WATCHSTAND_SERVER",
            default_value = "http://127.0.0.1:8088"
        )]
        server: String,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// A token cancelled on SIGINT or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot listen for SIGTERM; Ctrl-C only.");
                    let _ignored = tokio::signal::ctrl_c().await.is_ok();
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ignored = tokio::signal::ctrl_c().await.is_ok();
        }
        tracing::info!("Signal received; shutting down.");
        t.cancel();
    });
    token
}

async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Serve { config } => {
            let config = config::load(&config)?;
            server::run(config, shutdown_on_signals()).await
        }
        Command::Check { config } => {
            let c = config::load(&config)?;
            let mut out = format!(
                "{}: ok\n  collector {} · data {} · API {} · broker {}\n  {} services:\n",
                c.origin.display(),
                c.id,
                c.data_dir.display(),
                c.listen,
                match c.broker {
                    config::BrokerMode::Embedded { listen } => format!("embedded on {listen}"),
                    config::BrokerMode::External => c.mqtt.url.clone(),
                },
                c.catalogue.services.len()
            );
            for s in &c.catalogue.services {
                out.push_str(&format!(
                    "    {} ({}, {}): mode {} over {} probe(s), SLO window {}\n",
                    s.id,
                    s.name,
                    format!("{:?}", s.criticality).to_lowercase(),
                    s.mode_text,
                    s.probes.len(),
                    s.window_text
                ));
            }
            write_stdout(&out)
        }
        Command::Demo {
            listen,
            duration,
            data_dir,
        } => {
            demo::run(demo::DemoOptions {
                listen,
                duration: duration.map(|d| d.get()),
                data_dir,
            })
            .await
        }
        Command::Sla {
            service,
            from,
            to,
            format,
            server,
        } => {
            let client = ApiClient::new(&server)?;
            let text = cli::sla(
                &client,
                service.as_deref(),
                from.as_deref(),
                to.as_deref(),
                format,
            )
            .await?;
            write_stdout(&text)
        }
        Command::Agents { format, server } => {
            let client = ApiClient::new(&server)?;
            write_stdout(&cli::agents(&client, format).await?)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
