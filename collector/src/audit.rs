//! The audit log: an append-only, hash-chained record of every state-changing API request, every
//! refused one (401/403) and the first use of each token (later: runbook and drill decisions,
//! commands sent or refused).
//!
//! Records live in the store's `audit` tree under their big-endian seq (1, 2, …). Each carries
//! the previous record's hash (`prev_hash`, 64 zeros for the first) and its own
//! `hash = sha256(canonical JSON of the record without hash)`. The head — the last seq and its
//! hash — is kept apart under the key `head` of the same tree, written in the same atomic batch as
//! the record (so a crash never leaves the two out of step), so a truncated tail is visible.
//! [`AuditLog::verify`] walks the chain and names the first broken link: a modified record (its
//! hash), a deleted one (a seq missing), reordered ones (a record under another seq's key, or a
//! broken `prev_hash`), a truncated tail (the head is past the last record).
//!
//! What it cannot see: someone with write access to the data dir who rewrites every hash from
//! the change onwards and the head. Detecting that needs the head anchored outside the store
//! (shipping it to a log host) or a keyed hash — see ARCHITECTURE.md.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use watchstand_shared::storage::{key::read_u64, Write};

use crate::auth::{hex, sha256, Role};
use crate::store::{trees, Store, StoreError};

/// Key of the head record in the `audit` tree (records have 8-byte keys).
pub use crate::store::trees::AUDIT_HEAD as HEAD_KEY;
/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1, 2, … without gaps.
    pub seq: u64,
    /// When, epoch ms.
    pub at_ms: u64,
    /// The token's name, or `anonymous`.
    pub actor: String,
    /// The token's role, or `none` when unauthenticated.
    pub role: String,
    /// What was asked, e.g. `incident.resolve`.
    pub action: String,
    /// What it was asked of: the request path.
    pub target: String,
    /// `ok`, `refused 401`, `refused 403` or `error <status>`.
    pub outcome: String,
    /// More about the outcome.
    pub detail: String,
    /// The previous record's hash.
    pub prev_hash: String,
    /// sha256 of the canonical bytes of every field above.
    pub hash: String,
}

/// The hashed part of a record, in its canonical order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    at_ms: u64,
    actor: &'a str,
    role: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    detail: &'a str,
    prev_hash: &'a str,
}

impl AuditRecord {
    /// The hash this record's content gives (compare with `hash`).
    pub fn compute_hash(&self) -> String {
        let canonical = Canonical {
            seq: self.seq,
            at_ms: self.at_ms,
            actor: &self.actor,
            role: &self.role,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            detail: &self.detail,
            prev_hash: &self.prev_hash,
        };
        // Strings and integers only: serialising cannot fail.
        hex(&sha256(&serde_json::to_vec(&canonical).unwrap_or_default()))
    }
}

/// How a request ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// No or an invalid token.
    Unauthenticated,
    /// The token's role is too low.
    Forbidden,
    /// Accepted but failed with this HTTP status.
    Error(u16),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Unauthenticated => f.write_str("refused 401"),
            Outcome::Forbidden => f.write_str("refused 403"),
            Outcome::Error(status) => write!(f, "error {status}"),
        }
    }
}

/// What to append; seq, time and hashes are filled in by [`AuditLog::append`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// Token name or `anonymous`.
    pub actor: String,
    /// Its role, if authenticated.
    pub role: Option<Role>,
    /// e.g. `incident.ack`.
    pub action: String,
    /// e.g. the request path.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// More.
    pub detail: String,
}

/// The head: last seq and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Last record's seq.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// The first broken link found by [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// The first record that is wrong (or missing).
    pub seq: u64,
    /// What is wrong with it.
    pub problem: String,
}

/// What [`AuditLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Records whose chain checked out before the first broken link.
    pub records: u64,
    /// The head as stored.
    pub head: Option<Head>,
    /// The first broken link, if any.
    pub broken: Option<Broken>,
}

impl Verification {
    /// True when the whole chain and the head check out.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Appends to and reads the audit log. Cheap to clone; appends are serialised.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Store,
    append_lock: Arc<Mutex<()>>,
}

use crate::store::trees::audit_seq_key as seq_key;

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        tree: trees::AUDIT,
        source,
    })
}

impl AuditLog {
    /// The log in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            append_lock: Arc::default(),
        }
    }

    /// The stored head, if anything was ever appended.
    ///
    /// # Errors
    /// Store failure or a head that does not decode.
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        let tree = self.store.tree(trees::AUDIT)?;
        tree.get(HEAD_KEY)?.map(|v| decode(&v)).transpose()
    }

    /// Appends `entry` at `at_ms` after the head, writing the record and the new head in one
    /// atomic batch, then flushes. Blocking: call from a blocking thread.
    ///
    /// # Errors
    /// Store failure, or a head that does not decode (the log is then not extended).
    pub fn append(&self, entry: Entry, at_ms: u64) -> Result<AuditRecord, StoreError> {
        let _serial = self
            .append_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let head = self.head()?;
        let (seq, prev_hash) = match head {
            Some(h) => (h.seq + 1, h.hash),
            None => (1, GENESIS.to_owned()),
        };
        let mut record = AuditRecord {
            seq,
            at_ms,
            actor: entry.actor,
            role: entry.role.map_or("none", Role::as_str).to_owned(),
            action: entry.action,
            target: entry.target,
            outcome: entry.outcome.to_string(),
            detail: entry.detail,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let head = Head {
            seq,
            hash: record.hash.clone(),
        };
        let tree = self.store.tree(trees::AUDIT)?;
        tree.apply(vec![
            Write::Put(
                seq_key(seq).to_vec(),
                serde_json::to_vec(&record).unwrap_or_default(),
            ),
            Write::Put(
                HEAD_KEY.to_vec(),
                serde_json::to_vec(&head).unwrap_or_default(),
            ),
        ])?;
        self.store.flush()?;
        Ok(record)
    }

    /// Up to `limit` records from `from_seq` on, as stored. A record that does not decode is
    /// left out ([`Self::verify`] names it).
    ///
    /// # Errors
    /// Store failure.
    pub fn page(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let tree = self.store.tree(trees::AUDIT)?;
        Ok(tree
            .range(&seq_key(from_seq), None, limit.saturating_add(1))?
            .into_iter()
            .filter(|(k, _)| k.len() == 8)
            .take(limit)
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Walks the whole chain and the head; reports the first broken link.
    ///
    /// # Errors
    /// Store failure (a corrupt record is a broken link, not an error).
    pub fn verify(&self) -> Result<Verification, StoreError> {
        let tree = self.store.tree(trees::AUDIT)?;
        let head = match tree.get(HEAD_KEY)? {
            None => None,
            Some(v) => match serde_json::from_slice::<Head>(&v) {
                Ok(h) => Some(h),
                Err(e) => {
                    return Ok(Verification {
                        records: 0,
                        head: None,
                        broken: Some(Broken {
                            seq: 0,
                            problem: format!("the head does not decode ({e}): modified"),
                        }),
                    })
                }
            },
        };
        let mut expected = 1u64;
        let mut prev = GENESIS.to_owned();
        let broken = |seq: u64, problem: String, records: u64, head: Option<Head>| Verification {
            records,
            head,
            broken: Some(Broken { seq, problem }),
        };
        for (key, value) in tree.range(&[], None, usize::MAX)? {
            if key == HEAD_KEY {
                continue;
            }
            let records = expected - 1;
            let Some(key_seq) = read_u64(&key, 0).filter(|_| key.len() == 8) else {
                return Ok(broken(
                    expected,
                    format!("an unexpected key {key:?} sits in the log"),
                    records,
                    head,
                ));
            };
            if key_seq != expected {
                return Ok(broken(
                    expected,
                    format!("record {expected} is missing (deleted); the next one is {key_seq}"),
                    records,
                    head,
                ));
            }
            let record: AuditRecord = match serde_json::from_slice(&value) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(broken(
                        key_seq,
                        format!("record {key_seq} does not decode ({e}): modified"),
                        records,
                        head,
                    ))
                }
            };
            if record.seq != key_seq {
                return Ok(broken(
                    key_seq,
                    format!(
                        "the record stored as {key_seq} says it is {}: reordered or moved",
                        record.seq
                    ),
                    records,
                    head,
                ));
            }
            if record.compute_hash() != record.hash {
                return Ok(broken(
                    key_seq,
                    format!("record {key_seq} does not match its hash: modified"),
                    records,
                    head,
                ));
            }
            if record.prev_hash != prev {
                return Ok(broken(
                    key_seq,
                    format!(
                        "record {key_seq} does not link to record {}: a record before it was \
                         replaced, removed or reordered",
                        key_seq - 1
                    ),
                    records,
                    head,
                ));
            }
            prev = record.hash;
            expected += 1;
        }
        let records = expected - 1;
        let problem = match &head {
            None if records == 0 => None,
            None => Some((1, "the head is missing: the log cannot be checked for truncation".to_owned())),
            Some(h) if h.seq > records => Some((
                records + 1,
                format!(
                    "record {} is missing: the head says the log ends at {}, it ends at {records} (truncated)",
                    records + 1,
                    h.seq
                ),
            )),
            Some(h) if h.seq < records => Some((
                h.seq + 1,
                format!(
                    "record {} is past the head ({}): appended outside the collector",
                    h.seq + 1,
                    h.seq
                ),
            )),
            Some(h) if h.hash != prev => Some((
                records,
                format!("record {records} does not match the head's hash: replaced"),
            )),
            Some(_) => None,
        };
        Ok(match problem {
            Some((seq, problem)) => broken(seq, problem, records, head),
            None => Verification {
                records,
                head,
                broken: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, action: &str) -> Entry {
        Entry {
            actor: actor.into(),
            role: Some(Role::Operator),
            action: action.into(),
            target: "/api/v1/incidents/1/ack".into(),
            outcome: Outcome::Ok,
            detail: String::new(),
        }
    }

    /// A log of `n` records in memory.
    fn log(n: u64) -> (Store, AuditLog) {
        let store = Store::in_memory();
        let log = AuditLog::new(store.clone());
        for i in 1..=n {
            let r = log
                .append(entry("ana", "incident.ack"), 1_000 + i)
                .expect("append");
            assert_eq!(r.seq, i);
        }
        (store, log)
    }

    fn first_bad(log: &AuditLog) -> Option<Broken> {
        log.verify().expect("verify").broken
    }

    #[test]
    fn an_untouched_log_verifies_with_its_record_count() {
        let (_, empty) = log(0);
        assert!(empty.verify().expect("verify").is_ok());
        let (_, log) = log(5);
        let v = log.verify().expect("verify");
        assert_eq!((v.records, v.broken), (5, None));
        assert_eq!(v.head.map(|h| h.seq), Some(5));
        let page = log.page(2, 2).expect("page");
        assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(page[1].prev_hash, page[0].hash);
    }

    #[test]
    fn a_modified_record_is_named() {
        let (store, log) = log(5);
        let tree = store.tree(trees::AUDIT).expect("tree");
        let mut value = tree.get(&seq_key(3)).expect("get").expect("record 3");
        // Flip one byte of the actor's name ("ana" → "bna").
        let at = value
            .windows(5)
            .position(|w| w == b"\"ana\"")
            .expect("actor")
            + 1;
        value[at] ^= 0x03;
        tree.put(&seq_key(3), &value).expect("put");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.problem.contains("modified"), "{b:?}");
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (store, log) = log(5);
        store
            .tree(trees::AUDIT)
            .expect("tree")
            .delete(&seq_key(2))
            .expect("delete");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 2, "{b:?}");
        assert!(b.problem.contains("deleted"), "{b:?}");
    }

    #[test]
    fn swapped_records_are_named() {
        let (store, log) = log(5);
        let tree = store.tree(trees::AUDIT).expect("tree");
        let two = tree.get(&seq_key(2)).expect("get").expect("2");
        let four = tree.get(&seq_key(4)).expect("get").expect("4");
        tree.put(&seq_key(2), &four).expect("put");
        tree.put(&seq_key(4), &two).expect("put");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 2, "{b:?}");
        assert!(b.problem.contains("reordered"), "{b:?}");
    }

    #[test]
    fn a_truncated_tail_is_named() {
        let (store, log) = log(5);
        let tree = store.tree(trees::AUDIT).expect("tree");
        tree.delete(&seq_key(5)).expect("delete");
        tree.delete(&seq_key(4)).expect("delete");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 4, "{b:?}");
        assert!(b.problem.contains("truncated"), "{b:?}");
    }

    #[test]
    fn a_rewritten_record_with_a_fresh_hash_breaks_the_next_link() {
        let (store, log) = log(5);
        let tree = store.tree(trees::AUDIT).expect("tree");
        let mut r: AuditRecord =
            serde_json::from_slice(&tree.get(&seq_key(2)).expect("get").expect("2")).expect("json");
        r.actor = "mallory".into();
        r.hash = r.compute_hash();
        tree.put(&seq_key(2), &serde_json::to_vec(&r).expect("json"))
            .expect("put");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 3, "{b:?}");
    }

    #[test]
    fn records_appended_outside_the_collector_are_named() {
        let (store, log) = log(3);
        let tree = store.tree(trees::AUDIT).expect("tree");
        let head = tree.get(HEAD_KEY).expect("get").expect("head");
        log.append(entry("eve", "incident.resolve"), 9)
            .expect("append");
        tree.put(HEAD_KEY, &head).expect("put");
        let b = first_bad(&log).expect("broken");
        assert_eq!(b.seq, 4, "{b:?}");
    }
}
