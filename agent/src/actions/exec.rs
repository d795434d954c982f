//! `kind = "exec"`: runs the program directly (argv, never a shell) through the shared
//! [`process`](watchstand_shared::process) runner: stdin closed, stdout and stderr kept as
//! bounded tails, its process group killed at the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use watchstand_shared::process::{Keep, Process, ProcessError};
use watchstand_shared::time::now_ms;
use watchstand_shared::wire::v1::{CommandOutcome, OutcomeStatus, TAIL_BYTES};

use super::template::Template;

/// The last [`TAIL_BYTES`] of `bytes` as (lossy) UTF-8.
pub fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if text.len() <= TAIL_BYTES {
        return text;
    }
    // Replacement characters can make it longer: cut at a char boundary.
    let mut cut = text.len() - TAIL_BYTES;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_owned()
}

/// Runs `argv` with `args` substituted, at most `timeout`.
pub async fn run(
    argv: &[Template],
    args: &BTreeMap<String, String>,
    timeout: Duration,
) -> CommandOutcome {
    let started_ms = now_ms();
    let started = Instant::now();
    let rendered: Vec<String> = argv.iter().map(|t| t.render(args, str::to_owned)).collect();
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
    let Some((program, rest)) = rendered.split_first() else {
        outcome.error = Some("empty argv".into());
        return outcome;
    };
    let ran = Process::new(program, timeout)
        .args(rest)
        .stdout(Keep::Tail(TAIL_BYTES))
        .stderr(Keep::Tail(TAIL_BYTES))
        .run()
        .await;
    match ran {
        Ok(done) => {
            outcome.stdout_tail = tail_text(done.stdout.bytes());
            outcome.stderr_tail = tail_text(done.stderr.bytes());
            let s = done.status;
            outcome.exit_code = s.code();
            outcome.status = if s.success() {
                OutcomeStatus::Succeeded
            } else {
                OutcomeStatus::Failed
            };
            if s.code().is_none() {
                outcome.error = Some(format!("{s}"));
            }
        }
        Err(ProcessError::TimedOut { .. }) => {
            outcome.status = OutcomeStatus::TimedOut;
            outcome.error = Some(format!("killed after {} ms", timeout.as_millis()));
        }
        // "cannot start {program}: …", "waiting for {program}: …".
        Err(e @ (ProcessError::Spawn { .. } | ProcessError::Wait { .. })) => {
            outcome.error = Some(e.to_string());
        }
    }
    outcome.duration_ms = elapsed_ms(started);
    outcome
}

pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<Template> {
        items.iter().map(|s| Template::parse(s).unwrap()).collect()
    }

    #[tokio::test]
    async fn arguments_reach_the_program_verbatim_without_a_shell() {
        let args = BTreeMap::from([("x".to_owned(), "$(touch /tmp/pwned); `id` | ;".to_owned())]);
        let o = run(&argv(&["/bin/echo", "{x}"]), &args, Duration::from_secs(5)).await;
        assert_eq!(o.status, OutcomeStatus::Succeeded);
        assert_eq!(o.exit_code, Some(0));
        assert_eq!(o.stdout_tail, "$(touch /tmp/pwned); `id` | ;\n");
    }

    #[tokio::test]
    async fn a_failing_program_and_a_missing_one_are_told_apart() {
        let o = run(
            &argv(&["/bin/sh", "-c", "echo oops >&2; exit 3"]),
            &BTreeMap::new(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!((o.status, o.exit_code), (OutcomeStatus::Failed, Some(3)));
        assert_eq!(o.stderr_tail, "oops\n");
        let o = run(
            &argv(&["/nonexistent/prog"]),
            &BTreeMap::new(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(o.status, OutcomeStatus::Error);
        assert!(o
            .error
            .unwrap()
            .starts_with("cannot start /nonexistent/prog"));
    }

    #[tokio::test]
    async fn a_slow_program_is_killed_at_its_timeout_and_output_is_bounded() {
        let o = run(
            &argv(&["/bin/sleep", "10"]),
            &BTreeMap::new(),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(o.status, OutcomeStatus::TimedOut);
        assert!(o.duration_ms < 5_000, "{}", o.duration_ms);
        let o = run(
            &argv(&[
                "/bin/sh",
                "-c",
                "head -c 100000 /dev/zero | tr '\\0' a; echo END",
            ]),
            &BTreeMap::new(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(o.stdout_tail.len(), TAIL_BYTES);
        assert!(o.stdout_tail.ends_with("aEND\n"));
    }
}
