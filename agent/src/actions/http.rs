//! `kind = "http"`: one request to the declared URL (arguments percent-encoded into it), at most
//! the action's timeout. A status below 400 succeeds; the body's tail is the outcome's stdout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{CommandOutcome, OutcomeStatus, TAIL_BYTES};

use super::exec::{elapsed_ms, tail_text};
use super::template::{percent_encode, Template};

/// Sends the request.
pub async fn run(
    client: &reqwest::Client,
    method: &reqwest::Method,
    url: &Template,
    args: &BTreeMap<String, String>,
    timeout: Duration,
) -> CommandOutcome {
    let started_ms = now_ms();
    let started = Instant::now();
    let url = url.render(args, percent_encode);
    let mut outcome = CommandOutcome {
        status: OutcomeStatus::Error,
        exit_code: None,
        http_status: None,
        started_ms,
        duration_ms: 0,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        error: None,
    };
    let request = async {
        let response = client.request(method.clone(), &url).send().await?;
        let status = response.status();
        // Only the tail is kept; a body is read to its end (bounded by the timeout).
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > 2 * TAIL_BYTES {
                body.drain(..body.len() - TAIL_BYTES);
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    };
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok((status, body))) => {
            outcome.http_status = Some(status.as_u16());
            outcome.status = if status.as_u16() < 400 {
                OutcomeStatus::Succeeded
            } else {
                OutcomeStatus::Failed
            };
            outcome.stdout_tail = tail_text(&body);
        }
        Ok(Err(e)) => outcome.error = Some(format!("{method} {url}: {e}")),
        Err(_) => {
            outcome.status = OutcomeStatus::TimedOut;
            outcome.error = Some(format!("no answer within {} ms", timeout.as_millis()));
        }
    }
    outcome.duration_ms = elapsed_ms(started);
    outcome
}
