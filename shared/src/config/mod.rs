//! Config pieces both binaries use, and the key-path errors that config validation reports.
//!
//! Config is handled in three stages (raw serde types → `validate()` → runtime build). This
//! module holds the parts that agent and collector share: [`Duration`] for `"10s"` values, the
//! [`MqttConfig`] block, [`ConfigError`] with its key path, and [`Backoff`] for reconnects.

mod backoff;
mod duration;
mod mqtt;
mod mqtt_tls;
mod parse;
pub mod secret_file;

pub use backoff::Backoff;
pub use duration::{Duration, DurationError};
pub use mqtt::{MqttConfig, MqttConnectError, MqttConnector, MqttProtocol};
pub use mqtt_tls::{MqttTlsConfig, MqttTlsError};
pub use parse::from_toml;

use std::fmt;
use std::path::{Path, PathBuf};

/// One semantic config problem: the key path it concerns and a sentence that quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `probes[id="web"].timeout`.
    pub key: String,
    /// What is wrong, quoting the offending value.
    pub message: String,
    /// 1-based line in the file, when known (parse-level problems).
    pub line: Option<usize>,
    /// The file the problem is in when it is not the [`ConfigErrors::origin`] (a services file).
    pub file: Option<PathBuf>,
}

impl ConfigError {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            line: None,
            file: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one config file, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file the config came from (or a name such as `<inline>`).
    pub origin: PathBuf,
    /// The problems, in file order where possible.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.origin.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            let file = e.file.as_deref().unwrap_or(&self.origin).display();
            match e.line {
                Some(line) => write!(f, "\n  {file}:{line}: {e}")?,
                None => write!(f, "\n  {file}: {e}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a config file could not be loaded: unreadable, not TOML of the right shape, or invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax or shape error (unknown key, wrong type), with line and column.
    #[error("{path}: {message}")]
    Parse {
        /// The path as given.
        path: PathBuf,
        /// The parser's message, which names the key and position.
        message: String,
    },
    /// The file parsed but its values break the rules.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl LoadError {
    /// A parse error for `path` from any parser error's text, trimmed of trailing blank lines.
    pub fn parse(path: &Path, message: impl fmt::Display) -> Self {
        LoadError::Parse {
            path: path.to_owned(),
            message: message.to_string().trim_end().to_owned(),
        }
    }
}

/// Collects problems while validating, with helpers for the common checks.
#[derive(Debug, Default)]
pub struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    /// Records one problem.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    /// Records every problem in `more`.
    pub fn extend(&mut self, more: impl IntoIterator<Item = ConfigError>) {
        self.errors.extend(more);
    }

    /// Checks `id` against the id rules and records a problem at `key` if it breaks one.
    pub fn check_id(&mut self, key: &str, id: &str) {
        if let Err(e) = crate::topic::validate_id(id) {
            self.push(key, format!("id {id:?} {e}"));
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were recorded (compare before and after checking one item to know
    /// whether it was valid).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The problems as an error for `origin`, or `Ok(value)` when there were none.
    ///
    /// # Errors
    /// Returns every recorded problem at once.
    pub fn finish<T>(self, origin: &Path, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors {
                origin: origin.to_owned(),
                errors: self.errors,
            })
        }
    }
}
