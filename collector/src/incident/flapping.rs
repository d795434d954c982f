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

/// Applies hysteresis: returns the new flapping state and whether it changed.
pub fn update(flapping: bool, pct: f64, high_pct: f64, low_pct: f64) -> (bool, Option<FlapChange>) {
    if !flapping && pct >= high_pct {
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
        assert_eq!(update(false, 49.9, 50.0, 25.0), (false, None));
        assert_eq!(
            update(false, 50.0, 50.0, 25.0),
            (true, Some(FlapChange::Started))
        );
        assert_eq!(update(true, 30.0, 50.0, 25.0), (true, None));
        assert_eq!(
            update(true, 25.0, 50.0, 25.0),
            (false, Some(FlapChange::Stopped))
        );
    }
}
