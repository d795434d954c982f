//! The sled 0.34 engine behind [`Storage`]. sled calls itself beta; the crash harness decides
//! whether it stays. One process may open a store at a time (sled holds a file lock), which is
//! why the collector's CLI talks to the running collector over HTTP instead of opening the store.

use std::path::Path;
use std::sync::Arc;

use super::{Entry, Result, Storage, StorageError, Tree, Write};

/// A sled database.
#[derive(Debug, Clone)]
pub struct SledStorage {
    db: sled::Db,
}

impl SledStorage {
    /// Opens or creates the store in directory `path`.
    ///
    /// # Errors
    /// I/O failure, corruption, or the store is open in another process.
    pub fn open(path: &Path) -> Result<Self> {
        // sled's background flusher keeps the file lock for a moment after the last handle of
        // a previous open in this process is dropped; wait for it (bounded) instead of failing
        // a reopen. Another process holding the store still fails after the wait.
        let mut attempts = 0;
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                // Durability comes from explicit flushes at acknowledgement points; the
                // background flusher only bounds how much unacknowledged work a crash can lose.
                .flush_every_ms(Some(1_000))
                .cache_capacity(64 * 1024 * 1024)
                .open();
            match opened {
                Ok(db) => break db,
                Err(e)
                    if attempts < LOCK_RETRIES
                        && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY_DELAY);
                }
                Err(e) if attempts < LOCK_RETRIES && never_held_data(path) => {
                    // sled 0.34 writes `conf` in two unsynced writes on a store's first open;
                    // a kill in between leaves a store that never opens again. Nothing was
                    // ever stored in it (no `db` data), so start it afresh.
                    tracing::warn!(path = %path.display(), error = %e, "Store torn during its first creation held no data; recreating it.");
                    attempts = LOCK_RETRIES;
                    std::fs::remove_dir_all(path)
                        .map_err(|io| StorageError::engine("recreate", io))?;
                }
                Err(e) => return Err(StorageError::engine("open", e)),
            }
        };
        Ok(Self { db })
    }
}

/// True when the sled directory at `path` holds no data file (or an empty one): a store whose
/// first creation was interrupted.
fn never_held_data(path: &Path) -> bool {
    path.is_dir() && std::fs::metadata(path.join("db")).map_or(true, |m| m.len() == 0)
}

/// Attempts to take a lock that a just-dropped handle of this process may still hold.
const LOCK_RETRIES: u32 = 30;
/// Wait between those attempts (30 × 100 ms: 3 s at most).
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Storage for SledStorage {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|e| StorageError::engine("open_tree", e))?;
        Ok(Arc::new(SledTree { tree }))
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| StorageError::engine("flush", e))
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(|e| StorageError::engine("size_on_disk", e))
    }
}

struct SledTree {
    tree: sled::Tree,
}

fn to_entry(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Entry> {
    let (k, v) = item.map_err(|e| StorageError::engine("scan", e))?;
    Ok((k.to_vec(), v.to_vec()))
}

impl SledTree {
    fn iter(&self, start: &[u8], end: Option<&[u8]>) -> sled::Iter {
        match end {
            Some(end) => self.tree.range(start..end),
            None => self.tree.range(start..),
        }
    }
}

impl Tree for SledTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StorageError::engine("get", e))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree
            .insert(key, value)
            .map(drop)
            .map_err(|e| StorageError::engine("insert", e))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.tree
            .remove(key)
            .map(drop)
            .map_err(|e| StorageError::engine("remove", e))
    }

    fn apply(&self, batch: Vec<Write>) -> Result<()> {
        let mut b = sled::Batch::default();
        for w in batch {
            match w {
                Write::Put(k, v) => b.insert(k, v),
                Write::Delete(k) => b.remove(k),
            }
        }
        self.tree
            .apply_batch(b)
            .map_err(|e| StorageError::engine("apply_batch", e))
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        // sled panics on a range whose end precedes its start; the model returns nothing.
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        self.iter(start, end).take(limit).map(to_entry).collect()
    }

    fn range_rev(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        self.iter(start, end)
            .rev()
            .take(limit)
            .map(to_entry)
            .collect()
    }

    fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<usize> {
        if end.is_some_and(|e| e <= start) {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.iter(start, end).keys() {
            batch.remove(item.map_err(|e| StorageError::engine("scan", e))?);
            n += 1;
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageError::engine("apply_batch", e))?;
        Ok(n)
    }

    fn len(&self) -> Result<usize> {
        Ok(self.tree.len())
    }
}
