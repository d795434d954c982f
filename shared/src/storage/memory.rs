//! The in-memory model of [`Storage`]: a `BTreeMap` per tree. It is the reference the sled
//! engine is checked against, and a fast store for unit tests. `flush` is a no-op because
//! nothing survives the process anyway.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Entry, Result, Storage, Tree, Write};

/// In-memory storage. Clones share the same trees, so a "reopen" is a clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    trees: Arc<Mutex<HashMap<String, Arc<MemoryTree>>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        let tree = trees.entry(name.to_owned()).or_default().clone();
        Ok(tree)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }
}

/// One in-memory tree.
#[derive(Debug, Default)]
pub struct MemoryTree {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryTree {
    fn map(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding this lock cannot leave the map half-written (every mutation is
        // one BTreeMap call), so a poisoned lock is safe to keep using.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

impl Tree for MemoryTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.map().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.map().remove(key);
        Ok(())
    }

    fn apply(&self, batch: Vec<Write>) -> Result<()> {
        let mut map = self.map();
        for w in batch {
            match w {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        Ok(self
            .map()
            .range::<[u8], _>(bounds(start, end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn range_rev(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        Ok(self
            .map()
            .range::<[u8], _>(bounds(start, end))
            .rev()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<usize> {
        if end.is_some_and(|e| e <= start) {
            return Ok(0);
        }
        let mut map = self.map();
        let keys: Vec<Vec<u8>> = map
            .range::<[u8], _>(bounds(start, end))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            map.remove(k);
        }
        Ok(keys.len())
    }

    fn len(&self) -> Result<usize> {
        Ok(self.map().len())
    }
}
