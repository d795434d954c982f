//! TLS servers on 127.0.0.1 for the `tls` probe tests, with certificates made by the test
//! (`rcgen`): a test CA issuing leaves valid for chosen names and days, and self-signed ones.
//! Each server completes handshakes with its chain and closes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A certificate chain and its key, as a server presents them.
#[derive(Debug)]
pub struct Leaf {
    /// Leaf first, then the issuing CA (when there is one).
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// Validity from `from_days` to `to_days` days from now; `to` gets an extra hour so that whole
/// days are left (`to_days = 5` reads as 5 days left).
fn params(names: &[&str], from_days: i64, to_days: i64) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut p = CertificateParams::new(names.clone()).expect("certificate names");
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("watchstand test", String::as_str),
    );
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from_days);
    p.not_after = now + time::Duration::days(to_days) + time::Duration::hours(1);
    p
}

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

impl TestCa {
    /// A new CA named `name`, valid for a year.
    pub fn new(name: &str) -> Self {
        let mut p = params(&[], -1, 365);
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(p, key).expect("CA certificate"),
        }
    }

    /// Writes the CA certificate as PEM (for a probe's `ca_file`).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("write the CA PEM");
    }

    /// A leaf for `names` valid from `from_days` to `to_days` days from now.
    pub fn issue(&self, names: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params(names, from_days, to_days)
            .signed_by(&key, &self.issuer)
            .expect("sign the leaf");
        Leaf {
            chain: vec![cert.der().clone(), self.issuer.der().clone()],
            key: key.serialize_der(),
        }
    }
}

/// A self-signed leaf for `names`, valid for `to_days` days.
pub fn self_signed(names: &[&str], to_days: i64) -> Leaf {
    let key = KeyPair::generate().expect("leaf key");
    let cert = params(names, -1, to_days)
        .self_signed(&key)
        .expect("self-sign");
    Leaf {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

/// A TLS server presenting one chain; stops when dropped.
#[derive(Debug)]
pub struct TlsTarget {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsTarget {
    /// Serves `leaf` on a free loopback port.
    pub async fn start(leaf: &Leaf) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain.clone(), key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The probe closes after the handshake; errors are the client's business.
                    let _done = acceptor.accept(stream).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}
