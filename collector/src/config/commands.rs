//! `[commands]`: the collector's side of signed commands — where its Ed25519 signing key is
//! (`key_file`, written by `watchstand-collector keys generate`) and how often a runbook's
//! `agent_action` re-sends an unanswered command. The key is read at `check` and at start, not
//! in the pure validation.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use watchstand_shared::command::{CommandKey, KeyError};
use watchstand_shared::config::{Duration, Problems};

use crate::runbook::{Runbook, StepAction};

/// `[commands]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommandsSection {
    /// The private key file, relative to the config file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How often an unanswered command is sent again (same command: same id and nonce).
    #[serde(default = "default_resend_every")]
    pub resend_every: Duration,
}

impl Default for RawCommandsSection {
    fn default() -> Self {
        Self {
            key_file: None,
            resend_every: default_resend_every(),
        }
    }
}

const fn default_resend_every() -> Duration {
    Duration::from_secs(5)
}

/// `[commands]` validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    /// The private key file (resolved against the config file's directory), if configured.
    pub key_file: Option<PathBuf>,
    /// Re-send interval of unanswered commands.
    pub resend_every: std::time::Duration,
}

impl CommandSettings {
    /// Reads the signing key, if one is configured.
    ///
    /// # Errors
    /// The file cannot be read or holds no key; the message names `commands.key_file`.
    pub fn load_key(&self) -> Result<Option<CommandKey>, KeyError> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        CommandKey::load(path)
            .map(Some)
            .map_err(|e| KeyError::Invalid {
                what: format!("commands.key_file: {e}"),
            })
    }
}

/// Checks `[commands]` against the runbooks: an `agent_action` step needs the signing key.
pub fn validate(
    raw: &RawCommandsSection,
    runbooks: &[Runbook],
    base: &Path,
    p: &mut Problems,
) -> CommandSettings {
    let resend_every = std::time::Duration::from_millis(raw.resend_every.as_millis());
    if resend_every < std::time::Duration::from_millis(100) {
        p.push(
            "commands.resend_every",
            format!("{} is too short; use at least 100ms", raw.resend_every),
        );
    }
    if raw.key_file.is_none() {
        let uses = runbooks.iter().find_map(|b| {
            b.steps
                .iter()
                .find(|s| matches!(s.action, StepAction::AgentAction { .. }))
                .map(|s| (b.id.as_str(), s.id.as_str()))
        });
        if let Some((book, step)) = uses {
            p.push(
                "commands.key_file",
                format!(
                    "runbook {book:?} step {step:?} is an agent_action, which is sent as a signed \
                     command: set [commands] key_file to the collector's private key \
                     (watchstand-collector keys generate --out FILE)"
                ),
            );
        }
    }
    CommandSettings {
        key_file: raw.key_file.as_ref().map(|f| base.join(f)),
        resend_every,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_action_without_a_key_names_the_key_and_a_bad_key_file_names_it_too() {
        let text = "[collector]\ndata_dir = \"d\"\n[[services]]\nid = \"web\"\nname = \"Web\"\n\
                    criticality = \"high\"\nrto = \"1h\"\nrpo = \"5m\"\nprobes = [\"a/p\"]\n\
                    slo = { availability = 99.9 }\n\
                    [[runbooks]]\nid = \"fo\"\nservice = \"web\"\n[[runbooks.steps]]\nid = \"promote\"\n\
                    kind = \"agent_action\"\nagent = \"a\"\naction = \"promote\"\n";
        let raw = crate::config::from_str(text, Path::new("c.toml")).expect("parses");
        let err = crate::config::validate(raw, Path::new("c.toml"), Path::new("/etc/ws"))
            .expect_err("a key is needed")
            .to_string();
        assert!(
            err.contains("commands.key_file")
                && err.contains("\"fo\" step \"promote\" is an agent_action"),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.key"), "not a key\n").expect("write");
        let with_key = format!("{text}[commands]\nkey_file = \"bad.key\"\nresend_every = \"1s\"\n");
        let raw = crate::config::from_str(&with_key, Path::new("c.toml")).expect("parses");
        let config = crate::config::validate(raw, Path::new("c.toml"), dir.path()).expect("valid");
        assert_eq!(
            config.commands.resend_every,
            std::time::Duration::from_secs(1)
        );
        let bad = config
            .commands
            .load_key()
            .expect_err("not a key")
            .to_string();
        assert!(
            bad.starts_with("commands.key_file: ") && bad.contains("bad.key"),
            "{bad}"
        );
        let good = CommandKey::generate();
        good.write(&dir.path().join("good.key"), false)
            .expect("write key");
        let settings = CommandSettings {
            key_file: Some(dir.path().join("good.key")),
            resend_every: std::time::Duration::from_secs(1),
        };
        let loaded = settings.load_key().expect("loads").expect("configured");
        assert_eq!(loaded.public(), good.public());
    }
}
