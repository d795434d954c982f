//! A small filesystem made by a test, to run out of space for real: a tmpfs with a `size=`
//! limit mounted on a fresh temporary directory, unmounted (lazily, so that a process still
//! holding a file cannot keep it) when dropped, also on panic. Needs root; where `mount` is
//! refused, [`SmallFs::mount`] says why, and the caller decides (in CI a refusal fails the test,
//! see [`SmallFs::mount_or_skip`]).
//!
//! Shared by the storage crash harness (`shared/tests/crash_harness.rs`) and the e2e harness
//! (`tests/src/lib.rs` includes this file with `#[path]`).

// A test helper: its notes (a skip, a failed unmount) go to the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs of a fixed size.
#[derive(Debug)]
pub struct SmallFs {
    /// Keeps the mount point's parent alive until after the unmount.
    _dir: tempfile::TempDir,
    root: PathBuf,
    fillers: usize,
}

impl SmallFs {
    /// Mounts a tmpfs of `size_mib` MiB on a new temporary directory.
    ///
    /// # Errors
    /// The directory cannot be made or `mount` fails (not root, no tmpfs): the reason.
    pub fn mount(size_mib: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let root = dir.path().join("fs");
        std::fs::create_dir(&root).map_err(|e| format!("mount point: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0755"))
            .arg("watchstand-test")
            .arg(&root)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount tmpfs on {} failed ({}): {}",
                root.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            _dir: dir,
            root,
            fillers: 0,
        })
    }

    /// [`SmallFs::mount`], or `None` with a note on stderr when mounting is refused outside CI.
    ///
    /// # Panics
    /// Mounting is refused and `CI` is set: the test must fail there, not skip.
    pub fn mount_or_skip(size_mib: u64) -> Option<Self> {
        match Self::mount(size_mib) {
            Ok(fs) => Some(fs),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("a small filesystem is required in CI (run as root): {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED (not in CI): cannot make a small filesystem: {e}");
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Fills the filesystem with a new filler file until a write fails with no space left;
    /// returns the bytes written. Other processes writing meanwhile may take the last blocks.
    ///
    /// # Errors
    /// A failure other than "no space".
    pub fn fill(&mut self) -> std::io::Result<u64> {
        self.fillers += 1;
        let path = self.root.join(format!("filler-{}", self.fillers));
        let mut file = File::create(&path)?;
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => return Ok(written), // ENOSPC
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes every filler file: the space comes back.
    ///
    /// # Errors
    /// A filler cannot be removed.
    pub fn free(&mut self) -> std::io::Result<()> {
        for n in 1..=self.fillers {
            match std::fs::remove_file(self.root.join(format!("filler-{n}"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a child still holding a file (a test that panicked before killing it) must not
        // leave the mount behind.
        let unmounted = Command::new("umount").arg("-l").arg(&self.root).status();
        if !matches!(unmounted, Ok(s) if s.success()) {
            eprintln!("could not unmount {}: {unmounted:?}", self.root.display());
        }
    }
}
