//! Where drill runs live: tree `drill_runs` (run id, big-endian → the [`DrillRun`] as JSON,
//! written after every change). Names and keys are the store's ([`crate::store::trees`]).
//! Drill runs are few (a handful a month), so lists read the whole tree.

use watchstand_shared::storage::key::read_u64;

use super::run::DrillRun;
use crate::store::trees::{id_key, DRILL_RUNS};
use crate::store::{Result, Store, StoreBatch, StoreError};

/// Reads and writes drill runs.
#[derive(Clone, Debug)]
pub struct DrillStore {
    store: Store,
}

impl DrillStore {
    /// Over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Every drill run, oldest first.
    ///
    /// # Errors
    /// Store failure or a corrupt record.
    pub fn all(&self) -> Result<Vec<DrillRun>> {
        Ok(self
            .store
            .load_all::<DrillRun>(DRILL_RUNS)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Drill run `id`.
    ///
    /// # Errors
    /// Store failure or a corrupt record.
    pub fn get(&self, id: u64) -> Result<Option<DrillRun>> {
        let Some(bytes) = self.store.tree(DRILL_RUNS)?.get(&id_key(id))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::CorruptRecord {
                tree: DRILL_RUNS,
                detail: format!("drill run {id}: {e}"),
            })
    }

    /// The next unused id.
    ///
    /// # Errors
    /// Store failure.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self
            .store
            .tree(DRILL_RUNS)?
            .range_rev(&[], None, 1)?
            .first()
            .and_then(|(k, _)| read_u64(k, 0))
            .unwrap_or(0)
            + 1)
    }

    /// Writes `run` and flushes.
    ///
    /// # Errors
    /// Store failure.
    pub fn put(&self, run: &DrillRun) -> Result<()> {
        let mut batch = StoreBatch::default();
        batch.put_json(DRILL_RUNS, id_key(run.id), run);
        self.store.commit(batch)
    }
}
