//! Files that hold secrets (private keys, configs with a password): a warning when they are
//! open to more than the service. The rule is PostgreSQL's for its TLS key: others must have no
//! access; the group may read only a root-owned file (`640 root:watchstand`, so the service reads
//! but cannot change it). Only the path and mode are logged, never content.

use std::path::Path;

/// The file's permission bits if others have any access to it, or its group has and root does
/// not own it; `None` when it is private enough or cannot be inspected (then the read itself
/// reports the problem).
pub fn exposed_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.mode() & 0o777;
        let group_ok = meta.uid() == 0 && mode & 0o030 == 0;
        (mode & 0o007 != 0 || (mode & 0o070 != 0 && !group_ok)).then_some(mode)
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
            "File holding a secret is open to group or others; make it 600 owned by the service user, or 640 owned by root with the service's group."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn world_access_or_group_access_to_a_file_root_does_not_own_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key.pem");
        std::fs::write(&f, "x").unwrap();
        let root = std::fs::metadata(&f).map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.uid() == 0
        });
        let mut cases = vec![
            (0o600, None),
            (0o400, None),
            (0o604, Some(0o604)),
            (0o644, Some(0o644)),
            (0o660, Some(0o660)),
        ];
        if root.unwrap() {
            // root-owned: the group may read (640 root:watchstand), not write.
            cases.push((0o640, None));
            for (mode, want) in &cases {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
                assert_eq!(exposed_mode(&f), *want, "root-owned, mode {mode:o}");
            }
            std::os::unix::fs::chown(&f, Some(65_534), None).unwrap();
            cases.pop();
        }
        // Owned by the service user: group access is too much.
        cases.push((0o640, Some(0o640)));
        for (mode, want) in cases {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(exposed_mode(&f), want, "user-owned, mode {mode:o}");
        }
        assert_eq!(exposed_mode(&dir.path().join("missing")), None);
    }
}
