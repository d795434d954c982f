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
    /// Opens or creates the store in directory `path` with sled's page cache at
    /// [`DEFAULT_CACHE_BYTES`] ([`SledStorage::open_with_cache`]).
    ///
    /// # Errors
    /// As [`SledStorage::open_with_cache`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens or creates the store in directory `path`; sled keeps at most `cache_bytes` of
    /// pages (counted as their on-disk size; the in-memory nodes take several times that) in
    /// its cache. Artefacts a crash or a full disk leaves behind (see [`repair`]) are removed
    /// first, with a WARN naming each.
    ///
    /// # Errors
    /// I/O failure or corruption ([`StorageError::Engine`]), or the store is open in another
    /// process ([`StorageError::Locked`]).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self> {
        repair(path).map_err(|io| StorageError::engine("repair", io))?;
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
                .cache_capacity(cache_bytes)
                .open();
            match opened {
                Ok(db) => break db,
                Err(e) if is_lock_conflict(&e) => {
                    if attempts >= LOCK_RETRIES {
                        return Err(StorageError::Locked {
                            path: path.to_path_buf(),
                        });
                    }
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

/// sled's page cache when none is given (sled's own default is 1 GiB of on-disk bytes). A
/// lower value did not lower a 2 M-result backlog drain's peak RSS (BENCHMARKS.md, backlog
/// drain memory), so this stays what was measured before.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Most keys [`Tree::delete_range`] removes in one sled batch.
const DELETE_PIECE: usize = 1_000;

/// True when sled failed to take its exclusive lock on the `db` file (fs2 `try_lock_exclusive`,
/// a `flock`). sled 0.34.7 reports it only as an `Io` error of kind `Other` whose text starts
/// with "could not acquire lock" (`config.rs`, `try_lock`); nothing else produces that text.
fn is_lock_conflict(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Removes what sled 0.34.7 leaves behind when it is killed or runs out of space while writing
/// a snapshot, and that would stop every later open: `snap.<lsn>.generating` files. sled writes a
/// snapshot to `snap.<lsn>.generating`, syncs it, renames it to `snap.<lsn>` and only then
/// deletes older snapshots (`pagecache/snapshot.rs`, `write_snapshot`); so a `.generating` file
/// was never in use, the previous snapshot (if any) is still there, and the log holds everything
/// since it. But sled's `read_snapshot` takes the highest-sorting `snap.*` name, which is the
/// `.generating` file when it has the newest lsn, and fails with "Read corrupted data" when it is
/// empty or torn (a full disk leaves it 0 bytes). Returns the names removed.
///
/// # Errors
/// The directory cannot be read or a file cannot be removed.
pub fn repair(path: &Path) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let bytes = entry.metadata().map_or(0, |m| m.len());
            std::fs::remove_file(entry.path())?;
            tracing::warn!(
                path = %path.display(),
                file = %name,
                bytes,
                "Store held an incomplete snapshot left by a crash or a full disk (sled never uses one); removed it, the store recovers from its log."
            );
            removed.push(name);
        }
    }
    Ok(removed)
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
        // In atomic batches of at most `DELETE_PIECE` keys: one batch over a whole range would
        // hold every replaced node until it returns (see `Tree::apply_in_pieces`).
        let mut from = start.to_vec();
        let mut n = 0;
        loop {
            let mut batch = sled::Batch::default();
            let mut last = None;
            let mut in_piece = 0;
            for item in self.iter(&from, end).keys().take(DELETE_PIECE) {
                let k = item.map_err(|e| StorageError::engine("scan", e))?;
                last = Some(k.clone());
                batch.remove(k);
                in_piece += 1;
            }
            let Some(last) = last else {
                return Ok(n);
            };
            self.tree
                .apply_batch(batch)
                .map_err(|e| StorageError::engine("apply_batch", e))?;
            n += in_piece;
            if in_piece < DELETE_PIECE {
                return Ok(n);
            }
            // The next key after `last` in byte order.
            from = last.to_vec();
            from.push(0);
        }
    }

    fn len(&self) -> Result<usize> {
        Ok(self.tree.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_one_entry(dir: &Path) {
        let storage = SledStorage::open(dir).unwrap();
        storage.tree("t").unwrap().put(b"k", b"v").unwrap();
        storage.flush().unwrap();
    }

    /// Opens sled directly, without the repair, the way `SledStorage::open` did before.
    fn raw_open(dir: &Path) -> sled::Result<sled::Db> {
        sled::Config::new().path(dir).open()
    }

    #[test]
    fn an_empty_generating_snapshot_left_by_a_full_disk_is_removed_and_the_store_reopens() {
        let dir = tempfile::tempdir().unwrap();
        store_with_one_entry(dir.path());
        // What a snapshot write that hit ENOSPC leaves: the highest-sorting `snap.*`, 0 bytes.
        let artefact = dir.path().join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&artefact, b"").unwrap();
        // The failure being repaired: sled itself no longer opens the store.
        assert!(raw_open(dir.path()).is_err());

        let storage = SledStorage::open(dir.path()).unwrap();
        assert_eq!(
            storage.tree("t").unwrap().get(b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert!(!artefact.exists());
    }

    #[test]
    fn a_torn_generating_snapshot_is_removed_but_complete_snapshots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        store_with_one_entry(dir.path());
        let before: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        std::fs::write(
            dir.path().join("snap.7FFFFFFFFFFFFFFF.generating"),
            [7u8; 100],
        )
        .unwrap();
        let removed = repair(dir.path()).unwrap();
        assert_eq!(
            removed,
            vec!["snap.7FFFFFFFFFFFFFFF.generating".to_string()]
        );
        let mut after: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut before = before;
        before.sort();
        after.sort();
        assert_eq!(before, after, "only the artefact is removed");
        assert!(SledStorage::open(dir.path()).is_ok());
    }

    #[test]
    fn repairing_a_directory_that_does_not_exist_yet_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(repair(&dir.path().join("new")).unwrap().is_empty());
    }

    #[test]
    fn a_store_held_by_another_handle_is_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledStorage::open(dir.path()).unwrap();
        let err = SledStorage::open(dir.path()).unwrap_err();
        assert!(err.is_locked(), "{err}");
    }

    #[test]
    fn a_corrupt_store_is_not_reported_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        store_with_one_entry(dir.path());
        // A snapshot sled would use (not `.generating`) that is empty: real corruption, left
        // alone by the repair.
        std::fs::write(dir.path().join("snap.7FFFFFFFFFFFFFFF"), b"").unwrap();
        let err = SledStorage::open(dir.path()).unwrap_err();
        assert!(!err.is_locked(), "{err}");
    }
}
