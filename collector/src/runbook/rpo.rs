//! The `rpo_check` step: reads the service's recovery point — a replication lag in seconds, or
//! the unix time of the last committed transaction — from an HTTP endpoint (a JSON pointer into
//! the answer) or a program's stdout, and compares it with the service's `rpo`.
//!
//! The step is a measurement: it succeeds when a number was read, whether or not the RPO was
//! met (that goes into the [`RpoReading`] on the attempt, and from there into a drill's RPO
//! result and verdict); it fails only when nothing could be read (unreachable, not 2xx, no
//! number at the pointer, a program that exits non-zero or prints no number).
//!
//! Arithmetic ([`compare`]): `lag_s` → recovery point = the value; `last_commit_unix` →
//! recovery point = time of reading − the value. Met when the recovery point ≤ the RPO. A
//! last-commit time more than [`FUTURE_SLACK_MS`] ahead of the collector's clock is refused
//! (milliseconds given as seconds, or a clock that is far off) rather than read as lag 0.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use watchstand_shared::process::{Keep, Process};
use watchstand_shared::time::now_ms;

use super::run::Outcome;

/// Most bytes of an answer or of stdout read.
pub const MAX_BYTES: usize = 65_536;

/// How far a last-commit time may be ahead of the collector's clock (skew) before the reading
/// is refused.
pub const FUTURE_SLACK_MS: u64 = 60_000;

/// What the number read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reads {
    /// The replication lag, seconds.
    LagS,
    /// When the last transaction was committed, unix seconds (fractions allowed).
    LastCommitUnix,
}

impl Reads {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reads::LagS => "lag_s",
            Reads::LastCommitUnix => "last_commit_unix",
        }
    }

    /// From the config's `reads`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "lag_s" => Some(Reads::LagS),
            "last_commit_unix" => Some(Reads::LastCommitUnix),
            _ => None,
        }
    }
}

/// Where the number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpoSource {
    /// `GET url`, a 2xx JSON answer, the number at `pointer` (RFC 6901; empty: the whole
    /// answer). A JSON string holding a number is read too.
    Http {
        /// URL.
        url: String,
        /// JSON pointer.
        pointer: String,
    },
    /// A program on the collector host (no shell); exit 0, the number alone on stdout.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
    },
}

/// One reading of the recovery point, compared with the RPO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpoReading {
    /// What the number meant.
    pub reads: Reads,
    /// The number as read.
    pub value: String,
    /// When it was read, epoch ms.
    pub at_ms: u64,
    /// The recovery point: how much committed data a failure at `at_ms` would have lost, ms.
    pub lag_ms: u64,
    /// The service's RPO, ms.
    pub rpo_ms: u64,
    /// `lag_ms ≤ rpo_ms`.
    pub met: bool,
}

impl RpoReading {
    /// One line for step details: `recovery point 2.5 s ≤ RPO 60 s: met (lag_s = 2.5)`.
    pub fn describe(&self) -> String {
        format!(
            "recovery point {} s {} RPO {} s: {} ({} = {})",
            self.lag_ms as f64 / 1e3,
            if self.met { "≤" } else { ">" },
            self.rpo_ms as f64 / 1e3,
            if self.met { "met" } else { "not met" },
            self.reads.as_str(),
            self.value
        )
    }
}

/// Compares `value` (read at `now_ms`, meaning `reads`) with `rpo_ms`.
///
/// # Errors
/// A value that is not a finite number ≥ 0, or a last-commit time too far in the future.
pub fn compare(
    reads: Reads,
    value: f64,
    text: &str,
    now_ms: u64,
    rpo_ms: u64,
) -> Result<RpoReading, String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a number ≥ 0"));
    }
    // f64 → u64 saturates; the values are far below 2^53 ms in practice.
    let ms = (value * 1_000.0).round() as u64;
    let lag_ms = match reads {
        Reads::LagS => ms,
        Reads::LastCommitUnix => {
            if ms > now_ms.saturating_add(FUTURE_SLACK_MS) {
                return Err(format!(
                    "last commit {text} is {:.1} s after the collector's clock (not unix seconds, or a clock far off)",
                    (ms - now_ms) as f64 / 1e3
                ));
            }
            now_ms.saturating_sub(ms)
        }
    };
    Ok(RpoReading {
        reads,
        value: text.to_owned(),
        at_ms: now_ms,
        lag_ms,
        rpo_ms,
        met: lag_ms <= rpo_ms,
    })
}

/// The number at `pointer` in the JSON `body`, and its text.
///
/// # Errors
/// Not JSON, nothing at the pointer, or not a number there.
pub fn number_at(body: &str, pointer: &str) -> Result<(f64, String), String> {
    let doc: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let at = doc
        .pointer(pointer)
        .ok_or_else(|| format!("nothing at JSON pointer {pointer:?} in the answer"))?;
    match at {
        serde_json::Value::Number(n) => n
            .as_f64()
            .map(|v| (v, n.to_string()))
            .ok_or_else(|| format!("{n} at {pointer:?} is not a number")),
        serde_json::Value::String(s) => {
            number_of(s).map_err(|e| format!("at JSON pointer {pointer:?}: {e}"))
        }
        other => Err(format!(
            "{other} at JSON pointer {pointer:?} is not a number"
        )),
    }
}

/// The number that is all of `text` (surrounding white space aside), and its text.
///
/// # Errors
/// Anything else.
pub fn number_of(text: &str) -> Result<(f64, String), String> {
    let t = text.trim();
    t.parse::<f64>()
        .map(|v| (v, t.to_owned()))
        .map_err(|_| format!("{:?} is not a number", shorten(t)))
}

fn shorten(t: &str) -> String {
    match t.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// The text the source answers.
async fn fetch(
    client: &reqwest::Client,
    source: &RpoSource,
    timeout: Duration,
) -> Result<(String, String), String> {
    match source {
        RpoSource::Http { url, pointer } => {
            let mut response = client
                .get(url)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                let room = MAX_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            let body = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                return Err(format!(
                    "{url}: HTTP {}: {}",
                    status.as_u16(),
                    shorten(&body)
                ));
            }
            Ok((body, pointer.clone()))
        }
        RpoSource::Exec { argv } => {
            let Some((program, args)) = argv.split_first() else {
                return Err("empty argv".into());
            };
            // The attempt's own timeout (in `check`) always comes first; dropping the run
            // then kills the program's process group. This deadline is only a backstop.
            let finished = Process::new(program.clone(), timeout + Duration::from_secs(1))
                .args(args)
                .stdout(Keep::Head(MAX_BYTES))
                .stderr(Keep::Tail(MAX_BYTES))
                .run()
                .await
                .map_err(|e| e.to_string())?;
            if !finished.status.success() {
                return Err(format!(
                    "{program:?}: {}; stderr: {}",
                    finished.status,
                    shorten(String::from_utf8_lossy(finished.stderr.bytes()).trim())
                ));
            }
            Ok((
                String::from_utf8_lossy(finished.stdout.bytes()).into_owned(),
                String::new(),
            ))
        }
    }
}

/// One `rpo_check` attempt: reads the number from `source` and compares it with `rpo_ms`.
/// Bounded by `timeout` (an `exec` child is killed when it passes or the task is aborted).
pub async fn check(
    client: &reqwest::Client,
    source: &RpoSource,
    reads: Reads,
    rpo_ms: u64,
    timeout: Duration,
) -> Outcome {
    let read = async {
        let (text, pointer) = fetch(client, source, timeout).await?;
        let (value, shown) = match source {
            RpoSource::Http { .. } => number_at(&text, &pointer)?,
            RpoSource::Exec { .. } => number_of(&text).map_err(|e| format!("stdout: {e}"))?,
        };
        compare(reads, value, &shown, now_ms(), rpo_ms)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Outcome::TimedOut,
        Ok(Err(reason)) => Outcome::Failed { reason },
        Ok(Ok(reading)) => Outcome::RpoChecked {
            detail: reading.describe(),
            reading,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_634_000_000;

    #[test]
    fn lag_is_compared_with_the_rpo_inclusive() {
        let r = compare(Reads::LagS, 2.5, "2.5", NOW, 60_000).expect("reading");
        assert_eq!((r.lag_ms, r.rpo_ms, r.met), (2_500, 60_000, true));
        assert_eq!(r.at_ms, NOW);
        assert_eq!(
            r.describe(),
            "recovery point 2.5 s ≤ RPO 60 s: met (lag_s = 2.5)"
        );
        // Exactly the RPO is met; a millisecond more is not.
        assert!(
            compare(Reads::LagS, 60.0, "60", NOW, 60_000)
                .expect("r")
                .met
        );
        let over = compare(Reads::LagS, 60.001, "60.001", NOW, 60_000).expect("r");
        assert_eq!((over.lag_ms, over.met), (60_001, false));
        // An RPO of 0 is met only by no lag at all.
        assert!(compare(Reads::LagS, 0.0, "0", NOW, 0).expect("r").met);
        assert!(!compare(Reads::LagS, 0.002, "0.002", NOW, 0).expect("r").met);
    }

    #[test]
    fn a_last_commit_time_becomes_the_lag_at_the_time_of_reading() {
        let commit_s = (NOW - 90_000) as f64 / 1e3;
        let r =
            compare(Reads::LastCommitUnix, commit_s, "1796633910", NOW, 60_000).expect("reading");
        assert_eq!((r.lag_ms, r.met), (90_000, false));
        assert!(r
            .describe()
            .starts_with("recovery point 90 s > RPO 60 s: not met"));
        // A little clock skew reads as no lag; far in the future is refused.
        let skew = compare(
            Reads::LastCommitUnix,
            (NOW + 5_000) as f64 / 1e3,
            "x",
            NOW,
            0,
        );
        assert_eq!(skew.map(|r| (r.lag_ms, r.met)), Ok((0, true)));
        let millis = compare(Reads::LastCommitUnix, NOW as f64, "1796634000000", NOW, 0)
            .expect_err("milliseconds are not seconds");
        assert!(millis.contains("not unix seconds"), "{millis}");
    }

    #[test]
    fn only_finite_numbers_at_least_zero_are_readings() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(compare(Reads::LagS, bad, "v", NOW, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_are_found_by_pointer_or_as_the_whole_text() {
        let body = r#"{"replication":{"lag_seconds":3.25,"as_text":" 7 ","state":"streaming"}}"#;
        assert_eq!(
            number_at(body, "/replication/lag_seconds"),
            Ok((3.25, "3.25".into()))
        );
        assert_eq!(
            number_at(body, "/replication/as_text"),
            Ok((7.0, "7".into()))
        );
        assert_eq!(number_at("42", ""), Ok((42.0, "42".into())));
        assert_eq!(
            number_at(body, "/replication/lag"),
            Err("nothing at JSON pointer \"/replication/lag\" in the answer".into())
        );
        assert_eq!(
            number_at(body, "/replication/state"),
            Err("at JSON pointer \"/replication/state\": \"streaming\" is not a number".into())
        );
        assert!(number_at("<html>", "").is_err_and(|e| e.contains("not JSON")));
        assert_eq!(
            number_of("1796633910.5\n"),
            Ok((1_796_633_910.5, "1796633910.5".into()))
        );
        assert!(number_of("lag: 3").is_err());
    }

    #[tokio::test]
    async fn a_program_prints_the_number() {
        let client = reqwest::Client::new();
        let argv = |s: &str| RpoSource::Exec {
            argv: vec!["sh".into(), "-c".into(), s.into()],
        };
        let out = check(
            &client,
            &argv("echo 12.5"),
            Reads::LagS,
            10_000,
            Duration::from_secs(10),
        )
        .await;
        let Outcome::RpoChecked { reading, .. } = out else {
            panic!("expected a reading, got {out:?}");
        };
        assert_eq!((reading.lag_ms, reading.met), (12_500, false));
        let failed = check(
            &client,
            &argv("echo nope >&2; exit 2"),
            Reads::LagS,
            10_000,
            Duration::from_secs(10),
        )
        .await;
        assert!(
            matches!(&failed, Outcome::Failed { reason } if reason.contains("nope")),
            "{failed:?}"
        );
        let slow = check(
            &client,
            &argv("sleep 30"),
            Reads::LagS,
            10_000,
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(slow, Outcome::TimedOut);
    }
}
