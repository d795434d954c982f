//! Files that hold secrets (private keys, configs with a password): a warning when group or
//! others may read them, as ssh does for keys. Only the path and mode are logged, never content.

use std::path::Path;

/// The file's permission bits if group or others have any access to it; `None` when it is
/// private to its owner or cannot be inspected (then the read itself reports the problem).
pub fn exposed_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs a warning naming `key` and `path` when [`exposed_mode`] finds group or world access.
pub fn warn_if_exposed(key: &str, path: &Path) {
    if let Some(mode) = exposed_mode(path) {
        tracing::warn!(
            key,
            path = %path.display(),
            mode = format!("{mode:03o}"),
            "File holding a secret is readable by group or others; chmod 600 it and chown it to the service user."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn group_or_world_access_is_reported_and_owner_only_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key.pem");
        std::fs::write(&f, "x").unwrap();
        for (mode, want) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o604, Some(0o604)),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(exposed_mode(&f), want, "mode {mode:o}");
        }
        assert_eq!(exposed_mode(&dir.path().join("missing")), None);
    }
}
