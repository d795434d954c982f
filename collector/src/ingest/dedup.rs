//! Per (agent, boot) sequence tracking: which seqs are stored, the contiguous watermark the
//! collector acknowledges, and how many seqs are still missing below the highest one seen.
//!
//! QoS 1 is at-least-once and the agent re-sends from the watermark, so duplicates are normal;
//! a seq already covered is dropped. Gap records mark whole dropped ranges as accounted for,
//! which lets the watermark move past data the agent could not keep.

use serde::{Deserialize, Serialize};

/// Received seqs of one boot: everything ≤ `watermark`, plus disjoint ranges above it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTracker {
    /// Every seq in `1..=watermark` is stored or accounted for.
    watermark: u64,
    /// Sorted, disjoint, non-adjacent inclusive ranges, all above `watermark + 1`.
    above: Vec<(u64, u64)>,
}

impl SeqTracker {
    /// Highest contiguous seq from 1.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Highest seq seen.
    pub fn highest(&self) -> u64 {
        self.above.last().map_or(self.watermark, |r| r.1)
    }

    /// Seqs between the watermark and the highest seen that have not arrived (an open gap).
    pub fn missing(&self) -> u64 {
        let held: u64 = self.above.iter().map(|(a, b)| b - a + 1).sum();
        self.highest() - self.watermark - held
    }

    /// True when `seq` is already stored or accounted for.
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.watermark || self.above.iter().any(|(a, b)| (*a..=*b).contains(&seq))
    }

    /// Records `seq`; false if it was already there (a duplicate).
    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_range(seq, seq) == 1
    }

    /// Records `from..=to`; returns how many of them are new.
    pub fn insert_range(&mut self, from: u64, to: u64) -> u64 {
        if from == 0 || from > to {
            return 0;
        }
        let from = from.max(self.watermark + 1);
        if from > to {
            return 0;
        }
        let already: u64 = self
            .above
            .iter()
            .map(|&(a, b)| {
                let (lo, hi) = (a.max(from), b.min(to));
                if lo <= hi {
                    hi - lo + 1
                } else {
                    0
                }
            })
            .sum();
        // Merge the new range with every range it touches or abuts.
        let (mut lo, mut hi) = (from, to);
        self.above.retain(|&(a, b)| {
            let touches = a <= hi.saturating_add(1) && b.saturating_add(1) >= lo;
            if touches {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            !touches
        });
        let at = self.above.partition_point(|&(a, _)| a < lo);
        self.above.insert(at, (lo, hi));
        // Advance the watermark over a range that now starts right after it.
        if let Some(&(a, b)) = self.above.first() {
            if a == self.watermark + 1 {
                self.watermark = b;
                self.above.remove(0);
            }
        }
        (to - from + 1) - already
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_seqs_move_the_watermark() {
        let mut t = SeqTracker::default();
        for s in 1..=5 {
            assert!(t.insert(s));
        }
        assert_eq!(t.watermark(), 5);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn duplicates_are_reported_and_change_nothing() {
        let mut t = SeqTracker::default();
        assert!(t.insert(1));
        assert!(t.insert(3));
        let before = t.clone();
        assert!(!t.insert(1));
        assert!(!t.insert(3));
        assert_eq!(t, before);
    }

    #[test]
    fn a_hole_holds_the_watermark_until_it_is_filled() {
        let mut t = SeqTracker::default();
        for s in [1, 2, 4, 5, 7] {
            t.insert(s);
        }
        assert_eq!(t.watermark(), 2);
        assert_eq!(t.highest(), 7);
        assert_eq!(t.missing(), 2);
        t.insert(3);
        assert_eq!(t.watermark(), 5);
        assert_eq!(t.missing(), 1);
        t.insert(6);
        assert_eq!(t.watermark(), 7);
        assert_eq!(t.missing(), 0);
        assert!(t.contains(6) && !t.contains(8));
    }

    #[test]
    fn a_gap_record_range_accounts_for_dropped_seqs() {
        let mut t = SeqTracker::default();
        t.insert(1);
        t.insert(10_001);
        assert_eq!(t.insert_range(2, 10_000), 9_999);
        assert_eq!(t.watermark(), 10_001);
        assert_eq!(t.insert_range(5, 20), 0);
    }

    #[test]
    fn reordered_input_gives_the_same_state_as_ordered() {
        let mut a = SeqTracker::default();
        let mut b = SeqTracker::default();
        let order = [5, 3, 9, 1, 2, 8, 4, 7, 6, 10];
        for s in order {
            a.insert(s);
        }
        for s in 1..=10 {
            b.insert(s);
        }
        assert_eq!(a, b);
        assert_eq!(a.watermark(), 10);
    }

    #[test]
    fn seq_zero_and_empty_ranges_are_ignored() {
        let mut t = SeqTracker::default();
        assert!(!t.insert(0));
        assert_eq!(t.insert_range(5, 4), 0);
        assert_eq!(t, SeqTracker::default());
    }
}
