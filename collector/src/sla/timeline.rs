//! Per-probe state timelines: turns a probe's observations and its lost-data spans into
//! segments of `up` / `degraded` / `down` / `unknown` covering a window.
//!
//! The holding rule (spec, "Service catalogue and SLA semantics"): a result at `t` holds its
//! state from `t` until the probe's next result, but at most `2 × interval_ms`; before the first
//! result, after the hold runs out, and inside a lost span (gap record, agent offline) the probe
//! is `unknown`. Lost spans override held state.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use watchstand_shared::wire::v1::ProbeState;

use super::span::{merge_spans, overlay, push_merged, Span};

/// One stored probe result, as the SLA arithmetic needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// When the check ran, epoch ms.
    pub at_ms: u64,
    /// What it found.
    pub state: ProbeState,
    /// How long it took, µs.
    pub latency_us: u64,
    /// The probe's interval when it ran; the result is held for at most twice this.
    pub interval_ms: u64,
}

impl From<&crate::store::StoredResult> for Observation {
    fn from(r: &crate::store::StoredResult) -> Self {
        Self {
            at_ms: r.observed_ms,
            state: r.state,
            latency_us: r.latency_us,
            interval_ms: r.interval_ms,
        }
    }
}

impl From<crate::store::StoredResult> for Observation {
    fn from(r: crate::store::StoredResult) -> Self {
        Self::from(&r)
    }
}

/// Everything known about one probe of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInput {
    /// Results, sorted by `at_ms` (unsorted input is sorted, at a cost). Results at the same
    /// instant: the later one in this list wins. Include the last result before the window, as
    /// it may still hold at the window's start.
    pub observations: Vec<Observation>,
    /// Spans known lost (gap records) or when the agent was offline: `unknown` whatever was held.
    /// Any order, may overlap.
    pub lost: Vec<Span>,
}

/// A probe's class at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeClass {
    /// Its last result said up and still holds.
    Up,
    /// Its last result said degraded (up, but slow) and still holds.
    Degraded,
    /// Its last result said down and still holds.
    Down,
    /// No result holds, or the data is lost.
    Unknown,
}

impl ProbeClass {
    /// Whether the probe counts as up for availability (`degraded` does).
    pub const fn is_up(self) -> bool {
        matches!(self, ProbeClass::Up | ProbeClass::Degraded)
    }
}

impl From<ProbeState> for ProbeClass {
    fn from(s: ProbeState) -> Self {
        match s {
            ProbeState::Up => ProbeClass::Up,
            ProbeState::Degraded => ProbeClass::Degraded,
            ProbeState::Down => ProbeClass::Down,
        }
    }
}

/// The observations sorted by time, borrowed when they already are (the normal case).
pub(crate) fn sorted_observations(obs: &[Observation]) -> Cow<'_, [Observation]> {
    if obs.is_sorted_by_key(|o| o.at_ms) {
        Cow::Borrowed(obs)
    } else {
        let mut v = obs.to_vec();
        // Stable, so that of two results at one instant the later in the input still wins.
        v.sort_by_key(|o| o.at_ms);
        Cow::Owned(v)
    }
}

/// The probe's class over `window`: maximal segments, sorted, covering `window` exactly with no
/// gaps (empty when the window is empty). Adjacent segments always differ in class.
///
/// O(n) for sorted observations (plus a binary search to the window's start).
pub fn probe_timeline(input: &ProbeInput, window: Span) -> Vec<(Span, ProbeClass)> {
    if window.is_empty() {
        return Vec::new();
    }
    let obs = sorted_observations(&input.observations);
    // Only the last result before the window can hold into it; skip everything older.
    let first = obs
        .partition_point(|o| o.at_ms < window.from_ms)
        .saturating_sub(1);

    let mut held: Vec<(Span, ProbeClass)> = Vec::new();
    let mut cursor = window.from_ms;
    for (i, o) in obs.iter().enumerate().skip(first) {
        if o.at_ms >= window.to_ms {
            break;
        }
        let hold_end = o.at_ms.saturating_add(o.interval_ms.saturating_mul(2));
        let end = match obs.get(i + 1) {
            Some(next) => next.at_ms.min(hold_end),
            None => hold_end,
        };
        let Some(seg) = Span::new(o.at_ms, end).intersect(window) else {
            continue;
        };
        push_merged(
            &mut held,
            Span::new(cursor, seg.from_ms),
            ProbeClass::Unknown,
        );
        push_merged(&mut held, seg, o.state.into());
        cursor = seg.to_ms;
    }
    push_merged(
        &mut held,
        Span::new(cursor, window.to_ms),
        ProbeClass::Unknown,
    );

    let lost = merge_spans(input.lost.iter().copied(), window);
    if lost.is_empty() {
        held
    } else {
        overlay(&held, &lost, ProbeClass::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeClass::{Degraded, Down, Unknown, Up};

    fn obs(at_ms: u64, state: ProbeState, interval_ms: u64) -> Observation {
        Observation {
            at_ms,
            state,
            latency_us: 1_000,
            interval_ms,
        }
    }

    fn s(from_ms: u64, to_ms: u64) -> Span {
        Span::new(from_ms, to_ms)
    }

    fn input(observations: Vec<Observation>) -> ProbeInput {
        ProbeInput {
            observations,
            lost: vec![],
        }
    }

    #[test]
    fn result_holds_its_state_until_the_next_result() {
        let p = input(vec![
            obs(0, ProbeState::Up, 10_000),
            obs(10_000, ProbeState::Down, 10_000),
            obs(15_000, ProbeState::Up, 10_000),
        ]);
        assert_eq!(
            probe_timeline(&p, s(0, 20_000)),
            vec![
                (s(0, 10_000), Up),
                (s(10_000, 15_000), Down),
                (s(15_000, 20_000), Up)
            ]
        );
    }

    #[test]
    fn result_older_than_two_intervals_counts_as_unknown() {
        let p = input(vec![
            obs(0, ProbeState::Up, 10_000),
            obs(50_000, ProbeState::Up, 10_000),
        ]);
        assert_eq!(
            probe_timeline(&p, s(0, 100_000)),
            vec![
                (s(0, 20_000), Up),
                (s(20_000, 50_000), Unknown),
                (s(50_000, 70_000), Up),
                (s(70_000, 100_000), Unknown),
            ]
        );
    }

    #[test]
    fn next_result_exactly_at_twice_the_interval_leaves_no_gap() {
        let p = input(vec![
            obs(0, ProbeState::Up, 10_000),
            obs(20_000, ProbeState::Up, 10_000),
        ]);
        assert_eq!(probe_timeline(&p, s(0, 40_000)), vec![(s(0, 40_000), Up)]);
    }

    #[test]
    fn time_before_the_first_result_is_unknown() {
        let p = input(vec![obs(30_000, ProbeState::Down, 60_000)]);
        assert_eq!(
            probe_timeline(&p, s(0, 60_000)),
            vec![(s(0, 30_000), Unknown), (s(30_000, 60_000), Down)]
        );
    }

    #[test]
    fn a_probe_without_results_is_unknown_throughout() {
        assert_eq!(
            probe_timeline(&ProbeInput::default(), s(5, 10)),
            vec![(s(5, 10), Unknown)]
        );
    }

    #[test]
    fn result_before_the_window_holds_into_it() {
        let p = input(vec![
            obs(1_000, ProbeState::Up, 10_000),
            obs(90_000, ProbeState::Degraded, 10_000),
            obs(95_000, ProbeState::Down, 10_000),
        ]);
        // The result at 95 s holds to 115 s; the window starts at 100 s.
        assert_eq!(
            probe_timeline(&p, s(100_000, 200_000)),
            vec![(s(100_000, 115_000), Down), (s(115_000, 200_000), Unknown)]
        );
    }

    #[test]
    fn results_at_or_after_the_window_end_are_ignored() {
        let p = input(vec![
            obs(0, ProbeState::Up, 10_000),
            obs(10_000, ProbeState::Down, 10_000),
        ]);
        assert_eq!(probe_timeline(&p, s(0, 10_000)), vec![(s(0, 10_000), Up)]);
    }

    #[test]
    fn lost_span_overrides_held_state() {
        let p = ProbeInput {
            observations: vec![obs(0, ProbeState::Up, 60_000)],
            lost: vec![s(30_000, 40_000), s(35_000, 50_000), s(200_000, 300_000)],
        };
        assert_eq!(
            probe_timeline(&p, s(0, 100_000)),
            vec![
                (s(0, 30_000), Up),
                (s(30_000, 50_000), Unknown),
                (s(50_000, 100_000), Up),
            ]
        );
    }

    #[test]
    fn lost_span_merges_with_unknown_around_it() {
        let p = ProbeInput {
            observations: vec![obs(0, ProbeState::Up, 5_000)],
            lost: vec![s(5_000, 20_000)],
        };
        assert_eq!(
            probe_timeline(&p, s(0, 30_000)),
            vec![(s(0, 5_000), Up), (s(5_000, 30_000), Unknown)]
        );
    }

    #[test]
    fn unsorted_results_give_the_same_timeline_as_sorted_ones() {
        let sorted = vec![
            obs(0, ProbeState::Up, 10_000),
            obs(10_000, ProbeState::Down, 10_000),
            obs(20_000, ProbeState::Degraded, 10_000),
        ];
        let mut shuffled = sorted.clone();
        shuffled.swap(0, 2);
        assert_eq!(
            probe_timeline(&input(shuffled), s(0, 30_000)),
            probe_timeline(&input(sorted), s(0, 30_000))
        );
    }

    #[test]
    fn of_two_results_at_one_instant_the_later_one_wins() {
        let p = input(vec![
            obs(0, ProbeState::Up, 10_000),
            obs(0, ProbeState::Down, 10_000),
        ]);
        assert_eq!(probe_timeline(&p, s(0, 20_000)), vec![(s(0, 20_000), Down)]);
        // Also when the input has to be sorted first.
        let p = input(vec![
            obs(5_000, ProbeState::Up, 10_000),
            obs(0, ProbeState::Up, 10_000),
            obs(0, ProbeState::Down, 10_000),
        ]);
        assert_eq!(
            probe_timeline(&p, s(0, 25_000)),
            vec![(s(0, 5_000), Down), (s(5_000, 25_000), Up)]
        );
    }

    #[test]
    fn degraded_is_kept_apart_from_up_in_the_probe_timeline() {
        let p = input(vec![
            obs(0, ProbeState::Up, 1_000),
            obs(1_000, ProbeState::Degraded, 1_000),
        ]);
        assert_eq!(
            probe_timeline(&p, s(0, 3_000)),
            vec![(s(0, 1_000), Up), (s(1_000, 3_000), Degraded)]
        );
        assert!(Degraded.is_up() && Up.is_up() && !Down.is_up() && !Unknown.is_up());
    }

    #[test]
    fn zero_interval_holds_nothing() {
        let p = input(vec![obs(10, ProbeState::Up, 0)]);
        assert_eq!(probe_timeline(&p, s(0, 100)), vec![(s(0, 100), Unknown)]);
    }

    #[test]
    fn empty_or_inverted_window_gives_no_segments() {
        let p = input(vec![obs(0, ProbeState::Up, 1_000)]);
        assert!(probe_timeline(&p, s(10, 10)).is_empty());
        assert!(probe_timeline(&p, s(10, 5)).is_empty());
    }

    #[test]
    fn times_near_the_end_of_u64_do_not_overflow() {
        let p = input(vec![obs(u64::MAX - 5, ProbeState::Up, u64::MAX)]);
        assert_eq!(
            probe_timeline(&p, s(u64::MAX - 10, u64::MAX)),
            vec![
                (s(u64::MAX - 10, u64::MAX - 5), Unknown),
                (s(u64::MAX - 5, u64::MAX), Up)
            ]
        );
    }
}
