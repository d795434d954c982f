//! Optional TLS for the API (`[api] tls_cert`, `tls_key`, PEM files; rustls with aws-lc-rs):
//! [`load`] reads the certificate chain and key at start (clear errors naming the key; a WARN
//! when the key file is readable by the group or others), [`TlsListener`] is an
//! `axum::serve::Listener` that accepts TCP and hands axum connections whose handshake finished.
//! Handshakes run in their own tasks with a bound, so a slow or silent client cannot hold up
//! others; a failed one is logged at DEBUG (scanners make many).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum.
const READY_QUEUE: usize = 64;

/// Where the API's certificate chain and key are (validated: both or neither given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads the certificate and key and builds the acceptor.
///
/// # Errors
/// A file cannot be read, holds no certificate or key, or the key does not match the
/// certificate — each naming the `[api]` key and the file.
pub fn load(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("api.tls_cert: cannot read {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "api.tls_cert: {} holds no PEM certificate",
            files.cert.display()
        );
    }
    warn_if_readable(&files.key);
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!(
            "api.tls_key: cannot read a private key from {}: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("api: TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "api.tls_key: {} does not go with the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn warn_if_readable(path: &Path) {
    if let Ok(Some(mode)) = watchstand_shared::secrets::readable_by_others(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "API TLS key file is readable by its group or other users; chmod 600 it."
        );
    }
}

/// A listener that yields connections after their TLS handshake.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp`, handshaking with `acceptor`. The accept task ends when the listener is
    /// dropped.
    ///
    /// # Errors
    /// The TCP listener has no local address.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    a = tcp.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // The listener is gone when this fails: nothing to serve.
                            if tx.send((tls, peer)).await.is_err() {
                                tracing::debug!(%peer, "API listener closed before serving.");
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed.");
                        }
                        Err(_) => tracing::debug!(%peer, "API TLS handshake timed out."),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped: never while serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
