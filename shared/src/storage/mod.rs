//! Durable storage behind one small trait, so that the engine could be swapped.
//!
//! A [`Storage`] is a set of named [`Tree`]s of ordered byte keys. Writes become durable only at
//! [`Storage::flush`]; callers acknowledge anything to anyone (an MQTT PUBACK, an ack watermark)
//! only after it. [`SledStorage`] is the engine (sled 0.34, pinned); [`MemoryStorage`] is the
//! model the conformance suite checks it against. The agent's outbox and the collector's store
//! both go through this module.
//!
//! Keys are built with [`key`] helpers so that big-endian integers sort numerically.

mod memory;
mod reopen;
mod sled_engine;

pub use memory::MemoryStorage;
pub use reopen::ReopeningSled;
pub use sled_engine::{
    repair as repair_sled, SledStorage, DEFAULT_CACHE_BYTES as SLED_DEFAULT_CACHE_BYTES,
};

use std::sync::Arc;

/// A storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The engine failed (I/O, corruption, lock held by another process).
    #[error("storage {op}: {source}")]
    Engine {
        /// What was being done (`open`, `insert`, `flush`…).
        op: &'static str,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store is locked by another process (or another open handle in this one): its
    /// lock file is held, so opening it would not be safe.
    #[error("storage open: {path} is locked by another process")]
    Locked {
        /// The store's directory.
        path: std::path::PathBuf,
    },
}

impl StorageError {
    /// Wraps an engine error for operation `op`.
    pub fn engine(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Engine {
            op,
            source: Box::new(source),
        }
    }

    /// True when the store could not be opened because another process holds its lock (the
    /// only case where "is another process using this directory?" is the right hint).
    pub fn is_locked(&self) -> bool {
        matches!(self, StorageError::Locked { .. })
    }
}

/// Result of storage calls.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A key/value pair as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Insert or overwrite.
    Put(Vec<u8>, Vec<u8>),
    /// Remove if present.
    Delete(Vec<u8>),
}

/// A storage engine: named trees and a flush that makes all previous writes durable.
pub trait Storage: Send + Sync + 'static {
    /// Opens (or creates) the tree `name`.
    ///
    /// # Errors
    /// Engine failure.
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>>;

    /// Makes every write so far durable.
    ///
    /// # Errors
    /// Engine failure; nothing written since the last successful flush may be acknowledged.
    fn flush(&self) -> Result<()>;

    /// Bytes the store occupies on disk (0 for the in-memory model).
    ///
    /// # Errors
    /// Engine failure.
    fn size_on_disk(&self) -> Result<u64>;

    /// Drops the engine's in-memory state and opens the store again from disk, so that an
    /// engine that stopped after a failed write (sled keeps a global error after a failed
    /// flush) works again once the cause (a full disk) is gone. What survives is what was
    /// flushed: callers must re-read what they rely on. Tree handles taken before stay valid
    /// where the engine supports reopening ([`ReopeningSled`]); the default does nothing.
    ///
    /// # Errors
    /// The store cannot be opened again (the disk is still full): it stays failing.
    fn reopen(&self) -> Result<()> {
        Ok(())
    }
}

/// An ordered map of byte keys to byte values.
pub trait Tree: Send + Sync {
    /// The value at `key`.
    ///
    /// # Errors
    /// Engine failure.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Inserts or overwrites.
    ///
    /// # Errors
    /// Engine failure.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Removes `key` if present.
    ///
    /// # Errors
    /// Engine failure.
    fn delete(&self, key: &[u8]) -> Result<()>;

    /// Applies all writes atomically: after a crash either all or none are visible.
    ///
    /// # Errors
    /// Engine failure.
    fn apply(&self, batch: Vec<Write>) -> Result<()>;

    /// Applies `batch` in order, in pieces of at most `piece` writes, each piece atomic; the
    /// whole is not (a crash can leave any prefix of the pieces applied). For large batches
    /// whose caller tolerates a prefix (idempotent rewrites, made durable by a later flush):
    /// an engine may hold memory for every write of one atomic batch until it ends — sled
    /// 0.34 keeps each page version an insert replaced until its batch returns (see
    /// `sled_engine`), so a 50,000-write batch held hundreds of MiB.
    ///
    /// # Errors
    /// Engine failure; the pieces before it stay applied.
    fn apply_in_pieces(&self, batch: Vec<Write>, piece: usize) -> Result<()> {
        let mut writes = batch.into_iter();
        loop {
            let chunk: Vec<Write> = writes.by_ref().take(piece.max(1)).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            self.apply(chunk)?;
        }
    }

    /// Up to `limit` entries with `start <= key < end` (no `end`: to the last key), in key order.
    ///
    /// # Errors
    /// Engine failure.
    fn range(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>>;

    /// Up to `limit` entries with `start <= key < end`, last key first.
    ///
    /// # Errors
    /// Engine failure.
    fn range_rev(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>>;

    /// Removes every key with `start <= key < end`; returns how many. Not atomic as a whole:
    /// an engine may remove a large range in several atomic pieces, in key order, so a crash
    /// can leave a prefix of the range removed.
    ///
    /// # Errors
    /// Engine failure; the pieces before it stay removed.
    fn delete_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<usize>;

    /// Number of entries (may scan).
    ///
    /// # Errors
    /// Engine failure.
    fn len(&self) -> Result<usize>;

    /// True when the tree has no entries.
    ///
    /// # Errors
    /// Engine failure.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.range(&[], None, 1)?.is_empty())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// Engine failure.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let end = key::prefix_end(prefix);
        self.range(prefix, end.as_deref(), usize::MAX)
    }
}

/// Key building: components joined so that byte order is the natural order.
pub mod key {
    /// Separator between string components; ids never contain it.
    pub const SEP: u8 = 0;

    /// A key builder.
    #[derive(Debug, Default, Clone)]
    pub struct KeyBuf(Vec<u8>);

    impl KeyBuf {
        /// An empty key.
        pub fn new() -> Self {
            Self(Vec::with_capacity(64))
        }
        /// Appends a string component followed by the separator.
        pub fn str(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(SEP);
            self
        }
        /// Appends a big-endian u64 (sorts numerically).
        pub fn u64(mut self, n: u64) -> Self {
            self.0.extend_from_slice(&n.to_be_bytes());
            self
        }
        /// The key bytes.
        pub fn build(self) -> Vec<u8> {
            self.0
        }
    }

    /// The smallest key greater than every key with `prefix`, or `None` if there is none.
    pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < u8::MAX {
                end.push(last + 1);
                return Some(end);
            }
        }
        None
    }

    /// Reads a big-endian u64 at `offset`, if the key is long enough.
    pub fn read_u64(key: &[u8], offset: usize) -> Option<u64> {
        let bytes: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    }
}

#[cfg(test)]
mod conformance;
