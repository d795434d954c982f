//! Where runs live: tree `runbook_runs` (run id, big-endian → the [`Run`] as JSON, written after
//! every change and before its effects are carried out) and `runbook_meta` (the next run id, so
//! ids never repeat). Names and keys are the store's ([`crate::store::trees`]). Runs are few
//! (one at a time per runbook), so lists read the whole tree; no index is kept.

use watchstand_shared::storage::key::read_u64;
use watchstand_shared::storage::Write;

use super::run::Run;
use crate::store::trees::{id_key, NEXT_RUN_ID, RUNBOOK_META, RUNBOOK_RUNS};
use crate::store::{Result, Store, StoreBatch};

/// Reads and writes runs.
#[derive(Clone)]
pub struct RunStore {
    store: Store,
}

impl RunStore {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Every run, oldest first.
    ///
    /// # Errors
    /// Store failure or a corrupt record.
    pub fn all(&self) -> Result<Vec<Run>> {
        Ok(self
            .store
            .load_all::<Run>(RUNBOOK_RUNS)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Run `id`.
    ///
    /// # Errors
    /// Store failure or a corrupt record.
    pub fn get(&self, id: u64) -> Result<Option<Run>> {
        let Some(bytes) = self.store.tree(RUNBOOK_RUNS)?.get(&id_key(id))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            crate::store::StoreError::CorruptRecord {
                tree: RUNBOOK_RUNS,
                detail: format!("run {id}: {e}"),
            }
        })
    }

    /// The next unused run id (ids never repeat).
    ///
    /// # Errors
    /// Store failure.
    pub fn next_id(&self) -> Result<u64> {
        let stored = self
            .store
            .tree(RUNBOOK_META)?
            .get(NEXT_RUN_ID)?
            .and_then(|v| read_u64(&v, 0))
            .unwrap_or(1);
        let last = self
            .store
            .tree(RUNBOOK_RUNS)?
            .range_rev(&[], None, 1)?
            .first()
            .and_then(|(k, _)| read_u64(k, 0))
            .unwrap_or(0);
        Ok(stored.max(last + 1))
    }

    /// Adds the run to `batch`, with the next run id after it.
    pub fn put(batch: &mut StoreBatch, run: &Run, next_id: u64) {
        batch.put_json(RUNBOOK_RUNS, id_key(run.id), run);
        batch.push(
            RUNBOOK_META,
            Write::Put(NEXT_RUN_ID.to_vec(), next_id.to_be_bytes().to_vec()),
        );
    }

    /// Commits `batch` (flushed).
    ///
    /// # Errors
    /// Store failure.
    pub fn commit(&self, batch: StoreBatch) -> Result<()> {
        self.store.commit(batch)
    }
}
