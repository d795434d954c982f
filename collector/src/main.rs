//! `watchstand-collector`: the binary's edge — arguments, logging, signals, exit codes. The work
//! is in the library (`server`, `demo`, `cli`).
//!
//! Exit codes: 0 ok; 1 `check` found problems in the config, or `audit verify` a broken link; 2
//! error.

// `check` and the API clients print their results to stdout: that is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use watchstand_collector::audit::AuditLog;
use watchstand_collector::auth::{Role, Token};
use watchstand_collector::capacity::cli as capacity_cli;
use watchstand_collector::cli::{self, ApiClient, Format, Output};
use watchstand_collector::human::format_seconds;
use watchstand_collector::report::cli as report_cli;
use watchstand_collector::store::Store;
use watchstand_collector::{config, demo, server};
use watchstand_shared::command::CommandKey;
use watchstand_shared::config::{Duration, LoadError};
use watchstand_shared::runtime::{install_tracing, shutdown_on_signals};
use watchstand_shared::secrets::{read_secret_file, Secret};

/// Where a client subcommand finds the API and how it authenticates.
#[derive(Debug, clap::Args)]
struct ApiOpts {
    /// The collector's API.
    #[arg(
        long,
        env = "WATCHSTAND_SERVER",
        default_value = "http://127.0.0.1:8088",
        global = true
    )]
    server: String,
    /// API token (`wst_…`, from `token create`). Prefer WATCHSTAND_TOKEN or --token-file: a
    /// command line is visible to other users of the host.
    #[arg(long, env = "WATCHSTAND_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File whose first line is the API token (warned about when others may read it).
    #[arg(long, conflicts_with = "token", global = true)]
    token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an https:// --server (besides the system's).
    #[arg(long, env = "WATCHSTAND_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
}

impl ApiOpts {
    fn secret(&self) -> anyhow::Result<Option<Secret>> {
        if let Some(t) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            return Ok(Some(Secret::new(t.trim())));
        }
        self.token_file
            .as_deref()
            .map(|path| {
                read_secret_file(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))
            })
            .transpose()
    }

    /// The API client of every client subcommand: `--server`, its CA and the token.
    fn client(&self) -> anyhow::Result<ApiClient> {
        let ca = self
            .ca_file
            .as_deref()
            .map(|path| {
                std::fs::read(path)
                    .with_context(|| format!("cannot read the CA file {}", path.display()))
            })
            .transpose()?;
        Ok(ApiClient::with_ca(&self.server, ca.as_deref())?.with_token(self.secret()?))
    }
}

/// The options of a client subcommand that prints tables or JSON: the output form and the API.
#[derive(Debug, clap::Args)]
struct ClientOpts {
    #[arg(long, value_enum, default_value = "table", global = true)]
    format: Format,
    /// Tables show local time, not UTC.
    #[arg(long, global = true)]
    local: bool,
    #[command(flatten)]
    api: ApiOpts,
}

impl ClientOpts {
    fn output(&self) -> Output {
        Output {
            format: self.format,
            local: self.local,
        }
    }
}

/// Watchstand collector: ingest, store, SLA, API.
#[derive(Debug, Parser)]
#[command(name = "watchstand-collector", version, about)]
struct Args {
    /// Log filter (error, warn, info, debug, trace, or a tracing filter such as
    /// `watchstand_collector=debug,info`). Logs go to stderr. The embedded broker's own logs
    /// are off unless the filter names `rumqttd`.
    #[arg(long, global = true, default_value = "info", env = "WATCHSTAND_LOG")]
    log_level: String,

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
    #[command(mut_arg("local", |a| a.help(
        "Tables show local time (and dates in --from/--to are local midnight), not UTC"
    )))]
    Sla {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Start: a date (2026-12-07), RFC 3339, epoch ms, `now` or a time ago (`-24h`, `-7d`);
        /// default: the service's SLO window.
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End, in the same forms; default: now.
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Incidents of a running collector: list, show, acknowledge, resolve.
    Incidents {
        #[command(subcommand)]
        action: IncidentAction,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Failover drills of a running collector: list, run, runs, show, report, review, summary.
    Drills {
        #[command(subcommand)]
        action: DrillCmd,
        #[command(flatten)]
        api: ApiOpts,
    },
    /// Continuity runbooks of a running collector: list, run, runs, show, approve, reject,
    /// cancel.
    Runbooks {
        #[command(subcommand)]
        action: RunbookCmd,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The agent registry of a running collector.
    Agents {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Capacity of a running collector: the summary of every agent and metric (hosts at risk
    /// first), or one metric's forecast.
    Capacity {
        #[command(subcommand)]
        action: Option<CapacityAction>,
        /// Only this agent (required for `forecast`).
        #[arg(long, global = true)]
        agent: Option<String>,
        /// Only this metric, e.g. `disk_used_pct:/` (required for `forecast`).
        #[arg(long, global = true)]
        metric: Option<String>,
        /// Period start (as for `sla`); default: `[capacity] window` before now.
        #[arg(long, allow_hyphen_values = true, global = true)]
        from: Option<String>,
        /// Period end; default: now.
        #[arg(long, allow_hyphen_values = true, global = true)]
        to: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// An ISO/IEC 20000 report from a running collector's API: availability, service,
    /// incident or capacity, as JSON, CSV, Markdown or HTML.
    Report {
        /// availability, service, incident or capacity.
        kind: String,
        /// A calendar month, UTC (`2026-11`); default (without --from/--to): the last whole
        /// month.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        period: Option<String>,
        /// Start (as for `sla`: a date, RFC 3339, epoch ms, `-7d`).
        #[arg(long, allow_hyphen_values = true)]
        from: Option<String>,
        /// End (default: now).
        #[arg(long, allow_hyphen_values = true, requires = "from")]
        to: Option<String>,
        /// json, csv, md or html.
        #[arg(long, default_value = "md")]
        format: String,
        /// Write the report here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Dates in --from/--to are local midnight, not UTC.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        api: ApiOpts,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// The Ed25519 key that signs commands to agents.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make a new signing key: writes the private key to --out (mode 0600) and prints the
    /// public key with the `[commands]` line for agents' configs.
    Generate {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (agents holding the old public key then refuse commands
        /// with `unknown_key` until their config is updated).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CapacityAction {
    /// Every agent and metric (the default): current, peak, p95, trend/day, projected date.
    Summary,
    /// One metric's forecast (`--agent`, `--metric`).
    Forecast,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Make a new random token: prints it once, and the `[[api.tokens]]` lines (its SHA-256) to
    /// add to the collector config.
    Create {
        /// Who holds it (shown in incident timelines and the audit log).
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check the hash chain of the audit log in a stopped collector's data dir; names the first
    /// broken link (exit 1), or prints the record count (exit 0).
    Verify {
        /// The collector's data_dir (the store; the collector must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Exit code: success.
const EXIT_OK: u8 = 0;
/// Exit code: `check` found problems, `audit verify` a broken link.
const EXIT_PROBLEMS: u8 = 1;
/// Exit code: an error stopped the command.
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Subcommand)]
enum IncidentAction {
    /// Newest first.
    List {
        /// open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// One incident with its timeline.
    Show {
        /// Incident id.
        id: u64,
    },
    /// Acknowledge: someone is on it (who: the token's holder).
    Ack {
        /// Incident id.
        id: u64,
        /// Comment.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Resolve by hand, with a resolution note (who: the token's holder).
    Resolve {
        /// Incident id.
        id: u64,
        /// Resolution note.
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, Subcommand)]
enum DrillCmd {
    /// The configured drills, their schedules and next times.
    List,
    /// Start a drill now (who: the token's holder; operator role).
    Run {
        /// Drill id.
        id: String,
    },
    /// Drill runs, newest first.
    Runs {
        /// Only this drill.
        #[arg(long)]
        drill: Option<String>,
    },
    /// One drill run as stored.
    Show {
        /// Drill run id.
        id: u64,
    },
    /// The continuity test report of a drill run.
    Report {
        /// Drill run id.
        id: u64,
        /// json, csv, md or html.
        #[arg(long, default_value = "md")]
        format: String,
        /// Write the report here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record the review of a finished drill run.
    Review {
        /// Drill run id.
        id: u64,
        /// Reviewer.
        #[arg(long)]
        reviewer: String,
        /// Findings.
        #[arg(long)]
        findings: String,
        /// A corrective action (repeatable).
        #[arg(long = "action")]
        actions: Vec<String>,
        /// The continuity plan was updated.
        #[arg(long)]
        plan_updated: bool,
    },
    /// Every critical service drilled within its interval?
    Summary,
}

#[derive(Debug, Subcommand)]
enum RunbookCmd {
    /// The configured runbooks, their triggers and steps.
    List,
    /// Start a runbook by hand (who: the token's holder).
    Run {
        /// Runbook id.
        id: String,
    },
    /// Runs, newest first.
    Runs {
        /// Only this runbook.
        #[arg(long)]
        runbook: Option<String>,
        /// running, succeeded, failed, cancelled or skipped.
        #[arg(long)]
        status: Option<String>,
    },
    /// One run with its step timeline.
    Show {
        /// Run id.
        id: u64,
    },
    /// Approve the approval step a run waits on.
    Approve {
        /// Run id.
        id: u64,
    },
    /// Reject it (the run fails).
    Reject {
        /// Run id.
        id: u64,
    },
    /// Cancel a run.
    Cancel {
        /// Run id.
        id: u64,
    },
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Serve { config } => {
            let path = config;
            let config = config::load(&path)?;
            config.mqtt.warn_exposed_secrets(&path);
            server::run(config, shutdown_on_signals()).await?;
            Ok(EXIT_OK)
        }
        Command::Check { config } => {
            let c = match config::load(&config) {
                Ok(c) => c,
                Err(e @ (LoadError::Invalid(_) | LoadError::Parse { .. })) => {
                    println!("{e}");
                    return Ok(EXIT_PROBLEMS);
                }
                Err(e) => return Err(e.into()),
            };
            c.mqtt.warn_exposed_secrets(&config);
            if let Err(e) = c.mqtt.check_files() {
                write_stdout(&format!("{}: {e}\n", c.origin.display()))?;
                return Ok(EXIT_PROBLEMS);
            }
            let signing = match c.commands.load_key() {
                Ok(Some(key)) => format!("signed with {}", key.public().key_id()),
                Ok(None) => "none (no [commands] key_file)".to_owned(),
                Err(e) => {
                    write_stdout(&format!("{}: {e}\n", c.origin.display()))?;
                    return Ok(EXIT_PROBLEMS);
                }
            };
            let taken = config::ports::taken(&c);
            if !taken.is_empty() {
                let origin = c.origin.display();
                let mut out = format!("{origin}: {} port(s) taken\n", taken.len());
                for t in &taken {
                    out.push_str(&format!("  {origin}: {t}\n"));
                }
                write_stdout(&out)?;
                return Ok(EXIT_PROBLEMS);
            }
            let mut out = format!(
                "{}: ok\n  collector {} · data {} · API {} · broker {}\n  API access: {}\n  {} services:\n",
                c.origin.display(),
                c.id,
                c.data_dir.display(),
                c.listen,
                match c.broker {
                    config::BrokerMode::Embedded { listen } => format!("embedded on {listen}"),
                    config::BrokerMode::External => c.mqtt.url.clone(),
                },
                c.api.summary(),
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
            out.push_str(&format!("  capacity: {}\n", c.capacity.summary()));
            out.push_str(&format!("  agent actions: {signing}\n"));
            if !c.runbooks.is_empty() {
                out.push_str(&format!("  {} runbook(s):\n", c.runbooks.len()));
            }
            for b in &c.runbooks {
                let trigger = b.on_incident.as_ref().map_or_else(String::new, |t| {
                    format!(
                        ", on incidents ≥ {:?} after {}",
                        t.min_priority,
                        format_seconds(t.after_ms as f64 / 1_000.0)
                    )
                });
                let steps: Vec<String> = b
                    .steps
                    .iter()
                    .map(|st| format!("{} ({})", st.id, st.action.kind()))
                    .collect();
                out.push_str(&format!(
                    "    {} for {}{trigger}{}: {}\n",
                    b.id,
                    b.service,
                    if b.manual { ", manual" } else { "" },
                    steps.join(" → ")
                ));
            }
            write_stdout(&out)?;
            Ok(EXIT_OK)
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
            .await?;
            Ok(EXIT_OK)
        }
        Command::Sla {
            service,
            from,
            to,
            opts,
        } => {
            let text = cli::sla(
                &opts.api.client()?,
                service.as_deref(),
                from.as_deref(),
                to.as_deref(),
                opts.output(),
            )
            .await?;
            write_stdout(&text)?;
            Ok(EXIT_OK)
        }
        Command::Incidents { action, opts } => {
            let (client, format) = (opts.api.client()?, opts.output());
            let text = match action {
                IncidentAction::List { state, service } => {
                    cli::incidents(&client, state.as_deref(), service.as_deref(), format).await?
                }
                IncidentAction::Show { id } => cli::incident(&client, id, format).await?,
                IncidentAction::Ack { id, comment } => {
                    cli::incident_action(&client, id, "ack", &comment, format).await?
                }
                IncidentAction::Resolve { id, comment } => {
                    cli::incident_action(&client, id, "resolve", &comment, format).await?
                }
            };
            write_stdout(&text)?;
            Ok(EXIT_OK)
        }
        Command::Runbooks { action, opts } => {
            let (client, format) = (opts.api.client()?, opts.output());
            let text = match action {
                RunbookCmd::List => cli::runbooks(&client, format).await?,
                RunbookCmd::Run { id } => cli::start_runbook(&client, &id, format).await?,
                RunbookCmd::Runs { runbook, status } => {
                    cli::runbook_runs(&client, runbook.as_deref(), status.as_deref(), format)
                        .await?
                }
                RunbookCmd::Show { id } => cli::runbook_run(&client, id, format).await?,
                RunbookCmd::Approve { id } => {
                    cli::runbook_action(&client, id, "approve", format).await?
                }
                RunbookCmd::Reject { id } => {
                    cli::runbook_action(&client, id, "reject", format).await?
                }
                RunbookCmd::Cancel { id } => {
                    cli::runbook_action(&client, id, "cancel", format).await?
                }
            };
            write_stdout(&text)?;
            Ok(EXIT_OK)
        }
        Command::Drills { action, api } => {
            use watchstand_collector::drill::cli as d;
            let client = api.client()?;
            let text = match action {
                DrillCmd::List => d::list(&client).await?,
                DrillCmd::Run { id } => d::run(&client, &id).await?,
                DrillCmd::Runs { drill } => d::runs(&client, drill.as_deref()).await?,
                DrillCmd::Show { id } => d::show(&client, id).await?,
                DrillCmd::Report { id, format, out } => {
                    let text = d::report(&client, id, &format).await?;
                    match out {
                        Some(path) => {
                            report_cli::write(&path, &text)?;
                            eprintln!(
                                "Wrote the continuity report of drill run {id} to {}.",
                                path.display()
                            );
                            String::new()
                        }
                        None => text,
                    }
                }
                DrillCmd::Review {
                    id,
                    reviewer,
                    findings,
                    actions,
                    plan_updated,
                } => {
                    let body = watchstand_collector::api::drills::ReviewBody {
                        reviewer,
                        findings,
                        corrective_actions: actions,
                        plan_updated,
                    };
                    d::review(&client, id, &body).await?
                }
                DrillCmd::Summary => d::summary(&client).await?,
            };
            write_stdout(&text)?;
            Ok(EXIT_OK)
        }
        Command::Agents { opts } => {
            write_stdout(&cli::agents(&opts.api.client()?, opts.output()).await?)?;
            Ok(EXIT_OK)
        }
        Command::Capacity {
            action,
            agent,
            metric,
            from,
            to,
            opts,
        } => {
            let (client, output) = (opts.api.client()?, opts.output());
            let (agent, metric, from, to) = (
                agent.as_deref(),
                metric.as_deref(),
                from.as_deref(),
                to.as_deref(),
            );
            let text = match action.unwrap_or(CapacityAction::Summary) {
                CapacityAction::Summary => {
                    capacity_cli::summary(&client, agent, metric, from, to, output).await?
                }
                CapacityAction::Forecast => {
                    capacity_cli::forecast(&client, agent, metric, from, to, output).await?
                }
            };
            write_stdout(&text)?;
            Ok(EXIT_OK)
        }
        Command::Report {
            kind,
            period,
            from,
            to,
            format,
            out,
            local,
            api,
        } => {
            let client = api.client()?;
            let text = report_cli::fetch(
                &client,
                report_cli::ReportRequest {
                    kind: &kind,
                    period: period.as_deref(),
                    from: from.as_deref(),
                    to: to.as_deref(),
                    format: &format,
                    local,
                },
            )
            .await?;
            match out {
                Some(path) => {
                    report_cli::write(&path, &text)?;
                    eprintln!("Wrote the {kind} report to {}.", path.display());
                }
                None => write_stdout(&text)?,
            }
            Ok(EXIT_OK)
        }
        Command::Token {
            action: TokenAction::Create { name, role },
        } => {
            let role: Role = role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
            watchstand_shared::topic::validate_id(&name)
                .map_err(|e| anyhow::anyhow!("--name: {name:?} {e}"))?;
            let token = Token::generate();
            write_stdout(&format!(
                "Token for {name} ({role}); it is shown only now, keep it in a file only you can read (chmod 600):\n\n  {}\n\nAdd to the collector config and restart it:\n\n{}",
                token.secret.expose(),
                token.config_lines(&name, role)
            ))?;
            Ok(EXIT_OK)
        }
        Command::Keys {
            action: KeysAction::Generate { out, force },
        } => {
            let key = CommandKey::generate();
            key.write(&out, force)?;
            let public = key.public();
            write_stdout(&format!(
                "Private key written to {} (mode 0600); keep it on the collector host only.\n\
                 Public key: {}\nKey id: {}\n\nAdd to each agent's config that should accept commands:\n\n\
                 [commands]\npublic_key = \"{}\"\n",
                out.display(),
                public.to_base64(),
                public.key_id(),
                public.to_base64(),
            ))?;
            Ok(EXIT_OK)
        }
        Command::Audit {
            action: AuditAction::Verify { data_dir },
        } => {
            // Opening creates a store where there is none: a mistyped path would "verify".
            anyhow::ensure!(
                data_dir.join("db").is_file(),
                "no collector store in {} (give the collector's data_dir)",
                data_dir.display()
            );
            let verification = tokio::task::spawn_blocking(move || {
                let store = Store::open(&data_dir).with_context(|| {
                    format!(
                        "cannot open the store in {} (is a collector running on it? audit verify reads it offline: stop the collector first)",
                        data_dir.display()
                    )
                })?;
                AuditLog::new(store)
                    .verify()
                    .context("reading the audit log")
            })
            .await
            .context("audit verify task")??;
            match &verification.broken {
                None => {
                    write_stdout(&format!(
                        "audit log ok: {} records, head {}\n",
                        verification.records,
                        verification
                            .head
                            .as_ref()
                            .map_or_else(|| "none".to_owned(), |h| format!("{} {}", h.seq, h.hash))
                    ))?;
                    Ok(EXIT_OK)
                }
                Some(b) => {
                    write_stdout(&format!(
                        "audit log broken at record {}: {} ({} records before it verified)\n",
                        b.seq, b.problem, verification.records
                    ))?;
                    Ok(EXIT_PROBLEMS)
                }
            }
        }
    }
}

/// glibc's malloc arenas for the collector: one, unless the environment already says
/// (`MALLOC_ARENA_MAX`, or `arena_max` in `GLIBC_TUNABLES`).
const MALLOC_ARENA_MAX: &str = "1";

/// Makes sure the collector runs with a single glibc malloc arena, re-executing itself (same
/// pid, same arguments) with `MALLOC_ARENA_MAX` set when it is not; glibc reads it only at
/// process start, and setting it through `mallopt` would take `unsafe`.
///
/// Why (issue 10; BENCHMARKS.md, backlog drain memory): glibc gives each thread that contends
/// for malloc an arena of its own, up to 8 per core, and a chunk freed by another thread goes
/// back to the arena it came from. sled copies a B-tree node on every insert and frees the old
/// one from whichever thread collects the epoch garbage, while store commits, rollup passes and
/// sled's flusher run on changing threads — so each arena kept its own page cache's worth of
/// node churn, and a backlog drain's RSS was several times its heap (400 k results: heap
/// 170 MiB, RSS 356 MiB; one arena: 196 MiB). On a libc other than glibc the variable means
/// nothing and costs nothing.
fn single_malloc_arena() {
    use std::os::unix::process::CommandExt as _;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() || tunables.contains("arena_max") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Only returns when the exec failed: run on with glibc's default arenas.
    let error = command
        .args(args)
        .env("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
        .exec();
    eprintln!(
        "watchstand-collector: could not re-execute with MALLOC_ARENA_MAX={MALLOC_ARENA_MAX} ({error}); running with glibc's default malloc arenas"
    );
}

fn main() -> ExitCode {
    single_malloc_arena();
    run_main()
}

#[tokio::main]
async fn run_main() -> ExitCode {
    let args = Args::parse();
    let filter = if args.log_level.contains("rumqttd") {
        args.log_level.clone()
    } else {
        format!("{},rumqttd=off", args.log_level)
    };
    if let Err(e) = install_tracing(&filter) {
        eprintln!("watchstand-collector: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "watchstand-collector: {}",
                watchstand_shared::runtime::error_report(e.as_ref())
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
    }

    #[test]
    fn client_options_are_read_before_and_after_the_action() {
        let args = Args::try_parse_from([
            "watchstand-collector",
            "runbooks",
            "--server",
            "http://a:1",
            "show",
            "7",
            "--format",
            "json",
            "--token",
            "wst_x",
        ])
        .expect("parses");
        let Command::Runbooks {
            action: RunbookCmd::Show { id: 7 },
            opts,
        } = args.command
        else {
            panic!("not `runbooks show`");
        };
        assert_eq!(opts.api.server, "http://a:1");
        assert_eq!(opts.api.token.as_deref(), Some("wst_x"));
        assert_eq!(opts.output().format, Format::Json);
        let e = Args::try_parse_from([
            "watchstand-collector",
            "agents",
            "--token",
            "t",
            "--token-file",
            "f",
        ])
        .expect_err("conflicting options");
        assert!(e.to_string().contains("--token-file"), "{e}");
    }
}
