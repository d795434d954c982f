//! The executors of the steps that do work outside the engine: `http` (a request from the
//! collector), `exec` (a program on the collector host, argv without a shell) and `wait_for`
//! (the service's measured state, from the stored probe stream). Each runs as a task the engine
//! spawns for one attempt and ends with one [`Outcome`], which the engine receives as an event.
//! The engine keeps the attempt's deadline itself; when it passes (or the run is cancelled) the
//! engine aborts the task, which kills an `exec` program's process group (the shared
//! [`process`](watchstand_shared::process) runner). Each executor also bounds itself by the
//! same timeout, so nothing it starts outlives the attempt.
//!
//! `agent_action` steps are in [`super::agent_action`].

use std::sync::Arc;
use std::time::Duration;

use watchstand_shared::process::{Captured, Keep, Process, ProcessError};
use watchstand_shared::time::now_ms;

use super::run::Outcome;
use crate::config::Service;
use crate::store::Store;

/// Most bytes of a response body or of stdout/stderr kept in an outcome (the tail).
pub const TAIL_BYTES: usize = 4_096;

/// Why an `http` or `exec` attempt in progress at a collector restart failed.
pub const RESTARTED: &str = "collector restarted during the attempt; outcome unknown";

/// How often `wait_for` looks at the service's measured state.
pub const WAIT_FOR_POLL: Duration = Duration::from_millis(250);

/// A kept tail as text: trimmed, with `…` in front when the stream was longer.
fn tail_text(tail: &Captured) -> String {
    let text = String::from_utf8_lossy(tail.bytes()).trim().to_owned();
    if tail.truncated() {
        format!("…{text}")
    } else {
        text
    }
}

/// One `http` attempt: `method url`, success when the status is in `expect_status` (any 2xx
/// when empty); the response body's tail is kept.
pub async fn http(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    expect_status: &[u16],
    timeout: Duration,
) -> Outcome {
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(e) => {
            return Outcome::Failed {
                reason: format!("method {method:?}: {e}"),
            }
        }
    };
    let attempt = async {
        let mut response = client.request(method, url).send().await?;
        let status = response.status().as_u16();
        let mut tail = Captured::new(Keep::Tail(TAIL_BYTES));
        while let Some(chunk) = response.chunk().await? {
            tail.push(&chunk);
        }
        Ok::<_, reqwest::Error>((status, tail))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::TimedOut,
        Ok(Err(e)) => Outcome::Failed {
            reason: format!("{url}: {e}"),
        },
        Ok(Ok((status, tail))) => {
            let ok = if expect_status.is_empty() {
                (200..300).contains(&status)
            } else {
                expect_status.contains(&status)
            };
            let body = tail_text(&tail);
            if ok {
                Outcome::Succeeded {
                    detail: format!("HTTP {status}; body: {body}"),
                }
            } else {
                let wanted = if expect_status.is_empty() {
                    "2xx".to_owned()
                } else {
                    format!("{expect_status:?}")
                };
                Outcome::Failed {
                    reason: format!("HTTP {status}, expected {wanted}; body: {body}"),
                }
            }
        }
    }
}

/// One `exec` attempt: `argv[0]` with the rest as arguments, no shell, stdin closed; success
/// on exit code 0. Its process group is killed when `timeout` passes or the task is aborted.
pub async fn exec(argv: &[String], timeout: Duration) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::Failed {
            reason: "empty argv".into(),
        };
    };
    let ran = Process::new(program, timeout)
        .args(args)
        .stdout(Keep::Tail(TAIL_BYTES))
        .stderr(Keep::Tail(TAIL_BYTES))
        .run()
        .await;
    match ran {
        Err(ProcessError::TimedOut { .. }) => Outcome::TimedOut,
        Err(ProcessError::Spawn { source, .. }) => Outcome::Failed {
            reason: format!("cannot start {program:?}: {source}"),
        },
        Err(ProcessError::Wait { source, .. }) => Outcome::Failed {
            reason: format!("waiting for {program:?}: {source}"),
        },
        Ok(done) => {
            let detail = format!(
                "{}; stdout: {}; stderr: {}",
                done.status,
                tail_text(&done.stdout),
                tail_text(&done.stderr)
            );
            if done.status.success() {
                Outcome::Succeeded { detail }
            } else {
                Outcome::Failed { reason: detail }
            }
        }
    }
}

/// One `wait_for` attempt: until `service` has been measured up for `hold_ms` (see
/// [`crate::incident::conditions::measured_up_for`]). Never ends otherwise; the engine's
/// deadline ends it.
pub async fn wait_for(store: Store, service: Arc<Service>, hold_ms: u64) -> Outcome {
    loop {
        let (s, svc) = (store.clone(), service.clone());
        let now = now_ms();
        let up = tokio::task::spawn_blocking(move || {
            crate::incident::conditions::measured_up_for(&s, &svc, hold_ms, now)
        })
        .await;
        match up {
            Ok(Ok(true)) => {
                return Outcome::Succeeded {
                    detail: format!("{} measured up for {hold_ms} ms", service.id),
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, service = %service.id, "wait_for cannot read the store; trying again.")
            }
            Err(e) => tracing::warn!(error = %e, "wait_for check failed; trying again."),
        }
        tokio::time::sleep(WAIT_FOR_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn exec_keeps_bounded_tails_and_judges_the_exit_code() {
        let ok = exec(
            &argv(&[
                "sh",
                "-c",
                "head -c 10000 /dev/zero | tr '\\\\0' a; echo done",
            ]),
            Duration::from_secs(10),
        )
        .await;
        let Outcome::Succeeded { detail } = ok else {
            panic!("expected success, got {ok:?}");
        };
        assert!(detail.contains("done"), "{detail}");
        assert!(
            detail.len() < TAIL_BYTES + 200,
            "tail not bounded: {}",
            detail.len()
        );
        let failed = exec(
            &argv(&["sh", "-c", "echo oops >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .await;
        let Outcome::Failed { reason } = failed else {
            panic!("expected failure, got {failed:?}");
        };
        assert!(
            reason.contains("exit status: 3") && reason.contains("oops"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn exec_without_a_shell_and_with_a_timeout() {
        // `;` is an argument, not a command separator.
        let out = exec(
            &argv(&["echo", "a;", "touch", "/x"]),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            matches!(&out, Outcome::Succeeded { detail } if detail.contains("a; touch /x")),
            "{out:?}"
        );
        let started = std::time::Instant::now();
        let slow = exec(&argv(&["sleep", "30"]), Duration::from_millis(200)).await;
        assert_eq!(slow, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        let missing = exec(&argv(&["/nonexistent/program"]), Duration::from_secs(1)).await;
        assert!(
            matches!(&missing, Outcome::Failed { reason } if reason.contains("cannot start")),
            "{missing:?}"
        );
    }
}
