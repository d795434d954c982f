//! One conformance suite run against every engine: the sled engine and the in-memory model must
//! behave the same, including across a reopen, and a proptest drives both with random actions.

use super::key::{prefix_end, read_u64, KeyBuf};
use super::*;
use proptest::prelude::*;

/// An engine under test: a way to open it and to reopen it on the same data.
trait Engine {
    fn open(&mut self) -> Box<dyn Storage>;
}

struct Sled(tempfile::TempDir);
impl Engine for Sled {
    fn open(&mut self) -> Box<dyn Storage> {
        Box::new(SledStorage::open(self.0.path()).unwrap())
    }
}

struct Memory(MemoryStorage);
impl Engine for Memory {
    fn open(&mut self) -> Box<dyn Storage> {
        Box::new(self.0.clone())
    }
}

fn engines() -> Vec<(&'static str, Box<dyn Engine>)> {
    vec![
        ("sled", Box::new(Sled(tempfile::tempdir().unwrap()))),
        ("memory", Box::new(Memory(MemoryStorage::new()))),
    ]
}

fn k(n: u64) -> Vec<u8> {
    KeyBuf::new().str("p").u64(n).build()
}

#[test]
fn put_get_delete_behave_alike_on_every_engine() {
    for (name, mut engine) in engines() {
        let s = engine.open();
        let t = s.tree("t").unwrap();
        assert_eq!(t.get(b"a").unwrap(), None, "{name}");
        t.put(b"a", b"1").unwrap();
        t.put(b"a", b"2").unwrap();
        assert_eq!(t.get(b"a").unwrap(), Some(b"2".to_vec()), "{name}");
        t.delete(b"a").unwrap();
        t.delete(b"never").unwrap();
        assert_eq!(t.get(b"a").unwrap(), None, "{name}");
        assert!(t.is_empty().unwrap(), "{name}");
    }
}

#[test]
fn ranges_are_half_open_ordered_and_limited_on_every_engine() {
    for (name, mut engine) in engines() {
        let s = engine.open();
        let t = s.tree("r").unwrap();
        for n in [5u64, 1, 300, 2, 256] {
            t.put(&k(n), &n.to_be_bytes()).unwrap();
        }
        let keys = |v: Vec<Entry>| -> Vec<u64> {
            v.iter().map(|(key, _)| read_u64(key, 2).unwrap()).collect()
        };
        assert_eq!(
            keys(t.range(&k(0), None, usize::MAX).unwrap()),
            [1, 2, 5, 256, 300],
            "{name}"
        );
        assert_eq!(
            keys(t.range(&k(2), Some(&k(256)), usize::MAX).unwrap()),
            [2, 5],
            "{name}"
        );
        assert_eq!(keys(t.range(&k(0), None, 2).unwrap()), [1, 2], "{name}");
        assert_eq!(
            keys(t.range_rev(&k(0), Some(&k(300)), 2).unwrap()),
            [256, 5],
            "{name}"
        );
        assert!(
            t.range(&k(9), Some(&k(3)), 10).unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(t.delete_range(&k(2), Some(&k(300))).unwrap(), 3, "{name}");
        assert_eq!(
            keys(t.range(&k(0), None, usize::MAX).unwrap()),
            [1, 300],
            "{name}"
        );
        assert_eq!(t.len().unwrap(), 2, "{name}");
        assert_eq!(t.scan_prefix(b"p").unwrap().len(), 2, "{name}");
        assert_eq!(t.scan_prefix(b"q").unwrap().len(), 0, "{name}");
    }
}

#[test]
fn batches_apply_in_order_and_trees_are_separate_on_every_engine() {
    for (name, mut engine) in engines() {
        let s = engine.open();
        let a = s.tree("a").unwrap();
        let b = s.tree("b").unwrap();
        a.apply(vec![
            Write::Put(b"x".to_vec(), b"1".to_vec()),
            Write::Put(b"y".to_vec(), b"2".to_vec()),
            Write::Delete(b"x".to_vec()),
        ])
        .unwrap();
        assert_eq!(a.get(b"x").unwrap(), None, "{name}");
        assert_eq!(a.get(b"y").unwrap(), Some(b"2".to_vec()), "{name}");
        assert_eq!(b.get(b"y").unwrap(), None, "{name}");
    }
}

#[test]
fn batches_applied_in_pieces_keep_their_order_across_pieces_on_every_engine() {
    for (name, mut engine) in engines() {
        let s = engine.open();
        let t = s.tree("p").unwrap();
        // 7 writes in pieces of 3: the later put and the delete land in other pieces than
        // the writes they override.
        let mut writes: Vec<Write> = (0..5).map(|n| Write::Put(k(n), b"old".to_vec())).collect();
        writes.push(Write::Put(k(1), b"new".to_vec()));
        writes.push(Write::Delete(k(2)));
        t.apply_in_pieces(writes, 3).unwrap();
        assert_eq!(t.get(&k(1)).unwrap(), Some(b"new".to_vec()), "{name}");
        assert_eq!(t.get(&k(2)).unwrap(), None, "{name}");
        assert_eq!(t.len().unwrap(), 4, "{name}");
        t.apply_in_pieces(Vec::new(), 3).unwrap();
        assert_eq!(t.len().unwrap(), 4, "{name}");
    }
}

#[test]
fn a_range_larger_than_an_engine_piece_is_deleted_whole_and_only_it_on_every_engine() {
    for (name, mut engine) in engines() {
        let s = engine.open();
        let t = s.tree("d").unwrap();
        // 2,500 keys in the range (sled removes 1,000 per batch), some of which are prefixes
        // of others, with neighbours on both sides that must stay.
        let mut writes = vec![
            Write::Put(b"a".to_vec(), b"keep".to_vec()),
            Write::Put(b"c".to_vec(), b"keep".to_vec()),
        ];
        for n in 0..1_250u32 {
            let key = [b"b".as_slice(), &n.to_be_bytes()].concat();
            writes.push(Write::Put(key.clone(), b"v".to_vec()));
            writes.push(Write::Put([key.as_slice(), &[0]].concat(), b"v".to_vec()));
        }
        t.apply(writes).unwrap();
        assert_eq!(t.delete_range(b"b", Some(b"c")).unwrap(), 2_500, "{name}");
        assert_eq!(t.len().unwrap(), 2, "{name}");
        assert_eq!(t.get(b"a").unwrap(), Some(b"keep".to_vec()), "{name}");
        assert_eq!(t.get(b"c").unwrap(), Some(b"keep".to_vec()), "{name}");
        assert_eq!(t.delete_range(b"b", None).unwrap(), 1, "{name}");
    }
}

#[test]
fn flushed_writes_survive_a_reopen_on_every_engine() {
    for (name, mut engine) in engines() {
        {
            let s = engine.open();
            let t = s.tree("d").unwrap();
            for n in 0..1_000 {
                t.put(&k(n), b"v").unwrap();
            }
            s.flush().unwrap();
        }
        let s = engine.open();
        assert_eq!(s.tree("d").unwrap().len().unwrap(), 1_000, "{name}");
    }
}

#[test]
fn prefix_end_is_the_next_prefix() {
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
    assert_eq!(prefix_end(&[255, 255]), None);
}

#[derive(Debug, Clone)]
enum Action {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    Batch(Vec<(u8, Option<u8>)>),
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Action::Put(k, v)),
        1 => any::<u8>().prop_map(Action::Delete),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Action::DeleteRange(a, b)),
        1 => proptest::collection::vec((any::<u8>(), proptest::option::of(any::<u8>())), 0..8)
            .prop_map(Action::Batch),
        1 => Just(Action::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random action sequences leave sled and the model holding the same entries.
    #[test]
    fn sled_agrees_with_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        let mut sled_engine = Sled(tempfile::tempdir().unwrap());
        let model = MemoryStorage::new();
        let mut sled = sled_engine.open();
        for a in actions {
            if let Action::Reopen = a {
                sled.flush().unwrap();
                drop(sled);
                sled = sled_engine.open();
                continue;
            }
            for store in [&*sled, &model as &dyn Storage] {
                let t = store.tree("m").unwrap();
                match &a {
                    Action::Put(key, v) => t.put(&[*key], &[*v]).unwrap(),
                    Action::Delete(key) => t.delete(&[*key]).unwrap(),
                    Action::DeleteRange(x, y) => {
                        t.delete_range(&[*x], Some(&[*y])).unwrap();
                    }
                    Action::Batch(ws) => t
                        .apply(
                            ws.iter()
                                .map(|(key, v)| match v {
                                    Some(v) => Write::Put(vec![*key], vec![*v]),
                                    None => Write::Delete(vec![*key]),
                                })
                                .collect(),
                        )
                        .unwrap(),
                    Action::Reopen => {}
                }
            }
            let got = sled.tree("m").unwrap().range(&[], None, usize::MAX).unwrap();
            let want = model.tree("m").unwrap().range(&[], None, usize::MAX).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
