//! MQTT over TLS: the `[mqtt.tls]` block (CA file, client certificate and key, optional server
//! name), its pure validation, and the loading of the files into a rustls client config with
//! errors that name the key and the path.
//!
//! Only paths live in the config; the key's bytes are read when the client is built and go
//! straight into rustls, so nothing secret can reach a `Debug` print or a log line. A key file
//! readable by group or others is warned about (see [`super::secret_file`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ConfigError;

/// Where the TLS block sits in the config file, for messages.
const KEY: &str = "mqtt.tls";

/// The `[mqtt.tls]` block: used with an `mqtts://` URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// PEM file with the CA certificate(s) that signed the broker's certificate. Required.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with this client's certificate (chain), for brokers that require one.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1); keep it mode 600.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify the broker's certificate against, when it differs from the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why the TLS files cannot become a client config. Every message names the key and the path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MqttTlsError {
    /// The file cannot be read.
    #[error("{key}: cannot read {}: {reason}", path.display())]
    Unreadable {
        /// Config key, e.g. `mqtt.tls.ca_file`.
        key: String,
        /// The path as configured (resolved against the config file's directory).
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file holds no PEM item of the expected kind.
    #[error("{key}: {} is not a PEM {what}", path.display())]
    NotPem {
        /// Config key.
        key: String,
        /// The path.
        path: PathBuf,
        /// What was expected, e.g. `certificate`.
        what: &'static str,
    },
    /// A CA certificate rustls cannot use as a trust anchor.
    #[error("{key}: {} holds a CA certificate that cannot be used: {reason}", path.display())]
    BadCa {
        /// Config key.
        key: String,
        /// The path.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{KEY}.key_file: {} does not match the certificate in {}", key_path.display(), cert_path.display())]
    KeyMismatch {
        /// The key file.
        key_path: PathBuf,
        /// The certificate file.
        cert_path: PathBuf,
    },
    /// The certificate and key were rejected for another reason (e.g. an unsupported key type).
    #[error("{KEY}.key_file: {} with {} cannot be used: {reason}", key_path.display(), cert_path.display())]
    BadClientAuth {
        /// The key file.
        key_path: PathBuf,
        /// The certificate file.
        cert_path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// `server_name` is not a DNS name or IP address.
    #[error("{KEY}.server_name: {0:?} is not a DNS name or IP address")]
    BadServerName(String),
    /// An `mqtts://` URL without a CA file (validation should have caught it).
    #[error("{KEY}.ca_file: an mqtts:// url needs a CA file to verify the broker")]
    MissingCa,
}

impl MqttTlsConfig {
    /// Whether any TLS key is set.
    pub fn is_set(&self) -> bool {
        self != &Self::default()
    }

    /// Resolves relative paths against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Pure checks; `tls_url` tells whether the URL is `mqtts://`, `key` is the block's path
    /// (e.g. `mqtt.tls`).
    pub fn validate(&self, key: &str, tls_url: bool) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !tls_url {
            if self.is_set() {
                errors.push(ConfigError::new(
                    key,
                    "TLS settings need an mqtts:// url (the url is plain mqtt://)",
                ));
            }
            return errors;
        }
        for (name, value) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if value.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                errors.push(ConfigError::new(
                    format!("{key}.{name}"),
                    "must not be empty",
                ));
            }
        }
        if self.ca_file.is_none() {
            errors.push(ConfigError::new(
                format!("{key}.ca_file"),
                "an mqtts:// url needs a CA file to verify the broker",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => errors.push(ConfigError::new(
                format!("{key}.key_file"),
                "cert_file and key_file must be set together (cert_file is set)",
            )),
            (None, Some(_)) => errors.push(ConfigError::new(
                format!("{key}.cert_file"),
                "cert_file and key_file must be set together (key_file is set)",
            )),
            _ => {}
        }
        if let Some(name) = &self.server_name {
            if ServerName::try_from(name.as_str()).is_err() {
                errors.push(ConfigError::new(
                    format!("{key}.server_name"),
                    format!("{name:?} is not a DNS name or IP address"),
                ));
            }
        }
        errors
    }

    /// Reads the files and builds the rustls client config (aws-lc-rs provider).
    ///
    /// # Errors
    /// A file is unreadable, not PEM, the CA unusable, or the key does not match the cert.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, MqttTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca_path = self.ca_file.as_deref().ok_or(MqttTlsError::MissingCa)?;
        let ca_key = format!("{KEY}.ca_file");
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&ca_key, ca_path)? {
            roots.add(cert).map_err(|e| MqttTlsError::BadCa {
                key: ca_key.clone(),
                path: ca_path.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| MqttTlsError::BadCa {
                key: ca_key.clone(),
                path: ca_path.to_owned(),
                reason: e.to_string(),
            })?;
        let builder = match &self.server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| MqttTlsError::BadServerName(name.clone()))?;
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| MqttTlsError::BadCa {
                        key: ca_key.clone(),
                        path: ca_path.to_owned(),
                        reason: e.to_string(),
                    })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(FixedNameVerifier { inner, name }))
            }
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert_path), Some(key_path)) => {
                let certs = read_certs(&format!("{KEY}.cert_file"), cert_path)?;
                super::secret_file::warn_if_exposed(&format!("{KEY}.key_file"), key_path);
                let key = read_key(key_path)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => MqttTlsError::KeyMismatch {
                            key_path: key_path.clone(),
                            cert_path: cert_path.clone(),
                        },
                        other => MqttTlsError::BadClientAuth {
                            key_path: key_path.clone(),
                            cert_path: cert_path.clone(),
                            reason: other.to_string(),
                        },
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, MqttTlsError> {
    std::fs::read(path).map_err(|e| MqttTlsError::Unreadable {
        key: key.to_owned(),
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttTlsError> {
    let bytes = read_file(key, path)?;
    let not_pem = || MqttTlsError::NotPem {
        key: key.to_owned(),
        path: path.to_owned(),
        what: "certificate",
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| not_pem())?;
    if certs.is_empty() {
        return Err(not_pem());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, MqttTlsError> {
    let key = format!("{KEY}.key_file");
    let bytes = read_file(&key, path)?;
    // The parse error could quote the file; it is not passed on.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| MqttTlsError::NotPem {
        key,
        path: path.to_owned(),
        what: "private key (PKCS#8, PKCS#1 or SEC1)",
    })
}

/// Verifies the broker's certificate against the configured `server_name` instead of the
/// URL's host (e.g. connecting to an IP address whose certificate names only a DNS name).
struct FixedNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl fmt::Debug for FixedNameVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedNameVerifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for FixedNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tls(f: impl FnOnce(&mut MqttTlsConfig)) -> MqttTlsConfig {
        let mut c = MqttTlsConfig {
            ca_file: Some("ca.crt".into()),
            ..MqttTlsConfig::default()
        };
        f(&mut c);
        c
    }

    fn messages(c: &MqttTlsConfig, tls_url: bool) -> Vec<String> {
        c.validate("mqtt.tls", tls_url)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn tls_config_errors_name_the_key() {
        type Case = (MqttTlsConfig, bool, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (tls(|_| {}), true, vec![]),
            (
                tls(|c| {
                    c.cert_file = Some("a.crt".into());
                    c.key_file = Some("a.key".into());
                    c.server_name = Some("mqtt.example.org".into());
                }),
                true,
                vec![],
            ),
            (MqttTlsConfig::default(), false, vec![]),
            (
                MqttTlsConfig::default(),
                true,
                vec!["mqtt.tls.ca_file: an mqtts:// url needs a CA file to verify the broker"],
            ),
            (
                tls(|_| {}),
                false,
                vec!["mqtt.tls: TLS settings need an mqtts:// url (the url is plain mqtt://)"],
            ),
            (
                tls(|c| c.cert_file = Some("a.crt".into())),
                true,
                vec!["mqtt.tls.key_file: cert_file and key_file must be set together (cert_file is set)"],
            ),
            (
                tls(|c| c.key_file = Some("a.key".into())),
                true,
                vec!["mqtt.tls.cert_file: cert_file and key_file must be set together (key_file is set)"],
            ),
            (
                tls(|c| c.ca_file = Some(PathBuf::new())),
                true,
                vec!["mqtt.tls.ca_file: must not be empty"],
            ),
            (
                tls(|c| c.server_name = Some("not a name!".into())),
                true,
                vec!["mqtt.tls.server_name: \"not a name!\" is not a DNS name or IP address"],
            ),
        ];
        for (c, tls_url, want) in cases {
            assert_eq!(messages(&c, tls_url), want, "{c:?}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let mut c = tls(|c| {
            c.cert_file = Some("/abs/a.crt".into());
            c.key_file = Some("keys/a.key".into());
        });
        c.resolve_paths(Path::new("/etc/watchstand"));
        assert_eq!(c.ca_file, Some("/etc/watchstand/ca.crt".into()));
        assert_eq!(c.cert_file, Some("/abs/a.crt".into()));
        assert_eq!(c.key_file, Some("/etc/watchstand/keys/a.key".into()));
    }

    /// Certificates made by the shipped script, as an operator would.
    fn make_certs(dir: &Path) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tls/make-certs.sh");
        let out = Command::new("sh")
            .arg(script)
            .arg(dir)
            .args(["agent-a", "agent-b"])
            .output()
            .expect("run make-certs.sh (needs openssl)");
        assert!(out.status.success(), "{out:?}");
    }

    fn client(dir: &Path, cert: &str, key: &str) -> MqttTlsConfig {
        MqttTlsConfig {
            ca_file: Some(dir.join("ca.crt")),
            cert_file: Some(dir.join(cert)),
            key_file: Some(dir.join(key)),
            server_name: None,
        }
    }

    #[test]
    fn loading_errors_name_the_key_and_the_path_and_never_the_key_material() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        make_certs(d);
        std::fs::write(d.join("garbage.pem"), "hello\n").unwrap();
        let p = |f: &str| d.join(f).display().to_string();
        let missing = tls(|c| c.ca_file = Some(d.join("missing.crt")));
        let mut garbage_ca = client(d, "agent-a.crt", "agent-a.key");
        garbage_ca.ca_file = Some(d.join("garbage.pem"));
        let cases: Vec<(MqttTlsConfig, String)> = vec![
            (
                missing,
                format!(
                    "mqtt.tls.ca_file: cannot read {}: No such file or directory (os error 2)",
                    p("missing.crt")
                ),
            ),
            (
                garbage_ca,
                format!(
                    "mqtt.tls.ca_file: {} is not a PEM certificate",
                    p("garbage.pem")
                ),
            ),
            (
                client(d, "garbage.pem", "agent-a.key"),
                format!(
                    "mqtt.tls.cert_file: {} is not a PEM certificate",
                    p("garbage.pem")
                ),
            ),
            (
                client(d, "agent-a.crt", "agent-a.crt"),
                format!(
                    "mqtt.tls.key_file: {} is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    p("agent-a.crt")
                ),
            ),
            (
                client(d, "agent-a.crt", "agent-b.key"),
                format!(
                    "mqtt.tls.key_file: {} does not match the certificate in {}",
                    p("agent-b.key"),
                    p("agent-a.crt")
                ),
            ),
        ];
        let key_b = std::fs::read_to_string(d.join("agent-b.key")).unwrap();
        let key_body = key_b.lines().nth(1).unwrap();
        for (c, want) in cases {
            let err = c.client_config().unwrap_err();
            let text = err.to_string();
            assert_eq!(text, want);
            assert!(!format!("{err:?}").contains(key_body), "{err:?}");
        }
        assert!(client(d, "agent-a.crt", "agent-a.key")
            .client_config()
            .is_ok());
        let mut named = client(d, "agent-a.crt", "agent-a.key");
        named.server_name = Some("localhost".into());
        assert!(named.client_config().is_ok());
    }
}
