//! TLS for the peer protocol and the client API (rustls, on the ring provider).
//!
//! Peers use mutual TLS: each node presents its certificate and verifies the other's against
//! the cluster CA (`--tls-ca`). The HMAC challenge-response handshake still runs inside the
//! TLS session, as defence in depth: a certificate alone (stolen, or issued by the same CA to
//! another cluster) does not make a member, and neither does the secret alone. The API serves
//! HTTPS with the same certificate, without client certificates (clients authenticate with
//! tokens).
//!
//! [`Tls::reload`] re-reads the files (SIGHUP): new connections use the new certificates,
//! connections already open keep theirs, and a reload that fails keeps the old ones.

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The files a node's TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates (PEM) a peer's certificate must chain to.
    pub ca: PathBuf,
}

/// Why TLS could not be set up; one line each.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("the TLS {what} {path} holds no PEM {what}")]
    Empty { what: &'static str, path: String },
    #[error("TLS setup with {path} failed: {reason}")]
    Config { path: String, reason: String },
}

/// The rustls configurations built from one reading of the files.
struct Configs {
    peer_server: Arc<ServerConfig>,
    peer_client: Arc<ClientConfig>,
    api_server: Arc<ServerConfig>,
}

/// A node's TLS: the files and the configurations last read from them.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Configs>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        what,
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            what,
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: shown });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        what: "key",
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key",
            path: shown,
        },
        e => TlsError::Read {
            what: "key",
            path: shown,
            reason: e.to_string(),
        },
    })
}

impl Configs {
    fn build(files: &TlsFiles) -> Result<Configs, TlsError> {
        let certs = read_certs("certificate", &files.cert)?;
        let key = read_key(&files.key)?;
        let mut roots = RootCertStore::empty();
        for ca in read_certs("CA", &files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Config {
                path: files.ca.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let fail = |path: &Path| {
            let path = path.display().to_string();
            move |e: rustls::Error| TlsError::Config {
                path,
                reason: e.to_string(),
            }
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Config {
                path: files.ca.display().to_string(),
                reason: e.to_string(),
            })?;
        let peer_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(fail(&files.cert))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(fail(&files.key))?;
        let peer_client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(fail(&files.cert))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(fail(&files.key))?;
        let mut api_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(fail(&files.cert))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(fail(&files.key))?;
        api_server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Configs {
            peer_server: Arc::new(peer_server),
            peer_client: Arc::new(peer_client),
            api_server: Arc::new(api_server),
        })
    }
}

impl Tls {
    /// Reads and checks the files (a key that does not match the certificate is refused).
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let current = RwLock::new(Configs::build(&files)?);
        Ok(Arc::new(Tls { files, current }))
    }

    /// Re-reads the files; on any error the configurations in use stay as they were.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Configs::build(&self.files)?;
        *self.current.write() = fresh;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Accepts peers: they must present a certificate that chains to the CA.
    pub fn peer_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().peer_server.clone())
    }

    /// Dials peers: presents this node's certificate and verifies theirs.
    pub fn peer_connector(&self) -> TlsConnector {
        TlsConnector::from(self.current.read().peer_client.clone())
    }

    /// Serves HTTPS to clients.
    pub fn api_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().api_server.clone())
    }
}

/// The name a peer's certificate must carry when dialled at `addr` (`host:port`): its IP
/// address or DNS name.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string(),
    };
    ServerName::try_from(host.clone()).map_err(|e| format!("'{host}' is no TLS server name: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A certificate authority for tests.
    pub(crate) struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl TestCa {
        pub(crate) fn new() -> TestCa {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).unwrap();
            TestCa { cert, key }
        }

        /// A certificate for `host` issued by this CA, and the CA, as PEM files in `dir`.
        pub(crate) fn issue(&self, dir: &Path, name: &str, host: &str) -> TlsFiles {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            let files = TlsFiles {
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
                ca: dir.join(format!("{name}-ca.crt")),
            };
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            std::fs::write(&files.ca, self.cert.pem()).unwrap();
            files
        }
    }

    /// A certificate for 127.0.0.1 from a CA of its own.
    fn issue(dir: &Path, name: &str) -> TlsFiles {
        TestCa::new().issue(dir, name, "127.0.0.1")
    }

    #[test]
    fn loads_good_files_and_names_the_bad_one_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = issue(dir.path(), "a");
        assert!(Tls::load(good.clone()).is_ok());

        let missing = TlsFiles {
            cert: dir.path().join("nope.crt"),
            ..good.clone()
        };
        let e = Tls::load(missing).unwrap_err().to_string();
        assert!(e.contains("certificate") && e.contains("nope.crt"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file").unwrap();
        for files in [
            TlsFiles {
                cert: garbage.clone(),
                ..good.clone()
            },
            TlsFiles {
                key: garbage.clone(),
                ..good.clone()
            },
            TlsFiles {
                ca: garbage.clone(),
                ..good.clone()
            },
        ] {
            let e = Tls::load(files).unwrap_err().to_string();
            assert!(e.contains("garbage.pem") && !e.contains('\n'), "{e}");
        }

        // A key that is not the certificate's.
        let other = issue(dir.path(), "b");
        let e = Tls::load(TlsFiles {
            key: other.key,
            ..good
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("a.crt") || e.contains("b.key"), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_configuration_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let files = issue(dir.path(), "a");
        let tls = Tls::load(files.clone()).unwrap();
        let before = Arc::as_ptr(&tls.current.read().api_server);
        std::fs::write(&files.cert, "truncated").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(Arc::as_ptr(&tls.current.read().api_server), before);
        issue(dir.path(), "a");
        tls.reload().unwrap();
        assert_ne!(Arc::as_ptr(&tls.current.read().api_server), before);
    }

    #[test]
    fn server_names_come_from_the_dialled_address() {
        assert_eq!(
            server_name("10.0.0.1:8800").unwrap(),
            ServerName::try_from("10.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:8800").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("node1.example:8800").unwrap(),
            ServerName::try_from("node1.example").unwrap()
        );
        assert!(server_name("bad name:1").is_err());
    }
}
