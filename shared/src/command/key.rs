//! Keys: the collector's private signing key ([`CommandKey`]) and the agents' [`PublicKey`].
//!
//! # File format of the private key
//! A text file, mode 0600, with `#` comment lines and one line holding the 32-byte Ed25519 seed in
//! standard base64. `watchstand-collector keys generate --out FILE` writes it and prints the public
//! key; an agent's `[commands] public_key` holds that public key (32 bytes, standard base64).
//!
//! # Key id
//! Each command names its key by fingerprint, `ed25519:` + the first 8 bytes of SHA-256 of the
//! public key in hex, so an agent tells "signed by a key I do not hold" (`unknown_key`) apart
//! from "signature does not verify" (`bad_signature`), and a key rotation shows in the logs.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use super::canonical::{canonical_bytes, UnsignedCommand, NONCE_BYTES};
use crate::wire::v1::command::Command;
use crate::wire::v1::VERSION;

/// Why a key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file cannot be written.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists and overwriting was not asked for.
    #[error("key file {path} exists; refusing to overwrite it (use --force to replace it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The text is not a key.
    #[error("{what}")]
    Invalid {
        /// What is wrong, naming the expected form.
        what: String,
    },
}

/// The collector's Ed25519 signing key. `Debug` shows only the key id.
#[derive(Clone)]
pub struct CommandKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CommandKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandKey")
            .field("key_id", &self.public().key_id())
            .finish_non_exhaustive()
    }
}

impl CommandKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(seed)
    }

    /// The key for a 32-byte seed (tests pin signatures with a fixed seed).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Parses the key file's text (see the module docs).
    ///
    /// # Errors
    /// No key line, not base64, or not 32 bytes.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| KeyError::Invalid {
                what: "no key line (expected the base64 of a 32-byte Ed25519 seed)".into(),
            })?;
        let bytes = BASE64.decode(line).map_err(|e| KeyError::Invalid {
            what: format!("the key line is not standard base64: {e}"),
        })?;
        let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Invalid {
            what: format!("the key is {} bytes; an Ed25519 seed is 32", b.len()),
        })?;
        Ok(Self::from_seed(seed))
    }

    /// Reads a key file; warns (log) when group or others may read it.
    ///
    /// # Errors
    /// The file cannot be read or holds no valid key (the message names the path).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        crate::config::secret_file::warn_if_exposed("commands.key_file", path);
        Self::from_text(&text).map_err(|e| KeyError::Invalid {
            what: format!("{}: {e}", path.display()),
        })
    }

    /// The file text for this key.
    pub fn to_text(&self) -> String {
        format!(
            "# Watchstand command signing key (Ed25519 seed, base64). Keep it private (mode 0600).\n\
             # Public key for agents' [commands] public_key: {}\n{}\n",
            self.public().to_base64(),
            BASE64.encode(self.signing.to_bytes())
        )
    }

    /// Writes the key to `path` with mode 0600 (created so, never readable by others even for a
    /// moment); an existing file is replaced only when `force` is set.
    ///
    /// # Errors
    /// The file exists (without `force`) or cannot be written.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let write_err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                write_err(e)
            }
        })?;
        // An existing file replaced with --force keeps its old mode unless set again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(write_err)?;
        }
        file.write_all(self.to_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_err)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_verifying(self.signing.verifying_key())
    }

    /// Signs `command`: fills in `v`, `key_id` and the signature over the canonical bytes.
    pub fn sign(&self, command: UnsignedCommand) -> Command {
        let mut signed = Command {
            v: VERSION,
            site: command.site,
            agent: command.agent,
            command_id: command.command_id,
            run_id: command.run_id,
            step: command.step,
            action: command.action,
            args: command.args,
            issued_ms: command.issued_ms,
            expires_ms: command.expires_ms,
            nonce: command.nonce,
            key_id: self.public().key_id().to_owned(),
            signature: String::new(),
        };
        let signature = self.signing.sign(&canonical_bytes(&signed));
        signed.signature = BASE64.encode(signature.to_bytes());
        signed
    }
}

/// A fresh random nonce: [`NONCE_BYTES`] bytes as lower-case hex.
pub fn new_nonce() -> String {
    let bytes: [u8; NONCE_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An Ed25519 public key with its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublicKey").field(&self.key_id).finish()
    }
}

impl PublicKey {
    fn from_verifying(key: VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let key_id = format!(
            "ed25519:{}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self { key, key_id }
    }

    /// Parses the standard base64 of a 32-byte Ed25519 public key.
    ///
    /// # Errors
    /// Not base64, not 32 bytes, or not a valid curve point.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64.decode(text.trim()).map_err(|e| KeyError::Invalid {
            what: format!("{text:?} is not standard base64: {e}"),
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::Invalid {
            what: format!("{text:?} is {} bytes; an Ed25519 public key is 32", b.len()),
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Invalid {
            what: format!("{text:?} is not a valid Ed25519 public key"),
        })?;
        Ok(Self::from_verifying(key))
    }

    /// The standard base64 of the key.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.key.as_bytes())
    }

    /// The fingerprint commands carry in `key_id`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::canonical::tests::fixed;

    /// RFC 8032 test 1's secret key, so the pinned values can be checked with other tools.
    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    fn seed() -> [u8; 32] {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = u8::from_str_radix(&SEED_HEX[2 * i..2 * i + 2], 16).unwrap();
        }
        s
    }

    #[test]
    fn the_rfc_8032_key_has_its_published_public_key_and_a_stable_id() {
        let key = CommandKey::from_seed(seed());
        let public = key.public();
        assert_eq!(
            public.to_base64(),
            "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        );
        assert_eq!(public.key_id(), "ed25519:21fe31dfa154a261");
        assert_eq!(PublicKey::from_base64(&public.to_base64()).unwrap(), public);
    }

    #[test]
    fn the_signature_of_the_fixed_command_is_pinned() {
        let key = CommandKey::from_seed(seed());
        let c = fixed();
        let signed = key.sign(UnsignedCommand {
            site: c.site,
            agent: c.agent,
            command_id: c.command_id,
            run_id: c.run_id,
            step: c.step,
            action: c.action,
            args: c.args,
            issued_ms: c.issued_ms,
            expires_ms: c.expires_ms,
            nonce: c.nonce,
        });
        assert_eq!(signed.key_id, "ed25519:21fe31dfa154a261");
        // Checked independently: Python `cryptography`'s Ed25519 over the bytes pinned in
        // canonical.rs (with this key_id) gives the same signature.
        assert_eq!(
            signed.signature,
            "toUFdGT6mguVhMIVftzOwt2QDhT+WwL7vwupgzDHBDZNQU1P6iL8A2C1eheegjX0LBSiikeWVIErj4+LpC0gAA=="
        );
    }

    #[test]
    fn a_key_file_round_trips_is_0600_and_is_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmd.key");
        let key = CommandKey::generate();
        key.write(&path, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = CommandKey::load(&path).unwrap();
        assert_eq!(back.public(), key.public());
        let other = CommandKey::generate();
        let err = other.write(&path, false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert_eq!(CommandKey::load(&path).unwrap().public(), key.public());
        other.write(&path, true).unwrap();
        assert_eq!(CommandKey::load(&path).unwrap().public(), other.public());
    }

    #[test]
    fn bad_key_text_is_refused_with_a_clear_message() {
        let cases = [
            (
                "",
                "no key line (expected the base64 of a 32-byte Ed25519 seed)",
            ),
            (
                "# only a comment\n",
                "no key line (expected the base64 of a 32-byte Ed25519 seed)",
            ),
            ("AAAA\n", "the key is 3 bytes; an Ed25519 seed is 32"),
        ];
        for (text, want) in cases {
            assert_eq!(CommandKey::from_text(text).unwrap_err().to_string(), want);
        }
        assert!(CommandKey::from_text("!!!")
            .unwrap_err()
            .to_string()
            .starts_with("the key line is not standard base64"));
        assert_eq!(
            PublicKey::from_base64("AAAA").unwrap_err().to_string(),
            "\"AAAA\" is 3 bytes; an Ed25519 public key is 32"
        );
    }
}
