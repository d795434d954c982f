//! Combining a service's probes into one service state by the service's `mode`, and the sweep
//! line that does it over whole timelines.
//!
//! At each instant, with `up` (up or degraded), `down` and `unknown` probe counts:
//! - `all`: down if any probe is down; else unknown if any is unknown; else up.
//! - `any`: up if any probe is up; else unknown if any is unknown; else down.
//! - `quorum:N`: up if at least N probes are up; else unknown if `up + unknown ≥ N`; else down.
//!
//! While the service is up but some probe is down, the time is a **partial outage** (several
//! agents are several vantage points). A service with no probes is unknown throughout.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::span::{push_merged, Span};
use super::timeline::ProbeClass;

/// How a service's probes combine into its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every probe must be up.
    All,
    /// One up probe is enough (redundancy: primary and standby).
    Any,
    /// At least this many probes must be up (never 0).
    Quorum(u32),
}

/// Why a `mode` does not parse, or does not fit the service's probes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ModeError {
    /// The text is not a mode.
    #[error("invalid mode {text:?}: {reason} (use \"all\", \"any\" or \"quorum:N\" with N ≥ 1)")]
    Invalid {
        /// The text as written.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `quorum:N` with fewer than N probes can never be up.
    #[error("mode \"quorum:{quorum}\" needs at least {quorum} probes, the service has {probes}")]
    TooFewProbes {
        /// N.
        quorum: u32,
        /// How many probes the service has.
        probes: usize,
    },
}

impl Mode {
    /// Checks that the mode can be met by a service with `probes` probes (`quorum:N` needs at
    /// least N); the config validator calls this.
    ///
    /// # Errors
    /// [`ModeError::TooFewProbes`] when N exceeds the number of probes.
    pub fn check_probe_count(self, probes: usize) -> Result<(), ModeError> {
        match self {
            Mode::Quorum(n) if u64::from(n) > probes as u64 => {
                Err(ModeError::TooFewProbes { quorum: n, probes })
            }
            _ => Ok(()),
        }
    }

    /// The service state for one instant's probe counts.
    pub fn combine(self, counts: ProbeCounts) -> ServiceState {
        let ProbeCounts { up, down, unknown } = counts;
        if up + down + unknown == 0 {
            return ServiceState::Unknown;
        }
        match self {
            Mode::All if down > 0 => ServiceState::Down,
            Mode::All if unknown > 0 => ServiceState::Unknown,
            Mode::All => ServiceState::Up,
            Mode::Any if up > 0 => ServiceState::Up,
            Mode::Any if unknown > 0 => ServiceState::Unknown,
            Mode::Any => ServiceState::Down,
            Mode::Quorum(n) => {
                // u32 always fits usize on the platforms we build for; saturate if not.
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if up >= n {
                    ServiceState::Up
                } else if up + unknown >= n {
                    ServiceState::Unknown
                } else {
                    ServiceState::Down
                }
            }
        }
    }
}

impl FromStr for Mode {
    type Err = ModeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| ModeError::Invalid {
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Mode::All);
        }
        if t.eq_ignore_ascii_case("any") {
            return Ok(Mode::Any);
        }
        let Some((word, n)) = t.split_once(':') else {
            return Err(err(if t.is_empty() {
                "empty"
            } else {
                "unknown mode"
            }));
        };
        if !word.trim().eq_ignore_ascii_case("quorum") {
            return Err(err("unknown mode"));
        }
        let n = n.trim();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("N must be a whole number"));
        }
        match n.parse::<u32>() {
            Ok(0) => Err(err("N must be at least 1")),
            Ok(n) => Ok(Mode::Quorum(n)),
            Err(_) => Err(err("N is too large")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::All => f.write_str("all"),
            Mode::Any => f.write_str("any"),
            Mode::Quorum(n) => write!(f, "quorum:{n}"),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How many of a service's probes are in each class at one instant (`up` includes degraded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    /// Up or degraded.
    pub up: usize,
    /// Down.
    pub down: usize,
    /// Unknown.
    pub unknown: usize,
}

impl ProbeCounts {
    fn add(&mut self, c: ProbeClass) {
        match c {
            ProbeClass::Up | ProbeClass::Degraded => self.up += 1,
            ProbeClass::Down => self.down += 1,
            ProbeClass::Unknown => self.unknown += 1,
        }
    }

    fn remove(&mut self, c: ProbeClass) {
        // Only ever called for a class previously added, so this never saturates in practice.
        match c {
            ProbeClass::Up | ProbeClass::Degraded => self.up = self.up.saturating_sub(1),
            ProbeClass::Down => self.down = self.down.saturating_sub(1),
            ProbeClass::Unknown => self.unknown = self.unknown.saturating_sub(1),
        }
    }
}

/// A service's measured state at an instant, before maintenance and drills are laid over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Up (possibly a partial outage).
    Up,
    /// Down.
    Down,
    /// Not enough data to say.
    Unknown,
}

/// One instant's combined state: the service state, and whether it is a partial outage
/// (service up while at least one probe is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Combined {
    /// The combined state.
    pub state: ServiceState,
    /// Up, but at least one probe is down.
    pub partial_outage: bool,
}

impl Combined {
    fn of(mode: Mode, counts: ProbeCounts) -> Self {
        let state = mode.combine(counts);
        Combined {
            state,
            partial_outage: state == ServiceState::Up && counts.down > 0,
        }
    }
}

/// Combines per-probe timelines (each as from [`super::probe_timeline`]: sorted, disjoint,
/// covering `window` without gaps) into the service's combined timeline over `window`, with a
/// sweep line over all probe segment boundaries.
///
/// Time outside a probe's timeline counts as unknown for that probe, so slightly short input
/// cannot make a service look up. O(B log B) for B boundaries in total.
pub fn combine_timelines(
    mode: Mode,
    timelines: &[Vec<(Span, ProbeClass)>],
    window: Span,
) -> Vec<(Span, Combined)> {
    let mut out = Vec::new();
    if window.is_empty() {
        return out;
    }
    // Every probe starts unknown at the window's start; each segment start, and each segment end
    // not followed directly by another segment, is a change of that probe's class.
    let mut current = vec![ProbeClass::Unknown; timelines.len()];
    let mut counts = ProbeCounts {
        unknown: timelines.len(),
        ..ProbeCounts::default()
    };
    let mut events: Vec<(u64, u32, ProbeClass)> = Vec::new();
    for (p, tl) in timelines.iter().enumerate() {
        // More than 4 billion probes in one service cannot be built from a config; saturating
        // keeps this total without a panic.
        let p = u32::try_from(p).unwrap_or(u32::MAX);
        let mut prev_end: Option<u64> = None;
        for &(seg, class) in tl {
            let Some(seg) = seg.intersect(window) else {
                continue;
            };
            if let Some(end) = prev_end.filter(|&e| e < seg.from_ms) {
                events.push((end, p, ProbeClass::Unknown));
            }
            events.push((seg.from_ms, p, class));
            prev_end = Some(seg.to_ms);
        }
        if let Some(end) = prev_end.filter(|&e| e < window.to_ms) {
            events.push((end, p, ProbeClass::Unknown));
        }
    }
    // Ties between probes do not matter: all events at one instant are applied before the
    // state is read. Within one probe, times strictly increase (segments are disjoint).
    events.sort_unstable_by_key(|&(t, _, _)| t);

    let mut t = window.from_ms;
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        if at > t {
            push_merged(&mut out, Span::new(t, at), Combined::of(mode, counts));
            t = at;
        }
        while let Some(&(at2, p, class)) = events.get(i) {
            if at2 != at {
                break;
            }
            if let Some(cur) = current.get_mut(p as usize) {
                counts.remove(*cur);
                counts.add(class);
                *cur = class;
            }
            i += 1;
        }
    }
    push_merged(
        &mut out,
        Span::new(t, window.to_ms),
        Combined::of(mode, counts),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeClass::{Degraded, Down, Unknown, Up};

    fn s(from_ms: u64, to_ms: u64) -> Span {
        Span::new(from_ms, to_ms)
    }

    fn counts(up: usize, down: usize, unknown: usize) -> ProbeCounts {
        ProbeCounts { up, down, unknown }
    }

    const fn c(state: ServiceState, partial_outage: bool) -> Combined {
        Combined {
            state,
            partial_outage,
        }
    }

    const UP: Combined = c(ServiceState::Up, false);
    const PARTIAL: Combined = c(ServiceState::Up, true);
    const DOWN: Combined = c(ServiceState::Down, false);
    const UNKNOWN: Combined = c(ServiceState::Unknown, false);

    #[test]
    fn mode_parses_all_any_and_quorum() {
        let cases = [
            ("all", Mode::All),
            ("any", Mode::Any),
            (" ALL ", Mode::All),
            ("Any", Mode::Any),
            ("quorum:1", Mode::Quorum(1)),
            ("quorum:3", Mode::Quorum(3)),
            ("quorum: 2", Mode::Quorum(2)),
        ];
        for (text, mode) in cases {
            assert_eq!(text.parse::<Mode>().unwrap(), mode, "{text}");
        }
    }

    #[test]
    fn mode_rejects_bad_text_with_a_message_quoting_it() {
        let hint = "(use \"all\", \"any\" or \"quorum:N\" with N ≥ 1)";
        let cases = [
            ("", "invalid mode \"\": empty"),
            ("most", "invalid mode \"most\": unknown mode"),
            ("majority:2", "invalid mode \"majority:2\": unknown mode"),
            ("quorum", "invalid mode \"quorum\": unknown mode"),
            (
                "quorum:",
                "invalid mode \"quorum:\": N must be a whole number",
            ),
            (
                "quorum:-1",
                "invalid mode \"quorum:-1\": N must be a whole number",
            ),
            (
                "quorum:two",
                "invalid mode \"quorum:two\": N must be a whole number",
            ),
            (
                "quorum:0",
                "invalid mode \"quorum:0\": N must be at least 1",
            ),
            (
                "quorum:99999999999",
                "invalid mode \"quorum:99999999999\": N is too large",
            ),
        ];
        for (text, msg) in cases {
            let e = text.parse::<Mode>().unwrap_err().to_string();
            assert_eq!(e, format!("{msg} {hint}"), "{text}");
        }
    }

    #[test]
    fn mode_displays_and_serialises_as_written() {
        for text in ["all", "any", "quorum:2"] {
            let m: Mode = text.parse().unwrap();
            assert_eq!(m.to_string(), text);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Mode>(&format!("\"{text}\"")).unwrap(),
                m
            );
        }
        assert!(serde_json::from_str::<Mode>("\"quorum:0\"").is_err());
    }

    #[test]
    fn quorum_larger_than_the_probe_count_is_a_config_error() {
        assert_eq!(Mode::Quorum(2).check_probe_count(2), Ok(()));
        assert_eq!(Mode::Quorum(1).check_probe_count(3), Ok(()));
        assert_eq!(Mode::All.check_probe_count(1), Ok(()));
        assert_eq!(Mode::Any.check_probe_count(0), Ok(()));
        assert_eq!(
            Mode::Quorum(3)
                .check_probe_count(2)
                .unwrap_err()
                .to_string(),
            "mode \"quorum:3\" needs at least 3 probes, the service has 2"
        );
    }

    #[test]
    fn all_is_down_if_any_probe_is_down_else_unknown_if_any_unknown() {
        assert_eq!(Mode::All.combine(counts(2, 0, 0)), ServiceState::Up);
        assert_eq!(Mode::All.combine(counts(1, 1, 0)), ServiceState::Down);
        assert_eq!(Mode::All.combine(counts(0, 1, 1)), ServiceState::Down);
        assert_eq!(Mode::All.combine(counts(1, 0, 1)), ServiceState::Unknown);
        assert_eq!(Mode::All.combine(counts(0, 0, 2)), ServiceState::Unknown);
    }

    #[test]
    fn any_is_up_if_any_probe_is_up_else_unknown_if_any_unknown() {
        assert_eq!(Mode::Any.combine(counts(1, 2, 0)), ServiceState::Up);
        assert_eq!(Mode::Any.combine(counts(1, 0, 3)), ServiceState::Up);
        assert_eq!(Mode::Any.combine(counts(0, 2, 1)), ServiceState::Unknown);
        assert_eq!(Mode::Any.combine(counts(0, 2, 0)), ServiceState::Down);
    }

    #[test]
    fn quorum_needs_n_up_and_is_unknown_while_unknown_probes_could_make_it() {
        let q = Mode::Quorum(2);
        assert_eq!(q.combine(counts(2, 1, 0)), ServiceState::Up);
        assert_eq!(q.combine(counts(3, 0, 0)), ServiceState::Up);
        assert_eq!(q.combine(counts(1, 1, 1)), ServiceState::Unknown);
        assert_eq!(q.combine(counts(0, 1, 2)), ServiceState::Unknown);
        assert_eq!(q.combine(counts(1, 2, 0)), ServiceState::Down);
        assert_eq!(q.combine(counts(0, 3, 0)), ServiceState::Down);
    }

    #[test]
    fn a_service_without_probes_is_unknown_in_every_mode() {
        for m in [Mode::All, Mode::Any, Mode::Quorum(1)] {
            assert_eq!(m.combine(counts(0, 0, 0)), ServiceState::Unknown);
            assert_eq!(
                combine_timelines(m, &[], s(0, 10)),
                vec![(s(0, 10), UNKNOWN)]
            );
        }
    }

    #[test]
    fn degraded_counts_as_up() {
        let tls = vec![vec![(s(0, 10), Degraded)], vec![(s(0, 10), Up)]];
        assert_eq!(
            combine_timelines(Mode::All, &tls, s(0, 10)),
            vec![(s(0, 10), UP)]
        );
        let tls = vec![vec![(s(0, 10), Degraded)], vec![(s(0, 10), Down)]];
        assert_eq!(
            combine_timelines(Mode::Any, &tls, s(0, 10)),
            vec![(s(0, 10), PARTIAL)]
        );
    }

    #[test]
    fn all_mode_sweep_splits_at_every_probe_boundary() {
        let a = vec![(s(0, 30), Up), (s(30, 50), Down), (s(50, 100), Up)];
        let b = vec![
            (s(0, 10), Unknown),
            (s(10, 40), Up),
            (s(40, 60), Down),
            (s(60, 100), Up),
        ];
        assert_eq!(
            combine_timelines(Mode::All, &[a, b], s(0, 100)),
            vec![
                (s(0, 10), UNKNOWN),
                (s(10, 30), UP),
                (s(30, 60), DOWN),
                (s(60, 100), UP)
            ]
        );
    }

    #[test]
    fn partial_outage_in_any_mode_while_one_probe_is_down() {
        let primary = vec![(s(0, 20), Up), (s(20, 50), Down), (s(50, 100), Up)];
        let standby = vec![(s(0, 40), Up), (s(40, 60), Down), (s(60, 100), Unknown)];
        assert_eq!(
            combine_timelines(Mode::Any, &[primary, standby], s(0, 100)),
            vec![
                (s(0, 20), UP),
                (s(20, 40), PARTIAL),
                (s(40, 50), DOWN),
                (s(50, 60), PARTIAL),
                (s(60, 100), UP),
            ]
        );
    }

    #[test]
    fn quorum_of_three_over_time() {
        let a = vec![(s(0, 100), Up)];
        let b = vec![(s(0, 50), Up), (s(50, 100), Down)];
        let c3 = vec![
            (s(0, 25), Unknown),
            (s(25, 75), Down),
            (s(75, 100), Unknown),
        ];
        assert_eq!(
            combine_timelines(Mode::Quorum(2), &[a, b, c3], s(0, 100)),
            vec![
                (s(0, 25), UP),
                (s(25, 50), PARTIAL),
                (s(50, 75), DOWN),
                (s(75, 100), UNKNOWN),
            ]
        );
    }

    #[test]
    fn short_probe_timelines_count_as_unknown_outside_them() {
        let a = vec![(s(10, 20), Up), (s(30, 40), Up)];
        assert_eq!(
            combine_timelines(Mode::All, &[a], s(0, 50)),
            vec![
                (s(0, 10), UNKNOWN),
                (s(10, 20), UP),
                (s(20, 30), UNKNOWN),
                (s(30, 40), UP),
                (s(40, 50), UNKNOWN),
            ]
        );
    }

    #[test]
    fn combined_segments_cover_the_window_exactly() {
        let a = vec![(s(0, 7), Up), (s(7, 13), Down), (s(13, 1000), Up)];
        let b = vec![(s(0, 500), Degraded), (s(500, 1000), Down)];
        let out = combine_timelines(Mode::Quorum(1), &[a, b], s(0, 1000));
        assert_eq!(out.first().unwrap().0.from_ms, 0);
        assert_eq!(out.last().unwrap().0.to_ms, 1000);
        for w in out.windows(2) {
            assert_eq!(w[0].0.to_ms, w[1].0.from_ms);
            assert_ne!(w[0].1, w[1].1);
        }
    }

    #[test]
    fn empty_window_gives_no_segments() {
        let a = vec![(s(0, 10), Up)];
        assert!(combine_timelines(Mode::All, &[a], s(10, 10)).is_empty());
    }
}
