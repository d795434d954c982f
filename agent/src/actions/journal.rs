//! The agent's durable memory of commands, in one storage tree `cmd_journal` beside the outbox
//! (same sled store, same data dir):
//!
//! - key `n` + 16 nonce bytes → u64 big-endian "forget after" (`expires_ms` + clock skew): a
//!   nonce is accepted once; after its command expired (with the skew) the command would be
//!   refused as `expired` anyway, so the nonce can be pruned without reopening a window;
//! - key `c` + command id → JSON [`JournalEntry`]: `started` before the action runs, `finished`
//!   with its outcome after. A command id is run at most once: a re-send is answered from here.
//!
//! The nonce and the `started` entry are written in one atomic batch and flushed **before** the
//! action starts, so a crash or kill at any point cannot make the agent run a command twice: at
//! the next start an entry still `started` becomes `interrupted` (the agent does not know how it
//! ended and never guesses by running it again). Finished entries are kept for
//! [`OUTCOME_RETENTION`], so a collector that restarts and re-sends the command learns the outcome.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use watchstand_shared::command::VerifiedCommand;
use watchstand_shared::storage::{Storage, StorageError, Tree, Write};
use watchstand_shared::wire::v1::{CommandOutcome, CommandRef, OutcomeStatus};

const TREE: &str = "cmd_journal";
const NONCE: u8 = b'n';
const COMMAND: u8 = b'c';

/// How long outcomes stay answerable: a week.
pub const OUTCOME_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where a journalled command is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Accepted and about to run (or running).
    Started {
        /// When it was accepted.
        started_ms: u64,
    },
    /// Ran (or was interrupted by an agent stop).
    Finished {
        /// The outcome answered for it.
        outcome: CommandOutcome,
        /// When it was recorded.
        finished_ms: u64,
    },
}

/// One journalled command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Its ids.
    pub command: CommandRef,
    /// Its signature, base64: a re-send of the same command has the same one.
    pub signature: String,
    /// Where it is.
    pub state: EntryState,
}

/// The journal.
#[derive(Clone)]
pub struct Journal {
    storage: Arc<dyn Storage>,
    tree: Arc<dyn Tree>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

fn command_key(id: &str) -> Vec<u8> {
    let mut k = vec![COMMAND];
    k.extend_from_slice(id.as_bytes());
    k
}

fn nonce_key(nonce: &[u8]) -> Vec<u8> {
    let mut k = vec![NONCE];
    k.extend_from_slice(nonce);
    k
}

fn encode(entry: &JournalEntry) -> Vec<u8> {
    // Plain structs of strings and integers: serialising cannot fail.
    serde_json::to_vec(entry).unwrap_or_default()
}

impl Journal {
    /// Opens the journal and turns every entry left `started` by an earlier process into
    /// `interrupted` (flushed); returns those, to be answered.
    ///
    /// # Errors
    /// The store fails.
    pub fn open(
        storage: Arc<dyn Storage>,
        now_ms: u64,
    ) -> Result<(Self, Vec<JournalEntry>), StorageError> {
        let tree = storage.tree(TREE)?;
        let journal = Self { storage, tree };
        let mut interrupted = Vec::new();
        let mut writes = Vec::new();
        for (key, value) in journal.tree.scan_prefix(&[COMMAND])? {
            let Ok(mut entry) = serde_json::from_slice::<JournalEntry>(&value) else {
                tracing::warn!(key = %String::from_utf8_lossy(&key), "Unreadable command journal entry removed.");
                writes.push(Write::Delete(key));
                continue;
            };
            if let EntryState::Started { started_ms } = entry.state {
                entry.state = EntryState::Finished {
                    outcome: CommandOutcome {
                        status: OutcomeStatus::Interrupted,
                        exit_code: None,
                        http_status: None,
                        started_ms,
                        duration_ms: now_ms.saturating_sub(started_ms),
                        stdout_tail: String::new(),
                        stderr_tail: String::new(),
                        error: Some(
                            "the agent stopped while the action ran; it is not run again".into(),
                        ),
                    },
                    finished_ms: now_ms,
                };
                writes.push(Write::Put(key, encode(&entry)));
                interrupted.push(entry);
            }
        }
        if !writes.is_empty() {
            journal.tree.apply(writes)?;
            journal.storage.flush()?;
        }
        Ok((journal, interrupted))
    }

    /// The entry of `command_id`, if journalled.
    ///
    /// # Errors
    /// The store fails.
    pub fn get(&self, command_id: &str) -> Result<Option<JournalEntry>, StorageError> {
        Ok(self
            .tree
            .get(&command_key(command_id))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// True when `nonce` was accepted before (and not pruned yet).
    ///
    /// # Errors
    /// The store fails.
    pub fn nonce_seen(&self, nonce: &[u8]) -> Result<bool, StorageError> {
        Ok(self.tree.get(&nonce_key(nonce))?.is_some())
    }

    /// Records the nonce and a `started` entry atomically and flushes: after this returns the
    /// command may run, and never again.
    ///
    /// # Errors
    /// The store fails (the command must not run).
    pub fn begin(
        &self,
        command: &VerifiedCommand,
        forget_after_ms: u64,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let entry = JournalEntry {
            command: command.reference(),
            signature: command.command.signature.clone(),
            state: EntryState::Started { started_ms: now_ms },
        };
        self.tree.apply(vec![
            Write::Put(
                nonce_key(&command.nonce),
                forget_after_ms.to_be_bytes().to_vec(),
            ),
            Write::Put(command_key(&command.command.command_id), encode(&entry)),
        ])?;
        self.storage.flush()
    }

    /// Records the outcome and flushes.
    ///
    /// # Errors
    /// The store fails.
    pub fn finish(&self, entry: &JournalEntry) -> Result<(), StorageError> {
        self.tree
            .put(&command_key(&entry.command.command_id), &encode(entry))?;
        self.storage.flush()
    }

    /// Finished entries recorded at or after `since_ms` (to re-publish after a reconnect).
    ///
    /// # Errors
    /// The store fails.
    pub fn finished_since(&self, since_ms: u64) -> Result<Vec<JournalEntry>, StorageError> {
        let mut out = Vec::new();
        for (_, value) in self.tree.scan_prefix(&[COMMAND])? {
            if let Ok(entry) = serde_json::from_slice::<JournalEntry>(&value) {
                if matches!(entry.state, EntryState::Finished { finished_ms, .. } if finished_ms >= since_ms)
                {
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    /// Removes nonces whose command can no longer be valid and outcomes older than
    /// [`OUTCOME_RETENTION`]; returns how many keys went. Not flushed: losing a prune is harmless.
    ///
    /// # Errors
    /// The store fails.
    pub fn prune(&self, now_ms: u64) -> Result<usize, StorageError> {
        let retention = u64::try_from(OUTCOME_RETENTION.as_millis()).unwrap_or(u64::MAX);
        let mut deletes = Vec::new();
        for (key, value) in self.tree.scan_prefix(&[NONCE])? {
            let forget_after = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if forget_after.is_none_or(|t| t < now_ms) {
                deletes.push(Write::Delete(key));
            }
        }
        for (key, value) in self.tree.scan_prefix(&[COMMAND])? {
            if let Ok(JournalEntry {
                state: EntryState::Finished { finished_ms, .. },
                ..
            }) = serde_json::from_slice(&value)
            {
                if finished_ms.saturating_add(retention) < now_ms {
                    deletes.push(Write::Delete(key));
                }
            }
        }
        let n = deletes.len();
        if n > 0 {
            self.tree.apply(deletes)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use watchstand_shared::command::{CommandKey, UnsignedCommand, Verifier};
    use watchstand_shared::storage::SledStorage;
    use watchstand_shared::wire::v1::encode as encode_wire;

    const NOW: u64 = 1_767_225_600_000;

    fn verified(id: &str, nonce: &str) -> VerifiedCommand {
        let key = CommandKey::from_seed([3; 32]);
        let c = key.sign(UnsignedCommand {
            site: "s".into(),
            agent: "a".into(),
            command_id: id.into(),
            run_id: "r".into(),
            step: 0,
            action: "x".into(),
            args: BTreeMap::new(),
            issued_ms: NOW,
            expires_ms: NOW + 1_000,
            nonce: nonce.into(),
        });
        Verifier::new(key.public(), "s", "a", 0)
            .verify(&encode_wire(&c), NOW)
            .unwrap()
    }

    #[test]
    fn a_started_command_survives_reopen_as_interrupted_and_its_nonce_stays_seen() {
        let dir = tempfile::tempdir().unwrap();
        let c = verified("c1", &"ab".repeat(16));
        {
            let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
            let (j, interrupted) = Journal::open(storage, NOW).unwrap();
            assert!(interrupted.is_empty());
            j.begin(&c, NOW + 1_000, NOW).unwrap();
        }
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let (j, interrupted) = Journal::open(storage, NOW + 10).unwrap();
        assert_eq!(interrupted.len(), 1);
        assert!(j.nonce_seen(&c.nonce).unwrap());
        match j.get("c1").unwrap().unwrap().state {
            EntryState::Finished { outcome, .. } => {
                assert_eq!(outcome.status, OutcomeStatus::Interrupted)
            }
            other => panic!("{other:?}"),
        }
        // Pruning forgets the nonce only after its command expired; the outcome stays a week.
        assert_eq!(j.prune(NOW + 1_000).unwrap(), 0);
        assert_eq!(j.prune(NOW + 1_001).unwrap(), 1);
        assert!(!j.nonce_seen(&c.nonce).unwrap());
        assert!(j.get("c1").unwrap().is_some());
        let week = u64::try_from(OUTCOME_RETENTION.as_millis()).unwrap();
        assert_eq!(j.prune(NOW + 11 + week).unwrap(), 1);
        assert!(j.get("c1").unwrap().is_none());
    }
}
