//! `watchstand-collector demo`: the whole loop for real on loopback, with nothing installed.
//!
//! Starts the embedded broker on a free port, the collector (API on 127.0.0.1:8088, or a free
//! port when that is taken), local HTTP services — the shop's primary and standby, the shop's
//! address (a router that answers from whichever is active, as a load balancer would), the
//! billing API — and an agent probing them every second, then runs a script: the shop's primary
//! fails for 25 s of every 90 s, and the billing API fails for 10 s (the `all` service goes
//! down, and opens an incident).
//!
//! **Failover.** The shop's outage opens an incident, which triggers the `shop-failover`
//! runbook: its `agent_action` step is a command signed with a key the demo makes for itself,
//! sent to the demo agent, whose declared `promote` action (an `http` action) tells the router to
//! answer from the standby; a `wait_for` step then waits until the shop is measured up again.
//! When the primary is healthy again the script fails back.
//!
//! **Drill.** Once, at a quiet point of the first cycle ([`DRILL_AT`]), the demo starts drill
//! `shop-dr` through the API as an operator would: the runbook runs in drill mode, its `inject`
//! steps break the primary (the agent's `fault` action) and let the failure show, its recovery
//! steps fail over, its `restore` steps heal the primary and fail back ([`drill`]).
//!
//! The demo prints this story as it happens (outage → incident → runbook steps → recovery; the
//! drill's verdict and where its report is), each change of a demo service with its time (the
//! script's truth, which the e2e test compares with the availability report), and every few
//! seconds the live SLA summary and the incidents. Ctrl-C (or `--duration`) stops everything in
//! order: agent, collector, demo services. A temporary data directory is removed at exit, except
//! the drill's report files (`reports/`).

mod drill;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use watchstand_shared::command::CommandKey;

use crate::cli::{self, ApiClient, Format};
use crate::config;
use crate::runbook::run::{Outcome, Run, StepStatus};
use crate::server;

/// The script's cycle.
pub const CYCLE: Duration = Duration::from_secs(90);
/// Within each cycle, the primary fails during `[20 s, 45 s)`.
pub const PRIMARY_DOWN: (u64, u64) = (20, 45);
/// Within each cycle, billing fails during `[60 s, 70 s)`.
pub const BILLING_DOWN: (u64, u64) = (60, 70);
/// Within the first cycle, the demo starts its drill at this second: after billing's outage,
/// long after the shop's incident from its scripted outage resolved, and so that the drill with
/// its settling (about 25 s) ends before the next cycle's outage at 110 s.
pub const DRILL_AT: u64 = 72;
/// The demo's drill.
pub const DRILL_ID: &str = "shop-dr";
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

/// A demo service's health: the script's switch and a fault a drill injects.
#[derive(Clone)]
struct Health {
    /// Healthy by the script.
    scripted: Arc<AtomicBool>,
    /// Broken by a drill's inject (the agent's `fault` action), until its restore heals it.
    fault: Arc<AtomicBool>,
}

impl Health {
    fn new() -> Self {
        Self {
            scripted: Arc::new(AtomicBool::new(true)),
            fault: Arc::new(AtomicBool::new(false)),
        }
    }

    fn up(&self) -> bool {
        self.scripted.load(Ordering::Relaxed) && !self.fault.load(Ordering::Relaxed)
    }
}

/// A local HTTP service whose health the script switches and a drill can break
/// (`POST /fault?state=broken|healthy`).
struct DemoTarget {
    name: &'static str,
    addr: SocketAddr,
    health: Health,
}

#[derive(Debug, Deserialize)]
struct Fault {
    state: String,
}

/// Epoch ms as RFC 3339 UTC with milliseconds.
fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || ms.to_string(),
            |d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
}

/// Now, as [`iso`]: the time printed on the script's lines.
fn stamp() -> String {
    iso(watchstand_shared::time::now_ms())
}

async fn start_target(name: &'static str, stop: CancellationToken) -> anyhow::Result<DemoTarget> {
    let health = Health::new();
    let (probed, faulted) = (health.clone(), health.fault.clone());
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let up = probed.up();
                async move {
                    if up {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "outage")
                    }
                }
            }),
        )
        .route(
            "/fault",
            post(move |Query(f): Query<Fault>| {
                let fault = faulted.clone();
                async move {
                    let broken = match f.state.as_str() {
                        "broken" => true,
                        "healthy" => false,
                        other => {
                            return (StatusCode::BAD_REQUEST, format!("no such state {other:?}"))
                        }
                    };
                    fault.store(broken, Ordering::Relaxed);
                    say(&format!(
                        "[demo] {name} {} at {}\n",
                        if broken {
                            "BROKEN by the drill's inject"
                        } else {
                            "HEALED by the drill's restore"
                        },
                        stamp()
                    ));
                    (StatusCode::OK, format!("{name} {}", f.state))
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
    Ok(DemoTarget { name, addr, health })
}

/// The shop's address: answers from the primary or the standby, whichever is active (a load
/// balancer's part); `POST /promote?to=standby|primary` switches (the agent's `promote` action).
struct ShopRouter {
    addr: SocketAddr,
    standby_active: Arc<AtomicBool>,
}

#[derive(Debug, Deserialize)]
struct Promote {
    to: String,
}

async fn start_router(
    primary: Health,
    standby: Health,
    stop: CancellationToken,
) -> anyhow::Result<ShopRouter> {
    let standby_active = Arc::new(AtomicBool::new(false));
    let active = standby_active.clone();
    let switch = standby_active.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let (on_standby, primary, standby) = (
                    active.load(Ordering::Relaxed),
                    primary.clone(),
                    standby.clone(),
                );
                async move {
                    let (name, healthy) = if on_standby {
                        ("standby", standby.up())
                    } else {
                        ("primary", primary.up())
                    };
                    if healthy {
                        (StatusCode::OK, format!("shop served by the {name}"))
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("shop's {name} is down"),
                        )
                    }
                }
            }),
        )
        .route(
            "/promote",
            post(move |Query(p): Query<Promote>| {
                let switch = switch.clone();
                async move {
                    match p.to.as_str() {
                        "standby" | "primary" => {
                            switch.store(p.to == "standby", Ordering::Relaxed);
                            tracing::info!(to = %p.to, "Demo shop router switched.");
                            say(&format!(
                                "[demo] the shop's address answers from the {} (the agent's promote action) at {}\n",
                                p.to,
                                stamp()
                            ));
                            (StatusCode::OK, format!("{} now answers", p.to))
                        }
                        other => (StatusCode::BAD_REQUEST, format!("no such role {other:?}")),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("demo shop router: cannot listen on loopback")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "Demo shop router failed.");
        }
    });
    Ok(ShopRouter {
        addr,
        standby_active,
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
    key_file: &Path,
) -> String {
    let tokens = token.config_lines(DEMO_TOKEN_NAME, crate::auth::Role::Operator);
    format!(
        r#"
{tokens}
[commands]
key_file = {key_file:?}
resend_every = "2s"

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
name = "Web shop (its address: primary, or the standby once promoted)"
criticality = "critical"
rto = "5m"
rpo = "1m"
probes = ["demo-agent/shop"]
slo = {{ availability = 99.9, window = "1h", latency_ms = 300, latency_pct = 99 }}

[[runbooks]]
id = "shop-failover"
service = "shop"
description = "Promote the standby when the shop is down"
on_incident = {{ rules = ["service_down"], min_priority = "P2", after = "0s" }}

# In drills only (incident runs skip them): break the primary, and let the failure show
# for as long as an unattended outage would before anyone acts.
[[runbooks.steps]]
id = "break-primary"
kind = "inject"
via = "agent_action"
agent = "demo-agent"
action = "fault"
args = {{ state = "broken" }}
timeout = "15s"

[[runbooks.steps]]
id = "let-it-show"
kind = "inject"
via = "exec"
argv = ["sleep", "6"]
timeout = "15s"

[[runbooks.steps]]
id = "promote-standby"
kind = "agent_action"
agent = "demo-agent"
action = "promote"
args = {{ role = "standby" }}
timeout = "15s"
retries = 1

[[runbooks.steps]]
id = "confirm-up"
kind = "wait_for"
service = "shop"
state = "up"
for = "5s"
timeout = "60s"

# In drills only: heal the primary, then fail back to it.
[[runbooks.steps]]
id = "heal-primary"
kind = "restore"
via = "agent_action"
agent = "demo-agent"
action = "fault"
args = {{ state = "healthy" }}
timeout = "15s"
retries = 1

[[runbooks.steps]]
id = "fail-back"
kind = "restore"
via = "agent_action"
agent = "demo-agent"
action = "promote"
args = {{ role = "primary" }}
timeout = "15s"
retries = 1

[[drills]]
id = "{DRILL_ID}"
service = "shop"
runbook = "shop-failover"
scenario = "The shop's primary fails; the standby is promoted by a signed agent action"
participants = ["the demo (continuity manager)"]
max_duration = "2m"
confirm = "5s"

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

fn agent_toml(
    data_dir: &Path,
    broker: SocketAddr,
    targets: &[DemoTarget],
    router: SocketAddr,
    primary: SocketAddr,
    key: &CommandKey,
) -> String {
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

[commands]
public_key = "{public}"

[[actions]]
id = "promote"
kind = "http"
method = "POST"
url = "http://{router}/promote?to={{role}}"
timeout = "5s"
[actions.args.role]
allowed = ["standby", "primary"]

[[actions]]
id = "fault"
kind = "http"
method = "POST"
url = "http://{primary}/fault?state={{state}}"
timeout = "5s"
[actions.args.state]
allowed = ["broken", "healthy"]

[[probes]]
id = "shop"
kind = "http"
url = "http://{router}/"
interval = "1s"
timeout = "900ms"
"#,
        public = key.public().to_base64(),
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
    let router = start_router(
        targets[0].health.clone(),
        targets[1].health.clone(),
        targets_stop.clone(),
    )
    .await?;
    let broker = free_loopback_addr()?;
    let listen = api_addr(options.listen)?;
    // The demo signs its runbook's agent action with a key of its own, made for this run.
    let key = CommandKey::generate();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let key_file = data_dir.join("command.key");
    let reports = data_dir.join("reports");
    key.write(&key_file, true)?;

    // The demo's API needs a token like any other: it makes an operator token for itself and
    // prints it once, so the CLI (and curl) can acknowledge and resolve incidents.
    let token = crate::auth::Token::generate();
    let origin = Path::new("<demo collector>");
    let raw = config::from_str(
        &collector_toml(
            &data_dir.join("collector"),
            listen,
            broker,
            &token,
            &key_file,
        ),
        origin,
    )?;
    let collector_config =
        config::validate(raw, origin, &data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let collector_stop = CancellationToken::new();
    let collector = server::start(collector_config, collector_stop.clone()).await?;

    let agent_config = watchstand_agent::load_config_str(
        &agent_toml(
            &data_dir.join("agent"),
            broker,
            &targets,
            router.addr,
            targets[0].addr,
            &key,
        ),
        Path::new("<demo agent>"),
    )?;
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(watchstand_agent::run(agent_config, agent_stop.clone()));

    let api = format!("http://{}", collector.api_addr);
    let secret = token.secret.expose();
    say(&format!(
        "\nWatchstand demo is running.\n  API:      {api}/api/v1/services   (also /api/v1/agents, /api/v1/health, /metrics)\n  Token:    {secret}   ({DEMO_TOKEN_NAME}, operator; made for this run only)\n            export WATCHSTAND_TOKEN={secret}\n  CLI:      watchstand-collector sla --server {api}\n            watchstand-collector incidents list --server {api}\n            watchstand-collector incidents ack ID --comment \"on it\" --server {api}\n  curl:     curl -H \"Authorization: Bearer $WATCHSTAND_TOKEN\" {api}/api/v1/services\n  Broker:   {}\n  Script:   shop-primary fails {}–{} s and billing {}–{} s of every {} s cycle;\n            the shop's outage triggers runbook shop-failover (a signed agent action\n            promotes the standby), and the script fails back when the primary recovers.\n  Drill:    at {DRILL_AT} s the demo starts drill {DRILL_ID} of the shop (POST /api/v1/drills/{DRILL_ID}/run);\n            its report is written to {}\n  Runbooks: watchstand-collector runbooks runs --server {api}\n  Drills:   watchstand-collector drills runs --server {api}\n  Stop:     Ctrl-C\n\n",
        collector.broker_url,
        PRIMARY_DOWN.0,
        PRIMARY_DOWN.1,
        BILLING_DOWN.0,
        BILLING_DOWN.1,
        CYCLE.as_secs(),
        reports.display(),
    ));

    let started = tokio::time::Instant::now();
    let script = tokio::spawn(script(
        targets
            .iter()
            .map(|t| (t.name, t.health.scripted.clone()))
            .collect(),
        router.standby_active.clone(),
        started,
        stop.clone(),
    ));
    let client = ApiClient::new(&api)?.with_token(Some(token.secret.clone()));
    let story = tokio::spawn(story(client.clone(), stop.clone()));
    let drill = tokio::spawn(drill::run(
        drill::DrillStory {
            client: client.clone(),
            api: api.clone(),
            reports: reports.clone(),
            at: started + Duration::from_secs(DRILL_AT),
        },
        stop.clone(),
    ));
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
    if let Err(e) = story.await {
        tracing::warn!(error = %e, "Demo story task failed.");
    }
    if let Err(e) = drill.await {
        tracing::warn!(error = %e, "Demo drill task failed.");
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
        remove_all_but_reports(&data_dir, &reports);
    }
    outcome
}

/// Removes the temporary `data_dir`, except the drill's report files in `reports` (when there
/// are any: they are what the demo leaves to look at).
fn remove_all_but_reports(data_dir: &Path, reports: &Path) {
    let keep = std::fs::read_dir(reports).is_ok_and(|mut d| d.next().is_some());
    if !keep {
        if let Err(e) = std::fs::remove_dir_all(data_dir) {
            tracing::debug!(error = %e, dir = %data_dir.display(), "Demo data not removed.");
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == reports {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::debug!(error = %e, path = %path.display(), "Demo data not removed.");
        }
    }
    say(&format!(
        "The drill's report stays in {} (the rest of the demo's data is removed).\n",
        reports.display()
    ));
}

/// Switches the demo services' health by the script until `stop`; fails the shop back to its
/// primary once the primary is healthy again.
async fn script(
    targets: Vec<(&'static str, Arc<AtomicBool>)>,
    standby_active: Arc<AtomicBool>,
    started: tokio::time::Instant,
    stop: CancellationToken,
) {
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
                say(&format!(
                    "[demo] {name} {} at {}\n",
                    if down {
                        "FAILS (scripted outage)"
                    } else {
                        "is healthy again"
                    },
                    stamp()
                ));
                if *name == "shop-primary" && !down && standby_active.swap(false, Ordering::Relaxed)
                {
                    say(&format!(
                        "[demo] failing back: the shop's address answers from the primary at {}\n",
                        stamp()
                    ));
                }
            }
        }
    }
}

/// An incident as the story reads it from the API.
#[derive(Debug, Deserialize)]
struct StoryIncident {
    id: u64,
    dedup_key: String,
    state: String,
    /// The drill run it was opened during.
    #[serde(default)]
    drill: Option<u64>,
}

/// Prints what happens as it happens: incidents opening and resolving, runbook runs and each of
/// their steps, until `stop`.
async fn story(client: ApiClient, stop: CancellationToken) {
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut told_steps: BTreeMap<(u64, usize, u32), ()> = BTreeMap::new();
    let mut told_runs: BTreeMap<u64, bool> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(body) = client.get("/api/v1/incidents", &[]).await {
            let incidents: Vec<StoryIncident> = serde_json::from_value(body).unwrap_or_default();
            for i in &incidents {
                let active = i.state != "resolved";
                if active && open.insert(i.id) {
                    let drill = i
                        .drill
                        .map(|d| format!(" (a drill incident of drill run {d}: kept, not paged)"))
                        .unwrap_or_default();
                    say(&format!(
                        "[demo] incident {} opened: {}{drill}\n",
                        i.id, i.dedup_key
                    ));
                } else if !active && open.remove(&i.id) {
                    say(&format!(
                        "[demo] incident {} resolved: {}\n",
                        i.id, i.dedup_key
                    ));
                }
            }
        }
        let Ok(body) = client.get("/api/v1/runbook-runs", &[]).await else {
            continue;
        };
        let rows: Vec<crate::api::runbooks::RunRow> =
            serde_json::from_value(body).unwrap_or_default();
        for row in rows.iter().rev() {
            if told_runs.get(&row.id) == Some(&true) {
                continue;
            }
            let Ok(body) = client
                .get(&format!("/api/v1/runbook-runs/{}", row.id), &[])
                .await
            else {
                continue;
            };
            let Ok(run) = serde_json::from_value::<Run>(body) else {
                continue;
            };
            tell_run(&run, &mut told_runs, &mut told_steps);
        }
    }
}

/// Prints what is new in `run`: its start, each ended attempt, its end.
fn tell_run(
    run: &Run,
    told_runs: &mut BTreeMap<u64, bool>,
    told_steps: &mut BTreeMap<(u64, usize, u32), ()>,
) {
    if let std::collections::btree_map::Entry::Vacant(e) = told_runs.entry(run.id) {
        let why = match &run.trigger {
            crate::runbook::Trigger::Incident { incident } => format!("incident {incident}"),
            crate::runbook::Trigger::Manual { by } => format!("started by {by}"),
            crate::runbook::Trigger::Drill { drill_run } => format!("drill run {drill_run}"),
        };
        say(&format!(
            "[demo] runbook {} run {} started ({why})\n",
            run.runbook, run.id
        ));
        e.insert(false);
    }
    for (i, step) in run.steps.iter().enumerate() {
        for a in &step.attempts {
            let Some(outcome) = &a.outcome else {
                continue;
            };
            if told_steps.insert((run.id, i, a.n), ()).is_some() {
                continue;
            }
            let text = match outcome {
                Outcome::Succeeded { detail } => format!("succeeded: {detail}"),
                Outcome::RpoChecked { detail, .. } => format!("read: {detail}"),
                Outcome::Failed { reason } => format!("failed: {reason}"),
                Outcome::TimedOut => "timed out".to_owned(),
                Outcome::Rejected { by } => format!("rejected by {by}"),
                Outcome::Cancelled { by } => format!("cancelled by {by}"),
            };
            let took = a
                .ended_ms
                .unwrap_or(a.started_ms)
                .saturating_sub(a.started_ms);
            say(&format!(
                "[demo]   step {} ({}) attempt {} {text} [{took} ms]\n",
                step.id, step.kind, a.n
            ));
        }
        if step.status == StepStatus::Running {
            break;
        }
    }
    if run.status.is_final() {
        let took = run
            .ended_ms
            .unwrap_or(run.started_ms)
            .saturating_sub(run.started_ms);
        say(&format!(
            "[demo] runbook {} run {} {} after {:.1} s{}\n",
            run.runbook,
            run.id,
            run.status.as_str(),
            took as f64 / 1000.0,
            run.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        told_runs.insert(run.id, true);
    }
}
