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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{http_target, Reply};

    fn template(url: &str) -> Template {
        Template::parse(url).unwrap()
    }

    #[tokio::test]
    async fn arguments_are_percent_encoded_into_the_url_and_the_status_decides() {
        let target = http_target(Reply::ok("flipped")).await;
        let client = reqwest::Client::new();
        let url = template(&format!("{}?to={{to}}", target.url("/flip")));
        let args = BTreeMap::from([("to".to_owned(), "a b&c".to_owned())]);
        let o = run(
            &client,
            &reqwest::Method::POST,
            &url,
            &args,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            (o.status, o.http_status),
            (OutcomeStatus::Succeeded, Some(200))
        );
        assert_eq!(o.stdout_tail, "flipped");
        let requests = target.requests();
        assert!(
            requests.iter().any(|r| r.contains("to=a%20b%26c")),
            "{requests:?}"
        );

        let failing = http_target(Reply::status(503, "no")).await;
        let url = template(&failing.url("/flip"));
        let o = run(
            &client,
            &reqwest::Method::POST,
            &url,
            &BTreeMap::new(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            (o.status, o.http_status),
            (OutcomeStatus::Failed, Some(503))
        );

        let slow = http_target(Reply::ok("late").after(Duration::from_secs(5))).await;
        let url = template(&slow.url("/flip"));
        let o = run(
            &client,
            &reqwest::Method::POST,
            &url,
            &BTreeMap::new(),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(o.status, OutcomeStatus::TimedOut);
    }
}
