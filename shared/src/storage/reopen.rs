//! [`ReopeningSled`]: the sled engine behind a handle that can reopen it in-process. sled 0.34
//! keeps a global error after a failed write (a full disk), and every later call fails with it
//! until the `Db` is dropped and opened again; tree handles already handed out would keep the
//! old `Db` alive (and its file lock held). So the trees given out here hold only their name and
//! resolve it against the current engine on every call; [`Storage::reopen`] swaps the engine.
//! The agent's outbox uses it to recover from a full disk by itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::{Entry, Result, SledStorage, Storage, StorageError, Tree, Write};

/// The current engine and the trees opened on it.
#[derive(Default)]
struct Current {
    /// `None` after a reopen failed: every call fails until a reopen succeeds.
    db: Option<SledStorage>,
    trees: HashMap<String, Arc<dyn Tree>>,
}

struct Inner {
    path: PathBuf,
    current: RwLock<Current>,
}

impl Inner {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(tree) = current.trees.get(name) {
                return Ok(tree.clone());
            }
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = &current.db else {
            return Err(StorageError::engine("open_tree", Closed));
        };
        let tree = db.tree(name)?;
        current.trees.insert(name.to_owned(), tree.clone());
        Ok(tree)
    }

    fn db(&self) -> Result<SledStorage> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .db
            .clone()
            .ok_or_else(|| StorageError::engine("store", Closed))
    }
}

/// The store is closed after a failed reopen.
#[derive(Debug, thiserror::Error)]
#[error("the store is closed: its last reopen failed")]
struct Closed;

/// A sled store that [`Storage::reopen`] can open again in this process.
#[derive(Clone)]
pub struct ReopeningSled {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReopeningSled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReopeningSled")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl ReopeningSled {
    /// Opens the store in `path` ([`SledStorage::open`]).
    ///
    /// # Errors
    /// As [`SledStorage::open`].
    pub fn open(path: &Path) -> Result<Self> {
        let db = SledStorage::open(path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                current: RwLock::new(Current {
                    db: Some(db),
                    trees: HashMap::new(),
                }),
            }),
        })
    }
}

impl Storage for ReopeningSled {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>> {
        // Resolve once now, so that a missing tree fails here as with the plain engine.
        self.inner.tree(name)?;
        Ok(Arc::new(NamedTree {
            inner: self.inner.clone(),
            name: name.to_owned(),
        }))
    }

    fn flush(&self) -> Result<()> {
        self.inner.db()?.flush()
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.inner.db()?.size_on_disk()
    }

    fn reopen(&self) -> Result<()> {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Every handle on the old engine goes first, so that its file lock is released
        // (`SledStorage::open` waits for sled's flusher thread to let go of it).
        *current = Current::default();
        current.db = Some(SledStorage::open(&self.inner.path)?);
        Ok(())
    }
}

/// A tree by name, resolved against the current engine on every call.
struct NamedTree {
    inner: Arc<Inner>,
    name: String,
}

impl Tree for NamedTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.tree(&self.name)?.get(key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.tree(&self.name)?.put(key, value)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.inner.tree(&self.name)?.delete(key)
    }

    fn apply(&self, batch: Vec<Write>) -> Result<()> {
        self.inner.tree(&self.name)?.apply(batch)
    }

    fn apply_in_pieces(&self, batch: Vec<Write>, piece: usize) -> Result<()> {
        self.inner.tree(&self.name)?.apply_in_pieces(batch, piece)
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.inner.tree(&self.name)?.range(start, end, limit)
    }

    fn range_rev(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>> {
        self.inner.tree(&self.name)?.range_rev(start, end, limit)
    }

    fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<usize> {
        self.inner.tree(&self.name)?.delete_range(start, end)
    }

    fn len(&self) -> Result<usize> {
        self.inner.tree(&self.name)?.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_taken_before_a_reopen_keep_working_and_see_only_what_was_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = ReopeningSled::open(dir.path()).unwrap();
        let tree = storage.tree("t").unwrap();
        tree.put(b"durable", b"1").unwrap();
        storage.flush().unwrap();
        storage.reopen().unwrap();
        assert_eq!(tree.get(b"durable").unwrap().as_deref(), Some(&b"1"[..]));
        tree.put(b"after", b"2").unwrap();
        storage.flush().unwrap();
        assert_eq!(tree.len().unwrap(), 2);
    }
}
