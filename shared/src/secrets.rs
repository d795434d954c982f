//! Secrets at the edges: a [`Secret`] string whose `Debug`/`Display` never show the value (so a
//! token or password in a config or argument struct cannot reach a log line or a panic message),
//! and [`readable_by_others`], the check behind the warning about secret files that the group or
//! other users can read.

use std::path::Path;

/// A secret value (API token, password). Shows as `<redacted>`; read it with [`Secret::expose`]
/// only where it is used (an `Authorization` header, a hash).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The permission bits (`0o077` part) of `path` when its group or other users may read or write
/// it, `None` when only the owner may (or on systems without Unix modes).
///
/// # Errors
/// The file's metadata cannot be read.
pub fn readable_by_others(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path)?;
        Ok(None)
    }
}

/// Reads a secret from the first line of `path` (trimmed), warning (one `WARN` naming the file and
/// its mode, never the content) when the group or other users can read it.
///
/// # Errors
/// The file cannot be read, or holds nothing.
pub fn read_secret_file(path: &Path) -> std::io::Result<Secret> {
    if let Some(mode) = readable_by_others(path)? {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "Secret file is readable by its group or other users; chmod 600 it."
        );
    }
    let text = std::fs::read_to_string(path)?;
    let value = text.lines().next().unwrap_or("").trim();
    if value.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} holds no secret (its first line is empty)",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_its_value() {
        let s = Secret::new("wst_hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "wst_hunter2");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_others_is_flagged_and_still_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "wst_abc\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(readable_by_others(&path).expect("meta"), Some(0o644));
        assert_eq!(read_secret_file(&path).expect("read").expose(), "wst_abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(readable_by_others(&path).expect("meta"), None);
        std::fs::write(&path, "\n").expect("write");
        assert!(read_secret_file(&path).is_err());
    }
}
