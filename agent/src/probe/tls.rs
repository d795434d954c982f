//! The `tls` probe kind (probe stage of probe → scheduler → outbox → publisher → mqtt): a TCP
//! connect and TLS handshake per check, judged by the server's certificate.
//!
//! The handshake completes whatever the certificate (a recording verifier keeps the chain and
//! still checks the handshake signatures), so an invalid chain is reported with what it holds.
//! The chain is then validated separately with webpki against Mozilla's roots (the
//! `webpki-roots` crate, so a gateway without a system CA store works alike) or, with
//! `ca_file`, against the CAs in that PEM file only; the leaf is read with `x509-parser` for
//! its expiry, issuer and subject.
//!
//! Down: no connection or handshake, an invalid chain (unknown issuer, self-signed, bad
//! signature), expired or not yet valid, `server_name` not among the SANs, or fewer than
//! `crit_days` (default 7) days left. Degraded: fewer than `warn_days` (default 21). The text
//! (days left, expiry date, issuer, subject) is sent with every state, and the whole days left
//! (negative once expired) as the metric `days_left` whenever the leaf could be read.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Deserialize;
use tokio::net::TcpStream;
use watchstand_shared::config::{Duration, Problems};
use watchstand_shared::wire::v1::{ProbeMetric, ProbeState};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::tcp::split_address;
use super::{short_error, Check, Observation, ProbeError};

/// The wire name of this kind.
pub const KIND: &str = "tls";

const SECONDS_PER_DAY: i64 = 86_400;

/// A `kind = "tls"` probe as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbeConfig {
    /// Probe id, unique within the agent.
    pub id: String,
    /// `host:port` (IPv6 as `[::1]:port`).
    pub address: String,
    /// How often to check.
    pub interval: Duration,
    /// Hard timeout of one check; shorter than `interval`.
    pub timeout: Duration,
    /// The name the certificate must be valid for (and the SNI sent); default: the host of
    /// `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of the CAs to trust instead of Mozilla's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Fewer days left than this is degraded (default 21).
    #[serde(default = "default_warn_days")]
    pub warn_days: u32,
    /// Fewer days left than this is down (default 7).
    #[serde(default = "default_crit_days")]
    pub crit_days: u32,
}

const fn default_warn_days() -> u32 {
    21
}
const fn default_crit_days() -> u32 {
    7
}

impl TlsProbeConfig {
    /// A probe of `address` with the defaults, every 60 s with a 5 s timeout.
    pub fn new(id: &str, address: &str) -> Self {
        Self {
            id: id.to_owned(),
            address: address.to_owned(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            server_name: None,
            ca_file: None,
            warn_days: default_warn_days(),
            crit_days: default_crit_days(),
        }
    }

    /// The name checked against the certificate: `server_name`, else the host of `address`.
    pub fn name(&self) -> Option<&str> {
        self.server_name
            .as_deref()
            .or_else(|| split_address(&self.address).map(|(host, _)| host))
    }

    /// Kind-specific checks; `key` is the probe's place in the file. Pure: `ca_file` is read
    /// when the probe is built ([`TlsProbe::build`]; `watchstand-agent check` builds every probe).
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if split_address(&self.address).is_none() {
            problems.push(
                format!("{key}.address"),
                format!(
                    "address {:?} is not host:port (port 1-65535; IPv6 as [::1]:port)",
                    self.address
                ),
            );
        }
        if let Some(name) = &self.server_name {
            if ServerName::try_from(name.as_str()).is_err() {
                problems.push(
                    format!("{key}.server_name"),
                    format!("server_name {name:?} is not a DNS name or IP address"),
                );
            }
        }
        if self.warn_days <= self.crit_days {
            problems.push(
                format!("{key}.warn_days"),
                format!(
                    "{} must be greater than crit_days {}",
                    self.warn_days, self.crit_days
                ),
            );
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push(format!("{key}.ca_file"), "must not be empty");
        }
    }

    /// Resolves a relative `ca_file` against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(path) = self.ca_file.as_mut().filter(|p| p.is_relative()) {
            *path = base.join(&*path);
        }
    }
}

/// The CAs of a PEM file.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{} holds an unusable CA: {e}", path.display()))?;
    }
    Ok(roots)
}

/// What the handshake presented and what webpki made of it.
#[derive(Debug)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Result<(), rustls::Error>,
}

/// Accepts any certificate so that the handshake completes, keeping the chain and the verdict
/// of the real verifier; handshake signatures are still checked.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen { chain, verdict });
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the leaf certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// `notAfter`, epoch seconds.
    pub not_after: i64,
    /// `notAfter` as `YYYY-MM-DD`.
    pub not_after_date: String,
    /// The issuer's common name (the whole issuer when it has none).
    pub issuer: String,
    /// The subject's common name (the whole subject when it has none).
    pub subject: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub sans: Vec<String>,
}

/// The common name of a distinguished name, or all of it.
fn common_name(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| name.to_string(), str::to_owned)
}

/// Reads the leaf's dates, names and SANs.
///
/// # Errors
/// The certificate is not DER X.509.
pub fn read_leaf(der: &[u8]) -> Result<Leaf, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("leaf certificate: {e}"))?;
    let not_after = cert.validity().not_after;
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .ok()
                        .map(|a| std::net::Ipv4Addr::from(a).to_string()),
                    16 => <[u8; 16]>::try_from(*b)
                        .ok()
                        .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Leaf {
        not_after: not_after.timestamp(),
        not_after_date: not_after.to_datetime().date().to_string(),
        issuer: common_name(cert.issuer()),
        subject: common_name(cert.subject()),
        sans,
    })
}

/// A runnable TLS certificate probe.
#[derive(Debug)]
pub struct TlsProbe {
    address: String,
    server_name: ServerName<'static>,
    verifier: Arc<WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    warn_days: i64,
    crit_days: i64,
}

impl TlsProbe {
    /// The runtime probe of a validated config: reads `ca_file` (or takes Mozilla's roots) and
    /// builds the verifier.
    ///
    /// # Errors
    /// `ca_file` became unreadable since validation, or a value validation should have refused.
    pub fn build(config: &TlsProbeConfig) -> Result<Self, ProbeError> {
        let invalid = |what: String| ProbeError::Invalid {
            id: config.id.clone(),
            what,
        };
        let name = config
            .name()
            .ok_or_else(|| invalid(format!("address {:?}", config.address)))?;
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| invalid(format!("server_name {name:?}")))?;
        let roots = match &config.ca_file {
            Some(path) => read_roots(path).map_err(|e| invalid(format!("ca_file: {e}")))?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| invalid(format!("verifier: {e}")))?;
        Ok(Self {
            address: config.address.clone(),
            server_name,
            verifier,
            provider,
            warn_days: i64::from(config.warn_days),
            crit_days: i64::from(config.crit_days),
        })
    }

    /// Connects and shakes hands; returns what the verifier saw.
    async fn handshake(&self) -> Result<Seen, String> {
        let recorder = Arc::new(RecordingVerifier {
            inner: self.verifier.clone(),
            seen: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls config: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone())
            .with_no_client_auth();
        let stream = TcpStream::connect(self.address.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let result = connector.connect(self.server_name.clone(), stream).await;
        let seen = recorder
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (result, seen) {
            (Ok(_tls), Some(seen)) => Ok(seen),
            (Ok(_), None) => Err("handshake: the server sent no certificate".to_owned()),
            (Err(e), _) => Err(format!("handshake: {e}")),
        }
    }

    /// The observation of a chain and its verdict at `now` (epoch seconds).
    pub fn judge(
        &self,
        chain: &[CertificateDer<'_>],
        verdict: &Result<(), rustls::Error>,
        now: i64,
        latency: std::time::Duration,
    ) -> Observation {
        let Some(der) = chain.first() else {
            return Observation::down(latency, "the server sent no certificate");
        };
        let leaf = match read_leaf(der) {
            Ok(l) => l,
            Err(e) => return Observation::down(latency, e),
        };
        let secs_left = leaf.not_after - now;
        let days_left = secs_left.div_euclid(SECONDS_PER_DAY);
        let about = format!(
            "issuer {:?}, subject {:?}, expires {}",
            leaf.issuer, leaf.subject, leaf.not_after_date
        );
        let (state, reason) = match verdict {
            Err(e) => (ProbeState::Down, self.describe(e, &leaf, secs_left)),
            Ok(()) if days_left < self.crit_days => (
                ProbeState::Down,
                format!("{days_left} days left, under crit_days {}", self.crit_days),
            ),
            Ok(()) if days_left < self.warn_days => (
                ProbeState::Degraded,
                format!("{days_left} days left, under warn_days {}", self.warn_days),
            ),
            Ok(()) => (ProbeState::Up, format!("{days_left} days left")),
        };
        Observation {
            state,
            latency,
            error: Some(short_error(format!("{reason}; {about}"))),
            // Whole days, negative once expired; sent whenever the leaf could be read, even
            // from an invalid chain.
            metrics: vec![ProbeMetric {
                uom: Some("d".to_owned()),
                ..ProbeMetric::new("days_left", days_left as f64)
            }],
        }
    }

    /// The reason a chain is invalid, in words.
    fn describe(&self, e: &rustls::Error, leaf: &Leaf, secs_left: i64) -> String {
        let name = self.server_name.to_str();
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
                    if secs_left < 0 =>
                {
                    format!(
                        "expired {} days ago",
                        (-secs_left).div_euclid(SECONDS_PER_DAY)
                    )
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "invalid chain: a certificate of the chain expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "not valid yet".to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    let names = if leaf.sans.is_empty() {
                        format!("subject {:?} (no SANs)", leaf.subject)
                    } else {
                        format!("SANs {:?}", leaf.sans)
                    };
                    format!("name mismatch: {name} is not in {names}")
                }
                CertificateError::UnknownIssuer if leaf.issuer == leaf.subject => {
                    "invalid chain: self-signed and not trusted".to_owned()
                }
                CertificateError::UnknownIssuer => {
                    format!("invalid chain: unknown issuer {:?}", leaf.issuer)
                }
                other => format!("invalid chain: {other:?}"),
            },
            other => format!("invalid chain: {other}"),
        }
    }
}

impl Check for TlsProbe {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> &str {
        &self.address
    }

    async fn check(&self) -> Observation {
        let start = Instant::now();
        match self.handshake().await {
            Ok(seen) => {
                let latency = start.elapsed();
                let now = i64::try_from(watchstand_shared::time::now_ms() / 1_000).unwrap_or(0);
                self.judge(&seen.chain, &seen.verdict, now, latency)
            }
            Err(e) => Observation::down(start.elapsed(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Probe, ProbeConfig};

    #[test]
    fn config_problems_name_the_key() {
        let mut c = TlsProbeConfig::new("t", "example.org");
        c.server_name = Some("bad name".into());
        c.warn_days = 7;
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let mut problems = Problems::default();
        c.validate("probes[id=\"t\"]", &mut problems);
        let text: Vec<String> = problems
            .finish(Path::new("agent.toml"), ())
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "probes[id=\"t\"].address: address \"example.org\" is not host:port (port 1-65535; IPv6 as [::1]:port)",
                "probes[id=\"t\"].server_name: server_name \"bad name\" is not a DNS name or IP address",
                "probes[id=\"t\"].warn_days: 7 must be greater than crit_days 7",
            ]
        );
        assert_eq!(
            read_roots(Path::new("/nonexistent/ca.pem")).unwrap_err(),
            "cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
        c.address = "example.org:443".into();
        c.server_name = None;
        let error = TlsProbe::build(&c).unwrap_err().to_string();
        assert_eq!(
            error,
            "probe \"t\": ca_file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            read_roots(&empty).unwrap_err(),
            format!("{} holds no PEM certificate", empty.display())
        );
    }

    #[test]
    fn the_name_defaults_to_the_host_of_the_address() {
        let mut c = TlsProbeConfig::new("t", "[::1]:8443");
        assert_eq!(c.name(), Some("::1"));
        c.server_name = Some("api.example.org".into());
        assert_eq!(c.name(), Some("api.example.org"));
    }

    /// A self-signed certificate for `names`, valid from `from` to `to` days from now (plus an
    /// hour, so that whole days are left).
    fn cert(names: &[&str], from: i64, to: i64) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].as_str());
        let now = time_now();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to) + time::Duration::hours(1);
        params.self_signed(&key).unwrap()
    }

    fn time_now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    #[test]
    fn the_leaf_is_judged_by_verdict_and_days_left() {
        let leaf = cert(&["svc.test"], -1, 30);
        let chain = [leaf.der().clone()];
        let probe = TlsProbe::build(&TlsProbeConfig::new("t", "svc.test:443")).unwrap();
        let now = i64::try_from(watchstand_shared::time::now_ms() / 1_000).unwrap();
        let latency = std::time::Duration::from_millis(3);
        let o = probe.judge(&chain, &Ok(()), now, latency);
        assert_eq!(o.state, ProbeState::Up);
        let text = o.error.unwrap();
        assert!(
            text.starts_with("30 days left; issuer \"svc.test\", subject \"svc.test\", expires 20"),
            "{text}"
        );
        let o = probe.judge(&chain, &Ok(()), now + 15 * SECONDS_PER_DAY, latency);
        assert_eq!(o.state, ProbeState::Degraded);
        assert!(o
            .error
            .unwrap()
            .starts_with("15 days left, under warn_days 21; "));
        let o = probe.judge(&chain, &Ok(()), now + 25 * SECONDS_PER_DAY, latency);
        assert_eq!(o.state, ProbeState::Down);
        assert!(o
            .error
            .unwrap()
            .starts_with("5 days left, under crit_days 7; "));
        let unknown = Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let o = probe.judge(&chain, &unknown, now, latency);
        assert_eq!(o.state, ProbeState::Down);
        assert!(o
            .error
            .unwrap()
            .starts_with("invalid chain: self-signed and not trusted; "));
        let mismatch = Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        let o = probe.judge(&chain, &mismatch, now, latency);
        assert!(o
            .error
            .unwrap()
            .starts_with("name mismatch: svc.test is not in SANs [\"svc.test\"]; "));
    }

    #[test]
    fn days_left_is_published_as_a_metric_also_when_expired() {
        let leaf = cert(&["svc.test"], -1, 30);
        let chain = [leaf.der().clone()];
        let probe = TlsProbe::build(&TlsProbeConfig::new("t", "svc.test:443")).unwrap();
        let now = i64::try_from(watchstand_shared::time::now_ms() / 1_000).unwrap();
        let latency = std::time::Duration::from_millis(3);
        let days = |o: &Observation| -> Vec<(String, f64, Option<String>)> {
            o.metrics
                .iter()
                .map(|m| (m.name.clone(), m.value, m.uom.clone()))
                .collect()
        };
        let d = Some("d".to_owned());
        let o = probe.judge(&chain, &Ok(()), now, latency);
        assert_eq!(days(&o), [("days_left".to_owned(), 30.0, d.clone())]);
        let expired = Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        let o = probe.judge(&chain, &expired, now + 33 * SECONDS_PER_DAY, latency);
        assert_eq!(o.state, ProbeState::Down);
        assert_eq!(days(&o), [("days_left".to_owned(), -3.0, d)]);
        let o = probe.judge(&[], &Ok(()), now, latency);
        assert!(o.metrics.is_empty(), "no leaf, no days: {:?}", o.metrics);
    }

    #[tokio::test]
    async fn a_refused_port_is_down_with_the_reason() {
        let address = crate::testutil::closed_port().await.to_string();
        let c = TlsProbeConfig::new("t", &address);
        let o = Probe::build(&ProbeConfig::Tls(c)).unwrap().check().await;
        assert_eq!(o.state, ProbeState::Down);
        assert!(o.error.unwrap().starts_with("connect: "));
    }
}
