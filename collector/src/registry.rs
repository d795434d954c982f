//! The agent registry: which agents exist, online or offline, last seen, what they run, and
//! their delivery counters. The collector keeps its own registry (persisted in the store) and
//! never depends on retained messages for discovery, since the embedded broker replays at most
//! ~100 of them to a wildcard subscriber.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use watchstand_shared::wire::v1::{AgentState, ProbeInventory, Status};

/// Silence longer than this many slowest intervals means offline, even without a last will.
pub const SILENCE_INTERVALS: u64 = 3;
/// Slowest interval assumed when an agent has not announced one.
pub const DEFAULT_SLOWEST_INTERVAL_MS: u64 = 60_000;

/// What the collector knows about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Site.
    pub site: String,
    /// Agent id.
    pub agent: String,
    /// Current boot id.
    pub boot: String,
    /// Online or offline, as last announced (birth, last will, orderly shutdown).
    pub announced: AgentState,
    /// When `announced` last changed, epoch ms.
    pub since_ms: u64,
    /// Last message of any kind, epoch ms.
    pub last_seen_ms: u64,
    /// Entries stored from this agent.
    pub stored: u64,
    /// Duplicate entries dropped.
    pub duplicates: u64,
    /// Seqs missing between a boot's watermark and its highest seq (an open gap).
    pub gaps_open: u64,
    /// Entries the agent declared lost (gap records).
    pub lost_entries: u64,
    /// Probes it announced.
    #[serde(default)]
    pub probes: Vec<ProbeInventory>,
    /// Slowest announced interval, ms.
    #[serde(default)]
    pub slowest_interval_ms: Option<u64>,
    /// Agent version.
    #[serde(default)]
    pub version: Option<String>,
}

impl AgentRecord {
    fn new(site: &str, agent: &str, boot: &str, now_ms: u64) -> Self {
        Self {
            site: site.to_owned(),
            agent: agent.to_owned(),
            boot: boot.to_owned(),
            announced: AgentState::Online,
            since_ms: now_ms,
            last_seen_ms: now_ms,
            stored: 0,
            duplicates: 0,
            gaps_open: 0,
            lost_entries: 0,
            probes: Vec::new(),
            slowest_interval_ms: None,
            version: None,
        }
    }

    /// Online unless it said offline or has been silent past 3 × its slowest interval.
    pub fn state_at(&self, now_ms: u64) -> AgentState {
        let silence_limit = SILENCE_INTERVALS
            * self
                .slowest_interval_ms
                .unwrap_or(DEFAULT_SLOWEST_INTERVAL_MS);
        if self.announced == AgentState::Offline
            || now_ms.saturating_sub(self.last_seen_ms) > silence_limit
        {
            AgentState::Offline
        } else {
            AgentState::Online
        }
    }

    /// The announced interval of `probe`, if known.
    pub fn probe_interval_ms(&self, probe: &str) -> Option<u64> {
        self.probes
            .iter()
            .find(|p| p.id == probe)
            .map(|p| p.interval_ms)
    }
}

/// All agents, behind a lock held only for tiny critical sections (never across `.await`).
#[derive(Debug, Default)]
pub struct Registry {
    agents: Mutex<HashMap<String, AgentRecord>>,
}

impl Registry {
    /// A registry holding `records` (from the store).
    pub fn new(records: impl IntoIterator<Item = AgentRecord>) -> Self {
        Self {
            agents: Mutex::new(records.into_iter().map(|r| (r.agent.clone(), r)).collect()),
        }
    }

    /// Runs `f` on the record of `agent`, creating it if new; returns a copy after the change.
    pub fn update(
        &self,
        site: &str,
        agent: &str,
        boot: &str,
        now_ms: u64,
        f: impl FnOnce(&mut AgentRecord),
    ) -> AgentRecord {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let record = agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentRecord::new(site, agent, boot, now_ms));
        record.site = site.to_owned();
        record.last_seen_ms = record.last_seen_ms.max(now_ms);
        f(record);
        record.clone()
    }

    /// Applies a status message (birth or last will).
    pub fn apply_status(&self, status: &Status, now_ms: u64) -> AgentRecord {
        self.update(&status.site, &status.agent, &status.boot, now_ms, |r| {
            let is_new_boot = r.boot != status.boot;
            // A last will of an earlier boot (retained, or delivered late) says nothing about
            // the boot that is running now.
            if status.state == AgentState::Offline
                && is_new_boot
                && r.announced == AgentState::Online
            {
                return;
            }
            if r.announced != status.state || is_new_boot {
                r.since_ms = now_ms;
            }
            r.announced = status.state;
            r.boot = status.boot.clone();
            if status.state == AgentState::Online {
                r.probes = status.probes.clone();
                r.slowest_interval_ms = status.slowest_interval_ms();
                r.version = status.version.clone();
            }
        })
    }

    /// A snapshot of every record, sorted by agent id.
    pub fn snapshot(&self) -> Vec<AgentRecord> {
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<AgentRecord> = agents.values().cloned().collect();
        all.sort_by(|a, b| a.agent.cmp(&b.agent));
        all
    }

    /// One record.
    pub fn get(&self, agent: &str) -> Option<AgentRecord> {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(boot: &str, state: AgentState, interval_ms: u64) -> Status {
        Status {
            v: 1,
            site: "s".into(),
            agent: "a".into(),
            boot: boot.into(),
            state,
            at_ms: None,
            version: None,
            probes: vec![ProbeInventory {
                id: "p".into(),
                kind: "tcp".into(),
                target: "127.0.0.1:1".into(),
                interval_ms,
            }],
            capacity_interval_ms: None,
        }
    }

    #[test]
    fn silence_past_three_slowest_intervals_means_offline() {
        let reg = Registry::default();
        let r = reg.apply_status(&status("b1", AgentState::Online, 1_000), 10_000);
        assert_eq!(r.state_at(13_000), AgentState::Online);
        assert_eq!(r.state_at(13_001), AgentState::Offline);
    }

    #[test]
    fn last_will_marks_offline_but_a_stale_will_of_an_old_boot_does_not() {
        let reg = Registry::default();
        reg.apply_status(&status("b1", AgentState::Online, 1_000), 1_000);
        let r = reg.apply_status(&status("b1", AgentState::Offline, 1_000), 2_000);
        assert_eq!(r.state_at(2_000), AgentState::Offline);
        assert_eq!(r.since_ms, 2_000);
        reg.apply_status(&status("b2", AgentState::Online, 1_000), 3_000);
        let r = reg.apply_status(&status("b1", AgentState::Offline, 1_000), 3_100);
        assert_eq!(r.state_at(3_100), AgentState::Online);
        assert_eq!(r.boot, "b2");
    }
}
