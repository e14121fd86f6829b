//! TLS for the TCP listeners (Kafka, MQTT, MQTT over WebSocket): rustls with the `ring`
//! provider, through tokio-rustls.
//!
//! A listener with TLS configured speaks TLS only: a client that starts in plaintext fails the
//! handshake and is closed. Each listener runs the handshake inside the connection's task (so
//! it holds one of that protocol's connection permits and never blocks the accept loop), bounded
//! by [`HANDSHAKE_TIMEOUT`], so a client that connects and says nothing cannot keep a permit.
//!
//! TLS 1.2 and 1.3 are offered (current clients negotiate 1.3; older devices may only have 1.2).
//! With `client_ca` set, clients must present a certificate signed by one of those authorities
//! (mutual TLS); [`client_common_name`] then names the client by its certificate's subject CN,
//! which MQTT uses as the connection's certificate identity.
//!
//! The PEM loaders are plain functions over paths, and the whole configuration is checked once
//! at startup ([`server_config`]) so a bad file stops the broker with a clear error instead of
//! failing every connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
pub use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Most time a client gets to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, leaf first for a chain.
pub fn load_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The rustls server configuration for a listener's TLS files; fails on unreadable files, bad
/// PEM, or a key that does not match the certificate.
pub fn server_config(tls: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certificates("certificate", &tls.cert)?;
    let key = load_key(&tls.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certificates("client CA", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Config(format!(
            "certificate {} with key {}: {e}",
            tls.cert.display(),
            tls.key.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// The acceptor a listener wraps each TCP stream with.
pub fn acceptor(tls: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(server_config(tls)?))
}

/// The subject common name of the client's certificate after a handshake, if it presented one
/// (only asked for with `client_ca`, and then already verified against it).
pub fn client_common_name(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    common_name(leaf)
}

/// The first subject common name of a DER certificate; `None` for an unparsable certificate or
/// one without a (string) CN.
pub fn common_name(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_a_generated_certificate_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &certified.cert.pem());
        let key = write(
            dir.path(),
            "key.pem",
            &certified.signing_key.serialize_pem(),
        );
        let ok = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        server_config(&ok).unwrap();
        let mtls = TlsFiles {
            client_ca: Some(cert.clone()),
            ..ok.clone()
        };
        server_config(&mtls).unwrap();

        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let wrong_key = write(dir.path(), "other.pem", &other.signing_key.serialize_pem());
        let garbage = write(dir.path(), "garbage.pem", "not pem at all");
        let cases = [
            (cert.clone(), dir.path().join("missing.pem"), "cannot read"),
            (key.clone(), key.clone(), "no certificate"),
            (garbage.clone(), key.clone(), "no certificate"),
            (cert.clone(), garbage.clone(), "private key"),
            (cert.clone(), wrong_key, "certificate"),
        ];
        for (cert, key, expected) in cases {
            let err = server_config(&TlsFiles {
                cert,
                key,
                client_ca: None,
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn common_name_is_the_subject_cn() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["device-7.local".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Plant 3");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sensor-7");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("sensor-7"));

        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let no_cn = params.self_signed(&key).unwrap();
        assert_eq!(common_name(no_cn.der()), None);
        assert_eq!(common_name(b"\x30\x03garbage"), None);
        assert_eq!(common_name(b""), None);
    }
}
