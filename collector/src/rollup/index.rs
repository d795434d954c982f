//! The state index: per probe, the instants at which its availability class (up — degraded
//! counts as up —, down, unknown) changes, kept by the rollup pass from recounted minutes. A
//! month of a steady probe is a handful of keys, so the SLA of a long window reads the index
//! instead of the month's results, and stays exact to the millisecond: the index is the
//! probe's timeline, not an approximation of it.
//!
//! Key: `agent \0 probe \0 t_ms` → one byte, the class from `t_ms` on. Before a probe's first
//! key its class is unknown. Keys that repeat the class before them are harmless (the reader
//! merges) but the writer avoids them.

use watchstand_shared::storage::{Tree, Write};
use watchstand_shared::time::MINUTE_MS;

use super::block::bucket_key;
use crate::sla::{ProbeClass, Span};
use crate::store::{probe_prefix, trees, Result, StoreError};

/// The class the index keeps for `class` (degraded is up for availability).
pub fn indexed(class: ProbeClass) -> ProbeClass {
    match class {
        ProbeClass::Degraded => ProbeClass::Up,
        c => c,
    }
}

fn encode(class: ProbeClass) -> Vec<u8> {
    vec![match indexed(class) {
        ProbeClass::Up | ProbeClass::Degraded => 0,
        ProbeClass::Down => 1,
        ProbeClass::Unknown => 2,
    }]
}

fn decode(bytes: &[u8]) -> Result<ProbeClass> {
    match bytes {
        [0] => Ok(ProbeClass::Up),
        [1] => Ok(ProbeClass::Down),
        [2] => Ok(ProbeClass::Unknown),
        other => Err(StoreError::CorruptRecord {
            tree: trees::STATE_INDEX,
            detail: format!("state index value {other:?}"),
        }),
    }
}

/// The class in force just before `t_ms` (set by the last key < `t_ms`).
fn class_before(tree: &dyn Tree, agent: &str, probe: &str, t_ms: u64) -> Result<ProbeClass> {
    let prefix = probe_prefix(agent, probe);
    match tree
        .range_rev(&prefix, Some(&bucket_key(agent, probe, t_ms)), 1)?
        .first()
    {
        Some((_, v)) => decode(v),
        None => Ok(ProbeClass::Unknown),
    }
}

/// The writes that make the index hold `timeline` (a recounted minute, covering it exactly)
/// for `[minute, minute + 1 min)` while every instant after the minute keeps its class.
/// Applied at once, before the next minute of the same probe is rewritten.
///
/// # Errors
/// Store failure.
pub fn rewrite_minute(
    tree: &dyn Tree,
    agent: &str,
    probe: &str,
    minute_ms: u64,
    timeline: &[(Span, ProbeClass)],
) -> Result<Vec<Write>> {
    let end = minute_ms + MINUTE_MS;
    let before = class_before(tree, agent, probe, minute_ms)?;
    let old_end = class_before(tree, agent, probe, end)?;
    let end_key = bucket_key(agent, probe, end);
    let at_end = tree.get(&end_key)?.map(|v| decode(&v)).transpose()?;
    let mut writes: Vec<Write> = tree
        .range(
            &bucket_key(agent, probe, minute_ms),
            Some(&end_key),
            usize::MAX,
        )?
        .into_iter()
        .map(|(k, _)| Write::Delete(k))
        .collect();
    let mut current = before;
    for (span, class) in timeline {
        let class = indexed(*class);
        if class != current && !span.is_empty() {
            writes.push(Write::Put(
                bucket_key(agent, probe, span.from_ms),
                encode(class),
            ));
            current = class;
        }
    }
    match at_end {
        Some(next) if next == current => writes.push(Write::Delete(end_key)),
        Some(_) => {}
        None if current != old_end => writes.push(Write::Put(end_key, encode(old_end))),
        None => {}
    }
    Ok(writes)
}

/// The writes that append `timelines` (consecutive recounted minutes, in time order) to a
/// probe's index, when nothing at or after the first of them is indexed yet: the history
/// loader's fast path, equal to rewriting each minute in turn.
///
/// # Errors
/// Store failure, or the probe already has index keys at or after the first minute.
pub fn append_writes(
    tree: &dyn Tree,
    agent: &str,
    probe: &str,
    timelines: &[&[(Span, ProbeClass)]],
) -> Result<Vec<Write>> {
    let Some(first) = timelines.first().and_then(|t| t.first()) else {
        return Ok(Vec::new());
    };
    let start = bucket_key(agent, probe, first.0.from_ms);
    let after = watchstand_shared::storage::key::prefix_end(&probe_prefix(agent, probe));
    let mut writes = Vec::new();
    match &tree.range(&start, after.as_deref(), 2)?[..] {
        [] => {}
        // The "unknown from here" a previous append left at its end: replaced.
        [(k, v)] if *k == start && decode(v)? == ProbeClass::Unknown => {
            writes.push(Write::Delete(start.clone()));
        }
        _ => {
            return Err(StoreError::CorruptRecord {
                tree: trees::STATE_INDEX,
                detail: format!("{agent}/{probe}: history appended before indexed data"),
            })
        }
    }
    let mut current = class_before(tree, agent, probe, first.0.from_ms)?;
    let mut end = first.0.from_ms;
    for (span, class) in timelines.iter().flat_map(|t| t.iter()) {
        if span.from_ms > end && current != ProbeClass::Unknown {
            // Minutes with no rollup between: nothing was known then.
            writes.push(Write::Put(
                bucket_key(agent, probe, end),
                encode(ProbeClass::Unknown),
            ));
            current = ProbeClass::Unknown;
        }
        let class = indexed(*class);
        if class != current && !span.is_empty() {
            writes.push(Write::Put(
                bucket_key(agent, probe, span.from_ms),
                encode(class),
            ));
            current = class;
        }
        end = end.max(span.to_ms);
    }
    // After the last minute, nothing is known yet.
    if current != ProbeClass::Unknown {
        writes.push(Write::Put(
            bucket_key(agent, probe, end),
            encode(ProbeClass::Unknown),
        ));
    }
    Ok(writes)
}

/// The probe's timeline over `span` from the index (merged, covering `span` exactly).
///
/// # Errors
/// Store failure or a corrupt record.
pub fn timeline(
    tree: &dyn Tree,
    agent: &str,
    probe: &str,
    span: Span,
) -> Result<Vec<(Span, ProbeClass)>> {
    let mut out: Vec<(Span, ProbeClass)> = Vec::new();
    if span.is_empty() {
        return Ok(out);
    }
    let mut current = class_before(tree, agent, probe, span.from_ms + 1)?;
    let mut from = span.from_ms;
    let changes = tree.range(
        &bucket_key(agent, probe, span.from_ms + 1),
        Some(&bucket_key(agent, probe, span.to_ms)),
        usize::MAX,
    )?;
    for (k, v) in changes {
        let Some((_, _, t)) = super::block::parse_bucket_key(&k) else {
            continue;
        };
        let class = decode(&v)?;
        if class != current {
            push(&mut out, Span::new(from, t), current);
            from = t;
            current = class;
        }
    }
    push(&mut out, Span::new(from, span.to_ms), current);
    Ok(out)
}

fn push(out: &mut Vec<(Span, ProbeClass)>, span: Span, class: ProbeClass) {
    if span.is_empty() {
        return;
    }
    match out.last_mut() {
        Some((last, c)) if *c == class && last.to_ms == span.from_ms => last.to_ms = span.to_ms,
        _ => out.push((span, class)),
    }
}

/// Deletes each probe's index keys before `cutoff_ms` except the last one (it still says the
/// class at the cutoff); returns how many.
///
/// # Errors
/// Store failure.
pub fn prune(tree: &dyn Tree, cutoff_ms: u64) -> Result<usize> {
    let mut removed = 0;
    let mut cursor: Vec<u8> = Vec::new();
    loop {
        let Some((k, _)) = tree.range(&cursor, None, 1)?.into_iter().next() else {
            break;
        };
        let Some((agent, probe, _)) = super::block::parse_bucket_key(&k) else {
            break;
        };
        let prefix = probe_prefix(&agent, &probe);
        let cutoff = bucket_key(&agent, &probe, cutoff_ms);
        if let Some((last, _)) = tree.range_rev(&prefix, Some(&cutoff), 1)?.first() {
            removed += tree.delete_range(&prefix, Some(last))?;
        }
        match watchstand_shared::storage::key::prefix_end(&prefix) {
            Some(next) => cursor = next,
            None => break,
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn apply_minute(store: &Store, minute: u64, timeline: &[(Span, ProbeClass)]) {
        let tree = store.tree(trees::STATE_INDEX).expect("tree");
        let w = rewrite_minute(&*tree, "a", "p", minute, timeline).expect("rewrite");
        tree.apply(w).expect("apply");
    }

    fn steady(minute: u64, class: ProbeClass) -> Vec<(Span, ProbeClass)> {
        vec![(Span::new(minute, minute + MINUTE_MS), class)]
    }

    fn read(store: &Store, from: u64, to: u64) -> Vec<(Span, ProbeClass)> {
        let tree = store.tree(trees::STATE_INDEX).expect("tree");
        timeline(&*tree, "a", "p", Span::new(from, to)).expect("timeline")
    }

    const M: u64 = MINUTE_MS;
    use ProbeClass::{Down, Unknown, Up};

    #[test]
    fn steady_minutes_make_one_key_and_a_change_two() {
        let store = Store::in_memory();
        for m in 0..10 {
            apply_minute(&store, m * M, &steady(m * M, Up));
        }
        // Up from minute 0, unknown after the last minute rolled up.
        assert_eq!(
            store
                .tree(trees::STATE_INDEX)
                .expect("t")
                .len()
                .expect("len"),
            2
        );
        assert_eq!(read(&store, 0, 10 * M), vec![(Span::new(0, 10 * M), Up)]);
        assert_eq!(
            read(&store, 10 * M, 11 * M),
            vec![(Span::new(10 * M, 11 * M), Unknown)]
        );
        // Before the first key: unknown.
        assert_eq!(read(&store, 0, 0), vec![]);
        let mixed = vec![
            (Span::new(10 * M, 10 * M + 5_000), Up),
            (Span::new(10 * M + 5_000, 11 * M), Down),
        ];
        apply_minute(&store, 10 * M, &mixed);
        assert_eq!(
            read(&store, 5 * M, 11 * M),
            vec![
                (Span::new(5 * M, 10 * M + 5_000), Up),
                (Span::new(10 * M + 5_000, 11 * M), Down)
            ]
        );
    }

    #[test]
    fn rewriting_a_minute_in_the_middle_keeps_what_follows() {
        let store = Store::in_memory();
        for m in 0..5 {
            apply_minute(&store, m * M, &steady(m * M, Up));
        }
        // A late result: minute 2 was down. Minutes 3 and 4 stay up.
        apply_minute(&store, 2 * M, &steady(2 * M, Down));
        assert_eq!(
            read(&store, 0, 5 * M),
            vec![
                (Span::new(0, 2 * M), Up),
                (Span::new(2 * M, 3 * M), Down),
                (Span::new(3 * M, 5 * M), Up)
            ]
        );
        // And back: the redundant keys go.
        apply_minute(&store, 2 * M, &steady(2 * M, Up));
        assert_eq!(read(&store, 0, 5 * M), vec![(Span::new(0, 5 * M), Up)]);
        assert_eq!(
            store
                .tree(trees::STATE_INDEX)
                .expect("t")
                .len()
                .expect("len"),
            2
        );
        // Rewriting the same minute twice changes nothing (a pass repeated after a crash).
        apply_minute(&store, 4 * M, &steady(4 * M, Unknown));
        apply_minute(&store, 4 * M, &steady(4 * M, Unknown));
        assert_eq!(
            read(&store, 0, 6 * M),
            vec![
                (Span::new(0, 4 * M), Up),
                (Span::new(4 * M, 6 * M), Unknown)
            ]
        );
    }

    #[test]
    fn pruning_keeps_the_class_at_the_cutoff() {
        let store = Store::in_memory();
        apply_minute(&store, 0, &steady(0, Down));
        apply_minute(&store, M, &steady(M, Up));
        apply_minute(&store, 2 * M, &steady(2 * M, Down));
        let tree = store.tree(trees::STATE_INDEX).expect("tree");
        assert_eq!(prune(&*tree, 2 * M + 30_000).expect("prune"), 2);
        assert_eq!(
            read(&store, 2 * M, 3 * M),
            vec![(Span::new(2 * M, 3 * M), Down)]
        );
    }
}
