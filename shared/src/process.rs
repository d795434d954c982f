//! The one process runner: runs a program to its end under a deadline. The agent's `exec`
//! actions, its `exec` probe and the collector's runbook `exec` step all run their programs
//! through it, and each turns the [`Finished`] run (or the [`ProcessError`]) into its own
//! outcome.
//!
//! - The program is run directly with its arguments (argv, never a shell), stdin closed, with
//!   the caller's extra environment variables.
//! - It runs in a process group of its own. When the deadline passes, or the future running it
//!   is dropped (a task aborted, a check dropped by a scheduler), the whole group gets SIGKILL,
//!   so the program's children die with it. With [`Process::kill_leftovers`] the group is also
//!   killed once the program has exited (a check plugin's strays); without it, what the program
//!   left running in the background on purpose stays.
//! - stdout and stderr are read to their end at the same time (a chatty program never blocks on
//!   a full pipe), each keeping a bounded head or tail ([`Keep`]) and counting what it dropped.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Which part of an output stream is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first this many bytes (a check plugin's first line matters).
    Head(usize),
    /// The last this many bytes (an action's last words matter).
    Tail(usize),
}

/// A bounded part of a byte stream, and how long the stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    keep: Keep,
    bytes: Vec<u8>,
    total: u64,
}

impl Captured {
    /// Nothing captured yet.
    pub fn new(keep: Keep) -> Self {
        Self {
            keep,
            bytes: Vec::new(),
            total: 0,
        }
    }

    /// Adds the next chunk of the stream, dropping what falls outside the bound.
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        match self.keep {
            Keep::Head(limit) => {
                let room = limit.saturating_sub(self.bytes.len());
                self.bytes
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Keep::Tail(limit) => {
                self.bytes.extend_from_slice(chunk);
                // Cut only when twice the bound is reached: amortised, not a shift per chunk.
                if self.bytes.len() > 2 * limit.max(1) {
                    let cut = self.bytes.len() - limit;
                    self.bytes.drain(..cut);
                }
            }
        }
    }

    /// The kept bytes: at most the bound.
    pub fn bytes(&self) -> &[u8] {
        match self.keep {
            Keep::Head(_) => &self.bytes,
            Keep::Tail(limit) => &self.bytes[self.bytes.len().saturating_sub(limit)..],
        }
    }

    /// How many bytes the stream had in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes().len() as u64
    }

    /// Reads `from` to its end (a read error ends it too), keeping what `keep` says.
    async fn read(mut from: impl AsyncRead + Unpin, keep: Keep) -> Self {
        let mut captured = Self::new(keep);
        let mut buf = [0u8; 8_192];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return captured,
                Ok(n) => captured.push(&buf[..n]),
            }
        }
    }
}

/// Why a run has no exit status.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (not found, not executable, …).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program as given.
        program: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The deadline passed: the process group was killed (and the program reaped).
    #[error("timed out after {} ms; process group killed", .after.as_millis())]
    TimedOut {
        /// The deadline.
        after: Duration,
    },
}

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status (a code, or the signal that ended it).
    pub status: ExitStatus,
    /// What it wrote to stdout, bounded.
    pub stdout: Captured,
    /// What it wrote to stderr, bounded.
    pub stderr: Captured,
}

/// A program to run: argv, environment, deadline and output bounds.
#[derive(Debug, Clone)]
pub struct Process {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    stdout: Keep,
    stderr: Keep,
    kill_leftovers: bool,
}

/// The default bound of stdout and stderr: the last 4 KiB.
pub const DEFAULT_KEEP: Keep = Keep::Tail(4 * 1024);

impl Process {
    /// `program` (a path, or a name looked up in `PATH`) without arguments, killed after
    /// `timeout`; stdout and stderr keep [`DEFAULT_KEEP`].
    pub fn new(program: impl Into<String>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout,
            stdout: DEFAULT_KEEP,
            stderr: DEFAULT_KEEP,
            kill_leftovers: false,
        }
    }

    /// Adds arguments, passed verbatim.
    #[must_use]
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the program (the rest is inherited).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How much of stdout to keep.
    #[must_use]
    pub fn stdout(mut self, keep: Keep) -> Self {
        self.stdout = keep;
        self
    }

    /// How much of stderr to keep.
    #[must_use]
    pub fn stderr(mut self, keep: Keep) -> Self {
        self.stderr = keep;
        self
    }

    /// Also kills the process group when the program has exited: nothing it started outlives
    /// it (what a check plugin leaves behind).
    #[must_use]
    pub fn kill_leftovers(mut self) -> Self {
        self.kill_leftovers = true;
        self
    }

    /// Runs the program to its end, at most the timeout (see the module docs).
    ///
    /// # Errors
    /// [`ProcessError::Spawn`] naming the program when it cannot start,
    /// [`ProcessError::TimedOut`] when the deadline passed, [`ProcessError::Wait`] when the
    /// operating system cannot say how it ended.
    pub async fn run(&self) -> Result<Finished, ProcessError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill reaches the program's children too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let mut group = GroupGuard(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        );
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (keep_out, keep_err) = (self.stdout, self.stderr);
        let work = async {
            let out = async {
                match stdout {
                    Some(s) => Captured::read(s, keep_out).await,
                    None => Captured::new(keep_out),
                }
            };
            let err = async {
                match stderr {
                    Some(s) => Captured::read(s, keep_err).await,
                    None => Captured::new(keep_err),
                }
            };
            tokio::join!(out, err, child.wait())
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok((stdout, stderr, status)) => {
                if self.kill_leftovers {
                    group.kill();
                } else {
                    group.disarm();
                }
                let status = status.map_err(|source| ProcessError::Wait {
                    program: self.program.clone(),
                    source,
                })?;
                Ok(Finished {
                    status,
                    stdout,
                    stderr,
                })
            }
            Err(_) => {
                group.kill();
                // Reap the leader (its group is gone; this returns at once).
                let _reaped = child.wait().await.is_ok();
                Err(ProcessError::TimedOut {
                    after: self.timeout,
                })
            }
        }
    }
}

/// Kills a process group with SIGKILL when dropped, unless disarmed: a run whose future is
/// dropped still takes the program's whole group down.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (the group is already gone) is the good case.
            if let Err(e) = killpg(pgid, Signal::SIGKILL) {
                if e != nix::errno::Errno::ESRCH {
                    tracing::warn!(pgid = pgid.as_raw(), error = %e, "Cannot kill a process group.");
                }
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether process `pid` has ended: gone, or a zombie nobody has reaped yet (it runs no
/// more). Reads `/proc` (Linux); the tests that check a kill reached a whole group use it.
pub fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (polling every 50 ms, at most `within`) until every process of `pids` has
/// [`ended`]; whether they all did.
pub async fn all_ended(pids: &[u32], within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if pids.iter().all(|p| ended(*p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Process {
        Process::new("/bin/sh", timeout).args(["-c", script])
    }

    /// The pid a test script wrote to `path`.
    fn pid_in(path: &std::path::Path) -> u32 {
        let text = std::fs::read_to_string(path).expect("the script wrote its pid");
        text.trim().parse().expect("a pid")
    }

    const TWO_SECONDS: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let script = format!("echo $$ > {d}/leader; sleep 30 & echo $! > {d}/child; sleep 30");
        let started = std::time::Instant::now();
        let run = sh(&script, Duration::from_millis(500)).run().await;
        assert!(started.elapsed() < Duration::from_secs(3), "{run:?}");
        let Err(e @ ProcessError::TimedOut { .. }) = run else {
            panic!("not timed out: {run:?}");
        };
        assert_eq!(
            e.to_string(),
            "timed out after 500 ms; process group killed"
        );
        let pids = [
            pid_in(&dir.path().join("leader")),
            pid_in(&dir.path().join("child")),
        ];
        assert!(
            all_ended(&pids, TWO_SECONDS).await,
            "still running: {pids:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_run_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let script = format!("sleep 30 & echo $! > {d}/child; sleep 30");
        let process = sh(&script, Duration::from_secs(30));
        let dropped = tokio::time::timeout(Duration::from_millis(300), process.run()).await;
        assert!(dropped.is_err());
        let child = pid_in(&dir.path().join("child"));
        assert!(all_ended(&[child], TWO_SECONDS).await, "{child}");
    }

    #[tokio::test]
    async fn leftovers_are_killed_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        // The background sleep does not hold the pipes, so the run ends with the leader.
        let script = |name: &str| format!("sleep 30 >/dev/null 2>&1 & echo $! > {d}/{name}");
        let done = sh(&script("killed"), Duration::from_secs(10))
            .kill_leftovers()
            .run()
            .await
            .expect("runs");
        assert!(done.status.success());
        let killed = pid_in(&dir.path().join("killed"));
        assert!(all_ended(&[killed], TWO_SECONDS).await, "{killed}");
        sh(&script("kept"), Duration::from_secs(10))
            .run()
            .await
            .expect("runs");
        let kept = pid_in(&dir.path().join("kept"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!ended(kept), "a background child was killed: {kept}");
        let pid = Pid::from_raw(i32::try_from(kept).expect("a pid"));
        nix::sys::signal::kill(pid, Signal::SIGKILL).expect("clean up");
    }

    #[tokio::test]
    async fn output_is_bounded_head_or_tail_and_counted() {
        // 1 MiB: far over the pipe buffer, so the program would block if it were not read.
        let script = "echo first; head -c 1048576 /dev/zero | tr '\\0' x; echo; echo last >&2; head -c 100000 /dev/zero >&2";
        let done = sh(script, Duration::from_secs(20))
            .stdout(Keep::Head(8))
            .stderr(Keep::Tail(100_005))
            .run()
            .await
            .expect("runs");
        assert_eq!(done.stdout.bytes(), b"first\nxx");
        assert_eq!(done.stdout.total(), 6 + 1_048_576 + 1);
        assert!(done.stdout.truncated());
        assert_eq!(done.stderr.bytes().len(), 100_005);
        assert!(done.stderr.bytes().starts_with(b"last\n"));
        assert!(!done.stderr.truncated());
        let tail = sh("seq 1 10000", Duration::from_secs(10))
            .stdout(Keep::Tail(10))
            .run()
            .await
            .expect("runs");
        assert_eq!(tail.stdout.bytes(), b"999\n10000\n");
        assert!(tail.stdout.truncated());
    }

    #[tokio::test]
    async fn exit_codes_signals_arguments_and_environment_reach_the_caller() {
        use std::os::unix::process::ExitStatusExt as _;
        let done = sh("echo \"$1 $WS_TEST\"; exit 3", Duration::from_secs(10))
            .args(["me", "$(id); `id` | ;"])
            .env("WS_TEST", "from env")
            .run()
            .await
            .expect("runs");
        assert_eq!(done.status.code(), Some(3));
        // `$0` is `me`; `$1` the argument, verbatim: no shell ever saw it.
        assert_eq!(done.stdout.bytes(), b"$(id); `id` | ; from env\n");
        let killed = sh("kill -9 $$", Duration::from_secs(10))
            .run()
            .await
            .expect("runs");
        assert_eq!(
            (killed.status.code(), killed.status.signal()),
            (None, Some(9))
        );
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_named() {
        let e = Process::new("/nonexistent/prog", Duration::from_secs(1))
            .run()
            .await
            .expect_err("no such program");
        assert!(
            matches!(&e, ProcessError::Spawn { program, .. } if program == "/nonexistent/prog")
        );
        assert!(
            e.to_string()
                .starts_with("cannot start /nonexistent/prog: "),
            "{e}"
        );
    }
}
