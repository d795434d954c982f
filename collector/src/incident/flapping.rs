//! Flap detection (Nagios-style): the percent of state changes over the last N evaluations, with
//! hysteresis — flapping starts at `high_pct` or more and stops at `low_pct` or less.
//!
//! The history is the service's evaluated state (breached or not) at its last N evaluation
//! instants, recomputed from stored data (so a restart loses nothing); instants without data
//! are left out, so the first evaluations of a new probe are judged on what exists.

/// Percent of consecutive pairs in `history` that differ; 0 with fewer than two samples.
pub fn percent_change(history: &[bool]) -> f64 {
    if history.len() < 2 {
        return 0.0;
    }
    let changes = history.windows(2).filter(|w| w[0] != w[1]).count();
    100.0 * changes as f64 / (history.len() - 1) as f64
}

/// A change of the flapping state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapChange {
    /// Flapping started.
    Started,
    /// Flapping stopped.
    Stopped,
}

/// Number of state changes in `history`.
pub fn changes(history: &[bool]) -> usize {
    history.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Fewest changes that can be flapping: one transition is an outage starting or ending.
pub const MIN_CHANGES: usize = 2;

/// Applies hysteresis: returns the new flapping state and whether it changed. Flapping starts
/// at `high_pct` or more with at least [`MIN_CHANGES`] changes, and stops at `low_pct` or less.
pub fn update(
    flapping: bool,
    history: &[bool],
    high_pct: f64,
    low_pct: f64,
) -> (bool, Option<FlapChange>) {
    let pct = percent_change(history);
    if !flapping && pct >= high_pct && changes(history) >= MIN_CHANGES {
        (true, Some(FlapChange::Started))
    } else if flapping && pct <= low_pct {
        (false, Some(FlapChange::Stopped))
    } else {
        (flapping, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_change_counts_transitions_between_neighbours() {
        assert_eq!(percent_change(&[]), 0.0);
        assert_eq!(percent_change(&[true]), 0.0);
        assert_eq!(percent_change(&[true, false]), 100.0);
        assert_eq!(percent_change(&[true, true, true, false, false]), 25.0);
        assert_eq!(percent_change(&[false; 20]), 0.0);
    }

    #[test]
    fn hysteresis_starts_high_and_stops_low() {
        let (d, u) = (true, false);
        // 2 changes in 3 pairs: 66.7 %.
        assert_eq!(
            update(false, &[u, d, u, u], 50.0, 25.0),
            (true, Some(FlapChange::Started))
        );
        // One transition is never flapping, whatever the percentage.
        assert_eq!(update(false, &[u, d], 50.0, 25.0), (false, None));
        assert_eq!(update(false, &[u, u, u, u, d], 50.0, 25.0), (false, None));
        // 1 change in 5 pairs (20 %) stops it; 2 changes in 5 pairs (40 %) keeps it.
        assert_eq!(
            update(true, &[d, u, u, u, u, u], 50.0, 25.0),
            (false, Some(FlapChange::Stopped))
        );
        assert_eq!(update(true, &[u, d, u, u, u, u], 50.0, 25.0), (true, None));
    }
}
