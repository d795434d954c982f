//! The demo's drill: at [`super::DRILL_AT`] of the first cycle it starts drill
//! [`super::DRILL_ID`] through the API (`POST /api/v1/drills/{id}/run` with the demo's operator
//! token, as an operator would), follows the drill run until it is measured, prints the verdict,
//! time to detect and time to recover against the RTO and the steps, and writes the continuity
//! report (Markdown, JSON and HTML) into the demo's `reports/`.
//!
//! A start refused because the shop has an open incident is stored `skipped` by the collector;
//! the demo then tries again a few times, a little later.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{iso, say, DRILL_ID};
use crate::cli::ApiClient;
use crate::drill::{DrillRun, DrillStatus};

/// A skipped start is tried again this much later …
const RETRY_EVERY: Duration = Duration::from_secs(4);
/// … at most this many times.
const RETRIES: u32 = 3;
/// Give up following a drill run after this long (its `max_duration` is 2 min, then settling).
const FOLLOW_AT_MOST: Duration = Duration::from_secs(300);

/// What the drill's part of the story needs.
pub(super) struct DrillStory {
    /// The demo's API client (operator token).
    pub client: ApiClient,
    /// The API's base URL, for the printed CLI command.
    pub api: String,
    /// Where the report files go.
    pub reports: PathBuf,
    /// When to start the drill.
    pub at: tokio::time::Instant,
}

/// Starts the drill at `story.at`, follows it and reports it, until `stop`.
pub(super) async fn run(story: DrillStory, stop: CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tell(&story) => {}
    }
}

async fn tell(story: &DrillStory) {
    tokio::time::sleep_until(story.at).await;
    let Some(started) = start(&story.client).await else {
        return;
    };
    say(&format!(
        "[demo] drill {DRILL_ID} run {} started: its inject steps break the shop's primary; the runbook must recover the shop within its RTO, then its restore steps fail back\n",
        started.id
    ));
    let Some(done) = follow(&story.client, &started).await else {
        return;
    };
    tell_outcome(&done);
    match write_reports(&story.client, done.id, &story.reports).await {
        Ok(paths) => {
            let mut text = String::new();
            for (i, p) in paths.iter().enumerate() {
                let label = if i == 0 { "report:" } else { "       " };
                text.push_str(&format!("[demo]   {label} {}\n", p.display()));
            }
            say(&text);
        }
        Err(e) => say(&format!(
            "[demo]   the report could not be written: {e:#}\n"
        )),
    }
    say(&format!(
        "[demo]   again:  watchstand-collector drills report {} --format md --server {}\n",
        done.id, story.api
    ));
}

/// Starts the drill; tries again when the collector skipped it. `None` when it did not start.
async fn start(client: &ApiClient) -> Option<DrillRun> {
    let path = format!("/api/v1/drills/{DRILL_ID}/run");
    for attempt in 0..=RETRIES {
        say(&format!(
            "[demo] starting drill {DRILL_ID} as an operator would: POST {path}\n"
        ));
        let answer = client
            .post(&path, &Value::Null)
            .await
            .and_then(|v| serde_json::from_value::<DrillRun>(v).context("reading the drill run"));
        match answer {
            Ok(run) if run.status == DrillStatus::Skipped => {
                let why = run.skipped.as_deref().unwrap_or("no reason given");
                if attempt == RETRIES {
                    say(&format!(
                        "[demo] drill run {} skipped ({why}); the demo does not try again\n",
                        run.id
                    ));
                    return None;
                }
                say(&format!(
                    "[demo] drill run {} skipped ({why}); trying again in {} s\n",
                    run.id,
                    RETRY_EVERY.as_secs()
                ));
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Ok(run) => return Some(run),
            Err(e) => {
                say(&format!("[demo] drill {DRILL_ID} could not start: {e:#}\n"));
                return None;
            }
        }
    }
    None
}

/// Polls the drill run until it is finished (printing when it starts settling). `None` when it
/// does not finish within [`FOLLOW_AT_MOST`].
async fn follow(client: &ApiClient, started: &DrillRun) -> Option<DrillRun> {
    let path = format!("/api/v1/drill-runs/{}", started.id);
    let deadline = tokio::time::Instant::now() + FOLLOW_AT_MOST;
    let mut status = started.status;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        let Ok(v) = client.get(&path, &[]).await else {
            continue;
        };
        let run = match serde_json::from_value::<DrillRun>(v) {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(error = %e, "Demo: unreadable drill run.");
                continue;
            }
        };
        if run.status != status {
            status = run.status;
            match status {
                DrillStatus::Restoring => say(&format!(
                    "[demo] drill run {} restoring: the restore steps run on their own\n",
                    run.id
                )),
                DrillStatus::Settling => say(&format!(
                    "[demo] drill run {} settling: the drill window stays open until {} for the last results, then it is measured\n",
                    run.id,
                    run.settle_until_ms.map_or_else(|| "—".to_owned(), iso)
                )),
                _ => {}
            }
        }
        if run.status == DrillStatus::Finished {
            return Some(run);
        }
    }
    say(&format!(
        "[demo] drill run {} has not finished after {} s; the demo stops following it\n",
        started.id,
        FOLLOW_AT_MOST.as_secs()
    ));
    None
}

/// Prints the verdict, the figures against the RTO, the steps and the SLA effect.
fn tell_outcome(run: &DrillRun) {
    let Some(o) = &run.outcome else {
        say(&format!(
            "[demo] drill run {} finished without measurements\n",
            run.id
        ));
        return;
    };
    let s = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1} s"));
    let mut text = format!(
        "[demo] drill {} run {} finished: verdict {} — {}\n",
        run.drill,
        run.id,
        o.verdict.as_str().to_uppercase(),
        o.reason
    );
    text.push_str(&format!(
        "[demo]   time to detect: {} to the first down result, {} to the incident\n",
        s(o.detect_s),
        s(o.detect_incident_s)
    ));
    text.push_str(&format!(
        "[demo]   time to recover: {} (up for {:.0} s; RTO {:.0} s: {})\n",
        s(o.recover_s),
        o.confirm_s,
        o.targets.rto_s,
        if o.rto_met { "met" } else { "not met" }
    ));
    let steps: Vec<String> = o
        .steps
        .iter()
        .map(|st| {
            format!(
                "{} ({}) {} {}",
                st.id,
                st.phase,
                st.status,
                s(st.duration_s)
            )
        })
        .collect();
    text.push_str(&format!("[demo]   steps: {}\n", steps.join("; ")));
    if let Some(sla) = &o.sla {
        text.push_str(&format!(
            "[demo]   in the SLA: drill_s {:.1}, downtime_s {:.1} (a drill's outage is not downtime)\n",
            sla.drill_s, sla.downtime_s
        ));
    }
    for d in &o.deviations {
        text.push_str(&format!("[demo]   deviation: {d}\n"));
    }
    say(&text);
}

/// Writes the continuity report of drill run `id` into `dir` as Markdown, JSON and HTML;
/// returns the paths written.
async fn write_reports(client: &ApiClient, id: u64, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    for ext in ["md", "json", "html"] {
        files.push((ext, crate::drill::cli::report(client, id, ext).await?));
    }
    let mut written = Vec::new();
    for (ext, text) in files {
        let file = dir.join(format!("drill-run-{id}.{ext}"));
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}
