//! Half-open time spans `[from_ms, to_ms)` and the two list operations every other SLA file is
//! built on: merging a set of spans, and laying one labelled timeline over another.
//!
//! All SLA arithmetic is done on integer milliseconds so that sums are exact; only the final
//! report converts to seconds.

use serde::{Deserialize, Serialize};

/// A half-open span of epoch milliseconds, `[from_ms, to_ms)`.
///
/// A span with `from_ms >= to_ms` is empty; nothing here panics on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First instant inside the span.
    pub from_ms: u64,
    /// First instant after the span.
    pub to_ms: u64,
}

impl Span {
    /// The span `[from_ms, to_ms)`.
    pub const fn new(from_ms: u64, to_ms: u64) -> Self {
        Self { from_ms, to_ms }
    }

    /// Length in milliseconds (0 when empty or inverted).
    pub const fn len_ms(&self) -> u64 {
        self.to_ms.saturating_sub(self.from_ms)
    }

    /// Whether the span holds no instant.
    pub const fn is_empty(&self) -> bool {
        self.from_ms >= self.to_ms
    }

    /// Whether `t_ms` lies inside the span.
    pub const fn contains(&self, t_ms: u64) -> bool {
        self.from_ms <= t_ms && t_ms < self.to_ms
    }

    /// The overlap of two spans, or `None` when they do not overlap.
    pub fn intersect(&self, other: Span) -> Option<Span> {
        let s = Span::new(self.from_ms.max(other.from_ms), self.to_ms.min(other.to_ms));
        (!s.is_empty()).then_some(s)
    }
}

/// Sorts `spans`, drops empty ones, merges overlapping and touching ones, and clips the result to
/// `within`. The result is sorted and disjoint, with a gap between any two spans.
pub fn merge_spans(spans: impl IntoIterator<Item = Span>, within: Span) -> Vec<Span> {
    let mut v: Vec<Span> = spans
        .into_iter()
        .filter_map(|s| s.intersect(within))
        .collect();
    v.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(v.len());
    for s in v {
        match out.last_mut() {
            Some(last) if s.from_ms <= last.to_ms => last.to_ms = last.to_ms.max(s.to_ms),
            _ => out.push(s),
        }
    }
    out
}

/// Appends `(span, value)` to a timeline, dropping empty spans and extending the last segment
/// when it ends where `span` starts and carries the same value, so timelines stay maximal.
pub(crate) fn push_merged<T: PartialEq>(out: &mut Vec<(Span, T)>, span: Span, value: T) {
    if span.is_empty() {
        return;
    }
    if let Some((last, v)) = out.last_mut() {
        if last.to_ms == span.from_ms && *v == value {
            last.to_ms = span.to_ms;
            return;
        }
    }
    out.push((span, value));
}

/// Lays the sorted, disjoint spans `over` onto the timeline `base`: inside an `over` span the
/// value is `value`, elsewhere the base value stays. `base` must be sorted and disjoint (it
/// normally covers a window without gaps); the result covers exactly what `base` covers.
///
/// Linear in `base.len() + over.len()`.
pub(crate) fn overlay<T: Copy + PartialEq>(
    base: &[(Span, T)],
    over: &[Span],
    value: T,
) -> Vec<(Span, T)> {
    let mut out = Vec::with_capacity(base.len() + 2 * over.len());
    let mut j = 0;
    for &(seg, v) in base {
        let mut t = seg.from_ms;
        while t < seg.to_ms {
            // Spans that end at or before the cursor can never matter again: the base is sorted.
            while over.get(j).is_some_and(|o| o.to_ms <= t) {
                j += 1;
            }
            let end = match over.get(j) {
                Some(o) if o.from_ms <= t => {
                    let end = o.to_ms.min(seg.to_ms);
                    push_merged(&mut out, Span::new(t, end), value);
                    end
                }
                Some(o) => {
                    let end = o.from_ms.min(seg.to_ms);
                    push_merged(&mut out, Span::new(t, end), v);
                    end
                }
                None => {
                    push_merged(&mut out, Span::new(t, seg.to_ms), v);
                    seg.to_ms
                }
            };
            t = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(from_ms: u64, to_ms: u64) -> Span {
        Span::new(from_ms, to_ms)
    }

    #[test]
    fn empty_and_inverted_spans_have_no_length() {
        assert_eq!(s(5, 5).len_ms(), 0);
        assert_eq!(s(9, 5).len_ms(), 0);
        assert!(s(9, 5).is_empty());
        assert!(!s(9, 5).contains(7));
        assert!(s(5, 9).contains(5));
        assert!(!s(5, 9).contains(9));
    }

    #[test]
    fn intersection_of_touching_spans_is_none() {
        assert_eq!(s(0, 10).intersect(s(10, 20)), None);
        assert_eq!(s(0, 10).intersect(s(5, 20)), Some(s(5, 10)));
        assert_eq!(s(0, 10).intersect(s(2, 3)), Some(s(2, 3)));
    }

    #[test]
    fn merge_sorts_merges_touching_and_overlapping_and_clips() {
        let merged = merge_spans(
            [
                s(50, 60),
                s(0, 10),
                s(10, 20),
                s(15, 18),
                s(30, 30),
                s(40, 45),
                s(44, 200),
            ],
            s(5, 100),
        );
        assert_eq!(merged, vec![s(5, 20), s(40, 100)]);
    }

    #[test]
    fn merge_of_nothing_is_nothing() {
        assert!(merge_spans([], s(0, 100)).is_empty());
        assert!(merge_spans([s(0, 10)], s(20, 10)).is_empty());
    }

    #[test]
    fn push_merged_joins_equal_adjacent_values_only() {
        let mut v = Vec::new();
        push_merged(&mut v, s(0, 10), 'a');
        push_merged(&mut v, s(10, 20), 'a');
        push_merged(&mut v, s(20, 20), 'b');
        push_merged(&mut v, s(20, 30), 'b');
        push_merged(&mut v, s(35, 40), 'b');
        assert_eq!(v, vec![(s(0, 20), 'a'), (s(20, 30), 'b'), (s(35, 40), 'b')]);
    }

    #[test]
    fn overlay_replaces_values_inside_the_over_spans_only() {
        let base = vec![(s(0, 10), 'a'), (s(10, 20), 'b'), (s(20, 30), 'c')];
        let out = overlay(&base, &[s(5, 12), s(18, 22), s(25, 40)], 'x');
        assert_eq!(
            out,
            vec![
                (s(0, 5), 'a'),
                (s(5, 12), 'x'),
                (s(12, 18), 'b'),
                (s(18, 22), 'x'),
                (s(22, 25), 'c'),
                (s(25, 30), 'x'),
            ]
        );
    }

    #[test]
    fn overlay_with_nothing_keeps_the_base() {
        let base = vec![(s(0, 10), 'a'), (s(10, 20), 'b')];
        assert_eq!(overlay(&base, &[], 'x'), base);
        assert_eq!(overlay(&base, &[s(100, 200)], 'x'), base);
    }
}
