//! The `exec` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): runs a
//! Nagios/Icinga/Zabbix-style check plugin unchanged and reads the plugin protocol.
//!
//! - The command is an argv list run directly (no shell) by the shared
//!   [`process`](watchstand_shared::process) runner, in its own process group, stdin closed. On
//!   timeout the whole group gets SIGKILL (`killpg`), so a plugin's children die with it; the
//!   same happens when the scheduler's hard timeout drops the check, and when the plugin exits
//!   (what it left running dies with it).
//! - Exit 0 → up, 1 (WARNING) → degraded, 2 (CRITICAL) → down, 3 (UNKNOWN) → down with the text
//!   prefixed `UNKNOWN: ` unless it already says UNKNOWN (the plugin could not tell, so the service cannot be counted as up; the
//!   prefix keeps it apart from a real CRITICAL), any other exit or a signal → down.
//! - The first output line (before `|`) is the error text when not up. Performance data
//!   (`'label'=value[UOM];warn;crit;min;max`, after `|` on the first line and on the long-text
//!   lines from the one holding a `|` on) becomes the result's metrics.
//! - At most [`MAX_OUTPUT_BYTES`] of stdout are kept; the rest is read and dropped, so a chatty
//!   plugin never blocks on a full pipe.

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration as StdDuration, Instant};

use serde::Deserialize;
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::process::{Keep, Process, ProcessError};
use watchstand_shared::wire::v1::ProbeMetric;

use super::{Check, Observation};

/// The wire name of this kind.
pub const KIND: &str = "exec";

/// At most this much of a plugin's stdout is kept (Nagios itself keeps 8 KiB by default).
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024;
/// At most this much of stderr is kept (shown only when stdout is empty).
const MAX_STDERR_BYTES: usize = 1024;

/// A `kind = "exec"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ExecProbeToml")]
pub struct ExecProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// The program (absolute path) and its arguments, run without a shell.
    pub command: Vec<String>,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one run; the process group is killed when it passes.
    pub timeout: Duration,
    /// The command as one line (arguments joined by spaces), reported as the target.
    pub target: String,
}

/// The TOML shape of [`ExecProbeConfig`] (which adds the derived `target`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecProbeToml {
    id: String,
    command: Vec<String>,
    interval: Duration,
    timeout: Duration,
}

impl From<ExecProbeToml> for ExecProbeConfig {
    fn from(t: ExecProbeToml) -> Self {
        Self {
            target: t.command.join(" "),
            id: t.id,
            command: t.command,
            interval: t.interval,
            timeout: t.timeout,
        }
    }
}

impl ExecProbeConfig {
    /// Kind-specific checks; `key` is the probe's place in the file.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        let Some(program) = self.command.first() else {
            problems.push(
                format!("{key}.command"),
                "must name a program, e.g. [\"/usr/lib/nagios/plugins/check_load\", \"-r\"]",
            );
            return;
        };
        if !program.starts_with('/') {
            problems.push(
                format!("{key}.command"),
                format!("program {program:?} must be an absolute path (no PATH lookup, no shell)"),
            );
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            problems.push(
                format!("{key}.command"),
                "arguments must not contain NUL characters",
            );
        }
    }
}

/// A runnable exec probe.
#[derive(Debug)]
pub struct ExecProbe {
    command: Vec<String>,
    target: String,
    timeout: StdDuration,
}

impl ExecProbe {
    /// The runtime probe of a validated config.
    pub fn build(config: &ExecProbeConfig) -> Self {
        Self {
            command: config.command.clone(),
            target: config.target.clone(),
            timeout: config.timeout.get(),
        }
    }

    /// The deadline of the run itself: a little before the scheduler's hard timeout, so the
    /// group is killed and the plugin reaped here, with the reason in the text.
    fn run_deadline(&self) -> StdDuration {
        self.timeout
            .saturating_sub((self.timeout / 10).min(StdDuration::from_millis(100)))
    }
}

impl Check for ExecProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        let Some((program, args)) = self.command.split_first() else {
            return Observation::down(start.elapsed(), "no command");
        };
        let ran = Process::new(program, self.run_deadline())
            .args(args)
            .stdout(Keep::Head(MAX_OUTPUT_BYTES))
            .stderr(Keep::Head(MAX_STDERR_BYTES))
            // The plugin has exited: children it left in its group die with it.
            .kill_leftovers()
            .run()
            .await;
        let latency = start.elapsed();
        let (status, out, err) = match ran {
            Ok(done) => (done.status, done.stdout, done.stderr),
            Err(ProcessError::Spawn { source, .. }) => {
                return Observation::down(latency, format!("cannot run {program}: {source}"))
            }
            Err(ProcessError::TimedOut { .. }) => {
                return Observation::down(
                    latency,
                    format!(
                        "timed out after {}; process group killed",
                        Duration(self.timeout)
                    ),
                )
            }
            Err(e @ ProcessError::Wait { .. }) => return Observation::down(latency, e.to_string()),
        };
        let output = PluginOutput::parse(&String::from_utf8_lossy(out.bytes()));
        let mut text = output.text.clone();
        if text.is_empty() {
            text = String::from_utf8_lossy(err.bytes())
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned();
        }
        let with_text = |fallback: String| {
            if text.is_empty() {
                fallback
            } else {
                text.clone()
            }
        };
        let observation = match (status.code(), status.signal()) {
            (Some(0), _) => Observation::up(latency),
            (Some(1), _) => {
                Observation::degraded(latency, with_text("WARNING (exit 1, no output)".into()))
            }
            (Some(2), _) => {
                Observation::down(latency, with_text("CRITICAL (exit 2, no output)".into()))
            }
            (Some(3), _) => {
                let text = with_text("exit 3, no output".into());
                // Most plugins already say so (`UNKNOWN: …`, `DUMMY UNKNOWN - …`).
                if text.to_ascii_uppercase().contains("UNKNOWN") {
                    Observation::down(latency, text)
                } else {
                    Observation::down(latency, format!("UNKNOWN: {text}"))
                }
            }
            (Some(code), _) => Observation::down(
                latency,
                format!("exit {code}: {}", with_text("no output".into())),
            ),
            (None, Some(signal)) => {
                Observation::down(latency, format!("killed by signal {signal}"))
            }
            (None, None) => Observation::down(latency, "ended without an exit code"),
        };
        observation.with_metrics(output.metrics)
    }
}

/// A plugin's output split by the plugin protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginOutput {
    /// The first line's text (before `|`), trimmed.
    pub text: String,
    /// The performance data, in order; unparsable items and `U` values are left out.
    pub metrics: Vec<ProbeMetric>,
}

impl PluginOutput {
    /// Splits `output`: text on the first line; perfdata after `|` on the first line and, on
    /// the later (long text) lines, after the first `|` and on every line below it.
    pub fn parse(output: &str) -> Self {
        let mut lines = output.lines();
        let first = lines.next().unwrap_or("");
        let (text, first_perf) = match first.split_once('|') {
            Some((t, p)) => (t, p),
            None => (first, ""),
        };
        let mut perf = vec![first_perf.to_owned()];
        let mut in_perf = false;
        for line in lines {
            if in_perf {
                perf.push(line.to_owned());
            } else if let Some((_, p)) = line.split_once('|') {
                in_perf = true;
                perf.push(p.to_owned());
            }
        }
        Self {
            text: text.trim().to_owned(),
            metrics: perf.iter().flat_map(|p| parse_perfdata(p)).collect(),
        }
    }
}

/// Parses one perfdata string: space-separated `label=value[UOM][;warn;crit;min;max]`, labels
/// in single quotes when they hold spaces or `=` (`''` is a quote inside one).
pub fn parse_perfdata(text: &str) -> Vec<ProbeMetric> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (label, after) = match rest.strip_prefix('\'') {
            Some(quoted) => {
                let mut label = String::new();
                let mut chars = quoted.char_indices().peekable();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    if c == '\'' {
                        if matches!(chars.peek(), Some((_, '\''))) {
                            label.push('\'');
                            chars.next();
                        } else {
                            end = Some(i + 1);
                            break;
                        }
                    } else {
                        label.push(c);
                    }
                }
                match end {
                    Some(e) => (label, &quoted[e..]),
                    // An unterminated quote: nothing more can be trusted.
                    None => break,
                }
            }
            None => {
                let stop = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
                (rest[..stop].to_owned(), &rest[stop..])
            }
        };
        let Some(after) = after.strip_prefix('=') else {
            // Not `label=`: skip this token.
            let skip = after.find([' ', '\t']).unwrap_or(after.len());
            rest = after[skip..].trim_start();
            continue;
        };
        let stop = after.find([' ', '\t']).unwrap_or(after.len());
        let (item, next) = after.split_at(stop);
        rest = next.trim_start();
        let value_uom = item.split(';').next().unwrap_or("");
        let number_end = value_uom
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E' | ',')))
            .unwrap_or(value_uom.len());
        // Some plugins print a decimal comma under a non-C locale.
        let number = value_uom[..number_end].replace(',', ".");
        let uom = &value_uom[number_end..];
        let Ok(value) = number.parse::<f64>() else {
            continue;
        };
        if label.is_empty() || !value.is_finite() {
            continue;
        }
        out.push(ProbeMetric {
            name: label,
            value,
            uom: (!uom.is_empty()).then(|| uom.to_owned()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeKind;
    use watchstand_shared::process::all_ended;

    fn m(name: &str, value: f64, uom: Option<&str>) -> ProbeMetric {
        ProbeMetric {
            name: name.into(),
            value,
            uom: uom.map(str::to_owned),
        }
    }

    #[test]
    fn perfdata_with_units_thresholds_and_quoted_labels_is_parsed() {
        let got = parse_perfdata(
            "time=0.000123s;1.000000;2.000000;0.000000;10.000000 size=317B;;;0 'free space /var'=42.5%;20;10;0;100 'it''s'=7",
        );
        assert_eq!(
            got,
            vec![
                m("time", 0.000123, Some("s")),
                m("size", 317.0, Some("B")),
                m("free space /var", 42.5, Some("%")),
                m("it's", 7.0, None),
            ]
        );
    }

    #[test]
    fn undetermined_and_malformed_items_are_left_out() {
        let got = parse_perfdata("a=U;1;2 junk b= c=3c 'open=1 d=-2.5e3ms");
        assert_eq!(got, vec![m("c", 3.0, Some("c"))]);
        let got = parse_perfdata("d=-2.5e3ms x=1,5");
        assert_eq!(got, vec![m("d", -2500.0, Some("ms")), m("x", 1.5, None)]);
    }

    #[test]
    fn text_is_the_first_line_and_perfdata_may_continue_on_later_lines() {
        let out = PluginOutput::parse(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n/var/log=818MB;970;975;0;980\n",
        );
        assert_eq!(out.text, "DISK OK - free space: / 3326 MB (56%);");
        let names: Vec<_> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["/", "/boot", "/home", "/var/log"]);
        assert_eq!(out.metrics[3].value, 818.0);
        let plain = PluginOutput::parse("OK\n");
        assert_eq!(plain.text, "OK");
        assert!(plain.metrics.is_empty());
        assert_eq!(PluginOutput::parse("").text, "");
    }

    #[test]
    fn a_relative_or_empty_command_is_refused_naming_the_key() {
        let probe = |command: &str| {
            crate::testutil::probe_problems(&format!(
                "id = \"p\"\nkind = \"exec\"\ncommand = {command}\ninterval = \"10s\"\ntimeout = \"2s\"\n"
            ))
        };
        assert_eq!(
            probe("[]"),
            ["probes[id=\"p\"].command: must name a program, e.g. [\"/usr/lib/nagios/plugins/check_load\", \"-r\"]"]
        );
        assert_eq!(
            probe("[\"check_dummy\", \"0\"]"),
            ["probes[id=\"p\"].command: program \"check_dummy\" must be an absolute path (no PATH lookup, no shell)"]
        );
        assert!(probe("[\"/usr/lib/nagios/plugins/check_dummy\", \"0\"]").is_empty());
    }

    fn probe(command: &[&str], timeout: Duration) -> crate::probe::Probe {
        let toml = format!(
            "id = \"plugin\"\nkind = \"exec\"\ncommand = {:?}\ninterval = \"10s\"\ntimeout = \"{timeout}\"\n",
            command
        );
        let c: crate::probe::ProbeConfig =
            toml::from_str(&toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        crate::probe::Probe::build(&c).unwrap()
    }

    fn sh(script: &str) -> crate::probe::Probe {
        probe(&["/bin/sh", "-c", script], Duration::from_secs(5))
    }

    /// The pid a test script wrote to `path`.
    fn pid_in(path: &std::path::Path) -> u32 {
        let text = std::fs::read_to_string(path).unwrap();
        text.trim().parse().unwrap()
    }

    const TWO_SECONDS: std::time::Duration = std::time::Duration::from_secs(2);

    #[tokio::test]
    async fn exit_codes_map_to_states_and_the_first_line_is_the_text() {
        use watchstand_shared::wire::v1::ProbeState::{Degraded, Down, Up};
        let cases = [
            ("echo 'OK - fine'; exit 0", Up, None),
            (
                "echo 'WARNING - 81% used'; echo more; exit 1",
                Degraded,
                Some("WARNING - 81% used"),
            ),
            (
                "echo 'CRITICAL - gone|x=1'; exit 2",
                Down,
                Some("CRITICAL - gone"),
            ),
            (
                "echo 'cannot parse -H'; exit 3",
                Down,
                Some("UNKNOWN: cannot parse -H"),
            ),
            ("exit 3", Down, Some("UNKNOWN: exit 3, no output")),
            (
                "echo 'UNKNOWN - no such disk'; exit 3",
                Down,
                Some("UNKNOWN - no such disk"),
            ),
            ("echo oops >&2; exit 7", Down, Some("exit 7: oops")),
            ("kill -9 $$", Down, Some("killed by signal 9")),
        ];
        for (script, state, text) in cases {
            let o = sh(script).check().await;
            assert_eq!(o.state, state, "{script}: {o:?}");
            assert_eq!(o.error.as_deref(), text, "{script}");
        }
        let o = probe(&["/nonexistent/check_x"], Duration::from_secs(2))
            .check()
            .await;
        assert_eq!(o.state, Down);
        assert!(
            o.error
                .as_deref()
                .unwrap()
                .starts_with("cannot run /nonexistent/check_x: "),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn perfdata_of_a_plugin_becomes_metrics() {
        let o = sh("printf \"WARNING - load high | load1=2.5;2;4;0; 'queue depth'=17\\nlong text\\nmore | spool=3.25s;;;0\\nmail=12c\\n\"; exit 1")
            .check()
            .await;
        assert_eq!(o.state, watchstand_shared::wire::v1::ProbeState::Degraded);
        assert_eq!(o.error.as_deref(), Some("WARNING - load high"));
        assert_eq!(
            o.metrics,
            vec![
                m("load1", 2.5, None),
                m("queue depth", 17.0, None),
                m("spool", 3.25, Some("s")),
                m("mail", 12.0, Some("c")),
            ]
        );
    }

    #[tokio::test]
    async fn output_is_bounded_and_a_chatty_plugin_does_not_block() {
        // 1 MiB of output: far over the pipe buffer and the 8 KiB kept.
        let o = sh("echo 'OK - big'; head -c 1048576 /dev/zero | tr '\\0' x; echo; exit 0")
            .check()
            .await;
        assert_eq!(
            o.state,
            watchstand_shared::wire::v1::ProbeState::Up,
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn a_plugin_that_hangs_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!("echo $$ > {d}/leader; sleep 30 & echo $! > {d}/child; sleep 30");
        let p = probe(&["/bin/sh", "-c", &script], Duration::from_millis(500));
        let started = std::time::Instant::now();
        let o = p.check().await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{o:?}"
        );
        assert_eq!(o.state, watchstand_shared::wire::v1::ProbeState::Down);
        assert_eq!(
            o.error.as_deref(),
            Some("timed out after 500ms; process group killed")
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
    async fn a_check_dropped_by_the_scheduler_still_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!("sleep 30 & echo $! > {d}/child; sleep 30");
        let p = probe(&["/bin/sh", "-c", &script], Duration::from_secs(5));
        let ProbeKind::Exec(exec) = &p.kind else {
            panic!("not exec");
        };
        let dropped =
            tokio::time::timeout(std::time::Duration::from_millis(300), exec.check()).await;
        assert!(dropped.is_err());
        let child = pid_in(&dir.path().join("child"));
        assert!(
            all_ended(&[child], TWO_SECONDS).await,
            "still running: {child}"
        );
    }
}
