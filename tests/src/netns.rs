//! A network namespace a test makes (`ip netns add`), with its loopback up, for probes that
//! need a network the test controls (a blackhole route, hosts that stop answering ping).
//! Deleted when dropped. Needs root (or CAP_SYS_ADMIN) and `ip` from iproute2.

use std::process::{Command, Output};

/// A network namespace; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name (`ws-<pid>-<n>`).
    pub name: String,
}

fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Makes a namespace with `lo` up.
    ///
    /// # Errors
    /// `ip` is missing or not allowed to (not root).
    pub fn create() -> Result<Self, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ws-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// [`Netns::create`], or `None` with a SKIP line when it cannot be made outside CI;
    /// panics in CI.
    pub fn create_or_skip(what: &str) -> Option<Self> {
        match Self::create() {
            Ok(ns) => Some(ns),
            Err(e) => {
                assert!(
                    !crate::ci(),
                    "{what}: a network namespace is required in CI (run as root with iproute2): {e}"
                );
                crate::skip(what, &format!("cannot make a network namespace: {e}"));
                None
            }
        }
    }

    /// `ip ARGS` inside the namespace.
    ///
    /// # Errors
    /// The command failed.
    pub fn ip(&self, args: &[&str]) -> Result<Output, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.*` values are per namespace).
    ///
    /// # Errors
    /// The command failed.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let setting = format!("{key}={value}");
        ip(&["netns", "exec", &self.name, "sysctl", "-q", "-w", &setting]).map(|_| ())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _gone = ip(&["netns", "del", &self.name]);
    }
}
