//! The probe set of `bench footprint`: which kinds, the loopback targets they check, each
//! probe's agent config and the blackbox_exporter module + target that does the same check.
//!
//! Kinds are dealt round-robin over the N probes (`--kinds http,tcp,dns,icmp,tls,exec`: probe
//! 0 http, 1 tcp, …, 6 http again). Targets, all started by the bench on 127.0.0.1: the HTTP
//! server (one path per probe), a TCP port that accepts and closes, a DNS server answering
//! `svc.bench.test A 192.0.2.10`, 127.0.0.1 itself for ICMP (one echo per check, as blackbox
//! sends), a TLS server with a leaf from a CA made here (the CA file given to both sides), and
//! for `exec` Debian's `check_dummy 0` (a two-line script when monitoring-plugins is missing).
//! `exec` has no blackbox_exporter counterpart: its probes run on the agent side only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::RData;
use watchstand_tests::dns::{Behaviour, DnsServer};
use watchstand_tests::tls_target::{TestCa, TlsTarget};
use watchstand_tests::TcpTarget;

use crate::peers::Target;

/// The name the DNS probes ask for, and its one A record.
const DNS_NAME: &str = "svc.bench.test";
const DNS_ADDR: &str = "192.0.2.10";
/// Debian's monitoring-plugins `check_dummy`.
const CHECK_DUMMY: &str = "/usr/lib/nagios/plugins/check_dummy";

/// A probe kind in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Http,
    Tcp,
    Dns,
    Icmp,
    Tls,
    Exec,
}

impl Kind {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Dns => "dns",
            Self::Icmp => "icmp",
            Self::Tls => "tls",
            Self::Exec => "exec",
        }
    }
}

/// `http,tcp,…`.
pub fn names(kinds: &[Kind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

/// One probe: the agent's `[[probes]]` block and blackbox's module + target (`None`: no
/// counterpart).
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: Kind,
    pub toml: String,
    pub blackbox: Option<(&'static str, String)>,
}

/// The targets beyond the HTTP server, started only for the kinds in the set.
pub struct Targets {
    tcp: Option<TcpTarget>,
    dns: Option<DnsServer>,
    tls: Option<TlsTarget>,
    ca_file: PathBuf,
    exec: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Targets {
    /// Starts what `kinds` need on `target`'s runtime; files go to a temporary directory
    /// under `root`.
    pub fn start(target: &Target, kinds: &[Kind], root: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("bench-footprint-targets-")
            .tempdir_in(root)
            .with_context(|| format!("temporary directory in {}", root.display()))?;
        let ca_file = dir.path().join("ca.pem");
        let tcp = kinds
            .contains(&Kind::Tcp)
            .then(|| target.block_on(TcpTarget::start()));
        let dns = kinds.contains(&Kind::Dns).then(|| {
            let dns = target.block_on(DnsServer::start());
            let [a, b, c, d] = DNS_ADDR
                .parse::<std::net::Ipv4Addr>()
                .expect("constant address")
                .octets();
            dns.set(
                DNS_NAME,
                Behaviour::Answer(vec![RData::A(A::new(a, b, c, d))]),
            );
            dns
        });
        let tls = kinds.contains(&Kind::Tls).then(|| {
            let ca = TestCa::new("Watchstand Bench CA");
            ca.write_pem(&ca_file);
            target.block_on(TlsTarget::start(&ca.issue(&["localhost"], -1, 90)))
        });
        let exec = if Path::new(CHECK_DUMMY).exists() {
            vec![CHECK_DUMMY.to_owned(), "0".to_owned()]
        } else {
            let script = dir.path().join("check_ok");
            std::fs::write(&script, "#!/bin/sh\necho 'OK - bench'\n")
                .with_context(|| format!("writing {}", script.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", script.display()))?;
            vec![script.display().to_string()]
        };
        Ok(Self {
            tcp,
            dns,
            tls,
            ca_file,
            exec,
            _dir: dir,
        })
    }

    /// What the exec probes run.
    pub fn exec_command(&self) -> String {
        self.exec.join(" ")
    }

    fn addr(t: Option<SocketAddr>, what: &str) -> anyhow::Result<SocketAddr> {
        t.with_context(|| format!("the {what} target was not started"))
    }

    /// The N probes, kinds dealt round-robin, at `interval` with `timeout`.
    pub fn jobs(
        &self,
        target: &Target,
        kinds: &[Kind],
        n: usize,
        interval: &str,
        timeout: &str,
    ) -> anyhow::Result<Vec<Job>> {
        (0..n)
            .map(|i| {
                let kind = kinds[i % kinds.len()];
                let (body, blackbox) = match kind {
                    Kind::Http => {
                        let url = target.http.url_path(&format!("/svc/{i:03}/health"));
                        (format!("url = \"{url}\"\n"), Some(("http_2xx", url)))
                    }
                    Kind::Tcp => {
                        let addr = Self::addr(self.tcp.as_ref().map(|t| t.addr), "tcp")?;
                        (
                            format!("address = \"{addr}\"\n"),
                            Some(("tcp_connect", addr.to_string())),
                        )
                    }
                    Kind::Dns => {
                        let addr = Self::addr(self.dns.as_ref().map(|t| t.addr), "dns")?;
                        (
                            format!(
                                "name = \"{DNS_NAME}\"\nrecord_type = \"A\"\nserver = \"{addr}\"\nexpect = [\"{DNS_ADDR}\"]\n"
                            ),
                            Some(("dns_a", addr.to_string())),
                        )
                    }
                    Kind::Icmp => (
                        "host = \"127.0.0.1\"\ncount = 1\n".to_owned(),
                        Some(("icmp", "127.0.0.1".to_owned())),
                    ),
                    Kind::Tls => {
                        let addr = Self::addr(self.tls.as_ref().map(|t| t.addr), "tls")?;
                        (
                            format!(
                                "address = \"{addr}\"\nserver_name = \"localhost\"\nca_file = \"{}\"\n",
                                self.ca_file.display()
                            ),
                            Some(("tls_connect", addr.to_string())),
                        )
                    }
                    Kind::Exec => (format!("command = {:?}\n", self.exec), None),
                };
                Ok(Job {
                    kind,
                    toml: format!(
                        "[[probes]]\nid = \"p{i:03}\"\nkind = \"{}\"\n{body}interval = \"{interval}\"\ntimeout = \"{timeout}\"\n\n",
                        kind.name()
                    ),
                    blackbox,
                })
            })
            .collect()
    }

    /// blackbox_exporter's config: the bench's `http_2xx` module and one module per other kind,
    /// each doing what the agent's probe does (IPv4, same name and expected answer, same CA).
    pub fn blackbox_config(&self) -> String {
        let ip4 = "      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n";
        format!(
            "{http}  tcp_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n{ip4}  dns_a:\n    prober: dns\n    timeout: 5s\n    dns:\n{ip4}      query_name: {DNS_NAME}\n      query_type: A\n      transport_protocol: udp\n      valid_rcodes: [NOERROR]\n      validate_answer_rrs:\n        fail_if_none_matches_regexp: ['.*\\t{dns_re}$']\n  icmp:\n    prober: icmp\n    timeout: 5s\n    icmp:\n{ip4}  tls_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n{ip4}      tls: true\n      tls_config:\n        ca_file: {ca}\n        server_name: localhost\n",
            http = watchstand_tests::process::BLACKBOX_CONFIG,
            dns_re = DNS_ADDR.replace('.', "\\."),
            ca = self.ca_file.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_dealt_round_robin_and_exec_has_no_blackbox_module() {
        let target = Target::start().unwrap();
        let kinds = [
            Kind::Http,
            Kind::Tcp,
            Kind::Dns,
            Kind::Icmp,
            Kind::Tls,
            Kind::Exec,
        ];
        let dir = tempfile::tempdir().unwrap();
        let t = Targets::start(&target, &kinds, dir.path()).unwrap();
        let jobs = t.jobs(&target, &kinds, 7, "10s", "5s").unwrap();
        let got: Vec<_> = jobs
            .iter()
            .map(|j| (j.kind, j.blackbox.as_ref().map(|b| b.0)))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Http, Some("http_2xx")),
                (Kind::Tcp, Some("tcp_connect")),
                (Kind::Dns, Some("dns_a")),
                (Kind::Icmp, Some("icmp")),
                (Kind::Tls, Some("tls_connect")),
                (Kind::Exec, None),
                (Kind::Http, Some("http_2xx")),
            ]
        );
        assert!(
            jobs[5].toml.contains("kind = \"exec\"\ncommand = ["),
            "{}",
            jobs[5].toml
        );
        assert!(jobs[6]
            .toml
            .starts_with("[[probes]]\nid = \"p006\"\nkind = \"http\"\n"));
        let config = t.blackbox_config();
        for module in [
            "http_2xx:",
            "tcp_connect:",
            "dns_a:",
            "icmp:",
            "tls_connect:",
        ] {
            assert!(config.contains(module), "{module} missing:\n{config}");
        }
    }
}
