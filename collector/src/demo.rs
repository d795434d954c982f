//! `watchstand-collector demo`: the whole loop for real on loopback, with nothing installed.
//!
//! Starts the embedded broker on a free port, the collector (API on 127.0.0.1:8088, or a free
//! port when that is taken), three local HTTP services and an agent probing them every second,
//! then runs a script: the shop's primary fails for 25 s of every 90 s (the `any` service over
//! primary + standby stays up, with a partial outage), and the billing API fails for 10 s (the
//! `all` service goes down, and opens an incident). Every few seconds it prints the live SLA
//! summary and the incidents. Ctrl-C (or `--duration`) stops everything in order: agent,
//! collector, demo services.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, ApiClient, Format};
use crate::config;
use crate::server;

/// The script's cycle.
pub const CYCLE: Duration = Duration::from_secs(90);
/// Within each cycle, the primary fails during `[20 s, 45 s)`.
pub const PRIMARY_DOWN: (u64, u64) = (20, 45);
/// Within each cycle, billing fails during `[60 s, 70 s)`.
pub const BILLING_DOWN: (u64, u64) = (60, 70);
/// How often the live summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Preferred API address; a free port is used when it is taken.
    pub listen: SocketAddr,
    /// Stop after this long (for smoke tests); `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Data directory; `None` uses a fresh temporary one, removed at exit.
    pub data_dir: Option<PathBuf>,
}

/// A local HTTP service whose health the script switches.
struct DemoTarget {
    name: &'static str,
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
}

async fn start_target(name: &'static str, stop: CancellationToken) -> anyhow::Result<DemoTarget> {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let flag = flag.clone();
            async move {
                if flag.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "scripted outage")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("demo service {name}: cannot listen on loopback"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::warn!(service = name, error = %e, "Demo service failed.");
        }
    });
    Ok(DemoTarget {
        name,
        addr,
        healthy,
    })
}

/// A free loopback port (bound, then released for the broker to take).
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?)
}

/// `listen` if it can be bound now, else a free loopback port.
fn api_addr(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Ok(listen),
        Err(_) => {
            let free = free_loopback_addr()?;
            tracing::info!(wanted = %listen, using = %free, "API address taken; using a free port.");
            Ok(free)
        }
    }
}

fn collector_toml(
    data_dir: &Path,
    listen: SocketAddr,
    broker: SocketAddr,
    token: &crate::auth::Token,
) -> String {
    let tokens = token.config_lines(DEMO_TOKEN_NAME, crate::auth::Role::Operator);
    format!(
        r#"
{tokens}
[collector]
id = "demo"
data_dir = {data_dir:?}
listen = "{listen}"

[broker]
embedded = true
listen = "{broker}"

[incidents]
evaluate_every = "2s"
resolve_after = "10s"

[[services]]
id = "shop"
name = "Web shop (primary + standby)"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["demo-agent/shop-primary", "demo-agent/shop-standby"]
mode = "any"
slo = {{ availability = 99.9, window = "1h", latency_ms = 300, latency_pct = 99 }}

[[services]]
id = "billing"
name = "Billing API"
criticality = "high"
rto = "15m"
rpo = "5m"
probes = ["demo-agent/billing-http", "demo-agent/billing-tcp"]
mode = "all"
slo = {{ availability = 99.5, window = "1h" }}
"#
    )
}

fn agent_toml(data_dir: &Path, broker: SocketAddr, targets: &[DemoTarget]) -> String {
    let mut text = format!(
        r#"
[agent]
site = "demo"
id = "demo-agent"
data_dir = {data_dir:?}

[capacity]
interval = "10s"

[publish]
linger = "100ms"

[mqtt]
url = "mqtt://{broker}"
"#
    );
    for t in targets {
        text.push_str(&format!(
            r#"
[[probes]]
id = "{name}"
kind = "http"
url = "http://{addr}/"
interval = "1s"
timeout = "900ms"
"#,
            name = t.name,
            addr = t.addr
        ));
    }
    if let Some(billing) = targets.iter().find(|t| t.name == "billing-http") {
        text.push_str(&format!(
            r#"
[[probes]]
id = "billing-tcp"
kind = "tcp"
address = "{}"
interval = "1s"
timeout = "900ms"
"#,
            billing.addr
        ));
    }
    text
}

fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "stdout closed");
    }
}

/// Name of the operator token the demo makes for itself.
const DEMO_TOKEN_NAME: &str = "demo-operator";

/// Runs the demo until Ctrl-C or `options.duration`.
///
/// # Errors
/// A part cannot start (ports, data dir, config).
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let (data_dir, temporary) = match options.data_dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("watchstand-demo-{}", std::process::id())),
            true,
        ),
    };
    let stop = CancellationToken::new();
    let targets_stop = CancellationToken::new();
    let targets = vec![
        start_target("shop-primary", targets_stop.clone()).await?,
        start_target("shop-standby", targets_stop.clone()).await?,
        start_target("billing-http", targets_stop.clone()).await?,
    ];
    let broker = free_loopback_addr()?;
    let listen = api_addr(options.listen)?;

    // The demo's API needs a token like any other: it makes an operator token for itself and
    // prints it once, so the CLI (and curl) can acknowledge and resolve incidents.
    let token = crate::auth::Token::generate();
    let origin = Path::new("<demo collector>");
    let raw = config::from_str(
        &collector_toml(&data_dir.join("collector"), listen, broker, &token),
        origin,
    )?;
    let collector_config =
        config::validate(raw, origin, &data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let collector_stop = CancellationToken::new();
    let collector = server::start(collector_config, collector_stop.clone()).await?;

    let agent_config = watchstand_agent::load_config_str(
        &agent_toml(&data_dir.join("agent"), broker, &targets),
        Path::new("<demo agent>"),
    )?;
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(watchstand_agent::run(agent_config, agent_stop.clone()));

    let api = format!("http://{}", collector.api_addr);
    let secret = token.secret.expose();
    say(&format!(
        "\nWatchstand demo is running.\n  API:      {api}/api/v1/services   (also /api/v1/agents, /api/v1/health, /metrics)\n  Token:    {secret}   ({DEMO_TOKEN_NAME}, operator; made for this run only)\n            export WATCHSTAND_TOKEN={secret}\n  CLI:      watchstand-collector sla --server {api}\n            watchstand-collector incidents list --server {api}\n            watchstand-collector incidents ack ID --comment \"on it\" --server {api}\n  curl:     curl -H \"Authorization: Bearer $WATCHSTAND_TOKEN\" {api}/api/v1/services\n  Broker:   {}\n  Script:   shop-primary fails {}–{} s and billing {}–{} s of every {} s cycle.\n  Stop:     Ctrl-C\n\n",
        collector.broker_url,
        PRIMARY_DOWN.0,
        PRIMARY_DOWN.1,
        BILLING_DOWN.0,
        BILLING_DOWN.1,
        CYCLE.as_secs()
    ));

    let script = tokio::spawn(script(
        targets
            .iter()
            .map(|t| (t.name, t.healthy.clone()))
            .collect(),
        stop.clone(),
    ));
    let client = ApiClient::new(&api)?.with_token(Some(token.secret.clone()));
    let since = watchstand_shared::time::now_ms().to_string();
    let deadline = options.duration.map(|d| tokio::time::Instant::now() + d);
    let mut summary = tokio::time::interval(SUMMARY_EVERY);
    summary.tick().await;
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "Cannot listen for Ctrl-C; stopping.");
                }
                break;
            }
            () = until_deadline => break,
            _ = summary.tick() => match cli::sla(&client, None, Some(&since), None, Format::Table).await {
                Ok(table) => {
                    let incidents = cli::incidents(&client, None, None, Format::Table).await.unwrap_or_default();
                    say(&format!("SLA since the demo started:\n{table}\nIncidents:\n{incidents}\n"));
                }
                Err(e) => tracing::warn!(error = %e, "Summary not available yet."),
            },
        }
    }

    say("Stopping: agent, collector, demo services.\n");
    if let Ok(table) = cli::sla(&client, None, Some(&since), None, Format::Table).await {
        say(&format!("Final SLA:\n{table}\n"));
    }
    stop.cancel();
    if let Err(e) = script.await {
        tracing::warn!(error = %e, "Demo script task failed.");
    }
    agent_stop.cancel();
    match agent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "Agent stopped with an error."),
        Err(e) => tracing::warn!(error = %e, "Agent task failed."),
    }
    collector_stop.cancel();
    let outcome = collector.task.await.context("collector task")?;
    targets_stop.cancel();
    if temporary {
        if let Err(e) = std::fs::remove_dir_all(&data_dir) {
            tracing::debug!(error = %e, dir = %data_dir.display(), "Demo data not removed.");
        }
    }
    outcome
}

/// Switches the demo services' health by the script until `stop`.
async fn script(targets: Vec<(&'static str, Arc<AtomicBool>)>, stop: CancellationToken) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = started.elapsed().as_secs() % CYCLE.as_secs();
        for (name, healthy) in &targets {
            let down = match *name {
                "shop-primary" => (PRIMARY_DOWN.0..PRIMARY_DOWN.1).contains(&t),
                "billing-http" => (BILLING_DOWN.0..BILLING_DOWN.1).contains(&t),
                _ => false,
            };
            if healthy.swap(!down, Ordering::Relaxed) == down {
                tracing::info!(
                    service = name,
                    healthy = !down,
                    "Demo script: {} {}.",
                    name,
                    if down { "fails" } else { "recovers" }
                );
            }
        }
    }
}
