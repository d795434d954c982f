//! Incidents that tell the truth about what happened, end to end (real binaries):
//!
//! - the collector's own absence (SIGSTOP for 3 × the agents' silence threshold, or a restart
//!   after as long a downtime) opens no `agent_offline` and no `unmonitored` incident;
//! - an outage measured while the agent was cut off from the broker, found when its results are
//!   replayed, is one `service_down` incident with the outage's own start and end, marked late,
//!   counted in MTTR, and not paged (already over when found);
//! - a webhook receiver that hangs holds no other page hostage, and every incident's events
//!   arrive in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use watchstand_tests::process::{AgentSpec, BrokerChoice, CollectorSpec, MosquittoSpec};
use watchstand_tests::relay::Relay;
use watchstand_tests::{free_addr, now_ms, wait_for, Collector, HttpTarget};

/// A webhook receiver recording (seq, arrival ms, body) of every request it answers; with
/// `hang_first`, its first request is accepted and never answered.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, u64, Value)>>>,
    hang_first: Arc<AtomicBool>,
}

impl Receiver {
    fn hanging_first() -> Self {
        let r = Self::default();
        r.hang_first.store(true, Ordering::SeqCst);
        r
    }

    async fn start(&self) -> std::net::SocketAddr {
        let me = self.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let me = me.clone();
                async move {
                    if me.hang_first.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(3_600)).await;
                    }
                    let seq = headers
                        .get("x-watchstand-notification")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    me.got.lock().unwrap().push((seq, now_ms(), body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await.is_ok();
        });
        addr
    }

    /// Distinct notifications (by seq) in arrival order: (incident id, event, arrival ms, rule).
    fn events(&self) -> Vec<(u64, String, u64, String)> {
        let got = self.got.lock().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        got.iter()
            .filter(|(seq, _, _)| seen.insert(seq.clone()))
            .map(|(_, at, b)| {
                (
                    b["incident"]["id"].as_u64().unwrap_or_default(),
                    b["event"].as_str().unwrap_or_default().to_owned(),
                    *at,
                    b["incident"]["rule"]["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    /// When the `event` of incident `id` first arrived.
    fn arrival(&self, id: u64, event: &str) -> Option<u64> {
        self.events()
            .into_iter()
            .find(|(i, e, _, _)| *i == id && e == event)
            .map(|(_, _, at, _)| at)
    }

    /// Every incident's events arrive in lifecycle order.
    fn assert_in_incident_order(&self, name: &str) {
        let rank = |e: &str| match e {
            "opened" | "late" => 0,
            "acknowledged" => 1,
            "repeat" => 1,
            "resolved" => 2,
            _ => 3,
        };
        let mut last: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
        for (id, event, _, _) in self.events() {
            let r = rank(&event);
            let before = last.insert(id, r).unwrap_or(0);
            assert!(
                before <= r,
                "{name}: incident {id} got {event} after a later event: {:?}",
                self.events()
            );
        }
    }
}

/// `[incidents]` for fast tests and one webhook per receiver address.
fn incidents_config(hooks: &[(&str, std::net::SocketAddr)]) -> String {
    let mut text = String::from(
        "[incidents]\nevaluate_every = \"1s\"\ndown_after = 2\nresolve_after = \"2s\"\nburn_rate = []\nsla_below_target = false\n",
    );
    for (name, addr) in hooks {
        text.push_str(&format!(
            "\n[[webhooks]]\nname = \"{name}\"\nurl = \"http://{addr}/hook\"\n"
        ));
    }
    text
}

/// One service `id` measured by `agent-1/{id}`.
fn service(id: &str) -> String {
    format!(
        "\n[[services]]\nid = \"{id}\"\nname = \"{id}\"\ncriticality = \"high\"\nrto = \"5m\"\nrpo = \"1m\"\nprobes = [\"agent-1/{id}\"]\nslo = {{ availability = 99.9, window = \"1d\" }}\n"
    )
}

/// The agent's HTTP probe `id` every second against `url`.
fn probe(id: &str, url: &str) -> String {
    format!(
        "[[probes]]\nid = \"{id}\"\nkind = \"http\"\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"800ms\"\n"
    )
}

/// The agent announces 1 s as its slowest interval (probes and capacity): silence threshold 3 s.
const FAST_CAPACITY: &str = "[capacity]\ninterval = \"1s\"\n\n[publish]\nlinger = \"50ms\"\n";

async fn incidents_of(c: &Collector, rule: &str) -> Vec<Value> {
    c.get("/api/v1/incidents")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["rule"]["kind"] == rule)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_frozen_for_three_silence_thresholds_opens_no_agent_offline_or_unmonitored() {
    let dir = tempfile::tempdir().unwrap();
    // A broker outside the collector keeps serving the agent while the collector is stopped.
    let mosquitto = MosquittoSpec::new(&dir.path().join("mosquitto"));
    let Some(_broker) = mosquitto.spawn().await else {
        return;
    };
    let target = HttpTarget::start().await;
    let services = format!("{}{}", incidents_config(&[]), service("web"));
    let mut collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::External(mosquitto.url()),
        &services,
    )
    .spawn()
    .await;
    let mut agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &mosquitto.url(),
        &probe("web", &target.url()),
    );
    agent.extra = FAST_CAPACITY.to_owned();
    let _agent = agent.spawn().await;
    wait_for(
        "results from the agent",
        Duration::from_secs(20),
        || async {
            let a = collector.agent("agent-1").await?;
            (a["stored"].as_u64()? >= 3).then_some(())
        },
    )
    .await;

    // Silence threshold: 3 × 1 s. Frozen for 3 × that (and a little more).
    collector.pause();
    tokio::time::sleep(Duration::from_secs(10)).await;
    collector.resume();
    // Three more thresholds after it is back: any false incident would have opened by then.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let offline = incidents_of(&collector, "agent_offline").await;
    let unmonitored = incidents_of(&collector, "unmonitored").await;
    eprintln!(
        "after a 10 s freeze: {} agent_offline, {} unmonitored",
        offline.len(),
        unmonitored.len()
    );
    assert!(offline.is_empty(), "{offline:#?}");
    assert!(unmonitored.is_empty(), "{unmonitored:#?}");
    let a = collector.agent("agent-1").await.unwrap();
    assert_eq!(a["state"], "online", "{a}");

    // The same for a collector that was down (killed, restarted 10 s later): its registry says
    // the agent was last heard long ago, but it was the collector that was away.
    collector.kill();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let collector = collector.spec.clone().spawn().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let offline = incidents_of(&collector, "agent_offline").await;
    let unmonitored = incidents_of(&collector, "unmonitored").await;
    eprintln!(
        "after a 10 s restart: {} agent_offline, {} unmonitored",
        offline.len(),
        unmonitored.len()
    );
    assert!(offline.is_empty(), "{offline:#?}");
    assert!(unmonitored.is_empty(), "{unmonitored:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_inside_a_partition_is_one_late_service_down_with_its_own_times_in_mttr_and_no_page(
) {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    let hook = receiver.start().await;
    let target = HttpTarget::start().await;
    let broker = free_addr();
    let services = format!("{}{}", incidents_config(&[("ops", hook)]), service("web"));
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(broker),
        &services,
    )
    .spawn()
    .await;
    let relay = Relay::start(broker).await;
    let mut agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &relay.url(),
        &probe("web", &target.url()),
    );
    agent.extra = FAST_CAPACITY.to_owned();
    let _agent = agent.spawn().await;
    wait_for(
        "results from the agent",
        Duration::from_secs(20),
        || async {
            let a = collector.agent("agent-1").await?;
            (a["stored"].as_u64()? >= 3).then_some(())
        },
    )
    .await;

    // Cut off for 40 s; the target is down for 12 s inside the cut.
    relay.cut();
    tokio::time::sleep(Duration::from_secs(14)).await;
    target.set_healthy(false);
    let down_at = now_ms();
    tokio::time::sleep(Duration::from_secs(12)).await;
    target.set_healthy(true);
    let up_at = now_ms();
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(
        incidents_of(&collector, "service_down").await.is_empty(),
        "nothing is known of the outage before the replay"
    );
    relay.restore();

    wait_for(
        "a service_down incident from the replay",
        Duration::from_secs(40),
        || async {
            incidents_of(&collector, "service_down")
                .await
                .first()
                .map(|_| ())
        },
    )
    .await;
    // Let the replay finish and the evaluator look at it again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = incidents_of(&collector, "service_down").await;
    eprintln!("down {down_at}..{up_at}; incidents: {all:#?}");
    assert_eq!(all.len(), 1, "exactly one: {all:#?}");
    let incident = &all[0];
    assert_eq!(incident["late"], true, "{incident}");
    assert!(incident["found_late_ms"].as_u64().unwrap() >= up_at);
    assert_eq!(incident["state"], "resolved", "{incident}");
    let start = incident["detected_ms"].as_u64().unwrap();
    let end = incident["resolved_ms"].as_u64().unwrap();
    // Within one interval (1 s), plus the probe's own scheduling.
    assert!(
        start.abs_diff(down_at) <= 1_300,
        "start {start} vs {down_at}"
    );
    assert!(end.abs_diff(up_at) <= 1_300, "end {end} vs {up_at}");
    let stats = collector.get("/api/v1/incidents/stats?service=web").await;
    eprintln!("stats: {stats}");
    let row = &stats[0];
    assert_eq!(row["incidents"], 1);
    assert_eq!(row["found_late"], 1);
    let mttr = row["mttr_s"].as_f64().unwrap();
    assert!((mttr - 12.0).abs() <= 2.0, "MTTR {mttr} s");
    // Over when found: recorded, not paged.
    let pages: Vec<_> = receiver
        .events()
        .into_iter()
        .filter(|(_, _, _, rule)| rule == "service_down")
        .collect();
    assert!(pages.is_empty(), "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_holds_no_other_page_hostage_and_events_keep_their_incident_order() {
    let dir = tempfile::tempdir().unwrap();
    let hanging = Receiver::hanging_first();
    let steady = Receiver::default();
    let hanging_addr = hanging.start().await;
    let steady_addr = steady.start().await;
    let (t1, t2) = (HttpTarget::start().await, HttpTarget::start().await);
    let services = format!(
        "{}{}{}",
        incidents_config(&[("hanging", hanging_addr), ("steady", steady_addr)]),
        service("one"),
        service("two")
    );
    let collector = CollectorSpec::new(
        &dir.path().join("collector"),
        BrokerChoice::Embedded(free_addr()),
        &services,
    )
    .spawn()
    .await;
    let probes = format!("{}{}", probe("one", &t1.url()), probe("two", &t2.url()));
    let _agent = AgentSpec::new(
        &dir.path().join("agent"),
        "agent-1",
        &collector.broker_url(),
        &probes,
    )
    .spawn()
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The first outage: its page hangs at the first receiver.
    t1.set_healthy(false);
    let first = wait_for("service one down", Duration::from_secs(15), || async {
        incidents_of(&collector, "service_down")
            .await
            .first()
            .cloned()
    })
    .await;
    let first_id = first["id"].as_u64().unwrap();
    wait_for(
        "the first page at the steady receiver",
        Duration::from_secs(5),
        || async { steady.arrival(first_id, "opened") },
    )
    .await;

    // A second outage while the first page hangs.
    t2.set_healthy(false);
    let second = wait_for("service two down", Duration::from_secs(15), || async {
        incidents_of(&collector, "service_down")
            .await
            .into_iter()
            .find(|i| i["service"] == "two")
    })
    .await;
    let (second_id, opened_ms) = (
        second["id"].as_u64().unwrap(),
        second["detected_ms"].as_u64().unwrap(),
    );
    for (name, r) in [("steady", &steady), ("hanging", &hanging)] {
        let at = wait_for("the second page", Duration::from_secs(10), || async {
            r.arrival(second_id, "opened")
        })
        .await;
        let after = at.saturating_sub(opened_ms);
        eprintln!("{name}: second page {after} ms after opening");
        assert!(after <= 2_000, "{name}: {after} ms after opening");
    }
    assert!(
        hanging.arrival(first_id, "opened").is_none(),
        "the first page still hangs"
    );

    // Both recover: every event reaches both receivers, each incident's in order (the hung
    // page is retried after its request timeout, and its incident's resolve waits behind it).
    t1.set_healthy(true);
    t2.set_healthy(true);
    for (name, r) in [("steady", &steady), ("hanging", &hanging)] {
        for id in [first_id, second_id] {
            wait_for(
                &format!("{name}: resolved of {id}"),
                Duration::from_secs(40),
                || async { r.arrival(id, "resolved") },
            )
            .await;
        }
        r.assert_in_incident_order(name);
    }
    let hung_opened = hanging.arrival(first_id, "opened").unwrap();
    let hung_resolved = hanging.arrival(first_id, "resolved").unwrap();
    assert!(hung_opened <= hung_resolved);
}
